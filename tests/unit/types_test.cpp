#include <gtest/gtest.h>

#include "dataplane/api/types.hpp"

namespace sdwan {
namespace {

TEST(Types, Ipv4ParsesDottedQuadOnly) {
  EXPECT_EQ(Ipv4::parse("10.1.2.3")->v, 0x0a010203u);
  EXPECT_FALSE(Ipv4::parse("10.1.2"));
  EXPECT_FALSE(Ipv4::parse("10.1.2.256"));
  EXPECT_FALSE(Ipv4::parse("10.1.2.3 "));
  EXPECT_FALSE(Ipv4::parse(""));
  EXPECT_EQ(Ipv4{0xc0a80101}.str(), "192.168.1.1");
}

TEST(Types, PrefixRejectsHostBitsUnlessAllowed) {
  EXPECT_EQ(Prefix4::parse("10.0.0.0/8")->len, 8);
  EXPECT_FALSE(Prefix4::parse("10.0.0.1/8"));
  EXPECT_EQ(Prefix4::parse("10.0.0.1/8", true)->addr.v, 0x0a000001u);
  EXPECT_FALSE(Prefix4::parse("10.0.0.0/33"));
  EXPECT_FALSE(Prefix4::parse("10.0.0.0/"));
  EXPECT_FALSE(Prefix4::parse("10.0.0.0"));
  EXPECT_TRUE(Prefix4::parse("0.0.0.0/0")->contains(Ipv4{0xffffffff}));
  EXPECT_TRUE(Prefix4::parse("192.168.0.0/16")->contains(*Ipv4::parse("192.168.7.9")));
  EXPECT_FALSE(Prefix4::parse("192.168.0.0/16")->contains(*Ipv4::parse("192.169.0.1")));
}

TEST(Types, MacFormatsLowerHex) {
  EXPECT_EQ((MacAddr{{0x02, 0, 0xab, 0xcd, 0xef, 1}}).str(), "02:00:ab:cd:ef:01");
  EXPECT_TRUE(MacAddr{}.is_zero());
  EXPECT_FALSE(MacAddr::broadcast().is_zero());
}

}  // namespace
}  // namespace sdwan
