// ARP neighbour resolution with an injected clock: no sleeps, no sockets.
#include <gtest/gtest.h>

#include "control/neighbor/neighbor.hpp"

namespace sdwan::cp {
namespace {

Ipv4 A(const char* s) { return *Ipv4::parse(s); }
MacAddr M(uint8_t x) { return MacAddr{{0x02, 0, 0, 0, 0, x}}; }

NeighborManager make() {
  return NeighborManager({{0, M(1), *Prefix4::parse("192.168.10.1/24", true)},
                          {1, M(2), *Prefix4::parse("10.1.0.2/24", true)}});
}

ArpPacket reply(MacAddr m, const char* from, const char* to) { return {2, m, A(from), A(to)}; }
ArpPacket request(MacAddr m, const char* from, const char* to) { return {1, m, A(from), A(to)}; }

TEST(Neighbor, WantedAddressIsRequestedUntilItAnswers) {
  auto nm = make();
  nm.want(1, A("10.1.0.1"), true, 0);
  auto r = nm.tick(0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].first, 1);
  EXPECT_EQ(r[0].second, A("10.1.0.1"));
  EXPECT_TRUE(nm.tick(500).empty()) << "no request before the retry interval";
  EXPECT_EQ(nm.tick(1000).size(), 1u);
  EXPECT_FALSE(nm.lookup(1, A("10.1.0.1")));
  EXPECT_FALSE(nm.take_changed());
  EXPECT_FALSE(nm.on_arp(1, reply(M(9), "10.1.0.1", "10.1.0.2"), 1200));
  EXPECT_EQ(nm.lookup(1, A("10.1.0.1")), M(9));
  EXPECT_TRUE(nm.take_changed());
  EXPECT_FALSE(nm.take_changed()) << "reported once";
  EXPECT_TRUE(nm.tick(2000).empty()) << "resolved: quiet until the reachable time ends";
}

TEST(Neighbor, PermanentEntryIsProbedAndFallsBackToIncompleteWhenSilent) {
  auto nm = make();
  nm.want(1, A("10.1.0.1"), true, 0);
  nm.tick(0);
  nm.on_arp(1, reply(M(9), "10.1.0.1", "10.1.0.2"), 0);
  nm.take_changed();
  const uint64_t t = NeighborManager::kReachableMs;
  for (uint32_t i = 0; i < NeighborManager::kProbeTries; ++i) {
    auto r = nm.tick(t + i * NeighborManager::kRetryMs);
    ASSERT_EQ(r.size(), 1u) << "probe " << i;
    EXPECT_TRUE(nm.lookup(1, A("10.1.0.1"))) << "still usable while probing";
  }
  auto r = nm.tick(t + NeighborManager::kProbeTries * NeighborManager::kRetryMs);
  EXPECT_EQ(r.size(), 1u) << "keeps asking";
  EXPECT_FALSE(nm.lookup(1, A("10.1.0.1"))) << "unanswered probes: the MAC is no longer trusted";
  EXPECT_TRUE(nm.take_changed());
  EXPECT_EQ(nm.dump().size(), 1u) << "a permanent entry is never forgotten";
}

TEST(Neighbor, OnDemandEntryGivesUpAfterMaxTries) {
  auto nm = make();
  nm.want(0, A("192.168.10.50"), false, 0);
  uint64_t t = 0;
  size_t sent = 0;
  for (int i = 0; i < 10; ++i, t += NeighborManager::kRetryMs) sent += nm.tick(t).size();
  EXPECT_EQ(sent, NeighborManager::kMaxTries);
  EXPECT_TRUE(nm.dump().empty());
}

TEST(Neighbor, LearnsFromRequestsAimedAtUsAndAnswersOnlyThose) {
  auto nm = make();
  EXPECT_TRUE(nm.on_arp(0, request(M(5), "192.168.10.5", "192.168.10.1"), 0)) << "for us: answer";
  EXPECT_EQ(nm.lookup(0, A("192.168.10.5")), M(5)) << "and learn the asker (RFC 826)";
  EXPECT_FALSE(nm.on_arp(0, request(M(6), "192.168.10.6", "192.168.10.7"), 0)) << "for someone else";
  EXPECT_FALSE(nm.lookup(0, A("192.168.10.6"))) << "not learned: we were not the target";
  EXPECT_FALSE(nm.on_arp(1, request(M(5), "10.1.0.9", "192.168.10.1"), 0)) << "our LAN address asked on an uplink";
}

TEST(Neighbor, RefusesToLearnWhatCannotBeRight) {
  auto nm = make();
  struct {
    const char* name;
    uint8_t port;
    ArpPacket a;
  } cases[] = {
      {"off-subnet sender", 0, request(M(5), "10.9.9.9", "192.168.10.1")},
      {"sender claims our address", 0, request(M(5), "192.168.10.1", "192.168.10.1")},
      {"zero sender address", 0, request(M(5), "0.0.0.0", "192.168.10.1")},
      {"broadcast MAC", 0, request(MacAddr::broadcast(), "192.168.10.5", "192.168.10.1")},
      {"multicast MAC", 0, request(MacAddr{{0x01, 0, 0x5e, 0, 0, 1}}, "192.168.10.5", "192.168.10.1")},
      {"zero MAC", 0, request(MacAddr{}, "192.168.10.5", "192.168.10.1")},
      {"unknown port", 7, request(M(5), "192.168.10.5", "192.168.10.1")},
  };
  for (const auto& c : cases) {
    nm.on_arp(c.port, c.a, 0);
    EXPECT_TRUE(nm.dump().empty()) << c.name;
  }
}

TEST(Neighbor, ChangedMacIsReportedAndUnsolicitedRepliesOnlyUpdateKnownEntries) {
  auto nm = make();
  nm.on_arp(0, reply(M(7), "192.168.10.7", "192.168.10.1"), 0);
  EXPECT_TRUE(nm.dump().empty()) << "an unsolicited reply for an address nobody asked about is not cached";
  nm.want(0, A("192.168.10.7"), false, 0);
  nm.on_arp(0, reply(M(7), "192.168.10.7", "192.168.10.1"), 0);
  EXPECT_TRUE(nm.take_changed());
  nm.on_arp(0, reply(M(7), "192.168.10.7", "192.168.10.1"), 10);
  EXPECT_FALSE(nm.take_changed()) << "same MAC: nothing to republish";
  nm.on_arp(0, reply(M(8), "192.168.10.7", "192.168.10.1"), 20);
  EXPECT_TRUE(nm.take_changed());
  EXPECT_EQ(nm.lookup(0, A("192.168.10.7")), M(8));
  ASSERT_EQ(nm.resolved().size(), 1u);
  EXPECT_EQ(nm.resolved()[0].port, 0);
}

TEST(Neighbor, OffLinkOrOwnAddressIsNeverWanted) {
  auto nm = make();
  nm.want(0, A("8.8.8.8"), false, 0);
  nm.want(0, A("192.168.10.1"), false, 0);
  nm.want(9, A("192.168.10.2"), false, 0);
  EXPECT_TRUE(nm.tick(0).empty());
}

}  // namespace
}  // namespace sdwan::cp
