// What crosses between a worker and the control thread, apart from snapshots.
#pragma once

#include <cstdint>

struct rte_ring;

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

/// The rings of one worker. Each is single-producer, single-consumer.
struct WorkerChannels {
  rte_ring* to_control_pkts = nullptr;  /// worker -> control: ARP frames (mbuf*; port index in mbuf->port)
  rte_ring* to_control_resolve = nullptr;  /// worker -> control: ResolveRequest elements
  rte_ring* from_control_tx = nullptr;  /// control -> worker: frames to send (mbuf*; port index in mbuf->port)
  rte_ring* to_control_probes = nullptr;  /// worker -> control: ProbeReport elements
};

}  // namespace sdwan::dp
