// Live reload (issue 7): what changed between the running config and a new one, and whether
// sdwand can apply it without restarting the dataplane. Pure; control thread.
#pragma once

#include <string>
#include <vector>

#include "control/config/config.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// What a reload applies. Each flag names one part the appliance updates in place.
struct ReloadPlan {
  std::vector<std::string> changes;  ///< one line per change, for the log, the event and sdwanctl
  bool classes = false;              ///< classes (rules, SLAs, modes, options): recompiled; flows re-classified
  bool policy = false;               ///< hysteresis
  bool uplinks = false;              ///< an uplink's cost or bandwidth
  bool paths = false;                ///< probe interval, multiplier, hold_up, damping, window
  bool log_level = false;
  bool events = false;               ///< event log, ring, hooks and their limits
  bool peers = false;                ///< peers added, removed or changed (a change is a removal and an addition)
  std::vector<std::string> peers_added, peers_removed;  ///< by name; a changed peer is in both
  bool apps = false;                 ///< application checks: the checker restarts with the new list
  bool any() const noexcept { return !changes.empty(); }
};

/// Compares cur (running) with next (validated). An error names the first change that needs a
/// restart ("lan.port: af_packet:a -> af_packet:b: needs a restart (sdwand applies live: ...)").
Result<ReloadPlan> plan_reload(const Config& cur, const Config& next);

/// The running peer list after a reload that adds or removes peers, so that peer indexes and
/// path ids stay stable for the workers' flows and counters: running's peers in their order,
/// each one that next drops or changes left as a tombstone (removed, name suffixed
/// " (removed)", no prefixes), then next's new or changed peers appended in next's order.
/// running may hold tombstones of earlier reloads; next holds none.
std::vector<PeerConfig> merge_peers(const std::vector<PeerConfig>& running, const std::vector<PeerConfig>& next);

/// running's peers without its tombstones: what the config file said.
std::vector<PeerConfig> live_peers(const std::vector<PeerConfig>& running);

/// The keys a reload applies live, for messages and docs.
const char* reload_live_keys();

}  // namespace sdwan::cp
