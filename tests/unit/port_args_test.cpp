// eal_args, ethdev_name, ring_name, rx_data_room, numa_node: what sdwand hands the EAL, and the
// af_packet ring geometry the kernel must accept.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "drivers/api/ports.hpp"

namespace sdwan::drv {
namespace {

PortRequest req(const char* spec, uint16_t ordinal, uint16_t rx = 1, uint16_t tx = 1, uint16_t mtu = 1500) {
  auto s = PortSpec::parse(spec);
  EXPECT_TRUE(s.ok()) << spec;
  PortRequest r;
  r.name = "p" + std::to_string(ordinal);
  r.spec = s.ok() ? *s : PortSpec{};
  r.rx_queues = rx;
  r.tx_queues = tx;
  r.mtu = mtu;
  r.ordinal = ordinal;
  return r;
}

using Args = std::vector<std::string>;

TEST(EalArgs, EachKindBecomesItsDevice) {
  struct Case {
    const char* what;
    std::vector<PortRequest> ports;
    Args want;
  };
  const Case cases[] = {
      {"null only", {req("null", 0)}, {"--vdev", "net_null0", "--no-pci"}},
      {"pci allows its address and keeps the PCI bus", {req("pci:0000:03:00.0", 0)}, {"-a", "0000:03:00.0"}},
      {"af_xdp takes one queue per worker from queue 0",
       {req("af_xdp:eth0", 2, 2, 2)},
       {"--vdev", "net_af_xdp2,iface=eth0,start_queue=0,queue_count=2", "--no-pci"}},
      {"tap without a name", {req("tap", 1)}, {"--vdev", "net_tap1", "--no-pci"}},
      {"tap with a name", {req("tap:sdwan0", 1)}, {"--vdev", "net_tap1,iface=sdwan0", "--no-pci"}},
      {"ring ports are made after EAL init", {req("ring:wire", 0)}, {"--no-pci"}},
      {"af_packet, standard MTU, qpairs from the larger queue count",
       {req("af_packet:veth-isp1", 3, 2, 1)},
       {"--vdev", "net_af_packet3,iface=veth-isp1,qpairs=2,blocksz=4096,framesz=2048,framecnt=1024", "--no-pci"}},
      {"--no-pci once for several ports, in order",
       {req("null", 0), req("ring:a", 1), req("tap", 2)},
       {"--vdev", "net_null0", "--vdev", "net_tap2", "--no-pci"}},
      {"no --no-pci as soon as one port is PCI",
       {req("null", 0), req("pci:0000:00:1f.6", 1)},
       {"--vdev", "net_null0", "-a", "0000:00:1f.6"}},
  };
  ASSERT_EQ(sysconf(_SC_PAGESIZE), 4096) << "the af_packet case above assumes 4 KiB pages";
  for (const auto& c : cases) EXPECT_EQ(eal_args(c.ports), c.want) << c.what;
}

TEST(EalArgs, VdevNamesAreWhatOpenPortLooksFor) {
  for (const char* spec : {"af_packet:eth1", "af_xdp:eth1", "tap", "tap:x0", "null"}) {
    const PortRequest r = req(spec, 7);
    const Args a = eal_args({r});
    ASSERT_GE(a.size(), 2u) << spec;
    EXPECT_EQ(a[1].substr(0, a[1].find(',')), ethdev_name(r)) << spec;
  }
  EXPECT_EQ(ethdev_name(req("pci:0000:03:00.0", 0)), "0000:03:00.0");
  EXPECT_EQ(ethdev_name(req("ring:wire", 0)), "net_ring_wire");
  EXPECT_EQ(ring_name("wire", true, 0), "wire_rx");
  EXPECT_EQ(ring_name("wire", false, 0), "wire_tx");
  EXPECT_EQ(ring_name("wire", false, 3), "wire_tx3");
}

std::map<std::string, long> devargs(const std::string& vdev) {
  std::map<std::string, long> kv;
  size_t i = vdev.find(',');
  while (i != std::string::npos) {
    const size_t next = vdev.find(',', i + 1);
    const std::string item = vdev.substr(i + 1, next == std::string::npos ? std::string::npos : next - i - 1);
    const size_t eq = item.find('=');
    if (item.substr(0, eq) != "iface") kv[item.substr(0, eq)] = std::stol(item.substr(eq + 1));
    i = next;
  }
  return kv;
}

// The rules packet_set_ring() and net_af_packet enforce, and the ones that keep frames whole:
// a received frame's network header sits 80 bytes into its ring frame (TPACKET_V2).
TEST(EalArgs, AfPacketGeometryFitsTheMtuAndTheKernelsRules) {
  const long page = sysconf(_SC_PAGESIZE);
  for (uint16_t mtu : {576, 1280, 1500, 1968, 1969, 4000, 9000, 9216}) {
    const PortRequest r = req("af_packet:eth1", 0, 4, 4, mtu);
    const Args a = eal_args({r});
    ASSERT_EQ(a.size(), 3u);
    auto kv = devargs(a[1]);
    const long block = kv["blocksz"], frame = kv["framesz"], count = kv["framecnt"];
    SCOPED_TRACE("mtu " + std::to_string(mtu) + ": " + a[1]);
    EXPECT_EQ(kv["qpairs"], 4);
    EXPECT_EQ(frame % 16, 0);
    EXPECT_EQ(block % page, 0);
    EXPECT_LE(frame, block);
    EXPECT_EQ(count % (block / frame), 0);
    EXPECT_GE(count, 512);
    EXPECT_GE(frame, 80 + mtu);
    EXPECT_LE((block % frame) * 8, block);
    // net_af_packet copies frame - 32 bytes into one mbuf after the headroom.
    EXPECT_EQ(rx_data_room(r), 128u + static_cast<uint32_t>(frame) - 32u);
    EXPECT_LE(rx_data_room(r), 65535u);
  }
  // The default mbuf (RTE_MBUF_DEFAULT_BUF_SIZE, 2176) is enough for a 1500 MTU af_packet port.
  EXPECT_LE(rx_data_room(req("af_packet:eth1", 0)), 2176u);
  EXPECT_EQ(rx_data_room(req("null", 0, 1, 1, 1500)), 128u + 1500u + 14u + 8u);
}

TEST(NumaNode, ReadsSysfsOrSaysUnknown) {
  EXPECT_EQ(numa_node(*PortSpec::parse("null")), -1);
  EXPECT_EQ(numa_node(*PortSpec::parse("ring:x")), -1);
  EXPECT_EQ(numa_node(*PortSpec::parse("tap")), -1);
  EXPECT_EQ(numa_node(*PortSpec::parse("af_packet:lo")), -1);  // no device behind lo
  EXPECT_EQ(numa_node(*PortSpec::parse("pci:0000:ff:1f.7")), -1);
  namespace fs = std::filesystem;
  const fs::path pci = "/sys/bus/pci/devices";
  ASSERT_TRUE(fs::exists(pci));
  int checked = 0;
  for (const auto& dev : fs::directory_iterator(pci)) {
    std::ifstream f(dev.path() / "numa_node");
    int want = -1;
    if (!(f >> want)) continue;
    auto spec = PortSpec::parse("pci:" + dev.path().filename().string());
    ASSERT_TRUE(spec.ok()) << dev.path();
    EXPECT_EQ(numa_node(*spec), want < 0 ? -1 : want) << dev.path();
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no PCI device with a numa_node file";
}

}  // namespace
}  // namespace sdwan::drv
