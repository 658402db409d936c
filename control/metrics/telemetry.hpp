// The appliance's own DPDK telemetry commands, beside DPDK's /ethdev/... ones:
//   /sdwan/paths[,PATH]    every path (or one): state, RTT, jitter, loss, counters
//   /sdwan/classes[,CLASS] every class x peer (or one class's): mode, chosen paths, SLA state
//   /sdwan/stats           appliance-wide counters, drops, workers, mempools, host
// Read them with `dpdk-telemetry.py -f FILE_PREFIX` (docs/metrics.md). The callbacks run in
// DPDK's telemetry threads and get their figures through a MetricsExchange, never from the
// control thread's state.
#pragma once

#include <memory>

#include "control/metrics/exchange.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// How long a telemetry command waits for the control thread before it answers with an error.
inline constexpr std::chrono::milliseconds kTelemetryWait{2000};

/// JSON bytes one answer may use: DPDK 22.11 cuts answers at 16 KiB without a word, so the
/// lists stop early and say "truncated" (ask for one path or class by name for the rest).
inline constexpr size_t kTelemetryBudget = 12 * 1024;

/// Registers the commands with DPDK telemetry (the first call in the process; DPDK cannot
/// unregister them) and serves them from ex from now on. Fails when DPDK refuses a command.
/// Control thread.
Status telemetry_attach(std::shared_ptr<MetricsExchange> ex);

/// From now on the commands answer that sdwand is stopping. Control thread, at shutdown.
void telemetry_detach();

}  // namespace sdwan::cp
