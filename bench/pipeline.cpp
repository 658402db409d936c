// bench_pipeline: the real dp::Worker (the code sdwand runs) over ring ports, with the two
// ceilings of issue 8 measured in the same run: raw intel-ipsec-mb AES-256-GCM on one core (the
// faster of its direct and job/burst APIs) and dpdk-testpmd io forwarding on ring ports. Never a
// test: figures, not verdicts.
//
// The edge is built as sdwand builds it: a parsed config (LAN, 4 uplinks, one hub endpoint: 4
// paths; 2 classes, `voice` best and `bulk` balance), its topology, routes and resolved
// neighbours, SAs from control/esp's SaTable with keys derived from a master key, the policy
// compiled by control/policy's PolicyCompiler from 4 measured-up paths, and one snapshot.
//
// How a case runs: each lane (one worker on one lcore) has its own RX queue on every port and
// kInFlight mbufs. The lane calls poll_once(), drains its TX queues in bulk, puts each frame back
// the way it was prepared (headers from a copy kept in the mbuf's tailroom; the next flow's
// 5-tuple) and enqueues the lot on its RX queues again. WAN->LAN frames are sealed afresh by the
// hub's side of each path (its outbound SA, derived independently from the same master key), so
// the edge's anti-replay windows and ICV checks see what a real hub sends. Only the cycles inside
// poll_once() are the worker's; the harness's recycling is reported apart (wall figures).
#include <malloc.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_version.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <intel-ipsec-mb.h>

#include "control/config/config.hpp"
#include "control/esp/derive.hpp"
#include "control/esp/keys.hpp"
#include "control/esp/sa_table.hpp"
#include "control/esp/spi.hpp"
#include "control/neighbor/neighbor.hpp"
#include "control/policy/compiler.hpp"
#include "control/publish/topology.hpp"
#include "dataplane/api/ablation.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/worker.hpp"
#include "dataplane/esp/esp.hpp"
#include "dataplane/esp/gcm.hpp"
#include "dataplane/esp/sa.hpp"
#include "dataplane/flow/flow_cache.hpp"
#include "dataplane/overlay/overlay.hpp"
#include "dataplane/overlay/stamp.hpp"

namespace sdwan::bench {
namespace {

constexpr uint32_t kMaxLanes = 2;
constexpr uint32_t kRingSize = 4096;
constexpr uint32_t kInFlight = 1024;  // mbufs per lane: enough that RX never starves
constexpr uint32_t kPoolSize = 8191;
constexpr uint32_t kRecycleBurst = 256;
constexpr uint32_t kFlowsPerHost = 62500;  // 16 hosts x 62,500 source ports = 1,000,000 flows
constexpr uint32_t kFcs = 4;               // sizes are Ethernet frames with FCS (RFC 2544)
constexpr uint16_t kVoicePort = 5004;      // class voice (best); anything else is bulk (balance)
constexpr uint16_t kBulkPort = 5001;
constexpr uint32_t kPaths = 4;
constexpr std::array<uint32_t, 12> kImix = {64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518};
constexpr uint32_t kImixId = 0;            // "size" 0 in a case means IMIX
constexpr uint32_t kAadLen = 12;           // ESP with extended sequence numbers

// kProbeReflect: STAMP test packets in the SA of path 0, reflected by the worker back out of
// its uplink (decrypt, reflect, encrypt): the worker's cost per probe.
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

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_pipeline: %s failed: %s\n", what.c_str(), rte_strerror(rte_errno));
  std::exit(1);
}
template <class T>
T must(Result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "bench_pipeline: %s: %s\n", what, r.error().msg.c_str());
    std::exit(1);
  }
  return std::move(*r);
}

Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }
void put32(uint8_t* p, uint32_t v) { put16(p, uint16_t(v >> 16)), put16(p + 2, uint16_t(v)); }
void put64(uint8_t* p, uint64_t v) { put32(p, uint32_t(v >> 32)), put32(p + 4, uint32_t(v)); }

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
  uint16_t data_off, len, hdr_len, ip_off;  // ip_off: the IPv4 header whose 5-tuple varies per flow
  uint16_t ov_off;                          // WAN->LAN: the overlay header (0xffff: none)
  uint8_t port;                             // the port it enters on
  uint8_t path;                             // WAN->LAN, probes: the path (its hub SA seals it)
  uint8_t hdr[128];
};
Pristine* pristine(rte_mbuf* m) {
  return reinterpret_cast<Pristine*>(static_cast<uint8_t*>(m->buf_addr) + m->buf_len - sizeof(Pristine));
}

const char* kConfig = R"(
name: bench-edge
role: edge
lan: {port: "ring:lan", address: 192.168.10.1/24}
uplinks:
  - {name: isp1, port: "ring:isp1", address: 10.1.1.2/24, next_hop: 10.1.1.1, mtu: 1600}
  - {name: isp2, port: "ring:isp2", address: 10.1.2.2/24, next_hop: 10.1.2.1, mtu: 1600}
  - {name: isp3, port: "ring:isp3", address: 10.1.3.2/24, next_hop: 10.1.3.1, mtu: 1600}
  - {name: isp4, port: "ring:isp4", address: 10.1.4.2/24, next_hop: 10.1.4.1, mtu: 1600}
peers:
  - name: hub
    key_file: /nonexistent/bench.key
    endpoints: [{address: 10.2.0.2}]
    prefixes: [192.168.20.0/24]
classes:
  - name: voice
    match: [{proto: udp, dport: 5004}]
    sla: {latency_ms: 150, jitter_ms: 30, loss_pct: 1}
    mode: best
  - name: bulk
    default: true
    mode: balance
overlay_port: 4500
esp: {esn: true, replay_window: 4096}
)";

std::array<uint8_t, cp::kMasterKeyBytes> master_bytes() {
  std::array<uint8_t, cp::kMasterKeyBytes> b;
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(0xa5 ^ (i * 29));
  return b;
}

// Makes the SA runtimes of a SaTable's install actions as sdwand does (Appliance::make_sa):
// HKDF keys from the master key, the config's ESN and window, the path id as tag.
struct SaSet {
  cp::SnapshotSas snap;
  std::vector<std::shared_ptr<dp::OutboundSa>> hub_out;  // by path: the hub's SA towards us
  size_t n_in = 0, n_out = 0;
};

SaSet make_sas(const cp::Config& cfg, const cp::Topology& topo, const cp::MasterKey& mk,
               const std::vector<dp::EspPath>& hub_paths) {
  SaSet s;
  auto table = must(cp::SaTable::create(cfg.esp.lifetime), "SA table");
  std::vector<cp::SaAction> acts;
  for (const auto& tp : topo.paths) {
    cp::SaPathSpec spec;
    spec.path = tp.id;
    spec.link = cp::path_link(cfg, size_t(topo.ports[tp.port].uplink), tp.peer, tp.endpoint);
    spec.local = cp::Endpoint{topo.ports[tp.port].addr.addr, cfg.overlay_port};
    spec.remote = cp::Endpoint{tp.remote, tp.remote_port};
    spec.esn = cfg.esp.esn;
    spec.start_epoch = 0;
    auto a = must(table.add_path(spec, 0), "SA path");
    acts.insert(acts.end(), a.begin(), a.end());
    if (!hub_paths.empty()) {
      // The hub's outbound SA of this path: the same SaName from its side, the same keys.
      const auto names = must(cp::path_sa_names(spec.link, 0, spec.remote, spec.local), "SA names");
      const auto keys = must(cp::derive_sa(mk, names.outbound), "derive");
      dp::EspSaParams p;
      p.spi = names.outbound.spi;
      p.key = keys.key;
      p.salt = keys.salt;
      p.esn = cfg.esp.esn;
      s.hub_out.push_back(dp::make_outbound_sa(p, hub_paths[tp.id]));
    }
  }
  s.snap.out.resize(topo.paths.size());
  std::vector<std::shared_ptr<dp::InboundSa>> in;
  for (const auto& a : acts) {
    const auto keys = must(cp::derive_sa(mk, a.sa), "derive");
    dp::EspSaParams p = cp::esp_sa_params(a, keys, cfg.esp.replay_window);
    if (a.kind == cp::SaAction::Kind::kInstallInbound) {
      in.push_back(dp::make_inbound_sa(p));
      ++s.n_in;
    } else if (a.kind == cp::SaAction::Kind::kInstallOutbound) {
      const auto& tp = topo.paths[a.path];
      s.snap.out[a.path] = dp::make_outbound_sa(
          p, dp::EspPath{{}, {}, topo.ports[tp.port].addr.addr, tp.remote, cfg.overlay_port, tp.remote_port,
                         topo.ports[tp.port].mtu});
      ++s.n_out;
    }
  }
  auto t = dp::make_inbound_table();
  if (!t) die("inbound table");
  for (const auto& sa : in)
    if (!sa || !dp::inbound_table_install(*t, sa.get())) die("inbound SA");
  s.snap.inbound = t;
  s.snap.in = std::move(in);
  return s;
}

// The policy as sdwand compiles it on publish: every path measured up, the 4 uplinks a little
// apart in RTT (best picks isp1; balance weighs all four).
std::shared_ptr<const dp::Policy> compile_policy(const cp::Config& cfg, const cp::Topology& topo,
                                                 cp::PolicyCompiler& pc) {
  std::vector<cp::PathInput> in;
  for (const auto& tp : topo.paths) {
    cp::PathInput p;
    p.id = tp.id;
    p.peer = tp.peer;
    p.uplink = uint8_t(topo.ports[tp.port].uplink);
    p.metered = cfg.uplinks[size_t(p.uplink)].cost == cp::CostTier::kMetered;
    p.bandwidth_bps = cfg.uplinks[size_t(p.uplink)].bandwidth_bps;
    p.up = true;
    p.rtt_ms = 20.0 + p.uplink;
    p.jitter_ms = 1.0;
    p.loss_pct = 0.0;
    in.push_back(p);
  }
  // Twice, a failback period apart: paths that just came up take traffic only once stable.
  pc.compile(in, 1);
  return pc.compile(in, uint64_t(cfg.policy.failback_stable_ms + 1000) * 1000000);
}

// The edge: LAN + 4 uplinks on ring ports with kMaxLanes queues each, one hub endpoint behind all
// four (4 paths), everything resolved as after ARP.
struct Edge {
  cp::Config cfg;
  cp::Topology topo;
  cp::MasterKey mk = cp::MasterKey::from_bytes(master_bytes());
  std::unique_ptr<cp::NeighborManager> nm;
  std::vector<cp::PortLive> live;
  std::shared_ptr<const dp::RouteTable> routes;
  std::unique_ptr<cp::PolicyCompiler> compiler;
  std::shared_ptr<const dp::Policy> policy;
  dp::Published<dp::Snapshot> pub{nullptr};
  uint64_t generation = 0;
  std::array<dp::WorkerChannels, kMaxLanes> ch;
  std::vector<std::array<rte_ring*, kMaxLanes>> rx, tx;  // by port index, queue
  rte_mempool* pool = nullptr;
  MacAddr host_a{{0x02, 0, 0, 0, 0, 0x12}}, isp{{0x02, 0, 0, 0, 0, 0xa1}};
  SaSet sas;
  std::vector<dp::EspPath> hub_paths;  // by path: the hub's outer headers towards our uplink
  std::array<uint64_t, kMaxLanes> ov_seq{};  // the hub's overlay sequence per stream (= lane)

  Edge() {
    cfg = must(cp::parse_config(kConfig, "bench-edge.yaml"), "bench config");
    topo = cp::make_topology(cfg);
    if (topo.paths.size() != kPaths) die("4 paths");
    pool = rte_pktmbuf_pool_create("bench_pool", kPoolSize, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (!pool) die("mbuf pool");
    rx.resize(topo.ports.size());
    tx.resize(topo.ports.size());
    for (size_t i = 0; i < topo.ports.size(); ++i) {
      for (uint32_t q = 0; q < kMaxLanes; ++q) {
        const std::string sfx = std::to_string(i) + "_" + std::to_string(q);
        rx[i][q] = rte_ring_create(("brx" + sfx).c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        tx[i][q] = rte_ring_create(("btx" + sfx).c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!rx[i][q] || !tx[i][q]) die("rings");
      }
      const int id = rte_eth_from_rings(("bport" + std::to_string(i)).c_str(), rx[i].data(), kMaxLanes,
                                        tx[i].data(), kMaxLanes, 0);
      if (id < 0) die("rte_eth_from_rings");
      const auto pid = uint16_t(id);
      rte_eth_conf conf{};
      if (rte_eth_dev_configure(pid, kMaxLanes, kMaxLanes, &conf)) die("port configure");
      for (uint16_t q = 0; q < kMaxLanes; ++q)
        if (rte_eth_rx_queue_setup(pid, q, 1024, 0, nullptr, pool) || rte_eth_tx_queue_setup(pid, q, 1024, 0, nullptr))
          die("queue setup");
      if (rte_eth_dev_start(pid)) die("port start");
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
    routes = must(cp::build_routes(cfg, int(rte_socket_id())), "routes");
    for (uint32_t q = 0; q < kMaxLanes; ++q) {
      const std::string sfx = std::to_string(q);
      ch[q].to_control_pkts = rte_ring_create(("bexc" + sfx).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      ch[q].to_control_resolve =
          rte_ring_create_elem(("bres" + sfx).c_str(), 8, 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      ch[q].from_control_tx = rte_ring_create(("bctx" + sfx).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!ch[q].to_control_pkts || !ch[q].to_control_resolve || !ch[q].from_control_tx) die("control rings");
    }
    for (const auto& tp : topo.paths)
      hub_paths.push_back(dp::EspPath{isp, live[tp.port].mac, tp.remote, topo.ports[tp.port].addr.addr,
                                      tp.remote_port, cfg.overlay_port, 1600});
    std::vector<std::string> path_names;
    for (const auto& tp : topo.paths) path_names.push_back(tp.name);
    compiler = std::make_unique<cp::PolicyCompiler>(cfg.classes, cfg.policy, std::vector<std::string>{"hub"},
                                                    path_names);
    policy = compile_policy(cfg, topo, *compiler);
  }
  void learn(uint8_t port, Ipv4 who, MacAddr m) {
    nm->want(port, who, false, 0);
    nm->on_arp(port, cp::ArpPacket{2, m, who, topo.ports[port].addr.addr}, 0);
  }
  // Fresh SAs (an inbound SA belongs to the first worker that meets it, so each worker set gets
  // its own) and a snapshot carrying them and the policy.
  void publish_fresh() {
    pub.publish(nullptr);
    sas = make_sas(cfg, topo, mk, hub_paths);
    auto s = cp::build_snapshot(topo, live, *nm, routes, ++generation, sas.snap);
    s->policy = policy;
    pub.publish(std::move(s));
  }
  // Paths the balance class's table uses, and the voice class's primary.
  std::string policy_text() const {
    std::string t;
    for (uint8_t c = 0; c < policy->n_classes; ++c) {
      const dp::ClassPaths& cp = policy->at(c, 0);
      std::array<uint32_t, kPaths> n{};
      for (uint16_t p : cp.lut)
        if (p < kPaths) ++n[p];
      t += (c ? "; " : "") + cfg.classes[c].name + " " + std::string(cp::mode_name(cp.mode));
      if (cp.lut.empty()) {
        t += " on " + (cp.primary < kPaths ? topo.paths[cp.primary].name : "none");
      } else {
        t += " over " + std::to_string(cp.lut.size()) + "-entry table:";
        for (uint32_t p = 0; p < kPaths; ++p) t += " " + topo.paths[p].name + "=" + std::to_string(n[p]);
      }
    }
    return t;
  }
};

// Crypto ceiling: raw intel-ipsec-mb AES-256-GCM encryption of `size` bytes (12-byte AAD as ESP
// with ESN, 16-byte tag) over kInFlight buffers, in groups of 32, on one core; three ways of
// calling the library (direct GCM API, job API, burst API), and the fastest is the ceiling.
// Run around each case on the worker's core (Lane::run), half before and half after.
struct CryptoFig {
  double mpps = 0;
  std::string mode;
  std::string all;  // every mode's figure
};
enum class ImbMode { kDirect, kJob, kBurst };
const char* imb_mode_name(ImbMode m) { return m == ImbMode::kDirect ? "direct" : m == ImbMode::kJob ? "job" : "burst"; }
constexpr std::array<ImbMode, 3> kImbModes = {ImbMode::kDirect, ImbMode::kJob, ImbMode::kBurst};

class GcmCeiling {
 public:
  explicit GcmCeiling(uint32_t size) : buf_(size_t(kInFlight) * kSlot, 0x5a), lens_(kInFlight) {
    mgr_ = alloc_mb_mgr(0);
    if (mgr_ == nullptr) die("alloc_mb_mgr");
    init_mb_mgr_auto(mgr_, &arch_);
    kd_ = static_cast<gcm_key_data*>(std::aligned_alloc(64, (sizeof(gcm_key_data) + 63) & ~size_t{63}));
    uint8_t key[32];
    for (size_t i = 0; i < sizeof key; ++i) key[i] = uint8_t(i * 7 + 1);
    IMB_AES256_GCM_PRE(mgr_, key, kd_);
    for (uint32_t i = 0; i < kInFlight; ++i) lens_[i] = frame_size(size, i);
    for (size_t m = 0; m < kImbModes.size(); ++m) group(kImbModes[m]);  // first calls set up the library
  }
  ~GcmCeiling() {
    std::free(kd_);
    free_mb_mgr(mgr_);
  }
  GcmCeiling(const GcmCeiling&) = delete;
  GcmCeiling& operator=(const GcmCeiling&) = delete;

  // About `cycles` TSC cycles, split evenly between the three APIs. As for the worker's polls,
  // a group of 32 the scheduler interrupted (over 100 us) does not count.
  void run(uint64_t cycles) {
    const uint64_t preempt = rte_get_tsc_hz() / 10000;
    for (size_t m = 0; m < kImbModes.size(); ++m) {
      const uint64_t end = rte_rdtsc() + cycles / kImbModes.size();
      for (uint64_t t0 = rte_rdtsc(); t0 < end;) {
        const uint32_t n = group(kImbModes[m]);
        const uint64_t t1 = rte_rdtsc();
        if (t1 - t0 < preempt) ops_[m] += n, cyc_[m] += t1 - t0;
        t0 = t1;
      }
    }
  }
  double mpps(size_t m) const { return cyc_[m] ? double(ops_[m]) / (double(cyc_[m]) / double(rte_get_tsc_hz())) / 1e6 : 0; }
  CryptoFig fig() const {
    CryptoFig f;
    for (size_t m = 0; m < kImbModes.size(); ++m) {
      char b[64];
      std::snprintf(b, sizeof b, "%s%s %.2f", f.all.empty() ? "" : ", ", imb_mode_name(kImbModes[m]), mpps(m));
      f.all += b;
      if (mpps(m) > f.mpps) f.mpps = mpps(m), f.mode = imb_mode_name(kImbModes[m]);
    }
    return f;
  }
  std::string arch() const {
    std::string a = arch_ == IMB_ARCH_AVX512 ? "avx512" : arch_ == IMB_ARCH_AVX2 ? "avx2" : arch_ == IMB_ARCH_AVX ? "avx" : "sse";
    if (mgr_->features & IMB_FEATURE_VAES) a += " (vaes)";
    return a;
  }

 private:
  static constexpr uint32_t kSlot = 2048;
  static constexpr uint32_t kGroup = 32;

  void fill(IMB_JOB* job, uint32_t j) {
    uint8_t* p = buf_.data() + size_t(j) * kSlot;
    job->cipher_mode = IMB_CIPHER_GCM;
    job->hash_alg = IMB_AUTH_AES_GMAC;
    job->cipher_direction = IMB_DIR_ENCRYPT;
    job->chain_order = IMB_ORDER_CIPHER_HASH;
    job->enc_keys = kd_;
    job->dec_keys = kd_;
    job->key_len_in_bytes = IMB_KEY_256_BYTES;
    job->src = p;
    job->dst = p;
    job->cipher_start_src_offset_in_bytes = 0;
    job->msg_len_to_cipher_in_bytes = lens_[j];
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = lens_[j];
    job->iv = iv_;
    job->iv_len_in_bytes = 12;
    job->u.GCM.aad = aad_;
    job->u.GCM.aad_len_in_bytes = kAadLen;
    job->auth_tag_output = p + 1600;
    job->auth_tag_output_len_in_bytes = 16;
  }

  // The next group of 32 buffers in one mode; returns the operations completed.
  uint32_t group(ImbMode mode) {
    const uint32_t i = pos_;
    pos_ = (pos_ + kGroup) % kInFlight;
    uint32_t n = 0;
    if (mode == ImbMode::kDirect) {
      for (uint32_t j = i; j < i + kGroup; ++j) {
        uint8_t* p = buf_.data() + size_t(j) * kSlot;
        IMB_AES256_GCM_ENC(mgr_, kd_, &ctx_, p, p, lens_[j], iv_, aad_, kAadLen, p + 1600, 16);
      }
      return kGroup;
    }
    if (mode == ImbMode::kJob) {
      for (uint32_t j = i; j < i + kGroup; ++j) {
        fill(IMB_GET_NEXT_JOB(mgr_), j);
        for (IMB_JOB* d = IMB_SUBMIT_JOB_NOCHECK(mgr_); d != nullptr; d = IMB_GET_COMPLETED_JOB(mgr_))
          n += d->status == IMB_STATUS_COMPLETED;
      }
      for (IMB_JOB* d = IMB_FLUSH_JOB(mgr_); d != nullptr; d = IMB_FLUSH_JOB(mgr_)) n += d->status == IMB_STATUS_COMPLETED;
      return n;
    }
    IMB_JOB* jobs[kGroup];
    const uint32_t got = IMB_GET_NEXT_BURST(mgr_, kGroup, jobs);
    for (uint32_t j = 0; j < got; ++j) fill(jobs[j], i + j);
    uint32_t done = IMB_SUBMIT_BURST_NOCHECK(mgr_, got, jobs);
    for (uint32_t j = 0; j < done; ++j) n += jobs[j]->status == IMB_STATUS_COMPLETED;
    if (done < got) {
      done = IMB_FLUSH_BURST(mgr_, got - done, jobs);
      for (uint32_t j = 0; j < done; ++j) n += jobs[j]->status == IMB_STATUS_COMPLETED;
    }
    return n;
  }

  IMB_MGR* mgr_ = nullptr;
  IMB_ARCH arch_{};
  gcm_key_data* kd_ = nullptr;
  alignas(64) gcm_context_data ctx_{};
  std::vector<uint8_t> buf_;
  std::vector<uint32_t> lens_;
  uint32_t pos_ = 0;
  alignas(16) uint8_t iv_[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  alignas(16) uint8_t aad_[16] = {};
  std::array<uint64_t, kImbModes.size()> ops_{}, cyc_{};
};

struct CaseSpec {
  Dir dir;
  uint32_t size, flows, lanes;
};

// One worker on one lcore, and the harness around it.
struct Lane {
  Edge* e = nullptr;
  dp::Worker* w = nullptr;
  uint16_t q = 0;
  CaseSpec c{};
  std::vector<rte_mbuf*> ms;
  std::vector<uint8_t> in_ports, out_ports;
  std::vector<uint8_t> paths;  // WAN->LAN: the paths whose SAs RSS steers to this lane's queue
  uint64_t k = 0;              // frames restored so far (selects the next flow)
  uint64_t* ov_seq = nullptr;  // WAN->LAN: the hub's overlay sequence of this stream (Edge's, lives across cases)
  std::unique_ptr<dp::CryptoEngine> gen;
  dp::EspCounters gen_ctr;
  std::unique_ptr<GcmCeiling> ceiling;  // measured around the worker's case
  uint64_t pkts = 0, all_pkts = 0, bytes = 0, cycles = 0, wall = 0, lost = 0, polls = 0, preempted = 0;
  uint64_t preempt_tsc = rte_get_tsc_hz() / 10000;  // 100 us: a poll of 128 packets takes a fraction of it
  bool warm_ok = true;
  // Start and stop shared by the lanes of a case.
  std::atomic<uint32_t>* ready = nullptr;
  std::atomic<uint64_t>* start_tsc = nullptr;
  double seconds = 0;

  uint32_t flow_of(uint64_t n) const {
    const uint64_t per_lane = std::max<uint64_t>(1, c.flows / c.lanes);
    return uint32_t((q + c.lanes * (n % per_lane)) % c.flows);
  }

  void prepare(rte_mbuf* m, uint32_t i) {
    const uint32_t len = frame_size(c.size, i) - kFcs;  // bytes in the mbuf
    Pristine* pr = pristine(m);
    pr->ov_off = 0xffff;
    if (c.dir == Dir::kProbeReflect) {
      auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(sizeof(dp::OverlayHdr) + dp::kProbeLen)));
      if (f == nullptr) die("probe append");
      std::memset(f, 0, sizeof(dp::OverlayHdr) + dp::kProbeLen);
      f[0] = uint8_t(dp::kOverlayVersion << 4 | 1);
      put32(f + sizeof(dp::OverlayHdr), i);
      pr->ip_off = 0xffff;
      pr->hdr_len = uint16_t(sizeof(dp::OverlayHdr) + dp::kProbeLen);
      pr->path = 0;
      pr->port = e->topo.paths[0].port;
    } else if (c.dir == Dir::kLanToWan) {
      auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(len)));
      std::memcpy(f, e->live[0].mac.b.data(), 6);
      std::memcpy(f + 6, e->host_a.b.data(), 6);
      put16(f + 12, 0x0800);
      ipv4_udp(f + 14, len - 14, ip("192.168.10.10").v, ip("192.168.20.2").v, 1024, kBulkPort);
      pr->ip_off = 14;
      pr->hdr_len = 14 + 28;
      pr->port = 0;
      pr->path = 0;
    } else {
      // Overlay header and inner packet as the hub's worker hands them to ESP; the hub's SA of
      // the frame's path seals them each time they go in. Every frame is marked duplicated, so
      // the edge's de-duplication window judges each one (no second copy arrives: none drops).
      auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(len - 14 + sizeof(dp::OverlayHdr))));
      std::memset(f, 0, sizeof(dp::OverlayHdr));
      f[0] = uint8_t(dp::kOverlayVersion << 4);
      f[1] = 1;  // class bulk
      f[2] = uint8_t(q);
      f[3] = dp::kOverlayDuplicated;
      ipv4_udp(f + sizeof(dp::OverlayHdr), len - 14, ip("192.168.20.10").v, ip("192.168.10.2").v, 1024, kBulkPort);
      pr->ov_off = 0;
      pr->ip_off = uint16_t(sizeof(dp::OverlayHdr));
      pr->hdr_len = uint16_t(pr->ip_off + 28);
      pr->path = paths[i % paths.size()];
      pr->port = e->topo.paths[pr->path].port;
    }
    pr->data_off = m->data_off;
    pr->len = uint16_t(rte_pktmbuf_data_len(m));
    std::memcpy(pr->hdr, rte_pktmbuf_mtod(m, uint8_t*), pr->hdr_len);
  }

  // Puts a frame back as prepared, as the next flow (source host and port; the destination
  // port picks the class: flows alternate in pairs between voice and bulk).
  void restore(rte_mbuf* m) {
    const Pristine* pr = pristine(m);
    m->data_off = pr->data_off;
    m->data_len = pr->len;
    m->pkt_len = pr->len;
    m->ol_flags = 0;
    uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
    std::memcpy(f, pr->hdr, pr->hdr_len);
    const uint32_t fl = flow_of(k++);
    if (pr->ip_off != 0xffff && (c.flows > 1 || c.lanes > 1)) {
      uint8_t* iph = f + pr->ip_off;
      iph[15] = uint8_t(iph[15] + fl / kFlowsPerHost);
      put16(iph + 20, uint16_t(1024 + fl % kFlowsPerHost));
      if (c.dir == Dir::kLanToWan) put16(iph + 22, (fl >> 1) & 1 ? kVoicePort : kBulkPort);
      set_cksum(iph);
    }
    if (pr->ov_off != 0xffff) put64(f + pr->ov_off + 8, ++*ov_seq);
  }

  // WAN -> LAN frames and probes go in sealed by the hub's SA of their path (outside the timed poll).
  void seal(rte_mbuf** b, uint32_t n) {
    for (; n > kRecycleBurst; b += kRecycleBurst, n -= kRecycleBurst) seal(b, kRecycleBurst);
    std::array<std::array<rte_mbuf*, kRecycleBurst>, kPaths> by{};
    std::array<uint32_t, kPaths> nb{};
    for (uint32_t i = 0; i < n; ++i) {
      const uint8_t p = pristine(b[i])->path;
      by[p][nb[p]++] = b[i];
    }
    for (uint32_t p = 0; p < kPaths; ++p)
      for (uint32_t i = 0; i < nb[p]; i += 32) {
        const uint32_t k2 = std::min<uint32_t>(32, nb[p] - i);
        if (dp::esp_encrypt_burst(*gen, *e->sas.hub_out[p], std::span<rte_mbuf*>(&by[p][i], k2), dp::kEspNextOverlay,
                                  gen_ctr) != k2)
          die("generator seal");
      }
  }

  // Back onto the RX queue each frame enters by.
  void requeue(rte_mbuf** b, uint32_t n) {
    if (in_ports.size() == 1) {
      if (rte_ring_sp_enqueue_bulk(e->rx[in_ports[0]][q], reinterpret_cast<void**>(b), n, nullptr) != n) die("requeue");
      return;
    }
    for (uint32_t i = 0; i < n; ++i)
      if (rte_ring_sp_enqueue(e->rx[pristine(b[i])->port][q], b[i]) != 0) die("requeue");
  }

  void recycle(rte_mbuf** b, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) restore(b[i]);
    if (c.dir != Dir::kLanToWan) seal(b, n);
    requeue(b, n);
  }

  void setup() {
    ms.resize(kInFlight);
    if (rte_pktmbuf_alloc_bulk(e->pool, ms.data(), kInFlight) != 0) die("mbuf alloc");
    in_ports.clear();
    out_ports.clear();
    paths.clear();
    if (c.dir == Dir::kLanToWan) {
      in_ports = {0};
      for (uint8_t p = 1; p <= kPaths; ++p) out_ports.push_back(p);
    } else if (c.dir == Dir::kWanToLan) {
      // RSS: each path's outer 5-tuple hashes to one queue; path % lanes stands for it here.
      for (uint8_t p = 0; p < kPaths; ++p)
        if (p % c.lanes == q) {
          paths.push_back(p);
          in_ports.push_back(e->topo.paths[p].port);
        }
      out_ports = {0};
    } else {
      in_ports = {e->topo.paths[0].port};
      out_ports = in_ports;
    }
    auto eng = dp::CryptoEngine::create();
    if (!eng) die("generator crypto engine");
    gen = std::move(*eng);
    for (uint32_t i = 0; i < kInFlight; ++i) prepare(ms[i], i);
    recycle(ms.data(), kInFlight);
    if (c.dir != Dir::kProbeReflect) ceiling = std::make_unique<GcmCeiling>(c.size);
  }

  void step(bool measure) {
    const uint64_t t0 = rte_rdtsc();
    w->poll_once();
    const uint64_t dt = rte_rdtsc() - t0;
    // A poll the scheduler interrupted (this machine is shared) counts neither its cycles nor
    // its packets; the share of such polls is reported.
    const bool keep = measure && dt < preempt_tsc;
    if (measure) {
      ++polls;
      if (keep) cycles += dt;
      else ++preempted;
    }
    std::array<rte_mbuf*, kRecycleBurst> b;
    for (uint8_t p : out_ports) {
      unsigned n;
      while ((n = rte_ring_sc_dequeue_burst(e->tx[p][q], reinterpret_cast<void**>(b.data()), kRecycleBurst,
                                            nullptr)) != 0) {
        if (measure) all_pkts += n;
        if (keep) {
          pkts += n;
          for (unsigned i = 0; i < n; ++i) bytes += b[i]->pkt_len;
        }
        recycle(b.data(), n);
      }
    }
  }

  void run() {
    const uint64_t hz = rte_get_tsc_hz();
    // Warm-up: every flow of the lane once (fills the flow cache) and at least 0.2 s.
    const uint64_t per_lane = std::max<uint64_t>(1, c.flows / c.lanes);
    const uint64_t warm_start = rte_rdtsc(), warm_end = warm_start + hz / 5, give_up = warm_start + 20 * hz;
    while ((rte_rdtsc() < warm_end || k < per_lane + kInFlight) && rte_rdtsc() < give_up) step(false);
    warm_ok = k >= per_lane + kInFlight;
    // The crypto ceiling around the case, on the same core: half just before, half just after
    // (this machine is shared and its speed drifts, so each case gets its own, measured on both
    // sides of it). Not interleaved with the worker's polls: that lowered the direct API's figure
    // by 15 % (its code and data cold after each slice), which would flatter the ratio.
    if (ceiling) ceiling->run(uint64_t(seconds * double(hz)) / 4);
    // Every lane starts measuring at the same time, once all are warm.
    ready->fetch_add(1);
    while (start_tsc->load() == 0) {
      step(false);
      if (q == 0 && ready->load() == c.lanes) start_tsc->store(rte_rdtsc());
    }
    const uint64_t start = start_tsc->load(), end = start + uint64_t(seconds * double(hz));
    while (rte_rdtsc() < end) step(true);
    wall = rte_rdtsc() - start;
    if (ceiling) ceiling->run(uint64_t(seconds * double(hz)) / 4);
  }

  void finish() {
    uint64_t held = 0;
    for (uint8_t p : in_ports) held += rte_ring_count(e->rx[p][q]);
    for (uint8_t p : out_ports) held += rte_ring_count(e->tx[p][q]);
    // Whatever the worker dropped went back to the pool: say so rather than hide it.
    lost = kInFlight - std::min<uint64_t>(held, kInFlight);
    for (size_t p = 0; p < e->rx.size(); ++p)
      for (rte_ring* ring : {e->rx[p][q], e->tx[p][q]}) {
        void* v;
        while (rte_ring_dequeue(ring, &v) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(v));
      }
    void* v;
    while (rte_ring_dequeue(e->ch[q].to_control_pkts, &v) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(v));
  }
};

int lane_main(void* arg) {
  static_cast<Lane*>(arg)->run();
  return 0;
}

struct CaseResult {
  CaseSpec c{};
  uint64_t pkts = 0, all_pkts = 0, bytes = 0, worker_cycles = 0, lost = 0, polls = 0, preempted = 0;
  double mpps = 0, gbps = 0, cpp = 0, mpps_wall = 0, crypto_mpps = 0, testpmd_mpps = 0, scaling = 0;
  // The scaling in units of each case's own crypto ceiling: (mpps / crypto) over the 1-worker
  // case's. The machine's speed drifts between cases; each case's ceiling drifts with it.
  double scaling_per_ceiling = 0;
  std::string crypto_mode, crypto_all;  // the fastest API; every API's figure (lane 0)
  long peak_rss_kb = 0, rss_kb = 0;
  uint32_t flow_entries = 0;  // the workers' flow caches after the case (entries live 120 s)
  uint64_t hugepage_bytes = 0, dpdk_heap_bytes = 0;
  std::string drops;          // the workers' drop counters that moved during the case
  std::string spread;         // LAN->WAN: the share of each path and class
  std::string lanes_text;     // 2 workers: each one's figures
};

// Hugepage memory this process holds: DPDK's memory segments backed by huge pages.
uint64_t hugepage_bytes() {
  uint64_t total = 0;
  rte_memseg_walk(
      [](const rte_memseg_list* msl, const rte_memseg* ms, void* arg) {
        if (msl->page_sz >= (uint64_t{2} << 20) && !msl->external) *static_cast<uint64_t*>(arg) += ms->len;
        return 0;
      },
      &total);
  return total;
}
uint64_t dpdk_heap_in_use() {
  rte_malloc_socket_stats st{};
  return rte_malloc_get_socket_stats(int(rte_socket_id()), &st) == 0 ? st.heap_allocsz_bytes : 0;
}
long peak_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}
long rss_kb() {
  std::ifstream f("/proc/self/statm");
  long size = 0, res = 0;
  f >> size >> res;
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

// Drop counters of a worker as "name=n ..." (diagnostics when a case loses packets).
std::string drop_text(const dp::Worker& w) {
  std::string t;
  for (size_t i = 0; i < size_t(dp::Drop::kCount); ++i)
    if (const uint64_t n = w.counters().drops[i].load()) t += " " + std::string(dp::drop_name(dp::Drop(i))) + "=" + std::to_string(n);
  for (size_t i = 0; i < size_t(dp::EspDrop::kCount); ++i)
    if (const uint64_t n = w.esp_counters().dropped(dp::EspDrop(i)))
      t += " esp:" + std::string(dp::esp_drop_name(dp::EspDrop(i))) + "=" + std::to_string(n);
  return t;
}

CaseResult run_case(Edge& e, std::vector<std::unique_ptr<dp::Worker>>& ws, const CaseSpec& c, double seconds,
                const std::vector<unsigned>& lcores) {
  CaseResult r;
  r.c = c;
  std::vector<Lane> lanes(c.lanes);
  std::vector<std::string> drops_before;
  for (uint32_t i = 0; i < c.lanes; ++i) drops_before.push_back(drop_text(*ws[i]));
  // Where LAN->WAN packets went: per path and per class, over the case (warm-up included).
  auto spread = [&] {
    std::array<uint64_t, kPaths + 2> v{};
    for (uint32_t i = 0; i < c.lanes; ++i) {
      for (uint32_t p = 0; p < kPaths; ++p) v[p] += ws[i]->path_counters()[p].tx_pkts.load();
      for (uint32_t k = 0; k < 2; ++k) v[kPaths + k] += ws[i]->counters().class_pkts[k].load();
    }
    return v;
  };
  const auto spread0 = spread();
  std::atomic<uint32_t> ready{0};
  std::atomic<uint64_t> start{0};
  for (uint32_t i = 0; i < c.lanes; ++i) {
    Lane& l = lanes[i];
    l.e = &e;
    l.w = ws[i].get();
    l.q = uint16_t(i);
    l.c = c;
    l.ready = &ready;
    l.start_tsc = &start;
    l.seconds = seconds;
    l.ov_seq = &e.ov_seq[i];
    l.setup();
  }
  for (uint32_t i = 1; i < c.lanes; ++i)
    if (rte_eal_remote_launch(lane_main, &lanes[i], lcores[i]) != 0) die("remote launch");
  lanes[0].run();
  rte_eal_mp_wait_lcore();
  const uint64_t hz = rte_get_tsc_hz();
  uint64_t wall = 0;
  for (uint32_t i = 0; i < c.lanes; ++i) {
    Lane& l = lanes[i];
    l.finish();
    if (!l.warm_ok)
      std::fprintf(stderr, "bench_pipeline: %s %s lane %u: warm-up did not see every flow; drops:%s\n", dir_name(c.dir),
                   size_name(c.size).c_str(), i, drop_text(*ws[i]).c_str());
    r.pkts += l.pkts;
    r.all_pkts += l.all_pkts;
    r.polls += l.polls;
    r.preempted += l.preempted;
    r.bytes += l.bytes;
    r.worker_cycles += l.cycles;
    r.lost += l.lost;
    wall = std::max(wall, l.wall);
    if (l.ceiling) {
      const CryptoFig f = l.ceiling->fig();
      r.crypto_mpps += f.mpps / c.lanes;
      if (i == 0) r.crypto_mode = f.mode, r.crypto_all = f.all;
    }
    // Each worker's rate on its own core; the case's is their sum.
    if (l.cycles) r.mpps += double(l.pkts) / (double(l.cycles) / double(hz)) / 1e6;
    r.flow_entries += ws[i]->flow_count();
    if (c.lanes > 1) {
      char b[160];
      std::snprintf(b, sizeof b, "%sw%u on lcore %u: %.2f Mpps in its poll cycles, %.2f Mpps wall, %.1f%% polls preempted",
                    i ? "; " : "", i, lcores[i], l.cycles ? double(l.pkts) / (double(l.cycles) / double(hz)) / 1e6 : 0.0,
                    l.wall ? double(l.all_pkts) / (double(l.wall) / double(hz)) / 1e6 : 0.0,
                    l.polls ? 100.0 * double(l.preempted) / double(l.polls) : 0.0);
      r.lanes_text += b;
    }
    const std::string d = drop_text(*ws[i]);
    if (d != drops_before[i]) r.drops += " w" + std::to_string(i) + ":" + d;
  }
  if (c.dir == Dir::kLanToWan) {
    const auto spread1 = spread();
    uint64_t tot = 0;
    for (uint32_t p = 0; p < kPaths; ++p) tot += spread1[p] - spread0[p];
    char b[160];
    std::snprintf(b, sizeof b, "isp1..4 %.0f/%.0f/%.0f/%.0f %%, voice/bulk %.0f/%.0f %%", 
                  100.0 * double(spread1[0] - spread0[0]) / double(std::max<uint64_t>(1, tot)),
                  100.0 * double(spread1[1] - spread0[1]) / double(std::max<uint64_t>(1, tot)),
                  100.0 * double(spread1[2] - spread0[2]) / double(std::max<uint64_t>(1, tot)),
                  100.0 * double(spread1[3] - spread0[3]) / double(std::max<uint64_t>(1, tot)),
                  100.0 * double(spread1[4] - spread0[4]) / double(std::max<uint64_t>(1, tot)),
                  100.0 * double(spread1[5] - spread0[5]) / double(std::max<uint64_t>(1, tot)));
    r.spread = b;
  }
  // Overlay headers (WAN->LAN) and outer headers (LAN->WAN) are not inner bytes.
  const double inner = c.size == kImixId ? imix_mean() : double(c.size);
  r.gbps = r.mpps * inner * 8 / 1e3;
  r.cpp = r.pkts ? double(r.worker_cycles) / double(r.pkts) : 0;
  r.mpps_wall = wall ? double(r.all_pkts) / (double(wall) / double(hz)) / 1e6 : 0;
  r.peak_rss_kb = peak_rss_kb();
  r.rss_kb = rss_kb();
  r.hugepage_bytes = hugepage_bytes();
  r.dpdk_heap_bytes = dpdk_heap_in_use();
  return r;
}

// testpmd ceiling: io forwarding between two net_ring ports (each a ring looped from its TX to
// its RX, seeded with --tx-first) on one forwarding core: the median of its per-second samples
// once forwarding runs; the sum of both ports' Tx-pps. 0 when it cannot run.
double testpmd_ceiling(uint32_t size, double seconds, const std::string& lcores) {
  const std::string prefix = "sdwan-bench-tpmd-" + std::to_string(getpid());
  const std::string log = "/tmp/" + prefix + ".log";
  const uint32_t len = (size == kImixId ? uint32_t(imix_mean()) : size) - kFcs;
  const int secs = std::max(5, int(seconds) + 4);
  const std::string cmd = "timeout -s INT " + std::to_string(secs) + " dpdk-testpmd -l " + lcores +
                          " --no-huge -m 512 --no-pci --file-prefix " + prefix +
                          " --vdev net_ring0 --vdev net_ring1 -- --forward-mode=io --nb-cores=1"
                          " --total-num-mbufs=8192 --stats-period 1 --tx-first --txpkts=" +
                          std::to_string(len) + " > " + log + " 2>&1";
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
    if (++ports == 2) {
      if (sum > 0) samples.push_back(sum);
      sum = 0, ports = 0;
    }
  }
  std::error_code ec;
  std::filesystem::remove(log, ec);
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  if (samples.size() < 2) return 0;
  samples.erase(samples.begin());
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2] / 1e6;
}

// Memory of a hub with 4,000 paths (1,000 peers x 4 uplinks) as sdwand builds it: config,
// topology, routes, the SA table and its 4,000 outbound and 16,000 inbound SA runtimes (current
// epoch and 3 ahead), the inbound table, the snapshot and the compiled policy of 2 classes.
struct PathMem {
  size_t paths = 0, out_sas = 0, in_sas = 0;
  uint64_t heap = 0, dpdk = 0, sa_bytes = 0, rss_kb = 0;
};
PathMem memory_4000_paths(const Edge& e) {
  std::string y =
      "name: bench-hub\nrole: hub\nlan: {port: \"ring:lan\", address: 192.168.20.1/24}\nuplinks:\n"
      "  - {name: isp1, port: \"ring:isp1\", address: 10.2.1.2/16, next_hop: 10.2.0.1}\n"
      "  - {name: isp2, port: \"ring:isp2\", address: 10.3.1.2/16, next_hop: 10.3.0.1}\n"
      "  - {name: isp3, port: \"ring:isp3\", address: 10.4.1.2/16, next_hop: 10.4.0.1}\n"
      "  - {name: isp4, port: \"ring:isp4\", address: 10.5.1.2/16, next_hop: 10.5.0.1}\npeers:\n";
  for (int p = 0; p < 1000; ++p) {
    y += "  - name: edge" + std::to_string(p) + "\n    key_file: /nonexistent/bench.key\n    endpoints:\n";
    for (int u = 0; u < 4; ++u)
      y += "      - {address: 100." + std::to_string(64 + u) + "." + std::to_string(p / 250) + "." +
           std::to_string(p % 250 + 1) + ", uplinks: [isp" + std::to_string(u + 1) + "], link: " +
           std::to_string(p * 4 + u) + "}\n";
    y += "    prefixes: [172." + std::to_string(16 + p / 250) + "." + std::to_string(p % 250) + ".0/24]\n";
  }
  y += "classes:\n  - name: voice\n    match: [{proto: udp, dport: 5004}]\n    mode: best\n"
       "  - name: bulk\n    default: true\n    mode: balance\n";
  PathMem m;
  malloc_trim(0);
  const auto heap0 = mallinfo2().uordblks;
  const uint64_t dpdk0 = dpdk_heap_in_use();
  const long rss0 = rss_kb();
  {
    auto cfg = must(cp::parse_config(y, "bench-hub.yaml"), "4,000-path config");
    auto topo = cp::make_topology(cfg);
    auto routes = must(cp::build_routes(cfg, int(rte_socket_id())), "routes");
    std::vector<cp::NeighborPort> nps;
    std::vector<cp::PortLive> live;
    for (size_t i = 0; i < topo.ports.size(); ++i) {
      nps.push_back({uint8_t(i), e.live[i].mac, topo.ports[i].addr});
      live.push_back({e.live[i].port_id, e.live[i].mac, true});
    }
    cp::NeighborManager nm(nps);
    for (uint8_t i = 1; i <= 4; ++i) {
      nm.want(i, cfg.uplinks[i - 1].next_hop, false, 0);
      nm.on_arp(i, cp::ArpPacket{2, e.isp, cfg.uplinks[i - 1].next_hop, topo.ports[i].addr.addr}, 0);
    }
    auto sas = make_sas(cfg, topo, e.mk, {});
    std::vector<std::string> peers, names;
    for (const auto& p : cfg.peers) peers.push_back(p.name);
    for (const auto& tp : topo.paths) names.push_back(tp.name);
    cp::PolicyCompiler pc(cfg.classes, cfg.policy, peers, names);
    auto pol = compile_policy(cfg, topo, pc);
    auto snap = cp::build_snapshot(topo, live, nm, routes, 1, sas.snap);
    snap->policy = pol;
    m.paths = topo.paths.size();
    m.out_sas = sas.n_out;
    m.in_sas = sas.n_in;
    m.sa_bytes = sas.n_out * sizeof(dp::OutboundSa) + sas.n_in * sizeof(dp::InboundSa);
    m.heap = mallinfo2().uordblks - heap0;
    m.dpdk = dpdk_heap_in_use() - dpdk0;
    m.rss_kb = uint64_t(std::max(0L, rss_kb() - rss0));
  }
  return m;
}

struct Args {
  double seconds = 2.0;
  std::string json;
  unsigned core = 1;
  std::vector<uint32_t> sizes = {64, 512, 1400, kImixId};
  std::vector<uint32_t> flows = {1, 1000000};
  std::vector<uint32_t> workers = {1, 2};
  std::vector<Dir> dirs = {Dir::kLanToWan, Dir::kWanToLan, Dir::kProbeReflect};
  bool testpmd = true;
  bool memory = true;
  uint32_t ablate = 0;  // dataplane/api/ablation.hpp bits (a -Dbench_ablation=true build only)
};

void usage() {
  std::puts(
      "bench_pipeline [--seconds S] [--json FILE] [--core N] [--sizes 64,512,1400,imix] [--flows 1,1000000]\n"
      "               [--workers 1,2] [--dirs lan_to_wan,wan_to_lan,probe_refl] [--no-testpmd] [--no-memory]\n"
      "               [--ablate BITS]\n"
      "The real worker on ring ports, LAN->WAN (parse, classify, flow cache, path choice over 4 paths,\n"
      "overlay, ESP encrypt, TX) and WAN->LAN (ESP decrypt, anti-replay, de-duplication, route, TX), one\n"
      "worker on lcore N and 2 workers (lcore N and another) with the largest flow count, beside raw\n"
      "AES-256-GCM (intel-ipsec-mb) and dpdk-testpmd io forwarding measured in the same run.\n"
      "--ablate BITS (a build with meson -Dbench_ablation=true only): skip the worker's stages named by\n"
      "dataplane/api/ablation.hpp, for bench/RESULTS.md's table of what each stage costs.");
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
    else if (k == "--workers" && has) a->workers = list(argv[++i], false);
    else if (k == "--dirs" && has) {
      a->dirs.clear();
      std::stringstream ss(argv[++i]);
      std::string t;
      while (std::getline(ss, t, ',')) {
        if (t == "lan_to_wan") a->dirs.push_back(Dir::kLanToWan);
        else if (t == "wan_to_lan") a->dirs.push_back(Dir::kWanToLan);
        else if (t == "probe_refl") a->dirs.push_back(Dir::kProbeReflect);
        else return false;
      }
    } else if (k == "--no-testpmd") a->testpmd = false;
    else if (k == "--no-memory") a->memory = false;
    else if (k == "--ablate" && has) a->ablate = uint32_t(std::strtoul(argv[++i], nullptr, 0));
    else return false;
  }
  for (uint32_t s : a->sizes)
    if (s != kImixId && (s < 64 || s > 1518)) return false;
  for (uint32_t f : a->flows)
    if (f < 1 || f > 16 * kFlowsPerHost) return false;
  for (uint32_t w : a->workers)
    if (w < 1 || w > kMaxLanes) return false;
  return a->seconds > 0 && !a->sizes.empty() && !a->flows.empty() && !a->workers.empty();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}
std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return s;
}

int main_(int argc, char** argv) {
  Args a;
  if (!parse_args(argc, argv, &a)) {
    usage();
    return 2;
  }
  if (a.ablate != 0) {
#if defined(SDWAN_BENCH_ABLATION)
    dp::g_ablation = a.ablate;
    std::printf("ABLATION 0x%x: stages skipped (dataplane/api/ablation.hpp); these figures are a cost table, "
                "not the pipeline's\n", a.ablate);
#else
    std::fprintf(stderr, "bench_pipeline: --ablate needs a build with meson -Dbench_ablation=true\n");
    return 2;
#endif
  }
  // Hugepages when enough are free for the pool and the flow caches, else --no-huge.
  std::ifstream mi("/proc/meminfo");
  std::string k;
  uint64_t v, hp_free = 0, hp_size = 0;
  while (mi >> k >> v) {
    if (k == "HugePages_Free:") hp_free = v;
    if (k == "Hugepagesize:") hp_size = v * 1024;
    mi.ignore(256, '\n');
  }
  const bool huge = hp_free * hp_size >= (uint64_t{512} << 20);
  const std::string prefix = "sdwan-bench-" + std::to_string(getpid());
  const unsigned ncpu = unsigned(sysconf(_SC_NPROCESSORS_ONLN));
  if (a.core >= ncpu) a.core = ncpu - 1;
  // A second lcore for the 2-worker cases: the other core of this 2-core machine.
  const unsigned other = a.core == 0 ? 1 : 0;
  const bool two = ncpu > 1 && std::find(a.workers.begin(), a.workers.end(), 2u) != a.workers.end();
  std::vector<unsigned> lcores = {a.core};
  if (two) lcores.push_back(other);
  std::string lc = std::to_string(a.core);
  if (two) lc += "," + std::to_string(other);
  std::vector<std::string> eal = {"bench_pipeline", "-l", lc, "--main-lcore", std::to_string(a.core),
                                  "--file-prefix", prefix, "--no-pci", "--log-level", "*:warning"};
  if (!huge) eal.insert(eal.end(), {"--no-huge", "-m", "1024"});
  std::vector<char*> ev;
  for (auto& s : eal) ev.push_back(s.data());
  const std::string load_start = loadavg();
  if (rte_eal_init(int(ev.size()), ev.data()) < 0) {
    std::fprintf(stderr, "bench_pipeline: EAL init failed\n");
    return 1;
  }
  uint32_t max_flows = 1;
  for (uint32_t f : a.flows) max_flows = std::max(max_flows, f);
  int rc = 0;
  {
    Edge e;
    std::vector<CaseResult> rs;
    std::vector<CaseSpec> cases;
    for (uint32_t w : a.workers) {
      if (w > lcores.size()) continue;
      for (Dir d : {Dir::kLanToWan, Dir::kWanToLan})
        if (std::find(a.dirs.begin(), a.dirs.end(), d) != a.dirs.end())
        for (uint32_t s : a.sizes)
          for (uint32_t f : a.flows)
            // RSS cannot split one flow; two workers get the largest flow count only.
            if (w == 1 || (f == max_flows && f >= w)) cases.push_back({d, s, f, w});
      if (w == 1 && std::find(a.dirs.begin(), a.dirs.end(), Dir::kProbeReflect) != a.dirs.end())
        cases.push_back({Dir::kProbeReflect, a.sizes[0], 1, 1});
    }
    uint64_t flow_cache_bytes = 0, flow_cache_slots = 0;
    for (uint32_t w : a.workers) {
      if (w > lcores.size()) continue;
      // Each worker set gets fresh SAs and its own flow caches, sized twice its share of flows.
      e.publish_fresh();
      std::vector<std::unique_ptr<dp::Worker>> ws;
      const uint32_t cap = std::max<uint32_t>(65536, max_flows / w * 2);
      for (uint32_t i = 0; i < w; ++i) {
        dp::WorkerConfig wc;
        wc.index = uint16_t(i);
        wc.count = uint16_t(w);
        for (uint8_t p = 0; p < e.topo.ports.size(); ++p) wc.rx.push_back({p, uint16_t(i)});
        wc.snapshot = &e.pub;
        wc.channels = e.ch[i];
        wc.idle = dp::IdlePolicy::kBusy;
        wc.flow_capacity = cap;
        ws.push_back(std::make_unique<dp::Worker>(wc));
      }
      if (w == 1) flow_cache_bytes = dp::FlowCache::bytes_for(cap), flow_cache_slots = dp::FlowCache::slots_for(cap);
      for (const auto& c : cases)
        if (c.lanes == w) rs.push_back(run_case(e, ws, c, a.seconds, lcores));
      e.pub.publish(nullptr);
    }
    std::vector<double> tp;
    // testpmd forwards on the worker's core, its main lcore on the other.
    const std::string tl = ncpu > 1 ? std::to_string(other) + "," + std::to_string(a.core) : "0";
    for (uint32_t s : a.sizes) tp.push_back(a.testpmd ? testpmd_ceiling(s, a.seconds, tl) : 0);
    for (auto& r : rs) {
      const size_t i = size_t(std::find(a.sizes.begin(), a.sizes.end(), r.c.size) - a.sizes.begin());
      r.testpmd_mpps = tp[i];
      if (r.c.lanes > 1)
        for (const auto& o : rs)
          if (o.c.lanes == 1 && o.c.dir == r.c.dir && o.c.size == r.c.size && o.c.flows == r.c.flows && o.mpps > 0) {
            r.scaling = r.mpps / o.mpps;
            if (r.crypto_mpps > 0 && o.crypto_mpps > 0)
              r.scaling_per_ceiling = (r.mpps / r.crypto_mpps) / (o.mpps / o.crypto_mpps);
          }
    }
    PathMem pm;
    if (a.memory) pm = memory_4000_paths(e);
    const std::string load_end = loadavg();

    std::printf("sdwan-edge bench_pipeline: worker lcore %u%s, %s, %.1f s per case, TSC %.2f GHz\n", a.core,
                two ? (", second worker lcore " + std::to_string(other)).c_str() : "", huge ? "hugepages" : "--no-huge",
                a.seconds, double(rte_get_tsc_hz()) / 1e9);
    std::printf("CPU: %s, %u CPUs; load average %s at start, %s at end; %s, intel-ipsec-mb %s\n", cpu_model().c_str(),
                ncpu, load_start.c_str(), load_end.c_str(), rte_version(), imb_get_version_str());
    std::printf("pipeline: 1 peer, 4 paths over 4 uplinks, ESP AES-256-GCM (ESN) in UDP with SAs derived as sdwand does;\n"
                "  classes (compiled by PolicyCompiler): %s\n"
                "  LAN->WAN flows alternate in pairs between voice (UDP 5004) and bulk (5001); 1 flow is bulk.\n"
                "  WAN->LAN: every frame sealed by the hub's SA of its path, marked duplicated (de-duplication per packet).\n",
                e.policy_text().c_str());
    std::printf("crypto ceiling: raw intel-ipsec-mb AES-256-GCM seal of the case's sizes, %s, the fastest of the direct, job\n"
                "  and burst APIs, on the worker's core around each case, half before and half after (2 workers: the mean of both cores);\n"
                "testpmd: io fwd, 2 x net_ring, 1 fwd core (lcore %u), after the cases\n",
                GcmCeiling(64).arch().c_str(), a.core);
    std::printf("Mpps per case: the sum over its workers of packets / cycles inside poll_once(), leaving out polls of more than\n"
                "  100 us (the scheduler took the core: share in 'preempt'); /crypt and /tpmd per worker; x1w: Mpps over the\n"
                "  1-worker case's, x1w/c: the same in units of each case's crypto ceiling (the machine's speed drifts between cases)\n");
    std::printf("\n%-11s %5s %8s %2s %8s %8s %8s %9s %8s %8s %7s %7s %6s %6s %6s %9s %7s\n", "direction", "size", "flows", "w",
                "Mpps", "Gbps", "cyc/pkt", "wall Mpps", "crypto", "testpmd", "/crypt", "/tpmd", "x1w", "x1w/c", "lost", "RSS MiB", "preempt");
    for (const auto& r : rs) {
      const double per = r.mpps / r.c.lanes;
      std::printf("%-11s %5s %8u %2u %8.2f %8.2f %8.1f %9.2f %8.2f %8.2f %7.3f %7.3f %6s %6s %6lu %9ld %6.1f%%\n", dir_name(r.c.dir),
                  r.c.dir == Dir::kProbeReflect ? "stamp" : size_name(r.c.size).c_str(), r.c.flows, r.c.lanes, r.mpps,
                  r.gbps, r.cpp, r.mpps_wall, r.crypto_mpps, r.testpmd_mpps, r.crypto_mpps > 0 ? per / r.crypto_mpps : 0,
                  r.testpmd_mpps > 0 ? per / r.testpmd_mpps : 0,
                  r.scaling > 0 ? (std::to_string(r.scaling).substr(0, 4)).c_str() : "",
                  r.scaling_per_ceiling > 0 ? (std::to_string(r.scaling_per_ceiling).substr(0, 4)).c_str() : "",
                  static_cast<unsigned long>(r.lost),
                  r.rss_kb / 1024, r.polls ? 100.0 * double(r.preempted) / double(r.polls) : 0.0);
      if (r.lost || !r.drops.empty()) std::printf("    drops:%s\n", r.drops.c_str());
      if (!r.spread.empty() && r.c.flows > 1) std::printf("    %s\n", r.spread.c_str());
      if (!r.lanes_text.empty()) std::printf("    %s\n", r.lanes_text.c_str());
    }
    std::printf("\ncrypto ceiling per case, every API (Mpps):\n");
    for (const auto& r : rs)
      if (!r.crypto_all.empty())
        std::printf("  %s %s %u flows %u w: %s\n", dir_name(r.c.dir), size_name(r.c.size).c_str(), r.c.flows, r.c.lanes,
                    r.crypto_all.c_str());
    std::printf("testpmd per size:");
    for (size_t i = 0; i < a.sizes.size(); ++i) std::printf(" %s %.2f Mpps;", size_name(a.sizes[i]).c_str(), tp[i]);
    std::printf("\n");
    std::printf("memory: peak RSS %s KiB; hugepages held by this process %lu MiB (DPDK heap in use %lu MiB)\n",
                commas(uint64_t(peak_rss_kb())).c_str(), static_cast<unsigned long>(hugepage_bytes() >> 20),
                static_cast<unsigned long>(dpdk_heap_in_use() >> 20));
    std::printf("memory for %s flows: flow cache of one worker %s slots x %.0f B = %.1f MiB (32-byte entries, two to a line, and 24 bytes of totals)\n",
                commas(max_flows).c_str(), commas(flow_cache_slots).c_str(),
                double(flow_cache_bytes) / double(std::max<uint64_t>(1, flow_cache_slots)), double(flow_cache_bytes) / (1 << 20));
    if (a.memory)
      std::printf("memory for %zu paths (1,000 peers x 4 uplinks, as sdwand builds them): %.1f MiB malloc + %.1f MiB DPDK heap "
                  "(RSS +%.1f MiB); of it %zu outbound + %zu inbound SA runtimes %.1f MiB (%zu / %zu B each); the DPDK heap\n"
                  "  is mostly the route table's rte_lpm (tbl24: 64 MiB whatever the number of routes)\n",
                  pm.paths, double(pm.heap) / (1 << 20), double(pm.dpdk) / (1 << 20), double(pm.rss_kb) / 1024, pm.out_sas,
                  pm.in_sas, double(pm.sa_bytes) / (1 << 20), sizeof(dp::OutboundSa), sizeof(dp::InboundSa));
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
          const double per = r.mpps / r.c.lanes;
          std::fprintf(j,
                       "  {\"direction\": \"%s\", \"size\": \"%s\", \"flows\": %u, \"workers\": %u, \"mpps\": %.4f, "
                       "\"gbps\": %.4f, \"cycles_per_packet\": %.2f, \"ratio_to_crypto\": %.4f, \"ratio_to_testpmd\": %.4f, "
                       "\"mpps_per_worker\": %.4f, \"scaling_vs_1_worker\": %.4f, \"scaling_per_ceiling\": %.4f, "
                       "\"crypto_mpps\": %.4f, \"crypto_mode\": \"%s\", \"testpmd_mpps\": %.4f, \"mpps_wall\": %.4f, "
                       "\"lost\": %lu, \"polls\": %lu, \"polls_preempted\": %lu, \"flow_entries\": %u, \"peak_rss_kb\": %ld, \"rss_kb\": %ld, "
                       "\"hugepage_bytes\": %lu, \"dpdk_heap_bytes\": %lu, \"hugepages\": %s}%s\n",
                       dir_name(r.c.dir), r.c.dir == Dir::kProbeReflect ? "stamp" : size_name(r.c.size).c_str(), r.c.flows,
                       r.c.lanes, r.mpps, r.gbps, r.cpp, r.crypto_mpps > 0 ? per / r.crypto_mpps : 0,
                       r.testpmd_mpps > 0 ? per / r.testpmd_mpps : 0, per, r.scaling, r.scaling_per_ceiling, r.crypto_mpps,
                       r.crypto_mode.c_str(),
                       r.testpmd_mpps, r.mpps_wall, static_cast<unsigned long>(r.lost), static_cast<unsigned long>(r.polls),
                       static_cast<unsigned long>(r.preempted), r.flow_entries, r.peak_rss_kb,
                       r.rss_kb, static_cast<unsigned long>(r.hugepage_bytes),
                       static_cast<unsigned long>(r.dpdk_heap_bytes), huge ? "true" : "false", i + 1 < rs.size() ? "," : "");
        }
        std::fprintf(j, "]\n");
        std::fclose(j);
      }
    }
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
