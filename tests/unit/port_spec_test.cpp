#include <gtest/gtest.h>

#include "drivers/api/ports.hpp"

namespace sdwan::drv {
namespace {

struct SpecCase {
  const char* in;
  bool ok;
  PortKind kind;
  const char* arg;
};

TEST(PortSpec, ParsesEveryKindAndRoundTrips) {
  const SpecCase cases[] = {
      {"pci:0000:03:00.0", true, PortKind::kPci, "0000:03:00.0"},
      {"af_packet:veth-isp1", true, PortKind::kAfPacket, "veth-isp1"},
      {"af_xdp:eth0", true, PortKind::kAfXdp, "eth0"},
      {"tap", true, PortKind::kTap, ""},
      {"tap:sdwan0", true, PortKind::kTap, "sdwan0"},
      {"ring:wire_a", true, PortKind::kRing, "wire_a"},
      {"null", true, PortKind::kNull, ""},
      {"pci:03:00.0", false, {}, ""},
      {"af_packet:", false, {}, ""},
      {"af_packet:this-name-is-too-long", false, {}, ""},
      {"af_xdp:a/b", false, {}, ""},
      {"ring:", false, {}, ""},
      {"null:x", false, {}, ""},
      {"virtio:0", false, {}, ""},
      {"", false, {}, ""},
  };
  for (const auto& c : cases) {
    auto r = PortSpec::parse(c.in);
    ASSERT_EQ(r.ok(), c.ok) << c.in;
    if (!c.ok) {
      EXPECT_NE(r.error().msg.find("expected pci:"), std::string::npos) << r.error().msg;
      continue;
    }
    EXPECT_EQ(r->kind, c.kind) << c.in;
    EXPECT_EQ(r->arg, c.arg) << c.in;
    EXPECT_EQ(r->str(), c.in);
  }
}

TEST(PortSpec, UnknownKindIsNamed) {
  auto r = PortSpec::parse("virtio:0");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg,
            "port spec \"virtio:0\": unknown port kind \"virtio\" (expected pci:DOMAIN:BUS:DEV.FN, "
            "af_packet:IFACE, af_xdp:IFACE, tap, tap:NAME, ring:NAME or null)");
}

}  // namespace
}  // namespace sdwan::drv
