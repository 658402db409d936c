// What the config implies for the dataplane: port indexes, paths, routes. Computed once per
// config; snapshots are built from it plus live state (links, neighbours). Control thread.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "control/config/config.hpp"
#include "control/neighbor/neighbor.hpp"
#include "dataplane/api/snapshot.hpp"

namespace sdwan::cp {

/// A port by index: 0 is the LAN, 1.. are the uplinks in config order, then the host port
/// (role kHost) when the config has one: test the role, not the index, for "an uplink".
struct TopoPort {
  std::string name;          // "lan", or the uplink's name
  std::string spec;
  dp::PortRole role;
  Prefix4 addr;
  uint16_t mtu = 1500;
  int uplink = -1;           // index in Config::uplinks
};

/// A path: (uplink, peer endpoint).
struct TopoPath {
  uint16_t id = 0;
  std::string name;          // "isp1:hub" ("isp1:hub#2" for a second endpoint on the same uplink)
  uint8_t port = 0;
  uint16_t peer = 0;
  size_t endpoint = 0;       // index in the peer's endpoints
  Ipv4 remote;
  uint16_t remote_port = 0;
  Ipv4 l2_target;            // whom we ARP for: the endpoint if on-link, else the uplink's next hop
  bool removed = false;      // its peer was removed by a live reload: never used again, id kept
};

struct Topology {
  std::vector<TopoPort> ports;
  std::vector<TopoPath> paths;
  std::vector<std::vector<uint16_t>> peer_paths;  // by peer index
  uint16_t overlay_port = 4500;
  uint32_t icmp_errors_per_sec = 100;
  // 0: no probes. make_topology leaves it 0 so that in-process tests and benches send no
  // probes unless they ask; the daemon sets it from paths.probe_interval.
  uint32_t probe_interval_ms = 0;
};

/// Derives the topology from a validated config.
Topology make_topology(const Config& cfg);

/// Live facts about a port that snapshots need.
struct PortLive {
  uint16_t port_id = 0;
  MacAddr mac;
  bool link_up = false;
  MacAddr host_mac;          // host port: its kernel interface's MAC
};

/// Why a path is not usable ("" when it is).
std::string path_down_reason(const TopoPath& p, const std::vector<PortLive>& live,
                             const NeighborManager& nm);

/// Builds the routes of a topology (LAN prefix -> LAN port, peer prefixes -> peers). Needs EAL.
Result<std::shared_ptr<const dp::RouteTable>> build_routes(const Config& cfg, int socket);

/// The ESP SA runtimes a snapshot points to (control/esp decides which).
struct SnapshotSas {
  std::vector<std::shared_ptr<dp::OutboundSa>> out;  ///< by path id; null or missing: none (unusable)
  std::shared_ptr<const dp::InboundTable> inbound;   ///< null: no inbound SA
  std::vector<std::shared_ptr<dp::InboundSa>> in;    ///< every SA in inbound, kept alive
};

/// A path's measured state (control/measure) as the snapshot carries it: PathInfo::up and the
/// metrics, already in the workers' units.
struct PathMeasured {
  bool up = true;  ///< measured up (data may go when also usable)
  uint32_t rtt_us = dp::PathInfo::kNoMetric;
  uint32_t jitter_us = dp::PathInfo::kNoMetric;
  uint32_t loss_fwd_ppm = dp::PathInfo::kNoMetric;
  uint32_t loss_rev_ppm = dp::PathInfo::kNoMetric;
  uint32_t drill_drop_ppm = 0;  ///< a running failover drill's drop share (PathInfo::drill_drop_ppm)
};

/// Builds a snapshot from the topology and live state. A path is usable when its link is up,
/// its next hop resolved and it has an outbound SA. measured is by path id; a path it does not
/// cover is up with no metrics (tests and benches that measure nothing).
std::unique_ptr<dp::Snapshot> build_snapshot(const Topology& t, const std::vector<PortLive>& live,
                                             const NeighborManager& nm,
                                             std::shared_ptr<const dp::RouteTable> routes, uint64_t generation,
                                             const SnapshotSas& sas = {},
                                             std::span<const PathMeasured> measured = {});

}  // namespace sdwan::cp
