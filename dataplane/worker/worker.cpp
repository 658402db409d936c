// The worker loop: RX burst -> parse -> route -> flow cache -> path -> overlay -> ESP per path
// in bursts -> TX burst, and the reverse (ESP decrypt in bursts -> overlay -> route). Run to completion; per packet no allocation, lock, syscall or log line:
// every failure is a per-worker counter (dataplane/api/counters.hpp).
#include "dataplane/api/worker.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_lpm.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>

#include "dataplane/api/ablation.hpp"
#include "dataplane/esp/esp.hpp"
#include "dataplane/esp/sa.hpp"
#include "dataplane/flow/flow_cache.hpp"
#include "dataplane/overlay/overlay.hpp"
#include "dataplane/overlay/stamp.hpp"
#include "dataplane/parse/parse.hpp"
#include "dataplane/proto/proto.hpp"

namespace sdwan::dp {
namespace {

constexpr uint16_t kBurst = 32;
// Under load a poll reads its queues in rounds, each round one burst from every queue whose last
// burst came full, until a round ends with this many packets taken: the poll's fixed work
// (timers, flushes, expiry, the quiescent state) is shared by up to four bursts, the loaded
// queues get equal shares (a budget spent queue by queue let the first loaded queue starve the
// others, reordering four paths' traffic beyond the de-duplication window), and a poll ends after
// at most kPollBudget + one burst per queue, which bounds how stale its timestamp gets (probe
// times are taken per poll).
constexpr uint32_t kPollBudget = 128;
constexpr uint16_t kTxBuf = 64;
constexpr uint32_t kPrefetchAhead = 3;
constexpr uint32_t kControlTxPerPoll = 32;
constexpr uint32_t kExpireBucketsPerPoll = 256;  // at most (512 flows), after a long pause
constexpr uint64_t kFlowSweepSeconds = 10;       // every bucket of the flow cache is looked at this often
constexpr uint64_t kFlowIdleSeconds = 120;
constexpr uint32_t kFlowTickShift = 16;  // the flow cache's tick: 2^16 TSC cycles (~25 us at 2.6 GHz)
constexpr uint32_t kResolveMemoSlots = 64;
constexpr uint64_t kResolveMemoMs = 200;
constexpr uint32_t kParkSlots = 256;        // packets held while ARP resolves, per worker
// Per destination: a 1,000 packets/s stream loses nothing to a 30 ms resolution (Linux queues
// up to unres_qlen, 101, per address).
constexpr uint32_t kParkPerDestination = 32;
constexpr uint64_t kParkMs = 1000;
constexpr uint32_t kIdleSpinRounds = 16;
constexpr uint32_t kIdleMaxSleepUs = 200;
constexpr uint32_t kEncSlots = 8;   // paths with packets waiting for encryption at once
constexpr uint16_t kEncBurst = 32;  // packets one encrypt burst takes
constexpr uint8_t kNoEncq = 0xff;   // Impl::encq_of: the path has no packets waiting
static_assert(kEncSlots < kNoEncq);
constexpr uint32_t kDrillAll = 1000000;  // PathInfo::drill_drop_ppm of a blackout
constexpr uint32_t kProbeScan = 64; // paths whose probe timer one poll looks at
constexpr uint32_t kDedupStreams = 16;   // sender workers told apart per peer (stream & 15)
constexpr uint32_t kDedupWindows = 256;  // (peer, stream) windows a worker keeps
constexpr uint32_t kDedupWindowSize = 1024;
constexpr uint32_t kReorderStates = 256;   // (peer, stream) reorder buffers a worker keeps
// Packets one buffer holds: what arrives on the fast paths while the slowest one catches up,
// rate x delay difference (60,000 packets/s x 20 ms x the fast paths' share: about 700). A ring
// (a power of two), so delivering from its head moves nothing. 256 x 1,024 x 24 bytes: 6 MB a worker.
constexpr uint32_t kReorderSlots = 1024;
constexpr uint32_t kReorderDefaultHoldUs = 50000;  // when the class gives no hold time (issue 6's cap)
constexpr int32_t kReorderResync = 1 << 20;        // a sequence jump this large is a restart, not a gap
// Handoff elements one poll takes from each other worker's ring: half a ring, so a producer that
// fills it with every burst of its RX queues cannot outrun the owner for long.
constexpr uint32_t kHandoffPerPoll = HandoffRings::kRingSize / 2;

constexpr uint8_t kCodeNetUnreach = 0;
constexpr uint8_t kTcpSyn = 0x02;
// FlowEntry::flags: the flow's class decides per packet (spray, duplicate), so a packet of it
// takes to_peer's general path even when the flow's decision is current.
constexpr uint8_t kFlowPerPacket = 0x01;

ParseError parse_mbuf(rte_mbuf* m, HeaderView* hv) noexcept {
  return parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), hv);
}

Drop drop_for(ParseError e) noexcept {
  switch (e) {
    case ParseError::kRunt: return Drop::kRunt;
    case ParseError::kBadL2: return Drop::kBadL2;
    case ParseError::kBadIpHeader: return Drop::kBadIpHeader;
    case ParseError::kBadIpChecksum: return Drop::kBadIpChecksum;
    case ParseError::kOk: break;
  }
  return Drop::kBadL2;
}

// The class of a packet: the first rule that matches, else the default class.
uint8_t classify(const Policy& pol, const HeaderView& hv) noexcept {
  for (const ClassRule& r : pol.rules) {
    if (((hv.src4 ^ r.src) & r.src_mask) != 0 || ((hv.dst4 ^ r.dst) & r.dst_mask) != 0) continue;
    if (r.proto != 0 && r.proto != hv.proto) continue;
    if (r.dscp != 0xff && r.dscp != hv.dscp) continue;
    if (hv.sport < r.sport_lo || hv.sport > r.sport_hi || hv.dport < r.dport_lo || hv.dport > r.dport_hi) continue;
    return r.cls;
  }
  return pol.default_class;
}

// A packet's flow, looked up with the rest of its burst (rx_lan) before it is forwarded.
struct FlowHint {
  FlowKey key;
  uint32_t hash;
  FlowEntry* entry;  // the lookup's answer; void once the burst inserted a flow (flows_moved)
};

// A flow key's two 8-byte halves, as FlowKey lays them out. Keys are built as these two words:
// field by field, the byte stores would be read back by the 16-byte loads of hashing and
// comparing, which the CPU cannot forward (half of rx_lan's time in perf).
struct KeyWords {
  uint64_t w0, w1;
};
KeyWords key_words(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto) noexcept {
  static_assert(offsetof(FlowKey, dst) == 4 && offsetof(FlowKey, sport) == 8 && offsetof(FlowKey, dport) == 10 &&
                offsetof(FlowKey, proto) == 12);
  return {uint64_t{src} | uint64_t{dst} << 32, uint64_t{sport} | uint64_t{dport} << 16 | uint64_t{proto} << 32};
}
FlowKey flow_key(KeyWords kw) noexcept {
  const uint64_t w[2] = {kw.w0, kw.w1};
  FlowKey k;
  std::memcpy(&k, w, sizeof k);
  return k;
}

KeyWords key_words(const HeaderView& hv) noexcept { return key_words(hv.src4, hv.dst4, hv.sport, hv.dport, hv.proto); }
FlowKey flow_key(const HeaderView& hv) noexcept { return flow_key(key_words(hv)); }

// What lan_fast reads of a LAN packet: from ipv4_flow_look's one look, or from the HeaderView of
// a packet that took parse_frame (parsed: hv holds it; else forward() parses it when it needs it).
struct LanView {
  uint16_t l3_off, ip_len;
  uint8_t ttl, proto, tcp_flags;
  bool parsed;
};

}  // namespace

struct Worker::Impl {
  explicit Impl(const WorkerConfig& c)
      : cfg(c),
        seq_blk(kMaxPaths),
        blk_dirty(kMaxPaths),
        path_ctr(new PathCounters[kMaxPaths]),
        flows(c.flow_capacity, kFlowTickShift),
        peer_seq(kMaxPeers, 0),
        probe_due(kMaxPaths, 0),
        probe_seq(kMaxPaths, 0),
        probe_req_rx(kMaxPaths, 0),
        dedup_slot(kMaxPeers * kDedupStreams, -1),
        spray_seq(kMaxPeers, 0),
        reorder_slot(kMaxPeers * kDedupStreams, -1),
        reorder(kReorderStates),
        hz(rte_get_tsc_hz()),
        ns_mult((uint64_t{1000000000} << 32) / hz) {
    // Without an engine (no AES-NI: the daemon refuses to start before this) nothing is sent.
    auto e = CryptoEngine::create();
    if (e) engine = std::move(*e);
    encq_of.fill(kNoEncq);
    dedup.reserve(kDedupWindows);
    for (uint32_t i = 0; i < kDedupWindows; ++i) dedup.emplace_back(kDedupWindowSize, false);
    drill_rng = 0x9E3779B97F4A7C15ull ^ (uint64_t{c.index} + 1) * 0xBF58476D1CE4E5B9ull;
  }

  struct TxBuf {
    uint16_t n = 0;
    uint64_t bytes = 0;
    rte_mbuf* m[kTxBuf];
  };
  struct Memo {
    uint32_t ip = 0;
    uint8_t port = 0;
    uint64_t tsc = 0;
  };
  // Packets for one path, overlay header in front, waiting for one encrypt burst.
  struct EncQueue {
    uint16_t path = 0;
    uint16_t n = 0;
    uint32_t tx_pkts = 0;  // of m, those to count as sent on the path (to_esp), and their bytes
    uint64_t tx_bytes = 0;
    rte_mbuf* m[kEncBurst];
  };
  struct Parked {
    rte_mbuf* m;
    uint32_t ip;
    uint16_t l3_off;
    uint8_t port;
    uint64_t tsc;
  };

  WorkerConfig cfg;
  WorkerCounters ctr;
  EspCounters esp_ctr;
  std::unique_ptr<CryptoEngine> engine;
  std::array<EncQueue, kEncSlots> encq{};
  uint32_t n_encq = 0;
  // By path: its slot in encq, kNoEncq when it has none. Indexed, not searched: with the flows of
  // a burst spread over four paths, the search's branches were mispredicted about once a packet.
  std::array<uint8_t, kMaxPaths> encq_of;
  // Per path: this worker's block of the outbound SA's sequence numbers and its counts not yet
  // added to the SA (esp.hpp EspSeqBlock): no atomic operation on a shared SA per burst. The
  // paths with counts pending are flushed at the end of the poll.
  std::vector<EspSeqBlock> seq_blk;
  std::vector<uint16_t> blk_dirty;
  uint32_t n_blk_dirty = 0;
  uint64_t poll_now = 0;
  std::unique_ptr<PathCounters[]> path_ctr;
  FlowCache flows;
  bool flows_moved = false;  // an insert since the current burst's flow lookups (FlowHint)
  std::vector<uint64_t> peer_seq;
  std::vector<uint64_t> probe_due;     // by path: TSC time of its next probe (0: not scheduled)
  std::vector<uint32_t> probe_seq;     // by path: the next probe's sequence number
  std::vector<uint64_t> probe_req_rx;  // by path: the peer's test packets received here
  uint32_t probe_cursor = 0;
  // De-duplication of duplicate-class packets: one overlay-sequence window per (peer, stream),
  // taken from a pool made before the loop (dedup_slot: index into dedup, -1 = none yet).
  std::vector<int32_t> dedup_slot;
  std::vector<ReplayWindow> dedup;
  uint32_t n_dedup = 0;
  uint64_t spray_next = 0;  // spray: the next lookup-table entry (per worker)
  uint64_t drill_rng = 0;   // xorshift64 state for drills' random drops (seeded per worker)
  // True when a drill on p drops this packet (p.drill_drop_ppm of them, at random).
  bool drill_hit(const PathInfo& p) noexcept {
    if (p.drill_drop_ppm == 0) [[likely]] return false;
    if (p.drill_drop_ppm >= kDrillAll) return true;
    drill_rng ^= drill_rng << 13;
    drill_rng ^= drill_rng >> 7;
    drill_rng ^= drill_rng << 17;
    return ((drill_rng >> 32) * kDrillAll >> 32) < p.drill_drop_ppm;
  }
  std::vector<uint32_t> spray_seq;  // by peer: the last spray sequence number sent
  // Spray's receiver side: per (peer, stream), packets that arrived ahead of the next
  // expected spray sequence number wait here (sorted), at most their class's hold time.
  struct Held {
    rte_mbuf* m;
    uint32_t seq;
    uint8_t port;
    uint64_t tsc;
  };
  struct Reorder {
    bool started = false;
    uint32_t next = 0;     // the spray sequence number due
    uint32_t head = 0;     // where the ring starts
    uint32_t n = 0;        // packets held, at(0 .. n - 1) by seq
    uint64_t hold_tsc = 0;
    std::array<Held, kReorderSlots> h{};
    Held& at(uint32_t i) noexcept { return h[(head + i) & (kReorderSlots - 1)]; }
  };
  static_assert((kReorderSlots & (kReorderSlots - 1)) == 0);
  std::vector<int32_t> reorder_slot;
  std::vector<Reorder> reorder;
  uint32_t n_reorder = 0;
  uint32_t reorder_holding = 0;  // buffers with n > 0
  // A flow dump control asked for: state 1 while the worker walks its cache, 2 when done.
  std::atomic<int> dump_state{0};
  FlowRecord* dump_out = nullptr;
  uint32_t dump_max = 0;
  std::atomic<uint32_t> dump_n{0};
  uint32_t dump_cursor = 0;
  void dump_flows() noexcept;
  std::array<TxBuf, kMaxPorts> txq{};
  std::array<Memo, kResolveMemoSlots> memo{};
  std::array<Parked, kParkSlots> parked{};
  uint32_t n_parked = 0;
  uint64_t parked_gen = 0;
  uint64_t hz;
  uint64_t ns_mult;  // ns per TSC tick, 32.32 fixed point
  uint16_t ip_id = 0;
  bool online = false;
  // ICMP error token bucket in TSC ticks, so refilling needs no division per packet.
  uint64_t icmp_gen = ~uint64_t{0};
  uint64_t icmp_cost = 0, icmp_cap = 0, icmp_tokens = 0, icmp_last = 0;
  uint64_t flow_idle_tsc = 0;
  // Expiry sweeps the flow cache at a fixed pace (kFlowSweepSeconds a round) whatever the poll
  // rate: a busy worker polls a few hundred thousand times a second and should not scan more
  // for it. Buckets due, in 32.32 fixed point, accrue with TSC time.
  uint64_t sweep_rate_q32 = 0;  // buckets per TSC tick
  uint64_t sweep_due_q32 = 0;
  uint64_t sweep_last = 0;
  void expire_flows(uint64_t now) noexcept {
    if (sweep_last == 0) {
      const uint64_t buckets = flows.capacity() / FlowCache::kSlots;
      sweep_rate_q32 = static_cast<uint64_t>((static_cast<unsigned __int128>(buckets) << 32) / (kFlowSweepSeconds * hz));
      sweep_last = now;
      return;
    }
    sweep_due_q32 += std::min(now - sweep_last, hz) * sweep_rate_q32;
    sweep_last = now;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(sweep_due_q32 >> 32, kExpireBucketsPerPoll));
    if (n == 0) return;
    sweep_due_q32 = n == kExpireBucketsPerPoll ? 0 : sweep_due_q32 & 0xffffffffu;
    flows.expire(now, flow_idle_tsc, n);
  }

  uint32_t poll() noexcept;
  void rx_lan(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now) noexcept;
  // lan_fast counts a packet's class at once and its path in the path's encrypt queue (to_esp),
  // added to path_ctr when the queue is sealed; *encapsulated, once a burst. Counted in runs of
  // one path and class before, a burst whose flows spread over four paths mispredicted the
  // run's end about once a packet.
  bool lan_fast(const Snapshot& s, rte_mbuf* m, const LanView& v, FlowEntry* e, uint64_t now,
                uint32_t* encapsulated) noexcept;
  // e's path was chosen in snapshot s and its class decides per flow: lan_fast's case.
  static bool decided(const Snapshot& s, const FlowEntry* e) noexcept {
    return e != nullptr && e->gen == s.generation && (e->flags & kFlowPerPacket) == 0;
  }
  void rx_wan(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now) noexcept;
  bool rx_front(rte_mbuf* m, uint8_t port, HeaderView* hv) noexcept;
  bool wan_front(const Snapshot& s, uint8_t port, rte_mbuf* m, uint64_t now) noexcept;
  void wan_esp(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now, bool outer_checked) noexcept;
  // ip_len: the inner packet's length, counted as sent on p (path_ctr) when its queue is sealed;
  // kNotCounted for a probe.
  static constexpr uint32_t kNotCounted = UINT32_MAX;
  void to_esp(const Snapshot& s, const PathInfo& p, rte_mbuf* m, uint32_t ip_len = kNotCounted) noexcept;
  bool dedup_seen(uint16_t peer, uint8_t stream, uint64_t seq) noexcept;
  bool dedup_seen_in(ReplayWindow* w, uint64_t seq) noexcept;
  ReplayWindow* dedup_window(uint16_t peer, uint8_t stream) noexcept;
  void deliver(const Snapshot& s, rte_mbuf* m, uint8_t port, uint64_t now) noexcept;
  void deliver_burst(const Snapshot& s, rte_mbuf** pkts, uint16_t n, uint8_t port, uint64_t now) noexcept;
  bool wan_fast(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint32_t hop) noexcept;
  const MacAddr* lan_hop(const Snapshot& s, uint32_t dst, uint8_t ttl, uint32_t ip_len, uint32_t hop,
                         uint8_t* lan) const noexcept;
  // wan_inner_hop's answer for the burst's last destination: consecutive packets mostly share one.
  struct LastHop {
    uint32_t dst = 0;
    const MacAddr* mac = nullptr;  // nullptr: none yet, or the last one was not lan_dst's
    uint16_t mtu = 0;
    uint8_t lan = 0;
  };
  const MacAddr* wan_inner_hop(const Snapshot& s, const rte_mbuf* m, const OverlayHdr& ov, uint16_t peer,
                               LastHop& last, uint32_t* total) const noexcept;
  const MacAddr* lan_dst(const Snapshot& s, uint32_t dst, uint32_t hop, uint8_t* lan) const noexcept;
  void send_inner(const Snapshot& s, rte_mbuf* m, uint8_t lan, const MacAddr& mac, uint32_t total) noexcept;
  void reorder_in(const Snapshot& s, rte_mbuf* m, uint16_t peer, const OverlayHdr& ov, uint8_t port,
                  uint64_t now) noexcept;
  void reorder_drain(const Snapshot& s, Reorder& r, uint64_t now) noexcept;
  void reorder_expire(const Snapshot& s, uint64_t now) noexcept;
  bool sequenced(const Snapshot& s, rte_mbuf* m, uint16_t peer, const OverlayHdr& ov, uint8_t port,
                 uint64_t now) noexcept;
  // The worker that de-duplicates and reorders (peer, stream): the same on every worker, so both
  // copies of a packet, and every packet of a spray sequence, meet in one window and one buffer
  // whichever workers decrypted them. Keyed like dedup_slot (the stream's low bits).
  uint16_t stream_owner(uint16_t peer, uint8_t stream) const noexcept {
    if (cfg.count <= 1) return cfg.index;  // one worker owns every stream: no hash per packet
    const uint32_t key = uint32_t{peer} * kDedupStreams + (stream & (kDedupStreams - 1));
    return static_cast<uint16_t>((uint64_t{key * 0x9E3779B1u} * cfg.count) >> 32);
  }
  void handoff_send(const Handoff* h, const uint16_t* to, uint16_t n) noexcept;
  uint32_t handoff_receive(const Snapshot& s, uint64_t now) noexcept;
  static bool sendable(const Snapshot& s, uint32_t path) noexcept {
    return path < s.paths.size() && s.paths[path].usable && s.paths[path].up && s.paths[path].sa != nullptr;
  }
  static int first_up_path(const Snapshot& s, uint16_t peer) noexcept {
    const PeerInfo& pi = s.peers[peer];
    for (uint8_t i = 0; i < pi.n_paths; ++i)
      if (sendable(s, pi.paths[i])) return pi.paths[i];
    return -1;
  }
  void seal(const Snapshot& s, EncQueue& q) noexcept;
  void seal_all(const Snapshot& s) noexcept;
  void send_probes(const Snapshot& s, uint64_t now) noexcept;
  void on_probe(const Snapshot& s, rte_mbuf* m, uint16_t path, const InboundSa* sa, uint64_t now) noexcept;
  uint64_t tsc_ns(uint64_t tsc) const noexcept {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(tsc) * ns_mult) >> 32);
  }
  void forward(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t in_port, bool from_overlay,
               uint64_t now, const FlowHint* hint = nullptr, const uint32_t* hop = nullptr) noexcept;
  void to_lan(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t lan, uint8_t in_port, uint64_t now) noexcept;
  void to_peer(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint16_t peer, uint8_t in_port, uint64_t now,
               const FlowHint* hint) noexcept;
  void local_in(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t in_port, bool from_overlay,
                uint64_t now) noexcept;
  void icmp_error(const Snapshot& s, rte_mbuf* m, const HeaderView& hv, uint8_t type, uint8_t code, uint16_t mtu,
                  uint8_t in_port, uint64_t now) noexcept;
  void to_control(rte_mbuf* m, uint8_t port) noexcept;
  void to_host(const Snapshot& s, rte_mbuf* m, const HeaderView& hv) noexcept;
  [[gnu::cold]] bool park(rte_mbuf* m, uint32_t ip, uint16_t l3_off, uint8_t port, uint64_t now) noexcept;
  void release_parked(const Snapshot& s, uint64_t now) noexcept;
  void send_lan(const Snapshot& s, rte_mbuf* m, uint16_t l3_off, uint8_t lan, const MacAddr& mac) noexcept;
  void request_resolve(uint8_t port, Ipv4 ip, uint64_t now) noexcept;
  void tx(const Snapshot& s, uint8_t port, rte_mbuf* m) noexcept;
  void tx_burst(const Snapshot& s, uint8_t port, rte_mbuf* const* m, uint16_t n) noexcept;
  void flush(const Snapshot& s, uint8_t port) noexcept;
  void drop(rte_mbuf* m, Drop why) noexcept {
    ctr.drop(why);
    rte_pktmbuf_free(m);
  }
  bool icmp_token(const Snapshot& s, uint64_t now) noexcept;
  // Our addresses (one per port, at most kMaxPorts) of the snapshot in use, eight lanes of one
  // compare; the lanes past the ports repeat the first address.
  alignas(32) std::array<uint32_t, 8> ours{};
  uint64_t ours_gen = ~uint64_t{0};
  const Snapshot* ours_snap = nullptr;
  void refresh_ours(const Snapshot& s) noexcept {
    ours_gen = s.generation;
    ours_snap = &s;
    for (size_t i = 0; i < ours.size(); ++i)
      ours[i] = s.ports.empty() ? 0 : s.ports[i < s.ports.size() ? i : 0].addr.v;
  }
  bool is_ours(const Snapshot& s, uint32_t ip) const noexcept {
    if (s.ports.empty()) return false;
#if defined(__AVX2__)
    const __m256i eq = _mm256_cmpeq_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(ours.data())),
                                          _mm256_set1_epi32(static_cast<int>(ip)));
    return _mm256_movemask_epi8(eq) != 0;
#else
    for (uint32_t a : ours)
      if (a == ip) return true;
    return false;
#endif
  }
};

void Worker::Impl::tx(const Snapshot& s, uint8_t port, rte_mbuf* m) noexcept {
  TxBuf& b = txq[port];
  b.m[b.n++] = m;
  b.bytes += rte_pktmbuf_pkt_len(m);
  if (b.n == kTxBuf) flush(s, port);
}

// tx() for n packets to one port (a sealed burst): one call, not n.
void Worker::Impl::tx_burst(const Snapshot& s, uint8_t port, rte_mbuf* const* m, uint16_t n) noexcept {
  TxBuf& b = txq[port];
  while (n != 0) {
    const auto k = static_cast<uint16_t>(std::min<uint16_t>(n, kTxBuf - b.n));
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < k; ++i) {
      b.m[b.n + i] = m[i];
      bytes += rte_pktmbuf_pkt_len(m[i]);
    }
    b.n = static_cast<uint16_t>(b.n + k);
    b.bytes += bytes;
    m += k;
    n = static_cast<uint16_t>(n - k);
    if (b.n == kTxBuf) flush(s, port);
  }
}

void Worker::Impl::flush(const Snapshot& s, uint8_t port) noexcept {
  TxBuf& b = txq[port];
  if (b.n == 0) return;
  const uint16_t sent = rte_eth_tx_burst(s.ports[port].port_id, cfg.index, b.m, b.n);
  uint64_t unsent_bytes = 0;
  for (uint16_t i = sent; i < b.n; ++i) {
    unsent_bytes += rte_pktmbuf_pkt_len(b.m[i]);
    rte_pktmbuf_free(b.m[i]);
  }
  if (sent < b.n) ctr.drop(Drop::kTxFull, b.n - sent);
  ctr.ports[port].tx_pkts.add(sent);
  ctr.ports[port].tx_bytes.add(b.bytes - unsent_bytes);
  b.n = 0;
  b.bytes = 0;
}

void Worker::Impl::to_control(rte_mbuf* m, uint8_t port) noexcept {
  m->port = port;
  if (cfg.channels.to_control_pkts == nullptr || rte_ring_sp_enqueue(cfg.channels.to_control_pkts, m) != 0) {
    drop(m, Drop::kExceptionFull);
    return;
  }
  ctr.arp_to_control.add();
}

void Worker::Impl::request_resolve(uint8_t port, Ipv4 ip, uint64_t now) noexcept {
  // A burst towards one unresolved host would otherwise flood control with the same request.
  Memo& e = memo[(ip.v * 0x9E3779B1u) >> 26];
  if (e.ip == ip.v && e.port == port && now - e.tsc < kResolveMemoMs * hz / 1000) return;
  e = Memo{ip.v, port, now};
  if (cfg.channels.to_control_resolve == nullptr) return;
  ResolveRequest r{ip.v, port, {}};
  if (rte_ring_sp_enqueue_elem(cfg.channels.to_control_resolve, &r, sizeof r) != 0) ctr.drop(Drop::kExceptionFull);
}

bool Worker::Impl::icmp_token(const Snapshot& s, uint64_t now) noexcept {
  if (s.generation != icmp_gen) {
    icmp_gen = s.generation;
    icmp_cost = s.icmp_errors_per_sec ? hz / s.icmp_errors_per_sec : 0;
    icmp_cap = icmp_cost * std::max<uint32_t>(1, s.icmp_errors_burst);
    icmp_tokens = std::min(icmp_tokens, icmp_cap);
    if (icmp_last == 0) icmp_tokens = icmp_cap;
    icmp_last = now;
  }
  if (icmp_cost == 0) return false;
  icmp_tokens = std::min(icmp_cap, icmp_tokens + (now - icmp_last));
  icmp_last = now;
  if (icmp_tokens < icmp_cost) return false;
  icmp_tokens -= icmp_cost;
  return true;
}

// Rewrites m into the ICMP error for the packet it holds and routes it to that packet's
// source (back out of the LAN, or back through the overlay). The drop of the original is
// counted by the caller.
void Worker::Impl::icmp_error(const Snapshot& s, rte_mbuf* m, const HeaderView& hv, uint8_t type, uint8_t code,
                              uint16_t mtu, uint8_t in_port, uint64_t now) noexcept {
  if (!icmp_token(s, now)) {
    ctr.icmp_errors_ratelimited.add();
    rte_pktmbuf_free(m);
    return;
  }
  uint8_t buf[kIcmpErrorMaxLen];
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*) + hv.l3_off;
  const Ipv4 our = s.ports[s.lan_port].addr;
  const uint32_t n = build_icmp_error(buf, sizeof buf, ip, hv.ip_len, type, code, our, mtu);
  if (n == 0) {
    rte_pktmbuf_free(m);
    return;
  }
  rte_pktmbuf_reset(m);
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(kEthLen + n)));
  if (f == nullptr) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memset(f, 0, 12);
  f[12] = 0x08;
  f[13] = 0x00;
  std::memcpy(f + kEthLen, buf, n);
  HeaderView ehv;
  if (parse_mbuf(m, &ehv) != ParseError::kOk) {
    rte_pktmbuf_free(m);
    return;
  }
  ctr.icmp_errors_sent.add();
  // Routed like any packet: back out of the LAN, or back through the overlay to a peer.
  forward(s, m, ehv, in_port, false, now);
}

void Worker::Impl::local_in(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t in_port, bool from_overlay,
                            uint64_t now) noexcept {
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  if (hv.proto == IPPROTO_ICMP && hv.icmp_type == RTE_IP_ICMP_ECHO_REQUEST && !hv.fragment &&
      icmp_echo_to_reply(f, rte_pktmbuf_data_len(m), hv)) {
    ctr.icmp_echo_replied.add();
    if (!from_overlay) {
      tx(s, in_port, m);
      return;
    }
    HeaderView rhv;
    if (parse_mbuf(m, &rhv) != ParseError::kOk) {
      drop(m, Drop::kLocalUnhandled);
      return;
    }
    forward(s, m, rhv, in_port, false, now);
    return;
  }
  // The rest for the LAN address belongs to the host stack, when there is one: from the LAN,
  // the host itself, or decrypted out of the overlay. Never cleartext that came in on an
  // uplink (wan_front's non-ESP packets): the host is reached through the tunnel only.
  if (s.host_port != kNoHostPort && hv.dst4 == s.ports[s.lan_port].addr.v &&
      (from_overlay || s.ports[in_port].role != PortRole::kUplink)) {
    to_host(s, m, hv);
    return;
  }
  drop(m, hv.fragment ? Drop::kFragment : Drop::kLocalUnhandled);
}

// Local delivery, not routing: no TTL decrement; a fragment goes too (the kernel reassembles).
void Worker::Impl::to_host(const Snapshot& s, rte_mbuf* m, const HeaderView& hv) noexcept {
  const PortInfo& hp = s.ports[s.host_port];
  const uint32_t want = hv.l3_off + hv.ip_len;
  if (rte_pktmbuf_data_len(m) > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - want));
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  if (hv.l3_off != kEthLen) {  // VLAN-tagged in, untagged to the tap
    f = reinterpret_cast<uint8_t*>(rte_pktmbuf_adj(m, static_cast<uint16_t>(hv.l3_off - kEthLen)));
    if (f == nullptr) return drop(m, Drop::kRunt);
  }
  std::memcpy(f, hp.host_mac.b.data(), 6);
  std::memcpy(f + 6, hp.mac.b.data(), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  ctr.to_host.add();
  tx(s, s.host_port, m);
}

// hop: this destination's rte_lpm_lookup_bulk answer when the caller routed its burst already
// (a miss there still gets the default route here).
void Worker::Impl::forward(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t in_port, bool from_overlay,
                           uint64_t now, const FlowHint* hint, const uint32_t* hop) noexcept {
  if (is_ours(s, hv.dst4)) {
    local_in(s, m, hv, in_port, from_overlay, now);
    return;
  }
  // Limited broadcast, multicast and class E are never routed (RFC 1812 5.3.7).
  if (hv.dst4 == 0xffffffffu || (hv.dst4 >> 28) >= 0xe) {
    drop(m, Drop::kLocalUnhandled);
    return;
  }
  uint32_t target = 0;
  const bool routed = hop == nullptr                         ? s.routes && s.routes->lookup(Ipv4{hv.dst4}, &target)
                      : (*hop & RTE_LPM_LOOKUP_SUCCESS) != 0 ? (target = *hop & 0xffffff, true)
                                                             : s.routes && s.routes->default_route(&target);
  if (!routed) {
    ctr.drop(Drop::kNoRoute);
    icmp_error(s, m, hv, kIcmpUnreachable, kCodeNetUnreach, 0, in_port, now);
    return;
  }
  if (hv.ttl <= 1) {
    ctr.drop(Drop::kTtlExpired);
    icmp_error(s, m, hv, kIcmpTimeExceeded, 0, 0, in_port, now);
    return;
  }
  // Ethernet padding must not travel on.
  const uint32_t want = hv.l3_off + hv.ip_len;
  if (rte_pktmbuf_data_len(m) > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - want));
  if (target & RouteTarget::kLocal)
    to_lan(s, m, hv, static_cast<uint8_t>(target & 0xff), in_port, now);
  else
    to_peer(s, m, hv, static_cast<uint16_t>(target), in_port, now, hint);
}

void Worker::Impl::to_lan(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint8_t lan, uint8_t in_port,
                          uint64_t now) noexcept {
  const PortInfo& p = s.ports[lan];
  const uint32_t mask = p.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - p.prefix_len);
  if (p.prefix_len < 31 && (hv.dst4 & ~mask) == ~mask) {  // directed broadcast: not forwarded
    drop(m, Drop::kLocalUnhandled);
    return;
  }
  if (hv.ip_len > p.mtu) {
    ctr.drop(Drop::kTooBig);
    icmp_error(s, m, hv, kIcmpUnreachable, kIcmpCodeFragNeeded, p.mtu, in_port, now);
    return;
  }
  const MacAddr* mac = s.neighbors.lookup(lan, Ipv4{hv.dst4});
  if (mac == nullptr) {
    request_resolve(lan, Ipv4{hv.dst4}, now);
    if (!park(m, hv.dst4, hv.l3_off, lan, now)) drop(m, Drop::kUnresolved);
    return;
  }
  send_lan(s, m, hv.l3_off, lan, *mac);
}

void Worker::Impl::send_lan(const Snapshot& s, rte_mbuf* m, uint16_t l3_off, uint8_t lan, const MacAddr& mac) noexcept {
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  ipv4_ttl_decrement(f + l3_off);
  if (l3_off != kEthLen) {  // VLAN-tagged in, untagged out
    f = reinterpret_cast<uint8_t*>(rte_pktmbuf_adj(m, static_cast<uint16_t>(l3_off - kEthLen)));
    if (f == nullptr) {
      drop(m, Drop::kRunt);
      return;
    }
  }
  std::memcpy(f, mac.b.data(), 6);
  std::memcpy(f + 6, s.ports[lan].mac.b.data(), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  tx(s, lan, m);
}

// Holds a packet whose LAN destination control is resolving, as a kernel router does, so the
// first packets of a conversation are not lost to ARP.
bool Worker::Impl::park(rte_mbuf* m, uint32_t ip, uint16_t l3_off, uint8_t port, uint64_t now) noexcept {
  if (n_parked == kParkSlots) return false;
  uint32_t same = 0;
  for (uint32_t i = 0; i < n_parked; ++i) same += parked[i].ip == ip && parked[i].port == port;
  if (same >= kParkPerDestination) return false;
  parked[n_parked++] = Parked{m, ip, l3_off, port, now};
  ctr.arp_parked.add();
  return true;
}

void Worker::Impl::release_parked(const Snapshot& s, uint64_t now) noexcept {
  const bool fresh = s.generation != parked_gen;
  parked_gen = s.generation;
  const uint64_t limit = kParkMs * hz / 1000;
  uint32_t keep = 0;
  for (uint32_t i = 0; i < n_parked; ++i) {
    Parked p = parked[i];
    const MacAddr* mac = fresh ? s.neighbors.lookup(p.port, Ipv4{p.ip}) : nullptr;
    if (mac != nullptr) {
      ctr.arp_released.add();
      send_lan(s, p.m, p.l3_off, p.port, *mac);
    } else if (now - p.tsc > limit) {
      drop(p.m, Drop::kUnresolved);
    } else {
      parked[keep++] = p;
    }
  }
  n_parked = keep;
}

void Worker::Impl::to_peer(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint16_t peer, uint8_t in_port,
                           uint64_t now, const FlowHint* hint) noexcept {
  if (peer >= s.peers.size()) {
    drop(m, Drop::kNoRoute);
    return;
  }
  FlowKey k;
  uint32_t h;
  FlowEntry* e;
  if (hint != nullptr) {
    k = hint->key;
    h = hint->hash;
    // An insert may have moved entries since the burst's lookup: look again (the bucket is hot).
    e = flows_moved ? flows.lookup(k, h) : hint->entry;
  } else {
    k = flow_key(hv);
    h = FlowCache::hash(k);
    e = flows.lookup(k, h);
  }
  const Policy* pol = s.policy.get();
  uint8_t cls = 0;
  int path = -1;
  if (e != nullptr && e->gen == s.generation) {
    path = e->path;
    cls = e->cls;
  } else {
    if (e != nullptr) {
      cls = e->cls;  // classified once, on the flow's first packet ...
      if (pol != nullptr && e->gen < pol->reclassify_gen) [[unlikely]] {
        cls = classify(*pol, hv);  // ... and again once after a reload changed the classes
        e->cls = cls;
      }
    } else {
      cls = pol != nullptr ? classify(*pol, hv) : 0;
      e = flows.insert(k, h, now, flow_idle_tsc);
      flows_moved = true;
      if (e != nullptr) {
        ctr.flows_created.add();
        e->cls = cls;
      } else {
        ctr.flow_cache_full.add();
      }
    }
    // The class's path for this flow: best and duplicate its primary, balance the flow's entry
    // of the consistent-hash table; spray picks per packet below. A choice that is no longer
    // up (the snapshot is at most one probe interval old) falls back to the first path up.
    if (pol != nullptr && cls < pol->n_classes && peer < pol->n_peers) {
      const ClassPaths& cp = pol->at(cls, peer);
      path = cp.mode == ClassMode::kBalance && !cp.lut.empty() ? cp.lut[h % cp.lut.size()] : cp.primary;
    }
    if (!sendable(s, static_cast<uint32_t>(path))) path = first_up_path(s, peer);
    if (path < 0) {
      drop(m, Drop::kNoPath);
      return;
    }
    if (e != nullptr) {
      e->path = static_cast<uint16_t>(path);
      e->gen = static_cast<uint32_t>(s.generation);
      const ClassPaths* cp = pol != nullptr && cls < pol->n_classes && peer < pol->n_peers ? &pol->at(cls, peer) : nullptr;
      e->flags = cp != nullptr && (cp->mode == ClassMode::kSpray || cp->mode == ClassMode::kDuplicate) ? kFlowPerPacket : 0;
    }
  }
  // Per packet: spray's next table entry, duplicate's second copy.
  uint8_t flags = 0;
  int second = -1;
  if (pol != nullptr && cls < pol->n_classes && peer < pol->n_peers) [[unlikely]] {
    const ClassPaths& cp = pol->at(cls, peer);
    if (cp.mode == ClassMode::kSpray && !cp.lut.empty()) {
      const uint16_t sp = cp.lut[spray_next++ % cp.lut.size()];
      if (sendable(s, sp)) path = sp;
      flags |= kOverlaySprayed;
    } else if (cp.mode == ClassMode::kDuplicate && cp.duplicating && cp.secondary != path &&
               sendable(s, cp.secondary)) {
      second = cp.secondary;
      flags |= kOverlayDuplicated;
    }
  }
  const PathInfo& p = s.paths[static_cast<size_t>(path)];
  uint32_t max_inner = tunnel_max_inner(p.mtu);
  if (second >= 0) max_inner = std::min(max_inner, tunnel_max_inner(s.paths[static_cast<size_t>(second)].mtu));
  if (hv.ip_len > max_inner) {
    ctr.drop(Drop::kTooBig);
    icmp_error(s, m, hv, kIcmpUnreachable, kIcmpCodeFragNeeded, static_cast<uint16_t>(max_inner), in_port, now);
    return;
  }
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  if (hv.proto == IPPROTO_TCP && (hv.tcp_flags & kTcpSyn) &&
      clamp_tcp_mss(f, rte_pktmbuf_data_len(m), hv, static_cast<uint16_t>(max_inner - 40)))
    ctr.mss_clamped.add();
  ipv4_ttl_decrement(f + hv.l3_off);
  if (e != nullptr) flows.touch(e, now, hv.ip_len);
  if (!overlay_push(m, hv.l3_off, cls, static_cast<uint8_t>(cfg.index), ++peer_seq[peer], flags,
                    (flags & kOverlaySprayed) != 0 ? ++spray_seq[peer] : 0)) {
    drop(m, Drop::kTooBig);
    return;
  }
  ctr.encapsulated.add();
  ctr.class_pkts[cls % kMaxClasses].add();
  ctr.class_bytes[cls % kMaxClasses].add(hv.ip_len);
  bool copy_sent = false;
  if (second >= 0) {
    // The copy carries the same overlay sequence number: the receiver keeps whichever comes first.
    rte_mbuf* c = cfg.pool != nullptr ? rte_pktmbuf_copy(m, cfg.pool, 0, UINT32_MAX) : nullptr;
    if (c != nullptr) {
      ctr.class_dup_pkts[cls % kMaxClasses].add();
      ctr.class_dup_bytes[cls % kMaxClasses].add(hv.ip_len);
      const PathInfo& p2 = s.paths[static_cast<size_t>(second)];
      if (drill_hit(p2)) [[unlikely]] {
        ctr.drill_tx_dropped.add();
        rte_pktmbuf_free(c);
      } else {
        to_esp(s, p2, c, hv.ip_len);
        copy_sent = true;
      }
    } else {
      ctr.dup_no_mbuf.add();
    }
  }
  if (drill_hit(p)) [[unlikely]] {
    ctr.drill_tx_dropped.add();
    if (!copy_sent) ctr.drill_lost[cls % kMaxClasses].add();
    rte_pktmbuf_free(m);
    return;
  }
  to_esp(s, p, m, hv.ip_len);
}

// True if the overlay sequence number seq of (peer, stream) was delivered before (or is older
// than the window): a duplicate-class copy to drop. Windows come from a pool; without one the
// packet is delivered unchecked and counted.
bool Worker::Impl::dedup_seen(uint16_t peer, uint8_t stream, uint64_t seq) noexcept {
  return dedup_seen_in(dedup_window(peer, stream), seq);
}

// dedup_seen with (peer, stream)'s window already found (dedup_window).
bool Worker::Impl::dedup_seen_in(ReplayWindow* w, uint64_t seq) noexcept {
  if (w == nullptr) [[unlikely]] {
    ctr.dedup_no_window.add();
    return false;
  }
  return !w->accept(seq);
}

// The de-duplication window of (peer, stream), taken from the pool on first use; nullptr when
// the pool is used up.
ReplayWindow* Worker::Impl::dedup_window(uint16_t peer, uint8_t stream) noexcept {
  int32_t& slot = dedup_slot[size_t{peer} * kDedupStreams + (stream & (kDedupStreams - 1))];
  if (slot < 0) {
    if (n_dedup == kDedupWindows) return nullptr;
    slot = static_cast<int32_t>(n_dedup++);
  }
  return &dedup[static_cast<size_t>(slot)];
}

// Queues m (overlay header in front) for p's next encrypt burst. Bursts go out when full, when
// the slots run out and at the end of every poll, always before the snapshot is released.
// Inlined, as are rx_front and lan_fast: every LAN packet takes all three, and out of line their
// calls cost LAN->WAN ~10 cycles a packet at 64 bytes (measured).
[[gnu::always_inline]] inline void Worker::Impl::to_esp(const Snapshot& s, const PathInfo& p, rte_mbuf* m,
                                                        uint32_t ip_len) noexcept {
  uint8_t slot = encq_of[p.id];
  if (slot == kNoEncq) [[unlikely]] {
    if (n_encq == kEncSlots) seal_all(s);
    slot = static_cast<uint8_t>(n_encq++);
    encq_of[p.id] = slot;
    encq[slot].path = p.id;
    encq[slot].n = 0;
  }
  EncQueue& q = encq[slot];
  if (ip_len != kNotCounted) {
    ++q.tx_pkts;
    q.tx_bytes += ip_len;
  }
  q.m[q.n++] = m;
  if (q.n == kEncBurst) seal(s, q);
}

void Worker::Impl::seal(const Snapshot& s, EncQueue& q) noexcept {
  if (q.n == 0) return;
  if (q.tx_pkts != 0) {
    path_ctr[q.path].tx_pkts.add(q.tx_pkts);
    path_ctr[q.path].tx_bytes.add(q.tx_bytes);
    q.tx_pkts = 0;
    q.tx_bytes = 0;
  }
  const PathInfo& p = s.paths[q.path];
  uint16_t kept = 0;
  if (ablated(kAblateEsp)) [[unlikely]] {  // bench ablation: see ablation.hpp
    for (uint16_t i = 0; i < q.n; ++i) tx(s, p.port, q.m[i]);
    q.n = 0;
    return;
  }
  if (engine != nullptr && p.sa != nullptr) [[likely]] {
    EspSeqBlock& blk = seq_blk[q.path];
    const bool clean = blk.pkts == 0;
    kept = esp_encrypt_burst(*engine, *p.sa, p.outer, std::span<rte_mbuf*>(q.m, q.n), kEspNextOverlay, esp_ctr, blk,
                             poll_now);
    if (clean && blk.pkts != 0) blk_dirty[n_blk_dirty++] = q.path;
  } else
    ctr.drop(Drop::kNoPath, q.n);
  tx_burst(s, p.port, q.m, kept);
  // The rest are plaintext that failed a check (counted by reason in esp_ctr): never sent.
  for (uint16_t i = kept; i < q.n; ++i) rte_pktmbuf_free(q.m[i]);
  q.n = 0;
}

void Worker::Impl::seal_all(const Snapshot& s) noexcept {
  for (uint32_t i = 0; i < n_encq; ++i) {
    seal(s, encq[i]);
    encq_of[encq[i].path] = kNoEncq;
  }
  n_encq = 0;
}

// The front both RX paths share: one segment, parsed, ARP to control, IPv4 only. False when
// the packet was consumed (dropped and counted, or handed to control).
[[gnu::always_inline]] inline bool Worker::Impl::rx_front(rte_mbuf* m, uint8_t port, HeaderView* hv) noexcept {
  if (m->nb_segs != 1) {
    drop(m, Drop::kTooBig);
    return false;
  }
  const ParseError pe = parse_mbuf(m, hv);
  if (pe != ParseError::kOk) {
    drop(m, drop_for(pe));
    return false;
  }
  if (hv->l3 == L3::kArp) {
    to_control(m, port);
    return false;
  }
  if (hv->l3 != L3::kIpv4) {
    drop(m, Drop::kIpv6Unsupported);
    return false;
  }
  return true;
}

// kHeadroom: also fetch, for writing, the line before the frame, where the overlay and ESP
// headers go on the way to a peer (cold after RX: it was the store of overlay_push in perf).
template <bool kHeadroom = false, class F>
static void for_each_prefetched(rte_mbuf** pkts, uint16_t n, F&& f) noexcept {
  const auto fetch = [](rte_mbuf* m) {
    auto* d = rte_pktmbuf_mtod(m, uint8_t*);
    rte_prefetch0(d);
    if constexpr (kHeadroom) __builtin_prefetch(d - RTE_CACHE_LINE_SIZE, 1, 3);
  };
  for (uint16_t i = 0; i < std::min<uint16_t>(n, kPrefetchAhead); ++i) fetch(pkts[i]);
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) fetch(pkts[i + kPrefetchAhead]);
    f(pkts[i]);
  }
}

// In stages over the burst ("bursts through every stage"), so the misses of a stage overlap and
// its code stays hot: parse every packet; hash every flow and prefetch its bucket, then compare
// the keys of the lot (keys that spilled get their alternative bucket in a second pass); route
// every destination in one LPM bulk lookup only when some packet's flow is not decided in this
// snapshot; then send each in order, by lan_fast when its flow is established, else by the
// general forward().
void Worker::Impl::rx_lan(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now) noexcept {
  HeaderView hv[kBurst];
  rte_mbuf* ok[kBurst];
  uint16_t nk = 0;
  if (ablated(kAblateLanParse)) [[unlikely]] {  // bench ablation: see ablation.hpp
    for (uint16_t i = 0; i < n; ++i) tx(s, 1, pkts[i]);
    return;
  }
  FlowKey keys[kBurst];
  uint32_t hashes[kBurst];
  LanView lv[kBurst];
  for_each_prefetched<true>(pkts, n, [&](rte_mbuf* m) {
    // What nearly every LAN packet is, in one look (ipv4_flow_look): its key and the few fields
    // lan_fast reads, without filling a HeaderView (parse_frame and flow_key cost ~8 cycles a
    // packet more at 64 bytes, measured), and the key hashed from registers and its bucket
    // fetched at once, so the fetch has the rest of the burst's parsing to arrive in. The rest
    // takes parse_frame.
    Ipv4FlowLook fl;
    KeyWords kw;
    if (m->nb_segs == 1 && ipv4_flow_look(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), &fl))
        [[likely]] {
      kw = key_words(fl.src, fl.dst, fl.sport, fl.dport, fl.proto);
      lv[nk] = LanView{kEthLen, fl.ip_len, fl.ttl, fl.proto, fl.tcp_flags, false};
    } else if (rx_front(m, port, &hv[nk])) {
      const HeaderView& h = hv[nk];
      kw = key_words(h);
      lv[nk] = LanView{h.l3_off, h.ip_len, h.ttl, h.proto, h.tcp_flags, true};
    } else {
      return;
    }
    keys[nk] = flow_key(kw);
    hashes[nk] = FlowCache::hash_words(kw.w0, kw.w1);
    flows.prefetch(hashes[nk]);
    ok[nk++] = m;
  });
  if (ablated(kAblateLanFlow)) [[unlikely]] {
    for (uint16_t i = 0; i < nk; ++i) tx(s, 1, ok[i]);
    return;
  }
  uint32_t dsts[kBurst], hops[kBurst];
  FlowEntry* found[kBurst];
  static_assert(kBurst <= FlowCache::kMaxBurst);
  // keys and hashes [0, nk) were all written in the lambda above, which GCC 12 does not follow.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  flows.finish_burst(keys, hashes, nk, found);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  // A flow decided in this snapshot was routed to its path's peer in this snapshot (routes
  // change only with the generation): only a burst with another packet needs the routes.
  bool route = false;
  for (uint16_t i = 0; i < nk; ++i) route |= !decided(s, found[i]);
  const rte_lpm* lpm = route && s.routes != nullptr ? s.routes->raw() : nullptr;
  if (lpm != nullptr) {
    for (uint16_t i = 0; i < nk; ++i) dsts[i] = keys[i].dst;
    rte_lpm_lookup_bulk(lpm, dsts, hops, nk);
  }
  flows_moved = false;
  uint32_t encapsulated = 0;
  for (uint16_t i = 0; i < nk; ++i) {
    // An insert may have moved entries since the burst's lookup: look again (the bucket is hot).
    FlowEntry* e = flows_moved ? flows.lookup(keys[i], hashes[i]) : found[i];
    if (lan_fast(s, ok[i], lv[i], e, now, &encapsulated)) continue;
    if (!lv[i].parsed) {
      // The one look accepted it, so the walk does too: this is the view forward() needs.
      const ParseError pe = parse_mbuf(ok[i], &hv[i]);
      if (pe != ParseError::kOk) [[unlikely]] {
        drop(ok[i], drop_for(pe));
        continue;
      }
    }
    const FlowHint fh{keys[i], hashes[i], e};
    forward(s, ok[i], hv[i], port, false, now, &fh, lpm != nullptr ? &hops[i] : nullptr);
  }
  if (encapsulated != 0) ctr.encapsulated.add(encapsulated);
}

// forward() and to_peer() for a packet of an established flow: the flow's decision is from this
// snapshot and its class decides per flow (best, balance), and nothing asks for more (TTL above
// 1, no SYN to clamp, fits the path). Does exactly what they do then, with less looking up;
// false, packet untouched, for anything else. No route lookup: the decision was made in this
// snapshot by to_peer, which forward() reaches only for a destination that is not ours, not a
// broadcast and routed to a peer, and the snapshot's routes and addresses are what they were
// then; so the destination still goes to the path's peer.
[[gnu::always_inline]] inline bool Worker::Impl::lan_fast(const Snapshot& s, rte_mbuf* m, const LanView& v,
                                                          FlowEntry* e, uint64_t now,
                                                          uint32_t* encapsulated) noexcept {
  if (!decided(s, e)) return false;
  if (ablated(kAblateLanForward)) [[unlikely]] {
    tx(s, s.paths[e->path].port, m);
    return true;
  }
  const PathInfo& p = s.paths[e->path];
  const uint16_t peer = p.peer;
  if (peer >= kMaxPeers || v.ttl <= 1 || (v.proto == IPPROTO_TCP && (v.tcp_flags & kTcpSyn) != 0)) return false;
  // A drill on the path (drill_hit) and the MTU are to_peer's to handle.
  if (v.ip_len > tunnel_max_inner(p.mtu) || p.drill_drop_ppm != 0) return false;
  const uint32_t want = v.l3_off + v.ip_len;
  if (rte_pktmbuf_data_len(m) > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - want));
  ipv4_ttl_decrement(rte_pktmbuf_mtod(m, uint8_t*) + v.l3_off);
  if (!ablated(kAblateTouch)) flows.touch(e, now, v.ip_len);
  if (!overlay_push(m, v.l3_off, e->cls, static_cast<uint8_t>(cfg.index), ++peer_seq[peer])) {
    drop(m, Drop::kTooBig);
    return true;
  }
  if (ablated(kAblateCounters)) [[unlikely]] {
    to_esp(s, p, m);
    return true;
  }
  ++*encapsulated;
  ctr.class_pkts[e->cls % kMaxClasses].add();
  ctr.class_bytes[e->cls % kMaxClasses].add(v.ip_len);
  to_esp(s, p, m, v.ip_len);
  return true;
}

void Worker::Impl::rx_wan(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now) noexcept {
  rte_mbuf* esp[kBurst];  // ipv4_udp_to said yes: decrypted with the outer checks done
  rte_mbuf* walked[kBurst];  // wan_front's walk said yes (IP options, VLAN tags): checked in full
  uint16_t ne = 0, nw = 0;
  if (ablated(kAblateWanRx)) [[unlikely]] {  // bench ablation: see ablation.hpp
    for (uint16_t i = 0; i < n; ++i) tx(s, s.lan_port, pkts[i]);
    return;
  }
  const uint32_t addr = s.ports[port].addr.v;
  const uint16_t overlay_port = s.overlay_port;
  for_each_prefetched(pkts, n, [&](rte_mbuf* m) {
    // What nearly every frame is, ESP in UDP to us, in one look (what wan_front's walk would
    // find); here rather than in wan_front, whose call cost ~3 cycles a packet.
    if (m->nb_segs == 1 && ipv4_udp_to(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), addr,
                                       overlay_port)) [[likely]]
      esp[ne++] = m;
    else if (wan_front(s, port, m, now))
      walked[nw++] = m;
  });
  if (ablated(kAblateWanFront)) [[unlikely]] {
    for (uint16_t i = 0; i < ne; ++i) tx(s, s.lan_port, esp[i]);
    for (uint16_t i = 0; i < nw; ++i) tx(s, s.lan_port, walked[i]);
    return;
  }
  if (ne != 0) wan_esp(s, port, esp, ne, now, true);
  if (nw != 0) wan_esp(s, port, walked, nw, now, false);
}

// An uplink accepts only what is addressed to it: ESP in UDP on the overlay port (true: the
// caller decrypts it in a burst), or ICMP echo; everything else is dropped and counted. For the
// frames rx_wan's first look (ipv4_udp_to) did not take.
bool Worker::Impl::wan_front(const Snapshot& s, uint8_t port, rte_mbuf* m, uint64_t now) noexcept {
  HeaderView hv;
  if (!rx_front(m, port, &hv)) return false;
  if (hv.dst4 != s.ports[port].addr.v) {
    drop(m, Drop::kNotForUs);
    return false;
  }
  if (hv.fragment) {
    drop(m, Drop::kFragment);
    return false;
  }
  if (hv.proto != IPPROTO_UDP || hv.dport != s.overlay_port) {
    local_in(s, m, hv, port, false, now);
    return false;
  }
  // Ethernet padding and VLAN tags are the decrypt burst's to judge: it reads the outer
  // headers itself (a tagged frame is a bad_length there).
  return true;
}

// Decrypts a burst of ESP frames (SA by SPI, anti-replay, ICV; esp.hpp), then routes each
// inner packet like one from the LAN. Failures are counted by reason in esp_ctr and freed.
void Worker::Impl::wan_esp(const Snapshot& s, uint8_t port, rte_mbuf** pkts, uint16_t n, uint64_t now,
                           bool outer_checked) noexcept {
  uint16_t kept = 0;
  uint8_t nh[kBurst];
  uint16_t tags[kBurst];
  const InboundSa* sas[kBurst];
  if (engine != nullptr && s.inbound != nullptr) [[likely]]
    kept = esp_decrypt_burst(*engine, *s.inbound, std::span<rte_mbuf*>(pkts, n), esp_ctr, nh, tags, cfg.index, sas,
                             outer_checked);
  else
    esp_ctr.drop(EspDrop::kUnknownSpi, n);
  for (uint16_t i = kept; i < n; ++i) rte_pktmbuf_free(pkts[i]);
  if (ablated(kAblateWanDecrypt)) [[unlikely]] {  // bench ablation: see ablation.hpp
    for (uint16_t i = 0; i < kept; ++i) tx(s, s.lan_port, pkts[i]);
    return;
  }
  Handoff ho[kBurst];
  uint16_t ho_to[kBurst];
  uint16_t nho = 0;
  // Inner packets due for delivery now, in arrival order: delivered as one burst at the end.
  rte_mbuf* out[kBurst];
  uint16_t nout = 0;
  const size_t n_paths = s.paths.size();
  // Inner packets sent by the fused path (wan_inner_hop), counted once a burst.
  uint32_t nfast = 0;
  LastHop last_hop;
  uint32_t dd_peer = UINT32_MAX;
  uint8_t dd_stream = 0;
  ReplayWindow* dd_window = nullptr;
  // A path's received packets and bytes, added once a run of its packets (a burst is mostly one
  // path's) rather than once a packet.
  uint32_t run_path = kMaxPaths;
  uint64_t run_pkts = 0, run_bytes = 0;
  const auto flush_run = [&] {
    if (run_pkts == 0) return;
    path_ctr[run_path].rx_pkts.add(run_pkts);
    path_ctr[run_path].rx_bytes.add(run_bytes);
    run_pkts = run_bytes = 0;
  };
  for (uint16_t i = 0; i < kept; ++i) {
    rte_mbuf* m = pkts[i];
    OverlayHdr ov;
    if (tags[i] < n_paths && drill_hit(s.paths[tags[i]])) [[unlikely]] {
      ctr.drill_rx_dropped.add();
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      if (nh[i] == kEspNextOverlay && rte_pktmbuf_data_len(m) >= sizeof(OverlayHdr) &&
          (d[0] & 0x0f) == static_cast<uint8_t>(OverlayType::kData))
        ctr.drill_rx_class[d[1] % kMaxClasses].add();
      rte_pktmbuf_free(m);
      continue;
    }
    if (nh[i] == kEspNextOverlay && tags[i] < n_paths && rte_pktmbuf_data_len(m) != 0 &&
        *rte_pktmbuf_mtod(m, const uint8_t*) == (kOverlayVersion << 4 | static_cast<uint8_t>(OverlayType::kProbe))) {
      on_probe(s, m, tags[i], sas[i], now);
      continue;
    }
    if (nh[i] != kEspNextOverlay || !overlay_peek(m, &ov)) {
      drop(m, Drop::kBadOverlay);
      continue;
    }
    if (tags[i] < kMaxPaths) {
      if (tags[i] != run_path) {
        flush_run();
        run_path = tags[i];
      }
      ++run_pkts;
      run_bytes += rte_pktmbuf_data_len(m) - sizeof(OverlayHdr);
    }
    if (ablated(kAblateWanOverlay)) [[unlikely]] {  // bench ablation: see ablation.hpp
      tx(s, s.lan_port, m);
      continue;
    }
    if (tags[i] >= n_paths) {
      overlay_strip(m);
      out[nout++] = m;
      continue;
    }
    const uint16_t peer = s.paths[tags[i]].peer;
    uint32_t total;
    if (const MacAddr* mac = wan_inner_hop(s, m, ov, peer, last_hop, &total)) [[likely]] {
      if (ablated(kAblateWanParse)) [[unlikely]] {
        tx(s, s.lan_port, m);
        continue;
      }
      // In arrival order: what waits for the general path goes first.
      if (nout != 0) {
        deliver_burst(s, out, nout, port, now);
        nout = 0;
      }
      if ((ov.flags & kOverlayDuplicated) != 0) {
        // The burst's last (peer, stream) window: consecutive packets mostly share it.
        if (peer != dd_peer || ov.stream != dd_stream) {
          dd_peer = peer;
          dd_stream = ov.stream;
          dd_window = dedup_window(peer, ov.stream);
        }
        if (dedup_seen_in(dd_window, ov.seq)) {
          drop(m, Drop::kDuplicate);
          continue;
        }
      }
      send_inner(s, m, last_hop.lan, *mac, total);
      ++nfast;
      continue;
    }
    overlay_strip(m);
    if ((ov.flags & (kOverlayDuplicated | kOverlaySprayed)) == 0) {
      out[nout++] = m;
      continue;
    }
    // Each path's SA is decrypted by the worker whose RX queue it hashes to, so the copies of one
    // packet, or the packets of one spray sequence, may reach different workers: all go to the
    // one that owns their (peer, stream).
    const uint16_t owner = stream_owner(peer, ov.stream);
    if (owner != cfg.index && cfg.channels.handoff_to[owner] != nullptr) {
      ho[nho] = Handoff{m, ov.seq, ov.reserved, peer, ov.stream, ov.flags, ov.cls, port};
      ho_to[nho++] = owner;
      continue;
    }
    if (sequenced(s, m, peer, ov, port, now)) out[nout++] = m;
  }
  flush_run();
  ctr.decapsulated.add(nfast);
  if (nho != 0) handoff_send(ho, ho_to, nho);
  if (nout != 0) deliver_burst(s, out, nout, port, now);
}

// A duplicate or spray packet of a (peer, stream) this worker owns, decrypted here or handed
// over by the worker that decrypted it. Both copies of a duplicate counted on their paths (each
// path did carry it); only the first is delivered. True when m is due now: the caller delivers
// it (in its burst); false when it was consumed (a duplicate dropped, a spray packet reordered).
// Inlined: out of line, the call cost WAN->LAN ~10 cycles a packet when every packet is a
// duplicate's (measured).
[[gnu::always_inline]] inline bool Worker::Impl::sequenced(const Snapshot& s, rte_mbuf* m, uint16_t peer,
                                                           const OverlayHdr& ov, uint8_t port, uint64_t now) noexcept {
  if ((ov.flags & kOverlayDuplicated) != 0 && dedup_seen(peer, ov.stream, ov.seq)) {
    drop(m, Drop::kDuplicate);
    return false;
  }
  if ((ov.flags & kOverlaySprayed) != 0) {
    reorder_in(s, m, peer, ov, port, now);
    return false;
  }
  return true;
}

// One enqueue burst per owner, in arrival order (spray's buffer does not need it, but it holds
// fewer packets for it). A full ring drops and counts what did not fit.
void Worker::Impl::handoff_send(const Handoff* h, const uint16_t* to, uint16_t n) noexcept {
  static_assert(kBurst <= 64);
  Handoff batch[kBurst];
  uint64_t sent_mask = 0;
  for (uint16_t i = 0; i < n; ++i) {
    if ((sent_mask >> i & 1) != 0) continue;
    const uint16_t w = to[i];
    uint16_t k = 0;
    for (uint16_t j = i; j < n; ++j)
      if (to[j] == w) {
        batch[k++] = h[j];
        sent_mask |= uint64_t{1} << j;
      }
    const unsigned sent =
        rte_ring_sp_enqueue_burst_elem(cfg.channels.handoff_to[w], batch, sizeof(Handoff), k, nullptr);
    ctr.handoff_out.add(sent);
    for (unsigned j = sent; j < k; ++j) drop(batch[j].m, Drop::kHandoffFull);
  }
}

// What the other workers handed over: up to kHandoffPerPoll from each, in bursts.
uint32_t Worker::Impl::handoff_receive(const Snapshot& s, uint64_t now) noexcept {
  uint32_t total = 0;
  for (uint16_t w = 0; w < cfg.count && w < kMaxWorkers; ++w) {
    rte_ring* r = cfg.channels.handoff_from[w];
    if (r == nullptr) continue;
    for (uint32_t taken = 0; taken < kHandoffPerPoll;) {
      Handoff h[kBurst];
      const unsigned k = rte_ring_sc_dequeue_burst_elem(r, h, sizeof(Handoff), kBurst, nullptr);
      if (k == 0) break;
      taken += k;
      ctr.handoff_in.add(k);
      for (unsigned i = 0; i < k; ++i) {
        OverlayHdr ov{};
        ov.cls = h[i].cls;
        ov.stream = h[i].stream;
        ov.flags = h[i].flags;
        ov.reserved = h[i].spray_seq;
        ov.seq = h[i].seq;
        // The sender's snapshot named the peer and port; a reload may have shrunk this one's.
        if (h[i].peer >= kMaxPeers || h[i].port >= s.ports.size()) {
          drop(h[i].m, Drop::kNoRoute);
          continue;
        }
        if (sequenced(s, h[i].m, h[i].peer, ov, h[i].port, now)) deliver(s, h[i].m, h[i].port, now);
      }
      total += k;
      if (k < kBurst) break;
    }
  }
  return total;
}

// An inner packet out of the tunnel (Ethernet header blank) to its destination.
void Worker::Impl::deliver(const Snapshot& s, rte_mbuf* m, uint8_t port, uint64_t now) noexcept {
  deliver_burst(s, &m, 1, port, now);
}

// Inner packets out of the tunnel, in stages as rx_lan does: parse every one, route them all in
// one LPM bulk lookup, then send each by wan_fast when it goes to a LAN port, else by the general
// forward() with its route.
void Worker::Impl::deliver_burst(const Snapshot& s, rte_mbuf** pkts, uint16_t n, uint8_t port, uint64_t now) noexcept {
  if (ablated(kAblateWanOverlay)) [[unlikely]] {  // bench ablation: see ablation.hpp
    for (uint16_t i = 0; i < n; ++i) tx(s, s.lan_port, pkts[i]);
    return;
  }
  HeaderView hv[kBurst];
  rte_mbuf* ok[kBurst];
  uint32_t dsts[kBurst], hops[kBurst];
  uint16_t nk = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const ParseError ie = parse_mbuf(m, &hv[nk]);
    if (ie != ParseError::kOk) {
      drop(m, drop_for(ie));
      continue;
    }
    if (hv[nk].l3 != L3::kIpv4) {
      drop(m, Drop::kIpv6Unsupported);
      continue;
    }
    dsts[nk] = hv[nk].dst4;
    ok[nk++] = m;
  }
  ctr.decapsulated.add(nk);
  if (ablated(kAblateWanParse)) [[unlikely]] {
    for (uint16_t i = 0; i < nk; ++i) tx(s, s.lan_port, ok[i]);
    return;
  }
  const rte_lpm* lpm = s.routes != nullptr ? s.routes->raw() : nullptr;
  if (lpm != nullptr && nk != 0)
    rte_lpm_lookup_bulk(lpm, dsts, hops, nk);
  else
    std::fill_n(hops, nk, 0u);
  for (uint16_t i = 0; i < nk; ++i)
    if (!wan_fast(s, ok[i], hv[i], hops[i]))
      forward(s, ok[i], hv[i], port, true, now, nullptr, lpm != nullptr ? &hops[i] : nullptr);
}

// forward() for an inner packet whose route is a LAN port, when nothing asks for more: what
// forward() and to_lan() do then (lan_hop), without their other branches. Going through them for
// every packet cost ~10-20 cycles a packet at 64 bytes (measured). False, packet untouched, for
// anything else: forward() takes it.
bool Worker::Impl::wan_fast(const Snapshot& s, rte_mbuf* m, HeaderView& hv, uint32_t hop) noexcept {
  uint8_t lan;
  const MacAddr* mac = lan_hop(s, hv.dst4, hv.ttl, hv.ip_len, hop, &lan);
  if (mac == nullptr) return false;
  const uint32_t want = hv.l3_off + hv.ip_len;
  if (rte_pktmbuf_data_len(m) > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - want));
  send_lan(s, m, hv.l3_off, lan, *mac);
  return true;
}

// The common case of forward() and to_lan() for an IPv4 packet to dst (TTL ttl, total length
// ip_len) whose LPM result is hop: routed to a LAN port, not ours, not a broadcast (limited,
// directed) or multicast, TTL above 1, within the port's MTU and its neighbour resolved. Then the
// neighbour's MAC (and the port in lan); else nullptr, and forward() decides (an ICMP error, a
// resolve, local delivery...).
const MacAddr* Worker::Impl::lan_hop(const Snapshot& s, uint32_t dst, uint8_t ttl, uint32_t ip_len, uint32_t hop,
                                     uint8_t* lan) const noexcept {
  if (ttl <= 1) return nullptr;
  const MacAddr* mac = lan_dst(s, dst, hop, lan);
  return mac != nullptr && ip_len <= s.ports[*lan].mtu ? mac : nullptr;
}

// lan_hop's part that depends on the destination alone (all but TTL and MTU).
const MacAddr* Worker::Impl::lan_dst(const Snapshot& s, uint32_t dst, uint32_t hop, uint8_t* lan) const noexcept {
  if ((hop & RTE_LPM_LOOKUP_SUCCESS) == 0 || (hop & RouteTarget::kLocal) == 0) return nullptr;
  if (dst == 0xffffffffu || (dst >> 28) >= 0xe || is_ours(s, dst)) return nullptr;
  const auto port = static_cast<uint8_t>(hop & 0xff);
  if (port >= s.ports.size()) return nullptr;
  const PortInfo& p = s.ports[port];
  const uint32_t mask = p.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - p.prefix_len);
  if (p.prefix_len < 31 && (dst & ~mask) == ~mask) return nullptr;
  *lan = port;
  return s.neighbors.lookup(port, Ipv4{dst});
}

// What nearly every decrypted data packet is, judged in one look at fixed offsets: after the
// overlay header (checked by the caller) an IPv4 packet without options, whole, not a fragment,
// with a good header checksum, routed to a resolved LAN host (lan_hop); not sprayed, and a
// duplicate's only when this worker owns its stream. Then the neighbour's MAC, and the port and
// the IP total length in lan and total; else nullptr, m untouched, for the general path
// (overlay_pull, deliver_burst: a HeaderView, an LPM bulk lookup, wan_fast; ~25 cycles a packet
// more at 64 bytes, measured).
[[gnu::always_inline]] inline const MacAddr* Worker::Impl::wan_inner_hop(const Snapshot& s, const rte_mbuf* m,
                                                                         const OverlayHdr& ov, uint16_t peer,
                                                                         LastHop& last, uint32_t* total) const noexcept {
  if ((ov.flags & kOverlaySprayed) != 0) return nullptr;
  if ((ov.flags & kOverlayDuplicated) != 0 && stream_owner(peer, ov.stream) != cfg.index) return nullptr;
  // One segment: overlay_peek saw to it.
  const uint32_t len = rte_pktmbuf_data_len(m);
  if (len < sizeof(OverlayHdr) + 20) return nullptr;
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*) + sizeof(OverlayHdr);
  const uint32_t tot = ipv4_plain_len(ip, len - sizeof(OverlayHdr));
  if (tot == 0) return nullptr;
  const uint32_t dst = be::load32(ip + 16);
  if (dst != last.dst || last.mac == nullptr) {
    uint32_t hop = 0;
    if (s.routes == nullptr || rte_lpm_lookup(const_cast<rte_lpm*>(s.routes->raw()), dst, &hop) != 0) return nullptr;
    last.dst = dst;
    last.mac = lan_dst(s, dst, hop | RTE_LPM_LOOKUP_SUCCESS, &last.lan);
    if (last.mac == nullptr) return nullptr;
    last.mtu = s.ports[last.lan].mtu;
  }
  if (ip[8] <= 1 || tot > last.mtu) return nullptr;
  *total = tot;
  return last.mac;
}

// Sends what wan_inner_hop judged: the overlay header's last 14 bytes become the Ethernet header.
[[gnu::always_inline]] inline void Worker::Impl::send_inner(const Snapshot& s, rte_mbuf* m, uint8_t lan,
                                                            const MacAddr& mac, uint32_t total) noexcept {
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*) + sizeof(OverlayHdr) - kEthLen;
  ipv4_ttl_decrement(f + kEthLen);
  std::memcpy(f, mac.b.data(), 6);
  std::memcpy(f + 6, s.ports[lan].mac.b.data(), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  m->data_off = static_cast<uint16_t>(m->data_off + sizeof(OverlayHdr) - kEthLen);
  m->data_len = static_cast<uint16_t>(kEthLen + total);
  m->pkt_len = m->data_len;
  tx(s, lan, m);
}

// A sprayed packet: delivered at once when it is the one due (and the ones held behind it
// with it), held when it is ahead, delivered at once and counted late when it is behind.
void Worker::Impl::reorder_in(const Snapshot& s, rte_mbuf* m, uint16_t peer, const OverlayHdr& ov, uint8_t port,
                              uint64_t now) noexcept {
  int32_t& slot = reorder_slot[size_t{peer} * kDedupStreams + (ov.stream & (kDedupStreams - 1))];
  if (slot < 0) {
    if (n_reorder == kReorderStates) {
      ctr.reorder_no_buffer.add();
      return deliver(s, m, port, now);
    }
    slot = static_cast<int32_t>(n_reorder++);
  }
  Reorder& r = reorder[static_cast<size_t>(slot)];
  const Policy* pol = s.policy.get();
  uint32_t hold_us = pol != nullptr && ov.cls < pol->n_classes && peer < pol->n_peers
                         ? pol->at(ov.cls, peer).reorder_hold_us
                         : 0;
  if (hold_us == 0) hold_us = kReorderDefaultHoldUs;
  r.hold_tsc = hold_us * hz / 1000000;
  const uint32_t seq = ov.reserved;
  if (!r.started) {
    // Senders count from 1: the first packet to arrive need not be the first sent.
    r.started = true;
    r.next = 1;
  }
  auto ahead = static_cast<int32_t>(seq - r.next);
  if (ahead > kReorderResync || ahead < -kReorderResync) {
    // Far off either way: the sender (or we) restarted. Start again from this packet.
    ctr.reorder_skipped.add(ahead > 0 ? static_cast<uint32_t>(ahead) : 0);
    for (uint32_t k = 0; k < r.n; ++k) deliver(s, r.at(k).m, r.at(k).port, now);
    if (r.n != 0) --reorder_holding;
    r.n = 0;
    r.next = seq;
    ahead = 0;
  }
  if (ahead < 0) {
    ctr.reorder_late.add();
    return deliver(s, m, port, now);
  }
  if (ahead == 0) {
    ++r.next;
    deliver(s, m, port, now);
    return reorder_drain(s, r, now);
  }
  if (r.n == kReorderSlots) {
    // Full: give up on the gap before the oldest held packet.
    ctr.reorder_skipped.add(r.at(0).seq - r.next);
    r.next = r.at(0).seq;
    reorder_drain(s, r, now);
  }
  uint32_t at = r.n;
  while (at > 0 && static_cast<int32_t>(r.at(at - 1).seq - seq) > 0) --at;
  if (at > 0 && r.at(at - 1).seq == seq) return drop(m, Drop::kDuplicate);
  for (uint32_t k = r.n; k > at; --k) r.at(k) = r.at(k - 1);
  r.at(at) = Held{m, seq, port, now};
  if (r.n++ == 0) ++reorder_holding;
  ctr.reorder_held.add();
}

void Worker::Impl::reorder_drain(const Snapshot& s, Reorder& r, uint64_t now) noexcept {
  uint32_t k = 0;
  while (k < r.n && r.at(k).seq == r.next) {
    deliver(s, r.at(k).m, r.at(k).port, now);
    ++r.next;
    ++k;
  }
  if (k == 0) return;
  r.head = (r.head + k) & (kReorderSlots - 1);
  r.n -= k;
  if (r.n == 0) --reorder_holding;
}

// Releases what has waited its hold time: the gap before it is given up (lost or very late).
void Worker::Impl::reorder_expire(const Snapshot& s, uint64_t now) noexcept {
  for (uint32_t i = 0; i < n_reorder && reorder_holding != 0; ++i) {
    Reorder& r = reorder[i];
    if (r.n == 0 || now - r.at(0).tsc < r.hold_tsc) continue;
    ctr.reorder_timeouts.add();
    ctr.reorder_skipped.add(r.at(0).seq - r.next);
    r.next = r.at(0).seq;
    reorder_drain(s, r, now);
  }
}

// Sends the probes that are due among the next kProbeScan paths (this worker's: id % count),
// each a STAMP test packet in the path's ESP SA, stamped now. Timers start staggered over one
// interval so probes do not leave in one burst.
void Worker::Impl::send_probes(const Snapshot& s, uint64_t now) noexcept {
  const auto n_paths = static_cast<uint32_t>(s.paths.size());
  if (s.probe_interval_ms == 0 || cfg.pool == nullptr || n_paths == 0) return;
  const uint64_t interval = s.probe_interval_ms * hz / 1000;
  for (uint32_t k = 0; k < std::min(kProbeScan, n_paths); ++k) {
    const uint32_t id = probe_cursor;
    probe_cursor = probe_cursor + 1 >= n_paths ? 0 : probe_cursor + 1;
    if (id % cfg.count != cfg.index) continue;
    uint64_t& due = probe_due[id];
    if (due == 0) {
      due = now + interval * id / n_paths + 1;
      continue;
    }
    if (now < due) continue;
    // Late by more than an interval (the worker slept, the interval changed): start again
    // from now rather than send a catch-up burst.
    due = now - due > interval ? now + interval : due + interval;
    const PathInfo& p = s.paths[id];
    if (!p.usable || p.sa == nullptr) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(cfg.pool);
    if (m == nullptr) {
      ctr.probe_alloc_failed.add();
      continue;
    }
    auto* d = rte_pktmbuf_mtod(m, uint8_t*);
    if (rte_pktmbuf_append(m, sizeof(OverlayHdr) + kProbeLen) == nullptr) {
      rte_pktmbuf_free(m);
      ctr.probe_alloc_failed.add();
      continue;
    }
    std::memset(d, 0, sizeof(OverlayHdr) + kProbeLen);
    d[0] = kOverlayVersion << 4 | static_cast<uint8_t>(OverlayType::kProbe);
    d[2] = static_cast<uint8_t>(cfg.index);
    StampTest t{};
    t.seq = rte_cpu_to_be_32(probe_seq[id]++);
    t.ts = stamp_ts(tsc_ns(rte_rdtsc()));
    t.err_est = rte_cpu_to_be_16(kStampErrEst);
    std::memcpy(d + sizeof(OverlayHdr), &t, sizeof t);
    path_ctr[id].probes_sent.add();
    if (drill_hit(p)) [[unlikely]] {
      ctr.drill_tx_dropped.add();
      rte_pktmbuf_free(m);
      continue;
    }
    to_esp(s, p, m);
  }
}

// A probe that arrived in path's SA: a test packet is reflected at once on the same path with
// the receive and transmit times and our counters; a reflection goes to control as a report.
void Worker::Impl::on_probe(const Snapshot& s, rte_mbuf* m, uint16_t path, const InboundSa* sa, uint64_t now) noexcept {
  uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
  if (rte_pktmbuf_data_len(m) < sizeof(OverlayHdr) + kProbeLen) return drop(m, Drop::kBadOverlay);
  uint8_t& flags = d[3];
  uint8_t* body = d + sizeof(OverlayHdr);
  if ((flags & kProbeReflected) == 0) {
    const uint64_t rx_ns = tsc_ns(now);
    ++probe_req_rx[path];
    const PathInfo& p = s.paths[path];
    if (!p.usable || p.sa == nullptr) return drop(m, Drop::kNoPath);
    StampTest t;
    std::memcpy(&t, body, sizeof t);
    StampReflected r{};
    r.seq = t.seq;
    r.err_est = rte_cpu_to_be_16(kStampErrEst);
    r.rx = stamp_ts(rx_ns);
    r.s_seq = t.seq;
    r.s_ts = t.ts;
    r.s_err_est = t.err_est;
    r.s_ttl = 255;
    ProbeExt x{};
    x.probes_rx = rte_cpu_to_be_64(probe_req_rx[path]);
    if (sa != nullptr) {
      x.esp_rx = rte_cpu_to_be_64(sa->pkts.load());
      x.esp_top = rte_cpu_to_be_64(sa->window.top());
      x.spi = rte_cpu_to_be_32(sa->spi);
    }
    r.ts = stamp_ts(tsc_ns(rte_rdtsc()));
    std::memcpy(body, &r, sizeof r);
    std::memcpy(body + sizeof r, &x, sizeof x);
    flags |= kProbeReflected;
    // Padding past the probe, if the sender added any, does not travel back.
    rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - sizeof(OverlayHdr) - kProbeLen));
    path_ctr[path].probes_reflected.add();
    if (drill_hit(p)) [[unlikely]] {
      ctr.drill_tx_dropped.add();
      rte_pktmbuf_free(m);
      return;
    }
    to_esp(s, p, m);
    return;
  }
  StampReflected r;
  ProbeExt x;
  std::memcpy(&r, body, sizeof r);
  std::memcpy(&x, body + sizeof r, sizeof x);
  ProbeReport rep{};
  rep.path = path;
  rep.seq = rte_be_to_cpu_32(r.s_seq);
  rep.t1_ns = stamp_ns(r.s_ts);
  rep.t2_ns = stamp_ns(r.rx);
  rep.t3_ns = stamp_ns(r.ts);
  rep.t4_ns = tsc_ns(now);
  rep.refl_probes_rx = rte_be_to_cpu_64(x.probes_rx);
  rep.refl_esp_rx = rte_be_to_cpu_64(x.esp_rx);
  rep.refl_esp_top = rte_be_to_cpu_64(x.esp_top);
  rep.refl_spi = rte_be_to_cpu_32(x.spi);
  rte_pktmbuf_free(m);
  path_ctr[path].probes_received.add();
  if (cfg.channels.to_control_probes == nullptr ||
      rte_ring_sp_enqueue_elem(cfg.channels.to_control_probes, &rep, sizeof rep) != 0)
    ctr.probe_reports_lost.add();
}

// 2,048 buckets (up to 4,096 flows, some 30 us) per poll: a dump never stalls the packets for
// long, and a worker that idles between polls (adaptive) still finishes 65,536 flows in 16 polls.
void Worker::Impl::dump_flows() noexcept {
  uint32_t n = dump_n.load(std::memory_order_relaxed);
  const uint64_t now = rte_rdtsc();
  dump_cursor = flows.for_each_in(dump_cursor, 2048, [&](const FlowEntry& e) {
    if (n == dump_max) return;
    FlowRecord& r = dump_out[n++];
    const FlowStats st = flows.stats(e, now);
    r.src = e.src;
    r.dst = e.dst;
    r.sport = e.sport;
    r.dport = e.dport;
    r.proto = e.proto;
    r.cls = e.cls;
    r.path = e.path;
    r.pkts = st.pkts;
    r.bytes = st.bytes;
    r.first_tsc = st.first_tsc;
    r.last_tsc = st.last_tsc;
  });
  dump_n.store(n, std::memory_order_relaxed);
  if (dump_cursor == 0 || n == dump_max) dump_state.store(2, std::memory_order_release);
}

uint32_t Worker::Impl::poll() noexcept {
  const Snapshot* s = cfg.snapshot->read();
  ctr.polls.add();
  if (s == nullptr) {
    if (cfg.qsbr && online) rte_rcu_qsbr_quiescent(cfg.qsbr, cfg.index);
    return 0;
  }
  const uint64_t now = rte_rdtsc();
  poll_now = now;
  if (s != ours_snap || s->generation != ours_gen) [[unlikely]] refresh_ours(*s);
  if (flow_idle_tsc == 0) flow_idle_tsc = kFlowIdleSeconds * hz;
  uint32_t moved = 0;

  if (cfg.channels.from_control_tx != nullptr) {
    rte_mbuf* c[kControlTxPerPoll];
    const unsigned k = rte_ring_sc_dequeue_burst(cfg.channels.from_control_tx, reinterpret_cast<void**>(c),
                                                 kControlTxPerPoll, nullptr);
    for (unsigned i = 0; i < k; ++i) {
      if (c[i]->port >= s->ports.size()) {
        rte_pktmbuf_free(c[i]);
        continue;
      }
      tx(*s, static_cast<uint8_t>(c[i]->port), c[i]);
    }
    ctr.control_tx.add(k);
    moved += k;
  }

  rte_mbuf* pkts[kBurst];
  // Queues whose last burst came full: read again in the next round. Queues past the 64th
  // (never in a real set-up) are read in the first round only.
  uint64_t again = 0;
  for (uint32_t round = 0, rx_moved = 0; round == 0 || (again != 0 && rx_moved < kPollBudget); ++round) {
    const uint64_t want = again;
    again = 0;
    for (size_t qi = 0; qi < cfg.rx.size(); ++qi) {
      if (round != 0 && (qi >= 64 || (want >> qi & 1) == 0)) continue;
      const RxQueue& q = cfg.rx[qi];
      if (q.port >= s->ports.size()) continue;
      const PortInfo& pi = s->ports[q.port];
      const uint16_t n = rte_eth_rx_burst(pi.port_id, q.queue, pkts, kBurst);
      if (n == 0) continue;
      uint64_t bytes = 0;
      for (uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);
      ctr.ports[q.port].rx_pkts.add(n);
      ctr.ports[q.port].rx_bytes.add(bytes);
      // The host port's packets are the host stack's, forwarded like the LAN's (route -> LAN or
      // ESP to a peer): nothing but an uplink's goes through rx_wan.
      if (pi.role == PortRole::kUplink)
        rx_wan(*s, q.port, pkts, n, now);
      else
        rx_lan(*s, q.port, pkts, n, now);
      moved += n;
      rx_moved += n;
      if (n == kBurst && qi < 64) again |= uint64_t{1} << qi;
    }
  }
  if (cfg.count > 1) moved += handoff_receive(*s, now);
  if (n_parked != 0) release_parked(*s, now);
  if (reorder_holding != 0) reorder_expire(*s, now);
  if (dump_state.load(std::memory_order_acquire) == 1) [[unlikely]] dump_flows();
  send_probes(*s, now);
  seal_all(*s);
  for (uint32_t i = 0; i < n_blk_dirty; ++i) esp_seq_block_flush(seq_blk[blk_dirty[i]]);
  n_blk_dirty = 0;
  for (uint8_t p = 0; p < s->ports.size(); ++p) flush(*s, p);
  expire_flows(now);
  if (moved) {
    ctr.busy_polls.add();
    // One TSC read per busy poll (a burst), not per packet.
    ctr.busy_tsc.add(rte_rdtsc() - now);
  }
  // Quiescent only after the last use of s in this iteration.
  if (cfg.qsbr && online) rte_rcu_qsbr_quiescent(cfg.qsbr, cfg.index);
  return moved;
}

Worker::Worker(const WorkerConfig& cfg) : impl_(std::make_unique<Impl>(cfg)) {}
Worker::~Worker() {
  for (uint32_t i = 0; i < impl_->n_parked; ++i) rte_pktmbuf_free(impl_->parked[i].m);
  for (uint32_t i = 0; i < impl_->n_reorder; ++i)
    for (uint32_t k = 0; k < impl_->reorder[i].n; ++k) rte_pktmbuf_free(impl_->reorder[i].at(k).m);
}

uint32_t Worker::poll_once() noexcept { return impl_->poll(); }

int Worker::run(const std::atomic<bool>& stop) noexcept {
  Impl& w = *impl_;
  if (w.cfg.qsbr) {
    rte_rcu_qsbr_thread_register(w.cfg.qsbr, w.cfg.index);
    rte_rcu_qsbr_thread_online(w.cfg.qsbr, w.cfg.index);
    w.online = true;
  }
  uint32_t idle = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (w.poll() != 0 || w.cfg.idle == IdlePolicy::kBusy) {
      idle = 0;
      continue;
    }
    if (++idle < kIdleSpinRounds) continue;
    const uint32_t us = std::min<uint32_t>(kIdleMaxSleepUs, 1u << std::min<uint32_t>(idle - kIdleSpinRounds, 8));
    // Offline while asleep, so control's grace periods do not wait for a sleeping worker.
    if (w.online) rte_rcu_qsbr_thread_offline(w.cfg.qsbr, w.cfg.index);
    rte_delay_us_sleep(us);
    if (w.online) rte_rcu_qsbr_thread_online(w.cfg.qsbr, w.cfg.index);
  }
  if (w.online) {
    rte_rcu_qsbr_thread_offline(w.cfg.qsbr, w.cfg.index);
    rte_rcu_qsbr_thread_unregister(w.cfg.qsbr, w.cfg.index);
    w.online = false;
  }
  return 0;
}

const WorkerCounters& Worker::counters() const noexcept { return impl_->ctr; }
const EspCounters& Worker::esp_counters() const noexcept { return impl_->esp_ctr; }
const PathCounters* Worker::path_counters() const noexcept { return impl_->path_ctr.get(); }
uint32_t Worker::flow_count() const noexcept { return impl_->flows.size(); }
uint16_t Worker::index() const noexcept { return impl_->cfg.index; }

bool Worker::request_flow_dump(FlowRecord* out, uint32_t max) noexcept {
  Impl& w = *impl_;
  if (w.dump_state.load(std::memory_order_acquire) == 1) return false;
  w.dump_out = out;
  w.dump_max = max;
  w.dump_n.store(0, std::memory_order_relaxed);
  w.dump_cursor = 0;
  w.dump_state.store(max == 0 ? 2 : 1, std::memory_order_release);
  return true;
}

bool Worker::flow_dump_done(uint32_t* n) const noexcept {
  if (impl_->dump_state.load(std::memory_order_acquire) == 1) return false;
  *n = impl_->dump_n.load(std::memory_order_relaxed);
  return true;
}

}  // namespace sdwan::dp
