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
  bool apps = false;                 ///< application checks: the checker restarts with the new list
  bool any() const noexcept { return !changes.empty(); }
};

/// Compares cur (running) with next (validated). An error names the first change that needs a
/// restart ("lan.port: af_packet:a -> af_packet:b: needs a restart (sdwand applies live: ...)").
Result<ReloadPlan> plan_reload(const Config& cur, const Config& next);

/// The keys a reload applies live, for messages and docs.
const char* reload_live_keys();

}  // namespace sdwan::cp
