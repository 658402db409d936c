// bench_pipeline: the real dp::Worker (the code sdwand runs) on one core over ring ports, with
// the two ceilings of issue 8 measured in the same run: raw AES-256-GCM on one core and
// dpdk-testpmd io forwarding. Never a test: figures, not verdicts.
//
// How a case runs: every RX ring is pre-filled from a prepared set of mbufs; the harness calls
// poll_once(), then drains the TX ring in bulk, puts each frame back the way it was prepared
// (headers only, from a copy kept in the mbuf's own tailroom; the next flow's 5-tuple when the
// case has many flows) and enqueues the lot back onto the RX ring in bulk. Only the cycles
// inside poll_once() are the worker's; the harness's recycling is reported apart (wall figures).
//
// Where ESP and classes plug in later: a Scenario builds the snapshot and the frames of a
// direction; a new one (ESP SAs in the snapshot, ESP frames for WAN->LAN, class rules) is one
// more make_* function and one more entry in the case list.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "control/config/config.hpp"
#include "control/neighbor/neighbor.hpp"
#include "control/publish/topology.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/worker.hpp"
#include "dataplane/esp/esp.hpp"
#include "dataplane/esp/gcm.hpp"
#include "dataplane/esp/sa.hpp"
#include "dataplane/overlay/overlay.hpp"
#include "dataplane/overlay/stamp.hpp"

namespace sdwan::bench {
namespace {

constexpr uint32_t kRingSize = 4096;
constexpr uint32_t kInFlight = 1024;  // mbufs per case: enough that RX never starves
constexpr uint32_t kPoolSize = 8191;
constexpr uint32_t kRecycleBurst = 256;
constexpr uint32_t kFlowsPerHost = 62500;  // 16 hosts x 62,500 source ports = 1,000,000 flows
constexpr uint32_t kFcs = 4;               // sizes are Ethernet frames with FCS (RFC 2544)
constexpr uint16_t kOverlayPort = 4500;
constexpr std::array<uint32_t, 12> kImix = {64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518};
constexpr uint32_t kImixId = 0;            // "size" 0 in a case means IMIX

// kProbeReflect: STAMP test packets in the SA on uplink 1, reflected by the worker back out of
// uplink 1 (decrypt, reflect, encrypt): the worker's cost per probe.
enum class Dir { kLanToWan, kWanToLan, kProbeReflect };
const char* dir_name(Dir d) {
  return d == Dir::kLanToWan ? "lan_to_wan" : d == Dir::kWanToLan ? "wan_to_lan" : "probe_refl";
}
std::string size_name(uint32_t s) { return s == kImixId ? "imix" : std::to_string(s); }
double imix_mean() {
  double t = 0;
  for (uint32_t s : kImix) t += s;
  return t / kImix.size();
}
uint32_t frame_size(uint32_t size, uint32_t i) { return size == kImixId ? kImix[i % kImix.size()] : size; }

Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }
void put32(uint8_t* p, uint32_t v) { put16(p, uint16_t(v >> 16)), put16(p + 2, uint16_t(v)); }

// rte_ipv4_cksum sums the header as it lies in memory: its result is stored as is.
inline void set_cksum(uint8_t* iph) {
  auto* h = reinterpret_cast<rte_ipv4_hdr*>(iph);
  h->hdr_checksum = 0;
  h->hdr_checksum = rte_ipv4_cksum(h);
}

// Writes IPv4 + UDP headers (no options, UDP checksum 0) and fills the payload.
void ipv4_udp(uint8_t* p, uint32_t ip_len, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  std::memset(p, 0, 28);
  p[0] = 0x45;
  put16(p + 2, uint16_t(ip_len));
  put16(p + 6, 0x4000);
  p[8] = 64;
  p[9] = 17;
  put32(p + 12, src);
  put32(p + 16, dst);
  set_cksum(p);
  put16(p + 20, sport);
  put16(p + 22, dport);
  put16(p + 24, uint16_t(ip_len - 20));
  for (uint32_t i = 28; i < ip_len; ++i) p[i] = uint8_t(i);
}

// What the harness needs to put a frame back: kept at the end of the mbuf's buffer, where no
// stage writes (the frame is at most 1518 + 80 bytes of ESP and overlay behind a 128-byte headroom).
struct Pristine {
  uint16_t data_off, len, hdr_len, ip_off;  // ip_off: the IPv4 header whose source varies per flow
  uint8_t hdr[128];
};
Pristine* pristine(rte_mbuf* m) {
  return reinterpret_cast<Pristine*>(static_cast<uint8_t*>(m->buf_addr) + m->buf_len - sizeof(Pristine));
}

// The edge: LAN + 4 uplinks on ring ports, one peer behind one endpoint (4 paths, the most one
// endpoint gives), everything resolved as after ARP.
struct Edge {
  cp::Config cfg;
  cp::Topology topo;
  std::unique_ptr<cp::NeighborManager> nm;
  std::vector<cp::PortLive> live;
  std::shared_ptr<const dp::RouteTable> routes;
  dp::Published<dp::Snapshot> pub{nullptr};
  dp::WorkerChannels ch;
  std::unique_ptr<dp::Worker> worker;
  std::vector<rte_ring*> rx, tx;  // by port index
  rte_mempool* pool = nullptr;
  MacAddr host_a{{0x02, 0, 0, 0, 0, 0x12}}, isp{{0x02, 0, 0, 0, 0, 0xa1}};
  cp::SnapshotSas sas;
  // The generator's side of WAN -> LAN: what the hub's worker does before the wire (not timed).
  std::unique_ptr<dp::CryptoEngine> gen_engine;
  std::unique_ptr<dp::OutboundSa> gen_sa;
  dp::EspCounters gen_counters;
  static constexpr uint32_t kSpiHubToEdge = 0x5d000201;

  explicit Edge(uint32_t flow_capacity) {
    cfg.role = cp::Role::kEdge;
    cfg.name = "bench-edge";
    cfg.lan.port = "ring:lan";
    cfg.lan.address = *Prefix4::parse("192.168.10.1/24", true);
    for (int i = 1; i <= 4; ++i) {
      cp::UplinkConfig u;
      u.name = "isp" + std::to_string(i);
      u.port = "ring:" + u.name;
      u.address = *Prefix4::parse(("10.1." + std::to_string(i) + ".2/24").c_str(), true);
      u.next_hop = ip(("10.1." + std::to_string(i) + ".1").c_str());
      u.mtu = 1600;  // IMIX's 1518-byte frames plus ESP in UDP and the overlay header (78-81 bytes)
      cfg.uplinks.push_back(u);
    }
    cp::PeerConfig p;
    p.name = "hub";
    cp::EndpointConfig e;
    e.address = ip("10.2.0.2");
    p.endpoints.push_back(e);
    p.prefixes.push_back(*Prefix4::parse("192.168.20.0/24"));
    cfg.peers.push_back(p);
    cfg.overlay_port = kOverlayPort;
    topo = cp::make_topology(cfg);
    pool = rte_pktmbuf_pool_create("bench_pool", kPoolSize, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (!pool) die("mbuf pool");
    for (size_t i = 0; i < topo.ports.size(); ++i) {
      rte_ring* r = rte_ring_create(("brx" + std::to_string(i)).c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      rte_ring* t = rte_ring_create(("btx" + std::to_string(i)).c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!r || !t) die("rings");
      rx.push_back(r);
      tx.push_back(t);
      const int id = rte_eth_from_rings(("bport" + std::to_string(i)).c_str(), &r, 1, &t, 1, 0);
      if (id < 0) die("rte_eth_from_rings");
      const auto pid = uint16_t(id);
      rte_eth_conf conf{};
      if (rte_eth_dev_configure(pid, 1, 1, &conf) || rte_eth_rx_queue_setup(pid, 0, 1024, 0, nullptr, pool) ||
          rte_eth_tx_queue_setup(pid, 0, 1024, 0, nullptr) || rte_eth_dev_start(pid))
        die("port setup");
      rte_ether_addr a;
      rte_eth_macaddr_get(pid, &a);
      MacAddr m;
      std::memcpy(m.b.data(), a.addr_bytes, 6);
      live.push_back({pid, m, true});
    }
    std::vector<cp::NeighborPort> nps;
    for (size_t i = 0; i < topo.ports.size(); ++i) nps.push_back({uint8_t(i), live[i].mac, topo.ports[i].addr});
    nm = std::make_unique<cp::NeighborManager>(nps);
    for (uint8_t i = 1; i <= 4; ++i) learn(i, cfg.uplinks[i - 1].next_hop, isp);
    learn(0, ip("192.168.10.2"), host_a);
    auto r = cp::build_routes(cfg, int(rte_socket_id()));
    if (!r) die("routes");
    routes = *r;
    ch.to_control_pkts = rte_ring_create("bexc", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ch.to_control_resolve = rte_ring_create_elem("bres", 8, 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ch.from_control_tx = rte_ring_create("bctx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    // ESP: an outbound SA per path, and the inbound SA of the generator's (the hub's) SA.
    dp::EspSaParams sp;
    sp.key.fill(0x11);
    sp.salt.fill(0x11);
    for (const auto& tp : topo.paths) {
      sp.spi = 0x5d000100u + tp.id;
      sas.out.push_back(dp::make_outbound_sa(sp, dp::EspPath{}));
    }
    sp.spi = kSpiHubToEdge;
    sp.key.fill(0x22);
    sp.salt.fill(0x22);
    sp.replay_window = 1u << 16;
    auto in_sa = dp::make_inbound_sa(sp);
    auto table = dp::make_inbound_table();
    if (!in_sa || !table || !dp::inbound_table_install(*table, in_sa.get())) die("inbound SA");
    sas.in = {in_sa};
    sas.inbound = table;
    auto eng = dp::CryptoEngine::create();
    if (!eng) die("crypto engine");
    gen_engine = std::move(*eng);
    uint8_t k[32], salt[4];
    std::memset(k, 0x22, 32);
    std::memset(salt, 0x22, 4);
    gen_sa = std::make_unique<dp::OutboundSa>(*gen_engine, kSpiHubToEdge, k, salt, true, ~uint64_t{0},
                                              dp::EspPath{isp, live[1].mac, ip("10.2.0.2"),
                                                          cfg.uplinks[0].address.addr, kOverlayPort, kOverlayPort,
                                                          1600});
    pub.publish(cp::build_snapshot(topo, live, *nm, routes, 1, sas));
    dp::WorkerConfig wc;
    for (uint8_t i = 0; i < topo.ports.size(); ++i) wc.rx.push_back({i, 0});
    wc.snapshot = &pub;
    wc.channels = ch;
    wc.idle = dp::IdlePolicy::kBusy;
    wc.flow_capacity = flow_capacity;
    worker = std::make_unique<dp::Worker>(wc);
  }
  [[noreturn]] static void die(const char* what) {
    std::fprintf(stderr, "bench_pipeline: %s failed: %s\n", what, rte_strerror(rte_errno));
    std::exit(1);
  }
  void learn(uint8_t port, Ipv4 who, MacAddr m) {
    nm->want(port, who, false, 0);
    nm->on_arp(port, cp::ArpPacket{2, m, who, topo.ports[port].addr.addr}, 0);
  }
};

// Frames of one case, written into mbufs with their pristine copy.
void prepare(Edge& e, Dir d, uint32_t size, rte_mbuf* m, uint32_t i) {
  const uint32_t len = frame_size(size, i) - kFcs;  // bytes in the mbuf
  Pristine* pr = pristine(m);
  if (d == Dir::kProbeReflect) {
    uint8_t* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(sizeof(dp::OverlayHdr) + dp::kProbeLen)));
    if (f == nullptr) Edge::die("probe append");
    std::memset(f, 0, sizeof(dp::OverlayHdr) + dp::kProbeLen);
    f[0] = uint8_t(dp::kOverlayVersion << 4 | 1);
    put32(f + sizeof(dp::OverlayHdr), i);
    pr->ip_off = 0;
    pr->hdr_len = uint16_t(sizeof(dp::OverlayHdr) + dp::kProbeLen);
    pr->data_off = m->data_off;
    pr->len = uint16_t(rte_pktmbuf_data_len(m));
    std::memcpy(pr->hdr, f, pr->hdr_len);
    return;
  }
  uint8_t* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(d == Dir::kLanToWan ? len : len - 14 + 16)));
  if (d == Dir::kLanToWan) {
    std::memcpy(f, e.live[0].mac.b.data(), 6);
    std::memcpy(f + 6, e.host_a.b.data(), 6);
    put16(f + 12, 0x0800);
    ipv4_udp(f + 14, len - 14, ip("192.168.10.10").v, ip("192.168.20.2").v, 1024, 5001);
    pr->ip_off = 14;
    pr->hdr_len = 14 + 28;
  } else {
    // Overlay header and inner packet, as the hub's worker hands them to ESP; seal_wan
    // encrypts them from the peer's endpoint to uplink 1 each time they go in.
    uint8_t* ov = f;
    std::memset(ov, 0, sizeof(dp::OverlayHdr));
    ov[0] = uint8_t(dp::kOverlayVersion << 4);
    put32(ov + 12, i + 1);
    ipv4_udp(ov + sizeof(dp::OverlayHdr), len - 14, ip("192.168.20.10").v, ip("192.168.10.2").v, 1024, 5001);
    pr->ip_off = uint16_t(sizeof(dp::OverlayHdr));
    pr->hdr_len = uint16_t(pr->ip_off + 28);
  }
  pr->data_off = m->data_off;
  pr->len = uint16_t(rte_pktmbuf_data_len(m));
  std::memcpy(pr->hdr, f, pr->hdr_len);
}

// Puts a frame back as prepared; with flows > 1, as the next flow (source host and port).
inline void restore(rte_mbuf* m, uint32_t flows, uint32_t* next_flow) {
  const Pristine* pr = pristine(m);
  m->data_off = pr->data_off;
  m->data_len = pr->len;
  m->pkt_len = pr->len;
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  std::memcpy(f, pr->hdr, pr->hdr_len);
  const uint32_t fl = (*next_flow)++ % flows;
  if (flows > 1) {
    uint8_t* iph = f + pr->ip_off;
    iph[15] = uint8_t(iph[15] + fl / kFlowsPerHost);
    put16(iph + 20, uint16_t(1024 + fl % kFlowsPerHost));
    set_cksum(iph);
  }
}

// WAN -> LAN frames are ESP: each goes in freshly sealed under the generator's SA (new
// sequence numbers, so the edge's anti-replay window passes them). Outside the timed poll.
void seal_wan(Edge& e, rte_mbuf** ms, uint32_t n) {
  for (uint32_t i = 0; i < n; i += 32) {
    const uint32_t k = std::min<uint32_t>(32, n - i);
    if (dp::esp_encrypt_burst(*e.gen_engine, *e.gen_sa, std::span<rte_mbuf*>(ms + i, k), dp::kEspNextOverlay,
                              e.gen_counters) != k)
      Edge::die("generator seal");
  }
}

struct Result {
  Dir dir;
  uint32_t size, flows;
  uint64_t pkts = 0, bytes = 0, worker_cycles = 0, wall_cycles = 0, lost = 0;
  double mpps = 0, gbps = 0, cpp = 0, mpps_wall = 0, crypto_mpps = 0, testpmd_mpps = 0;
  long peak_rss_kb = 0;
  uint32_t flow_entries = 0;  // the worker's flow cache after the case (entries live 120 s)
  uint64_t hugepage_bytes = 0, dpdk_heap_bytes = 0;
};

uint64_t hugepages_in_use() {
  std::ifstream f("/proc/meminfo");
  std::string k;
  uint64_t total = 0, free = 0, sz = 0, v;
  while (f >> k >> v) {
    if (k == "HugePages_Total:") total = v;
    if (k == "HugePages_Free:") free = v;
    if (k == "Hugepagesize:") sz = v * 1024;
    f.ignore(256, '\n');
  }
  return (total - free) * sz;
}
uint64_t dpdk_heap() {
  rte_malloc_socket_stats st{};
  return rte_malloc_get_socket_stats(int(rte_socket_id()), &st) == 0 ? st.heap_totalsz_bytes : 0;
}
long peak_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

Result run_case(Edge& e, Dir d, uint32_t size, uint32_t flows, double seconds) {
  Result r{d, size, flows};
  const uint8_t in = d == Dir::kLanToWan ? 0 : 1, out = d == Dir::kWanToLan ? 0 : 1;
  std::vector<rte_mbuf*> ms(kInFlight);
  if (rte_pktmbuf_alloc_bulk(e.pool, ms.data(), kInFlight) != 0) Edge::die("mbuf alloc");
  for (uint32_t i = 0; i < kInFlight; ++i) prepare(e, d, size, ms[i], i);
  uint32_t next_flow = 0;
  for (rte_mbuf* m : ms) restore(m, flows, &next_flow);
  if (d != Dir::kLanToWan) seal_wan(e, ms.data(), kInFlight);
  if (rte_ring_enqueue_bulk(e.rx[in], reinterpret_cast<void**>(ms.data()), kInFlight, nullptr) != kInFlight)
    Edge::die("prefill");
  const uint64_t hz = rte_get_tsc_hz();
  std::array<rte_mbuf*, kRecycleBurst> b;
  auto step = [&](bool measure) {
    const uint64_t t0 = rte_rdtsc();
    e.worker->poll_once();
    const uint64_t t1 = rte_rdtsc();
    if (measure) r.worker_cycles += t1 - t0;
    unsigned n;
    while ((n = rte_ring_sc_dequeue_burst(e.tx[out], reinterpret_cast<void**>(b.data()), kRecycleBurst, nullptr)) != 0) {
      if (measure) {
        r.pkts += n;
        for (unsigned i = 0; i < n; ++i) r.bytes += b[i]->pkt_len;
      }
      for (unsigned i = 0; i < n; ++i) restore(b[i], flows, &next_flow);
      if (d != Dir::kLanToWan) seal_wan(e, b.data(), n);
      rte_ring_sp_enqueue_bulk(e.rx[in], reinterpret_cast<void**>(b.data()), n, nullptr);
    }
  };
  // Warm-up: every flow once (fills the flow cache) and at least 0.2 s.
  const uint64_t warm_start = rte_rdtsc(), warm_end = warm_start + hz / 5, give_up = warm_start + 10 * hz;
  while ((rte_rdtsc() < warm_end || next_flow < flows + kInFlight) && rte_rdtsc() < give_up) step(false);
  if (next_flow < flows + kInFlight) {
    std::fprintf(stderr, "bench_pipeline: %s %s: the worker sent nothing back; drops:", dir_name(d), size_name(size).c_str());
    for (size_t i = 0; i < size_t(dp::Drop::kCount); ++i)
      if (const uint64_t n = e.worker->counters().drops[i].load())
        std::fprintf(stderr, " %s=%lu", std::string(dp::drop_name(dp::Drop(i))).c_str(), static_cast<unsigned long>(n));
    for (size_t i = 0; i < size_t(dp::EspDrop::kCount); ++i)
      if (const uint64_t n = e.worker->esp_counters().dropped(dp::EspDrop(i)))
        std::fprintf(stderr, " esp:%s=%lu", std::string(dp::esp_drop_name(dp::EspDrop(i))).c_str(),
                     static_cast<unsigned long>(n));
    std::fprintf(stderr, "\n");
  }
  const uint64_t start = rte_rdtsc(), end = start + uint64_t(seconds * double(hz));
  while (rte_rdtsc() < end) step(true);
  r.wall_cycles = rte_rdtsc() - start;
  // Whatever the worker dropped went back to the pool: say so rather than hide it.
  r.lost = kInFlight - rte_ring_count(e.rx[in]) - rte_ring_count(e.tx[out]);
  for (rte_ring* ring : {e.rx[in], e.tx[out], e.ch.to_control_pkts}) {
    void* v;
    while (rte_ring_dequeue(ring, &v) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(v));
  }
  // Overlay headers (WAN->LAN) and outer headers (LAN->WAN) are not inner bytes.
  const double inner = size == kImixId ? imix_mean() : double(size);
  const double sec_worker = double(r.worker_cycles) / double(hz);
  r.mpps = sec_worker > 0 ? double(r.pkts) / sec_worker / 1e6 : 0;
  r.gbps = r.mpps * inner * 8 / 1e3;
  r.cpp = r.pkts ? double(r.worker_cycles) / double(r.pkts) : 0;
  r.mpps_wall = double(r.pkts) / (double(r.wall_cycles) / double(hz)) / 1e6;
  r.flow_entries = e.worker->flow_count();
  r.peak_rss_kb = peak_rss_kb();
  r.hugepage_bytes = hugepages_in_use();
  r.dpdk_heap_bytes = dpdk_heap();
  return r;
}

// Crypto ceiling: AES-256-GCM seal of `size` bytes (8-byte AAD, 16-byte tag) in bursts of 32 over
// kInFlight buffers, the faster of the direct and burst modes.
struct CryptoFig {
  double mpps = 0;
  const char* mode = "";
  std::string arch;
};
CryptoFig crypto_ceiling(uint32_t size, double seconds) {
  CryptoFig best;
  for (auto mode : {dp::GcmBurstMode::kDirect, dp::GcmBurstMode::kBurst}) {
    auto eng = dp::CryptoEngine::create(dp::CryptoEngine::Arch::kAuto, mode);
    if (!eng) {
      std::fprintf(stderr, "bench_pipeline: no crypto engine\n");
      return best;
    }
    auto key = std::make_unique<dp::GcmKey>();
    uint8_t k[dp::kGcmKeyLen];
    for (size_t i = 0; i < sizeof k; ++i) k[i] = uint8_t(i * 7 + 1);
    (*eng)->expand_key(k, key.get());
    constexpr uint32_t kSlot = 2048;
    std::vector<uint8_t> buf(size_t(kInFlight) * kSlot, 0x5a);
    std::array<uint8_t, dp::kGcmIvLen> iv{};
    std::array<uint8_t, 8> aad{};
    std::vector<dp::GcmOp> ops(kInFlight);
    for (uint32_t i = 0; i < kInFlight; ++i) {
      uint8_t* p = buf.data() + size_t(i) * kSlot;
      ops[i] = dp::GcmOp{key.get(), iv.data(), aad.data(), p, p + 1600, frame_size(size, i), 8, false};
    }
    const uint64_t hz = rte_get_tsc_hz();
    uint64_t n = 0;
    const uint64_t start = rte_rdtsc(), end = start + uint64_t(seconds * double(hz));
    for (uint32_t i = 0; rte_rdtsc() < end; i = (i + 32) % kInFlight) n += (*eng)->seal_burst(&ops[i], 32);
    const double mpps = double(n) / (double(rte_rdtsc() - start) / double(hz)) / 1e6;
    if (mpps > best.mpps) best = {mpps, mode == dp::GcmBurstMode::kDirect ? "direct" : "burst", (*eng)->arch_name()};
  }
  return best;
}

// testpmd ceiling: io forwarding between two net_null ports (one forwarding core), the median of
// its per-second samples after the first; the sum of both ports' Tx-pps. 0 when it cannot run.
double testpmd_ceiling(uint32_t size, double seconds, const std::string& lcores) {
  const std::string prefix = "sdwan-bench-tpmd-" + std::to_string(getpid());
  const std::string log = "/tmp/" + prefix + ".log";
  const uint32_t len = (size == kImixId ? uint32_t(imix_mean()) : size) - kFcs;
  const int secs = std::max(3, int(seconds) + 2);
  const std::string cmd = "timeout -s INT " + std::to_string(secs) + " dpdk-testpmd -l " + lcores +
                          " --no-huge -m 512 --no-pci --file-prefix " + prefix + " --vdev net_null0,size=" +
                          std::to_string(len) + " --vdev net_null1,size=" + std::to_string(len) +
                          " -- --forward-mode=io --nb-cores=1 --total-num-mbufs=8192 --stats-period 1 > " + log +
                          " 2>&1";
  const int rc = std::system(cmd.c_str());
  (void)rc;
  std::ifstream f(log);
  std::string line;
  std::vector<double> samples;
  double sum = 0;
  int ports = 0;
  while (std::getline(f, line)) {
    const auto p = line.find("Tx-pps:");
    if (p == std::string::npos) continue;
    sum += std::strtod(line.c_str() + p + 7, nullptr);
    if (++ports == 2) samples.push_back(sum), sum = 0, ports = 0;
  }
  std::error_code ec;
  std::filesystem::remove(log, ec);
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  if (samples.size() < 2) return 0;
  samples.erase(samples.begin());
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2] / 1e6;
}

struct Args {
  double seconds = 2.0;
  std::string json;
  unsigned core = 1;
  std::vector<uint32_t> sizes = {64, 512, 1400, kImixId};
  std::vector<uint32_t> flows = {1, 1000000};
  bool testpmd = true;
};

void usage() {
  std::puts(
      "bench_pipeline [--seconds S] [--json FILE] [--core N] [--sizes 64,512,1400,imix] [--flows 1,1000000]\n"
      "               [--no-testpmd]\n"
      "The real worker on ring ports, one core, LAN->WAN and WAN->LAN (ESP: WAN->LAN frames are sealed outside the timed poll),\n"
      "beside raw AES-256-GCM and dpdk-testpmd io forwarding measured in the same run.");
}

std::vector<uint32_t> list(const char* s, bool sizes) {
  std::vector<uint32_t> v;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ','))
    v.push_back(sizes && t == "imix" ? kImixId : uint32_t(std::strtoul(t.c_str(), nullptr, 10)));
  return v;
}

bool parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const bool has = i + 1 < argc;
    if (k == "--seconds" && has) a->seconds = std::strtod(argv[++i], nullptr);
    else if (k == "--json" && has) a->json = argv[++i];
    else if (k == "--core" && has) a->core = unsigned(std::strtoul(argv[++i], nullptr, 10));
    else if (k == "--sizes" && has) a->sizes = list(argv[++i], true);
    else if (k == "--flows" && has) a->flows = list(argv[++i], false);
    else if (k == "--no-testpmd") a->testpmd = false;
    else return false;
  }
  for (uint32_t s : a->sizes)
    if (s != kImixId && (s < 64 || s > 1518)) return false;
  for (uint32_t f : a->flows)
    if (f < 1 || f > 16 * kFlowsPerHost) return false;
  return a->seconds > 0;
}

int main_(int argc, char** argv) {
  Args a;
  if (!parse_args(argc, argv, &a)) {
    usage();
    return 2;
  }
  // Hugepages when enough are free for the pool and a 1,000,000-flow cache, else --no-huge.
  std::ifstream mi("/proc/meminfo");
  std::string k;
  uint64_t v, hp_free = 0, hp_size = 0;
  while (mi >> k >> v) {
    if (k == "HugePages_Free:") hp_free = v;
    if (k == "Hugepagesize:") hp_size = v * 1024;
    mi.ignore(256, '\n');
  }
  const bool huge = hp_free * hp_size >= (uint64_t{768} << 20);
  const std::string prefix = "sdwan-bench-" + std::to_string(getpid());
  const unsigned ncpu = unsigned(sysconf(_SC_NPROCESSORS_ONLN));
  if (a.core >= ncpu) a.core = ncpu - 1;
  std::vector<std::string> eal = {"bench_pipeline", "-l", std::to_string(a.core), "--file-prefix", prefix,
                                  "--no-pci", "--log-level", "*:warning", "-m", "768"};
  if (!huge) eal.push_back("--no-huge");
  std::vector<char*> ev;
  for (auto& s : eal) ev.push_back(s.data());
  if (rte_eal_init(int(ev.size()), ev.data()) < 0) {
    std::fprintf(stderr, "bench_pipeline: EAL init failed\n");
    return 1;
  }
  uint32_t max_flows = 1;
  for (uint32_t f : a.flows) max_flows = std::max(max_flows, f);
  int rc = 0;
  {
    Edge e(std::max<uint32_t>(65536, max_flows * 2));
    std::vector<Result> rs;
    for (Dir d : {Dir::kLanToWan, Dir::kWanToLan})
      for (uint32_t s : a.sizes)
        for (uint32_t f : a.flows) rs.push_back(run_case(e, d, s, f, a.seconds));
    // The worker's cost per probe: one case, whatever the sizes (a probe is 92 bytes inside ESP).
    rs.push_back(run_case(e, Dir::kProbeReflect, a.sizes[0], 1, a.seconds));
    std::vector<CryptoFig> cf;
    std::vector<double> tp;
    // testpmd forwards on a second core when there is one, leaving its main lcore apart.
    const std::string tl = ncpu > 1 ? "0," + std::to_string(a.core == 0 ? 1 : a.core) : "0";
    for (uint32_t s : a.sizes) {
      cf.push_back(crypto_ceiling(s, std::min(a.seconds, 1.0)));
      tp.push_back(a.testpmd ? testpmd_ceiling(s, a.seconds, tl) : 0);
    }
    for (auto& r : rs) {
      const size_t i = size_t(std::find(a.sizes.begin(), a.sizes.end(), r.size) - a.sizes.begin());
      r.crypto_mpps = cf[i].mpps;
      r.testpmd_mpps = tp[i];
    }
    std::printf("sdwan-edge bench_pipeline: worker on lcore %u, %s, %.1f s per case, TSC %.2f GHz\n", a.core,
                huge ? "hugepages" : "--no-huge", a.seconds, double(rte_get_tsc_hz()) / 1e9);
    std::printf("pipeline: ESP (AES-256-GCM) in UDP around the overlay, first usable path (1 peer, 4 paths over 4 uplinks); no classes yet\n");
    std::printf("crypto ceiling: AES-256-GCM seal, intel-ipsec-mb %s %s; testpmd: io fwd, 2 x net_null, 1 fwd core\n",
                dp::CryptoEngine::library_version(), cf.empty() ? "" : cf[0].arch.c_str());
    std::printf("\n%-11s %5s %8s %8s %8s %8s %10s %8s %8s %7s %7s %6s\n", "direction", "size", "flows", "Mpps", "Gbps",
                "cyc/pkt", "wall Mpps", "crypto", "testpmd", "/crypt", "/tpmd", "lost");
    for (const auto& r : rs)
      std::printf("%-11s %5s %8u %8.2f %8.2f %8.1f %10.2f %8.2f %8.2f %7.3f %7.3f %6lu\n", dir_name(r.dir),
                  r.dir == Dir::kProbeReflect ? "stamp" : size_name(r.size).c_str(), r.flows, r.mpps, r.gbps, r.cpp, r.mpps_wall, r.crypto_mpps, r.testpmd_mpps,
                  r.crypto_mpps > 0 ? r.mpps / r.crypto_mpps : 0, r.testpmd_mpps > 0 ? r.mpps / r.testpmd_mpps : 0,
                  static_cast<unsigned long>(r.lost));
    std::printf("\nceilings per size:");
    for (size_t i = 0; i < a.sizes.size(); ++i)
      std::printf(" %s: crypto %.2f Mpps (%s), testpmd %.2f Mpps;", size_name(a.sizes[i]).c_str(), cf[i].mpps,
                  cf[i].mode, tp[i]);
    std::printf("\npeak RSS %ld KiB, hugepages in use %lu MiB, DPDK heap %lu MiB, flow cache %u entries\n",
                peak_rss_kb(), static_cast<unsigned long>(hugepages_in_use() >> 20),
                static_cast<unsigned long>(dpdk_heap() >> 20), std::max<uint32_t>(65536, max_flows * 2));
    for (const auto& r : rs)
      if (r.lost) rc = 3;
    if (!a.json.empty()) {
      std::FILE* j = std::fopen(a.json.c_str(), "w");
      if (!j) {
        std::fprintf(stderr, "bench_pipeline: cannot write %s\n", a.json.c_str());
        rc = 1;
      } else {
        std::fprintf(j, "[\n");
        for (size_t i = 0; i < rs.size(); ++i) {
          const auto& r = rs[i];
          std::fprintf(j,
                       "  {\"direction\": \"%s\", \"size\": \"%s\", \"flows\": %u, \"workers\": 1, \"mpps\": %.4f, "
                       "\"gbps\": %.4f, \"cycles_per_packet\": %.2f, \"ratio_to_crypto\": %.4f, \"ratio_to_testpmd\": %.4f, "
                       "\"crypto_mpps\": %.4f, \"testpmd_mpps\": %.4f, \"mpps_wall\": %.4f, \"lost\": %lu, "
                       "\"flow_entries\": %u, \"peak_rss_kb\": %ld, \"hugepage_bytes\": %lu, \"dpdk_heap_bytes\": %lu, "
                       "\"pipeline\": \"esp\", \"hugepages\": %s}%s\n",
                       dir_name(r.dir), r.dir == Dir::kProbeReflect ? "stamp" : size_name(r.size).c_str(), r.flows, r.mpps, r.gbps, r.cpp,
                       r.crypto_mpps > 0 ? r.mpps / r.crypto_mpps : 0, r.testpmd_mpps > 0 ? r.mpps / r.testpmd_mpps : 0,
                       r.crypto_mpps, r.testpmd_mpps, r.mpps_wall, static_cast<unsigned long>(r.lost), r.flow_entries, r.peak_rss_kb,
                       static_cast<unsigned long>(r.hugepage_bytes), static_cast<unsigned long>(r.dpdk_heap_bytes),
                       huge ? "true" : "false", i + 1 < rs.size() ? "," : "");
        }
        std::fprintf(j, "]\n");
        std::fclose(j);
      }
    }
    e.worker.reset();
    e.pub.publish(nullptr);
    for (const auto& l : e.live) {
      rte_eth_dev_stop(l.port_id);
      rte_eth_dev_close(l.port_id);
    }
  }
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  return rc;
}

}  // namespace
}  // namespace sdwan::bench

int main(int argc, char** argv) { return sdwan::bench::main_(argc, argv); }
