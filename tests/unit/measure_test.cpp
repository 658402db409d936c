// control/measure: RTT, EWMA, percentiles, jitter, probe loss per direction, ESP-gap loss, and
// the path state machine (missed probes, link, hold-up, damping, early down), all with an
// injected clock. Expected values come from the test's own record of what it did (which probes
// it dropped, which RTTs it chose), never from the code under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "control/measure/estimator.hpp"
#include "control/measure/measure.hpp"
#include "control/measure/path_state.hpp"

namespace sdwan::cp {
namespace {

constexpr uint64_t kUs = 1'000, kMs = 1'000'000, kS = 1'000'000'000;

// A reply for probe `seq` that arrives at now with the given RTT; the reflector's clock is
// ours + offset (mod 2^64), its turnaround 30 us.
ProbeSample crafted(uint32_t seq, uint64_t rtt_ns, uint64_t now, uint64_t refl_rx, uint64_t offset = 0x1234'5678'9abcULL) {
  ProbeSample s;
  s.path = 1;
  s.seq = seq;
  s.t4_ns = now;
  s.t1_ns = now - rtt_ns - 30 * kUs;
  s.t2_ns = s.t1_ns + rtt_ns / 2 + offset;
  s.t3_ns = s.t2_ns + 30 * kUs;
  s.refl_probes_rx = refl_rx;
  return s;
}

// The next reply, 100 ms after the previous one.
void next(PathEstimator& e, uint64_t& now, uint32_t seq, uint64_t rtt_ns, uint64_t refl_rx) {
  now += 100 * kMs;
  e.on_sample(crafted(seq, rtt_ns, now, refl_rx), now);
}

EstimatorStats stats_of(PathEstimator& e, uint64_t now) {
  std::vector<uint32_t> scratch(e.capacity());
  return e.stats(now, scratch);
}

// The nearest-rank percentile, from a full sort: the reference for nth_element.
double ref_percentile_ms(std::vector<uint32_t> v, uint32_t pct) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(pct / 100.0 * static_cast<double>(v.size())));
  return v[std::max<size_t>(rank, 1) - 1] / 1e6;
}

// ---------------------------------------------------------------- RTT

struct RttCase {
  const char* name;
  uint64_t t1, t2, t3, t4;
  double rtt_ms;
};

TEST(MeasureRtt, ExactFromTimestampsWhateverTheReflectorsClock) {
  const uint64_t big = 3600 * kS;
  const RttCase cases[] = {
      {"same clock", 1 * kS, 1 * kS + 5 * kMs, 1 * kS + 5 * kMs + 20 * kUs, 1 * kS + 12 * kMs + 20 * kUs, 12.0},
      {"reflector an hour ahead", 5 * kS, 5 * kS + big + 3 * kMs, 5 * kS + big + 3 * kMs + 1 * kMs,
       5 * kS + 11 * kMs, 10.0},
      // The reflector's clock is far behind ours: its stamps wrap below zero in 64 bits.
      {"reflector behind, wrapped", 2 * kMs, 2 * kMs + 1 * kMs - big, 2 * kMs + 1 * kMs - big + 500 * kUs,
       2 * kMs + 7 * kMs, 6.5},
      {"no turnaround", 100, 100 + 777, 100 + 777, 100 + 2'000'123, 2.000123},
      // A turnaround longer than our own (a clock step on the reflector) is no negative RTT.
      {"clock step", 10 * kS, 0, 2 * kS, 10 * kS + 1 * kMs, 0.0},
  };
  for (const RttCase& c : cases) {
    PathEstimator e({100 * kMs, 10 * kS});
    ProbeSample s;
    s.t1_ns = c.t1;
    s.t2_ns = c.t2;
    s.t3_ns = c.t3;
    s.t4_ns = c.t4;
    e.on_sample(s, 20 * kS);
    const EstimatorStats st = stats_of(e, 20 * kS);
    ASSERT_TRUE(st.rtt_ms) << c.name;
    EXPECT_NEAR(*st.rtt_ms, c.rtt_ms, 1e-9) << c.name;
    EXPECT_NEAR(*st.rtt_min_ms, c.rtt_ms, 1e-9) << c.name;
    EXPECT_NEAR(*st.rtt_p99_ms, c.rtt_ms, 1e-9) << c.name;
    EXPECT_EQ(e.probes_received(), 1u) << c.name;
  }
}

TEST(MeasureRtt, ReplyOlderThanItsProbeIsIgnored) {
  PathEstimator e({100 * kMs, 10 * kS});
  ProbeSample s;
  s.t1_ns = 10 * kS;
  s.t4_ns = 9 * kS;
  EXPECT_FALSE(e.on_sample(s, 10 * kS));
  EXPECT_EQ(e.probes_received(), 0u);
  EXPECT_FALSE(stats_of(e, 10 * kS).rtt_ms);
}

TEST(MeasureRtt, EwmaFollowsAStepAsSevenEighthsPowers) {
  PathEstimator e({100 * kMs, 10 * kS});
  uint64_t now = kS;
  uint32_t seq = 0;
  for (int i = 0; i < 10; ++i, ++seq) next(e, now, seq, 10 * kMs, seq + 1);
  EXPECT_NEAR(*stats_of(e, now).rtt_ms, 10.0, 1e-9);
  // After k samples at 30 ms, SRTT = 30 - 20 (3/4)^k: the closed form of srtt += (rtt - srtt) / 4.
  for (int k = 1; k <= 30; ++k) {
    next(e, now, seq, 30 * kMs, seq + 1);
    ++seq;
    EXPECT_NEAR(*stats_of(e, now).rtt_ms, 30.0 - 20.0 * std::pow(3.0 / 4.0, k), 1e-6) << "k " << k;
  }
}

// ---------------------------------------------------------------- percentiles

TEST(MeasurePercentiles, MatchASortOfTheWindowsSamples) {
  struct Case {
    int samples;
    uint64_t spacing;
  };
  // 1, 2 and 7 samples; a full 10 s window of 100 ms samples out of 30 s (older ones expire);
  // replies faster than the interval (the ring's capacity bounds the window).
  const Case cases[] = {{1, 100 * kMs}, {2, 100 * kMs}, {7, 100 * kMs}, {300, 100 * kMs}, {1000, 5 * kMs}};
  std::mt19937_64 rng(42);
  for (const Case& c : cases) {
    PathEstimator e({100 * kMs, 10 * kS});
    std::vector<std::pair<uint64_t, uint32_t>> fed;  // arrival, rtt
    uint64_t now = kS;
    for (int i = 0; i < c.samples; ++i) {
      now += c.spacing;
      const auto rtt = static_cast<uint32_t>(1 * kMs + rng() % (80 * kMs));
      e.on_sample(crafted(static_cast<uint32_t>(i), rtt, now, static_cast<uint64_t>(i + 1)), now);
      fed.emplace_back(now, rtt);
    }
    std::vector<uint32_t> in_window;
    for (const auto& [at, rtt] : fed)
      if (now - at <= 10 * kS) in_window.push_back(rtt);
    if (in_window.size() > e.capacity()) in_window.erase(in_window.begin(), in_window.end() - e.capacity());
    const EstimatorStats st = stats_of(e, now);
    const std::string name = fmt::format("{} samples every {} ms", c.samples, c.spacing / kMs);
    ASSERT_EQ(st.window_samples, in_window.size()) << name;
    EXPECT_DOUBLE_EQ(*st.rtt_min_ms, *std::min_element(in_window.begin(), in_window.end()) / 1e6) << name;
    EXPECT_DOUBLE_EQ(*st.rtt_p50_ms, ref_percentile_ms(in_window, 50)) << name;
    EXPECT_DOUBLE_EQ(*st.rtt_p95_ms, ref_percentile_ms(in_window, 95)) << name;
    EXPECT_DOUBLE_EQ(*st.rtt_p99_ms, ref_percentile_ms(in_window, 99)) << name;
  }
}

TEST(MeasurePercentiles, EmptyWindowHasNoFigures) {
  PathEstimator e({100 * kMs, 10 * kS});
  e.on_sample(crafted(0, 5 * kMs, kS, 1), kS);
  EXPECT_TRUE(stats_of(e, kS + 10 * kS).rtt_p50_ms) << "exactly a window old: still in";
  const EstimatorStats st = stats_of(e, kS + 10 * kS + 1);
  EXPECT_EQ(st.window_samples, 0u);
  EXPECT_FALSE(st.rtt_ms);
  EXPECT_FALSE(st.rtt_min_ms);
  EXPECT_FALSE(st.rtt_p99_ms);
  EXPECT_FALSE(st.jitter_ms);
  EXPECT_FALSE(st.loss_fwd_pct);
}

// ---------------------------------------------------------------- jitter

TEST(MeasureJitter, Rfc3550OnRttMatchesAnIndependentComputation) {
  PathEstimator e({100 * kMs, 10 * kS});
  std::mt19937_64 rng(7);
  double j = 0;
  int64_t prev = 0;
  uint64_t now = kS;
  for (uint32_t i = 0; i < 500; ++i) {
    const auto rtt = static_cast<int64_t>(20 * kMs + rng() % (10 * kMs));
    next(e, now, i, static_cast<uint64_t>(rtt), i + 1);
    if (i > 0) j += (std::abs(static_cast<double>(rtt - prev)) - j) / 16.0;
    prev = rtt;
  }
  EXPECT_NEAR(*stats_of(e, now).jitter_ms, j / 1e6, 1e-9);
  EXPECT_GT(j, 1e6) << "the series does vary";
}

TEST(MeasureJitter, AlternatingRttConvergesToTheStep) {
  PathEstimator e({100 * kMs, 10 * kS});
  uint64_t now = kS;
  for (uint32_t n = 1; n <= 80; ++n) {
    next(e, now, n, n % 2 ? 10 * kMs : 14 * kMs, n);
    const EstimatorStats st = stats_of(e, now);
    if (n == 1) {
      EXPECT_FALSE(st.jitter_ms) << "one reply: no difference yet";
      continue;
    }
    // |D| = 4 ms at every step after the first: J_n = 4 (1 - (15/16)^(n-1)).
    EXPECT_NEAR(*st.jitter_ms, 4.0 * (1.0 - std::pow(15.0 / 16.0, n - 1)), 1e-9) << "n " << n;
  }
}

TEST(MeasureJitter, OneWayJitterLandsOnItsOwnDirection) {
  // Forward delay varies, reverse does not; the reflector's clock is off by a random amount.
  PathEstimator e({100 * kMs, 10 * kS});
  std::mt19937_64 rng(11);
  const uint64_t offset = rng();
  double jf = 0;
  uint64_t prev_owd = 0, now = kS;
  for (uint32_t i = 0; i < 300; ++i) {
    const uint64_t owd_fwd = 4 * kMs + rng() % (3 * kMs), owd_rev = 6 * kMs;
    ProbeSample s;
    s.seq = i;
    s.t1_ns = now;
    s.t2_ns = now + owd_fwd + offset;
    s.t3_ns = s.t2_ns + 25 * kUs;
    s.t4_ns = s.t3_ns - offset + owd_rev;
    s.refl_probes_rx = i + 1;
    now = s.t4_ns;
    e.on_sample(s, now);
    if (i > 0) jf += (std::abs(static_cast<double>(owd_fwd) - static_cast<double>(prev_owd)) - jf) / 16.0;
    prev_owd = owd_fwd;
    now += 100 * kMs;
  }
  const EstimatorStats st = stats_of(e, now);
  EXPECT_NEAR(*st.jitter_fwd_ms, jf / 1e6, 1e-9);
  EXPECT_EQ(*st.jitter_rev_ms, 0.0);
  EXPECT_NEAR(*st.jitter_ms, jf / 1e6, 1e-9) << "the RTT varies exactly as the forward delay";
}

// ---------------------------------------------------------------- a simulated path

// One path between us and a reflector, stepped 1 ms at a time: probes every interval, each
// dropped forward or backward at random (seeded) or by a blackout, replies delivered at their
// arrival time, counters and ticks every step. It records each probe's fate so that tests can
// compute the expected loss themselves.
struct Sim {
  static constexpr uint16_t kId = 7;
  static constexpr uint8_t kPort = 2;

  explicit Sim(PathSpec spec = {}, uint64_t seed = 1) : rng(seed), interval(spec.state.interval_ns) {
    spec.id = kId;
    spec.port = kPort;
    if (spec.name.empty()) spec.name = "isp1-hub";
    const Status s = mon.add_path(spec, 0);
    EXPECT_TRUE(s) << s.error().msg;
  }

  PathMonitor mon;
  std::mt19937_64 rng;
  uint64_t interval;
  uint64_t now = 0, next_probe = kMs, step = kMs;  // probe k leaves at 1 ms + k x interval
  uint64_t owd_fwd = 5 * kMs, owd_rev = 7 * kMs, turnaround = 30 * kUs;
  uint64_t offset = 0xfedc'ba98'7654'3210ULL;  // reflector's clock minus ours
  double p_fwd = 0, p_rev = 0;
  bool fwd_cut = false, rev_cut = false, sender_stalled = false;
  uint64_t data_tx_per_ms = 0, data_rx_per_ms = 0;

  struct Fate {
    bool fwd_lost, rev_lost;
  };
  std::vector<Fate> fate;  // per probe seq
  uint32_t seq = 0;
  uint64_t refl_rx = 0, data_tx = 0, data_rx = 0;
  uint64_t last_reply_at = 0, last_rx_change = 0;
  std::multimap<uint64_t, ProbeSample> flight;  // by arrival time
  std::vector<PathEvent> events;

  uint64_t sent_at(uint32_t k) const { return kMs + k * interval; }
  bool draw(double p) { return static_cast<double>(rng() >> 11) * 0x1p-53 < p; }

  void probe() {
    ProbeSample s;
    s.path = kId;
    s.seq = seq++;
    const bool fl = draw(p_fwd) || fwd_cut, rl = draw(p_rev) || rev_cut;  // both drawn: same sequence
    fate.push_back({fl, !fl && rl});
    if (fl) return;
    s.refl_probes_rx = ++refl_rx;
    s.t1_ns = now;
    s.t2_ns = now + owd_fwd + offset;
    s.t3_ns = s.t2_ns + turnaround;
    if (rl) return;
    s.t4_ns = s.t3_ns - offset + owd_rev;
    flight.emplace(s.t4_ns, s);
  }

  void run_until(uint64_t t) {
    while (now < t) {
      now += step;
      if (!sender_stalled && now >= next_probe) {
        probe();
        next_probe += interval;
      }
      for (auto it = flight.begin(); it != flight.end() && it->first <= now; it = flight.erase(it)) {
        mon.on_sample(it->second, it->first);
        last_reply_at = it->first;
      }
      data_tx += data_tx_per_ms;
      if (data_rx_per_ms > 0) {
        data_rx += data_rx_per_ms;
        last_rx_change = now;
      }
      mon.on_counters(kId, seq, data_tx, data_rx, SaCounters{}, now);
      for (const PathEvent& e : mon.tick(now)) events.push_back(e);
    }
  }
  // Runs until the first event after the current ones, at most until `limit`.
  const PathEvent* run_to_event(uint64_t limit) {
    const size_t n = events.size();
    while (events.size() == n && now < limit) run_until(now + step);
    return events.size() > n ? &events[n] : nullptr;
  }
  PathView view() { return *mon.view(kId, now); }
};

PathSpec spec_with(uint64_t interval, uint32_t multiplier = 3, uint32_t hold_up = 3, uint64_t window = 10 * kS) {
  PathSpec s;
  s.state.interval_ns = interval;
  s.state.multiplier = multiplier;
  s.state.hold_up = hold_up;
  s.window_ns = window;
  return s;
}

// ---------------------------------------------------------------- probe loss

struct LossCase {
  double p_fwd, p_rev;
};

TEST(MeasureLoss, EachDirectionSeesOnlyItsOwnDrops) {
  const LossCase cases[] = {{0.05, 0.0}, {0.0, 0.05}, {0.05, 0.05}, {0.0, 0.0}, {0.20, 0.02}};
  for (const LossCase& c : cases) {
    // 2,000 probes at 100 ms, a window that holds them all.
    Sim sim(spec_with(100 * kMs, 3, 3, 250 * kS), 1234);
    sim.p_fwd = c.p_fwd;
    sim.p_rev = c.p_rev;
    sim.run_until(sim.sent_at(1999) + 50 * kMs);  // the last reply lands; the next probe is not sent
    ASSERT_EQ(sim.seq, 2000u);
    const PathView v = sim.view();
    const std::string name = fmt::format("fwd {}% rev {}%", c.p_fwd * 100, c.p_rev * 100);

    // Expected, from the fates: between the first and the last probe that came back.
    uint32_t a = 0, b = 0;
    bool any = false;
    for (uint32_t i = 0; i < sim.fate.size(); ++i)
      if (!sim.fate[i].fwd_lost && !sim.fate[i].rev_lost) (any ? b : a) = i, b = i, any = true;
    double lost_fwd = 0, reached = 0, back = 0;
    for (uint32_t i = a + 1; i <= b; ++i) {
      lost_fwd += sim.fate[i].fwd_lost;
      reached += !sim.fate[i].fwd_lost;
      back += !sim.fate[i].fwd_lost && !sim.fate[i].rev_lost;
    }
    const double want_fwd = 100.0 * lost_fwd / (b - a), want_rev = 100.0 * (1 - back / reached);
    ASSERT_TRUE(v.loss_fwd_pct && v.loss_rev_pct) << name;
    EXPECT_NEAR(*v.loss_fwd_pct, want_fwd, 1e-9) << name;
    EXPECT_NEAR(*v.loss_rev_pct, want_rev, 1e-9) << name;
    // And against the configured rates: 2,000 probes give 5 +- 1 %.
    EXPECT_NEAR(*v.loss_fwd_pct, c.p_fwd * 100, c.p_fwd >= 0.2 ? 2.0 : 1.0) << name;
    EXPECT_NEAR(*v.loss_rev_pct, c.p_rev * 100, 1.0) << name;
    if (c.p_fwd == 0) {
      EXPECT_EQ(*v.loss_fwd_pct, 0.0) << name;
    }
    if (c.p_rev == 0) {
      EXPECT_EQ(*v.loss_rev_pct, 0.0) << name;
    }
    const PathMetrics m = *sim.mon.metrics(Sim::kId, sim.now);
    EXPECT_EQ(m.loss_fwd_pct, v.loss_fwd_pct) << name;
    EXPECT_EQ(m.loss_rev_pct, v.loss_rev_pct) << name;
    EXPECT_EQ(m.rtt_ms, v.rtt_ms) << name;
    EXPECT_EQ(m.jitter_ms, v.jitter_ms) << name;
    EXPECT_EQ(m.state, v.state) << name;
    EXPECT_EQ(v.probes_sent, 2000u) << name;
    EXPECT_EQ(v.probes_received, static_cast<uint64_t>(std::count_if(sim.fate.begin(), sim.fate.end(), [](Sim::Fate f) {
                                   return !f.fwd_lost && !f.rev_lost;
                                 }))) << name;
  }
}

TEST(MeasureLoss, DefaultWindowCountsOnlyItsOwnProbes) {
  Sim sim(spec_with(100 * kMs), 99);
  sim.p_fwd = 0.10;
  sim.run_until(60 * kS);
  // Probes whose replies arrived in the last 10 s, from the fates.
  std::vector<uint32_t> in;
  for (uint32_t i = 0; i < sim.fate.size(); ++i) {
    const uint64_t arrival = i * 100 * kMs + sim.owd_fwd + sim.turnaround + sim.owd_rev;
    if (!sim.fate[i].fwd_lost && !sim.fate[i].rev_lost && arrival <= sim.now && sim.now - arrival <= 10 * kS)
      in.push_back(i);
  }
  double lost = 0;
  for (uint32_t i = in.front() + 1; i <= in.back(); ++i) lost += sim.fate[i].fwd_lost;
  const PathView v = sim.view();
  EXPECT_EQ(v.window_samples, in.size());
  EXPECT_NEAR(*v.loss_fwd_pct, 100.0 * lost / (in.back() - in.front()), 1e-9);
  EXPECT_EQ(*v.loss_rev_pct, 0.0);
}

TEST(MeasureLoss, RepliesOutOfOrderCountTheSame) {
  // Probes 0..11; 4 lost forward, 9 lost on the way back, the rest back out of order.
  const uint32_t order[] = {1, 0, 2, 3, 6, 5, 7, 10, 11, 8};  // neither end in place
  auto refl_rx = [](uint32_t seq) { return uint64_t{seq + 1} - (seq >= 4); };  // its count then
  PathEstimator e({100 * kMs, 10 * kS});
  uint64_t now = kS;
  for (uint32_t q : order) next(e, now, q, 5 * kMs, refl_rx(q));
  const EstimatorStats st = stats_of(e, now);
  EXPECT_NEAR(*st.loss_fwd_pct, 100.0 * 1 / 11, 1e-9) << "probe 4 of 1..11";
  EXPECT_NEAR(*st.loss_rev_pct, 100.0 * 1 / 10, 1e-9) << "probe 9 of the 10 that reached it";
  EstimatorBrief b = e.brief(now);
  EXPECT_EQ(b.loss_fwd_pct, st.loss_fwd_pct);
  EXPECT_EQ(b.loss_rev_pct, st.loss_rev_pct);
  EXPECT_EQ(b.rtt_ms, st.rtt_ms);
  EXPECT_EQ(b.jitter_ms, st.jitter_ms);
  // 10 s on, in order: the late ones have left the window, and the figures follow the new ones.
  for (uint32_t q = 12; q < 130; ++q) next(e, now, q, 5 * kMs, refl_rx(q));
  b = e.brief(now);
  const EstimatorStats st2 = stats_of(e, now);
  EXPECT_EQ(st2.window_samples, 101u);
  EXPECT_EQ(*b.loss_fwd_pct, 0.0);
  EXPECT_EQ(*b.loss_rev_pct, 0.0);
  EXPECT_EQ(b.loss_fwd_pct, st2.loss_fwd_pct);
}

TEST(MeasureLoss, ReflectorRestartStartsAFreshWindow) {
  PathEstimator e({100 * kMs, 10 * kS});
  uint64_t now = kS;
  for (uint32_t i = 0; i < 20; ++i) next(e, now, i, 5 * kMs, 1000 + i);
  EXPECT_EQ(stats_of(e, now).window_samples, 20u);
  next(e, now, 20, 5 * kMs, 1);  // its count restarted
  next(e, now, 21, 5 * kMs, 2);
  const EstimatorStats st = stats_of(e, now);
  EXPECT_EQ(st.window_samples, 2u);
  EXPECT_EQ(*st.loss_fwd_pct, 0.0) << "not a loss of 999 probes";
}

// ---------------------------------------------------------------- ESP-gap (data) loss

ProbeSample with_data(uint32_t seq, uint64_t now, uint32_t spi, uint64_t rx, uint64_t top) {
  ProbeSample s = crafted(seq, 5 * kMs, now, seq + 1);
  s.refl_spi = spi;
  s.refl_data_rx = rx;
  s.refl_data_top = top;
  return s;
}

TEST(MeasureDataLoss, ForwardFromTheReflectorsSequenceGapsAcrossAnSpiChange) {
  PathEstimator e({100 * kMs, 10 * kS});
  e.on_sample(with_data(0, 1 * kS, 0xA, 100, 100), 1 * kS);  // baseline: what came before is not judged
  EXPECT_FALSE(stats_of(e, 1 * kS).loss_data_fwd_pct) << "nothing sent since";
  e.on_sample(with_data(1, 2 * kS, 0xA, 190, 200), 2 * kS);  // 90 of 100
  EXPECT_NEAR(*stats_of(e, 2 * kS).loss_data_fwd_pct, 10.0, 1e-9);
  e.on_sample(with_data(2, 3 * kS, 0xB, 50, 50), 3 * kS);  // new SA, counts from 0: 50 of 50
  EXPECT_NEAR(*stats_of(e, 3 * kS).loss_data_fwd_pct, 100.0 * (1 - 140.0 / 150.0), 1e-9);
  e.on_sample(with_data(3, 3 * kS + 100 * kMs, 0xA, 195, 205), 3 * kS + 100 * kMs);  // late, old SA: +5 of 5
  e.on_sample(with_data(4, 4 * kS, 0xB, 100, 110), 4 * kS);  // +50 of 60
  EXPECT_NEAR(*stats_of(e, 4 * kS).loss_data_fwd_pct, 100.0 * (1 - 195.0 / 215.0), 1e-9);
  // 16 s later: snapshots were taken at 1 s (0 of 0) and 3 s (140 of 150, after that sample);
  // the baseline is the newest one at least 10 s old, the 3 s one.
  e.on_sample(with_data(5, 20 * kS, 0xB, 200, 210), 20 * kS);  // +100 of 100
  EXPECT_NEAR(*stats_of(e, 20 * kS).loss_data_fwd_pct, 100.0 * (1 - (295.0 - 140.0) / (315.0 - 150.0)), 1e-9);
}

TEST(MeasureDataLoss, ReverseFromOurInboundSa) {
  PathEstimator e({100 * kMs, 10 * kS});
  EXPECT_FALSE(stats_of(e, 0).loss_data_rev_pct);
  e.on_rev_sa({0x10, 0, 0}, 1 * kS);
  e.on_rev_sa({0x10, 980, 1000}, 2 * kS);
  EXPECT_NEAR(*stats_of(e, 2 * kS).loss_data_rev_pct, 2.0, 1e-9);
  EXPECT_FALSE(stats_of(e, 2 * kS).loss_data_fwd_pct) << "no reply: forward unknown";
  e.on_rev_sa({0x11, 500, 500}, 3 * kS);  // rekeyed: 500 of 500 on the new SA
  EXPECT_NEAR(*stats_of(e, 3 * kS).loss_data_rev_pct, 100.0 * (1 - 1480.0 / 1500.0), 1e-9);
  e.on_rev_sa({0x11, 10, 20}, 3 * kS + 500 * kMs);  // same SPI, counts went back: installed again
  EXPECT_NEAR(*stats_of(e, 3 * kS + 500 * kMs).loss_data_rev_pct, 100.0 * (1 - 1490.0 / 1520.0), 1e-9);
}

// ---------------------------------------------------------------- state machine

TEST(MeasureState, StartsDownProbingAndComesUpAfterHoldUpReplies) {
  for (uint32_t hold_up : {1u, 3u, 5u}) {
    Sim sim(spec_with(100 * kMs, 3, hold_up));
    EXPECT_EQ(sim.view().state, PathStatus::kDown);
    EXPECT_EQ(sim.view().reason, "probing");
    EXPECT_FALSE(sim.view().rtt_ms) << "no sample yet";
    const PathEvent* e = sim.run_to_event(5 * kS);
    ASSERT_NE(e, nullptr);
    const uint64_t rtt = sim.owd_fwd + sim.turnaround + sim.owd_rev;
    EXPECT_EQ(e->at_ns, 1 * kMs + (hold_up - 1) * 100 * kMs + rtt) << "at the hold_up-th reply";
    EXPECT_EQ(e->from, PathStatus::kDown);
    EXPECT_EQ(e->to, PathStatus::kUp);
    EXPECT_EQ(e->reason, fmt::format("{} good probes", hold_up));
    EXPECT_EQ(e->path, Sim::kId);
    EXPECT_EQ(sim.view().since_ns, e->at_ns);
  }
}

TEST(MeasureState, ConsecutiveGoodProbesOnly) {
  struct Case {
    std::vector<uint32_t> replies;
    int up_at;  // index of the reply that brings it up, -1: stays down
  };
  const Case cases[] = {
      {{0, 1, 2}, 2}, {{0, 1, 3, 4}, -1}, {{0, 1, 3, 4, 5}, 4}, {{0, 2, 4, 6, 8}, -1}, {{5, 6, 7}, 2}, {{0, 1, 1, 2}, 3},
  };
  for (const Case& c : cases) {
    PathStateConfig cfg;
    PathStateMachine sm(1, cfg, 0);
    std::vector<PathEvent> ev;
    int up_at = -1;
    for (size_t i = 0; i < c.replies.size(); ++i) {
      const uint64_t t = (c.replies[i] + 1) * cfg.interval_ns + 10 * kMs;  // each on its probe's time
      sm.on_reply(c.replies[i], 0, t, ev);
      sm.tick(t, ev);
      if (up_at < 0 && sm.state() == PathStatus::kUp) up_at = static_cast<int>(i);
    }
    EXPECT_EQ(up_at, c.up_at) << ::testing::PrintToString(c.replies);
  }
}

struct MissedCase {
  uint64_t interval;
  uint32_t multiplier;
};

TEST(MeasureState, DownAfterExactlyMultiplierMissedProbes) {
  const MissedCase cases[] = {{100 * kMs, 3}, {100 * kMs, 1}, {100 * kMs, 5}, {10 * kMs, 3}, {1 * kS, 2}};
  for (const MissedCase& c : cases) {
    const std::string name = fmt::format("{} ms x {}", c.interval / kMs, c.multiplier);
    Sim sim(spec_with(c.interval, c.multiplier, 3));
    sim.run_until(10 * c.interval);
    ASSERT_EQ(sim.view().state, PathStatus::kUp) << name;
    sim.fwd_cut = true;
    const PathEvent* e = sim.run_to_event(sim.now + 20 * c.interval);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->reason, fmt::format("missed {} probes", c.multiplier)) << name;
    EXPECT_EQ(e->to, PathStatus::kDown) << name;
    const uint64_t silent = e->at_ns - sim.last_reply_at;
    EXPECT_GT(silent, c.multiplier * c.interval) << name << ": not before the M-th reply was due";
    EXPECT_LE(silent, c.multiplier * c.interval + c.interval / 2 + sim.step) << name << ": slack at most I/2";
    // Probes after the last one that came back whose reply was due when the path went down
    // (sent + RTT before it): exactly M. Those sent later are in flight, not missed.
    uint32_t last_ok = 0;
    for (uint32_t i = 0; i < sim.fate.size(); ++i)
      if (!sim.fate[i].fwd_lost) last_ok = i;
    const uint64_t rtt = sim.owd_fwd + sim.turnaround + sim.owd_rev;
    uint32_t overdue = 0;
    for (uint32_t i = last_ok + 1; i < sim.fate.size(); ++i) overdue += sim.sent_at(i) + rtt < e->at_ns;
    EXPECT_EQ(overdue, c.multiplier) << name;
  }
}

TEST(MeasureState, AStalledSenderIsNotADeadPath) {
  Sim sim(spec_with(100 * kMs));
  sim.run_until(1 * kS);
  ASSERT_EQ(sim.view().state, PathStatus::kUp);
  sim.sender_stalled = true;  // our worker sends nothing: probes_sent stays put
  sim.run_until(3 * kS);
  EXPECT_EQ(sim.view().state, PathStatus::kUp);
  EXPECT_TRUE(sim.events.size() == 1) << sim.events.back().reason;
}

TEST(MeasureState, SequenceGapOnArrivalIsMissedProbes) {
  PathStateConfig cfg;
  PathStateMachine sm(3, cfg, 0);
  std::vector<PathEvent> ev;
  for (uint32_t s = 0; s < 3; ++s) sm.on_reply(s, 0, (s + 1) * 100 * kMs, ev);
  ASSERT_EQ(sm.state(), PathStatus::kUp);
  sm.on_reply(5, 0, 310 * kMs, ev);  // 3 and 4 lost: fewer than 3, and no tick ran
  EXPECT_EQ(sm.state(), PathStatus::kUp);
  sm.on_reply(9, 0, 320 * kMs, ev);  // 6, 7, 8 lost
  EXPECT_EQ(sm.state(), PathStatus::kDown);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].reason, "missed 3 probes");
  EXPECT_EQ(ev[1].at_ns, 320 * kMs);
}

TEST(MeasureState, LinkDownAtOnceAndBackAfterHoldUp) {
  Sim sim(spec_with(100 * kMs));
  sim.run_until(1 * kS + 50 * kMs);
  ASSERT_EQ(sim.view().state, PathStatus::kUp);
  sim.mon.on_link_port(Sim::kPort + 1, false, sim.now);
  EXPECT_EQ(sim.view().state, PathStatus::kUp) << "another port";
  sim.mon.on_link_port(Sim::kPort, false, sim.now);
  EXPECT_EQ(sim.view().state, PathStatus::kDown);
  EXPECT_EQ(sim.view().reason, "link down");
  const auto evs = sim.mon.tick(sim.now);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].at_ns, sim.now);
  EXPECT_EQ(evs[0].reason, "link down");
  sim.fwd_cut = true;  // nothing passes while it is down
  sim.run_until(2 * kS + 50 * kMs);
  EXPECT_EQ(sim.view().state, PathStatus::kDown);
  EXPECT_EQ(sim.view().reason, "link down") << "still the first cause, not missed probes";
  sim.fwd_cut = false;
  sim.mon.on_link_path(Sim::kId, true, sim.now);
  EXPECT_EQ(sim.view().reason, "probing");
  const size_t before = sim.events.size();
  const PathEvent* e = sim.run_to_event(5 * kS);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->to, PathStatus::kUp);
  EXPECT_EQ(e->reason, "3 good probes");
  // Probes leave at 1 ms + k x 100 ms: the third after link-up returns 2 intervals + RTT later.
  const uint64_t first = 2 * kS + 1 * kMs + 100 * kMs;
  EXPECT_EQ(e->at_ns, first + 200 * kMs + sim.owd_fwd + sim.turnaround + sim.owd_rev);
  EXPECT_EQ(sim.events.size(), before + 1);
}

struct EarlyCase {
  const char* name;
  uint64_t tx_per_ms, rx_per_ms;
  bool rx_stops;
  const char* reason_prefix;
};

TEST(MeasureState, EarlyDownWhenDataAndProbesBothStop) {
  const EarlyCase cases[] = {
      {"sending, nothing comes back", 10, 10, true, "data and probes stopped for "},
      {"idle path", 0, 0, true, "missed 3 probes"},
      {"sending, data still arriving", 10, 10, false, "missed 3 probes"},
  };
  for (const EarlyCase& c : cases) {
    Sim sim(spec_with(100 * kMs));
    sim.data_tx_per_ms = c.tx_per_ms;
    sim.data_rx_per_ms = c.rx_per_ms;
    sim.run_until(2 * kS + 20 * kMs);
    ASSERT_EQ(sim.view().state, PathStatus::kUp) << c.name;
    sim.fwd_cut = true;
    if (c.rx_stops) sim.data_rx_per_ms = 0;
    const uint64_t cut = sim.now;
    const PathEvent* e = sim.run_to_event(cut + 2 * kS);
    ASSERT_NE(e, nullptr) << c.name;
    EXPECT_EQ(e->reason.rfind(c.reason_prefix, 0), 0u) << c.name << ": " << e->reason;
    const uint64_t heard = std::max(sim.last_reply_at, sim.last_rx_change);
    const uint64_t quiet = e->at_ns - heard;
    if (std::string(c.reason_prefix).starts_with("data")) {
      // More than 2 x I + slack (I/4 without jitter), at the first tick after.
      EXPECT_GT(quiet, 200 * kMs + 25 * kMs) << c.name;
      EXPECT_LE(quiet, 200 * kMs + 25 * kMs + sim.step) << c.name;
      EXPECT_EQ(e->reason, fmt::format("data and probes stopped for {} ms", quiet / kMs)) << c.name;
    } else {
      EXPECT_GT(e->at_ns - sim.last_reply_at, 300 * kMs) << c.name;
    }
  }
}

// A bare state machine, replies every interval, ticks every ms.
struct Machine {
  explicit Machine(const PathStateConfig& c) : cfg(c), sm(5, c, 0) {}
  PathStateConfig cfg;
  PathStateMachine sm;
  uint64_t now = 0, next_reply = 0;
  uint32_t seq = 0;
  bool replying = true;
  std::vector<PathEvent> ev;
  void run_until(uint64_t t) {
    while (now < t) {
      now += kMs;
      if (now >= next_reply) {
        if (replying) sm.on_reply(seq, 0, now, ev);
        ++seq;
        next_reply += cfg.interval_ns;
      }
      sm.tick(now, ev);
    }
  }
  // Link down then up; replies carry on, so the path returns after hold_up unless damped.
  void flap() {
    sm.on_link(false, now, ev);
    sm.on_link(true, now, ev);
  }
};

TEST(MeasureState, DampingHoldsDownWithDoublingBackOffAndReleases) {
  PathStateConfig cfg;
  cfg.damping.flaps = 5;
  cfg.damping.window_ns = 60 * kS;
  cfg.damping.hold_min_ns = 1 * kS;
  cfg.damping.hold_max_ns = 8 * kS;
  cfg.damping.quiet_ns = 120 * kS;
  Machine m(cfg);
  m.run_until(1 * kS);
  ASSERT_EQ(m.sm.state(), PathStatus::kUp);

  std::vector<uint64_t> holds;  // each damping's hold, from when it started to when it ended
  auto flap_and_settle = [&] {
    const size_t from = m.ev.size();
    m.flap();
    m.run_until(m.now + 2 * kS);
    while (m.sm.state() != PathStatus::kUp) m.run_until(m.now + 1 * kS);
    for (size_t i = from; i < m.ev.size(); ++i) {
      if (m.ev[i].to != PathStatus::kDamped) continue;
      ASSERT_LT(i + 1, m.ev.size());
      const PathEvent& rel = m.ev[i + 1];
      EXPECT_EQ(rel.from, PathStatus::kDamped);
      EXPECT_EQ(rel.to, PathStatus::kUp) << "replies kept coming: up at the end of the hold";
      EXPECT_EQ(rel.reason, "3 good probes");
      holds.push_back(rel.at_ns - m.ev[i].at_ns);
      EXPECT_EQ(m.ev[i].reason, fmt::format("damped for {} s ({} flaps in 60 s)", holds.back() / kS,
                                            std::count_if(m.ev.begin(), m.ev.end(), [&](const PathEvent& e) {
                                              return e.from == PathStatus::kUp && e.to == PathStatus::kDown &&
                                                     m.ev[i].at_ns - e.at_ns < 60 * kS;
                                            })));
    }
  };
  for (int i = 0; i < 4; ++i) flap_and_settle();
  EXPECT_TRUE(holds.empty()) << "4 flaps: not damped";
  for (int i = 0; i < 6; ++i) flap_and_settle();
  EXPECT_EQ(holds, (std::vector<uint64_t>{1 * kS, 2 * kS, 4 * kS, 8 * kS, 8 * kS, 8 * kS}));

  // Quiet for longer than both the flap window and the quiet period: back to 1 s.
  m.run_until(m.now + 130 * kS);
  holds.clear();
  for (int i = 0; i < 5; ++i) flap_and_settle();
  EXPECT_EQ(holds, (std::vector<uint64_t>{1 * kS}));
}

TEST(MeasureState, DampedPathWithoutRepliesComesBackDownThenNeedsHoldUp) {
  PathStateConfig cfg;
  cfg.damping.flaps = 2;
  Machine m(cfg);
  m.run_until(1 * kS);
  m.flap();
  m.run_until(2 * kS);
  ASSERT_EQ(m.sm.state(), PathStatus::kUp);
  m.replying = false;
  m.flap();
  ASSERT_EQ(m.sm.state(), PathStatus::kDamped);
  EXPECT_EQ(m.sm.reason(), "damped for 1 s (2 flaps in 60 s)");
  const uint64_t damped_at = m.now;
  m.run_until(damped_at + 999 * kMs);
  EXPECT_EQ(m.sm.state(), PathStatus::kDamped);
  m.run_until(damped_at + 1 * kS);
  EXPECT_EQ(m.sm.state(), PathStatus::kDown);
  EXPECT_EQ(m.sm.reason(), "damped 1 s, probing");
  m.replying = true;
  m.run_until(m.now + 250 * kMs);
  EXPECT_EQ(m.sm.state(), PathStatus::kDown) << "two replies at most";
  m.run_until(m.now + 200 * kMs);
  EXPECT_EQ(m.sm.state(), PathStatus::kUp);
}

TEST(MeasureState, DampingOff) {
  PathStateConfig cfg;
  cfg.damping.flaps = 0;
  Machine m(cfg);
  m.run_until(1 * kS);
  for (int i = 0; i < 20; ++i) {
    m.flap();
    m.run_until(m.now + 400 * kMs);
    ASSERT_EQ(m.sm.state(), PathStatus::kUp) << i;
  }
}

// ---------------------------------------------------------------- monitor

TEST(MeasureMonitor, EventsAreReturnedOnceAndKeptInARing) {
  PathMonitor mon(4);
  for (uint16_t id = 1; id <= 3; ++id) {
    PathSpec s;
    s.id = id;
    s.name = fmt::format("p{}", id);
    s.port = static_cast<uint8_t>(id);
    ASSERT_TRUE(mon.add_path(s, 0));
  }
  for (uint16_t id = 1; id <= 3; ++id)
    for (uint32_t q = 0; q < 3; ++q) {
      ProbeSample ps = crafted(q, 5 * kMs, (q + 1) * 100 * kMs, q + 1);
      ps.path = id;
      mon.on_sample(ps, (q + 1) * 100 * kMs);
    }
  auto evs = mon.tick(300 * kMs);
  ASSERT_EQ(evs.size(), 3u);
  for (uint16_t id = 1; id <= 3; ++id) EXPECT_EQ(evs[id - 1].path, id);
  EXPECT_TRUE(mon.tick(310 * kMs).empty()) << "returned once";
  mon.on_link_port(1, false, 320 * kMs);
  mon.on_link_port(2, false, 330 * kMs);
  EXPECT_EQ(mon.tick(340 * kMs).size(), 2u);
  const EventRing& r = mon.events();
  EXPECT_EQ(r.total(), 5u);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].path, 2) << "the oldest went";
  EXPECT_EQ(r[3].reason, "link down");
  EXPECT_EQ(r[3].at_ns, 330 * kMs);
}

TEST(MeasureMonitor, UnknownPathsAndBadSpecs) {
  PathMonitor mon;
  EXPECT_FALSE(mon.view(9, 0));
  EXPECT_FALSE(mon.state(9));
  ProbeSample s;
  s.path = 9;
  mon.on_sample(s, 0);
  EXPECT_EQ(mon.unknown_samples(), 1u);

  PathSpec ok;
  ok.id = 9;
  ok.name = "a";
  ASSERT_TRUE(mon.add_path(ok, 0));
  EXPECT_FALSE(mon.add_path(ok, 0)) << "duplicate id";
  struct Bad {
    const char* name;
    PathSpec spec;
    const char* msg_part;
  };
  PathSpec fast = ok, mult = ok, win = ok, damp = ok;
  fast.id = mult.id = win.id = damp.id = 10;
  fast.state.interval_ns = 5 * kMs;
  mult.state.multiplier = 0;
  win.window_ns = 150 * kMs;
  damp.state.damping.hold_max_ns = 500 * kMs;
  for (const Bad& b : {Bad{"interval", fast, "10 ms .. 10 s, got 5 ms"}, Bad{"multiplier", mult, "multiplier"},
                       Bad{"window", win, "two probe intervals"}, Bad{"damping", damp, "below the minimum"}}) {
    const Status st = mon.add_path(b.spec, 0);
    ASSERT_FALSE(st) << b.name;
    EXPECT_NE(st.error().msg.find(b.msg_part), std::string::npos) << b.name << ": " << st.error().msg;
  }
  mon.remove_path(9);
  EXPECT_FALSE(mon.view(9, 0));
  EXPECT_TRUE(mon.paths().empty());
}

TEST(MeasureMonitor, RemoveKeepsTheOtherPathsReachable) {
  PathMonitor mon;
  for (uint16_t id : {4, 8, 15, 16}) {
    PathSpec s;
    s.id = id;
    s.name = fmt::format("p{}", id);
    ASSERT_TRUE(mon.add_path(s, 0));
  }
  mon.remove_path(4);
  mon.remove_path(15);
  auto ids = mon.paths();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint16_t>{8, 16}));
  EXPECT_EQ(mon.view(16, 0)->name, "p16");
  EXPECT_EQ(mon.view(8, 0)->name, "p8");
}

}  // namespace
}  // namespace sdwan::cp
