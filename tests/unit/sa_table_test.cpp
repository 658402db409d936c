// SaTable: lifetimes by each dimension, sequence exhaustion, make-before-break rekeying
// between two appliances that never talk except through ESP traffic, restarts with the
// EpochStore, and a randomized run that checks the invariants after every step.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "control/esp/epoch_store.hpp"
#include "control/esp/sa_table.hpp"
#include "control/esp/spi.hpp"

namespace sdwan::cp {
namespace {

namespace fs = std::filesystem;
using Kind = SaAction::Kind;

Endpoint ep(const char* ip, uint16_t port = 4500) { return Endpoint{*Ipv4::parse(ip), port}; }

SaLifetime lifetime(uint64_t packets, uint64_t bytes, uint64_t seconds, uint64_t drain_ms = 2000) {
  SaLifetime lt;
  lt.hard = {packets, bytes, seconds};
  lt.soft_percent = 90;
  lt.drain_ms = drain_ms;
  return lt;
}

SaTable make_table(const SaLifetime& lt) {
  auto t = SaTable::create(lt);
  EXPECT_TRUE(t) << t.error().msg;
  return std::move(t).value();
}

// "II(0) II(1) RO(0) IO(1) RI(0)": kinds and epochs of an action list, for exact comparisons.
std::string brief(const std::vector<SaAction>& acts) {
  std::string s;
  for (const SaAction& a : acts) {
    static const char* k[] = {"II", "IO", "RI", "RO"};
    if (!s.empty()) s += ' ';
    s += std::string(k[static_cast<int>(a.kind)]) + "(" + std::to_string(a.sa.epoch) + ")";
  }
  return s;
}

// ---------------------------------------------------------------- a simulated appliance

// What the daemon and the workers would do with the actions: an inbound table indexed by SPI
// slot, one outbound SA per path, counters per installed SA, and a worker that never sends on
// an SA at its hard limit. Every action is checked as it is applied.
struct Node {
  struct In {
    SaName name;
    uint64_t packets = 0, bytes = 0;
  };
  struct Out {
    SaName name;
    SaLimits hard;
    uint64_t installed_ms = 0;
    uint64_t packets = 0, bytes = 0, seq = 0;
  };

  explicit Node(std::string n, const SaLifetime& lt) : name(std::move(n)), table(make_table(lt)) {}

  std::string name;
  SaTable table;
  std::map<uint32_t, In> in;     // by slot
  std::map<uint16_t, Out> out;   // by path
  Node* peer = nullptr;
  bool check_mbb = true;         // the peer must already accept every outbound SA we install
  std::set<std::tuple<uint64_t, uint64_t, uint32_t>> sent_under;  // (src, dst, epoch) ever installed outbound
  uint64_t accepted = 0, dropped = 0, blocked = 0;
  std::vector<std::string> log;  // per applied list, for failure messages

  void apply(const std::vector<SaAction>& acts, uint64_t now) {
    log.push_back(name + "@" + std::to_string(now) + ": " + brief(acts));
    for (const SaAction& a : acts) {
      const uint32_t slot = spi_slot(a.sa.spi);
      switch (a.kind) {
        case Kind::kInstallInbound:
          ASSERT_EQ(in.count(slot), 0u) << name << ": slot " << slot << " taken; " << history();
          in[slot] = In{a.sa};
          break;
        case Kind::kRetireInbound:
          ASSERT_EQ(in.count(slot), 1u) << name << ": retiring an absent SA; " << history();
          ASSERT_EQ(in[slot].name, a.sa);
          in.erase(slot);
          break;
        case Kind::kInstallOutbound: {
          ASSERT_EQ(out.count(a.path), 0u) << name << ": outbound installed over another; " << history();
          // Never the same key and sequence numbers twice: an (SA, epoch) is sent under once.
          ASSERT_TRUE(sent_under.insert({a.sa.src.order(), a.sa.dst.order(), a.sa.epoch}).second)
              << name << ": epoch " << a.sa.epoch << " sent under again; " << history();
          if (check_mbb && peer != nullptr) {
            auto it = peer->in.find(slot);
            ASSERT_TRUE(it != peer->in.end() && it->second.name == a.sa)
                << name << ": outbound epoch " << a.sa.epoch << " before the peer accepts it; " << history();
          }
          out[a.path] = Out{a.sa, a.hard, now};
          break;
        }
        case Kind::kRetireOutbound:
          ASSERT_EQ(out.count(a.path), 1u);
          ASSERT_EQ(out[a.path].name, a.sa);
          out.erase(a.path);
          break;
      }
    }
  }

  std::string history() const {
    std::string s;
    const size_t from = log.size() > 12 ? log.size() - 12 : 0;
    for (size_t i = from; i < log.size(); ++i) s += "\n  " + log[i];
    return s;
  }

  std::vector<SaUsage> usage() const {
    std::vector<SaUsage> u;
    for (const auto& [slot, s] : in) u.push_back({SaDir::kInbound, s.name.spi, s.packets, s.bytes, 0});
    for (const auto& [path, s] : out) u.push_back({SaDir::kOutbound, s.name.spi, s.packets, s.bytes, s.seq});
    return u;
  }

  std::vector<SaAction> tick(uint64_t now) {
    auto acts = table.tick(now, usage());
    apply(acts, now);
    return acts;
  }

  static bool at_hard(const Out& o, uint64_t now) {
    return o.packets >= o.hard.packets || o.seq >= o.hard.packets || o.bytes >= o.hard.bytes ||
           now - o.installed_ms >= o.hard.seconds * 1000;
  }

  // The worker: n packets of size bytes on path, each to the peer's inbound table.
  void send(uint16_t path, uint64_t n, uint64_t size, uint64_t now) {
    for (uint64_t i = 0; i < n; ++i) {
      auto it = out.find(path);
      if (it == out.end() || at_hard(it->second, now)) {
        ++blocked;
        continue;
      }
      Out& o = it->second;
      ++o.seq;
      ++o.packets;
      o.bytes += size;
      auto r = peer->in.find(spi_slot(o.name.spi));
      if (r != peer->in.end() && r->second.name == o.name) {
        ++r->second.packets;
        r->second.bytes += size;
        ++peer->accepted;
      } else {
        ++peer->dropped;
      }
    }
  }

  // The invariant of the issue: after a tick, no path keeps an outbound SA at a hard limit.
  void expect_no_outbound_at_hard(uint64_t now) const {
    for (const auto& [path, o] : out)
      EXPECT_FALSE(at_hard(o, now)) << name << " path " << path << " epoch " << o.name.epoch << history();
  }
};

struct Pair {
  Pair(const SaLifetime& lt, size_t paths = 1, bool esn = true) : edge("edge", lt), hub("hub", lt) {
    edge.peer = &hub;
    hub.peer = &edge;
    for (size_t i = 0; i < paths; ++i) {
      const std::string n = std::to_string(i + 1);
      specs_edge.push_back(SaPathSpec{static_cast<uint16_t>(i), static_cast<uint16_t>(i),
                                      ep(("10." + n + ".0.2").c_str()), ep(("10." + n + ".1.2").c_str()), esn, 0});
      SaPathSpec h = specs_edge.back();
      h.path = static_cast<uint16_t>(10 + i);  // the hub numbers its paths its own way; links agree
      std::swap(h.local, h.remote);
      specs_hub.push_back(h);
    }
  }
  void start(uint64_t now) {
    // The hub starts first, while the edge is not there to accept anything yet; the edge
    // starts at an epoch the hub accepts.
    hub.check_mbb = false;
    for (const auto& s : specs_hub) hub.apply(*hub.table.add_path(s, now), now);
    hub.check_mbb = true;
    for (const auto& s : specs_edge) edge.apply(*edge.table.add_path(s, now), now);
  }
  Node edge, hub;
  std::vector<SaPathSpec> specs_edge, specs_hub;
};

// ---------------------------------------------------------------- policy and paths

TEST(SaLifetimeCheck, DefaultsAndRefusals) {
  SaLifetime d;
  EXPECT_EQ(d.hard, (SaLimits{uint64_t{1} << 31, uint64_t{1} << 40, 8 * 3600}));
  EXPECT_EQ(d.soft_percent, 90u);
  EXPECT_TRUE(check_lifetime(d));
  struct Case {
    SaLifetime lt;
    std::string msg;
  };
  const std::vector<Case> cases = {
      {lifetime(0, 1, 1), "sa lifetime: hard packets must be above 0"},
      {lifetime(1, 0, 1), "sa lifetime: hard bytes must be above 0"},
      {lifetime(1, 1, 0), "sa lifetime: hard seconds must be 1..316224000 (ten years), got 0"},
      {lifetime(1, 1, 1, 3600 * 1000 + 1), "sa lifetime: drain must be at most 3600000 ms, got 3600001"},
  };
  for (const Case& c : cases) {
    auto t = SaTable::create(c.lt);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().msg, c.msg);
  }
  SaLifetime p = d;
  p.soft_percent = 100;
  EXPECT_EQ(check_lifetime(p).error().msg, "sa lifetime: soft percent must be 1..99, got 100");
}

TEST(SaTable, AddPathInstallsInboundWindowThenOutbound) {
  SaTable t = make_table(SaLifetime{});
  const SaPathSpec s{3, 7, ep("10.1.0.2"), ep("10.1.1.2"), true, 5};
  auto acts = t.add_path(s, 1000);
  ASSERT_TRUE(acts);
  EXPECT_EQ(brief(*acts), "II(5) II(6) II(7) II(8) IO(5)");
  for (const SaAction& a : *acts) {
    EXPECT_EQ(a.path, 3);
    EXPECT_TRUE(a.esn);
    EXPECT_EQ(a.hard, (SaLimits{uint64_t{1} << 31, uint64_t{1} << 40, 8 * 3600}));
  }
  EXPECT_EQ((*acts)[0].sa, (SaName{ep("10.1.1.2"), ep("10.1.0.2"), 0x5d00007b, 0x5d00007a, 5}));
  EXPECT_EQ((*acts)[4].sa, (SaName{ep("10.1.0.2"), ep("10.1.1.2"), 0x5d00007a, 0x5d00007b, 5}));
  EXPECT_TRUE(t.usable(3));
  EXPECT_EQ(t.outbound_epoch(3), 5u);
  EXPECT_FALSE(t.usable(4));
  EXPECT_FALSE(t.outbound_epoch(4));
}

TEST(SaTable, RefusesDuplicatePathsLinksAndBadEndpoints) {
  SaTable t = make_table(SaLifetime{});
  ASSERT_TRUE(t.add_path({1, 1, ep("10.1.0.2"), ep("10.1.1.2"), true, 0}, 0));
  auto dup = t.add_path({1, 2, ep("10.2.0.2"), ep("10.2.1.2"), true, 0}, 0);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().msg, "path 1: already has SAs");
  auto link = t.add_path({2, 1, ep("10.2.0.2"), ep("10.2.1.2"), true, 0}, 0);
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().msg, "path 2: link number 1 is already used by path 1");
  auto big = t.add_path({2, 4096, ep("10.2.0.2"), ep("10.2.1.2"), true, 0}, 0);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().msg, "path 2: link number 4096 is out of range 0..4095");
  auto same = t.add_path({2, 2, ep("10.2.0.2"), ep("10.2.0.2"), true, 0}, 0);
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().msg, "path 2: link 2: both ends are 10.2.0.2:4500; a path needs two different endpoints");
  auto spent = t.add_path({2, 2, ep("10.2.0.2"), ep("10.2.1.2"), true, 0xfffffff0u}, 0);
  ASSERT_FALSE(spent);
  EXPECT_EQ(spent.error().msg, "path 2: epochs exhausted (start epoch 4294967280); change the master key");
}

TEST(SaTable, WithoutEsnTheOutboundPacketLimitIsTheSequenceSpace) {
  SaTable t = make_table(lifetime(uint64_t{1} << 40, uint64_t{1} << 50, 3600));
  auto acts = *t.add_path({0, 0, ep("10.1.0.2"), ep("10.1.1.2"), false, 0}, 0);
  EXPECT_EQ(acts.back().kind, Kind::kInstallOutbound);
  EXPECT_EQ(acts.back().hard.packets, 0xffffffffu);
  EXPECT_FALSE(acts.back().esn);
  EXPECT_EQ(acts.front().hard.packets, uint64_t{1} << 40);  // inbound: no sequence cap of ours
}

TEST(SaTable, RemovePathRetiresEverything) {
  SaTable t = make_table(SaLifetime{});
  ASSERT_TRUE(t.add_path({4, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 2}, 0));
  EXPECT_EQ(brief(t.remove_path(4)), "RO(2) RI(2) RI(3) RI(4) RI(5)");
  EXPECT_FALSE(t.usable(4));
  EXPECT_TRUE(t.remove_path(4).empty());
  EXPECT_TRUE(t.rows(0).empty());
}

// ---------------------------------------------------------------- limits, one side

struct LimitCase {
  const char* name;
  SaUsage usage;      // outbound epoch 0 counters (spi filled in)
  uint64_t now_ms;
  bool esn;
  std::string expect; // actions of the tick
};

// The peer has been seen at epoch 0, so epochs 1..3 are allowed; epoch 0 is never used again.
TEST(SaTable, SoftAndHardByEachDimensionMoveTheOutboundOn) {
  const SaLifetime lt = lifetime(1000, 1'000'000, 100);
  const std::vector<LimitCase> cases = {
      {"below every soft limit", {SaDir::kOutbound, 0, 899, 899'999, 899}, 89'999, true, ""},
      {"soft packets", {SaDir::kOutbound, 0, 900, 0, 900}, 20'000, true, "II(4) RO(0) IO(1)"},
      {"soft bytes", {SaDir::kOutbound, 0, 1, 900'000, 1}, 20'000, true, "II(4) RO(0) IO(1)"},
      {"soft seconds", {SaDir::kOutbound, 0, 1, 1, 1}, 90'000, true, "II(4) RO(0) IO(1)"},
      {"soft sequence ahead of packets", {SaDir::kOutbound, 0, 10, 10, 900}, 20'000, true, "II(4) RO(0) IO(1)"},
      {"hard packets", {SaDir::kOutbound, 0, 1000, 0, 1000}, 20'000, false, "II(4) RO(0) IO(1)"},
      {"hard bytes", {SaDir::kOutbound, 0, 1, 1'000'000, 1}, 20'000, true, "II(4) RO(0) IO(1)"},
      {"hard seconds", {SaDir::kOutbound, 0, 1, 1, 1}, 100'000, true, "II(4) RO(0) IO(1)"},
  };
  for (const LimitCase& c : cases) {
    SCOPED_TRACE(c.name);
    SaTable t = make_table(lt);
    const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), c.esn, 0};
    const PathSaNames n0 = *path_sa_names(0, 0, s.local, s.remote);
    ASSERT_TRUE(t.add_path(s, 0));
    // The peer's first packet, seen at 10 s: its inbound SA's clock starts there.
    const SaUsage peer{SaDir::kInbound, n0.inbound.spi, 1, 100, 0};
    ASSERT_EQ(brief(t.tick(10'000, std::vector<SaUsage>{peer})), "");
    SaUsage u = c.usage;
    u.spi = n0.outbound.spi;
    EXPECT_EQ(brief(t.tick(c.now_ms, std::vector<SaUsage>{u, peer})), c.expect);
    EXPECT_TRUE(t.usable(0));
    EXPECT_EQ(t.outbound_epoch(0), c.expect.empty() ? 0u : 1u);
  }
}

TEST(SaTable, SequenceExhaustionIsHardWithAndWithoutEsn) {
  const SaLifetime lt = lifetime(std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max(), 3600);
  struct Case {
    bool esn;
    uint64_t seq;
    bool moves;
  };
  for (const Case& c : std::vector<Case>{{false, 0xfffffffe, true},   // soft (90 %) long before
                                         {false, 0xffffffff, true},
                                         {true, 0xffffffff, false},  // ESN: 2^32 is nothing special
                                         {true, 0xe666666666666664, false},
                                         {true, 0xe666666666666665, true},  // 90 % of 2^64-1
                                         {true, std::numeric_limits<uint64_t>::max(), true}}) {
    SCOPED_TRACE(testing::Message() << "esn " << c.esn << " seq " << std::hex << c.seq);
    SaTable t = make_table(lt);
    const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), c.esn, 0};
    const PathSaNames n0 = *path_sa_names(0, 0, s.local, s.remote);
    ASSERT_TRUE(t.add_path(s, 0));
    const SaUsage peer{SaDir::kInbound, n0.inbound.spi, 1, 1, 0};
    const SaUsage out{SaDir::kOutbound, n0.outbound.spi, 5, 500, c.seq};
    EXPECT_EQ(brief(t.tick(10, std::vector<SaUsage>{peer, out})), c.moves ? "II(4) RO(0) IO(1)" : "");
  }
}

TEST(SaTable, AtHardWithNoEpochThePeerAcceptsThePathIsUnusableUntilThePeerShowsUp) {
  SaTable t = make_table(lifetime(1000, 1'000'000, 3600));
  const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 0};
  ASSERT_TRUE(t.add_path(s, 0));
  auto out_usage = [&](uint32_t epoch, uint64_t packets) {
    return SaUsage{SaDir::kOutbound, path_sa_names(0, epoch, s.local, s.remote)->outbound.spi, packets, packets, packets};
  };
  // Nothing ever heard from the peer: it is assumed to accept only up to start + 2.
  EXPECT_EQ(brief(t.tick(1, std::vector<SaUsage>{out_usage(0, 950)})), "II(4) RO(0) IO(1)");
  EXPECT_EQ(brief(t.tick(2, std::vector<SaUsage>{out_usage(1, 950)})), "II(5) RO(1) IO(2)");
  EXPECT_EQ(brief(t.tick(3, std::vector<SaUsage>{out_usage(2, 950)})), "");  // soft, nowhere to go
  EXPECT_TRUE(t.usable(0));
  EXPECT_EQ(brief(t.tick(4, std::vector<SaUsage>{out_usage(2, 1000)})), "RO(2)");
  EXPECT_FALSE(t.usable(0));
  EXPECT_EQ(brief(t.tick(5, {})), "");
  EXPECT_FALSE(t.usable(0));
  // The peer's first verified packet, at its epoch 2: epochs up to 5 are now safe to use.
  const SaUsage heard{SaDir::kInbound, path_sa_names(0, 2, s.local, s.remote)->inbound.spi, 1, 1, 0};
  EXPECT_EQ(brief(t.tick(6, std::vector<SaUsage>{heard})), "II(6) IO(3) RI(0) RI(1)");
  EXPECT_TRUE(t.usable(0));
  EXPECT_EQ(t.outbound_epoch(0), 3u);
}

TEST(SaTable, InboundSoftLimitAlsoStartsTheRekey) {
  SaTable t = make_table(lifetime(1000, 1'000'000, 3600));
  const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 0};
  ASSERT_TRUE(t.add_path(s, 0));
  const uint32_t in0 = path_sa_names(0, 0, s.local, s.remote)->inbound.spi;
  EXPECT_EQ(brief(t.tick(1, std::vector<SaUsage>{{SaDir::kInbound, in0, 899, 1, 0}})), "");
  EXPECT_EQ(brief(t.tick(2, std::vector<SaUsage>{{SaDir::kInbound, in0, 900, 1, 0}})), "II(4) RO(0) IO(1)");
}

TEST(SaTable, InboundAtHardIsRetiredAndNeverReinstalled) {
  SaTable t = make_table(lifetime(1000, 1'000'000, 3600));
  const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 0};
  ASSERT_TRUE(t.add_path(s, 0));
  const uint32_t in0 = path_sa_names(0, 0, s.local, s.remote)->inbound.spi;
  // Jumps straight past soft to hard between two ticks.
  EXPECT_EQ(brief(t.tick(1, std::vector<SaUsage>{{SaDir::kInbound, in0, 1000, 1, 0}})), "II(4) RO(0) IO(1) RI(0)");
  EXPECT_EQ(brief(t.tick(2, std::vector<SaUsage>{{SaDir::kInbound, in0, 1000, 1, 0}})), "");
  for (const SaRow& r : t.rows(2)) EXPECT_NE(r.epoch, 0u);
}

TEST(SaTable, PeerJumpingFarRetiresTheSlotSharerBeforeInstalling) {
  SaTable t = make_table(lifetime(1000, 1'000'000, 3600, 60'000));
  const SaPathSpec s{0, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 0};
  ASSERT_TRUE(t.add_path(s, 0));
  auto in = [&](uint32_t e, uint64_t n) {
    return SaUsage{SaDir::kInbound, path_sa_names(0, e, s.local, s.remote)->inbound.spi, n, n, 0};
  };
  EXPECT_EQ(brief(t.tick(1, std::vector<SaUsage>{in(0, 5)})), "");
  // The peer went 0 -> 3: 0 drains, 1 and 2 were jumped over.
  EXPECT_EQ(brief(t.tick(2, std::vector<SaUsage>{in(0, 6), in(3, 1)})), "II(4) II(5) II(6) RO(0) IO(3) RI(1) RI(2)");
  // Then 3 -> 6 while 0 still drains: 8 shares 0's slot, so 0 goes just before 8 comes.
  EXPECT_EQ(brief(t.tick(3, std::vector<SaUsage>{in(3, 2), in(6, 1)})),
            "II(7) RI(0) II(8) II(9) RO(3) IO(6) RI(4) RI(5)");
  std::set<uint32_t> slots;
  for (const SaRow& r : t.rows(3)) {
    if (r.dir == SaDir::kInbound) {
      EXPECT_TRUE(slots.insert(spi_slot(r.spi)).second);
    }
  }
  EXPECT_EQ(slots.size(), 5u);  // 3 (draining), 6 (active), 7, 8, 9
}

TEST(SaTable, RowsShowStateCountersAndAgeButNoKeys) {
  SaTable t = make_table(lifetime(1000, 1'000'000, 3600, 5000));
  const SaPathSpec s{9, 1, ep("10.1.0.2"), ep("10.1.1.2"), true, 0};
  ASSERT_TRUE(t.add_path(s, 1000));
  auto names = [&](uint32_t e) { return *path_sa_names(1, e, s.local, s.remote); };
  (void)t.tick(2000, std::vector<SaUsage>{{SaDir::kInbound, names(0).inbound.spi, 10, 1000, 0},
                                          {SaDir::kOutbound, names(0).outbound.spi, 20, 2000, 20}});
  (void)t.tick(3000, std::vector<SaUsage>{{SaDir::kInbound, names(1).inbound.spi, 1, 100, 0}});
  const auto rows = t.rows(4000);
  ASSERT_EQ(rows.size(), 6u);  // outbound 1, inbound 0 (draining), 1 (active), 2, 3, 4 (standby)
  EXPECT_EQ(rows[0].dir, SaDir::kOutbound);
  EXPECT_EQ(rows[0].epoch, 1u);
  EXPECT_EQ(rows[0].state, SaRow::State::kActive);
  EXPECT_EQ(rows[0].age_ms, 1000u);
  EXPECT_EQ(rows[1].epoch, 0u);
  EXPECT_EQ(rows[1].state, SaRow::State::kDraining);
  EXPECT_EQ(rows[1].packets, 10u);
  EXPECT_EQ(rows[1].bytes, 1000u);
  EXPECT_EQ(rows[1].age_ms, 2000u);
  EXPECT_EQ(rows[2].epoch, 1u);
  EXPECT_EQ(rows[2].state, SaRow::State::kActive);
  EXPECT_EQ(rows[3].state, SaRow::State::kStandby);
  EXPECT_EQ(rows[3].age_ms, 0u);
  EXPECT_EQ(rows[5].epoch, 4u);
  for (const SaRow& r : rows) EXPECT_EQ(r.path, 9);
}

// ---------------------------------------------------------------- two appliances

// Steady traffic both ways; the edge reaches the soft packet limit first. Every rekey must be
// make-before-break (checked in Node::apply), lose nothing and retire old inbound SAs only
// after the drain time.
TEST(SaTablePair, RekeyByPacketsLosesNothing) {
  Pair p(lifetime(1000, 1'000'000'000, 3600, 2000));
  p.start(0);
  uint64_t now = 0;
  std::set<uint32_t> edge_epochs;
  for (int step = 0; step < 200; ++step) {
    now += 100;
    p.edge.send(0, 60, 100, now);
    p.hub.send(10, 40, 100, now);
    p.edge.tick(now);
    p.hub.tick(now);
    p.edge.expect_no_outbound_at_hard(now);
    p.hub.expect_no_outbound_at_hard(now);
    edge_epochs.insert(*p.edge.table.outbound_epoch(0));
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(p.edge.dropped + p.hub.dropped, 0u);
  EXPECT_EQ(p.edge.blocked + p.hub.blocked, 0u);
  EXPECT_EQ(p.hub.accepted, 200u * 60);
  EXPECT_EQ(p.edge.accepted, 200u * 40);
  // 12000 packets from the edge at most 900 per epoch before moving on: at least 13 rekeys.
  EXPECT_GE(edge_epochs.size(), 14u);
  // Both sides follow each other: the same outbound epoch at the end (within one step).
  EXPECT_LE(std::max(*p.edge.table.outbound_epoch(0), *p.hub.table.outbound_epoch(10)) -
                std::min(*p.edge.table.outbound_epoch(0), *p.hub.table.outbound_epoch(10)),
            1u);
}

TEST(SaTablePair, RekeyBySecondsAndDrainTiming) {
  Pair p(lifetime(1'000'000, 1'000'000'000, 100, 3000));
  p.start(0);
  uint64_t now = 0;
  for (; now < 89'000;) {
    now += 1000;
    p.edge.send(0, 1, 100, now);
    p.hub.send(10, 1, 100, now);
    EXPECT_EQ(brief(p.edge.tick(now)), "");
    EXPECT_EQ(brief(p.hub.tick(now)), "");
  }
  // At 90 s both reach the soft limit; the edge ticks first and moves, the hub moves too.
  now = 90'000;
  EXPECT_EQ(brief(p.edge.tick(now)), "II(4) RO(0) IO(1)");
  EXPECT_EQ(brief(p.hub.tick(now)), "II(4) RO(0) IO(1)");
  // Both now send on 1; each sees the other's epoch 1 and starts draining 0.
  now += 500;
  p.edge.send(0, 1, 100, now);
  p.hub.send(10, 1, 100, now);
  EXPECT_EQ(brief(p.edge.tick(now)), "");
  EXPECT_EQ(brief(p.hub.tick(now)), "");
  // Drain is 3 s after the first packet on the newer epoch was seen (90.5 s).
  now = 93'499;
  EXPECT_EQ(brief(p.edge.tick(now)), "");
  now = 93'500;
  EXPECT_EQ(brief(p.edge.tick(now)), "RI(0)");
  EXPECT_EQ(brief(p.hub.tick(now)), "RI(0)");
  EXPECT_EQ(p.edge.dropped + p.hub.dropped, 0u);
}

TEST(SaTablePair, TheFollowerSwitchesOnTheFirstPacketOfTheNewEpoch) {
  Pair p(lifetime(1000, 1'000'000'000, 3600, 1000));
  p.start(0);
  p.edge.send(0, 10, 100, 1);
  p.hub.send(10, 10, 100, 1);
  // The edge's workers reserved sequence numbers for packets they then dropped: only the edge
  // knows its SA is near the end, the hub's counters are far from any limit.
  p.edge.out[0].seq = 950;
  EXPECT_EQ(brief(p.hub.tick(2)), "");
  EXPECT_EQ(brief(p.edge.tick(2)), "II(4) RO(0) IO(1)");
  EXPECT_EQ(brief(p.hub.tick(3)), "");  // nothing on epoch 1 yet: the hub stays
  EXPECT_EQ(*p.hub.table.outbound_epoch(10), 0u);
  p.edge.send(0, 1, 100, 4);
  EXPECT_EQ(brief(p.hub.tick(5)), "II(4) RO(0) IO(1)");  // follows; its inbound 0 drains
  EXPECT_EQ(brief(p.hub.tick(1004)), "");
  EXPECT_EQ(brief(p.hub.tick(1005)), "RI(0)");
  p.hub.send(10, 1, 100, 1006);
  EXPECT_EQ(brief(p.edge.tick(1007)), "");
  EXPECT_EQ(brief(p.edge.tick(2007)), "RI(0)");
  EXPECT_EQ(p.edge.dropped + p.hub.dropped, 0u);
  EXPECT_EQ(p.hub.accepted, 11u);
  EXPECT_EQ(p.edge.accepted, 11u);
}

TEST(SaTablePair, RestartStartsAtAFreshEpochAndBothSidesConverge) {
  char tmpl[] = "/tmp/sdwan-epochs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string file = dir + "/epochs";
  const SaLifetime lt = lifetime(1000, 1'000'000'000, 3600, 2000);
  Pair p(lt, 2);
  p.hub.check_mbb = false;  // the edge is not running yet
  for (const auto& s : p.specs_hub) p.hub.apply(*p.hub.table.add_path(s, 0), 0);
  p.hub.check_mbb = true;

  // The edge as the daemon runs it: next_epoch from the store, add_path, commit, apply; and
  // on every tick, commit before applying.
  std::unique_ptr<Node> edge;
  std::set<std::tuple<uint64_t, uint64_t, uint32_t>> sent_under;  // survives restarts: same key
  uint64_t now = 0;
  auto start_edge = [&] {
    if (edge) sent_under = edge->sent_under;
    edge = std::make_unique<Node>("edge", lt);
    edge->sent_under = sent_under;
    edge->peer = &p.hub;
    p.hub.peer = edge.get();
    auto store = EpochStore::open(file);
    ASSERT_TRUE(store) << store.error().msg;
    for (SaPathSpec s : p.specs_edge) {
      s.start_epoch = *store->next_epoch(s.local, s.remote);
      auto acts = *edge->table.add_path(s, now);
      ASSERT_TRUE(store->commit(acts));
      edge->apply(acts, now);
    }
  };
  auto run = [&](int steps) {
    auto store = EpochStore::open(file);
    ASSERT_TRUE(store);
    for (int i = 0; i < steps; ++i) {
      now += 100;
      for (uint16_t path : {0, 1}) {
        edge->send(path, 50, 100, now);
        p.hub.send(static_cast<uint16_t>(10 + path), 50, 100, now);
      }
      auto acts = edge->table.tick(now, edge->usage());
      ASSERT_TRUE(store->commit(acts));
      edge->apply(acts, now);
      p.hub.tick(now);
      if (testing::Test::HasFatalFailure()) return;
    }
  };

  start_edge();
  run(50);  // 2500 packets per path each way: several epochs used
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(edge->dropped + p.hub.dropped, 0u);
  for (int restart = 0; restart < 3; ++restart) {
    SCOPED_TRACE(testing::Message() << "restart " << restart);
    const uint32_t before = *edge->table.outbound_epoch(0);
    p.hub.dropped = 0;
    start_edge();  // new table, empty dataplane: only the store remembers
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_EQ(*edge->table.outbound_epoch(0), before + 1);
    run(1);  // hub -> edge is dropped until the hub has seen the edge's new epoch
    ASSERT_FALSE(HasFatalFailure());
    const uint64_t lost = edge->dropped + p.hub.dropped;
    EXPECT_LE(lost, 2u * 50);  // one step's worth per path at most, and only hub -> edge
    EXPECT_EQ(p.hub.dropped, 0u);
    run(60);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_EQ(edge->dropped + p.hub.dropped, lost);  // converged: nothing more lost
    EXPECT_EQ(p.hub.table.outbound_epoch(10), edge->table.outbound_epoch(0));
  }
  fs::remove_all(dir);
}

// Random traffic volumes, sizes, tick orders and skipped ticks, three paths, small limits in
// every dimension: after every step, nothing dropped, no outbound SA at a hard limit, inbound
// slots unique (Node::apply), no epoch sent under twice, and a peer never sent to before it
// accepts (make-before-break).
TEST(SaTablePair, RandomizedInvariants) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    auto uni = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    const SaLifetime lt = lifetime(uni(200, 3000), uni(50'000, 2'000'000), uni(5, 60), uni(0, 5000));
    Pair p(lt, 3, seed % 2 == 0);
    p.start(0);
    uint64_t now = 0;
    uint64_t sent = 0;
    for (int step = 0; step < 1500; ++step) {
      now += uni(1, 400);
      for (uint16_t path = 0; path < 3; ++path) {
        if (uni(0, 9) != 0) p.edge.send(path, uni(0, 40), uni(40, 1500), now);
        if (uni(0, 9) != 0) p.hub.send(static_cast<uint16_t>(10 + path), uni(0, 40), uni(40, 1500), now);
      }
      const int order = static_cast<int>(uni(0, 3));  // 0 edge first, 1 hub first, 2 only edge, 3 only hub
      auto tick = [&](Node& n) {
        n.tick(now);
        n.expect_no_outbound_at_hard(now);
      };
      if (order == 0 || order == 2) tick(p.edge);
      if (order != 2) tick(p.hub);
      if (order == 1) tick(p.edge);
      if (HasFatalFailure()) return;
      sent = p.edge.accepted + p.hub.accepted;
    }
    EXPECT_EQ(p.edge.dropped + p.hub.dropped, 0u);
    EXPECT_GT(sent, 0u);
    for (uint16_t path = 0; path < 3; ++path) {
      EXPECT_TRUE(p.edge.table.usable(path));
      EXPECT_TRUE(p.hub.table.usable(static_cast<uint16_t>(10 + path)));
    }
  }
}

// ---------------------------------------------------------------- epoch store

class EpochStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdwan-epochs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ + "/epochs";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string read() const {
    std::ifstream f(file_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string dir_, file_;
};

TEST_F(EpochStoreTest, MissingFileStartsAtZeroAndCommitsOutboundEpochs) {
  auto st = EpochStore::open(file_);
  ASSERT_TRUE(st) << st.error().msg;
  const Endpoint l = ep("10.1.0.2"), r = ep("10.1.1.2", 4501);
  EXPECT_EQ(*st->next_epoch(l, r), 0u);
  SaTable t = make_table(SaLifetime{});
  auto acts = *t.add_path({0, 0, l, r, true, 6}, 0);
  ASSERT_TRUE(st->commit(acts));
  EXPECT_EQ(*st->next_epoch(l, r), 7u);
  EXPECT_EQ(*st->next_epoch(r, l), 0u);  // the other direction is the peer's business
  EXPECT_EQ(read(),
            "# sdwand: highest ESP epoch sent under, per path. Never edit or delete while the master key stays.\n"
            "10.1.0.2:4500 10.1.1.2:4501 6\n");
  struct stat s {};
  ASSERT_EQ(::stat(file_.c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0600u);
  EXPECT_NE(::access((file_ + ".tmp").c_str(), F_OK), 0);
  // Reopened, as after a restart.
  auto again = EpochStore::open(file_);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again->next_epoch(l, r), 7u);
  // Inbound installs and lower epochs change nothing.
  std::vector<SaAction> lower = {acts.back()};
  lower[0].sa.epoch = 3;
  ASSERT_TRUE(again->commit(lower));
  EXPECT_EQ(*again->next_epoch(l, r), 7u);
}

TEST_F(EpochStoreTest, RefusesMalformedLinesAndExhaustedPaths) {
  std::ofstream(file_) << "# comment\n10.1.0.2:4500 10.1.1.2:4500 7\n10.1.0.2:4500 10.1.1.2 8\n";
  auto bad = EpochStore::open(file_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().msg, file_ + ":3: expected \"LOCAL_IP:PORT REMOTE_IP:PORT EPOCH\", got \"10.1.0.2:4500 10.1.1.2 8\"");
  std::ofstream(file_) << "10.1.0.2:4500 10.1.1.2:4500 4294967000\n";
  auto spent = EpochStore::open(file_);
  ASSERT_TRUE(spent);
  auto n = spent->next_epoch(ep("10.1.0.2"), ep("10.1.1.2"));
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().msg, file_ + ": path 10.1.0.2:4500 -> 10.1.1.2:4500 has used up its epochs; change the master key");
}

TEST_F(EpochStoreTest, AFailedWriteIsReported) {
  auto st = EpochStore::open(dir_ + "/missing-dir/epochs");
  ASSERT_TRUE(st);
  SaTable t = make_table(SaLifetime{});
  auto acts = *t.add_path({0, 0, ep("10.1.0.2"), ep("10.1.1.2"), true, 0}, 0);
  Status s = st->commit(acts);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().msg, dir_ + "/missing-dir/epochs.tmp: cannot create: No such file or directory");
}

}  // namespace
}  // namespace sdwan::cp
