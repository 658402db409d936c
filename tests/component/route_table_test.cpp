#include <gtest/gtest.h>

#include "dataplane/api/snapshot.hpp"

namespace sdwan::dp {
namespace {

Prefix4 P(const char* s) { return *Prefix4::parse(s); }
Ipv4 A(const char* s) { return *Ipv4::parse(s); }

TEST(Lpm, LongestPrefixWins) {
  auto rt = RouteTable::create(64, 0);
  ASSERT_NE(rt, nullptr);
  ASSERT_TRUE(rt->add(P("10.0.0.0/8"), RouteTarget::encode_peer(1)));
  ASSERT_TRUE(rt->add(P("10.20.0.0/16"), RouteTarget::encode_peer(2)));
  ASSERT_TRUE(rt->add(P("10.20.30.0/24"), RouteTarget::encode_local(0)));
  ASSERT_TRUE(rt->add(P("10.20.30.40/32"), RouteTarget::encode_peer(3)));
  struct {
    const char* addr;
    bool found;
    uint32_t target;
  } cases[] = {
      {"10.1.1.1", true, 1},
      {"10.20.1.1", true, 2},
      {"10.20.30.1", true, RouteTarget::kLocal | 0},
      {"10.20.30.40", true, 3},
      {"10.20.30.41", true, RouteTarget::kLocal | 0},
      {"11.0.0.1", false, 0},
      {"9.255.255.255", false, 0},
  };
  for (const auto& c : cases) {
    uint32_t t = 0;
    EXPECT_EQ(rt->lookup(A(c.addr), &t), c.found) << c.addr;
    if (c.found) {
      EXPECT_EQ(t, c.target) << c.addr;
    }
  }
  EXPECT_EQ(rt->size(), 4u);
}

TEST(Lpm, DefaultRouteCatchesAll) {
  auto rt = RouteTable::create(8, 0);
  ASSERT_TRUE(rt->add(P("0.0.0.0/0"), RouteTarget::encode_peer(7)));
  uint32_t t = 0;
  EXPECT_TRUE(rt->lookup(A("203.0.113.9"), &t));
  EXPECT_EQ(t, 7u);
}

TEST(Lpm, TwoTablesAreIndependent) {
  auto a = RouteTable::create(8, 0);
  auto b = RouteTable::create(8, 0);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->add(P("192.168.0.0/16"), 1));
  uint32_t t = 0;
  EXPECT_FALSE(b->lookup(A("192.168.1.1"), &t));
}

TEST(NeighborTable, FindsByPortAndAddress) {
  std::vector<NeighborTable::Entry> es;
  for (uint32_t i = 1; i <= 300; ++i) es.push_back({0x0a000000u + i, static_cast<uint8_t>(i % 3), MacAddr{{2, 0, 0, 0, 0, static_cast<uint8_t>(i)}}});
  NeighborTable nt(es);
  EXPECT_EQ(nt.size(), 300u);
  for (uint32_t i = 1; i <= 300; ++i) {
    const MacAddr* m = nt.lookup(static_cast<uint8_t>(i % 3), Ipv4{0x0a000000u + i});
    ASSERT_NE(m, nullptr) << i;
    EXPECT_EQ(m->b[5], static_cast<uint8_t>(i));
    EXPECT_EQ(nt.lookup(static_cast<uint8_t>((i + 1) % 3), Ipv4{0x0a000000u + i}), nullptr);
  }
  EXPECT_EQ(NeighborTable{}.lookup(0, Ipv4{1}), nullptr);
}

}  // namespace
}  // namespace sdwan::dp
