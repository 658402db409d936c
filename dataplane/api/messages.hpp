// What crosses between a worker and the control thread, apart from snapshots.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

struct rte_ring;
struct rte_mbuf;

namespace sdwan::dp {

/// Worker -> control: "this IPv4 on this port needs an ARP entry". 8 bytes, in an rte_ring
/// of 8-byte elements.
struct ResolveRequest {
  uint32_t ip;      // host order
  uint8_t port;     // port index
  uint8_t pad[3];
};
static_assert(sizeof(ResolveRequest) == 8);

/// Worker -> control: one reflected probe came back (dataplane/overlay/stamp.hpp). t1 and t4
/// are this appliance's monotonic ns (TSC), t2 and t3 the reflector's: RTT = (t4 - t1) - (t3 - t2).
/// 72 bytes, in an rte_ring of 72-byte elements.
struct ProbeReport {
  uint16_t path;            // our path id (the SA the reflection came on)
  uint16_t pad = 0;
  uint32_t seq;             // our probe sequence number on the path
  uint64_t t1_ns, t2_ns, t3_ns, t4_ns;
  uint64_t refl_probes_rx;  // the reflector's counters for the path (cumulative)
  uint64_t refl_esp_rx;     // ESP packets it verified on our SA
  uint64_t refl_esp_top;    // the highest ESP sequence number it accepted on it
  uint32_t refl_spi;        // that SA
  uint32_t pad2 = 0;
};
static_assert(sizeof(ProbeReport) == 72);

/// Most workers one appliance runs (lcores.workers in the config).
constexpr uint32_t kMaxWorkers = 64;

/// Worker -> worker: a decrypted duplicate or spray packet whose (peer, stream) another worker
/// owns (docs/policy.md "Workers"), with what its overlay header said (the mbuf now starts with
/// a blank Ethernet header, overlay_pull). The receiving worker owns the mbuf. 32 bytes, in an
/// rte_ring of 32-byte elements.
struct Handoff {
  rte_mbuf* m;
  uint64_t seq;        // overlay sequence number (host order)
  uint32_t spray_seq;  // the overlay header's reserved field: spray's sequence number
  uint16_t peer;       // the peer it came from (the SA's path's peer)
  uint8_t stream;      // the sender's stream
  uint8_t flags;       // overlay flags (kOverlayDuplicated, kOverlaySprayed)
  uint8_t cls;         // traffic class
  uint8_t port;        // the uplink it arrived on (port index)
  uint8_t pad[6] = {};
};
static_assert(sizeof(Handoff) == 32);

/// The rings of one worker. Each is single-producer, single-consumer.
struct WorkerChannels {
  rte_ring* to_control_pkts = nullptr;  /// worker -> control: ARP frames (mbuf*; port index in mbuf->port)
  rte_ring* to_control_resolve = nullptr;  /// worker -> control: ResolveRequest elements
  rte_ring* from_control_tx = nullptr;  /// control -> worker: frames to send (mbuf*; port index in mbuf->port)
  rte_ring* to_control_probes = nullptr;  /// worker -> control: ProbeReport elements
  /// worker -> worker w: Handoff elements (null for itself, and with one worker). With none, a
  /// worker de-duplicates and reorders what it decrypts itself.
  std::array<rte_ring*, kMaxWorkers> handoff_to{};
  /// worker w -> this worker: Handoff elements.
  std::array<rte_ring*, kMaxWorkers> handoff_from{};
};

/// The worker -> worker rings of an appliance: one single-producer, single-consumer ring per
/// ordered pair of workers, all in one allocation (n x (n - 1) memzones would not fit DPDK's
/// limit at 64 workers). Control makes it at start, before the workers, and frees it after they
/// stopped; workers only use the rings attach() gave them.
class HandoffRings {
 public:
  /// Slots of one ring (a power of two); it holds one less.
  static constexpr uint32_t kRingSize = 512;
  /// Control, after rte_eal_init: rings for workers (1..kMaxWorkers; none for one worker) on
  /// NUMA socket. Null when the memory could not be had.
  static std::unique_ptr<HandoffRings> create(uint16_t workers, int socket);
  /// Frees the packets still in the rings, then the rings. Only once no worker runs.
  ~HandoffRings();
  HandoffRings(const HandoffRings&) = delete;
  HandoffRings& operator=(const HandoffRings&) = delete;
  /// Control: fills ch.handoff_to and ch.handoff_from of worker index.
  void attach(uint16_t index, WorkerChannels& ch) const noexcept;
  /// The ring from worker `from` to worker `to` (null when from == to).
  rte_ring* ring(uint16_t from, uint16_t to) const noexcept;

 private:
  HandoffRings(uint16_t workers, void* mem, uint64_t stride) noexcept : n_(workers), mem_(mem), stride_(stride) {}
  uint16_t n_;
  void* mem_;
  uint64_t stride_;
};

}  // namespace sdwan::dp
