// Core placement with hwloc: worker cores on the NIC's NUMA node, never the control core.
#pragma once

#include <string>
#include <vector>

#include "dataplane/api/result.hpp"

namespace sdwan::drv {

/// The chosen cores and a one-paragraph description for the start-up log.
struct CorePlan {
  unsigned control = 0;
  std::vector<unsigned> workers;
  std::string description;  // e.g. "control on core 0; workers on 1 (NUMA 0, near lan, isp1)"
};

/// Chooses cores. requested_workers empty = choose worker_count cores with hwloc, preferring
/// the NUMA nodes in port_numa (-1 entries = unknown) and skipping the control core and its
/// hyperthread siblings where possible; otherwise checks the requested cores exist and are
/// allowed to this process. Errors name the core and why.
Result<CorePlan> plan_cores(unsigned control, const std::vector<unsigned>& requested_workers,
                            unsigned worker_count, const std::vector<int>& port_numa);

}  // namespace sdwan::drv
