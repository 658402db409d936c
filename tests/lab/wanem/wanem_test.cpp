// Unit tests of the WAN emulator's pure parts: the control language, the delay line with
// injected time and randomness, the lateness record and the status object.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "delay_line.hpp"
#include "emulator.hpp"
#include "impair.hpp"

namespace sdwan::wanem {
namespace {

constexpr int64_t kMs = 1'000'000;

// --- values ------------------------------------------------------------------------------

TEST(WanemValues, Durations) {
  struct Case {
    const char* text;
    int64_t ns;
  };
  for (const Case& c : {Case{"40ms", 40 * kMs}, Case{"1.5ms", 1'500'000}, Case{"250us", 250'000},
                        Case{"2s", 2'000'000'000}, Case{"0", 0}, Case{"0ms", 0},
                        Case{"10s", 10'000'000'000}, Case{"40MS", 40 * kMs}}) {
    auto r = parse_duration_ns(c.text);
    ASSERT_TRUE(r) << c.text << ": " << r.error().msg;
    EXPECT_EQ(*r, c.ns) << c.text;
  }
  struct Bad {
    const char* text;
    const char* says;
  };
  for (const Bad& c : {Bad{"40", "needs a unit"}, Bad{"-1ms", "does not start with a number"},
                       Bad{"ms", "does not start with a number"}, Bad{"1.2.3ms", "not a number"},
                       Bad{"11s", "longer than the 10 s"}, Bad{"1e3ms", "needs a unit"},
                       Bad{"nanms", "does not start with a number"}, Bad{"5min", "needs a unit"}}) {
    auto r = parse_duration_ns(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().msg.find(c.says), std::string::npos) << c.text << ": " << r.error().msg;
  }
}

TEST(WanemValues, Percentages) {
  EXPECT_DOUBLE_EQ(*parse_percent("2%"), 0.02);
  EXPECT_DOUBLE_EQ(*parse_percent("2"), 0.02);
  EXPECT_DOUBLE_EQ(*parse_percent("0.5%"), 0.005);
  EXPECT_DOUBLE_EQ(*parse_percent("100%"), 1.0);
  EXPECT_FALSE(parse_percent("101%"));
  EXPECT_FALSE(parse_percent("2pct"));
  EXPECT_FALSE(parse_percent("-2%"));
}

TEST(WanemValues, Rates) {
  EXPECT_EQ(*parse_rate_bps("10mbit"), 10'000'000u);
  EXPECT_EQ(*parse_rate_bps("512kbit"), 512'000u);
  EXPECT_EQ(*parse_rate_bps("1.5gbit"), 1'500'000'000u);
  EXPECT_EQ(*parse_rate_bps("64000bit"), 64'000u);
  EXPECT_EQ(*parse_rate_bps("0"), 0u);
  EXPECT_EQ(*parse_rate_bps("off"), 0u);
  auto bytes = parse_rate_bps("10mbps");
  ASSERT_FALSE(bytes);
  EXPECT_NE(bytes.error().msg.find("bit, kbit, mbit or gbit"), std::string::npos);
  EXPECT_FALSE(parse_rate_bps("10"));
  EXPECT_FALSE(parse_rate_bps("500bit"));
  EXPECT_FALSE(parse_rate_bps("500gbit"));
}

// --- commands ----------------------------------------------------------------------------

TEST(WanemCommand, SetDefaultsToUpAndKeepsUnnamedSettings) {
  auto c = parse_command("set delay=40ms jitter=5ms loss=2% rate=10mbit");
  ASSERT_TRUE(c) << c.error().msg;
  EXPECT_EQ(c->verb, Command::Verb::set);
  EXPECT_TRUE(c->dirs.up);
  EXPECT_FALSE(c->dirs.down);
  Impairment imp;
  imp.backlog_ns = 7 * kMs;
  c->set.apply(imp);
  EXPECT_EQ(imp.delay_ns, 40 * kMs);
  EXPECT_EQ(imp.jitter_ns, 5 * kMs);
  EXPECT_DOUBLE_EQ(imp.loss, 0.02);
  EXPECT_EQ(imp.rate_bps, 10'000'000u);
  EXPECT_EQ(imp.backlog_ns, 7 * kMs);
  EXPECT_FALSE(imp.blackout);
}

TEST(WanemCommand, DirectionsAndDefaults) {
  struct Case {
    const char* line;
    Command::Verb verb;
    bool up, down;
  };
  for (const Case& c : {
           Case{"set dir=down loss=1%", Command::Verb::set, false, true},
           Case{"set dir=both delay=1ms", Command::Verb::set, true, true},
           Case{"  SET   Dir=UP   delay=1ms  ", Command::Verb::set, true, false},
           Case{"blackout", Command::Verb::blackout, true, true},
           Case{"blackout dir=up", Command::Verb::blackout, true, false},
           Case{"clear", Command::Verb::clear, true, true},
           Case{"clear dir=down", Command::Verb::clear, false, true},
           Case{"reset-counters", Command::Verb::reset_counters, true, true},
           Case{"status", Command::Verb::status, false, false},
       }) {
    auto r = parse_command(c.line);
    ASSERT_TRUE(r) << c.line << ": " << r.error().msg;
    EXPECT_EQ(r->verb, c.verb) << c.line;
    EXPECT_EQ(r->dirs.up, c.up) << c.line;
    EXPECT_EQ(r->dirs.down, c.down) << c.line;
  }
}

TEST(WanemCommand, ErrorsSayWhatIsWrongAndWhatIsExpected) {
  struct Case {
    const char* line;
    const char* says;
  };
  for (const Case& c : {
           Case{"", "empty command; expected set, blackout"},
           Case{"frobnicate", "unknown command 'frobnicate'; expected set, blackout"},
           Case{"set", "set needs at least one of delay="},
           Case{"set dir=up", "set needs at least one of"},
           Case{"set delay=40", "delay: duration '40' needs a unit: s, ms or us"},
           Case{"set loss=150%", "loss: percentage '150%' is above 100%"},
           Case{"set rate=10mb", "rate: rate '10mb' needs a unit: bit, kbit"},
           Case{"set dir=sideways delay=1ms", "dir=sideways is not a direction; expected dir=up"},
           Case{"set delay=1ms delay=2ms", "delay= given twice"},
           Case{"set colour=blue", "unknown setting 'colour'; expected dir, delay"},
           Case{"set delay", "'delay' is not key=value"},
           Case{"set =5", "'=5' is not key=value"},
           Case{"set backlog=10us", "backlog=10us is shorter than 1ms"},
           Case{"set blackout=maybe", "blackout=maybe is not on or off"},
           Case{"blackout delay=1ms", "blackout takes only dir=up|down|both"},
           Case{"status now", "status takes no arguments"},
       }) {
    auto r = parse_command(c.line);
    ASSERT_FALSE(r) << c.line;
    EXPECT_NE(r.error().msg.find(c.says), std::string::npos)
        << "'" << c.line << "' -> " << r.error().msg;
  }
}

// --- delay line --------------------------------------------------------------------------

std::vector<uint8_t> frame_of(size_t len, uint8_t fill) { return std::vector<uint8_t>(len, fill); }

// Drains everything due at now; returns the frames' first bytes in send order.
std::vector<uint8_t> drain(DelayLine& dl, int64_t now, int64_t send_ns = -1) {
  std::vector<uint8_t> out;
  for (;;) {
    auto b = dl.fill_tx(now);
    if (b.empty()) return out;
    for (const TxFrame& f : b) out.push_back(f.data[0]);
    dl.tx_done(b.size(), true, send_ns < 0 ? now : send_ns);
  }
}

TEST(WanemDelayLine, NoImpairmentReleasesAtArrival) {
  DelayLine dl;
  Rng rng(1);
  auto f = frame_of(60, 7);
  EXPECT_EQ(dl.admit(f, {}, 1000, rng), DelayLine::Verdict::queued);
  EXPECT_EQ(dl.next_release(), 1000);
  EXPECT_EQ(drain(dl, 1500), std::vector<uint8_t>{7});
  EXPECT_EQ(dl.counters().rx, 1u);
  EXPECT_EQ(dl.counters().tx, 1u);
  EXPECT_EQ(dl.counters().tx_bytes, 60u);
  EXPECT_EQ(dl.lateness().count(), 1u);
  EXPECT_DOUBLE_EQ(dl.lateness().max_us(), 0.5);
  EXPECT_EQ(dl.queued(), 0u);
}

TEST(WanemDelayLine, DelayHoldsFramesUntilTheirTime) {
  DelayLine dl;
  Rng rng(1);
  dl.impairment().delay_ns = 40 * kMs;
  auto f = frame_of(100, 1);
  dl.admit(f, {}, 0, rng);
  EXPECT_EQ(dl.next_release(), 40 * kMs);
  EXPECT_TRUE(dl.fill_tx(40 * kMs - 1).empty());
  EXPECT_EQ(dl.queued(), 1u);
  EXPECT_EQ(drain(dl, 40 * kMs, 40 * kMs + 30'000), std::vector<uint8_t>{1});
  EXPECT_DOUBLE_EQ(dl.lateness().mean_us(), 30.0);
}

TEST(WanemDelayLine, VnetHeaderTravelsWithTheFrame) {
  DelayLine dl;
  Rng rng(1);
  VnetHdr v{1, 0, 0, 0, 34, 16};
  auto f = frame_of(80, 3);
  dl.admit(f, v, 0, rng);
  auto b = dl.fill_tx(0);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].vnet.flags, 1);
  EXPECT_EQ(b[0].vnet.csum_start, 34);
  EXPECT_EQ(b[0].vnet.csum_offset, 16);
}

TEST(WanemDelayLine, JitterReordersFramesByReleaseTime) {
  DelayLine dl;
  Rng rng(42);
  dl.impairment().delay_ns = 20 * kMs;
  dl.impairment().jitter_ns = 10 * kMs;
  auto f = frame_of(64, 0);
  for (int i = 0; i < 200; ++i) {  // one frame per 0.1 ms: far closer than the jitter band
    f[0] = static_cast<uint8_t>(i);
    dl.admit(f, {}, int64_t{i} * 100'000, rng);
  }
  std::vector<int64_t> releases;
  std::vector<uint8_t> order;
  while (auto t = dl.next_release()) {
    auto b = dl.fill_tx(*t);
    for (const TxFrame& fr : b) {
      releases.push_back(fr.release_ns);
      order.push_back(fr.data[0]);
    }
    dl.tx_done(b.size(), true, *t);
  }
  ASSERT_EQ(order.size(), 200u);
  EXPECT_TRUE(std::is_sorted(releases.begin(), releases.end()));
  EXPECT_FALSE(std::is_sorted(order.begin(), order.end()));
}

TEST(WanemDelayLine, JitterSamplesStayWithinTheBand) {
  DelayLine dl;
  Rng rng(7);
  dl.impairment().delay_ns = 20 * kMs;
  dl.impairment().jitter_ns = 10 * kMs;
  auto f = frame_of(64, 0);
  double sum = 0, sum2 = 0;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  constexpr int kN = 20'000;
  for (int i = 0; i < kN; ++i) {
    // One frame at a time, all arriving at 0: the release is the sample itself.
    dl.admit(f, {}, 0, rng);
    auto b = dl.fill_tx(INT64_MAX);
    ASSERT_EQ(b.size(), 1u);
    int64_t d = b[0].release_ns;
    dl.tx_done(1, true, d);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    sum += static_cast<double>(d);
    sum2 += static_cast<double>(d) * static_cast<double>(d);
  }
  double mean = sum / kN;
  double sd = std::sqrt(sum2 / kN - mean * mean);
  EXPECT_GE(lo, 10 * kMs);
  EXPECT_LE(hi, 30 * kMs);
  EXPECT_LT(lo, 10 * kMs + kMs / 10);  // the band is used to its edges
  EXPECT_GT(hi, 30 * kMs - kMs / 10);
  EXPECT_NEAR(mean, 20.0 * kMs, 0.1 * kMs);
  EXPECT_NEAR(sd, 10.0 * kMs / std::sqrt(3.0), 0.03 * 10.0 * kMs / std::sqrt(3.0));
}

TEST(WanemDelayLine, JitterLargerThanDelayNeverSendsBeforeArrival) {
  DelayLine dl;
  Rng rng(3);
  dl.impairment().jitter_ns = 10 * kMs;
  auto f = frame_of(64, 0);
  for (int i = 0; i < 1000; ++i) dl.admit(f, {}, 5 * kMs, rng);
  EXPECT_GE(*dl.next_release(), 5 * kMs);
}

TEST(WanemDelayLine, LossIsBernoulliAtTheSetProbability) {
  DelayLine dl;
  Rng rng(11);
  dl.impairment().loss = 0.10;
  auto f = frame_of(64, 0);
  constexpr int kN = 100'000;
  for (int i = 0; i < kN; ++i) {
    dl.admit(f, {}, i, rng);
    drain(dl, i);
  }
  double lost = static_cast<double>(dl.counters().dropped_loss) / kN;
  EXPECT_NEAR(lost, 0.10, 0.006);  // 6 standard deviations of 100k Bernoulli(0.1) draws
  EXPECT_EQ(dl.counters().rx, static_cast<uint64_t>(kN));
  EXPECT_EQ(dl.counters().tx + dl.counters().dropped_loss, static_cast<uint64_t>(kN));
}

TEST(WanemDelayLine, RateSerialisesFramesInOrder) {
  DelayLine dl;
  Rng rng(1);
  dl.impairment().rate_bps = 10'000'000;  // 1250 bytes = 1 ms
  dl.impairment().jitter_ns = 0;
  auto f = frame_of(1250, 0);
  for (int i = 0; i < 10; ++i) {
    f[0] = static_cast<uint8_t>(i);
    ASSERT_EQ(dl.admit(f, {}, 0, rng), DelayLine::Verdict::queued);
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(dl.next_release(), (i + 1) * kMs);
    EXPECT_EQ(drain(dl, (i + 1) * kMs), std::vector<uint8_t>{static_cast<uint8_t>(i)});
  }
}

TEST(WanemDelayLine, RateCarriesSubNanosecondSerialisationTime) {
  DelayLine dl;
  Rng rng(1);
  dl.impairment().rate_bps = 3'000'000'000;  // 64 bytes = 170.67 ns
  auto f = frame_of(64, 0);
  for (int i = 0; i < 3000; ++i) dl.admit(f, {}, 0, rng);
  int64_t last = 0;
  while (auto t = dl.next_release()) {
    last = *t;
    drain(dl, *t);
  }
  EXPECT_NEAR(static_cast<double>(last), 3000 * 64 * 8 / 3.0, 1.0);
}

TEST(WanemDelayLine, RateWithJitterStaysFifo) {
  DelayLine dl;
  Rng rng(5);
  dl.impairment().rate_bps = 100'000'000;
  dl.impairment().delay_ns = 10 * kMs;
  dl.impairment().jitter_ns = 5 * kMs;
  dl.impairment().backlog_ns = 1'000 * kMs;
  auto f = frame_of(100, 0);
  for (int i = 0; i < 200; ++i) {
    f[0] = static_cast<uint8_t>(i);
    dl.admit(f, {}, i * 10'000, rng);
  }
  std::vector<uint8_t> order = drain(dl, INT64_MAX);
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], static_cast<uint8_t>(i));
}

TEST(WanemDelayLine, RateBacklogDropsFramesThatWouldWaitTooLong) {
  DelayLine dl;
  Rng rng(1);
  dl.impairment().rate_bps = 10'000'000;  // 1 ms per 1250-byte frame
  dl.impairment().backlog_ns = 5 * kMs;
  auto f = frame_of(1250, 0);
  int queued = 0;
  for (int i = 0; i < 20; ++i) {
    if (dl.admit(f, {}, 0, rng) == DelayLine::Verdict::queued) ++queued;
  }
  // Frame k starts at k ms: frames 0..5 wait at most 5 ms.
  EXPECT_EQ(queued, 6);
  EXPECT_EQ(dl.counters().dropped_queue, 14u);
}

TEST(WanemDelayLine, BlackoutDropsArrivalsAndQueuedFrames) {
  DelayLine dl;
  Rng rng(1);
  dl.impairment().delay_ns = 10 * kMs;
  auto f = frame_of(64, 0);
  dl.admit(f, {}, 0, rng);
  dl.impairment().blackout = true;
  EXPECT_EQ(dl.admit(f, {}, 1, rng), DelayLine::Verdict::dropped_blackout);
  EXPECT_TRUE(drain(dl, 20 * kMs).empty());
  EXPECT_EQ(dl.counters().dropped_blackout, 2u);
  EXPECT_EQ(dl.queued(), 0u);
  dl.impairment() = Impairment{};
  EXPECT_EQ(dl.admit(f, {}, 30 * kMs, rng), DelayLine::Verdict::queued);
  EXPECT_EQ(drain(dl, 30 * kMs).size(), 1u);
}

TEST(WanemDelayLine, FrameLimitCountsQueueDropsAndRecovers) {
  DelayLine dl(1u << 20, 8);
  Rng rng(1);
  dl.impairment().delay_ns = kMs;
  auto f = frame_of(64, 0);
  for (int i = 0; i < 10; ++i) dl.admit(f, {}, 0, rng);
  EXPECT_EQ(dl.queued(), 8u);
  EXPECT_EQ(dl.counters().dropped_queue, 2u);
  EXPECT_EQ(drain(dl, kMs).size(), 8u);
  EXPECT_EQ(dl.admit(f, {}, kMs, rng), DelayLine::Verdict::queued);
}

TEST(WanemDelayLine, ByteLimitWrapsTheArenaWithoutCorruptingFrames) {
  // 10 KiB arena: frames of 1000..1900 bytes wrap around it many times while frames are
  // released out of order (jitter); every frame must come out with the bytes it went in with.
  DelayLine dl(10 * 1024, 1000);
  Rng rng(9);
  dl.impairment().delay_ns = 2 * kMs;
  dl.impairment().jitter_ns = 2 * kMs;
  uint64_t sent = 0;
  uint64_t accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    int64_t now = int64_t{i} * 200'000;
    size_t len = 1000 + static_cast<size_t>(i % 10) * 100;
    std::vector<uint8_t> f(len);
    for (size_t k = 0; k < len; ++k) f[k] = static_cast<uint8_t>(i + k);
    std::memcpy(f.data(), &len, sizeof len);
    if (dl.admit(f, {}, now, rng) == DelayLine::Verdict::queued) ++accepted;
    for (;;) {
      auto b = dl.fill_tx(now);
      if (b.empty()) break;
      for (const TxFrame& fr : b) {
        size_t got_len = 0;
        std::memcpy(&got_len, fr.data, sizeof got_len);
        ASSERT_EQ(got_len, fr.len);
        // The pattern's origin i is recoverable from the byte after the length.
        uint8_t base = static_cast<uint8_t>(fr.data[sizeof(size_t)] - sizeof(size_t));
        for (size_t k = sizeof(size_t); k < fr.len; ++k) {
          ASSERT_EQ(fr.data[k], static_cast<uint8_t>(base + k)) << "frame corrupted at " << k;
        }
      }
      sent += b.size();
      dl.tx_done(b.size(), true, now);
    }
  }
  sent += drain(dl, INT64_MAX).size();
  EXPECT_EQ(sent, accepted);
  EXPECT_GT(dl.counters().dropped_queue, 0u);  // the arena did fill up
  EXPECT_GT(accepted, 1000u);                   // and kept being reused
  EXPECT_EQ(dl.queued_bytes(), 0u);
}

TEST(WanemDelayLine, RefusedFramesCountAsTxDrops) {
  DelayLine dl;
  Rng rng(1);
  auto f = frame_of(64, 0);
  dl.admit(f, {}, 0, rng);
  dl.admit(f, {}, 0, rng);
  auto b = dl.fill_tx(0);
  ASSERT_EQ(b.size(), 2u);
  dl.tx_done(1, false, 0);
  EXPECT_EQ(dl.fill_tx(0).size(), 1u);  // the second one stays in the batch
  dl.tx_done(1, true, 0);
  EXPECT_EQ(dl.counters().dropped_tx, 1u);
  EXPECT_EQ(dl.counters().tx, 1u);
  EXPECT_EQ(dl.queued(), 0u);
}

TEST(WanemLateness, MeanQuantileMax) {
  Lateness l;
  for (int i = 1; i <= 100; ++i) l.add(int64_t{i} * 1000);  // 1..100 us
  EXPECT_EQ(l.count(), 100u);
  EXPECT_DOUBLE_EQ(l.mean_us(), 50.5);
  EXPECT_DOUBLE_EQ(l.quantile_us(0.99), 99.0);
  EXPECT_DOUBLE_EQ(l.max_us(), 100.0);
  l.add(5'000'000);  // 5 ms: a log bucket, reported as its top, never above the max
  EXPECT_LE(l.quantile_us(1.0), 5000.0);
  EXPECT_GE(l.quantile_us(1.0), 4990.0);
  l.add(-5);
  EXPECT_EQ(l.count(), 102u);
  l.reset();
  EXPECT_EQ(l.count(), 0u);
  EXPECT_DOUBLE_EQ(l.quantile_us(0.99), 0.0);
}

// --- emulator ----------------------------------------------------------------------------

TEST(WanemEmulator, CommandsChangeTheDirectionsTheyName) {
  Emulator emu("isp1", "veth-a", "veth-b", 1, 0, 1u << 20, 100);
  EXPECT_EQ(emu.handle_line("set delay=40ms", 0), "ok");
  EXPECT_EQ(emu.line(Dir::up).impairment().delay_ns, 40 * kMs);
  EXPECT_EQ(emu.line(Dir::down).impairment().delay_ns, 0);
  EXPECT_EQ(emu.handle_line("set dir=down loss=2% rate=10mbit", 0), "ok");
  EXPECT_EQ(emu.line(Dir::down).impairment().rate_bps, 10'000'000u);
  EXPECT_EQ(emu.handle_line("blackout dir=down", 0), "ok");
  EXPECT_TRUE(emu.line(Dir::down).impairment().blackout);
  EXPECT_FALSE(emu.line(Dir::up).impairment().blackout);
  EXPECT_EQ(emu.handle_line("set dir=down blackout=off", 0), "ok");
  EXPECT_FALSE(emu.line(Dir::down).impairment().blackout);
  EXPECT_EQ(emu.line(Dir::down).impairment().rate_bps, 10'000'000u);
  EXPECT_EQ(emu.handle_line("clear", 0), "ok");
  EXPECT_TRUE(emu.line(Dir::up).impairment().none());
  EXPECT_TRUE(emu.line(Dir::down).impairment().none());
}

TEST(WanemEmulator, ErrorsLeaveEverythingAsItWas) {
  Emulator emu("isp1", "a", "b", 1, 0, 1u << 20, 100);
  ASSERT_EQ(emu.handle_line("set dir=both delay=5ms", 0), "ok");
  std::string r = emu.handle_line("set dir=both delay=7ms loss=lots", 0);
  EXPECT_EQ(r.rfind("error: loss: ", 0), 0u) << r;
  EXPECT_EQ(emu.line(Dir::up).impairment().delay_ns, 5 * kMs);
  EXPECT_EQ(emu.line(Dir::down).impairment().delay_ns, 5 * kMs);
}

TEST(WanemEmulator, StatusCarriesSettingsCountersAndLateness) {
  Emulator emu("isp2", "e", "in", 99, 0, 1u << 20, 100);
  emu.handle_line("set delay=1.5ms jitter=250us loss=0.5% rate=2gbit backlog=20ms", 0);
  auto f = frame_of(100, 0);
  emu.line(Dir::up).admit(f, {}, 0, emu.rng());
  auto st = nlohmann::json::parse(emu.handle_line("status", 2'500'000'000));
  EXPECT_EQ(st["name"], "isp2");
  EXPECT_EQ(st["a"], "e");
  EXPECT_EQ(st["b"], "in");
  EXPECT_EQ(st["seed"], 99);
  EXPECT_DOUBLE_EQ(st["uptime_s"].get<double>(), 2.5);
  const auto& up = st["up"];
  EXPECT_DOUBLE_EQ(up["settings"]["delay_ms"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(up["settings"]["jitter_ms"].get<double>(), 0.25);
  EXPECT_EQ(up["settings"]["jitter_distribution"], "uniform");
  EXPECT_DOUBLE_EQ(up["settings"]["loss_pct"].get<double>(), 0.5);
  EXPECT_EQ(up["settings"]["rate_bps"], 2'000'000'000u);
  EXPECT_DOUBLE_EQ(up["settings"]["backlog_ms"].get<double>(), 20.0);
  EXPECT_EQ(up["settings"]["blackout"], false);
  for (const char* k : {"rx", "rx_bytes", "tx", "tx_bytes", "dropped_loss", "dropped_blackout",
                        "dropped_queue", "dropped_oversize", "dropped_tx", "queued",
                        "queued_bytes"}) {
    EXPECT_TRUE(up["counters"].contains(k)) << k;
  }
  EXPECT_EQ(up["counters"]["rx"], 1);
  for (const char* k : {"frames", "mean", "p99", "max"}) {
    EXPECT_TRUE(up["lateness_us"].contains(k)) << k;
  }
  EXPECT_EQ(st["down"]["settings"]["delay_ms"], 0.0);
  EXPECT_EQ(emu.handle_line("reset-counters dir=up", 0), "ok");
  st = nlohmann::json::parse(emu.handle_line("status", 0));
  EXPECT_EQ(st["up"]["counters"]["rx"], 0);
}

}  // namespace
}  // namespace sdwan::wanem
