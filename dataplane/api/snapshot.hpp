// The immutable tables control builds and publishes to the workers (DESIGN.md "snapshot").
// Workers only read them; control never changes a published one, it builds the next.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/api/counters.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/policy.hpp"
#include "dataplane/api/types.hpp"

struct rte_lpm;

namespace sdwan::dp {

constexpr uint32_t kMaxPathsPerPeer = 16;
constexpr uint32_t kMaxUplinks = 4;

/// What a port is for. kHost: the exception path to the appliance's own host stack (a tap in
/// its network namespace): what it sends is forwarded like LAN traffic, what comes for the LAN
/// address and the dataplane does not answer goes to it (docs/host.md). Never an uplink.
enum class PortRole : uint8_t { kLan, kUplink, kHost };

/// Snapshot::host_port when there is no host port.
constexpr uint8_t kNoHostPort = 0xff;

/// Idle behaviour of a worker with empty queues.
enum class IdlePolicy : uint8_t { kBusy, kAdaptive };

/// One port as the workers see it. Index in Snapshot::ports is the "port index".
struct PortInfo {
  uint16_t port_id = 0;  // DPDK ethdev id
  PortRole role = PortRole::kLan;
  uint8_t uplink = 0;    // index among uplinks when role == kUplink
  MacAddr mac;
  Ipv4 addr;             // our address on this port
  uint8_t prefix_len = 0;
  uint16_t mtu = 1500;   // L3 MTU
  bool link_up = true;
  MacAddr host_mac;      // kHost: the kernel interface's MAC, where frames to the host stack go
};

/// One path: (uplink, peer endpoint). Outer headers come ready from control.
struct PathInfo {
  uint16_t id = 0;
  uint8_t port = 0;      // port index of the uplink
  uint16_t peer = 0;
  bool usable = false;   // link up, next hop resolved, an outbound SA installed: probes may go
  bool up = true;        // and measured up (control's path state): data may go
  // The path's live measurement as control last published it (at least once per probe
  // interval); kNoMetric until the first replies.
  static constexpr uint32_t kNoMetric = ~uint32_t{0};
  uint32_t rtt_us = kNoMetric;       // smoothed round-trip time
  uint32_t jitter_us = kNoMetric;    // RTT variation (control/measure's definition)
  uint32_t loss_fwd_ppm = kNoMetric; // loss towards the peer, parts per million
  uint32_t loss_rev_ppm = kNoMetric; // loss from the peer
  /// A failover drill (sdwanctl drill) drops this share of everything the path sends and
  /// receives, probes included, in parts per million: 1,000,000 is a blackout. 0 normally.
  uint32_t drill_drop_ppm = 0;
  /// The path's outbound SA (Snapshot::out_sas keeps it alive); null: nothing may be sent on
  /// the path, as nothing ever goes out unencrypted.
  OutboundSa* sa = nullptr;
  /// The outer Ethernet/IPv4/UDP headers of its ESP packets, from the fields below.
  EspOuter outer;
  MacAddr src_mac, dst_mac;
  Ipv4 src_ip, dst_ip;
  uint16_t src_port = 0, dst_port = 0;
  uint16_t mtu = 1500;   // L3 MTU of the uplink
};

/// A peer: its paths in preference order.
struct PeerInfo {
  uint8_t n_paths = 0;
  std::array<uint16_t, kMaxPathsPerPeer> paths{};
};

/// rte_lpm next-hop encoding (24 bits): a peer index, or kLocal | LAN port index.
struct RouteTarget {
  static constexpr uint32_t kLocal = 1u << 23;
  static constexpr uint32_t encode_peer(uint16_t peer) { return peer; }
  static constexpr uint32_t encode_local(uint8_t port) { return kLocal | port; }
};

/// An IPv4 LPM table (rte_lpm) owned by control; shared by consecutive snapshots.
class RouteTable {
 public:
  /// Control: creates an empty table on socket for up to max_rules routes. Needs EAL.
  static std::unique_ptr<RouteTable> create(uint32_t max_rules, int socket);
  ~RouteTable();
  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;
  /// Control: adds or replaces a route; false if the table is full.
  bool add(Prefix4 p, uint32_t target);
  /// Any thread: the target for a, or false when no route matches.
  bool lookup(Ipv4 a, uint32_t* target) const noexcept;
  /// Any thread: the 0.0.0.0/0 target (rte_lpm has no depth 0, so it is kept here).
  bool default_route(uint32_t* target) const noexcept {
    *target = default_target_;
    return has_default_;
  }
  /// Worker: the raw table for burst lookups.
  const rte_lpm* raw() const noexcept { return lpm_; }
  /// Number of routes added.
  uint32_t size() const noexcept { return n_; }

 private:
  RouteTable() = default;
  rte_lpm* lpm_ = nullptr;
  uint32_t n_ = 0;
  bool has_default_ = false;
  uint32_t default_target_ = 0;
};

/// (port index, IPv4) -> MAC, open addressing, built once by control, read by workers.
class NeighborTable {
 public:
  struct Entry {
    uint32_t ip = 0;     // host order; 0 = empty slot
    uint8_t port = 0;
    MacAddr mac;
  };
  NeighborTable() = default;
  /// Control: builds from entries (sizes the table to at most half full).
  explicit NeighborTable(const std::vector<Entry>& entries);
  /// Worker: the MAC for ip on port, or nullptr.
  const MacAddr* lookup(uint8_t port, Ipv4 ip) const noexcept {
    if (slots_.empty()) return nullptr;
    for (uint32_t i = hash(ip.v, port) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.ip == 0) return nullptr;
      if (e.ip == ip.v && e.port == port) return &e.mac;
    }
  }
  size_t size() const noexcept { return n_; }

 private:
  static uint32_t hash(uint32_t ip, uint8_t port) noexcept {
    return (ip * 0x9E3779B1u) ^ (uint32_t{port} * 0x85EBCA77u);
  }
  std::vector<Entry> slots_;
  uint32_t mask_ = 0;
  size_t n_ = 0;
};

/// Everything a worker needs to forward, in one immutable version.
struct Snapshot {
  uint64_t generation = 0;
  std::vector<PortInfo> ports;            // index = port index
  uint8_t lan_port = 0;                   // port index of the LAN port
  uint8_t host_port = kNoHostPort;        // port index of the host port (PortRole::kHost), if any
  std::vector<PathInfo> paths;            // index = path id
  std::vector<PeerInfo> peers;            // index = peer index
  std::shared_ptr<const RouteTable> routes;
  NeighborTable neighbors;
  /// ESP: inbound SAs by SPI, shared by consecutive snapshots until an SA comes or goes;
  /// null = no inbound SA (every ESP packet is an unknown SPI).
  std::shared_ptr<const InboundTable> inbound;
  /// Keep every SA that paths and inbound point to alive until this snapshot's grace period
  /// has passed (control frees them afterwards, never under a worker).
  std::vector<std::shared_ptr<OutboundSa>> out_sas;
  std::vector<std::shared_ptr<InboundSa>> in_sas;
  /// Traffic classes and the paths each uses per peer (issue 6); null: one class, the first
  /// path that is up. Shared by consecutive snapshots until the policy changes.
  std::shared_ptr<const Policy> policy;
  uint16_t overlay_port = 4500;           // UDP port we listen on and send to
  uint32_t probe_interval_ms = 0;         // every usable path is probed this often; 0 = never
  uint32_t icmp_errors_per_sec = 100;     // per worker token bucket rate
  uint32_t icmp_errors_burst = 50;
};

}  // namespace sdwan::dp
