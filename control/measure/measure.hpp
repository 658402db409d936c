// PathMonitor (issue #5): the live measurement of every path, as `show paths`, `show events`
// and the policy compiler read it. It owns, per path, a PathEstimator (RTT, jitter, loss per
// direction: estimator.hpp) and a PathStateMachine (up / down / damped: path_state.hpp), and
// keeps the last state changes in an EventRing.
//
// Threads: control thread only; the daemon drains the workers' probe rings into on_sample,
// reads their counters into on_counters, turns port link changes into on_link_port, and calls
// tick every few ms. Time is injected: every call takes now_ns, the control thread's monotonic
// clock in ns. Nothing allocates per sample: rings are sized at add_path; events (rare) carry
// a string.
//
// Units: ns for times, ms and percent (double) in PathView; missing values are nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "control/measure/estimator.hpp"
#include "control/measure/path_state.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// A path to measure.
struct PathSpec {
  uint16_t id = 0;                      ///< the daemon's path id (ProbeSample::path)
  std::string name;                     ///< for the operator ("isp1-hub1")
  uint8_t port = 0;                     ///< the uplink's port index, for on_link_port
  PathStateConfig state;                ///< interval, multiplier, hold_up, damping
  uint64_t window_ns = 10'000'000'000;  ///< sliding window of the statistics (>= 2 intervals)
};

/// Everything `show paths` prints for one path.
struct PathView {
  uint16_t id = 0;
  std::string name;
  PathStatus state = PathStatus::kDown;
  uint64_t since_ns = 0;  ///< time of the last state change (or of add_path)
  std::string reason;
  std::optional<double> rtt_ms, rtt_min_ms, rtt_p50_ms, rtt_p95_ms, rtt_p99_ms;
  std::optional<double> jitter_ms, jitter_fwd_ms, jitter_rev_ms;
  std::optional<double> loss_fwd_pct, loss_rev_pct, loss_data_fwd_pct, loss_data_rev_pct;
  uint64_t probes_sent = 0, probes_received = 0;
  uint32_t window_samples = 0;  ///< replies the windowed figures are based on
};

/// What the published snapshot carries per path, refreshed every probe interval.
struct PathMetrics {
  PathStatus state = PathStatus::kDown;
  std::optional<double> rtt_ms, jitter_ms, loss_fwd_pct, loss_rev_pct;
};

class PathMonitor {
 public:
  /// event_capacity: state changes kept for `show events`.
  explicit PathMonitor(size_t event_capacity = 1000);

  /// Starts measuring a path: down, "probing", at now_ns. Fails on a duplicate id, a config
  /// that check_path_state_config refuses, or a window shorter than two intervals.
  Status add_path(const PathSpec& spec, uint64_t now_ns);
  /// Live reload: new timers, damping and window for a measured path, keeping its state (an up
  /// path stays up). A new probe interval or window restarts the path's statistics window (the
  /// EWMA and jitter too): the figures are re-learnt within a few probes. Same checks as add_path.
  Status reconfigure(uint16_t id, const PathStateConfig& state, uint64_t window_ns);
  /// Forgets a path (config reload); nothing if unknown.
  void remove_path(uint16_t id);

  /// One reflected probe. Samples for unknown paths are counted (unknown_samples) and dropped.
  void on_sample(const ProbeSample& s, uint64_t now_ns);
  /// The workers' counters for a path, summed: probes sent, data packets sent and received
  /// (probes excluded, path_state.hpp), and our inbound SA of the path (reverse ESP loss).
  void on_counters(uint16_t path, uint64_t probes_sent, uint64_t data_tx, uint64_t data_rx,
                   const SaCounters& rev_sa, uint64_t now_ns);
  /// A port's link changed: every path on it follows (down at once).
  void on_link_port(uint8_t port, bool up, uint64_t now_ns);
  /// One path's link changed (e.g. its next hop became unreachable).
  /// why: the reason its down event gives (default "link down").
  void on_link_path(uint16_t path, bool up, uint64_t now_ns, std::string_view why = "link down");

  /// Runs the timers and returns every state change since the previous tick (those made by
  /// on_sample, on_counters and on_link too), oldest first; valid until the next call.
  /// Empty: no path changed state.
  std::span<const PathEvent> tick(uint64_t now_ns);

  /// Everything about one path at now_ns; nullopt for an unknown id.
  std::optional<PathView> view(uint16_t path, uint64_t now_ns);
  /// State, RTT, jitter and probe loss, the same values as view, without the percentiles'
  /// sort: cheap enough for every path every probe interval. nullopt for an unknown id.
  std::optional<PathMetrics> metrics(uint16_t path, uint64_t now_ns);
  /// The state alone (cheap; no statistics); nullopt for an unknown id.
  std::optional<PathStatus> state(uint16_t path) const;
  /// Path ids in add order (after removals, in no particular order).
  std::vector<uint16_t> paths() const;
  /// The last state changes, oldest first.
  const EventRing& events() const noexcept { return events_; }

  uint64_t unknown_samples() const noexcept { return unknown_samples_; }
  /// Bytes held for the paths' rings and state, for sizing.
  size_t memory_bytes() const noexcept;

 private:
  struct Path {
    PathSpec spec;
    PathEstimator est;
  };
  int32_t slot(uint16_t id) const noexcept { return slot_of_[id]; }

  // Same index in both. The state machines sit apart so that tick, which visits every path
  // every few ms, walks a dense array instead of the estimators' bigger records.
  std::vector<Path> paths_;
  std::vector<PathStateMachine> sms_;
  std::vector<int32_t> slot_of_;  // path id -> index into paths_ and sms_, -1 if absent
  std::vector<uint32_t> scratch_;  // percentiles' copy, the largest ring's size
  std::vector<PathEvent> pending_, returned_;
  EventRing events_;
  uint64_t unknown_samples_ = 0;
};

}  // namespace sdwan::cp
