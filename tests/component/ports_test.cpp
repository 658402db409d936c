// open_port / close_port / link_state under a real EAL: ring ports made on demand or by the
// test, a null vdev, the error texts, and af_packet over a veth pair made by the test (root).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <rte_bus_vdev.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "drivers/api/ports.hpp"

namespace sdwan::drv {
namespace {

// IEEE 802 local experimental ethertype: nothing in the kernel answers or forwards it.
constexpr uint16_t kTestEtherType = 0x88B5;
constexpr auto kWait = std::chrono::seconds(3);

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("ct_ports_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

PortRequest request(const std::string& name, const std::string& spec, uint16_t ordinal, uint16_t rx = 1,
                    uint16_t tx = 1, uint16_t mtu = 1500) {
  auto s = PortSpec::parse(spec);
  EXPECT_TRUE(s.ok()) << spec;
  return PortRequest{name, s.ok() ? *s : PortSpec{}, rx, tx, mtu, ordinal};
}

std::vector<uint8_t> frame(const MacAddr& dst, const MacAddr& src, const std::string& marker, size_t len = 64) {
  std::vector<uint8_t> f(std::max(len, 14 + marker.size()), 0);
  std::copy(dst.b.begin(), dst.b.end(), f.begin());
  std::copy(src.b.begin(), src.b.end(), f.begin() + 6);
  f[12] = kTestEtherType >> 8;
  f[13] = kTestEtherType & 0xff;
  std::copy(marker.begin(), marker.end(), f.begin() + 14);
  for (size_t i = 14 + marker.size(); i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 7);
  return f;
}

rte_mbuf* to_mbuf(rte_mempool* mp, const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (m == nullptr) return nullptr;
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (p == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memcpy(p, bytes.data(), bytes.size());
  return m;
}

std::vector<uint8_t> bytes_of(const rte_mbuf* m) {
  const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
  return {p, p + rte_pktmbuf_data_len(m)};
}

bool has_marker(const std::vector<uint8_t>& f, const std::string& marker) {
  return f.size() >= 14 + marker.size() && f[12] == (kTestEtherType >> 8) && f[13] == (kTestEtherType & 0xff) &&
         std::memcmp(f.data() + 14, marker.data(), marker.size()) == 0;
}

// Polls every RX queue until a frame carrying marker arrives; frees everything else.
std::vector<uint8_t> receive_on_port(uint16_t port, uint16_t queues, const std::string& marker,
                                     std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::vector<uint8_t> found;
  while (found.empty() && std::chrono::steady_clock::now() < deadline) {
    for (uint16_t q = 0; q < queues; ++q) {
      rte_mbuf* got[32];
      const uint16_t n = rte_eth_rx_burst(port, q, got, 32);
      for (uint16_t i = 0; i < n; ++i) {
        auto b = bytes_of(got[i]);
        if (found.empty() && has_marker(b, marker)) found = std::move(b);
        rte_pktmbuf_free(got[i]);
      }
    }
    if (found.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return found;
}

// ---- ring and null ports ----------------------------------------------------------------

TEST(RingPort, MadeOnDemandCarriesABurstBothWays) {
  const PortRequest req = request("lan", "ring:ctp_a", 0);
  auto op = open_port(req, pool());
  ASSERT_TRUE(op.ok()) << op.error().msg;
  EXPECT_EQ(op->name, "lan");
  EXPECT_EQ(op->driver, "net_ring");
  EXPECT_FALSE(op->rss);
  EXPECT_EQ(op->tx_offloads & ~(RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE | RTE_ETH_TX_OFFLOAD_IPV4_CKSUM), 0u);
  uint16_t by_name = RTE_MAX_ETHPORTS;
  ASSERT_EQ(rte_eth_dev_get_port_by_name(ethdev_name(req).c_str(), &by_name), 0);
  EXPECT_EQ(by_name, op->port_id);
  rte_ring* rx = rte_ring_lookup(ring_name("ctp_a", true, 0).c_str());
  rte_ring* tx = rte_ring_lookup(ring_name("ctp_a", false, 0).c_str());
  ASSERT_NE(rx, nullptr);
  ASSERT_NE(tx, nullptr);
  EXPECT_TRUE(link_state(op->port_id).up);

  // Out of the port: the worker's TX lands on NAME_tx, untouched.
  std::vector<rte_mbuf*> burst;
  for (int i = 0; i < 8; ++i) burst.push_back(to_mbuf(pool(), frame(MacAddr::broadcast(), {}, "out" + std::to_string(i))));
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 0, burst.data(), 8), 8);
  rte_mbuf* seen[16];
  ASSERT_EQ(rte_ring_dequeue_burst(tx, reinterpret_cast<void**>(seen), 16, nullptr), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(has_marker(bytes_of(seen[i]), "out" + std::to_string(i))) << i;
    rte_pktmbuf_free(seen[i]);
  }
  // Into the port: what the wire side puts on NAME_rx comes out of rte_eth_rx_burst.
  for (int i = 0; i < 4; ++i) {
    rte_mbuf* m = to_mbuf(pool(), frame(MacAddr::broadcast(), {}, "in" + std::to_string(i)));
    ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
  }
  rte_mbuf* got[8];
  ASSERT_EQ(rte_eth_rx_burst(op->port_id, 0, got, 8), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(has_marker(bytes_of(got[i]), "in" + std::to_string(i))) << i;
    // net_ring hands mbufs over as they were enqueued, mbuf->port included: a worker must know
    // the port from the queue it polled, not from the mbuf.
    EXPECT_EQ(got[i]->port, RTE_MBUF_PORT_INVALID);
    rte_pktmbuf_free(got[i]);
  }

  close_port(op->port_id);
  close_port(op->port_id);
  EXPECT_FALSE(rte_eth_dev_is_valid_port(op->port_id));
  EXPECT_NE(rte_eth_dev_get_port_by_name(ethdev_name(req).c_str(), &by_name), 0);
  EXPECT_FALSE(link_state(op->port_id).up);

  // The rings outlive the port, so it opens again over the same ones.
  auto again = open_port(req, pool());
  ASSERT_TRUE(again.ok()) << again.error().msg;
  rte_mbuf* m = to_mbuf(pool(), frame(MacAddr::broadcast(), {}, "again"));
  ASSERT_EQ(rte_eth_tx_burst(again->port_id, 0, &m, 1), 1);
  rte_mbuf* back = nullptr;
  ASSERT_EQ(rte_ring_dequeue(tx, reinterpret_cast<void**>(&back)), 0);
  EXPECT_EQ(back, m);
  rte_pktmbuf_free(back);
  close_port(again->port_id);
}

TEST(RingPort, OneRingPairPerQueue) {
  auto op = open_port(request("isp1", "ring:ctp_mq", 1, 2, 3), pool());
  ASSERT_TRUE(op.ok()) << op.error().msg;
  for (const char* n : {"ctp_mq_rx", "ctp_mq_rx1", "ctp_mq_tx", "ctp_mq_tx1", "ctp_mq_tx2"})
    EXPECT_NE(rte_ring_lookup(n), nullptr) << n;
  EXPECT_EQ(rte_ring_lookup("ctp_mq_rx2"), nullptr);
  rte_eth_dev_info info{};
  ASSERT_EQ(rte_eth_dev_info_get(op->port_id, &info), 0);
  EXPECT_EQ(info.nb_rx_queues, 2);
  EXPECT_EQ(info.nb_tx_queues, 3);
  rte_mbuf* m = to_mbuf(pool(), frame(MacAddr::broadcast(), {}, "q2"));
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 2, &m, 1), 1);
  rte_mbuf* back = nullptr;
  ASSERT_EQ(rte_ring_dequeue(rte_ring_lookup("ctp_mq_tx2"), reinterpret_cast<void**>(&back)), 0);
  EXPECT_EQ(back, m);
  rte_pktmbuf_free(back);
  close_port(op->port_id);
}

TEST(RingPort, UsesAnEthdevTheTestMade) {
  rte_ring* to_port = rte_ring_create("ctp_w_in", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* from_port = rte_ring_create("ctp_w_out", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  ASSERT_NE(to_port, nullptr);
  ASSERT_NE(from_port, nullptr);
  const int made = rte_eth_from_rings("ctp_w", &to_port, 1, &from_port, 1, 0);
  ASSERT_GE(made, 0);

  auto too_many = open_port(request("wan", "ring:ctp_w", 2, 2, 1), pool());
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().msg,
            "port wan (ring:ctp_w): 2 RX / 1 TX queues requested but net_ring offers at most 1 RX / 1 TX");

  auto op = open_port(request("wan", "ring:ctp_w", 2), pool());
  ASSERT_TRUE(op.ok()) << op.error().msg;
  EXPECT_EQ(op->port_id, made);
  EXPECT_EQ(rte_ring_lookup("ctp_w_rx"), nullptr) << "open_port made rings for a port that had its own";
  rte_mbuf* m = to_mbuf(pool(), frame(MacAddr::broadcast(), {}, "wire"));
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 0, &m, 1), 1);
  rte_mbuf* back = nullptr;
  ASSERT_EQ(rte_ring_dequeue(from_port, reinterpret_cast<void**>(&back)), 0);
  EXPECT_EQ(back, m);
  rte_pktmbuf_free(back);

  close_port(op->port_id);
  close_port(op->port_id);
  EXPECT_FALSE(rte_eth_dev_is_valid_port(op->port_id));
  rte_vdev_uninit("net_ring_ctp_w");
  rte_ring_free(to_port);
  rte_ring_free(from_port);
}

TEST(NullPort, OpensAndExplainsWhatIsWrong) {
  const PortRequest req = request("lan", "null", 40);
  ASSERT_EQ(rte_vdev_init(ethdev_name(req).c_str(), ""), 0);

  auto missing = open_port(request("lan", "null", 41), pool());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().msg.rfind("port lan (null): no ethdev named net_null41", 0), 0u) << missing.error().msg;

  rte_mempool* small = rte_pktmbuf_pool_create("ct_ports_small", 255, 0, 0, 1024, 0);
  ASSERT_NE(small, nullptr);
  auto too_small = open_port(req, small);
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.error().msg,
            "port lan (null): mempool ct_ports_small has a data room of 1024 bytes; MTU 1500 on this port needs 1650");

  uint16_t id = 0;
  ASSERT_EQ(rte_eth_dev_get_port_by_name(ethdev_name(req).c_str(), &id), 0);
  rte_eth_dev_info info{};
  ASSERT_EQ(rte_eth_dev_info_get(id, &info), 0);
  const auto over = static_cast<uint16_t>(info.max_tx_queues + 1);
  auto too_many = open_port(request("lan", "null", 40, 1, over), pool());
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().msg, "port lan (null): 1 RX / " + std::to_string(over) +
                                      " TX queues requested but net_null offers at most " +
                                      std::to_string(info.max_rx_queues) + " RX / " +
                                      std::to_string(info.max_tx_queues) + " TX");

  auto op = open_port(req, pool());
  ASSERT_TRUE(op.ok()) << op.error().msg;
  EXPECT_EQ(op->port_id, id);
  EXPECT_EQ(op->driver, "net_null");
  EXPECT_TRUE(link_state(op->port_id).up);
  // net_null makes packets out of the pool on RX and drops what it is given on TX.
  rte_mbuf* got[4];
  const uint16_t n = rte_eth_rx_burst(op->port_id, 0, got, 4);
  EXPECT_EQ(n, 4);
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 0, got, n), n);

  close_port(op->port_id);
  close_port(op->port_id);
  EXPECT_FALSE(rte_eth_dev_is_valid_port(op->port_id));
  close_port(RTE_MAX_ETHPORTS - 1);  // never opened: left alone
  rte_vdev_uninit(ethdev_name(req).c_str());
  rte_mempool_free(small);
}

// ---- af_packet over a veth pair ---------------------------------------------------------

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string sysfs(const std::string& iface, const char* attr) {
  std::ifstream f("/sys/class/net/" + iface + "/" + attr);
  std::string s;
  std::getline(f, s);
  return s;
}

MacAddr kernel_mac(const std::string& iface) {
  MacAddr m;
  unsigned v[6] = {};
  EXPECT_EQ(std::sscanf(sysfs(iface, "address").c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]), 6)
      << iface;
  for (int i = 0; i < 6; ++i) m.b[i] = static_cast<uint8_t>(v[i]);
  return m;
}

// A veth pair for one test, deleted whatever happens. IPv6 is off on both ends so the kernel
// sends nothing of its own that the port would see.
class VethPair {
 public:
  VethPair(const std::string& tag) : a_("ctA" + tag + std::to_string(getpid() % 100000)),
                                     b_("ctB" + tag + std::to_string(getpid() % 100000)) {
    sh("ip link del " + a_);
    ok_ = sh("ip link add " + a_ + " type veth peer name " + b_) == 0;
    for (const auto& i : {a_, b_}) {
      std::ofstream("/proc/sys/net/ipv6/conf/" + i + "/disable_ipv6") << "1";
      ok_ = ok_ && sh("ip link set " + i + " up") == 0;
    }
  }
  ~VethPair() { sh("ip link del " + a_); }
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;
  bool ok() const { return ok_; }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }

 private:
  std::string a_, b_;
  bool ok_ = false;
};

// A raw AF_PACKET socket on one end, for the test's own view of the wire.
class RawSocket {
 public:
  explicit RawSocket(const std::string& iface) : fd_(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEtherType))) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(kTestEtherType);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
    ifindex_ = sll.sll_ifindex;
    timeval tv{0, 100 * 1000};
    ok_ = fd_ >= 0 && ifindex_ > 0 && bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) == 0 &&
          setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0;
  }
  ~RawSocket() {
    if (fd_ >= 0) close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  bool ok() const { return ok_; }
  bool send(const std::vector<uint8_t>& f) const { return ::send(fd_, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size()); }
  std::vector<uint8_t> receive(const std::string& marker, std::chrono::milliseconds within) const {
    const auto deadline = std::chrono::steady_clock::now() + within;
    std::vector<uint8_t> buf(65536);
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) continue;
      std::vector<uint8_t> f(buf.begin(), buf.begin() + n);
      if (has_marker(f, marker)) return f;
    }
    return {};
  }

 private:
  int fd_ = -1;
  int ifindex_ = 0;
  bool ok_ = false;
};

// The vdev eal_args would put on the command line, created here because EAL is already up.
std::string create_vdev(const PortRequest& req) {
  const auto args = eal_args({req});
  EXPECT_EQ(args.size(), 3u);
  if (args.size() < 2) return {};
  const std::string& vdev = args[1];
  const size_t comma = vdev.find(',');
  const std::string name = vdev.substr(0, comma);
  EXPECT_EQ(name, ethdev_name(req));
  EXPECT_EQ(rte_vdev_init(name.c_str(), comma == std::string::npos ? "" : vdev.c_str() + comma + 1), 0) << vdev;
  return name;
}

bool wait_link(uint16_t port, bool up) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (link_state(port).up == up) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(AfPacketPort, SendsAndReceivesThroughTheKernelInterface) {
  VethPair veth("p");
  ASSERT_TRUE(veth.ok()) << "cannot make a veth pair (these tests need root)";
  const PortRequest req = request("isp1", "af_packet:" + veth.a(), 50);
  const std::string vdev = create_vdev(req);
  auto op = open_port(req, pool());
  ASSERT_TRUE(op.ok()) << op.error().msg;
  EXPECT_EQ(op->driver, "net_af_packet");
  EXPECT_FALSE(op->rss);
  // The PMD reads the kernel interface's address when it is created; sending with any other
  // source would teach the neighbours a MAC the kernel does not answer for.
  const MacAddr mac_a = kernel_mac(veth.a()), mac_b = kernel_mac(veth.b());
  EXPECT_EQ(op->mac, mac_a);
  EXPECT_EQ(sysfs(veth.a(), "mtu"), "1500");
  EXPECT_NE(std::stoi(sysfs(veth.a(), "flags"), nullptr, 16) & IFF_PROMISC, 0);

  RawSocket wire(veth.b());
  ASSERT_TRUE(wire.ok());
  // Out through the PMD, in on the other end of the veth, byte for byte.
  const auto out = frame(mac_b, mac_a, "sdwan-ports-out", 128);
  rte_mbuf* m = to_mbuf(pool(), out);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 0, &m, 1), 1);
  EXPECT_EQ(wire.receive("sdwan-ports-out", kWait), out);
  // With qdisc bypass the port does not see its own transmissions.
  EXPECT_TRUE(receive_on_port(op->port_id, 1, "sdwan-ports-out", std::chrono::milliseconds(200)).empty());

  const auto in = frame(mac_a, mac_b, "sdwan-ports-in", 300);
  ASSERT_TRUE(wire.send(in));
  EXPECT_EQ(receive_on_port(op->port_id, 1, "sdwan-ports-in", kWait), in);

  // The PMD says "up" from start to stop; the kernel's carrier is what tells.
  EXPECT_TRUE(link_state(op->port_id).up);
  ASSERT_EQ(sh("ip link set " + veth.b() + " down"), 0);
  EXPECT_TRUE(wait_link(op->port_id, false)) << "link still up with the peer down";
  ASSERT_EQ(sh("ip link set " + veth.b() + " up"), 0);
  EXPECT_TRUE(wait_link(op->port_id, true)) << "link still down with the peer up";

  close_port(op->port_id);
  close_port(op->port_id);
  EXPECT_FALSE(rte_eth_dev_is_valid_port(op->port_id));
  EXPECT_EQ(rte_vdev_uninit(vdev.c_str()), 0);
}

TEST(AfPacketPort, EveryQueueSocketMustBePolled) {
  VethPair veth("q");
  ASSERT_TRUE(veth.ok()) << "cannot make a veth pair (these tests need root)";
  // qpairs=2 (from tx_queues), but only one RX queue would be polled.
  const PortRequest req = request("isp2", "af_packet:" + veth.a(), 51, 1, 2);
  const std::string vdev = create_vdev(req);
  auto op = open_port(req, pool());
  ASSERT_FALSE(op.ok());
  EXPECT_EQ(op.error().msg, "port isp2 (af_packet:" + veth.a() +
                                "): the kernel spreads received packets over all 2 af_packet queue sockets, so all "
                                "must be polled: rx_queues must be 2, not 1");

  // Both queues polled: frames from several flows all arrive, whichever socket they hashed to.
  const PortRequest both = request("isp2", "af_packet:" + veth.a(), 51, 2, 2);
  auto ok = open_port(both, pool());
  ASSERT_TRUE(ok.ok()) << ok.error().msg;
  EXPECT_TRUE(ok->rss);
  RawSocket wire(veth.b());
  ASSERT_TRUE(wire.ok());
  const MacAddr mac_a = kernel_mac(veth.a()), mac_b = kernel_mac(veth.b());
  for (int i = 0; i < 8; ++i) {
    auto f = frame(mac_a, mac_b, "flow" + std::to_string(i), 64);
    f[6 + 5] = static_cast<uint8_t>(i);  // a different source per flow for the fanout hash
    ASSERT_TRUE(wire.send(f));
    EXPECT_FALSE(receive_on_port(ok->port_id, 2, "flow" + std::to_string(i), kWait).empty()) << i;
  }
  close_port(ok->port_id);
  EXPECT_EQ(rte_vdev_uninit(vdev.c_str()), 0);
}

TEST(AfPacketPort, JumboMtuIsSetOnTheKernelInterfaceAndFramesArriveWhole) {
  VethPair veth("j");
  ASSERT_TRUE(veth.ok()) << "cannot make a veth pair (these tests need root)";
  ASSERT_EQ(sh("ip link set " + veth.b() + " mtu 9000"), 0);
  const PortRequest req = request("isp3", "af_packet:" + veth.a(), 52, 1, 1, 9000);
  const std::string vdev = create_vdev(req);

  auto refused = open_port(req, pool());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().msg, "port isp3 (af_packet:" + veth.a() + "): mempool ct_ports_pool has a data room of " +
                                     std::to_string(RTE_MBUF_DEFAULT_BUF_SIZE) + " bytes; MTU 9000 on this port needs " +
                                     std::to_string(rx_data_room(req)));

  rte_mempool* jumbo = rte_pktmbuf_pool_create("ct_ports_jumbo", 511, 0, 0, static_cast<uint16_t>(rx_data_room(req)), 0);
  ASSERT_NE(jumbo, nullptr);
  auto op = open_port(req, jumbo);
  ASSERT_TRUE(op.ok()) << op.error().msg;
  EXPECT_EQ(sysfs(veth.a(), "mtu"), "9000");

  RawSocket wire(veth.b());
  ASSERT_TRUE(wire.ok());
  const MacAddr mac_a = kernel_mac(veth.a()), mac_b = kernel_mac(veth.b());
  const auto in = frame(mac_a, mac_b, "jumbo-in", 9014);
  ASSERT_TRUE(wire.send(in));
  const auto got = receive_on_port(op->port_id, 1, "jumbo-in", kWait);
  EXPECT_EQ(got.size(), in.size()) << "a received jumbo frame was truncated";
  EXPECT_EQ(got, in);

  const auto out = frame(mac_b, mac_a, "jumbo-out", 9014);
  rte_mbuf* m = to_mbuf(jumbo, out);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(rte_eth_tx_burst(op->port_id, 0, &m, 1), 1);
  EXPECT_EQ(wire.receive("jumbo-out", kWait), out);

  close_port(op->port_id);
  EXPECT_EQ(rte_vdev_uninit(vdev.c_str()), 0);
  rte_mempool_free(jumbo);
}

}  // namespace
}  // namespace sdwan::drv
