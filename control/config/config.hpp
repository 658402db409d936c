// The appliance's configuration: what the operator wrote, validated. Control thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/esp/sa_table.hpp"
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
};

struct UplinkConfig {
  std::string name;          // "isp1"
  std::string port;          // port spec
  Prefix4 address;           // interface address with prefix length (host bits kept)
  Ipv4 next_hop;             // inside address's subnet
  CostTier cost = CostTier::kNormal;
  uint64_t bandwidth_bps = 0;  // 0 = unknown
  uint16_t mtu = 1500;
};

struct EndpointConfig {
  Ipv4 address;
  uint16_t port = 0;                 // 0 = the appliance's overlay_port
  std::vector<std::string> uplinks;  // local uplinks that reach it; empty = all
  std::optional<uint16_t> link;      // SPI link number of its one path; nullopt = computed (path_link)
};

struct PeerConfig {
  std::string name;
  std::string key_file;              // the peer's 256-bit master key (docs/keys.md "Key file")
  std::vector<EndpointConfig> endpoints;
  std::vector<Prefix4> prefixes;     // networks behind the peer
};

struct LcoreConfig {
  unsigned control = 0;              // the control thread's core (EAL main lcore)
  std::vector<unsigned> workers;     // explicit worker cores; empty = chosen by hwloc
  unsigned worker_count = 1;         // how many hwloc chooses when workers is empty
};

struct DpdkConfig {
  std::string file_prefix;           // EAL --file-prefix; default: the appliance name
  bool hugepages = true;             // false = EAL --no-huge (tests, tiny VMs)
  unsigned memory_mb = 0;            // EAL -m; 0 = EAL's default
  std::vector<std::string> extra_args;
};

struct MgmtConfig {
  std::string socket = "/run/sdwan/sdwand.sock";
  std::string group;                 // empty = root only (mode 0600); else mode 0660 + chgrp
};

struct EspConfig {
  bool esn = true;                   // 64-bit extended sequence numbers
  uint32_t replay_window = 4096;     // inbound anti-replay window, packets (power of two)
  std::string keylog;                // Wireshark esp_sa key log; empty = off
  std::string epoch_store;           // default: /var/lib/sdwan/NAME.epochs
  SaLifetime lifetime;               // hard limits, soft percent, drain time
};

/// Path measurement (issue #5): probing, the up/down/damped state machine, the statistics window.
struct PathsConfig {
  uint32_t probe_interval_ms = 100;  // every path is probed this often, 10..10000
  uint32_t window_s = 10;            // sliding window of min/p50/p95/p99 and loss; >= 2 intervals
  PathStateConfig state;             // interval_ns == probe_interval_ms; multiplier, hold_up, damping
};

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
  EspConfig esp;
  PathsConfig paths;
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
