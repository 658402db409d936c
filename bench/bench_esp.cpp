// AES-256-GCM for ESP: seal and open of bursts of 32 buffers at 64, 512 and 1400 bytes through
// CryptoEngine's direct, job-API and burst-API paths, beside raw intel-ipsec-mb calls on the
// same buffers (the ceiling). Counters, from this thread's CPU time (the machine is shared):
// ns per packet, Gbit/s of payload, and vs_raw = the best raw time of the same operation and
// size / this time (1.0 = as fast as the bare library). Figures, never pass/fail.
#include <benchmark/benchmark.h>

#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/esp/gcm.hpp"

namespace sdwan::dp {
namespace {

constexpr uint32_t kBurst = 32;
constexpr uint32_t kSlot = 2048;  // buffers sit apart like mbuf data rooms

enum class Path { kRaw, kDirect, kJobs, kBurstApi };
const char* path_name(Path p) {
  switch (p) {
    case Path::kRaw: return "raw";
    case Path::kDirect: return "direct";
    case Path::kJobs: return "jobs";
    case Path::kBurstApi: return "burst";
  }
  return "?";
}

// One ESP-shaped burst: IVs of salt || sequence, AAD of SPI || ESN high || seq low. For open,
// two tag sets: in-place decryption turns the ciphertext back into the plaintext, which is in
// turn the ciphertext of the first one under the same IV (CTR is an XOR), so alternating tags
// keeps every open a successful one without copying buffers between iterations.
struct Burst {
  std::unique_ptr<uint8_t[]> mem;
  uint8_t iv[kBurst][kGcmIvLen];
  uint8_t aad[kBurst][12];
  uint8_t tag[2][kBurst][kGcmTagLen];
  GcmOp ops[2][kBurst];

  Burst(CryptoEngine& e, const GcmKey& key, uint32_t len) : mem(new uint8_t[kBurst * kSlot + 64]) {
    uint8_t* base = mem.get() + (64 - reinterpret_cast<uintptr_t>(mem.get()) % 64) % 64;
    for (uint32_t i = 0; i < kBurst; ++i) {
      uint8_t* d = base + i * kSlot + 128;  // after the room outer headers would take
      for (uint32_t j = 0; j < len; ++j) d[j] = static_cast<uint8_t>(i * 31 + j);
      const uint64_t seq = 1000 + i;
      const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
      std::memcpy(iv[i], salt, 4);
      std::memcpy(iv[i] + 4, &seq, 8);
      const uint8_t spi[4] = {0, 0, 0x10, 0x01};
      std::memcpy(aad[i], spi, 4);
      std::memset(aad[i] + 4, 0, 4);
      std::memcpy(aad[i] + 8, &seq, 4);
      // tag[0]: the tag of the ciphertext C that seal(P) makes; tag[1]: the tag of the
      // plaintext P read as a ciphertext, i.e. what seal(C) writes. Iteration 0 finds C.
      e.seal(key, iv[i], aad[i], 12, d, d, len, tag[0][i]);
      e.seal(key, iv[i], aad[i], 12, d, d, len, tag[1][i]);
      e.seal(key, iv[i], aad[i], 12, d, d, len, tag[0][i]);
      for (int t = 0; t < 2; ++t)
        ops[t][i] = GcmOp{&key, iv[i], aad[i], d, tag[t][i], len, 12, false};
    }
  }
};

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::map<std::string, double>& raw_ns() {
  static std::map<std::string, double> m;
  return m;
}

void run(benchmark::State& state, Path path, bool seal, uint32_t len) {
  const GcmBurstMode mode = path == Path::kJobs       ? GcmBurstMode::kJobs
                            : path == Path::kBurstApi ? GcmBurstMode::kBurst
                                                      : GcmBurstMode::kDirect;
  auto r = CryptoEngine::create(CryptoEngine::Arch::kAuto, mode);
  if (!r.ok()) {
    state.SkipWithError(r.error().msg.c_str());
    return;
  }
  CryptoEngine& e = *r.value();
  auto key = std::make_unique<GcmKey>();
  uint8_t raw_key[kGcmKeyLen];
  for (uint32_t i = 0; i < kGcmKeyLen; ++i) raw_key[i] = static_cast<uint8_t>(i * 7 + 1);
  e.expand_key(raw_key, key.get());
  auto b = std::make_unique<Burst>(e, *key, len);
  IMB_MGR* m = e.mgr();
  uint64_t failures = 0;
  uint64_t n = 0;
  const double t0 = thread_cpu_seconds();
  for (auto _ : state) {
    GcmOp* ops = b->ops[n++ & 1];
    if (path == Path::kRaw) {
      for (uint32_t i = 0; i < kBurst; ++i) {
        alignas(64) gcm_context_data ctx;
        uint8_t computed[kGcmTagLen];
        if (seal)
          IMB_AES256_GCM_ENC(m, &key->data, &ctx, ops[i].data, ops[i].data, len, ops[i].iv,
                             ops[i].aad, 12, computed, kGcmTagLen);
        else
          IMB_AES256_GCM_DEC(m, &key->data, &ctx, ops[i].data, ops[i].data, len, ops[i].iv,
                             ops[i].aad, 12, computed, kGcmTagLen);
        benchmark::DoNotOptimize(computed);
      }
    } else {
      const uint32_t ok = seal ? e.seal_burst(ops, kBurst) : e.open_burst(ops, kBurst);
      failures += kBurst - ok;
    }
    benchmark::ClobberMemory();
  }
  const double secs = thread_cpu_seconds() - t0;
  if (failures != 0) {
    state.SkipWithError("an open failed: the benchmark's buffers are wrong");
    return;
  }
  const double pkts = static_cast<double>(state.iterations()) * kBurst;
  const double ns = secs * 1e9 / pkts;
  const std::string id = std::string(seal ? "seal" : "open") + std::to_string(len);
  if (path == Path::kRaw && (raw_ns().count(id) == 0 || ns < raw_ns()[id])) raw_ns()[id] = ns;
  state.SetItemsProcessed(static_cast<int64_t>(pkts));
  state.SetBytesProcessed(static_cast<int64_t>(pkts) * len);
  state.counters["ns/pkt"] = ns;
  state.counters["Gbps"] = len * 8.0 / ns;
  if (raw_ns().count(id) != 0) state.counters["vs_raw"] = raw_ns()[id] / ns;
}

}  // namespace
}  // namespace sdwan::dp

int main(int argc, char** argv) {
  using sdwan::dp::CryptoEngine;
  using sdwan::dp::Path;
  auto r = CryptoEngine::create();
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.error().msg.c_str());
    return 1;
  }
  std::printf("intel-ipsec-mb %s, arch %s, bursts of %u\n", CryptoEngine::library_version(),
              r.value()->arch_name(), sdwan::dp::kBurst);
  for (bool seal : {true, false}) {
    for (uint32_t len : {64u, 512u, 1400u}) {
      for (Path p : {Path::kRaw, Path::kDirect, Path::kJobs, Path::kBurstApi}) {
        const std::string name = std::string(seal ? "seal/" : "open/") + sdwan::dp::path_name(p) +
                                 "/" + std::to_string(len);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
          sdwan::dp::run(s, p, seal, len);
        });
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
