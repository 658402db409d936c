// control/policy (issue 6): class rules, Maglev tables, the policy compiler. Injected time, no sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "control/config/config.hpp"
#include "control/policy/classify.hpp"
#include "control/policy/compiler.hpp"
#include "control/policy/maglev.hpp"
#include "control/policy/rates.hpp"

namespace sdwan::cp {
namespace {

// ---------------------------------------------------------------- classification

ClassConfig cls(std::string name, std::vector<MatchRule> match, bool is_default = false) {
  ClassConfig c;
  c.name = std::move(name);
  c.match = std::move(match);
  c.is_default = is_default;
  return c;
}

uint32_t ip(const char* s) { return Ipv4::parse(s)->v; }

TEST(Classify, RulesInOrderFirstMatchWinsElseTheDefault) {
  MatchRule voice;
  voice.proto = 17;
  voice.dport = PortRange{5004, 5004};
  MatchRule ef;
  ef.dscp = 46;
  MatchRule lan_web;
  lan_web.src = Prefix4::parse("192.168.10.0/25");
  lan_web.dst = Prefix4::parse("10.0.0.0/8");
  lan_web.proto = 6;
  lan_web.sport = PortRange{1000, 2000};
  MatchRule any_port;  // no proto: TCP and UDP only
  any_port.dport = PortRange{8000, 8100};
  MatchRule icmp;
  icmp.proto = 1;
  const std::vector<ClassConfig> classes = {cls("voice", {voice, ef}), cls("bulk", {}, true), cls("web", {lan_web}),
                                            cls("alt", {any_port, icmp}), cls("late", {voice})};
  const ClassRules r = compile_rules(classes);
  EXPECT_EQ(r.n_classes, 5);
  EXPECT_EQ(r.default_class, 1);
  ASSERT_EQ(r.rules.size(), 6u);
  EXPECT_EQ(r.rules[2].src, ip("192.168.10.0"));
  EXPECT_EQ(r.rules[2].src_mask, 0xffffff80u);
  EXPECT_EQ(r.rules[2].dst_mask, 0xff000000u);
  EXPECT_EQ(r.rules[0].dscp, 0xff);
  EXPECT_EQ(r.rules[1].dscp, 46);

  struct Case {
    const char* name;
    PacketKey k;
    uint8_t want;
  };
  const uint32_t a = ip("192.168.10.5"), far = ip("192.168.10.200"), b = ip("10.1.2.3"), c = ip("172.16.0.1");
  const std::vector<Case> cases = {
      {"udp 5004", {a, c, 17, 40000, 5004, 0}, 0},
      {"tcp 5004 is not voice", {a, c, 6, 40000, 5004, 0}, 1},
      {"udp 5005", {a, c, 17, 40000, 5005, 0}, 1},
      {"dscp ef, any protocol", {a, c, 47, 0, 0, 46}, 0},
      {"tcp from the lower half to 10/8, sport in range", {a, b, 6, 1500, 443, 0}, 2},
      {"sport at the low end", {a, b, 6, 1000, 443, 0}, 2},
      {"sport at the high end", {a, b, 6, 2000, 443, 0}, 2},
      {"sport past the range", {a, b, 6, 2001, 443, 0}, 1},
      {"source outside the /25", {far, b, 6, 1500, 443, 0}, 1},
      {"destination outside 10/8", {a, c, 6, 1500, 443, 0}, 1},
      {"udp to 8050 (ports without proto)", {a, c, 17, 1, 8050, 0}, 3},
      {"tcp to 8100", {a, c, 6, 1, 8100, 0}, 3},
      {"gre never matches a port rule", {a, c, 47, 0, 0, 0}, 1},
      {"icmp", {a, c, 1, 0, 0, 0}, 3},
      {"first match wins: voice before late", {a, c, 17, 1, 5004, 0}, 0},
      {"first match wins: voice and web both", {a, b, 17, 1500, 5004, 46}, 0},
  };
  for (const Case& k : cases) EXPECT_EQ(classify(r, k.k), k.want) << k.name;
}

TEST(Classify, ImplicitDefaultComesLast) {
  MatchRule m;
  m.dport = PortRange{1, 1};
  const ClassRules r = compile_rules({cls("a", {m}), cls("default", {}, true)});
  EXPECT_EQ(r.default_class, 1);
  EXPECT_EQ(classify(r, PacketKey{1, 2, 17, 9, 9, 0}), 1);
  EXPECT_EQ(classify(r, PacketKey{1, 2, 17, 9, 1, 0}), 0);
}

// ---------------------------------------------------------------- Maglev

constexpr uint64_t kGoldenTableHash = 1710932616615640412ULL;

bool prime(uint32_t n) {
  for (uint32_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return n >= 2;
}

std::vector<MaglevPath> equal_paths(int n, uint32_t w = 100) {
  std::vector<MaglevPath> p;
  for (int i = 0; i < n; ++i) p.push_back({static_cast<uint16_t>(10 + 7 * i), w});
  return p;
}

TEST(Maglev, SizeIsAPrimeOfAboutAHundredEntriesPerPath) {
  EXPECT_EQ(maglev_size(0), 251u);
  EXPECT_EQ(maglev_size(1), 251u);
  EXPECT_EQ(maglev_size(2), 251u);
  EXPECT_EQ(maglev_size(3), 307u);
  EXPECT_EQ(maglev_size(16), 1601u);
  EXPECT_EQ(maglev_size(4000), 400009u);
  for (size_t n = 1; n <= 64; ++n) {
    const uint32_t m = maglev_size(n);
    EXPECT_TRUE(prime(m)) << n;
    EXPECT_GE(m, 100 * n);
    EXPECT_FALSE(m > 251 && prime(m - 1) && m - 1 >= 100 * n) << n;
  }
}

TEST(Maglev, DeterministicWhateverTheInputOrder) {
  MaglevBuilder b1, b2;
  std::vector<uint16_t> t1, t2;
  auto p = equal_paths(5);
  p[3].weight = 250;
  b1.build(p, maglev_size(5), t1);
  std::reverse(p.begin(), p.end());
  b2.build(p, maglev_size(5), t2);
  EXPECT_EQ(t1, t2);
  // The same table on every appliance and every release: a fixed hash, pinned here.
  uint64_t h = 1469598103934665603ULL;
  for (uint16_t x : t1) h = (h ^ x) * 1099511628211ULL;
  EXPECT_EQ(t1.size(), 503u);
  EXPECT_EQ(h, kGoldenTableHash);
}

TEST(Maglev, EveryEntryNamesAPathAndSharesFollowWeights) {
  MaglevBuilder b;
  std::vector<uint16_t> t;
  for (int n : {2, 3, 4, 8, 16}) {
    std::vector<MaglevPath> p;
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      p.push_back({static_cast<uint16_t>(i + 1), static_cast<uint32_t>(100 * (i + 1))});
      sum += 100 * (i + 1);
    }
    const uint32_t m = maglev_size(n);
    b.build(p, m, t);
    ASSERT_EQ(t.size(), m);
    std::map<uint16_t, int> count;
    for (uint16_t x : t) ++count[x];
    EXPECT_EQ(count.size(), static_cast<size_t>(n));
    for (const auto& q : p)
      EXPECT_NEAR(count[q.id] / double(m), q.weight / sum, 0.01) << "n " << n << " path " << q.id;
  }
}

TEST(Maglev, ZeroWeightOrNoPathGivesNoEntries) {
  MaglevBuilder b;
  std::vector<uint16_t> t = {1, 2};
  b.build({}, 251, t);
  EXPECT_TRUE(t.empty());
  std::vector<MaglevPath> p = {{1, 0}, {2, 5}};
  b.build(p, 251, t);
  EXPECT_EQ(std::count(t.begin(), t.end(), 2), 251);
}

TEST(Maglev, AWeightChangeMovesEntriesMostlyToThatPath) {
  MaglevBuilder b;
  for (int n : {3, 4, 8, 16}) {
    const uint32_t m = maglev_size(n);
    auto p = equal_paths(n);
    std::vector<uint16_t> before, after;
    b.build(p, m, before);
    p[1].weight = 150;
    b.build(p, m, after);
    int moved = 0, between_others = 0, to_it = 0;
    for (uint32_t i = 0; i < m; ++i) {
      if (before[i] == after[i]) continue;
      ++moved;
      if (after[i] == p[1].id) ++to_it;
      else if (before[i] != p[1].id) ++between_others;
    }
    const double ideal = 150.0 / (100.0 * (n - 1) + 150) - 1.0 / n;  // the share it must gain
    EXPECT_GE(to_it / double(m), ideal - 0.01) << n;
    EXPECT_LE(moved / double(m), ideal + 0.03) << n;
    EXPECT_LE(between_others / double(m), 0.03) << n;
  }
}

TEST(Maglev, APathLeavingMovesItsEntriesAndFewOthers) {
  MaglevBuilder b;
  for (int n : {3, 4, 8, 16}) {
    const uint32_t m = maglev_size(n);
    auto p = equal_paths(n);
    std::vector<uint16_t> before, after;
    b.build(p, m, before);
    const uint16_t gone = p[2].id;
    p.erase(p.begin() + 2);
    b.build(p, m, after);
    int others_moved = 0;
    for (uint32_t i = 0; i < m; ++i) {
      EXPECT_NE(after[i], gone);
      if (before[i] != gone && before[i] != after[i]) ++others_moved;
    }
    EXPECT_LE(others_moved / double(m), 0.03) << n;
  }
}

// ---------------------------------------------------------------- compiler

constexpr uint64_t kSec = 1'000'000'000, kMsNs = 1'000'000;

// The lab: one peer (hub) over isp1, isp2 and isp3 (metered), path ids 0, 1, 2.
struct Lab {
  std::vector<PathInput> p;
  Lab() {
    for (uint8_t i = 0; i < 3; ++i) {
      PathInput x;
      x.id = i;
      x.peer = 0;
      x.uplink = i;
      x.metered = i == 2;
      x.up = true;
      x.rtt_ms = 20.0 + 10 * i;
      x.jitter_ms = 1;
      x.loss_pct = 0;
      p.push_back(x);
    }
  }
  PathInput& operator[](size_t i) { return p[i]; }
};

ClassConfig voice_class(dp::ClassMode mode = dp::ClassMode::kBest) {
  MatchRule m;
  m.proto = 17;
  m.dport = PortRange{5004, 5004};
  ClassConfig c = cls("voice", {m});
  c.mode = mode;
  c.sla.latency_ms = 150;
  c.sla.jitter_ms = 30;
  c.sla.loss_pct = 1;
  return c;
}

ClassConfig bulk_class() {
  ClassConfig c = cls("bulk", {}, true);
  c.mode = dp::ClassMode::kBalance;
  return c;
}

PolicyCompiler compiler(std::vector<ClassConfig> classes, PolicyConfig pc = {}) {
  return PolicyCompiler(std::move(classes), pc, {"hub"}, {"isp1:hub", "isp2:hub", "isp3:hub"});
}

bool in_lut(const dp::ClassPaths& cp, uint16_t id) { return std::find(cp.lut.begin(), cp.lut.end(), id) != cp.lut.end(); }

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// Past the start, when every path has been compliant longer than failback_stable_ms.
constexpr uint64_t kSettled = 10 * kSec;

TEST(Compiler, PolicyCarriesRulesAndOneEntryPerClassAndPeer) {
  Lab lab;
  auto pc = compiler({voice_class(), bulk_class()});
  auto pol = pc.compile(lab.p, kSec);
  ASSERT_TRUE(pol);
  EXPECT_EQ(pol->n_classes, 2);
  EXPECT_EQ(pol->default_class, 1);
  EXPECT_EQ(pol->n_peers, 1);
  ASSERT_EQ(pol->paths.size(), 2u);
  ASSERT_EQ(pol->rules.size(), 1u);
  EXPECT_EQ(pol->rules[0].dport_lo, 5004);
  EXPECT_EQ(pol->at(0, 0).mode, dp::ClassMode::kBest);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pol->at(1, 0).mode, dp::ClassMode::kBalance);
  // Same figures: the same pointer, so consecutive snapshots share it.
  EXPECT_EQ(pc.compile(lab.p, 2 * kSec), pol);
  EXPECT_EQ(pc.policy(), pol);
}

TEST(Compiler, VoiceLeavesAPathOverItsLatencyWhileBulkStays) {
  Lab lab;
  auto pc = compiler({voice_class(), bulk_class()});
  pc.compile(lab.p, kSec);
  auto pol = pc.compile(lab.p, kSettled);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_TRUE(in_lut(pol->at(1, 0), 0));
  EXPECT_TRUE(in_lut(pol->at(1, 0), 1));
  EXPECT_FALSE(in_lut(pol->at(1, 0), 2));  // metered, avoided
  EXPECT_EQ(pol->at(1, 0).lut.size(), maglev_size(3));

  lab[0].rtt_ms = 200;  // isp1 beyond voice's 150 ms
  pol = pc.compile(lab.p, kSettled + 100 * kMsNs);
  EXPECT_EQ(pol->at(0, 0).primary, 1) << "at once, no hold";
  EXPECT_TRUE(in_lut(pol->at(1, 0), 0)) << "bulk has no latency SLA";
  const ClassDecision* d = pc.decision(0, 0);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->sla_met);
  EXPECT_EQ(d->paths[0].verdict, Verdict::kRtt);
  EXPECT_EQ(pc.reason(*d, d->paths[0]), "rtt 200 ms > 150 ms");
  EXPECT_EQ(pc.reason(*d, d->paths[1]), "primary");
  EXPECT_EQ(pc.reason(*d, d->paths[2]), "metered, avoided: isp2:hub complies");
  EXPECT_EQ(pc.sla_text(*d), "met");
  const std::string text = joined(pc.explain(0));
  EXPECT_NE(text.find("class voice (id 0): mode best, SLA rtt <= 150 ms, jitter <= 30 ms, loss <= 1 %"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("isp1:hub: rtt 200 ms > 150 ms (rtt 200 ms, jitter 1 ms, loss 0 %)"), std::string::npos) << text;
}

TEST(Compiler, JitterAndLossBreakTheSlaToo) {
  Lab lab;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSettled);
  lab[0].jitter_ms = 31;
  lab[1].loss_pct = 2.5;
  auto pol = pc.compile(lab.p, kSettled + kSec);
  const ClassDecision* d = pc.decision(0, 0);
  EXPECT_EQ(pc.reason(*d, d->paths[0]), "jitter 31 ms > 30 ms");
  EXPECT_EQ(pc.reason(*d, d->paths[1]), "loss 2.5 % > 1 %");
  EXPECT_EQ(pol->at(0, 0).primary, 2) << "the metered path, since no unmetered one complies";
  EXPECT_TRUE(d->sla_met);
}

TEST(Compiler, MeteredUsedOnlyWhenNoUnmeteredPathComplies) {
  Lab lab;
  auto pc = compiler({voice_class(), bulk_class()});
  pc.compile(lab.p, kSec);
  lab[2].rtt_ms = 5;  // isp3 the fastest, but metered
  auto pol = pc.compile(lab.p, kSettled);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  lab[0].up = false;
  lab[1].up = false;
  pol = pc.compile(lab.p, kSettled + kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 2);
  EXPECT_EQ(pol->at(1, 0).primary, 2);
  EXPECT_TRUE(pol->at(1, 0).lut.empty());
  // isp1 comes back: once stable (failback), voice leaves the metered path at once.
  lab[0].up = true;
  pol = pc.compile(lab.p, kSettled + 2 * kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 2) << "isp1 still proving itself";
  pol = pc.compile(lab.p, kSettled + 7 * kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pol->at(1, 0).primary, 0);
}

TEST(Compiler, MeteredNeverAndAllow) {
  Lab lab;
  ClassConfig never = voice_class();
  never.metered = MeteredUse::kNever;
  ClassConfig allow = voice_class();
  allow.name = "allow";
  allow.metered = MeteredUse::kAllow;
  auto pc = compiler({never, allow});
  lab[2].rtt_ms = 5;
  lab[0].rtt_ms = 300;
  lab[1].rtt_ms = 400;
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 0) << "never: not even when it alone complies; least-bad instead";
  EXPECT_EQ(pc.reason(*pc.decision(0, 0), pc.decision(0, 0)->paths[2]), "metered, never for this class");
  EXPECT_EQ(pol->at(1, 0).primary, 2);
}

TEST(Compiler, FallbackLeastBadOrDrop) {
  Lab lab;
  ClassConfig drop = voice_class();
  drop.name = "drop";
  drop.fallback = Fallback::kDrop;
  auto pc = compiler({voice_class(), drop});
  lab[0].rtt_ms = 300;  // twice the limit
  lab[1].rtt_ms = 180;  // 1.2 x
  lab[2].up = false;
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 1);
  const ClassDecision* d = pc.decision(0, 0);
  EXPECT_FALSE(d->sla_met);
  EXPECT_TRUE(d->fallback);
  EXPECT_EQ(pc.sla_text(*d), "not met: no path complies; least-bad isp2:hub (chosen)");
  EXPECT_EQ(pol->at(1, 0).primary, dp::kNoPathId);
  EXPECT_TRUE(pc.decision(1, 0)->none);
  EXPECT_EQ(pc.sla_text(*pc.decision(1, 0)), "not met: no path complies, fallback drop");
  for (auto& x : lab.p) x.up = false;
  pol = pc.compile(lab.p, 2 * kSec);
  EXPECT_EQ(pol->at(0, 0).primary, dp::kNoPathId);
  EXPECT_EQ(pc.sla_text(*pc.decision(0, 0)), "not met: no path is up");
}

TEST(Compiler, DuplicatePicksTheTwoBestPathsOnDifferentUplinks) {
  // Two endpoints behind uplink 0 (ids 0, 1) and one behind uplink 1 (id 2).
  Lab lab;
  lab[1].uplink = 0;
  lab[1].rtt_ms = 12;
  lab[0].rtt_ms = 10;
  lab[2].uplink = 1;
  lab[2].metered = false;
  lab[2].rtt_ms = 40;
  ClassConfig crit = cls("critical", {MatchRule{.dport = PortRange{5005, 5005}}});
  crit.mode = dp::ClassMode::kDuplicate;
  auto pc = compiler({crit});
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).mode, dp::ClassMode::kDuplicate);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pol->at(0, 0).secondary, 2);
  EXPECT_TRUE(pol->at(0, 0).duplicating);
  // The primary's uplink fails: both of its paths go; nothing left on another uplink.
  lab[0].up = lab[1].up = false;
  pol = pc.compile(lab.p, 2 * kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 2);
  EXPECT_EQ(pol->at(0, 0).secondary, dp::kNoPathId);
  EXPECT_FALSE(pol->at(0, 0).duplicating);
}

TEST(Compiler, DuplicateCopiesOverTheLabsTwoUnmeteredUplinks) {
  Lab lab;
  ClassConfig crit = cls("critical", {MatchRule{.dport = PortRange{5005, 5005}}});
  crit.mode = dp::ClassMode::kDuplicate;
  auto pc = compiler({crit});
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pol->at(0, 0).secondary, 1);
  // isp1 blacked out: isp2 carries it at once; isp3 (metered, avoided) gets no copies.
  lab[0].up = false;
  pol = pc.compile(lab.p, kSec + 300 * kMsNs);
  EXPECT_EQ(pol->at(0, 0).primary, 1);
  EXPECT_EQ(pol->at(0, 0).secondary, dp::kNoPathId);
}

TEST(Compiler, AdaptiveDuplicatesOnlyWhileTheBestPathMissesTheSla) {
  Lab lab;
  ClassConfig c = voice_class(dp::ClassMode::kDuplicate);
  c.adaptive = true;
  auto pc = compiler({c});
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_FALSE(pol->at(0, 0).duplicating);
  EXPECT_EQ(pol->at(0, 0).secondary, 1);
  EXPECT_EQ(pc.decision(0, 0)->dup, ClassDecision::Dup::kSlaMet);
  for (auto& x : lab.p) x.rtt_ms = 200;
  pol = pc.compile(lab.p, 2 * kSec);
  EXPECT_TRUE(pol->at(0, 0).duplicating);
  EXPECT_EQ(pc.decision(0, 0)->dup, ClassDecision::Dup::kSlaMissed);
  lab[0].rtt_ms = 20;
  pol = pc.compile(lab.p, 3 * kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_TRUE(pol->at(0, 0).duplicating) << "until the SLA has been met for switch_hold_ms";
  pol = pc.compile(lab.p, 3 * kSec + 999 * kMsNs);
  EXPECT_TRUE(pol->at(0, 0).duplicating);
  pol = pc.compile(lab.p, 4 * kSec);
  EXPECT_FALSE(pol->at(0, 0).duplicating);
}

TEST(Compiler, CopiesStopBeyondTheirShareOfTheCopyUplink) {
  Lab lab;
  for (auto& x : lab.p) x.bandwidth_bps = 100'000'000;
  ClassConfig c = voice_class(dp::ClassMode::kDuplicate);
  c.max_overhead_pct = 50;
  auto pc = compiler({c});
  pc.set_class_rate(0, 0, 40'000'000);
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_TRUE(pol->at(0, 0).duplicating);
  pc.set_class_rate(0, 0, 60'000'000);
  pol = pc.compile(lab.p, 2 * kSec);
  EXPECT_FALSE(pol->at(0, 0).duplicating);
  EXPECT_EQ(pc.decision(0, 0)->dup, ClassDecision::Dup::kOverhead);
}

TEST(ClassRateMeter, BitsPerSecondOverEachFullWindow) {
  ClassRateMeter m(kSec);
  std::vector<uint64_t> bytes = {0, 1000};
  EXPECT_FALSE(m.update(bytes, 5 * kSec)) << "the first call starts the first window";
  EXPECT_EQ(m.bps(0), 0u) << "unknown until a window ends";
  bytes = {125'000, 1000};
  EXPECT_FALSE(m.update(bytes, 5 * kSec + 999 * kMsNs));
  EXPECT_EQ(m.bps(0), 0u);
  bytes = {250'000, 1000};
  EXPECT_TRUE(m.update(bytes, 6 * kSec + 250 * kMsNs));
  EXPECT_EQ(m.bps(0), 1'600'000u) << "250,000 bytes in 1.25 s";
  EXPECT_EQ(m.bps(1), 0u) << "nothing sent: 0";
  EXPECT_EQ(m.bps(7), 0u) << "no such class";
  bytes = {250'000 + 500'000, 2000};
  EXPECT_TRUE(m.update(bytes, 7 * kSec + 250 * kMsNs));
  EXPECT_EQ(m.bps(0), 4'000'000u);
  EXPECT_EQ(m.bps(1), 8000u);
  bytes = {10, 2000};  // a worker's counters restarted: nothing counts, nothing wraps
  EXPECT_TRUE(m.update(bytes, 8 * kSec + 250 * kMsNs));
  EXPECT_EQ(m.bps(0), 0u);
}

// What sdwand does every compile: the classes' byte counters into the meter, its rates into
// the compiler. A duplicate class's copies stop once its rate passes max_overhead_pct of the
// copy uplink, within two windows of the rise, and come back when it falls again.
TEST(Compiler, TheOverheadCapFollowsTheMeasuredClassRate) {
  Lab lab;
  for (auto& x : lab.p) x.bandwidth_bps = 10'000'000;
  ClassConfig c = voice_class(dp::ClassMode::kDuplicate);
  c.max_overhead_pct = 10;  // copies may use 1 Mbit/s of the copy uplink
  auto pc = compiler({c});
  ClassRateMeter meter(kSec);
  uint64_t bytes = 0, now = kSec;
  std::vector<bool> duplicating;
  std::vector<ClassDecision::Dup> why;
  // 100 ms steps: 0.5 Mbit/s for 3 s, then 2 Mbit/s for 3 s, then 0.5 Mbit/s again.
  for (int step = 0; step < 90; ++step, now += 100 * kMsNs) {
    const uint64_t bps = step >= 30 && step < 60 ? 2'000'000 : 500'000;
    bytes += bps / 8 / 10;
    const std::vector<uint64_t> b = {bytes};
    if (meter.update(b, now)) pc.set_class_rate(0, 0, meter.bps(0));
    duplicating.push_back(pc.compile(lab.p, now)->at(0, 0).duplicating);
    why.push_back(pc.decision(0, 0)->dup);
  }
  EXPECT_TRUE(duplicating[29]) << "0.5 Mbit/s: under the cap";
  EXPECT_FALSE(duplicating[51]) << "2 Mbit/s for 2 s: over the cap";
  EXPECT_EQ(why[51], ClassDecision::Dup::kOverhead);
  const auto first_off = std::find(duplicating.begin() + 30, duplicating.end(), false) - duplicating.begin();
  EXPECT_LE(first_off, 30 + 20) << "within two windows of the rise";
  for (auto step = first_off; step < 60; ++step) {
    EXPECT_FALSE(duplicating[size_t(step)]) << "stays off while the rate stays up, step " << step;
  }
  EXPECT_TRUE(duplicating[89]) << "copies again once the rate is back under the cap";
  EXPECT_EQ(pc.dup_text(*pc.decision(0, 0)), "yes (always)");
}

TEST(Compiler, HysteresisMarginAndHoldTime) {
  Lab lab;
  lab[0].rtt_ms = 50;
  lab[1].rtt_ms = 60;
  lab[0].jitter_ms = lab[1].jitter_ms = 0;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSec);
  const uint64_t t = kSettled;
  lab[1].rtt_ms = 46;  // 8 % better: under the 10 % margin
  auto pol = pc.compile(lab.p, t);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pc.held_text(*pc.decision(0, 0), pc.decision(0, 0)->held_primary), "isp2:hub better by 8 % < 10 % margin");
  lab[1].rtt_ms = 40;  // 20 % better: the hold starts
  EXPECT_EQ(pc.compile(lab.p, t + kSec)->at(0, 0).primary, 0);
  EXPECT_EQ(pc.compile(lab.p, t + kSec + 500 * kMsNs)->at(0, 0).primary, 0);
  EXPECT_EQ(pc.held_text(*pc.decision(0, 0), pc.decision(0, 0)->held_primary),
            "isp2:hub better by 20 % for 0.5 s < 1 s hold");
  lab[1].rtt_ms = 47;  // the advantage lapses: the hold starts over
  pc.compile(lab.p, t + kSec + 600 * kMsNs);
  lab[1].rtt_ms = 40;
  EXPECT_EQ(pc.compile(lab.p, t + kSec + 700 * kMsNs)->at(0, 0).primary, 0);
  EXPECT_EQ(pc.compile(lab.p, t + 2 * kSec + 600 * kMsNs)->at(0, 0).primary, 0);
  EXPECT_EQ(pc.compile(lab.p, t + 2 * kSec + 700 * kMsNs)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.decision(0, 0)->held_primary.kind, Held::kNone);
}

TEST(Compiler, SubMillisecondDifferencesNeverMoveAClass) {
  Lab lab;
  lab[0].rtt_ms = 0.5;
  lab[1].rtt_ms = 0.6;
  lab[0].jitter_ms = lab[1].jitter_ms = 0;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSec);
  EXPECT_EQ(pc.compile(lab.p, kSettled)->at(0, 0).primary, 0);
  lab[1].rtt_ms = 0.3;  // 40 % better, but 0.2 ms: noise on a LAN-like path
  EXPECT_EQ(pc.compile(lab.p, kSettled + kSec)->at(0, 0).primary, 0);
  EXPECT_EQ(pc.compile(lab.p, kSettled + 5 * kSec)->at(0, 0).primary, 0);
  lab[0].rtt_ms = 2.0;  // now 1.7 ms (85 %) better: it moves after the hold
  pc.compile(lab.p, kSettled + 6 * kSec);
  EXPECT_EQ(pc.compile(lab.p, kSettled + 7 * kSec + kMsNs)->at(0, 0).primary, 1);
}

TEST(Compiler, AbsoluteMarginInMilliseconds) {
  Lab lab;
  lab[0].rtt_ms = 100;
  lab[1].rtt_ms = 93;
  lab[0].jitter_ms = lab[1].jitter_ms = 0;
  PolicyConfig cfg;
  cfg.switch_margin_ms = 5;
  cfg.switch_hold_ms = 0;
  auto pc = compiler({voice_class()}, cfg);
  pc.compile(lab.p, kSec);  // isp2 best at once: nothing to hold back from
  lab[0].rtt_ms = 90;       // 3 ms better than isp2: under 5 ms
  auto pol = pc.compile(lab.p, kSettled);
  EXPECT_EQ(pol->at(0, 0).primary, 1);
  EXPECT_EQ(pc.held_text(*pc.decision(0, 0), pc.decision(0, 0)->held_primary), "isp1:hub better by 3 ms < 5 ms margin");
  lab[0].rtt_ms = 87;
  EXPECT_EQ(pc.compile(lab.p, kSettled + 1)->at(0, 0).primary, 0) << "6 ms better, no hold";
}

TEST(Compiler, MovesAtOnceWhenTheCurrentPathGoesDownOrBreaksTheSla) {
  Lab lab;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSettled);
  lab[0].up = false;
  EXPECT_EQ(pc.compile(lab.p, kSettled + 1)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.reason(*pc.decision(0, 0), pc.decision(0, 0)->paths[0]), "down");
  lab[1].loss_pct = 5;
  EXPECT_EQ(pc.compile(lab.p, kSettled + 2)->at(0, 0).primary, 2);
}

// At start the paths come up one by one: the first up (here the metered isp3) must not keep a
// class for failback_stable_ms, since a path that comes up for the first time is no recovery.
TEST(Compiler, APathUpForTheFirstTimeIsNoRecovery) {
  Lab lab;
  lab[0].up = lab[1].up = false;
  auto pc = compiler({voice_class(), bulk_class()});
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 2) << "isp3 is all there is";
  lab[0].up = lab[1].up = true;
  pol = pc.compile(lab.p, kSec + 100 * kMsNs);
  EXPECT_EQ(pol->at(0, 0).primary, 0) << "isp1 at once, not after the failback time";
  EXPECT_TRUE(in_lut(pol->at(1, 0), 0) && in_lut(pol->at(1, 0), 1));
  EXPECT_FALSE(in_lut(pol->at(1, 0), 2)) << "bulk leaves the metered isp3 at once";
  EXPECT_NE(pc.decision(0, 0)->paths[0].verdict, Verdict::kRecovering);
}

TEST(Compiler, FailbackWaitsUntilTheRecoveredPathHasBeenStable) {
  Lab lab;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSettled);
  const uint64_t t = kSettled + kSec;
  lab[0].up = false;
  EXPECT_EQ(pc.compile(lab.p, t)->at(0, 0).primary, 1);
  // Flapping: up for 2 s, down, up again.
  lab[0].up = true;
  EXPECT_EQ(pc.compile(lab.p, t + 2 * kSec)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.compile(lab.p, t + 4 * kSec)->at(0, 0).primary, 1);
  const ClassDecision* d = pc.decision(0, 0);
  EXPECT_EQ(d->paths[0].verdict, Verdict::kRecovering);
  EXPECT_EQ(pc.reason(*d, d->paths[0]), "recovered 2 s ago, waiting 5 s");
  lab[0].up = false;
  pc.compile(lab.p, t + 5 * kSec);
  lab[0].up = true;
  const uint64_t back = t + 6 * kSec;
  EXPECT_EQ(pc.compile(lab.p, back)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.compile(lab.p, back + 4 * kSec)->at(0, 0).primary, 1) << "4 s of 5";
  // Stable for 5 s: now an ordinary better path, which must keep its margin for the hold.
  EXPECT_EQ(pc.compile(lab.p, back + 5 * kSec)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.compile(lab.p, back + 6 * kSec)->at(0, 0).primary, 0);
}

TEST(Compiler, NeverMovesOntoAPathNoBetterThanTheCurrentOne) {
  Lab lab;
  auto pc = compiler({voice_class()});
  pc.compile(lab.p, kSettled);
  lab[0].up = false;
  pc.compile(lab.p, kSettled + kSec);  // on isp2 (30 ms)
  lab[0].up = true;
  lab[0].rtt_ms = 35;  // back, but worse than isp2
  for (uint64_t s = 2; s < 20; ++s) EXPECT_EQ(pc.compile(lab.p, kSettled + s * kSec)->at(0, 0).primary, 1) << s;
  // Nothing complies: stay on the current least-bad path unless another is less bad by the margin.
  lab[0].rtt_ms = 200;
  lab[1].rtt_ms = 190;
  lab[2].up = false;
  for (uint64_t s = 20; s < 25; ++s) EXPECT_EQ(pc.compile(lab.p, kSettled + s * kSec)->at(0, 0).primary, 1) << s;
  lab[1].rtt_ms = 210;  // isp2 now the worse one, by 5 %: under the margin, stay
  for (uint64_t s = 25; s < 30; ++s) EXPECT_EQ(pc.compile(lab.p, kSettled + s * kSec)->at(0, 0).primary, 1) << s;
  lab[1].rtt_ms = 260;  // 23 % worse: after the hold, the less bad isp1
  EXPECT_EQ(pc.compile(lab.p, kSettled + 30 * kSec)->at(0, 0).primary, 1);
  EXPECT_EQ(pc.compile(lab.p, kSettled + 31 * kSec)->at(0, 0).primary, 0);
}

TEST(Compiler, BalanceWeightsFollowBandwidthAndQualityAndIgnoreNoise) {
  Lab lab;
  lab[0].bandwidth_bps = 300'000'000;
  lab[1].bandwidth_bps = 100'000'000;
  lab[0].rtt_ms = lab[1].rtt_ms = 20;
  auto pc = compiler({bulk_class()});
  auto pol = pc.compile(lab.p, kSec);
  const ClassDecision* d = pc.decision(0, 0);
  EXPECT_EQ(d->paths[0].weight, 1000u);
  EXPECT_EQ(d->paths[1].weight, 333u);
  const auto& lut = pol->at(0, 0).lut;
  const double share = std::count(lut.begin(), lut.end(), 0) / double(lut.size());
  EXPECT_NEAR(share, 0.75, 0.01);
  EXPECT_EQ(pc.reason(*d, d->paths[0]), "chosen, weight 1000");
  // Noise: 2 ms more RTT changes isp2's quality by 2 %: no new table, no new policy.
  lab[1].rtt_ms = 22;
  EXPECT_EQ(pc.compile(lab.p, 2 * kSec), pol);
  // 1 % loss halves isp2's weight: a new table, once the change has lasted the hold time.
  lab[1].loss_pct = 1;
  EXPECT_EQ(pc.compile(lab.p, 3 * kSec), pol);
  EXPECT_EQ(pc.compile(lab.p, 3 * kSec + 999 * kMsNs), pol);
  auto pol2 = pc.compile(lab.p, 4 * kSec);
  EXPECT_NE(pol2, pol);
  EXPECT_NEAR(pc.decision(0, 0)->paths[1].weight, 163, 2);
}

// A figure that is off for a compile or two (the loss estimate when a delay change reorders
// probe replies) must not rebuild the table: the flows would move away and back in 100 ms.
TEST(Compiler, AWeightChangeShorterThanTheHoldMovesNoFlow) {
  Lab lab;
  lab[0].rtt_ms = lab[1].rtt_ms = 20;
  auto pc = compiler({bulk_class()});
  const auto pol = pc.compile(lab.p, kSec);
  const auto lut = pol->at(0, 0).lut;
  lab[0].loss_pct = 1.3;  // would halve isp1's weight
  for (uint64_t ms = 100; ms <= 900; ms += 100) EXPECT_EQ(pc.compile(lab.p, kSec + ms * kMsNs), pol) << ms;
  lab[0].loss_pct = 0;
  for (uint64_t ms = 1000; ms <= 3000; ms += 100) EXPECT_EQ(pc.compile(lab.p, kSec + ms * kMsNs), pol) << ms;
  EXPECT_EQ(pc.decision(0, 0)->paths[0].weight, 1000u);
  // Off again, on and off: the hold starts over each time the figure comes back.
  for (uint64_t ms = 3100; ms <= 6000; ms += 100) {
    lab[0].loss_pct = ms % 1000 < 600 ? 1.3 : 0;
    EXPECT_EQ(pc.compile(lab.p, kSec + ms * kMsNs)->at(0, 0).lut, lut) << ms;
  }
  // A path that leaves still leaves at once.
  lab[1].up = false;
  EXPECT_TRUE(pc.compile(lab.p, 8 * kSec)->at(0, 0).lut.empty());
}

TEST(Compiler, BalanceKeepsFlowsOfOtherPathsWhenOneLeaves) {
  Lab lab;
  lab[2].metered = false;
  auto pc = compiler({bulk_class()});
  const auto before = pc.compile(lab.p, kSec)->at(0, 0).lut;
  lab[1].up = false;
  const auto after = pc.compile(lab.p, 2 * kSec)->at(0, 0).lut;
  ASSERT_EQ(before.size(), after.size());
  size_t kept = 0, others = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i] == 1) continue;
    ++others;
    kept += before[i] == after[i];
  }
  EXPECT_GE(double(kept) / double(others), 0.97);
  EXPECT_EQ(std::count(after.begin(), after.end(), 1), 0);
}

TEST(Compiler, SprayReorderHoldFromTheDelayDifferenceCapped) {
  Lab lab;
  lab[0].rtt_ms = 10;
  lab[0].jitter_ms = 0.5;
  lab[1].rtt_ms = 30;
  lab[1].jitter_ms = 1;
  ClassConfig video = cls("video", {MatchRule{.dport = PortRange{5006, 5006}}});
  video.mode = dp::ClassMode::kSpray;
  ClassConfig capped = video;
  capped.name = "capped";
  capped.reorder_max_ms = 10;
  auto pc = compiler({video, capped});
  auto pol = pc.compile(lab.p, kSec);
  EXPECT_EQ(pol->at(0, 0).reorder_hold_us, 27000u);  // 20 + 2 x 1 + 5 ms
  EXPECT_EQ(pol->at(1, 0).reorder_hold_us, 10000u);
  EXPECT_FALSE(pol->at(0, 0).lut.empty());
  lab[1].up = false;
  pol = pc.compile(lab.p, 2 * kSec);
  EXPECT_EQ(pol->at(0, 0).reorder_hold_us, 0u) << "one path: nothing to reorder";
  EXPECT_TRUE(pol->at(0, 0).lut.empty());
  EXPECT_EQ(pol->at(0, 0).primary, 0);
}

TEST(Compiler, EveryPeerHasItsOwnDecision) {
  std::vector<PathInput> in;
  for (uint16_t peer = 0; peer < 2; ++peer)
    for (uint8_t u = 0; u < 2; ++u) {
      PathInput x;
      x.id = static_cast<uint16_t>(peer * 2 + u);
      x.peer = peer;
      x.uplink = u;
      x.up = true;
      x.rtt_ms = peer == 0 ? 10.0 + u * 100 : 110.0 - u * 100;
      in.push_back(x);
    }
  PolicyCompiler pc({voice_class()}, {}, {"a", "b"});
  auto pol = pc.compile(in, kSec);
  EXPECT_EQ(pol->at(0, 0).primary, 0);
  EXPECT_EQ(pol->at(0, 1).primary, 3);
  EXPECT_EQ(pc.decision(0, 1)->paths.size(), 2u);
  EXPECT_EQ(pc.path_name(3), "path 3");
  EXPECT_EQ(pc.class_id("voice"), 0);
  EXPECT_FALSE(pc.class_id("nope"));
  EXPECT_EQ(pc.decision(1, 0), nullptr);
}

// Live reload: a class that keeps its name keeps its sticky path and hysteresis; the policy
// asks the workers to classify older flows again only when the classes changed.
TEST(Compiler, ReconfigureKeepsTheStateOfClassesThatStay) {
  Lab lab;
  lab[0].rtt_ms = 50;
  lab[1].rtt_ms = 47;  // isp2 slightly better, within the margin: voice stays on isp1
  lab[0].jitter_ms = lab[1].jitter_ms = 0;
  lab[1].rtt_ms = 60;
  auto pc = compiler({voice_class(), bulk_class()});
  pc.compile(lab.p, kSec);
  EXPECT_EQ(pc.compile(lab.p, kSettled)->at(0, 0).primary, 0);
  lab[1].rtt_ms = 47;  // 6 % better: held by the margin
  EXPECT_EQ(pc.compile(lab.p, kSettled + kSec)->at(0, 0).primary, 0);
  // A new class in front and a new margin: voice (now class 1) keeps isp1.
  ClassConfig gaming = cls("gaming", {});
  gaming.match.push_back(MatchRule{});
  gaming.match.back().proto = 17;
  gaming.match.back().dport = PortRange{7777, 7777};
  PolicyConfig pcfg;
  pcfg.switch_margin_pct = 15;
  pc.reconfigure({gaming, voice_class(), bulk_class()}, pcfg, 42);
  auto pol = pc.compile(lab.p, kSettled + 2 * kSec);
  ASSERT_EQ(pol->n_classes, 3);
  EXPECT_EQ(pol->reclassify_gen, 42u);
  EXPECT_EQ(pol->at(1, 0).primary, 0) << "voice kept its path through the reload";
  EXPECT_EQ(pc.class_id("voice"), 1);
  EXPECT_EQ(pol->rules.size(), 2u);
  EXPECT_EQ(pol->rules[0].cls, 0) << "gaming's rule first, in config order";
  // Policy only: same classes, no re-classification asked.
  pc.reconfigure({gaming, voice_class(), bulk_class()}, PolicyConfig{}, std::nullopt);
  EXPECT_EQ(pc.compile(lab.p, kSettled + 3 * kSec)->reclassify_gen, 42u);
}

// Live reload of peers: a kept peer keeps its sticky path (its index does not move), a new peer
// is compiled from its first inputs, a removed one is compiled no more.
TEST(Compiler, SetPeersKeepsKeptPeersAndDropsTombstones) {
  Lab lab;
  lab[0].rtt_ms = 50;
  lab[1].rtt_ms = 60;
  auto pc = compiler({voice_class(), bulk_class()});
  pc.compile(lab.p, kSec);
  EXPECT_EQ(pc.compile(lab.p, kSettled)->at(0, 0).primary, 0);
  lab[1].rtt_ms = 47;  // 6 % better: held by the margin, so a fresh state would pick it
  EXPECT_EQ(pc.compile(lab.p, kSettled + kSec)->at(0, 0).primary, 0);
  // A second peer with two paths (ids 3 and 4), appended.
  std::vector<PathInput> in = lab.p;
  for (uint16_t i = 0; i < 2; ++i) {
    PathInput x;
    x.id = static_cast<uint16_t>(3 + i);
    x.peer = 1;
    x.uplink = static_cast<uint8_t>(i);
    x.up = true;
    x.rtt_ms = 40.0 - 10 * i;
    x.jitter_ms = 0;
    x.loss_pct = 0;
    in.push_back(x);
  }
  pc.set_peers({"hub", "hub2"}, {false, false}, {});
  auto pol = pc.compile(in, kSettled + 2 * kSec);
  ASSERT_EQ(pol->n_peers, 2);
  EXPECT_EQ(pol->at(0, 0).primary, 0) << "hub's voice kept its path through the reload";
  EXPECT_EQ(pol->at(0, 1).primary, 4) << "hub2 compiled from its own paths";
  ASSERT_NE(pc.decision(0, 1), nullptr);
  // hub removed: a tombstone at index 0, hub2 keeps index 1 and its path.
  std::vector<PathInput> only2(in.begin() + 3, in.end());
  pc.set_peers({"hub (removed)", "hub2"}, {true, false}, {});
  pol = pc.compile(only2, kSettled + 3 * kSec);
  ASSERT_EQ(pol->n_peers, 2);
  EXPECT_EQ(pc.decision(0, 0), nullptr);
  EXPECT_EQ(pol->at(0, 0).primary, dp::kNoPathId) << "nothing goes to a removed peer";
  EXPECT_EQ(pol->at(0, 1).primary, 4);
  for (const auto& line : pc.explain(0)) EXPECT_EQ(line.find("hub (removed)"), std::string::npos) << line;
}

}  // namespace
}  // namespace sdwan::cp
