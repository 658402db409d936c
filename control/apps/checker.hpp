// Application reachability (issue 7, docs/apps.md): configured checks of services behind a
// peer, a TCP connect or an HTTP GET from the appliance's host stack, so through the host port,
// the dataplane and the overlay like any LAN traffic. Per check: last result, latency, success
// rate over a window, consecutive failures, state; `app_failing` / `app_ok` events on changes.
//
// Threads: one per check, made by the caller's thread (the control thread, pinned to the
// control core: the checks inherit that core, never a worker's). status() and reconfigure()
// from the control thread; the checks' threads only touch their own slot under the mutex.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/config/config.hpp"

namespace sdwan::cp {

class EventBus;

/// One check's figures, as `show apps` and the metrics give them.
struct AppStatus {
  static constexpr uint32_t kWindow = 20;  ///< the success rate is over the last 20 checks
  std::string name, type, target;
  uint32_t interval_ms = 0, timeout_ms = 0;
  std::string state = "unknown";          ///< "unknown" (no check yet), "ok", "failing"
  uint64_t checks = 0, ok = 0, failed = 0;  ///< since start (or since the check was changed)
  uint32_t window_checks = 0, window_ok = 0;
  std::optional<double> success_pct;      ///< window_ok / window_checks; nullopt before the first
  std::optional<double> latency_ms;       ///< the last successful check's (connect, or the whole GET)
  std::optional<double> last_ms;          ///< the last check's duration, failed or not
  std::optional<double> age_s;            ///< seconds since the last check ended
  uint32_t consecutive_failures = 0;
  std::string last_error;                 ///< "" when the last check succeeded
  std::optional<uint16_t> http_status;    ///< http: the last status received
};

/// Outcome of one check.
struct AppResult {
  bool ok = false;
  double ms = 0;
  std::string error;
  std::optional<uint16_t> http_status;
};

/// Runs one check now, blocking up to its timeout. Any thread.
AppResult run_app_check(const AppCheckConfig& c);

class AppChecker {
 public:
  /// Starts one thread per check; the first check of each runs one interval from now (the
  /// paths come up meanwhile). bus may be null (no events).
  AppChecker(const std::vector<AppCheckConfig>& checks, EventBus* bus);
  /// Stops and joins the threads (a check in flight ends at its timeout at the latest).
  ~AppChecker();
  AppChecker(const AppChecker&) = delete;
  AppChecker& operator=(const AppChecker&) = delete;

  /// Replaces the checks (live reload): a check kept with the same settings keeps its figures
  /// and its schedule runs anew; others start afresh. Never waits for a check in flight: the
  /// old threads finish theirs unrecorded and are joined later.
  void reconfigure(const std::vector<AppCheckConfig>& checks);
  /// Every check's figures, in config order.
  std::vector<AppStatus> status() const;

 private:
  struct Slot;
  std::unique_ptr<Slot> make_slot(const AppCheckConfig& c, const std::vector<std::unique_ptr<Slot>>& old) const;
  void launch();
  void reap(bool all);
  void loop(Slot* s);
  void record(Slot& s, const AppResult& r);

  EventBus* bus_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Slot>> slots_;    // the checks now
  std::vector<std::unique_ptr<Slot>> retired_;  // told to stop, maybe still in a check
};

}  // namespace sdwan::cp
