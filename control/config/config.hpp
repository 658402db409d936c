// The appliance's configuration: what the operator wrote, validated. Control thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/esp/sa_table.hpp"
#include "control/events/types.hpp"
#include "control/measure/path_state.hpp"
#include "dataplane/api/result.hpp"
#include "dataplane/api/snapshot.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::cp {

enum class Role { kEdge, kHub };
enum class CostTier { kNormal, kMetered };

std::string_view role_name(Role r);
std::string_view cost_name(CostTier c);

struct LanConfig {
  std::string port;          // port spec, e.g. "af_packet:lan0" (drivers::PortSpec syntax)
  Prefix4 address;           // interface address with prefix length (host bits kept)
  uint16_t mtu = 1500;
  bool operator==(const LanConfig&) const = default;
};

struct UplinkConfig {
  std::string name;          // "isp1"
  std::string port;          // port spec
  Prefix4 address;           // interface address with prefix length (host bits kept)
  Ipv4 next_hop;             // inside address's subnet
  CostTier cost = CostTier::kNormal;
  uint64_t bandwidth_bps = 0;  // 0 = unknown
  uint16_t mtu = 1500;
  bool operator==(const UplinkConfig&) const = default;
};

struct EndpointConfig {
  Ipv4 address;
  uint16_t port = 0;                 // 0 = the appliance's overlay_port
  std::vector<std::string> uplinks;  // local uplinks that reach it; empty = all
  std::optional<uint16_t> link;      // SPI link number of its one path; nullopt = computed (path_link)
  bool operator==(const EndpointConfig&) const = default;
};

struct PeerConfig {
  std::string name;
  std::string key_file;              // the peer's 256-bit master key (docs/keys.md "Key file")
  std::vector<EndpointConfig> endpoints;
  std::vector<Prefix4> prefixes;     // networks behind the peer
  // Never in a file: a live reload that removes a peer keeps it in the running config as a
  // tombstone (no prefixes, no SAs, no probes), so that every other peer and path keeps its
  // index and id (control/config/reload.hpp merge_peers).
  bool removed = false;
  bool operator==(const PeerConfig&) const = default;
};

struct LcoreConfig {
  unsigned control = 0;              // the control thread's core (EAL main lcore)
  std::vector<unsigned> workers;     // explicit worker cores; empty = chosen by hwloc
  unsigned worker_count = 1;         // how many hwloc chooses when workers is empty
  bool operator==(const LcoreConfig&) const = default;
};

struct DpdkConfig {
  std::string file_prefix;           // EAL --file-prefix; default: the appliance name
  bool hugepages = true;             // false = EAL --no-huge (tests, tiny VMs)
  unsigned memory_mb = 0;            // EAL -m; 0 = EAL's default
  std::vector<std::string> extra_args;
  bool operator==(const DpdkConfig&) const = default;
};

struct MgmtConfig {
  std::string socket = "/run/sdwan/sdwand.sock";
  std::string group;                 // empty = root only (mode 0600); else mode 0660 + chgrp
  bool operator==(const MgmtConfig&) const = default;
};

/// The Prometheus text endpoint (docs/metrics.md). The DPDK telemetry commands need no config.
struct MetricsConfig {
  static constexpr uint16_t kDefaultPort = 9469;
  bool enabled = true;               // false (or port 0): no HTTP endpoint at all
  Ipv4 address{0x7f000001};          // 127.0.0.1; 0.0.0.0 listens on every address
  uint16_t port = kDefaultPort;      // TCP; 0 = off
  bool on() const noexcept { return enabled && port != 0; }
  bool operator==(const MetricsConfig&) const = default;
};

struct EspConfig {
  bool esn = true;                   // 64-bit extended sequence numbers
  uint32_t replay_window = 4096;     // inbound anti-replay window, packets (power of two)
  std::string keylog;                // Wireshark esp_sa key log; empty = off
  std::string epoch_store;           // default: /var/lib/sdwan/NAME.epochs
  SaLifetime lifetime;               // hard limits, soft percent, drain time
  bool operator==(const EspConfig&) const = default;
};

/// Path measurement (issue #5): probing, the up/down/damped state machine, the statistics window.
struct PathsConfig {
  uint32_t probe_interval_ms = 100;  // every path is probed this often, 10..10000
  uint32_t window_s = 10;            // sliding window of min/p50/p95/p99 and loss; >= 2 intervals
  PathStateConfig state;             // interval_ns == probe_interval_ms; multiplier, hold_up, damping
  bool operator==(const PathsConfig&) const = default;
};

/// How a class treats metered uplinks (UplinkConfig::cost).
enum class MeteredUse : uint8_t {
  kAvoid,  ///< metered paths only when no unmetered path meets the class's SLA (default)
  kAllow,  ///< metered paths count like any other
  kNever,  ///< never a metered path, not even as the fallback
};
/// What a class does when no path meets its SLA.
enum class Fallback : uint8_t {
  kLeastBad,  ///< the least-bad usable path: never drop while a path is up (default)
  kDrop,      ///< no path: the class's packets are dropped (counted no_path)
};

std::string_view mode_name(dp::ClassMode m);
std::string_view metered_name(MeteredUse m);
std::string_view fallback_name(Fallback f);

/// An inclusive port range.
struct PortRange {
  uint16_t lo = 0, hi = 65535;
  bool operator==(const PortRange&) const = default;
};

/// One match rule of a class: every field given must match (an absent field matches anything).
struct MatchRule {
  std::optional<Prefix4> src, dst;
  uint8_t proto = 0;                    // IP protocol; 0: any
  std::optional<PortRange> sport, dport;  // TCP and UDP only
  std::optional<uint8_t> dscp;          // 0..63
  bool operator==(const MatchRule&) const = default;
};

/// The limits a path must meet for a class; nullopt: no limit.
struct SlaConfig {
  std::optional<double> latency_ms;     // compared with the path's smoothed round-trip time
  std::optional<double> jitter_ms;      // with the path's RTT jitter
  std::optional<double> loss_pct;       // with the path's probe loss towards the peer
  bool any() const noexcept { return latency_ms || jitter_ms || loss_pct; }
  bool operator==(const SlaConfig&) const = default;
};

/// A traffic class (issue #6). Its id is its index in Config::classes.
struct ClassConfig {
  std::string name;
  bool is_default = false;              // takes what no rule matches; has no rules
  std::vector<MatchRule> match;
  SlaConfig sla;
  dp::ClassMode mode = dp::ClassMode::kBest;
  bool adaptive = false;                // duplicate: copies only while the best path misses the SLA
  uint32_t max_overhead_pct = 50;       // duplicate: copies may use this share of the copy uplink's bandwidth
  uint32_t reorder_max_ms = 50;         // spray: cap of the receiver's reorder hold
  MeteredUse metered = MeteredUse::kAvoid;
  Fallback fallback = Fallback::kLeastBad;
  bool operator==(const ClassConfig&) const = default;
};

/// Hysteresis of the policy compiler (docs/policy.md).
struct PolicyConfig {
  uint32_t switch_margin_pct = 10;      // a new best path must be better by this share ...
  std::optional<uint32_t> switch_margin_ms;  // ... or, when set, by this many ms of score
  uint32_t switch_hold_ms = 1000;       // ... for this long
  uint32_t failback_stable_ms = 5000;   // a recovered path must comply this long before it takes traffic
  bool operator==(const PolicyConfig&) const = default;
};

/// The exception path to the appliance's own host stack (docs/host.md): a tap (DPDK net_tap)
/// in sdwand's network namespace whose kernel side gets the LAN address and routes to the LAN
/// and every peer prefix. Its traffic to peers is ESP like all overlay traffic.
struct HostConfig {
  std::string port;                  // "tap:NAME"; empty: no host port
  bool on() const noexcept { return !port.empty(); }
  /// The kernel interface's name (NAME of tap:NAME); "" when off.
  std::string iface() const { return port.size() > 4 ? port.substr(4) : std::string(); }
  bool operator==(const HostConfig&) const = default;
};

/// One application reachability check (docs/apps.md): run from the host stack through the
/// overlay to a service behind a peer.
struct AppCheckConfig {
  enum class Kind : uint8_t { kTcp, kHttp };
  std::string name;
  Kind kind = Kind::kTcp;
  std::string target;                // as written: "192.168.20.2:8080" or "http://192.168.20.2:8080/health"
  Ipv4 address;                      // the service's address (inside a peer's prefixes)
  uint16_t port = 0;
  std::string path = "/";            // http: the request path
  uint32_t interval_ms = 10000;      // one check this often
  uint32_t timeout_ms = 2000;        // a check not done by then failed (< interval_ms)
  std::optional<uint16_t> expect_status;  // http: the status that counts as up; nullopt: any 2xx or 3xx
  bool operator==(const AppCheckConfig&) const = default;
};

std::string_view app_kind_name(AppCheckConfig::Kind k);

struct Config {
  std::string file;                  // where it was read from
  std::string name;                  // appliance name; default: the role's name
  Role role = Role::kEdge;
  LanConfig lan;
  std::vector<UplinkConfig> uplinks;
  std::vector<PeerConfig> peers;
  LcoreConfig lcores;
  dp::IdlePolicy idle = dp::IdlePolicy::kAdaptive;
  DpdkConfig dpdk;
  MgmtConfig mgmt;
  MetricsConfig metrics;
  EspConfig esp;
  PathsConfig paths;
  /// Traffic classes in config order (class id = index). Never empty: without a default class
  /// in the file, an implicit one named "default" (mode best, no SLA) comes last.
  std::vector<ClassConfig> classes;
  PolicyConfig policy;
  EventsConfig events;               // event log, ring, hooks (docs/events.md)
  HostConfig host;                   // the host stack's exception path; off unless given
  std::vector<AppCheckConfig> apps;  // application reachability checks (need host)
  uint16_t overlay_port = 4500;
  uint32_t flow_capacity = 65536;    // per worker
  uint32_t icmp_errors_per_sec = 100;
  std::string log_level = "info";    // error|warning|info|debug
};

/// The SPI link number of the path over uplinks[uplink] to peers[peer].endpoints[endpoint]:
/// the endpoint's `link`, else default_link() of the path's outer endpoints (uplink address +
/// overlay_port, endpoint address + its port). parse_config has checked that no two paths share one.
uint16_t path_link(const Config& c, size_t uplink, size_t peer, size_t endpoint);

/// Parses and validates YAML text. Errors read "FILE:LINE: KEY: what was expected"
/// (see tests/unit/config_test.cpp for the exact table). filename is used in messages only.
Result<Config> parse_config(std::string_view text, const std::string& filename);

/// Reads FILE and parses it; an unreadable file is "FILE: cannot read: REASON".
Result<Config> load_config(const std::string& path);

}  // namespace sdwan::cp
