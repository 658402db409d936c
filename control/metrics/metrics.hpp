// The appliance's figures as plain data, and what the management endpoints make of them: the
// Prometheus text page (docs/metrics.md) and the JSON of the DPDK telemetry commands
// /sdwan/paths, /sdwan/classes and /sdwan/stats. No DPDK here: the control thread fills a
// MetricsData, and any thread may render an immutable one.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/metrics/host.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// One collection of every figure the endpoints show. Filled by the control thread
/// (Appliance), then shared read-only with the HTTP and telemetry threads.
struct MetricsData {
  struct Path {
    std::string name, uplink, peer, endpoint;
    std::string state;                     ///< path_status_name: "up", "down", "damped"
    std::string reason;                    ///< why it is not up ("" when up)
    bool usable = false;                   ///< link up, next hop resolved, outbound SA installed
    std::optional<double> rtt_ms, jitter_ms, loss_fwd_pct, loss_rev_pct;  ///< unknown: nullopt
    uint64_t tx_pkts = 0, tx_bytes = 0, rx_pkts = 0, rx_bytes = 0;        ///< data only, inner bytes
    uint64_t probes_sent = 0, probes_received = 0;
    uint64_t failures = 0;                 ///< times it went from up to down or damped
  };
  /// A DPDK port: "lan" or an uplink (named after it).
  struct Port {
    std::string name;
    bool uplink = false;
    bool link_up = false;
    // The NIC's (driver's) own counters, rte_eth_stats.
    uint64_t rx_pkts = 0, rx_bytes = 0, tx_pkts = 0, tx_bytes = 0;
    uint64_t rx_missed = 0, rx_errors = 0, rx_nombuf = 0, tx_errors = 0;
  };
  struct Uplink {
    std::string name;
    bool link_up = false, next_hop_resolved = false, metered = false;
    uint64_t bandwidth_bps = 0;            ///< configured; 0 = unknown
  };
  struct Class {
    std::string name, mode;
    uint64_t packets = 0, bytes = 0;       ///< LAN packets sent to any peer, inner bytes
  };
  /// A class's current choice towards one peer.
  struct ClassPeer {
    std::string cls, peer, mode;
    bool sla_met = false, fallback = false;
    std::string primary, secondary;        ///< "" = none
    std::vector<std::pair<std::string, uint32_t>> paths;  ///< chosen paths, table weights (0: best, duplicate)
  };
  struct Sa {
    std::string spi;                       ///< "0x1234abcd"
    std::string path, direction, state;    ///< direction "in" / "out"; state active/standby/draining
    uint32_t epoch = 0;
    bool installed = false;
    uint64_t packets = 0, bytes = 0;
    uint64_t replay = 0, too_old = 0, icv_fail = 0, bad_trailer = 0;  ///< inbound refusals
    double age_s = 0;
  };
  struct Worker {
    unsigned index = 0, lcore = 0;
    uint64_t polls = 0, busy_polls = 0;
    uint64_t handoff_out = 0, handoff_in = 0;  ///< duplicate/spray packets passed to / taken from other workers
    double busy_s = 0;                     ///< time spent in polls that moved packets
    std::optional<double> busy_ratio;      ///< share of the last second; nullopt before the first
    uint64_t flows = 0;
    std::vector<uint64_t> drops;           ///< by reason, indexed like MetricsData::drop_reasons
  };
  struct Mempool {
    std::string name;
    uint64_t size = 0, in_use = 0;         ///< mbufs
  };
  struct Disk {
    std::string dir;
    uint64_t size_bytes = 0, avail_bytes = 0;
  };

  /// An application check (control/apps, docs/apps.md).
  struct App {
    std::string name, type, target;
    bool known = false, up = false;        ///< known: at least one check ran; up: the last one succeeded
    std::optional<double> latency_ms;      ///< the last successful check's
    std::optional<double> success_pct;     ///< over the last AppStatus::kWindow checks
    uint64_t ok = 0, failed = 0;
  };
  std::vector<App> apps;

  std::string name, role, version;
  double uptime_s = 0;
  double collect_s = 0;                    ///< how long the control thread took to fill this
  uint64_t snapshots = 0;                  ///< snapshots published since start

  std::vector<Path> paths;
  std::vector<Port> ports;
  std::vector<Uplink> uplinks;
  std::vector<Class> classes;
  std::vector<ClassPeer> class_peers;
  std::vector<Sa> sas;
  std::vector<Worker> workers;
  std::vector<Mempool> mempools;

  std::vector<std::string> drop_reasons;   ///< dp::drop_name of every reason, in order
  std::vector<std::pair<std::string, uint64_t>> esp_drops;  ///< by reason, summed over workers
  uint64_t esp_out_pkts = 0, esp_out_bytes = 0, esp_in_pkts = 0, esp_in_bytes = 0;
  uint64_t sas_in = 0, sas_out = 0;

  // Sessions.
  uint64_t flows_active = 0, flows_created = 0, flow_cache_full = 0;
  std::optional<double> flows_per_s;       ///< new flows per second over the last second
  uint64_t tunnel_failures = 0;            ///< sum of Path::failures
  uint64_t auth_failures = 0;              ///< ESP packets whose ICV did not verify

  // Other worker counters, summed.
  uint64_t encapsulated = 0, decapsulated = 0, icmp_echo_replied = 0, icmp_errors_sent = 0, mss_clamped = 0;
  uint64_t to_host = 0;                    ///< packets for the LAN address handed to the host stack
  uint64_t dup_sent = 0, probe_reports_lost = 0, control_tx_dropped = 0;

  // The host.
  unsigned cpus = 0;
  std::optional<double> cpu_usage;         ///< share of every CPU over the last second
  std::optional<LoadAvg> load;
  MemInfo mem;
  std::vector<Disk> disks;
};

/// The Prometheus text exposition format (version 0.0.4) of d: every family with HELP and
/// TYPE lines, `sdwan_` names, base units. docs/metrics.md lists it all. Any thread.
std::string render_prometheus(const MetricsData& d);

/// The Content-Type of render_prometheus' text.
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

/// The answer of DPDK telemetry's /sdwan/paths: one object per path keyed by its position
/// ("0", "1", ...: telemetry keys allow only letters, digits, '_' and '/'), with its name inside.
/// param: a path name to show that path only. Integers only (telemetry has no floats):
/// rtt_us, jitter_us, loss_*_ppm. Stops before budget bytes of JSON and then says so
/// under "truncated". Error: a message for an unknown name. Any thread.
Result<nlohmann::json> telemetry_paths(const MetricsData& d, std::string_view param, size_t budget);

/// /sdwan/classes: one object per (class, peer), keyed "0", "1"...; param: a class name.
Result<nlohmann::json> telemetry_classes(const MetricsData& d, std::string_view param, size_t budget);

/// /sdwan/stats: appliance-wide counters, drops by reason, workers, mempools and the host.
nlohmann::json telemetry_stats(const MetricsData& d);

}  // namespace sdwan::cp
