// The event bus (issue 7): what happened to the appliance, as one JSON object per event, for
// `sdwanctl show events`, the event log file and the hooks (docs/events.md).
//
// An event is the detail object given to emit() plus four fields the bus sets:
//   time  RFC 3339 UTC with ms, when it happened    seq   1, 2, 3... in emit order
//   type  one of kEventTypes                         name  the appliance's name (config `name`)
// The log file and a hook's standard input get it as one line, those four first.
//
// Threads: emit() from the control thread, or any other thread of the daemon except the
// workers (a mutex guards the ring and the sequence; it is held for the copy, never for I/O).
// The log file is written by EventLog's thread and hooks are run by HookRunner's thread, so
// emit() never waits for a disk or a hook.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/events/event_log.hpp"
#include "control/events/hook_runner.hpp"
#include "control/events/types.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

class EventBus {
 public:
  /// Starts the log writer (cfg.log set) and the hook runner (any hook configured); never
  /// fails: a log that cannot be written is counted and logged. The sequence goes on from the
  /// last seq in cfg.log, so it keeps increasing over restarts while the file is kept.
  EventBus(const EventsConfig& cfg, std::string appliance_name);
  /// Writes what is queued for the log, ends running hooks (docs/events.md) and joins.
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  /// Emits an event that happens now: detail (an object; anything else is kept as
  /// {"detail": value}) plus time, seq, type and name, which replace any detail fields of
  /// those names. Into the ring, the log's queue and the queue of each hook configured for
  /// type or "*". Never throws, never blocks on I/O.
  void emit(std::string_view type, nlohmann::json detail);
  /// The same for an event that happened at `at` (e.g. a path state change noticed a tick ago).
  void emit(std::string_view type, nlohmann::json detail, std::chrono::system_clock::time_point at);

  /// The kept events, oldest first; only those of `types` (empty: all) with seq > after.
  nlohmann::json events(const std::vector<std::string>& types = {}, uint64_t after = 0) const;
  /// Counters for `show stats` ("events"): emitted, last_seq, log_*, hooks_*.
  nlohmann::json stats() const;
  /// The last finished hook runs, oldest first, for `show hooks`.
  nlohmann::json hook_runs() const;
  uint64_t last_seq() const;
  /// The config now (a copy: reconfigure may change it from another thread).
  EventsConfig config() const;

  /// Applies a new `events:` section (live reload): hooks, ring size and hook limits at once
  /// (a running hook keeps its timeout), a new log file when log or log_fsync changed (the old
  /// one is written out and closed). Events already kept stay, up to the new ring size.
  /// Never fails: check_hooks first. Any thread except the workers.
  void reconfigure(const EventsConfig& cfg);

  /// Waits until the log has taken every line emitted so far and no hook is queued or
  /// running; false on timeout. Tests and shutdown.
  bool wait_idle(int timeout_ms);

 private:
  static HookRunner::Options hook_options(const EventsConfig& cfg);

  // mu_ guards everything below; the log and the runner are shared_ptrs so that a reader
  // (stats, wait_idle) can use them after letting go of mu_ while reconfigure replaces them.
  mutable std::mutex mu_;
  EventsConfig cfg_;
  std::string name_;
  std::deque<nlohmann::json> ring_;
  uint64_t seq_ = 0, emitted_ = 0, unknown_types_ = 0;
  std::shared_ptr<EventLog> log_;
  std::shared_ptr<HookRunner> hooks_;
};

/// Every configured hook is an executable regular file, or the error names it as
/// "events.hooks.TYPE[i]: PATH: ...". The daemon checks at start and --check-config.
Status check_hooks(const EventsConfig& cfg);

}  // namespace sdwan::cp
