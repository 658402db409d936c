// AES-256-GCM for ESP: seal and open of bursts of 32 buffers at 64, 512 and 1400 bytes through
// CryptoEngine's direct, job-API and burst-API paths, beside raw intel-ipsec-mb calls on the
// same buffers (the ceiling). Counters, from this thread's CPU time (the machine is shared):
// ns per packet, Gbit/s of payload, and vs_raw = the best raw time of the same operation and
// size / this time (1.0 = as fast as the bare library). Figures, never pass/fail.
//
// Then the ESP transform (dataplane/esp/esp.hpp): esp_encrypt_burst and esp_decrypt_burst of
// 32 mbufs with inner packets of 64, 512 and 1400 bytes (ESN on), beside raw AES-256-GCM calls
// on exactly the bytes ESP seals or opens in those mbufs (inner + trailer, 12-byte AAD), in the
// same run. Each iteration first resets the mbufs (and for decryption encrypts the next 32
// packets into them), so these are timed with the TSC around the burst call only; the figure is
// the median ns per packet over the iterations, and ratio = raw / ESP (1.0 = ESP costs no more
// than its AES-GCM). A summary table is printed at the end.
#include <benchmark/benchmark.h>
#include <rte_mbuf.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/esp/esp.hpp"
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


// ---- the ESP transform on mbufs ----

uint64_t tsc() {
  _mm_lfence();
  const uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}

double tsc_per_ns() {
  static const double r = [] {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t c0 = tsc();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const uint64_t c1 = tsc();
    const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<double>(c1 - c0) / ns;
  }();
  return r;
}

struct EspFigure {
  double raw_ns = 0, esp_ns = 0;
};
std::map<std::pair<bool, uint32_t>, EspFigure>& esp_figures() {
  static std::map<std::pair<bool, uint32_t>, EspFigure> m;
  return m;
}

// 32 mbufs laid out as a pool lays them out (header, then a 2176-byte buffer with 128 bytes of
// headroom), made without an EAL: the transform reads only the fields set here.
struct EspBench {
  static constexpr uint32_t kBuf = RTE_MBUF_DEFAULT_BUF_SIZE;
  static constexpr uint32_t kStride = (sizeof(rte_mbuf) + kBuf + 63) / 64 * 64;
  static constexpr uint32_t kSpi = 0x5d000052;

  CryptoEngine& e;
  uint32_t len;
  uint32_t ct_len;  // inner + trailer: what ESP seals
  std::unique_ptr<uint8_t[]> mem;
  rte_mbuf* m[kBurst];
  std::unique_ptr<OutboundSa> out;
  std::unique_ptr<InboundSa> in;
  std::unique_ptr<InboundTable> table = std::make_unique<InboundTable>();
  EspCounters counters;
  uint8_t iv[kBurst][kGcmIvLen];
  uint8_t aad[kBurst][12];
  uint8_t nh[kBurst];

  EspBench(CryptoEngine& engine, uint32_t inner_len)
      : e(engine), len(inner_len), ct_len(inner_len + (4 - (inner_len + 2) % 4) % 4 + 2),
        mem(new uint8_t[kBurst * kStride + 64]) {
    uint8_t* base = mem.get() + (64 - reinterpret_cast<uintptr_t>(mem.get()) % 64) % 64;
    uint8_t key[kGcmKeyLen], salt[kEspSaltLen] = {0xde, 0xad, 0xbe, 0xef};
    for (uint32_t i = 0; i < kGcmKeyLen; ++i) key[i] = static_cast<uint8_t>(i * 7 + 1);
    EspPath path;
    path.smac = MacAddr{{2, 0, 0, 0, 0, 1}};
    path.dmac = MacAddr{{2, 0, 0, 0, 0, 2}};
    path.src = Ipv4{0x0a010002};
    path.dst = Ipv4{0x0a010102};
    out = std::make_unique<OutboundSa>(e, kSpi, key, salt, true, kEspSeqLimitEsn, path);
    in = std::make_unique<InboundSa>(e, kSpi, key, salt, true, ReplayWindow::kMinSize);
    table->install(in.get());
    for (uint32_t i = 0; i < kBurst; ++i) {
      m[i] = reinterpret_cast<rte_mbuf*>(base + i * kStride);
      std::memset(m[i], 0, sizeof(rte_mbuf));
      m[i]->buf_addr = reinterpret_cast<uint8_t*>(m[i]) + sizeof(rte_mbuf);
      m[i]->buf_len = kBuf;
      m[i]->nb_segs = 1;
      rte_mbuf_refcnt_set(m[i], 1);
      reset(i);
      uint8_t* d = rte_pktmbuf_mtod(m[i], uint8_t*);
      for (uint32_t j = 0; j < len; ++j) d[j] = static_cast<uint8_t>(i * 31 + j);
      if (len >= 20) d[0] = 0x45;
    }
    for (uint32_t i = 0; i < kBurst; ++i) std::memcpy(iv[i], salt, 4);
    fresh_frames();
  }

  void reset(uint32_t i) {
    m[i]->data_off = RTE_PKTMBUF_HEADROOM;
    m[i]->data_len = static_cast<uint16_t>(len);
    m[i]->pkt_len = len;
  }
  // Decryption's input: the next 32 packets of the outbound SA, freshly encrypted into the
  // mbufs (the window moves on as with real traffic), and their nonces and AADs for the raw calls.
  bool fresh_frames() {
    for (uint32_t i = 0; i < kBurst; ++i) reset(i);
    if (!encrypt_ok()) return false;
    for (uint32_t i = 0; i < kBurst; ++i) {
      const uint8_t* f = rte_pktmbuf_mtod(m[i], const uint8_t*);
      std::memcpy(iv[i] + 4, f + 50, 8);
      std::memcpy(aad[i], f + 42, 4);
      std::memcpy(aad[i] + 4, f + 50, 4);  // the IV is the 64-bit sequence number
      std::memcpy(aad[i] + 8, f + 46, 4);
    }
    return true;
  }
  bool encrypt_ok() {
    return esp_encrypt_burst(e, *out, std::span<rte_mbuf*>(m, kBurst), kEspNextIpv4, counters) == kBurst;
  }
  bool decrypt_ok() {
    return esp_decrypt_burst(e, *table, std::span<rte_mbuf*>(m, kBurst), counters, nh) == kBurst;
  }
  // The AES-GCM that ESP does, and nothing else, on the same bytes of the same buffers.
  bool raw(bool seal) {
    IMB_MGR* mgr = e.mgr();
    bool ok = true;
    for (uint32_t i = 0; i < kBurst; ++i) {
      uint8_t* d = rte_pktmbuf_mtod(m[i], uint8_t*) + (seal ? 0 : kEspPrepend);
      alignas(64) gcm_context_data ctx;
      alignas(16) uint8_t computed[kGcmTagLen];
      if (seal) {
        IMB_AES256_GCM_ENC(mgr, &out->key.data, &ctx, d, d, ct_len, iv[i], aad[i], 12, d + ct_len, kGcmTagLen);
      } else {
        IMB_AES256_GCM_DEC(mgr, &in->key.data, &ctx, d, d, ct_len, iv[i], aad[i], 12, computed, kGcmTagLen);
        ok &= std::memcmp(computed, d + ct_len, kGcmTagLen) == 0;
      }
    }
    return ok;
  }
};

void run_esp(benchmark::State& state, bool decrypt, bool esp, uint32_t len) {
  auto r = CryptoEngine::create();
  if (!r.ok()) {
    state.SkipWithError(r.error().msg.c_str());
    return;
  }
  auto b = std::make_unique<EspBench>(*r.value(), len);
  std::vector<uint64_t> samples;
  samples.reserve(state.max_iterations);
  bool ok = true;
  for (auto _ : state) {
    if (decrypt) {
      ok &= b->fresh_frames();
    } else {
      for (uint32_t i = 0; i < kBurst; ++i) b->reset(i);
    }
    const uint64_t t0 = tsc();
    ok &= esp ? (decrypt ? b->decrypt_ok() : b->encrypt_ok()) : b->raw(!decrypt);
    const uint64_t t1 = tsc();
    samples.push_back(t1 - t0);
    state.SetIterationTime(static_cast<double>(t1 - t0) / tsc_per_ns() * 1e-9);
    benchmark::ClobberMemory();
  }
  if (!ok) {
    state.SkipWithError("a burst lost packets or a tag did not verify: the benchmark's buffers are wrong");
    return;
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  const double ns = static_cast<double>(samples[samples.size() / 2]) / tsc_per_ns() / kBurst;
  EspFigure& fig = esp_figures()[{decrypt, len}];
  (esp ? fig.esp_ns : fig.raw_ns) = ns;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
  state.counters["ns/pkt"] = ns;
  state.counters["Gbps"] = len * 8.0 / ns;
  if (esp && fig.raw_ns > 0) state.counters["ratio"] = fig.raw_ns / ns;
}

void print_esp_summary() {
  if (esp_figures().empty()) return;
  std::printf("\nESP transform, bursts of %u, ESN on, median ns/packet (ratio = raw AES-GCM / ESP):\n", kBurst);
  std::printf("  %-8s %6s %10s %10s %7s\n", "op", "inner", "raw", "esp", "ratio");
  for (const auto& [k, f] : esp_figures()) {
    if (f.raw_ns <= 0 || f.esp_ns <= 0) continue;
    std::printf("  %-8s %6u %10.1f %10.1f %7.2f\n", k.first ? "decrypt" : "encrypt", k.second, f.raw_ns, f.esp_ns,
                f.raw_ns / f.esp_ns);
  }
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
  for (bool decrypt : {false, true}) {
    for (uint32_t len : {64u, 512u, 1400u}) {
      for (bool esp : {false, true}) {
        const std::string name = std::string(decrypt ? "esp_decrypt/" : "esp_encrypt/") + (esp ? "esp/" : "raw/") +
                                 std::to_string(len);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
          sdwan::dp::run_esp(s, decrypt, esp, len);
        })->UseManualTime();
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  sdwan::dp::print_esp_summary();
  benchmark::Shutdown();
  return 0;
}
