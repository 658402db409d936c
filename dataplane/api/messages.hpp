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

/// The rings of one worker. Each is single-producer, single-consumer.
struct WorkerChannels {
  rte_ring* to_control_pkts = nullptr;  /// worker -> control: ARP frames (mbuf*; port index in mbuf->port)
  rte_ring* to_control_resolve = nullptr;  /// worker -> control: ResolveRequest elements
  rte_ring* from_control_tx = nullptr;  /// control -> worker: frames to send (mbuf*; port index in mbuf->port)
};

}  // namespace sdwan::dp
