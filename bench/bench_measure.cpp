// control/measure at hub scale: 4,000 paths probed every 100 ms, so 40,000 replies per second,
// with the counters of every path read at the probe rate and a control tick every 10 ms. One
// benchmark iteration is one simulated second; the figures are the control thread's CPU per
// path per second and the share of one core that is. Google Benchmark; never a test.
//
//   bench_measure                       every case
//   bench_measure --benchmark_filter=Second/4000
//
// Counters: ns_per_path_s = CPU ns for one path's second (all work / 4,000 / simulated s),
// core_pct = CPU s per simulated s, in percent of one core (both from the thread's CPU clock
// over the timed loop). MB = PathMonitor::memory_bytes().
// Built with the project's default flags (debugoptimized: -O2 -g), as the daemon is.
#include <benchmark/benchmark.h>
#include <time.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/measure/measure.hpp"

namespace sdwan::cp {
namespace {

constexpr uint64_t kMs = 1'000'000, kS = 1'000'000'000;
constexpr uint64_t kTick = 10 * kMs;

// A fleet of paths and the reflectors behind them, advanced one tick at a time. Each path has
// its own phase inside the probe interval, RTT around 20..60 ms with a little jitter, and
// about 1 % forward loss, so every estimator and the state machine do their real work.
struct Fleet {
  Fleet(uint32_t paths, uint64_t interval) : n(paths), interval_ns(interval), st(paths) {
    for (uint32_t i = 0; i < n; ++i) {
      PathSpec s;
      s.id = static_cast<uint16_t>(i);
      s.name = "path" + std::to_string(i);
      s.port = static_cast<uint8_t>(i % 4);
      s.state.interval_ns = interval;
      if (!mon.add_path(s, 0)) std::abort();
      st[i].base_rtt = 20 * kMs + (i % 41) * kMs;
    }
  }

  struct PathSim {
    uint32_t seq = 0;
    uint64_t refl_rx = 0, data = 0, base_rtt = 0;
  };

  uint64_t rnd() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }

  // Everything that happens in (now, now + kTick]: each path whose probe falls in it gets its
  // reply and a counter read; then one tick.
  void step() {
    const uint64_t from = now;
    now += kTick;
    const uint64_t per_tick = n * kTick / interval_ns;  // paths probed in this tick
    for (uint64_t k = 0; k < per_tick; ++k) {
      const auto i = static_cast<uint32_t>(cursor);
      cursor = (cursor + 1) % n;
      PathSim& p = st[i];
      const uint32_t seq = p.seq++;
      const bool lost = rnd() % 100 == 0;
      p.data += 50;
      if (!lost) {
        ++p.refl_rx;
        const uint64_t rtt = p.base_rtt + rnd() % (2 * kMs);
        ProbeSample s;
        s.path = static_cast<uint16_t>(i);
        s.seq = seq;
        s.t4_ns = from + k * kTick / per_tick;
        s.t1_ns = s.t4_ns - rtt;
        s.t2_ns = s.t1_ns + rtt / 2 + 0x55550000ULL;
        s.t3_ns = s.t2_ns + 20'000;
        s.refl_probes_rx = p.refl_rx;
        s.refl_spi = 0x1000 + i;
        s.refl_data_rx = p.data - p.data / 200;
        s.refl_data_top = p.data;
        mon.on_sample(s, s.t4_ns);
      }
      mon.on_counters(static_cast<uint16_t>(i), p.seq, p.data, p.data, SaCounters{0x2000 + i, p.data, p.data}, now);
      // The snapshot's figures, refreshed once per probe interval per path.
      if (publish) published += mon.metrics(static_cast<uint16_t>(i), now)->loss_fwd_pct.value_or(0);
    }
    events += mon.tick(now).size();
  }

  void second() {
    for (uint64_t t = 0; t < kS; t += kTick) step();
  }

  uint32_t n;
  uint64_t interval_ns;
  PathMonitor mon;
  std::vector<PathSim> st;
  uint64_t now = 0, cursor = 0, events = 0;
  bool publish = false;
  double published = 0;
  uint64_t x = 88172645463325252ULL;
};

uint64_t cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kS + static_cast<uint64_t>(ts.tv_nsec);
}

// The thread's CPU time over the timed loop, per simulated second, as plain numbers.
void set_counters(benchmark::State& state, uint32_t paths, uint64_t cpu, size_t bytes) {
  const double per_second = static_cast<double>(cpu) / static_cast<double>(state.iterations());
  state.counters["ns_per_path_s"] = per_second / paths;
  state.counters["core_pct"] = 100.0 * per_second / kS;
  state.counters["MB"] = static_cast<double>(bytes) / 1e6;
}

// One simulated second of replies, counter reads and ticks.
void BM_Second(benchmark::State& state) {
  const auto paths = static_cast<uint32_t>(state.range(0));
  const uint64_t interval = static_cast<uint64_t>(state.range(1)) * kMs;
  Fleet f(paths, interval);
  for (int i = 0; i < 12; ++i) f.second();  // full windows before measuring
  f.events = 0;
  const uint64_t t0 = cpu_ns();
  for (auto _ : state) f.second();
  set_counters(state, paths, cpu_ns() - t0, f.mon.memory_bytes());
  // Random 1 % loss rarely takes 3 probes in a row: a few changes per run, not a flapping fleet.
  state.counters["changes_per_s"] = benchmark::Counter(static_cast<double>(f.events) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_Second)->Args({4000, 100})->Args({1000, 100})->Args({4000, 10})->Unit(benchmark::kMillisecond);

// The same second plus the snapshot's figures (PathMonitor::metrics) for every path every interval.
void BM_SecondWithMetrics(benchmark::State& state) {
  const auto paths = static_cast<uint32_t>(state.range(0));
  const uint64_t interval = static_cast<uint64_t>(state.range(1)) * kMs;
  Fleet f(paths, interval);
  f.publish = true;
  for (int i = 0; i < 12; ++i) f.second();
  const uint64_t t0 = cpu_ns();
  for (auto _ : state) f.second();
  set_counters(state, paths, cpu_ns() - t0, f.mon.memory_bytes());
  benchmark::DoNotOptimize(f.published);
}
BENCHMARK(BM_SecondWithMetrics)->Args({4000, 100})->Args({4000, 10})->Unit(benchmark::kMillisecond);

// The same second plus one view of every path (a `show paths` or metrics scrape each second).
void BM_SecondWithViews(benchmark::State& state) {
  const auto paths = static_cast<uint32_t>(state.range(0));
  const uint64_t interval = static_cast<uint64_t>(state.range(1)) * kMs;
  Fleet f(paths, interval);
  for (int i = 0; i < 12; ++i) f.second();
  double sink = 0;
  const uint64_t t0 = cpu_ns();
  for (auto _ : state) {
    f.second();
    for (uint32_t i = 0; i < paths; ++i) sink += f.mon.view(static_cast<uint16_t>(i), f.now)->rtt_p99_ms.value_or(0);
  }
  set_counters(state, paths, cpu_ns() - t0, f.mon.memory_bytes());
  benchmark::DoNotOptimize(sink);
}
BENCHMARK(BM_SecondWithViews)->Args({4000, 100})->Args({4000, 10})->Unit(benchmark::kMillisecond);

// One view (percentiles over a full window) alone.
void BM_View(benchmark::State& state) {
  const uint64_t interval = static_cast<uint64_t>(state.range(0)) * kMs;
  Fleet f(64, interval);
  for (int i = 0; i < 12; ++i) f.second();
  uint16_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.mon.view(i, f.now));
    i = static_cast<uint16_t>((i + 1) % 64);
  }
}
BENCHMARK(BM_View)->Arg(100)->Arg(10);

}  // namespace
}  // namespace sdwan::cp

BENCHMARK_MAIN();
