// The real worker on ring ports with real mbufs: one poll at a time, packets in and out as
// bytes. An edge and a hub are wired back to back through their uplink rings.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "control/config/config.hpp"
#include "control/neighbor/neighbor.hpp"
#include "control/publish/topology.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/worker.hpp"
#include "dataplane/esp/esp.hpp"
#include "dataplane/esp/sa.hpp"
#include "dataplane/overlay/overlay.hpp"
#include "dataplane/overlay/stamp.hpp"
#include "pkt.hpp"

namespace sdwan::test {
namespace {

using dp::Drop;

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("ct_worker_pool", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

std::string uniq(const std::string& base) {
  static std::atomic<int> n{0};
  return base + std::to_string(n.fetch_add(1));
}

rte_ring* ring(const std::string& name) {
  return rte_ring_create(uniq(name).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
}

// One RX queue; n_tx TX queues (one per worker: a worker sends on the queue of its index),
// all into tx (the tests poll the workers from one thread).
uint16_t ring_port(rte_ring* rx, rte_ring* tx, uint16_t n_tx = 1) {
  std::vector<rte_ring*> txs(n_tx, tx);
  const int id = rte_eth_from_rings(uniq("ctport").c_str(), &rx, 1, txs.data(), n_tx, 0);
  EXPECT_GE(id, 0);
  const auto pid = static_cast<uint16_t>(id);
  rte_eth_conf conf{};
  EXPECT_EQ(rte_eth_dev_configure(pid, 1, n_tx, &conf), 0);
  EXPECT_EQ(rte_eth_rx_queue_setup(pid, 0, 1024, 0, nullptr, pool()), 0);
  for (uint16_t q = 0; q < n_tx; ++q) EXPECT_EQ(rte_eth_tx_queue_setup(pid, q, 1024, 0, nullptr), 0);
  EXPECT_EQ(rte_eth_dev_start(pid), 0);
  return pid;
}

cp::Config make_config(bool edge, bool two_uplinks = false) {
  cp::Config c;
  c.role = edge ? cp::Role::kEdge : cp::Role::kHub;
  c.name = edge ? "edge" : "hub";
  c.lan.port = "ring:x";
  c.lan.address = *Prefix4::parse(edge ? "192.168.10.1/24" : "192.168.20.1/24", true);
  cp::UplinkConfig u;
  u.name = "isp1";
  u.port = "ring:y";
  u.address = *Prefix4::parse(edge ? "10.1.0.2/24" : "10.1.1.2/24", true);
  u.next_hop = ip(edge ? "10.1.0.1" : "10.1.1.1");
  c.uplinks.push_back(u);
  cp::PeerConfig p;
  p.name = edge ? "hub" : "edge";
  cp::EndpointConfig e;
  e.address = ip(edge ? "10.1.1.2" : "10.1.0.2");
  if (two_uplinks) {
    e.uplinks = {"isp1"};
    cp::UplinkConfig u2 = u;
    u2.name = "isp2";
    u2.port = "ring:z";
    u2.address = *Prefix4::parse(edge ? "10.2.0.2/24" : "10.2.1.2/24", true);
    u2.next_hop = ip(edge ? "10.2.0.1" : "10.2.1.1");
    c.uplinks.push_back(u2);
    cp::EndpointConfig e2;
    e2.address = ip(edge ? "10.2.1.2" : "10.2.0.2");
    e2.uplinks = {"isp2"};
    p.endpoints.push_back(e);
    p.endpoints.push_back(e2);
  } else {
    p.endpoints.push_back(e);
  }
  p.prefixes.push_back(*Prefix4::parse(edge ? "192.168.20.0/24" : "192.168.10.0/24"));
  c.peers.push_back(p);
  return c;
}

// The host port's kernel side (the tap interface's MAC): where frames for the host stack go.
const MacAddr kKernelMac = MacAddr{{0x02, 0, 0, 0, 0x77, 0x77}};

// One appliance's dataplane in this process: ports, snapshot, worker, control's rings. With two
// workers (two uplinks only), worker 0 polls the LAN and isp1, worker 1 polls isp2: the SAs of
// the two paths are decrypted by different workers, as RSS may place them in sdwand.
struct Node {
  cp::Config cfg;
  cp::Topology topo;
  std::unique_ptr<cp::NeighborManager> nm;
  std::vector<cp::PortLive> live;
  std::shared_ptr<const dp::RouteTable> routes;
  dp::Published<dp::Snapshot> pub{nullptr};
  dp::WorkerChannels ch;
  std::unique_ptr<dp::Worker> worker;
  dp::WorkerChannels ch2;
  std::unique_ptr<dp::Worker> worker2;  // the second worker, when there are two
  std::unique_ptr<dp::HandoffRings> handoff;  // theirs, made as sdwand makes them
  rte_ring *lan_in, *lan_out, *up_in, *up_out;
  rte_ring *up2_in = nullptr, *up2_out = nullptr;  // the second uplink, when there is one
  rte_ring *host_in = nullptr, *host_out = nullptr;  // the host port (its tap's kernel side), when there is one
  uint8_t host_port = 0;
  std::vector<rte_ring*> owned;
  cp::SnapshotSas sas;
  uint64_t gen = 0;

  Node(bool edge, rte_ring* uplink_rx = nullptr, rte_ring* uplink_tx = nullptr, rte_ring* uplink2_rx = nullptr,
       rte_ring* uplink2_tx = nullptr, uint16_t n_workers = 1, bool host = false)
      : cfg(make_config(edge, uplink2_rx != nullptr)) {
    up2_in = uplink2_rx;
    up2_out = uplink2_tx;
    if (host) cfg.host.port = "tap:h0";
    topo = cp::make_topology(cfg);
    lan_in = ring("lin");
    lan_out = ring("lout");
    up_in = uplink_rx ? uplink_rx : ring("uin");
    up_out = uplink_tx ? uplink_tx : ring("uout");
    owned = {lan_in, lan_out};
    if (!uplink_rx) owned.push_back(up_in);
    if (!uplink_tx) owned.push_back(up_out);
    std::vector<std::pair<rte_ring*, rte_ring*>> port_rings = {{lan_in, lan_out}, {up_in, up_out}};
    if (up2_in != nullptr) port_rings.emplace_back(up2_in, up2_out);
    if (host) {
      host_in = ring("hin");
      host_out = ring("hout");
      owned.insert(owned.end(), {host_in, host_out});
      host_port = static_cast<uint8_t>(port_rings.size());
      port_rings.emplace_back(host_in, host_out);
    }
    for (auto [rx, tx] : port_rings) {
      const uint16_t pid = ring_port(rx, tx, n_workers);
      rte_ether_addr a;
      rte_eth_macaddr_get(pid, &a);
      MacAddr m;
      std::memcpy(m.b.data(), a.addr_bytes, 6);
      live.push_back({pid, m, true});
    }
    if (host) live[host_port].host_mac = kKernelMac;
    std::vector<cp::NeighborPort> nps;
    for (size_t i = 0; i < topo.ports.size(); ++i) nps.push_back({static_cast<uint8_t>(i), live[i].mac, topo.ports[i].addr});
    nm = std::make_unique<cp::NeighborManager>(nps);
    routes = *cp::build_routes(cfg, 0);
    for (dp::WorkerChannels* c : {&ch, &ch2}) {
      c->to_control_pkts = ring("exc");
      c->to_control_resolve = rte_ring_create_elem(uniq("res").c_str(), 8, 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      c->from_control_tx = ring("ctx");
      c->to_control_probes = rte_ring_create_elem(uniq("prb").c_str(), sizeof(dp::ProbeReport), 1024, 0,
                                                  RING_F_SP_ENQ | RING_F_SC_DEQ);
      owned.insert(owned.end(), {c->to_control_pkts, c->to_control_resolve, c->from_control_tx, c->to_control_probes});
      if (n_workers == 1) break;
    }
    if (n_workers > 1) {
      handoff = dp::HandoffRings::create(n_workers, 0);
      EXPECT_NE(handoff, nullptr);
      handoff->attach(0, ch);
      handoff->attach(1, ch2);
    }
    publish();
    dp::WorkerConfig wc;
    wc.count = n_workers;
    wc.rx = {{0, 0}, {1, 0}};
    if (up2_in != nullptr && n_workers == 1) wc.rx.push_back({2, 0});
    if (host) wc.rx.push_back({host_port, 0});
    wc.snapshot = &pub;
    wc.channels = ch;
    wc.flow_capacity = 4096;
    wc.pool = pool();
    worker = std::make_unique<dp::Worker>(wc);
    if (n_workers == 2) {
      EXPECT_NE(up2_in, nullptr) << "two workers need two uplinks";
      wc.index = 1;
      wc.rx = {{2, 0}};
      wc.channels = ch2;
      worker2 = std::make_unique<dp::Worker>(wc);
    }
  }
  ~Node() {
    worker.reset();
    worker2.reset();
    handoff.reset();
    pub.publish(nullptr);
    for (rte_ring* r : {lan_in, lan_out, up_in, up_out, up2_in, up2_out, host_in, host_out, ch.to_control_pkts,
                        ch.from_control_tx, ch2.to_control_pkts, ch2.from_control_tx}) {
      if (r == nullptr) continue;
      void* m;
      while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    }
    // Ports hold no rings of their own (rte_eth_from_rings), so close them, then free ours.
    for (const auto& l : live) {
      rte_eth_dev_stop(l.port_id);
      rte_eth_dev_close(l.port_id);
    }
    for (rte_ring* r : owned) rte_ring_free(r);
  }
  std::shared_ptr<const dp::Policy> policy;
  std::vector<cp::PathMeasured> measured;  // by path id; empty: every path up, no metrics
  void publish() {
    auto s = cp::build_snapshot(topo, live, *nm, routes, ++gen, sas, measured);
    s->policy = policy;
    pub.publish(std::move(s));
  }
  // Path 0 sends with out_key under out_spi and accepts in_spi with in_key.
  void install_sas(uint32_t out_spi, uint8_t out_key, uint32_t in_spi, uint8_t in_key, bool esn = true) {
    install_path_sas({{out_spi, out_key, in_spi, in_key}}, esn);
  }
  // Path i sends with keys[i].out_key under keys[i].out_spi and accepts keys[i].in_spi.
  struct PathKeys {
    uint32_t out_spi;
    uint8_t out_key;
    uint32_t in_spi;
    uint8_t in_key;
  };
  void install_path_sas(const std::vector<PathKeys>& keys, bool esn = true) {
    sas = {};
    auto table = dp::make_inbound_table();
    for (size_t k = 0; k < keys.size(); ++k) {
      dp::EspSaParams o;
      o.spi = keys[k].out_spi;
      o.key.fill(keys[k].out_key);
      o.salt.fill(keys[k].out_key);
      o.esn = esn;
      sas.out.push_back(dp::make_outbound_sa(o, dp::EspPath{}));
      dp::EspSaParams i;
      i.spi = keys[k].in_spi;
      i.key.fill(keys[k].in_key);
      i.salt.fill(keys[k].in_key);
      i.esn = esn;
      i.tag = static_cast<uint16_t>(k);
      auto in = dp::make_inbound_sa(i);
      EXPECT_TRUE(dp::inbound_table_install(*table, in.get()));
      sas.in.push_back(in);
    }
    sas.inbound = table;
    publish();
  }
  void learn(uint8_t port, Ipv4 who, MacAddr m) {
    nm->want(port, who, false, 0);
    nm->on_arp(port, cp::ArpPacket{2, m, who, topo.ports[port].addr.addr}, 0);
    publish();
  }
  MacAddr lan_mac() const { return live[0].mac; }
  MacAddr up_mac() const { return live[1].mac; }
  // Summed over the workers, as show stats does.
  uint64_t drops(Drop d) const {
    uint64_t n = worker->counters().drops[static_cast<size_t>(d)].load();
    if (worker2) n += worker2->counters().drops[static_cast<size_t>(d)].load();
    return n;
  }
  template <class F>
  uint64_t sum(F&& f) const {
    return f(worker->counters()) + (worker2 ? f(worker2->counters()) : 0);
  }
  uint64_t esp_drops(dp::EspDrop d) const { return worker->esp_counters().dropped(d); }
  uint64_t flows_created() const { return worker->counters().flows_created.load(); }
};

void inject(rte_ring* r, const Bytes& b) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool());
  ASSERT_NE(m, nullptr);
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(b.size())), b.data(), b.size());
  ASSERT_EQ(rte_ring_enqueue(r, m), 0);
}

std::optional<Bytes> take(rte_ring* r) {
  void* v = nullptr;
  if (rte_ring_dequeue(r, &v) != 0) return std::nullopt;
  auto* m = static_cast<rte_mbuf*>(v);
  Bytes b(rte_pktmbuf_pkt_len(m));
  std::memcpy(b.data(), rte_pktmbuf_mtod(m, uint8_t*), b.size());
  rte_pktmbuf_free(m);
  return b;
}

const MacAddr kHostA = mac(0x12), kHostB = mac(0x22), kIspE = mac(0xa1), kIspH = mac(0xb1);
constexpr uint32_t kSpiEdgeToHub = 0x5d000010, kSpiHubToEdge = 0x5d000011;

// An edge wired to a hub, everything resolved, the way a lab looks once ARP has run.
struct Rings {
  rte_ring* e2h = ring("e2h");
  rte_ring* h2e = ring("h2e");
  ~Rings() {
    rte_ring_free(e2h);
    rte_ring_free(h2e);
  }
};
struct Pair {
  Rings wire;
  Node edge{true, wire.h2e, wire.e2h};
  Node hub{false, wire.e2h, wire.h2e};
  Pair() {
    edge.learn(1, ip("10.1.0.1"), kIspE);
    edge.learn(0, ip("192.168.10.2"), kHostA);
    hub.learn(1, ip("10.1.1.1"), kIspH);
    hub.learn(0, ip("192.168.20.2"), kHostB);
    edge.install_sas(kSpiEdgeToHub, 0x11, kSpiHubToEdge, 0x22);
    hub.install_sas(kSpiHubToEdge, 0x22, kSpiEdgeToHub, 0x11);
  }
};

// The ESP packet's payload decrypted with the edge -> hub key (test-side, with the library the
// worker uses), or nullopt when it does not verify.
std::optional<Bytes> open_edge_to_hub(const Bytes& frame) {
  auto eng = dp::CryptoEngine::create();
  if (!eng) return std::nullopt;
  uint8_t key[32], salt[4];
  std::memset(key, 0x11, 32);
  std::memset(salt, 0x11, 4);
  dp::InboundSa sa(**eng, kSpiEdgeToHub, key, salt, true);
  dp::InboundTable t;
  t.install(&sa);
  rte_mbuf* m = rte_pktmbuf_alloc(pool());
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(), frame.size());
  dp::EspCounters c;
  uint8_t nh = 0;
  rte_mbuf* one[1] = {m};
  if (dp::esp_decrypt_burst(**eng, t, std::span<rte_mbuf*>(one, 1), c, &nh) != 1) {
    rte_pktmbuf_free(m);
    return std::nullopt;
  }
  Bytes b(rte_pktmbuf_pkt_len(m));
  std::memcpy(b.data(), rte_pktmbuf_mtod(m, uint8_t*), b.size());
  rte_pktmbuf_free(m);
  EXPECT_EQ(nh, dp::kEspNextOverlay);
  return b;
}

bool contains(const Bytes& hay, const std::string& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

Bytes from_a(const Bytes& l4, Ip4Opts o = {}, const char* dst = "192.168.20.2") {
  return eth_ipv4(mac(0xee), kHostA, ip("192.168.10.2"), ip(dst), l4, o);
}

TEST(Worker, LanPacketLeavesTheUplinkAsEspOnly) {
  Pair p;
  const std::string marker = "MARKER-must-never-be-seen-on-the-wan";
  const Bytes in = eth_ipv4(p.edge.lan_mac(), kHostA, ip("192.168.10.2"), ip("192.168.20.2"), udp(1111, 2222, marker));
  inject(p.edge.lan_in, in);
  inject(p.edge.lan_in, in);
  p.edge.worker->poll_once();
  for (uint32_t seq = 1; seq <= 2; ++seq) {
    auto out = take(p.edge.up_out);
    ASSERT_TRUE(out);
    const Bytes& o = *out;
    const size_t inner_len = in.size() - 14 + sizeof(dp::OverlayHdr);
    ASSERT_EQ(o.size(), 14 + dp::esp_outer_ip_len(static_cast<uint32_t>(inner_len)));
    EXPECT_EQ(0, std::memcmp(o.data(), kIspE.b.data(), 6)) << "outer dst MAC is the resolved next hop";
    EXPECT_EQ(0, std::memcmp(o.data() + 6, p.edge.up_mac().b.data(), 6));
    EXPECT_EQ(get16(o, 12), 0x0800);
    EXPECT_EQ(o[14], 0x45);
    EXPECT_TRUE(ipv4_checksum_ok(o, 14));
    EXPECT_EQ(get16(o, 16), o.size() - 14);
    EXPECT_EQ(get16(o, 20) & 0x4000, 0x4000) << "DF set on the tunnel";
    EXPECT_EQ(o[23], 17);
    EXPECT_EQ(get32(o, 26), ip("10.1.0.2").v);
    EXPECT_EQ(get32(o, 30), ip("10.1.1.2").v);
    EXPECT_EQ(get16(o, 34), 4500);
    EXPECT_EQ(get16(o, 36), 4500);
    EXPECT_EQ(get16(o, 38), o.size() - 34);
    EXPECT_EQ(get32(o, 42), kSpiEdgeToHub);
    EXPECT_EQ(get32(o, 46), seq) << "sequence numbers count from 1 without gaps";
    EXPECT_FALSE(contains(o, marker)) << "the payload is encrypted";
    auto plain = open_edge_to_hub(o);
    ASSERT_TRUE(plain) << "authenticates with the edge -> hub key";
    const Bytes& pl = *plain;
    ASSERT_EQ(pl.size(), inner_len);
    EXPECT_EQ(pl[0] >> 4, dp::kOverlayVersion);
    EXPECT_EQ(get32(pl, 12), seq) << "overlay sequence per peer";
    const size_t inner = sizeof(dp::OverlayHdr);
    EXPECT_EQ(pl[inner + 8], 63) << "inner TTL decremented";
    EXPECT_TRUE(ipv4_checksum_ok(pl, inner));
    EXPECT_EQ(0, std::memcmp(pl.data() + inner + 12, in.data() + 14 + 12, in.size() - 14 - 12)) << "addresses and payload intact";
  }
  EXPECT_EQ(p.edge.worker->counters().encapsulated.load(), 2u);
  EXPECT_EQ(p.edge.worker->esp_counters().enc_pkts.load(), 2u);
  EXPECT_EQ(p.edge.worker->path_counters()[0].tx_pkts.load(), 2u);
}

// Ten peers over one uplink: a poll whose packets go to more paths than the worker has encrypt
// queues (eight) seals the queues it holds to make room, and every packet still leaves, in its
// own path's SA, counted on its path, on the general path (first packets) and on lan_fast.
TEST(Worker, APollWithMorePathsThanEncryptQueuesSendsEveryPacketInItsPathsSa) {
  Pair p;
  constexpr uint32_t kPeers = 10;
  cp::Config cfg = p.edge.cfg;
  for (uint32_t k = 1; k < kPeers; ++k) {
    cp::PeerConfig peer = cfg.peers[0];
    peer.name = "hub" + std::to_string(k);
    peer.endpoints[0].address = ip(("10.1.1." + std::to_string(10 + k)).c_str());
    peer.prefixes = {*Prefix4::parse(("192.168." + std::to_string(30 + k) + ".0/24").c_str())};
    cfg.peers.push_back(peer);
  }
  p.edge.cfg = cfg;
  p.edge.topo = cp::make_topology(cfg);
  ASSERT_EQ(p.edge.topo.paths.size(), kPeers);
  p.edge.routes = *cp::build_routes(cfg, 0);
  std::vector<Node::PathKeys> keys;
  for (uint32_t k = 0; k < kPeers; ++k) keys.push_back({0x5d100000 + k, static_cast<uint8_t>(0x40 + k), 0x5d200000 + k, 0x22});
  p.edge.install_path_sas(keys);
  const auto dst = [](uint32_t k) {
    return k == 0 ? std::string("192.168.20.2") : "192.168." + std::to_string(30 + k) + ".2";
  };
  for (uint32_t round = 1; round <= 2; ++round) {
    for (uint32_t k = 0; k < kPeers; ++k) inject(p.edge.lan_in, from_a(udp(1000, 2000, "x"), {}, dst(k).c_str()));
    p.edge.worker->poll_once();
    std::vector<uint32_t> spis;
    while (auto o = take(p.edge.up_out)) {
      ASSERT_GT(o->size(), 50u);
      EXPECT_EQ(get32(*o, 46), round) << "the path's own sequence numbers";
      spis.push_back(get32(*o, 42));
    }
    std::sort(spis.begin(), spis.end());
    ASSERT_EQ(spis.size(), kPeers) << "round " << round;
    for (uint32_t k = 0; k < kPeers; ++k) EXPECT_EQ(spis[k], 0x5d100000 + k) << "round " << round;
    for (uint32_t k = 0; k < kPeers; ++k) EXPECT_EQ(p.edge.worker->path_counters()[k].tx_pkts.load(), round);
  }
  EXPECT_EQ(p.edge.worker->counters().encapsulated.load(), 2 * kPeers);
  EXPECT_EQ(p.edge.worker->esp_counters().enc_pkts.load(), 2 * kPeers);
  EXPECT_EQ(p.edge.flows_created(), kPeers);
}

TEST(Worker, APathWithoutAnOutboundSaSendsNothing) {
  Pair p;
  p.edge.sas.out.clear();
  p.edge.publish();
  inject(p.edge.lan_in, from_a(udp(1, 2, "secret")));
  p.edge.worker->poll_once();
  EXPECT_FALSE(take(p.edge.up_out)) << "no SA, no packet: never in the clear";
  EXPECT_EQ(p.edge.drops(Drop::kNoPath), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, ForgedReplayedAndUnknownEspNeverReachTheLan) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 2, "once")));
  p.edge.worker->poll_once();
  auto good = take(p.edge.up_out);
  ASSERT_TRUE(good);
  Bytes flipped = *good;
  flipped[flipped.size() - 20] ^= 0x01;  // one bit of the ciphertext's trailer
  Bytes unknown = *good;
  unknown[45] ^= 0x40;                   // SPI no SA has
  for (const Bytes* b : {&flipped, &unknown, &*good, &*good}) inject(p.hub.up_in, *b);
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.esp_drops(dp::EspDrop::kIcvFail), 1u);
  EXPECT_EQ(p.hub.esp_drops(dp::EspDrop::kUnknownSpi), 1u);
  EXPECT_EQ(p.hub.esp_drops(dp::EspDrop::kReplay), 1u) << "the second copy of a good packet";
  auto got = take(p.hub.lan_out);
  ASSERT_TRUE(got) << "the genuine packet, once";
  EXPECT_FALSE(take(p.hub.lan_out));
  // The forged one did not move the window: the genuine one was still accepted after it.
  EXPECT_EQ(p.hub.worker->esp_counters().dec_pkts.load(), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, AnInboundSaBelongsToTheFirstWorkerThatReceivesIt) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 2, "a")));
  inject(p.edge.lan_in, from_a(udp(1, 2, "b")));
  p.edge.worker->poll_once();
  auto a = take(p.edge.up_out), b = take(p.edge.up_out);
  ASSERT_TRUE(a && b);
  inject(p.hub.up_in, *a);
  p.hub.worker->poll_once();
  ASSERT_TRUE(take(p.hub.lan_out));
  // A second hub worker polling the same port meets the SA worker 0 owns.
  dp::WorkerConfig wc;
  wc.index = 1;
  wc.rx = {{0, 0}, {1, 0}};
  wc.snapshot = &p.hub.pub;
  wc.flow_capacity = 64;
  dp::Worker second(wc);
  inject(p.hub.up_in, *b);
  second.poll_once();
  EXPECT_EQ(second.esp_counters().dropped(dp::EspDrop::kWrongWorker), 1u);
  EXPECT_FALSE(take(p.hub.lan_out));
}

// Compares two IPv4 packets byte for byte except TTL and header checksum.
void expect_same_but_ttl(const Bytes& a, size_t aoff, const Bytes& b, size_t boff) {
  ASSERT_EQ(a.size() - aoff, b.size() - boff);
  for (size_t i = 0; i < a.size() - aoff; ++i) {
    if (i == 8 || i == 10 || i == 11) continue;
    ASSERT_EQ(a[aoff + i], b[boff + i]) << "byte " << i;
  }
}

TEST(Worker, EdgeAndHubCarryALanPacketBitForBitBothWays) {
  Pair p;
  const Bytes ab = eth_ipv4(p.edge.lan_mac(), kHostA, ip("192.168.10.2"), ip("192.168.20.2"), udp(5000, 6000, "payload A->B"));
  inject(p.edge.lan_in, ab);
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  auto got = take(p.hub.lan_out);
  ASSERT_TRUE(got);
  EXPECT_EQ(0, std::memcmp(got->data(), kHostB.b.data(), 6)) << "to lan-b's MAC";
  EXPECT_EQ(0, std::memcmp(got->data() + 6, p.hub.lan_mac().b.data(), 6));
  expect_same_but_ttl(ab, 14, *got, 14);
  EXPECT_EQ((*got)[14 + 8], 62) << "one decrement per router";
  EXPECT_TRUE(ipv4_checksum_ok(*got, 14));

  const Bytes ba = eth_ipv4(p.hub.lan_mac(), kHostB, ip("192.168.20.2"), ip("192.168.10.2"), tcp_syn(ip("192.168.20.2"), ip("192.168.10.2"), 40000, 80, 1200));
  inject(p.hub.lan_in, ba);
  p.hub.worker->poll_once();
  p.edge.worker->poll_once();
  got = take(p.edge.lan_out);
  ASSERT_TRUE(got);
  EXPECT_EQ(0, std::memcmp(got->data(), kHostA.b.data(), 6));
  expect_same_but_ttl(ba, 14, *got, 14);
  EXPECT_EQ(p.hub.worker->path_counters()[0].rx_pkts.load(), 1u);
  EXPECT_EQ(p.edge.worker->path_counters()[0].rx_pkts.load(), 1u);
}

struct BadFrame {
  const char* name;
  Bytes bytes;
  Drop why;
};

TEST(Worker, EachMalformedFrameIsCountedUnderItsReasonAndDropped) {
  Pair p;
  const Bytes good = from_a(udp(1, 2, "x"));
  auto with = [&](auto f) {
    Bytes b = good;
    f(b);
    return b;
  };
  const BadFrame cases[] = {
      {"runt ethernet", Bytes(10, 0xab), Drop::kRunt},
      {"runt ip header", Bytes(good.begin(), good.begin() + 24), Drop::kRunt},
      {"unknown ethertype", with([](Bytes& b) { put16(b, 12, 0x88b5); }), Drop::kBadL2},
      {"ihl 4", with([](Bytes& b) { b[14] = 0x44; }), Drop::kBadIpHeader},
      {"version 5", with([](Bytes& b) { b[14] = 0x55; }), Drop::kBadIpHeader},
      {"total length beyond frame", with([](Bytes& b) { put16(b, 16, 400); }), Drop::kRunt},
      {"bad checksum", with([](Bytes& b) { b[24] ^= 0xff; }), Drop::kBadIpChecksum},
      {"ipv6", [] {
         Bytes b(14 + 40 + 8, 0);
         put16(b, 12, 0x86dd);
         b[14] = 0x60;
         put16(b, 18, 8);
         b[20] = 17;
         b[21] = 64;
         return b;
       }(), Drop::kIpv6Unsupported},
  };
  for (const auto& c : cases) {
    const uint64_t before = p.edge.drops(c.why);
    inject(p.edge.lan_in, c.bytes);
    p.edge.worker->poll_once();
    EXPECT_EQ(p.edge.drops(c.why), before + 1) << c.name;
    EXPECT_FALSE(take(p.edge.up_out)) << c.name;
    EXPECT_FALSE(take(p.edge.lan_out)) << c.name;
  }
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u) << "every dropped mbuf went back to the pool";
}

TEST(Worker, CleartextAndStrangersOnTheUplinkAreDropped) {
  Pair p;
  // UDP to our ESP port from an address that is no peer endpoint: no SA has that SPI.
  inject(p.hub.up_in, eth_ipv4(p.hub.up_mac(), kIspH, ip("10.9.9.9"), ip("10.1.1.2"), udp(4500, 4500, std::string(40, 'z'))));
  // From the real endpoint, but cleartext (the old plain overlay): not ESP either.
  Bytes plain(16, 0);
  plain[0] = dp::kOverlayVersion << 4;
  const Bytes inner = from_a(udp(1, 2, "cleartext"));
  plain.insert(plain.end(), inner.begin() + 14, inner.end());
  inject(p.hub.up_in, eth_ipv4(p.hub.up_mac(), kIspH, ip("10.1.0.2"), ip("10.1.1.2"),
                               udp(4500, 4500, std::string(plain.begin(), plain.end()))));
  // A NAT keep-alive (RFC 3948: one byte 0xff).
  inject(p.hub.up_in, eth_ipv4(p.hub.up_mac(), kIspH, ip("10.1.0.2"), ip("10.1.1.2"), udp(4500, 4500, "\xff")));
  // Addressed to someone else entirely.
  inject(p.hub.up_in, eth_ipv4(p.hub.up_mac(), kIspH, ip("10.1.0.2"), ip("10.1.1.99"), udp(1, 2, "x")));
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.esp_drops(dp::EspDrop::kUnknownSpi), 2u);
  EXPECT_EQ(p.hub.esp_drops(dp::EspDrop::kRunt), 1u);
  EXPECT_EQ(p.hub.drops(Drop::kNotForUs), 1u);
  EXPECT_FALSE(take(p.hub.lan_out));
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

// frame (Ethernet, then IPv4 without options) with a 4-byte options field in its IPv4 header:
// three NOPs and the end of the list, IHL 6, the total length and the checksum made right.
Bytes with_ip_options(Bytes f) {
  const Bytes opt{1, 1, 1, 0};
  f.insert(f.begin() + 34, opt.begin(), opt.end());
  f[14] = 0x46;
  put16(f, 16, static_cast<uint16_t>(get16(f, 16) + 4));
  put16(f, 24, 0);
  const uint16_t c = dp::inet_checksum(f.data() + 14, 24);
  std::memcpy(f.data() + 24, &c, 2);
  return f;
}

// What the edge's worker would send the hub, built by hand: payload (an overlay header and an
// inner packet, or anything) sealed with the edge -> hub SA under next header nh. One sealer a
// test, so its sequence numbers count up.
struct EdgeSealer {
  decltype(dp::CryptoEngine::create()) eng = dp::CryptoEngine::create();
  std::unique_ptr<dp::OutboundSa> sa;
  explicit EdgeSealer(Pair& p) {
    uint8_t key[32], salt[4];
    std::memset(key, 0x11, 32);
    std::memset(salt, 0x11, 4);
    dp::EspPath path{kIspH, p.hub.up_mac(), ip("10.1.0.2"), ip("10.1.1.2"), 4500, 4500, 1500};
    sa = std::make_unique<dp::OutboundSa>(**eng, kSpiEdgeToHub, key, salt, true, ~uint64_t{0}, path);
  }
  Bytes seal(const Bytes& payload, uint8_t nh = dp::kEspNextOverlay) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool());
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(payload.size())), payload.data(), payload.size());
    dp::EspCounters ec;
    rte_mbuf* one[1] = {m};
    EXPECT_EQ(dp::esp_encrypt_burst(**eng, *sa, std::span<rte_mbuf*>(one, 1), nh, ec), 1);
    Bytes f(rte_pktmbuf_pkt_len(m));
    std::memcpy(f.data(), rte_pktmbuf_mtod(m, uint8_t*), f.size());
    rte_pktmbuf_free(m);
    return f;
  }
  // A data packet's overlay header (class 0, stream 0, no flags, sequence seq) and the IP packet
  // of frame (its Ethernet header left off).
  static Bytes overlay(const Bytes& frame, uint64_t seq) {
    Bytes b(16, 0);
    b[0] = dp::kOverlayVersion << 4;
    for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
    b.insert(b.end(), frame.begin() + 14, frame.end());
    return b;
  }
};

TEST(Worker, AVerifiedPacketWithABadOverlayIsDropped) {
  Pair p;
  EdgeSealer edge(p);
  ASSERT_TRUE(edge.eng);
  struct Case {
    uint8_t nh;
    uint8_t first;
  } cases[] = {{dp::kEspNextIpv4, 0x45}, {dp::kEspNextOverlay, 0x21}};  // inner IPv4 without overlay; overlay version 2
  for (const auto& c : cases) {
    Bytes payload = EdgeSealer::overlay(from_a(udp(1, 2, "x")), 1);
    payload[0] = c.first;
    inject(p.hub.up_in, edge.seal(payload, c.nh));
  }
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->esp_counters().dec_pkts.load(), 2u) << "both verified";
  EXPECT_EQ(p.hub.drops(Drop::kBadOverlay), 2u);
  EXPECT_FALSE(take(p.hub.lan_out));
}

// Most inner packets take the worker's one-look delivery; the rest (IP options, a bad checksum,
// padding behind the packet, an unresolved host) the general one. In one burst, each still gets
// what the general path gives it, and what reaches the LAN keeps the order it came in.
TEST(Worker, InnerPacketsOfOneBurstKeepTheirOrderWhicheverDeliveryTheyTake) {
  Pair p;
  EdgeSealer edge(p);
  ASSERT_TRUE(edge.eng);
  uint64_t seq = 0;
  auto send = [&](const Bytes& payload) { inject(p.hub.up_in, edge.seal(payload)); };
  auto plain = [&](const char* tag) { return EdgeSealer::overlay(from_a(udp(1, 2, tag)), ++seq); };
  send(plain("p0"));
  send(EdgeSealer::overlay(with_ip_options(from_a(udp(1, 2, "p1"))), ++seq));
  send(plain("p2"));
  {  // a bad inner header checksum: dropped
    Bytes b = plain("xx");
    b[16 + 10] ^= 0x40;
    send(b);
  }
  {  // p4: three bytes behind the IP packet, left off on the LAN
    Bytes b = plain("p4");
    b.insert(b.end(), {0xde, 0xad, 0xbe});
    send(b);
  }
  send(EdgeSealer::overlay(from_a(udp(1, 2, "p5"), {}, "192.168.20.77"), ++seq));  // unresolved: parked
  send(plain("p6"));
  // The one-look delivery remembers the last destination's hop: another host, then the same
  // destination with a TTL that expires here, then the same again.
  p.hub.learn(0, ip("192.168.20.3"), mac(0x23));
  send(EdgeSealer::overlay(from_a(udp(1, 2, "p7"), {}, "192.168.20.3"), ++seq));
  send(EdgeSealer::overlay(from_a(udp(1, 2, "t1"), {.ttl = 1}, "192.168.20.3"), ++seq));
  send(plain("p9"));
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.drops(Drop::kBadIpChecksum), 1u);
  EXPECT_EQ(p.hub.drops(Drop::kTtlExpired), 1u);
  EXPECT_EQ(p.hub.worker->counters().arp_parked.load(), 1u);
  EXPECT_EQ(p.hub.worker->counters().decapsulated.load(), 9u) << "all but the bad checksum";
  for (const char* want : {"p0", "p1", "p2", "p4", "p6", "p7", "p9"}) {
    auto got = take(p.hub.lan_out);
    ASSERT_TRUE(got) << want;
    const MacAddr host = want[1] == '7' ? mac(0x23) : kHostB;
    EXPECT_EQ(0, std::memcmp(got->data(), host.b.data(), 6)) << want;
    EXPECT_EQ(0, std::memcmp(got->data() + 6, p.hub.lan_mac().b.data(), 6)) << want;
    EXPECT_EQ(get16(*got, 12), 0x0800) << want;
    EXPECT_EQ(got->size(), 14u + get16(*got, 16)) << want << ": the frame ends with its IP packet";
    EXPECT_EQ(0, std::memcmp(got->data() + got->size() - 2, want, 2)) << want;
    EXPECT_EQ((*got)[14 + 8], 63) << want << ": TTL decremented once";
    EXPECT_TRUE(ipv4_checksum_ok(*got, 14)) << want;
  }
  EXPECT_FALSE(take(p.hub.lan_out));
  EXPECT_EQ(p.hub.worker->path_counters()[0].rx_pkts.load(), 10u) << "each counted on its path";
}

// Most ESP frames pass the uplink's one look (ipv4_udp_to) and are decrypted without their outer
// headers checked twice; one whose outer header carries options takes wan_front's walk and the
// decryption's own checks, and is delivered all the same.
TEST(Worker, AnEspFrameWithOuterIpOptionsIsDecryptedToo) {
  Pair p;
  EdgeSealer edge(p);
  ASSERT_TRUE(edge.eng);
  inject(p.hub.up_in, edge.seal(EdgeSealer::overlay(from_a(udp(1, 2, "o0")), 1)));
  const Bytes f = with_ip_options(edge.seal(EdgeSealer::overlay(from_a(udp(1, 2, "o1")), 2)));
  inject(p.hub.up_in, f);
  Bytes bad = f;  // the same with a UDP length beyond the datagram: the decryption's checks refuse it
  put16(bad, 38 + 4, 0xfff0);
  inject(p.hub.up_in, bad);
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->esp_counters().dec_pkts.load(), 2u);
  std::vector<std::string> got;
  while (auto b = take(p.hub.lan_out)) got.emplace_back(b->end() - 2, b->end());
  EXPECT_EQ(got, (std::vector<std::string>{"o0", "o1"}));
  EXPECT_EQ(p.hub.worker->esp_counters().dropped(dp::EspDrop::kBadLength), 1u)
      << "the frame whose UDP length lies is refused before decryption";
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, ArpForOurAddressIsAnsweredThroughControl) {
  Pair p;
  const MacAddr newcomer = mac(0x33);
  inject(p.edge.lan_in, arp_request(newcomer, ip("192.168.10.3"), ip("192.168.10.1")));
  p.edge.worker->poll_once();
  // Control's side: what the appliance does with the frame the worker handed over.
  void* v = nullptr;
  ASSERT_EQ(rte_ring_dequeue(p.edge.ch.to_control_pkts, &v), 0);
  auto* m = static_cast<rte_mbuf*>(v);
  EXPECT_EQ(m->port, 0) << "port index of the LAN";
  uint8_t out[64];
  const uint32_t n = cp::handle_arp_frame(*p.edge.nm, 0, rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m),
                                          p.edge.lan_mac(), ip("192.168.10.1"), 0, out);
  rte_pktmbuf_free(m);
  ASSERT_EQ(n, 60u);
  EXPECT_EQ(p.edge.nm->lookup(0, ip("192.168.10.3")), newcomer) << "learned the asker (RFC 826)";
  rte_mbuf* r = rte_pktmbuf_alloc(pool());
  std::memcpy(rte_pktmbuf_append(r, static_cast<uint16_t>(n)), out, n);
  r->port = 0;
  ASSERT_EQ(rte_ring_enqueue(p.edge.ch.from_control_tx, r), 0);
  p.edge.worker->poll_once();
  auto reply = take(p.edge.lan_out);
  ASSERT_TRUE(reply);
  const Bytes& b = *reply;
  EXPECT_EQ(0, std::memcmp(b.data(), newcomer.b.data(), 6));
  EXPECT_EQ(get16(b, 12), 0x0806);
  EXPECT_EQ(get16(b, 20), 2) << "ARP reply";
  EXPECT_EQ(0, std::memcmp(b.data() + 22, p.edge.lan_mac().b.data(), 6));
  EXPECT_EQ(get32(b, 28), ip("192.168.10.1").v);
  EXPECT_EQ(get32(b, 38), ip("192.168.10.3").v);
  // A request for someone else's address is not answered.
  Bytes other = arp_request(newcomer, ip("192.168.10.3"), ip("192.168.10.77"));
  EXPECT_EQ(cp::handle_arp_frame(*p.edge.nm, 0, other.data(), static_cast<uint32_t>(other.size()), p.edge.lan_mac(),
                                 ip("192.168.10.1"), 0, out),
            0u);
}

TEST(Worker, IcmpEchoToOurAddressesIsAnswered) {
  Pair p;
  struct {
    const char* dst;
  } cases[] = {{"192.168.10.1"}, {"10.1.0.2"}};
  for (const auto& c : cases) {
    inject(p.edge.lan_in, eth_ipv4(p.edge.lan_mac(), kHostA, ip("192.168.10.2"), ip(c.dst), icmp_echo(7, 1), {.proto = 1}));
    p.edge.worker->poll_once();
    auto r = take(p.edge.lan_out);
    ASSERT_TRUE(r) << c.dst;
    const Bytes& b = *r;
    EXPECT_EQ(0, std::memcmp(b.data(), kHostA.b.data(), 6)) << c.dst;
    EXPECT_EQ(get32(b, 26), ip(c.dst).v);
    EXPECT_EQ(get32(b, 30), ip("192.168.10.2").v);
    EXPECT_EQ(b[34], 0) << "echo reply";
    EXPECT_TRUE(ipv4_checksum_ok(b, 14));
    EXPECT_EQ(dp::inet_checksum(b.data() + 34, b.size() - 34), 0) << "ICMP checksum";
  }
  // The hub's LAN address, pinged from lan-a through the overlay: the reply comes back the same way.
  inject(p.edge.lan_in, from_a(icmp_echo(9, 2), {.proto = 1}, "192.168.20.1"));
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  p.edge.worker->poll_once();
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  EXPECT_EQ(get32(*r, 26), ip("192.168.20.1").v);
  EXPECT_EQ((*r)[34], 0);
  EXPECT_EQ(p.edge.worker->counters().icmp_echo_replied.load(), 2u);
  EXPECT_EQ(p.hub.worker->counters().icmp_echo_replied.load(), 1u);
}

TEST(Worker, TtlOneGetsTimeExceededFromTheLanAddress) {
  Pair p;
  const Bytes in = from_a(udp(1, 33434, "trace"), {.ttl = 1});
  inject(p.edge.lan_in, in);
  p.edge.worker->poll_once();
  EXPECT_FALSE(take(p.edge.up_out));
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  const Bytes& b = *r;
  EXPECT_EQ(get32(b, 26), ip("192.168.10.1").v);
  EXPECT_EQ(get32(b, 30), ip("192.168.10.2").v);
  EXPECT_EQ(b[34], 11);
  EXPECT_EQ(b[35], 0);
  EXPECT_EQ(0, std::memcmp(b.data() + 42, in.data() + 14, 28)) << "quotes the original header + 8 bytes";
  EXPECT_EQ(p.edge.drops(Drop::kTtlExpired), 1u);
  EXPECT_EQ(p.edge.worker->counters().icmp_errors_sent.load(), 1u);
}

TEST(Worker, IcmpErrorsAreRateLimitedPerWorker) {
  Pair p;
  p.edge.topo.icmp_errors_per_sec = 1;  // burst 50 (Snapshot default); 1/s refills nothing within the test
  p.edge.publish();
  for (int i = 0; i < 80; ++i) {
    inject(p.edge.lan_in, from_a(udp(1, static_cast<uint16_t>(33434 + i), "t"), {.ttl = 1}));
    if (i % 20 == 19) p.edge.worker->poll_once();
  }
  p.edge.worker->poll_once();
  const auto& c = p.edge.worker->counters();
  EXPECT_EQ(p.edge.drops(Drop::kTtlExpired), 80u) << "every expired packet is counted";
  EXPECT_EQ(c.icmp_errors_sent.load(), 50u) << "but only a burst's worth is answered";
  EXPECT_EQ(c.icmp_errors_ratelimited.load(), 30u);
  int replies = 0;
  while (take(p.edge.lan_out)) ++replies;
  EXPECT_EQ(replies, 50);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, TtlExpiringAtTheHubIsReportedBackThroughTheOverlay) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 33435, "trace"), {.ttl = 2}));
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  EXPECT_FALSE(take(p.hub.lan_out));
  p.edge.worker->poll_once();
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  EXPECT_EQ(get32(*r, 26), ip("192.168.20.1").v) << "from the hub's LAN address";
  EXPECT_EQ((*r)[34], 11);
}

TEST(Worker, NoRouteIsCountedAndAnsweredWithNetUnreachable) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 2, "x"), {}, "203.0.113.7"));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.edge.drops(Drop::kNoRoute), 1u);
  EXPECT_FALSE(take(p.edge.up_out));
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[34], 3);
  EXPECT_EQ((*r)[35], 0);
}

TEST(Worker, UnresolvedLanHostIsParkedWhileControlResolvesIt) {
  Pair p;
  constexpr int kHeld = 32;
  for (int i = 0; i <= kHeld; ++i) {
    const std::string payload = fmt::format("x{:02}", i);
    inject(p.edge.lan_in, from_a(udp(1, 2, payload.c_str()), {}, "192.168.20.55"));
    if (i % 16 == 15) {
      p.edge.worker->poll_once();
      p.hub.worker->poll_once();
    }
  }
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->counters().arp_parked.load(), uint64_t{kHeld}) << "32 held per destination";
  EXPECT_EQ(p.hub.drops(Drop::kUnresolved), 1u) << "the 33rd did not fit";
  EXPECT_FALSE(take(p.hub.lan_out));
  dp::ResolveRequest rr{};
  ASSERT_EQ(rte_ring_dequeue_elem(p.hub.ch.to_control_resolve, &rr, sizeof rr), 0);
  EXPECT_EQ(rr.ip, ip("192.168.20.55").v);
  EXPECT_EQ(rr.port, 0);
  EXPECT_NE(rte_ring_dequeue_elem(p.hub.ch.to_control_resolve, &rr, sizeof rr), 0) << "asked once, not per packet";
  // Control resolves it: the held packets leave in order with the next snapshot.
  p.hub.learn(0, ip("192.168.20.55"), mac(0x55));
  p.hub.worker->poll_once();
  for (int i = 0; i < kHeld; ++i) {
    const std::string payload = fmt::format("x{:02}", i);
    auto got = take(p.hub.lan_out);
    ASSERT_TRUE(got) << payload;
    EXPECT_EQ((*got)[5], 0x55);
    EXPECT_EQ((*got)[14 + 8], 62) << "TTL decremented once at each end";
    EXPECT_TRUE(ipv4_checksum_ok(*got, 14));
    EXPECT_EQ(0, std::memcmp(got->data() + got->size() - 3, payload.data(), 3)) << payload;
  }
  EXPECT_EQ(p.hub.worker->counters().arp_released.load(), uint64_t{kHeld});
}

TEST(Worker, ParkedPacketsAreDroppedWhenResolutionTakesTooLong) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 2, "lost"), {}, "192.168.20.66"));
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  ASSERT_EQ(p.hub.worker->counters().arp_parked.load(), 1u);
  const uint64_t end = rte_get_tsc_cycles() + rte_get_tsc_hz() * 3 / 2;
  while (rte_get_tsc_cycles() < end && p.hub.drops(Drop::kUnresolved) == 0) p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.drops(Drop::kUnresolved), 1u) << "given up after the hold time";
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, TooBigWithDfGetsFragmentationNeededWithTheTunnelMtu) {
  Pair p;
  const std::string big(1500 - 20 - 8, 'b');
  inject(p.edge.lan_in, from_a(udp(1, 2, big), {.df = true}));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.edge.drops(Drop::kTooBig), 1u);
  EXPECT_FALSE(take(p.edge.up_out));
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[34], 3);
  EXPECT_EQ((*r)[35], 4);
  EXPECT_EQ(get16(*r, 40), dp::tunnel_max_inner(1500)) << "next-hop MTU leaves room for ESP and the overlay";
  EXPECT_EQ(dp::tunnel_max_inner(1500), 1422u);
  // The largest packet that fits goes through.
  inject(p.edge.lan_in, from_a(udp(1, 2, std::string(dp::tunnel_max_inner(1500) - 28, 'c')), {.df = true}));
  p.edge.worker->poll_once();
  auto o = take(p.edge.up_out);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->size(), 14u + 1500u);
}

TEST(Worker, TcpSynMssIsClampedToFitTheTunnel) {
  Pair p;
  inject(p.edge.lan_in, from_a(tcp_syn(ip("192.168.10.2"), ip("192.168.20.2"), 40000, 80, 1460), {.proto = 6}));
  p.edge.worker->poll_once();
  p.hub.worker->poll_once();
  auto o = take(p.hub.lan_out);
  ASSERT_TRUE(o) << "through the tunnel to lan-b";
  const size_t tcp = 14 + 20;
  EXPECT_EQ(get16(*o, tcp + 22), dp::tunnel_max_inner(1500) - 40);
  EXPECT_EQ(p.edge.worker->counters().mss_clamped.load(), 1u);
  // The TCP checksum still verifies over the pseudo header.
  Bytes seg(o->begin() + static_cast<long>(tcp), o->end());
  Bytes ph(12 + seg.size());
  std::memcpy(ph.data(), o->data() + tcp - 8, 8);
  ph[9] = 6;
  put16(ph, 10, static_cast<uint16_t>(seg.size()));
  std::memcpy(ph.data() + 12, seg.data(), seg.size());
  EXPECT_EQ(dp::inet_checksum(ph.data(), ph.size()), 0);
}

TEST(Worker, APathThatGoesDownInANewSnapshotStopsCarryingTraffic) {
  Pair p;
  inject(p.edge.lan_in, from_a(udp(1, 2, "a")));
  p.edge.worker->poll_once();
  ASSERT_TRUE(take(p.edge.up_out));
  p.edge.live[1].link_up = false;
  p.edge.publish();
  inject(p.edge.lan_in, from_a(udp(1, 2, "b")));
  p.edge.worker->poll_once();
  EXPECT_FALSE(take(p.edge.up_out)) << "never sent on a path that is down, even for a known flow";
  EXPECT_EQ(p.edge.drops(Drop::kNoPath), 1u);
}

// Under load a poll reads a queue again while its bursts come full, up to 128 packets, so the
// poll's fixed work is shared; then it ends, so its timestamp (probe times) stays fresh.
TEST(Worker, APollTakesFullBurstsUpToItsBudgetAndNoMore) {
  Pair p;
  for (int i = 0; i < 100; ++i) inject(p.edge.lan_in, from_a(udp(1, 2, "x")));
  EXPECT_EQ(p.edge.worker->poll_once(), 100u) << "32 + 32 + 32 + 4: every full burst read again";
  for (int i = 0; i < 300; ++i) inject(p.edge.lan_in, from_a(udp(1, 2, "y")));
  EXPECT_EQ(p.edge.worker->poll_once(), 128u) << "the budget";
  EXPECT_EQ(rte_ring_count(p.edge.lan_in), 172u);
  uint32_t moved = 0;
  for (int i = 0; i < 4 && moved < 172; ++i) moved += p.edge.worker->poll_once();
  EXPECT_EQ(moved, 172u);
  int sent = 0;
  while (take(p.edge.up_out)) ++sent;
  EXPECT_EQ(sent, 400) << "every packet encrypted and sent";
}

// Loaded queues share the budget equally: a poll reads them in rounds, a burst from each, so a
// queue read later in the poll is not starved by the first (with four uplinks, that reordered
// the paths' traffic beyond the de-duplication window).
TEST(Worker, EveryLoadedQueueGetsTheSameBudgetInAPoll) {
  Pair p;
  for (int i = 0; i < 300; ++i) inject(p.edge.lan_in, from_a(udp(1, 2, "x")));
  const Bytes stray = eth_ipv4(p.edge.up_mac(), kIspE, ip("10.1.1.2"), ip("10.1.0.99"), udp(1, 2, "z"));
  for (int i = 0; i < 300; ++i) inject(p.edge.up_in, stray);
  EXPECT_EQ(p.edge.worker->poll_once(), 128u) << "two rounds of a burst from each queue";
  EXPECT_EQ(rte_ring_count(p.edge.lan_in), 236u);
  EXPECT_EQ(rte_ring_count(p.edge.up_in), 236u) << "the uplink, read second, had the same share";
  EXPECT_EQ(p.edge.drops(Drop::kNotForUs), 64u);
}

// An established flow skips the route lookup while its decision is from the snapshot in use
// (lan_fast): a new snapshot whose routes no longer reach the peer must still stop it.
TEST(Worker, AnEstablishedFlowFollowsARouteChangeInTheNextSnapshot) {
  Pair p;
  for (const char* payload : {"a", "b"}) {
    inject(p.edge.lan_in, from_a(udp(1, 2, payload)));
    p.edge.worker->poll_once();
    ASSERT_TRUE(take(p.edge.up_out)) << payload;
  }
  cp::Config cfg = p.edge.cfg;
  cfg.peers[0].prefixes.clear();
  p.edge.routes = *cp::build_routes(cfg, 0);
  p.edge.publish();
  inject(p.edge.lan_in, from_a(udp(1, 2, "c")));
  p.edge.worker->poll_once();
  EXPECT_FALSE(take(p.edge.up_out)) << "the flow's old path is not its route any more";
  EXPECT_EQ(p.edge.drops(Drop::kNoRoute), 1u);
  auto r = take(p.edge.lan_out);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[34], 3) << "destination unreachable";
}

TEST(Worker, ProbesAreSentInTheSaReflectedAtOnceAndReportedWithFourTimestamps) {
  Pair p;
  p.edge.topo.probe_interval_ms = 5;
  p.edge.publish();
  // The first poll schedules path 0's probe, a later one sends it.
  std::optional<Bytes> probe;
  const uint64_t give_up = rte_get_tsc_cycles() + rte_get_tsc_hz();
  while (!probe && rte_get_tsc_cycles() < give_up) {
    p.edge.worker->poll_once();
    probe = take(p.edge.up_out);
  }
  ASSERT_TRUE(probe) << "a probe within one second";
  EXPECT_EQ(get32(*probe, 42), kSpiEdgeToHub) << "in the path's own SA";
  auto plain = open_edge_to_hub(*probe);
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->size(), sizeof(dp::OverlayHdr) + dp::kProbeLen);
  EXPECT_EQ((*plain)[0], dp::kOverlayVersion << 4 | 1) << "overlay type probe";
  EXPECT_EQ(get32(*plain, 16), 0u) << "STAMP sequence number from 0";
  EXPECT_EQ(get16(*plain, 16 + 12), dp::kStampErrEst);
  EXPECT_EQ(p.edge.worker->path_counters()[0].probes_sent.load(), 1u);

  inject(p.hub.up_in, *probe);
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->path_counters()[0].probes_reflected.load(), 1u);
  auto back = take(p.hub.up_out);
  ASSERT_TRUE(back) << "reflected at once, by the worker";
  EXPECT_EQ(get32(*back, 42), kSpiHubToEdge);
  EXPECT_FALSE(take(p.hub.lan_out)) << "a probe is not data";

  inject(p.edge.up_in, *back);
  p.edge.worker->poll_once();
  dp::ProbeReport r{};
  ASSERT_EQ(rte_ring_dequeue_elem(p.edge.ch.to_control_probes, &r, sizeof r), 0);
  EXPECT_EQ(r.path, 0);
  EXPECT_EQ(r.seq, 0u);
  EXPECT_LE(r.t1_ns, r.t4_ns);
  EXPECT_LE(r.t2_ns, r.t3_ns);
  const int64_t rtt = int64_t(r.t4_ns - r.t1_ns) - int64_t(r.t3_ns - r.t2_ns);
  EXPECT_GE(rtt, 0);
  EXPECT_LT(rtt, int64_t{1000000000});
  EXPECT_EQ(r.refl_probes_rx, 1u);
  EXPECT_EQ(r.refl_spi, kSpiEdgeToHub);
  EXPECT_EQ(r.refl_esp_rx, 1u) << "the probe itself, verified";
  EXPECT_EQ(r.refl_esp_top, 1u);
  EXPECT_EQ(p.edge.worker->path_counters()[0].probes_received.load(), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(Worker, APathMeasuredDownCarriesProbesButNoData) {
  Pair p;
  p.edge.topo.probe_interval_ms = 5;
  p.edge.publish();
  auto s = cp::build_snapshot(p.edge.topo, p.edge.live, *p.edge.nm, p.edge.routes, ++p.edge.gen, p.edge.sas);
  s->paths[0].up = false;
  p.edge.pub.publish(std::move(s));
  inject(p.edge.lan_in, from_a(udp(1, 2, "data")));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.edge.drops(Drop::kNoPath), 1u);
  uint64_t probes = 0;
  const uint64_t give_up = rte_get_tsc_cycles() + rte_get_tsc_hz();
  while (probes == 0 && rte_get_tsc_cycles() < give_up) {
    p.edge.worker->poll_once();
    probes = p.edge.worker->path_counters()[0].probes_sent.load();
  }
  EXPECT_EQ(probes, 1u) << "probes keep testing a path that is down";
  while (take(p.edge.up_out)) {
  }
}

// An edge and a hub joined by two uplinks (isp1: path 0, isp2: path 1), as a class needs.
struct Rings2 {
  rte_ring* e2h1 = ring("e2h1");
  rte_ring* h2e1 = ring("h2e1");
  rte_ring* e2h2 = ring("e2h2");
  rte_ring* h2e2 = ring("h2e2");
  ~Rings2() {
    for (rte_ring* r : {e2h1, h2e1, e2h2, h2e2}) rte_ring_free(r);
  }
};
struct Pair2 {
  Rings2 wire;
  Node edge{true, wire.h2e1, wire.e2h1, wire.h2e2, wire.e2h2};
  Node hub;
  explicit Pair2(uint16_t hub_workers = 1) : hub(false, wire.e2h1, wire.h2e1, wire.e2h2, wire.h2e2, hub_workers) {
    edge.learn(1, ip("10.1.0.1"), kIspE);
    edge.learn(2, ip("10.2.0.1"), kIspE);
    edge.learn(0, ip("192.168.10.2"), kHostA);
    hub.learn(1, ip("10.1.1.1"), kIspH);
    hub.learn(2, ip("10.2.1.1"), kIspH);
    hub.learn(0, ip("192.168.20.2"), kHostB);
    edge.install_path_sas({{0x5d000010, 0x11, 0x5d000011, 0x22}, {0x5d000020, 0x33, 0x5d000021, 0x44}});
    hub.install_path_sas({{0x5d000011, 0x22, 0x5d000010, 0x11}, {0x5d000021, 0x44, 0x5d000020, 0x33}});
  }
  // A policy of one class per entry of modes (class 0 the default) towards the single peer.
  void set_policy(std::vector<dp::ClassPaths> per_class, std::vector<dp::ClassRule> rules) {
    auto pol = std::make_shared<dp::Policy>();
    pol->rules = std::move(rules);
    pol->n_classes = static_cast<uint8_t>(per_class.size());
    pol->n_peers = 1;
    pol->paths = std::move(per_class);
    edge.policy = pol;
    edge.publish();
  }
  size_t count(rte_ring* r) {
    size_t n = 0;
    while (take(r)) ++n;
    return n;
  }
};

dp::ClassRule udp_dport(uint16_t port, uint8_t cls) {
  dp::ClassRule r;
  r.proto = 17;
  r.dport_lo = r.dport_hi = port;
  r.cls = cls;
  return r;
}
dp::ClassPaths best(uint16_t path) {
  dp::ClassPaths c;
  c.primary = path;
  return c;
}

TEST(WorkerClasses, AFlowIsClassifiedOnItsFirstPacketAndTakesItsClassPath) {
  Pair2 p;
  p.set_policy({best(0), best(1)}, {udp_dport(5004, 1)});
  inject(p.edge.lan_in, from_a(udp(7000, 5004, "voice")));
  inject(p.edge.lan_in, from_a(udp(7000, 80, "bulk")));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.count(p.edge.up2_out), 1u) << "voice (class 1) on its best path, isp2";
  EXPECT_EQ(p.count(p.edge.up_out), 1u) << "the rest (default class 0) on isp1";
  EXPECT_EQ(p.edge.worker->counters().class_pkts[1].load(), 1u);
  EXPECT_EQ(p.edge.worker->counters().class_pkts[0].load(), 1u);
  // A new policy moves the class with the next snapshot; the flow keeps its class.
  p.set_policy({best(0), best(0)}, {});
  inject(p.edge.lan_in, from_a(udp(7000, 5004, "voice")));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.count(p.edge.up_out), 1u);
  EXPECT_EQ(p.edge.worker->counters().class_pkts[1].load(), 2u) << "classified once, on the first packet";
}

TEST(WorkerClasses, BalanceSpreadsFlowsByTheTableAndEachFlowSticks) {
  Pair2 p;
  dp::ClassPaths bal;
  bal.mode = dp::ClassMode::kBalance;
  bal.lut = {0, 1, 0, 1, 0, 1, 1};  // 7 entries: 3 to path 0, 4 to path 1
  p.set_policy({bal}, {});
  for (int round = 0; round < 2; ++round) {
    for (uint16_t f = 0; f < 64; ++f) inject(p.edge.lan_in, from_a(udp(static_cast<uint16_t>(10000 + f), 9, "x")));
    p.edge.worker->poll_once();
    p.edge.worker->poll_once();
  }
  const uint64_t a = p.edge.worker->path_counters()[0].tx_pkts.load(), b = p.edge.worker->path_counters()[1].tx_pkts.load();
  EXPECT_EQ(a + b, 128u);
  EXPECT_GT(a, 20u);
  EXPECT_GT(b, 20u);
  EXPECT_EQ(a % 2, 0u) << "each flow's two packets took one path";
  // The second round went by lan_fast, which counts a packet's path in the path's encrypt queue,
  // added to the path's counters when the queue is sealed (by the end of the poll).
  EXPECT_EQ(p.edge.worker->counters().encapsulated.load(), 128u);
  EXPECT_EQ(p.edge.worker->counters().class_pkts[0].load(), 128u);
  EXPECT_EQ(p.edge.worker->counters().class_bytes[0].load(), 128u * (20 + 8 + 1));
  EXPECT_EQ(p.edge.worker->path_counters()[0].tx_bytes.load() + p.edge.worker->path_counters()[1].tx_bytes.load(),
            128u * (20 + 8 + 1));
  EXPECT_EQ(p.edge.flows_created(), 64u);
  // Control's view of them: a dump the worker writes a few buckets per poll.
  std::vector<dp::FlowRecord> recs(100);
  ASSERT_TRUE(p.edge.worker->request_flow_dump(recs.data(), 100));
  uint32_t n = 0;
  for (int i = 0; i < 10000 && !p.edge.worker->flow_dump_done(&n); ++i) p.edge.worker->poll_once();
  ASSERT_TRUE(p.edge.worker->flow_dump_done(&n));
  ASSERT_EQ(n, 64u);
  uint64_t on0 = 0;
  for (uint32_t i = 0; i < n; ++i) {
    EXPECT_EQ(recs[i].pkts, 2u);
    EXPECT_EQ(recs[i].proto, 17);
    EXPECT_EQ(recs[i].dport, 9);
    EXPECT_EQ(recs[i].cls, 0);
    on0 += recs[i].path == 0 ? recs[i].pkts : 0;
  }
  EXPECT_EQ(on0, a) << "the dump's paths match the path counters";
}

TEST(WorkerClasses, SprayAlternatesPacketsOverTheTable) {
  Pair2 p;
  dp::ClassPaths sp;
  sp.mode = dp::ClassMode::kSpray;
  sp.lut = {0, 1};
  p.set_policy({sp}, {});
  for (int i = 0; i < 10; ++i) inject(p.edge.lan_in, from_a(udp(1, 2, "s")));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.count(p.edge.up_out), 5u);
  EXPECT_EQ(p.count(p.edge.up2_out), 5u);
}

// The payloads lan-b got, in order.
std::vector<std::string> lan_payloads(rte_ring* r) {
  std::vector<std::string> got;
  while (auto b = take(r)) got.emplace_back(b->end() - 2, b->end());
  return got;
}

TEST(WorkerClasses, SprayedPacketsAreDeliveredInOrderWhateverPathTheyTook) {
  Pair2 p;
  dp::ClassPaths sp;
  sp.mode = dp::ClassMode::kSpray;
  sp.lut = {0, 1};
  p.set_policy({sp}, {});
  std::vector<std::string> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back("p" + std::to_string(i));
    inject(p.edge.lan_in, from_a(udp(1, 2, sent.back())));
  }
  p.edge.worker->poll_once();
  // isp2's packets (1, 3, 5...) overtake isp1's: the hub holds them until their turn.
  rte_ring* fast = p.wire.e2h2;
  rte_ring* slow = p.wire.e2h1;
  std::vector<Bytes> held_back;
  while (auto b = take(slow)) held_back.push_back(*b);
  p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->counters().reorder_held.load(), 5u) << "all of isp2's arrived ahead of their turn";
  EXPECT_TRUE(lan_payloads(p.hub.lan_out).empty());
  for (const Bytes& b : held_back) inject(slow, b);
  p.hub.worker->poll_once();
  EXPECT_EQ(lan_payloads(p.hub.lan_out), sent) << "in the order lan-a sent them";
  EXPECT_EQ(p.hub.worker->counters().reorder_late.load(), 0u);
  (void)fast;
}

// Two paths 20 ms apart at 60,000 packets/s put hundreds of packets ahead of the slow path's
// next one; a TCP flow over them must still see them in order (the lab's spray test). Here
// the slow path's 300 packets arrive after all 300 of the fast one.
TEST(WorkerClasses, HundredsOfPacketsAheadWaitForTheSlowPathInOrder) {
  Pair2 p;
  dp::ClassPaths sp;
  sp.mode = dp::ClassMode::kSpray;
  sp.lut = {0, 1};
  p.set_policy({sp}, {});
  // The hub's own policy gives the hold: a second, so a slow test machine cannot time it out.
  auto hub_pol = std::make_shared<dp::Policy>();
  hub_pol->n_classes = 1;
  hub_pol->n_peers = 1;
  hub_pol->paths = {sp};
  hub_pol->paths[0].reorder_hold_us = 1'000'000;
  p.hub.policy = hub_pol;
  p.hub.publish();
  constexpr int kN = 600;
  std::vector<std::string> sent;  // "000" .. "599": the payload's last three bytes name the packet
  for (int i = 0; i < kN; ++i) sent.push_back(std::string(1, char('0' + i / 100)) + char('0' + i / 10 % 10) + char('0' + i % 10));
  for (int i = 0; i < kN; ++i) {
    inject(p.edge.lan_in, from_a(udp(1, 2, sent[size_t(i)])));
    if (i % 32 == 31) p.edge.worker->poll_once();
  }
  while (rte_ring_count(p.edge.lan_in) != 0) p.edge.worker->poll_once();
  std::vector<Bytes> slow;
  while (auto b = take(p.wire.e2h1)) slow.push_back(*b);
  ASSERT_EQ(slow.size(), size_t{kN / 2});
  while (rte_ring_count(p.wire.e2h2) != 0) p.hub.worker->poll_once();
  EXPECT_EQ(p.hub.worker->counters().reorder_held.load(), uint64_t{kN / 2}) << "every fast packet waits";
  EXPECT_EQ(rte_ring_count(p.hub.lan_out), 0u);
  for (const Bytes& b : slow) inject(p.wire.e2h1, b);
  std::vector<std::string> got;
  while (rte_ring_count(p.wire.e2h1) != 0) {
    p.hub.worker->poll_once();
    while (auto b = take(p.hub.lan_out)) got.emplace_back(b->end() - 3, b->end());
  }
  EXPECT_EQ(got, sent) << "in the order lan-a sent them";
  EXPECT_EQ(p.hub.worker->counters().reorder_late.load(), 0u);
  EXPECT_EQ(p.hub.worker->counters().reorder_skipped.load(), 0u);
  EXPECT_EQ(p.hub.worker->counters().reorder_timeouts.load(), 0u);
}

TEST(WorkerClasses, ASprayGapIsGivenUpAfterTheHoldTime) {
  Pair2 p;
  dp::ClassPaths sp;
  sp.mode = dp::ClassMode::kSpray;
  sp.lut = {0, 1};
  p.set_policy({sp}, {});
  for (const char* s : {"p0", "p1", "p2", "p3"}) inject(p.edge.lan_in, from_a(udp(1, 2, s)));
  p.edge.worker->poll_once();
  // p0 (isp1) is lost: p1..p3 wait, then go after the hold time (the hub has no class for it:
  // the default 50 ms).
  auto lost = take(p.wire.e2h1);
  ASSERT_TRUE(lost);
  p.hub.worker->poll_once();
  EXPECT_TRUE(lan_payloads(p.hub.lan_out).empty());
  const uint64_t t0 = rte_get_tsc_cycles();
  std::vector<std::string> got;
  while (got.empty() && rte_get_tsc_cycles() - t0 < rte_get_tsc_hz()) {
    p.hub.worker->poll_once();
    got = lan_payloads(p.hub.lan_out);
  }
  const double waited_ms = double(rte_get_tsc_cycles() - t0) * 1e3 / double(rte_get_tsc_hz());
  EXPECT_EQ(got, (std::vector<std::string>{"p1", "p2", "p3"}));
  EXPECT_GE(waited_ms, 45.0);
  EXPECT_LT(waited_ms, 500.0);
  EXPECT_EQ(p.hub.worker->counters().reorder_timeouts.load(), 1u);
  EXPECT_EQ(p.hub.worker->counters().reorder_skipped.load(), 1u);
  // The lost one turning up now is late: delivered, counted.
  inject(p.wire.e2h1, *lost);
  p.hub.worker->poll_once();
  EXPECT_EQ(lan_payloads(p.hub.lan_out), (std::vector<std::string>{"p0"}));
  EXPECT_EQ(p.hub.worker->counters().reorder_late.load(), 1u);
}

TEST(WorkerClasses, DuplicateSendsTwoCopiesAndTheReceiverDeliversOne) {
  Pair2 p;
  dp::ClassPaths dup;
  dup.mode = dp::ClassMode::kDuplicate;
  dup.primary = 0;
  dup.secondary = 1;
  p.set_policy({best(0), dup}, {udp_dport(5005, 1)});
  for (int i = 0; i < 3; ++i) inject(p.edge.lan_in, from_a(udp(7001, 5005, "critical")));
  p.edge.worker->poll_once();
  EXPECT_EQ(rte_ring_count(p.wire.e2h1), 3u);
  EXPECT_EQ(rte_ring_count(p.wire.e2h2), 3u) << "a copy of each on the other uplink";
  EXPECT_EQ(p.edge.worker->counters().dup_sent(), 3u);
  // The hub gets both copies of each and delivers each packet once.
  p.hub.worker->poll_once();
  EXPECT_EQ(p.count(p.hub.lan_out), 3u);
  EXPECT_EQ(p.hub.drops(Drop::kDuplicate), 3u);
  // Only isp2 left: its copies still arrive alone, and nothing is lost.
  dup.duplicating = false;
  p.set_policy({best(0), dup}, {udp_dport(5005, 1)});
  inject(p.edge.lan_in, from_a(udp(7001, 5005, "critical")));
  p.edge.worker->poll_once();
  EXPECT_EQ(rte_ring_count(p.wire.e2h2), 0u) << "not duplicating: no copy";
  p.hub.worker->poll_once();
  EXPECT_EQ(p.count(p.hub.lan_out), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

// A hub of two workers where each path's SA is decrypted by a different worker (worker 0: isp1,
// worker 1: isp2). The (peer, stream) of the edge's packets belongs to one of them: the other
// hands its packets over, so de-duplication and reordering see every packet of the sequence.
struct TwoWorkerHub : Pair2 {
  TwoWorkerHub() : Pair2(2) {}
  // Polls the hub's workers, `first` before the other, until nothing moves.
  void drain_hub(int first) {
    dp::Worker* w[2] = {hub.worker.get(), hub.worker2.get()};
    for (int idle = 0; idle < 3;) {
      const uint32_t moved = w[first]->poll_once() + w[1 - first]->poll_once();
      idle = moved == 0 && rte_ring_count(wire.e2h1) == 0 && rte_ring_count(wire.e2h2) == 0 ? idle + 1 : 0;
    }
  }
  // Sends n packets from lan-a to dport, payloads "000", "001"... in bursts of 32.
  std::vector<std::string> send(int n, uint16_t dport) {
    std::vector<std::string> sent;
    for (int i = 0; i < n; ++i) {
      sent.push_back(fmt::format("{:03}", i));
      inject(edge.lan_in, from_a(udp(7001, dport, sent.back())));
      if (i % 32 == 31) edge.worker->poll_once();
    }
    while (rte_ring_count(edge.lan_in) != 0) edge.worker->poll_once();
    return sent;
  }
  std::vector<std::string> lan_b() {
    std::vector<std::string> got;
    while (auto b = take(hub.lan_out)) got.emplace_back(b->end() - 3, b->end());
    return got;
  }
};

TEST(WorkerHandoff, TwoCopiesDecryptedByTwoWorkersAreDeliveredOnce) {
  for (int first = 0; first < 2; ++first) {
    SCOPED_TRACE(fmt::format("hub worker {} polls first", first));
    TwoWorkerHub p;
    dp::ClassPaths dup;
    dup.mode = dp::ClassMode::kDuplicate;
    dup.primary = 0;
    dup.secondary = 1;
    p.set_policy({best(0), dup}, {udp_dport(5005, 1)});
    constexpr int kN = 200;
    const auto sent = p.send(kN, 5005);
    ASSERT_EQ(rte_ring_count(p.wire.e2h1), size_t{kN});
    ASSERT_EQ(rte_ring_count(p.wire.e2h2), size_t{kN}) << "a copy of each on the other uplink";
    p.drain_hub(first);
    EXPECT_EQ(p.hub.worker->esp_counters().dec_pkts.load(), uint64_t{kN}) << "worker 0 decrypted isp1's copies";
    EXPECT_EQ(p.hub.worker2->esp_counters().dec_pkts.load(), uint64_t{kN}) << "worker 1 decrypted isp2's copies";
    auto got = p.lan_b();
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, sent) << "every sequence number delivered exactly once";
    EXPECT_EQ(p.hub.drops(Drop::kDuplicate), uint64_t{kN});
    EXPECT_EQ(p.hub.sum([](const dp::WorkerCounters& c) { return c.handoff_out.load(); }), uint64_t{kN})
        << "the worker that does not own the stream hands its copies over";
    EXPECT_EQ(p.hub.sum([](const dp::WorkerCounters& c) { return c.handoff_in.load(); }), uint64_t{kN});
    EXPECT_EQ(p.hub.drops(Drop::kHandoffFull), 0u);
  }
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(WorkerHandoff, EveryOrderedPairOfWorkersHasItsOwnRing) {
  auto one = dp::HandoffRings::create(1, 0);
  ASSERT_NE(one, nullptr);
  dp::WorkerChannels c1;
  one->attach(0, c1);
  EXPECT_EQ(c1.handoff_to[0], nullptr) << "one worker hands nothing over";
  EXPECT_EQ(c1.handoff_from[0], nullptr);
  auto three = dp::HandoffRings::create(3, 0);
  ASSERT_NE(three, nullptr);
  std::array<dp::WorkerChannels, 3> ch;
  for (uint16_t w = 0; w < 3; ++w) three->attach(w, ch[w]);
  std::set<rte_ring*> rings;
  for (uint16_t a = 0; a < 3; ++a)
    for (uint16_t b = 0; b < 3; ++b) {
      EXPECT_EQ(ch[a].handoff_to[b], ch[b].handoff_from[a]) << a << " -> " << b;
      if (a == b) {
        EXPECT_EQ(ch[a].handoff_to[b], nullptr);
        continue;
      }
      ASSERT_NE(ch[a].handoff_to[b], nullptr);
      rings.insert(ch[a].handoff_to[b]);
    }
  EXPECT_EQ(rings.size(), 6u);
  EXPECT_EQ(ch[0].handoff_to[3], nullptr);
  // What 2 puts in its ring to 1 comes out at 1 from 2, and nowhere else. Packets left in the
  // rings are freed with them.
  dp::Handoff h{};
  h.m = rte_pktmbuf_alloc(pool());
  ASSERT_NE(h.m, nullptr);
  h.seq = 42;
  ASSERT_EQ(rte_ring_sp_enqueue_elem(ch[2].handoff_to[1], &h, sizeof h), 0);
  for (rte_ring* r : rings) EXPECT_EQ(rte_ring_count(r), r == ch[1].handoff_from[2] ? 1u : 0u);
  three.reset();
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

// The owner not polling while the other worker hands over more than a ring holds: the rest is
// dropped and counted, never lost silently (nor delivered twice).
TEST(WorkerHandoff, AFullRingDropsAndCountsWhatDoesNotFit) {
  TwoWorkerHub p;
  dp::ClassPaths dup;
  dup.mode = dp::ClassMode::kDuplicate;
  dup.primary = 0;
  dup.secondary = 1;
  p.set_policy({best(0), dup}, {udp_dport(5005, 1)});
  constexpr int kN = 600;
  const auto sent = p.send(kN, 5005);
  // Each worker alone empties its uplink: one of them owns the stream and keeps its copies, the
  // other hands all of its copies to it, which is not polling meanwhile.
  while (rte_ring_count(p.wire.e2h1) != 0) p.hub.worker->poll_once();
  while (rte_ring_count(p.wire.e2h2) != 0) p.hub.worker2->poll_once();
  const uint64_t full = p.hub.drops(Drop::kHandoffFull);
  constexpr uint64_t kHolds = dp::HandoffRings::kRingSize - 1;
  EXPECT_EQ(full, kN - kHolds);
  EXPECT_EQ(p.hub.sum([](const dp::WorkerCounters& c) { return c.handoff_out.load(); }), kHolds);
  p.drain_hub(0);
  auto got = p.lan_b();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, sent) << "each packet once: the owner's own copies";
  EXPECT_EQ(p.hub.drops(Drop::kDuplicate), kHolds);
}

TEST(WorkerHandoff, SprayedPacketsSplitOverTwoWorkersComeOutInOrder) {
  for (int first = 0; first < 2; ++first) {
    SCOPED_TRACE(fmt::format("hub worker {} polls first (its path is the fast one)", first));
    TwoWorkerHub p;
    dp::ClassPaths sp;
    sp.mode = dp::ClassMode::kSpray;
    sp.lut = {0, 1};
    p.set_policy({sp}, {});
    // A hold of a second, so a slow test machine cannot time a gap out.
    auto hub_pol = std::make_shared<dp::Policy>();
    hub_pol->n_classes = 1;
    hub_pol->n_peers = 1;
    hub_pol->paths = {sp};
    hub_pol->paths[0].reorder_hold_us = 1'000'000;
    p.hub.policy = hub_pol;
    p.hub.publish();
    constexpr int kN = 300;
    const auto sent = p.send(kN, 9);
    ASSERT_EQ(rte_ring_count(p.wire.e2h1), size_t{kN / 2});
    ASSERT_EQ(rte_ring_count(p.wire.e2h2), size_t{kN / 2});
    // The first-polled worker's path is ahead: all its packets arrive before any of the other's.
    // Spray sequence numbers count from 1 and alternate: isp1 carries 1, 3, 5..., isp2 2, 4, 6...
    rte_ring* slow = first == 0 ? p.wire.e2h2 : p.wire.e2h1;
    std::vector<Bytes> held_back;
    while (auto b = take(slow)) held_back.push_back(*b);
    p.drain_hub(first);
    auto got = p.lan_b();
    EXPECT_EQ(got, first == 0 ? std::vector<std::string>{"000"} : std::vector<std::string>{})
        << "the fast path's packets after the first wait for the slow one's";
    for (const Bytes& b : held_back) inject(slow, b);
    p.drain_hub(first);
    for (auto& x : p.lan_b()) got.push_back(x);
    EXPECT_EQ(got, sent) << "in the order lan-a sent them, across the two workers";
    auto sum = [&](dp::Counter dp::WorkerCounters::*c) {
      return p.hub.sum([c](const dp::WorkerCounters& w) { return (w.*c).load(); });
    };
    EXPECT_EQ(sum(&dp::WorkerCounters::reorder_held), static_cast<uint64_t>(kN / 2 - (first == 0 ? 1 : 0)));
    EXPECT_EQ(sum(&dp::WorkerCounters::reorder_late), 0u);
    EXPECT_EQ(sum(&dp::WorkerCounters::reorder_skipped), 0u);
    EXPECT_EQ(sum(&dp::WorkerCounters::reorder_timeouts), 0u);
    EXPECT_EQ(sum(&dp::WorkerCounters::handoff_out), uint64_t{kN / 2}) << "one worker's half went to the other";
    EXPECT_EQ(p.hub.drops(Drop::kHandoffFull), 0u);
  }
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

// Failover drills (issue 7): the worker drops what a drilled path sends and receives, and
// counts a LAN packet lost only when no copy of it went out on an undrilled path.
TEST(WorkerDrills, ABlackedOutPathSendsAndReceivesNothingAndCountsLossPerClass) {
  Pair2 p;
  dp::ClassPaths dup;
  dup.mode = dp::ClassMode::kDuplicate;
  dup.primary = 0;
  dup.secondary = 1;
  p.set_policy({best(0), dup}, {udp_dport(5005, 1)});
  p.edge.measured.assign(2, cp::PathMeasured{});
  p.edge.measured[0].drill_drop_ppm = 1000000;  // isp1 blacked out
  p.edge.publish();
  for (int i = 0; i < 5; ++i) inject(p.edge.lan_in, from_a(udp(7000, 80, "bulk")));
  for (int i = 0; i < 4; ++i) inject(p.edge.lan_in, from_a(udp(7001, 5005, "critical")));
  p.edge.worker->poll_once();
  const auto& c = p.edge.worker->counters();
  EXPECT_EQ(rte_ring_count(p.wire.e2h1), 0u) << "nothing leaves the blacked-out uplink";
  EXPECT_EQ(p.count(p.wire.e2h2), 4u) << "the critical copies on isp2 still go";
  EXPECT_EQ(c.drill_tx_dropped.load(), 9u);
  EXPECT_EQ(c.drill_lost[0].load(), 5u) << "bulk had no copy: lost";
  EXPECT_EQ(c.drill_lost[1].load(), 0u) << "critical's copies made it: nothing lost";
  // Receive side: the hub's packets on isp1 are dropped after decryption, counted by class.
  inject(p.hub.lan_in, eth_ipv4(p.hub.lan_mac(), kHostB, ip("192.168.20.2"), ip("192.168.10.2"), udp(80, 7000, "reply")));
  p.hub.worker->poll_once();
  ASSERT_EQ(rte_ring_count(p.wire.h2e1), 1u);
  p.edge.worker->poll_once();
  EXPECT_EQ(p.count(p.edge.lan_out), 0u);
  EXPECT_EQ(c.drill_rx_dropped.load(), 1u);
  EXPECT_EQ(c.drill_rx_class[0].load(), 1u);
  // The drill ends: traffic flows again.
  p.edge.measured[0].drill_drop_ppm = 0;
  p.edge.publish();
  inject(p.edge.lan_in, from_a(udp(7000, 80, "bulk")));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.count(p.wire.e2h1), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(WorkerDrills, PartialLossDropsAboutItsShare) {
  Pair2 p;
  p.set_policy({best(0)}, {});
  p.edge.measured.assign(2, cp::PathMeasured{});
  p.edge.measured[0].drill_drop_ppm = 200000;  // 20 %
  p.edge.publish();
  constexpr int kN = 5000;
  size_t sent = 0;
  for (int i = 0; i < kN; i += 20) {
    for (int j = 0; j < 20; ++j) inject(p.edge.lan_in, from_a(udp(7000, 80, "x")));
    p.edge.worker->poll_once();
    sent += p.count(p.wire.e2h1);
  }
  const double lost = 1.0 - static_cast<double>(sent) / kN;
  EXPECT_NEAR(lost, 0.20, 0.03) << sent << " of " << kN << " sent";
  EXPECT_EQ(p.edge.worker->counters().drill_lost[0].load(), static_cast<uint64_t>(kN) - sent);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

}  // namespace
}  // namespace sdwan::test

namespace sdwan::test {
namespace {

// The host port (docs/host.md): an edge whose kernel reaches the LAN and the overlay through it.
struct HostPair {
  Rings wire;
  Node edge{true, wire.h2e, wire.e2h, nullptr, nullptr, 1, true};
  Node hub{false, wire.e2h, wire.h2e};
  HostPair() {
    edge.learn(1, ip("10.1.0.1"), kIspE);
    edge.learn(0, ip("192.168.10.2"), kHostA);
    hub.learn(1, ip("10.1.1.1"), kIspH);
    hub.learn(0, ip("192.168.20.2"), kHostB);
    edge.install_sas(kSpiEdgeToHub, 0x11, kSpiHubToEdge, 0x22);
    hub.install_sas(kSpiHubToEdge, 0x22, kSpiEdgeToHub, 0x11);
  }
  uint64_t to_host() const { return edge.worker->counters().to_host.load(); }
};

Bytes tcp_to(MacAddr dst_mac, MacAddr src_mac, const char* src, const char* dst, uint16_t dport) {
  return eth_ipv4(dst_mac, src_mac, ip(src), ip(dst), tcp_syn(ip(src), ip(dst), 40000, dport, 1460), {.proto = 6});
}

TEST(WorkerHost, TheHostPortIsNoUplinkAndHasNoPath) {
  HostPair p;
  auto s = cp::build_snapshot(p.edge.topo, p.edge.live, *p.edge.nm, p.edge.routes, 1);
  ASSERT_EQ(s->ports.size(), 3u);
  EXPECT_EQ(s->host_port, 2);
  EXPECT_EQ(s->ports[2].role, dp::PortRole::kHost);
  EXPECT_EQ(s->ports[2].addr, ip("192.168.10.1"));
  EXPECT_EQ(s->ports[2].host_mac, kKernelMac);
  for (const auto& path : s->paths) EXPECT_EQ(path.port, 1);
}

TEST(WorkerHost, ForTheLanAddressFromTheLanGoesToTheHostUnchanged) {
  HostPair p;
  const Bytes in = tcp_to(p.edge.lan_mac(), kHostA, "192.168.10.2", "192.168.10.1", 22);
  inject(p.edge.lan_in, in);
  // Pings are still the dataplane's to answer.
  inject(p.edge.lan_in, eth_ipv4(p.edge.lan_mac(), kHostA, ip("192.168.10.2"), ip("192.168.10.1"), icmp_echo(7, 1),
                                 {.proto = 1}));
  p.edge.worker->poll_once();
  auto h = take(p.edge.host_out);
  ASSERT_TRUE(h);
  const Bytes& b = *h;
  ASSERT_EQ(b.size(), in.size());
  EXPECT_EQ(0, std::memcmp(b.data(), kKernelMac.b.data(), 6)) << "to the kernel interface's MAC";
  EXPECT_EQ(0, std::memcmp(b.data() + 6, p.edge.live[p.edge.host_port].mac.b.data(), 6));
  EXPECT_EQ(0, std::memcmp(b.data() + 12, in.data() + 12, in.size() - 12)) << "local delivery: TTL and all untouched";
  EXPECT_FALSE(take(p.edge.host_out)) << "the echo request is not the host's";
  auto echo = take(p.edge.lan_out);
  ASSERT_TRUE(echo);
  EXPECT_EQ((*echo)[34], 0) << "echo reply from the dataplane";
  EXPECT_EQ(p.to_host(), 1u);
  EXPECT_EQ(p.edge.drops(Drop::kLocalUnhandled), 0u);
}

TEST(WorkerHost, TheHostsPacketsReachThePeerAsEspOnlyAndTheAnswerComesBack) {
  HostPair p;
  const std::string marker = "HOST-STACK-must-never-be-seen-on-the-wan";
  inject(p.edge.host_in, eth_ipv4(p.edge.live[p.edge.host_port].mac, kKernelMac, ip("192.168.10.1"),
                                  ip("192.168.20.2"), udp(5555, 8080, marker)));
  p.edge.worker->poll_once();
  auto w = take(p.edge.up_out);
  ASSERT_TRUE(w);
  EXPECT_FALSE(contains(*w, marker)) << "encrypted";
  EXPECT_EQ(get16(*w, 36), 4500);
  ASSERT_TRUE(open_edge_to_hub(*w)) << "ESP with the edge -> hub SA";
  EXPECT_FALSE(take(p.edge.up_out));
  EXPECT_FALSE(take(p.edge.lan_out));
  inject(p.hub.up_in, *w);
  p.hub.worker->poll_once();
  auto at_b = take(p.hub.lan_out);
  ASSERT_TRUE(at_b);
  EXPECT_EQ(get32(*at_b, 26), ip("192.168.10.1").v);
  EXPECT_TRUE(contains(*at_b, marker));
  // lan-b answers the edge's LAN address: through the overlay, decrypted, to the host port.
  inject(p.hub.lan_in, eth_ipv4(p.hub.lan_mac(), kHostB, ip("192.168.20.2"), ip("192.168.10.1"), udp(8080, 5555, "reply")));
  p.hub.worker->poll_once();
  p.edge.worker->poll_once();
  auto back = take(p.edge.host_out);
  ASSERT_TRUE(back);
  EXPECT_EQ(0, std::memcmp(back->data(), kKernelMac.b.data(), 6));
  EXPECT_EQ(get32(*back, 30), ip("192.168.10.1").v);
  EXPECT_TRUE(contains(*back, "reply"));
  EXPECT_EQ(p.to_host(), 1u);
  // And the host reaches the LAN too (replies to management sessions).
  inject(p.edge.host_in, eth_ipv4(p.edge.live[p.edge.host_port].mac, kKernelMac, ip("192.168.10.1"),
                                  ip("192.168.10.2"), udp(22, 40000, "ssh")));
  p.edge.worker->poll_once();
  auto to_a = take(p.edge.lan_out);
  ASSERT_TRUE(to_a);
  EXPECT_EQ(0, std::memcmp(to_a->data(), kHostA.b.data(), 6));
  EXPECT_FALSE(take(p.edge.up_out));
}

TEST(WorkerHost, CleartextFromAnUplinkNeverReachesTheHost) {
  HostPair p;
  // To the uplink's own address (what the uplink accepts besides ESP and pings).
  inject(p.edge.up_in, tcp_to(p.edge.up_mac(), kIspE, "10.1.0.1", "10.1.0.2", 22));
  // To the LAN address, through the uplink in the clear.
  inject(p.edge.up_in, tcp_to(p.edge.up_mac(), kIspE, "10.1.0.1", "192.168.10.1", 22));
  p.edge.worker->poll_once();
  EXPECT_FALSE(take(p.edge.host_out));
  EXPECT_FALSE(take(p.edge.lan_out));
  EXPECT_EQ(p.to_host(), 0u);
  EXPECT_EQ(p.edge.drops(Drop::kLocalUnhandled), 1u);
  EXPECT_EQ(p.edge.drops(Drop::kNotForUs), 1u);
  EXPECT_EQ(rte_mempool_in_use_count(pool()), 0u);
}

TEST(WorkerHost, WithoutAHostPortTheLanAddressStaysUnhandled) {
  Pair p;
  inject(p.edge.lan_in, tcp_to(p.edge.lan_mac(), kHostA, "192.168.10.2", "192.168.10.1", 22));
  p.edge.worker->poll_once();
  EXPECT_EQ(p.edge.drops(Drop::kLocalUnhandled), 1u);
  EXPECT_EQ(p.edge.worker->counters().to_host.load(), 0u);
}

}  // namespace
}  // namespace sdwan::test
