// Micro-benchmarks of the per-packet pieces: ns per packet (items/s in the output) for header
// parsing, the flow cache at 1 and 1,000,000 flows, checksums and TTL decrement. Figures are
// for comparison between runs on one machine, never pass/fail.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "dataplane/api/policy.hpp"
#include "dataplane/flow/flow_cache.hpp"
#include "dataplane/parse/parse.hpp"
#include "dataplane/proto/proto.hpp"

namespace sdwan::dp {
namespace {

// The worker processes bursts of this many packets; prefetching runs this far ahead.
constexpr uint32_t kBurst = 32;

struct Rng {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  uint64_t operator()() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

// A valid Ethernet [VLAN] IPv4 TCP SYN with an MSS option, or an IPv6 UDP datagram.
std::vector<uint8_t> make_frame(int kind) {
  std::vector<uint8_t> f(kind == 2 ? 14 + 40 + 8 + 64 : 14 + 4 * (kind == 1) + 20 + 24 + 64);
  uint32_t off = 12;
  if (kind == 1) {
    be::store16(f.data() + off, kEtherVlan);
    be::store16(f.data() + off + 2, 10);
    off += 4;
  }
  if (kind == 2) {
    be::store16(f.data() + off, kEtherIpv6);
    uint8_t* ip = f.data() + off + 2;
    ip[0] = 0x60;
    be::store16(ip + 4, 8 + 64);
    ip[6] = kProtoUdp;
    ip[7] = 64;
    ip[8 + 15] = 1;
    ip[24 + 15] = 2;
    be::store16(ip + 40, 5000);
    be::store16(ip + 42, 53);
    return f;
  }
  be::store16(f.data() + off, kEtherIpv4);
  uint8_t* ip = f.data() + off + 2;
  ip[0] = 0x45;
  be::store16(ip + 2, 20 + 24 + 64);
  ip[8] = 64;
  ip[9] = kProtoTcp;
  be::store32(ip + 12, 0x0a000001);
  be::store32(ip + 16, 0x0a000102);
  const uint16_t c = inet_checksum(ip, 20);
  std::memcpy(ip + 10, &c, 2);
  uint8_t* tcp = ip + 20;
  be::store16(tcp, 40000);
  be::store16(tcp + 2, 443);
  tcp[12] = 6 << 4;
  tcp[13] = 0x02;
  tcp[20] = 2;
  tcp[21] = 4;
  be::store16(tcp + 22, 1460);
  return f;
}

void BM_ParseFrame(benchmark::State& state) {
  const std::vector<uint8_t> f = make_frame(static_cast<int>(state.range(0)));
  const bool verify = state.range(1) != 0;
  HeaderView hv;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.data());
    const ParseError e = parse_frame(f.data(), static_cast<uint32_t>(f.size()), &hv, verify);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(hv);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
// kind: 0 IPv4 TCP, 1 VLAN IPv4 TCP, 2 IPv6 UDP; second arg: verify the IPv4 checksum.
BENCHMARK(BM_ParseFrame)->ArgNames({"kind", "csum"})->Args({0, 1})->Args({0, 0})->Args({1, 1})->Args({2, 1});

// n distinct flows, and the keys of packets of those flows in a random arrival order (laid
// out in arrival order, as the worker has them in the burst it just parsed).
struct Flows {
  std::vector<FlowKey> keys;
  std::vector<FlowKey> packets;
};

constexpr uint32_t kPackets = 1u << 20;

Flows make_flows(uint32_t n) {
  Flows fl;
  Rng rng;
  fl.keys.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t r = rng();
    FlowKey k{};
    k.src = static_cast<uint32_t>(r);
    k.dst = i;
    k.sport = static_cast<uint16_t>(r >> 32);
    k.dport = static_cast<uint16_t>(r >> 48);
    k.proto = kProtoUdp;
    fl.keys[i] = k;
  }
  fl.packets.resize(kPackets);
  for (auto& p : fl.packets) p = fl.keys[rng() % n];
  return fl;
}

// The worker's default table (65536 slots), or twice the flows when they need more.
std::unique_ptr<FlowCache> make_cache(uint32_t n) {
  return std::make_unique<FlowCache>(std::max<uint32_t>(65536, 2 * n));
}

// mode 0: hash + lookup per packet; 1: hashes and bucket prefetches for the burst first;
// 2: lookup_burst. Each hit touches its entry as the worker does.
void BM_FlowCacheHit(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto mode = state.range(1);
  const Flows fl = make_flows(n);
  auto cache = make_cache(n);
  for (const FlowKey& k : fl.keys) cache->insert(k, FlowCache::hash(k), 1, UINT64_MAX);
  uint32_t pos = 0;
  uint64_t now = 2;
  uint32_t hashes[kBurst];
  FlowEntry* found[kBurst];
  for (auto _ : state) {
    const FlowKey* keys = &fl.packets[pos];
    if (mode == 0) {
      for (uint32_t i = 0; i < kBurst; ++i) found[i] = cache->lookup(keys[i], FlowCache::hash(keys[i]));
    } else {
      for (uint32_t i = 0; i < kBurst; ++i) {
        hashes[i] = FlowCache::hash(keys[i]);
        if (mode == 1) cache->prefetch(hashes[i]);
      }
      if (mode == 1) {
        for (uint32_t i = 0; i < kBurst; ++i) found[i] = cache->lookup(keys[i], hashes[i]);
      } else {
        cache->lookup_burst(keys, hashes, kBurst, found);
      }
    }
    for (uint32_t i = 0; i < kBurst; ++i) cache->touch(found[i], now, 64);
    ++now;
    pos = (pos + kBurst) & (kPackets - 1);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
  state.counters["fill"] = static_cast<double>(cache->size());
}
BENCHMARK(BM_FlowCacheHit)->ArgNames({"flows", "mode"})
    ->Args({1, 0})->Args({1, 1})->Args({1, 2})
    ->Args({1000000, 0})->Args({1000000, 1})->Args({1000000, 2});

// Issue 6: what the worker does per packet of a known flow before the overlay, a flow-cache hit
// and the path choice: the cached path when the decision is of the current snapshot, then the
// class's per-packet step (spray's next table entry, duplicate's second path), as to_peer does.
// mode: 0 best, 1 balance, 2 spray, 3 duplicate (dp::ClassMode); 1 or 1,000,000 flows.
void BM_FlowHitPathChoice(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto mode = static_cast<ClassMode>(state.range(1));
  const Flows fl = make_flows(n);
  auto cache = make_cache(n);
  Policy pol;
  pol.n_classes = 1;
  pol.n_peers = 1;
  ClassPaths cp;
  cp.mode = mode;
  cp.primary = 0;
  cp.secondary = 1;
  for (uint16_t i = 0; i < 307; ++i) cp.lut.push_back(i % 4);
  pol.paths.push_back(cp);
  constexpr uint32_t kGen = 7;
  for (const FlowKey& k : fl.keys) {
    FlowEntry* e = cache->insert(k, FlowCache::hash(k), 1, UINT64_MAX);
    e->gen = kGen;
    e->path = static_cast<uint16_t>(k.sport % 4);
  }
  uint32_t pos = 0;
  uint64_t spray_next = 0, sum = 0;
  uint32_t hashes[kBurst];
  FlowEntry* found[kBurst];
  for (auto _ : state) {
    const FlowKey* keys = &fl.packets[pos];
    for (uint32_t i = 0; i < kBurst; ++i) hashes[i] = FlowCache::hash(keys[i]);
    cache->lookup_burst(keys, hashes, kBurst, found);
    for (uint32_t i = 0; i < kBurst; ++i) {
      FlowEntry* e = found[i];
      uint32_t path = e->gen == kGen ? e->path : 0;
      const ClassPaths& c = pol.at(e->cls, 0);
      uint32_t second = kNoPathId;
      if (c.mode == ClassMode::kSpray) path = c.lut[spray_next++ % c.lut.size()];
      else if (c.mode == ClassMode::kDuplicate && c.duplicating && c.secondary != path) second = c.secondary;
      cache->touch(e, pos, 64);
      sum += path + second;
    }
    pos = (pos + kBurst) & (kPackets - 1);
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
}
BENCHMARK(BM_FlowHitPathChoice)->ArgNames({"flows", "mode"})
    ->Args({1, 0})->Args({1, 1})->Args({1, 2})->Args({1, 3})
    ->Args({1000000, 0})->Args({1000000, 1})->Args({1000000, 2})->Args({1000000, 3});

// A packet of a new flow: lookup misses, insert; the flow is erased again so the table stays
// at n flows (the erase hits the bucket the insert just brought into cache).
void BM_FlowCacheMissInsert(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const Flows fl = make_flows(n);
  auto cache = make_cache(n);
  for (const FlowKey& k : fl.keys) cache->insert(k, FlowCache::hash(k), 1, UINT64_MAX);
  Rng rng;
  std::vector<FlowKey> fresh(kPackets);
  for (auto& k : fresh) {
    k = FlowKey{};
    const uint64_t r = rng();
    k.src = static_cast<uint32_t>(r);
    k.dst = 0xf0000000u | static_cast<uint32_t>(r >> 40);
    k.sport = static_cast<uint16_t>(r >> 24);
    k.proto = kProtoTcp;
  }
  uint32_t pos = 0;
  uint64_t now = 2;
  for (auto _ : state) {
    const FlowKey& k = fresh[pos];
    const uint32_t h = FlowCache::hash(k);
    FlowEntry* e = cache->lookup(k, h);
    if (!e) e = cache->insert(k, h, now, UINT64_MAX);
    benchmark::DoNotOptimize(e);
    cache->erase(k, h);
    ++now;
    pos = (pos + 1) & (kPackets - 1);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["fill"] = static_cast<double>(cache->size());
}
BENCHMARK(BM_FlowCacheMissInsert)->ArgName("flows")->Arg(1)->Arg(1000000);

// Keys are read from an array, never written in the loop: a key stored just before it is
// hashed would measure a store-forwarding stall, not the hash.
void BM_FlowKeyHash(benchmark::State& state) {
  const Flows fl = make_flows(4096);
  uint32_t i = 0;
  uint32_t sink = 0;
  for (auto _ : state) {
    sink += FlowCache::hash(fl.keys[i]);
    i = (i + 1) & 4095;
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_FlowKeyHash);

void BM_InetChecksum(benchmark::State& state) {
  std::vector<uint8_t> buf(static_cast<size_t>(state.range(0)));
  Rng rng;
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf.data());
    benchmark::DoNotOptimize(inet_checksum(buf.data(), buf.size()));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_InetChecksum)->ArgName("bytes")->Arg(20)->Arg(1500);

// 1024 headers decremented in turn (as packets arrive, not the same bytes over and over); their
// TTLs are put back every 250 rounds, far from the loads that follow.
void BM_Ipv4TtlDecrement(benchmark::State& state) {
  constexpr uint32_t kHeaders = 1024;
  const std::vector<uint8_t> f = make_frame(0);
  std::vector<uint8_t> hdrs(kHeaders * 32);
  for (uint32_t h = 0; h < kHeaders; ++h) {
    std::memcpy(&hdrs[h * 32], f.data() + 14, 20);
    hdrs[h * 32 + 8] = 255;
  }
  uint32_t i = 0;
  uint32_t round = 0;
  for (auto _ : state) {
    if (i == 0 && ++round == 250) {
      for (uint32_t h = 0; h < kHeaders; ++h) hdrs[h * 32 + 8] = 255;
      round = 0;
    }
    ipv4_ttl_decrement(&hdrs[i * 32]);
    i = (i + 1) & (kHeaders - 1);
  }
  benchmark::DoNotOptimize(hdrs.data());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Ipv4TtlDecrement);

void BM_ClampTcpMss(benchmark::State& state) {
  const std::vector<uint8_t> orig = make_frame(0);
  std::vector<uint8_t> f = orig;
  HeaderView hv;
  parse_frame(f.data(), static_cast<uint32_t>(f.size()), &hv);
  for (auto _ : state) {
    be::store16(f.data() + 14 + 20 + 22, 1460);
    benchmark::DoNotOptimize(clamp_tcp_mss(f.data(), static_cast<uint32_t>(f.size()), hv, 1360));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ClampTcpMss);

}  // namespace
}  // namespace sdwan::dp

BENCHMARK_MAIN();
