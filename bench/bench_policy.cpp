// control/policy (issue 6): the Maglev table rebuild and the policy compiler at hub scale.
// Google Benchmark; never a test. Time is per iteration: one table, 1,000 tables, or one compile;
// MaglevPerPeer's items_per_second is tables per second.
//
//   bench_policy                                    every case
//   bench_policy --benchmark_filter=Maglev
//
// - MaglevOneTable/4000: one weighted table over 4,000 paths (400,009 entries), the issue's
//   figure; the compiler never builds one that big (tables are per (class, peer)).
// - MaglevPerPeer/1000: the realistic case, 1,000 peers x 4 paths, one table each (401 entries).
// - CompileSteady: a full compile of 4 classes x 1,000 peers x 4 paths when the figures move a
//   little (no table rebuilt, the same Policy returned): the cost every probe interval.
// - CompileChurn: the same with one uplink's RTT swinging every compile, so every balance and
//   spray table is rebuilt and a new Policy is published.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/policy/compiler.hpp"
#include "control/policy/maglev.hpp"

namespace sdwan::cp {
namespace {

constexpr uint64_t kMs = 1'000'000;

void MaglevOneTable(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  std::vector<MaglevPath> paths;
  for (uint32_t i = 0; i < n; ++i) paths.push_back({static_cast<uint16_t>(i), 500 + (i * 37) % 500});
  const uint32_t m = maglev_size(n);
  MaglevBuilder b;
  std::vector<uint16_t> table;
  for (auto _ : state) {
    b.build(paths, m, table);
    benchmark::DoNotOptimize(table.data());
  }
  state.counters["entries"] = m;
}
BENCHMARK(MaglevOneTable)->Arg(16)->Arg(4000)->Unit(benchmark::kMicrosecond);

void MaglevPerPeer(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  constexpr uint32_t kPerPeer = 4;
  const uint32_t m = maglev_size(kPerPeer);
  MaglevBuilder b;
  std::vector<std::vector<uint16_t>> tables(peers);
  std::vector<MaglevPath> paths(kPerPeer);
  for (auto _ : state) {
    for (uint32_t p = 0; p < peers; ++p) {
      for (uint32_t k = 0; k < kPerPeer; ++k)
        paths[k] = {static_cast<uint16_t>(p * kPerPeer + k), 250 + 250 * k};
      b.build(paths, m, tables[p]);
    }
    benchmark::DoNotOptimize(tables.data());
  }
  state.counters["entries"] = m;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * peers);  // tables per second
}
BENCHMARK(MaglevPerPeer)->Arg(1000)->Unit(benchmark::kMicrosecond);

// 4 classes like the lab's: voice (best, SLA), critical (duplicate), video (spray), bulk (balance).
std::vector<ClassConfig> lab_classes() {
  std::vector<ClassConfig> cs(4);
  cs[0].name = "voice";
  cs[0].match = {MatchRule{.proto = 17, .dport = PortRange{5004, 5004}}};
  cs[0].sla.latency_ms = 150;
  cs[0].sla.jitter_ms = 30;
  cs[0].sla.loss_pct = 1;
  cs[1].name = "critical";
  cs[1].match = {MatchRule{.proto = 17, .dport = PortRange{5005, 5005}}};
  cs[1].mode = dp::ClassMode::kDuplicate;
  cs[2].name = "video";
  cs[2].match = {MatchRule{.proto = 17, .dport = PortRange{5006, 5006}}};
  cs[2].mode = dp::ClassMode::kSpray;
  cs[3].name = "bulk";
  cs[3].is_default = true;
  cs[3].mode = dp::ClassMode::kBalance;
  return cs;
}

struct Hub {
  explicit Hub(uint32_t peers) : pc(lab_classes(), PolicyConfig{}, names(peers)) {
    for (uint32_t p = 0; p < peers; ++p)
      for (uint8_t u = 0; u < 4; ++u) {
        PathInput x;
        x.id = static_cast<uint16_t>(p * 4 + u);
        x.peer = static_cast<uint16_t>(p);
        x.uplink = u;
        x.metered = u == 3;
        x.bandwidth_bps = 100'000'000ULL * (u + 1);
        x.up = true;
        x.rtt_ms = 20.0 + 10 * u + p % 7;
        x.jitter_ms = 1;
        x.loss_pct = 0;
        in.push_back(x);
      }
  }
  static std::vector<std::string> names(uint32_t peers) {
    std::vector<std::string> v;
    for (uint32_t p = 0; p < peers; ++p) v.push_back("peer" + std::to_string(p));
    return v;
  }
  PolicyCompiler pc;
  std::vector<PathInput> in;
};

void CompileSteady(benchmark::State& state) {
  Hub hub(static_cast<uint32_t>(state.range(0)));
  uint64_t now = 1'000'000'000;
  hub.pc.compile(hub.in, now);
  uint64_t i = 0;
  for (auto _ : state) {
    // Noise well inside the margin: the figures change, the decisions do not.
    for (auto& x : hub.in) *x.rtt_ms += (i & 1) ? 0.3 : -0.3;
    now += 100 * kMs;
    benchmark::DoNotOptimize(hub.pc.compile(hub.in, now).get());
    ++i;
  }
  state.counters["paths"] = double(hub.in.size());
}
BENCHMARK(CompileSteady)->Arg(1000)->Unit(benchmark::kMicrosecond);

void CompileChurn(benchmark::State& state) {
  Hub hub(static_cast<uint32_t>(state.range(0)));
  uint64_t now = 1'000'000'000;
  hub.pc.compile(hub.in, now);
  uint64_t i = 0;
  for (auto _ : state) {
    // Uplink 1's RTT swings by 60 ms: its weights move beyond the margin every time.
    for (auto& x : hub.in)
      if (x.uplink == 1) *x.rtt_ms += (i & 1) ? 60 : -60;
    now += 100 * kMs;
    benchmark::DoNotOptimize(hub.pc.compile(hub.in, now).get());
    ++i;
  }
  state.counters["paths"] = double(hub.in.size());
}
BENCHMARK(CompileChurn)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sdwan::cp

BENCHMARK_MAIN();
