// control/policy (issue 6): class rules, Maglev tables, the policy compiler. Injected time, no sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "control/config/config.hpp"
#include "control/policy/classify.hpp"
#include "control/policy/maglev.hpp"

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

}  // namespace
}  // namespace sdwan::cp
