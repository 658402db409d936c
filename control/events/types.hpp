// Events and hooks (issue 7): the event types the daemon emits and the `events:` section of the
// config. Plain data, no threads: config.hpp includes it. The bus itself is event_bus.hpp;
// the operator's reference is docs/events.md.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sdwan::cp {

/// Every event type sdwand emits, in docs/events.md's order. A hook may be configured for any
/// of them or for "*" (every event). Adding a type: here, docs/events.md, and its emit call.
inline constexpr std::array<std::string_view, 13> kEventTypes = {
    "path_up",       "path_down",  "path_damped", "sla_breached", "sla_recovered", "class_moved", "sa_rekey",
    "reload",        "reload_failed", "drill_start", "drill_end",  "app_failing",   "app_ok",
};

/// True for a name of kEventTypes. Any thread.
bool known_event_type(std::string_view type) noexcept;

/// RFC 3339 UTC with milliseconds, "2025-03-14T09:26:53.589Z", as every event's `time`. Any thread.
std::string rfc3339_utc(std::chrono::system_clock::time_point t);

/// The `events:` section (docs/config.md "events"), as parse_config validated it.
struct EventsConfig {
  /// One JSON line per event is appended here; empty: no file (the ring and hooks still work).
  std::string log;
  /// fdatasync after each batch of lines the writer thread appends (it, not the control
  /// thread, waits for the disk).
  bool log_fsync = true;
  /// Events kept in memory for `sdwanctl show events`.
  uint32_t ring = 1000;
  /// Event type (or "*") -> the hooks to run for it; each hook is argv: an absolute path to an
  /// executable, then its arguments. The event's JSON line is the hook's standard input.
  std::map<std::string, std::vector<std::vector<std::string>>> hooks;
  /// A hook still running after this long gets SIGTERM (its whole process group), and SIGKILL
  /// hook_kill_grace_ms later.
  uint32_t hook_timeout_ms = 10000;
  uint32_t hook_kill_grace_ms = 2000;
  /// Hooks running at once; more wait in a queue of hook_queue runs, beyond which new runs are
  /// dropped (counted: `show stats` events.hooks_dropped).
  uint32_t hook_max_concurrent = 4;
  uint32_t hook_queue = 256;
  /// Bytes of each run's output (stdout and stderr together) kept for the log and `show hooks`.
  uint32_t hook_output_max = 4096;
  bool operator==(const EventsConfig&) const = default;
};

}  // namespace sdwan::cp
