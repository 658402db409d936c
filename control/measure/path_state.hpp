// Path state machine (issue #5): is a path up, and why not. Pure logic with injected time
// (now_ns from the control thread's monotonic clock; no clock read, no sleep). Control thread
// only. Every state change is a PathEvent with an operator-readable reason.
//
// States, as a network engineer reads them:
//   down    not usable: probing after start or link-up, missed probes, link down, early down.
//           A path starts here with reason "probing": it carries traffic only once the peer has
//           answered, like a BFD session that starts Down and needs the peer before Up.
//   up      usable.
//   damped  down and held down for a while because it flapped too often, whatever probes say.
//
// Transitions (I = probe interval, M = multiplier, H = hold_up):
//   down -> up      H consecutive good probes: replies with consecutive sequence numbers, each
//                   on time (a reply gap of more than I + slack restarts the count), link up.
//                   Reason "3 good probes".
//   up -> down      - no reply for M x I + slack since the newest one, and at least M probes
//                     sent since (the workers' probes_sent: a stalled sender is not a dead path).
//                     The reply of the M-th probe after the newest was due M x I after it, so
//                     this is exactly M missed probes, never fewer, as BFD's detection time
//                     (interval x multiplier). Reason "missed 3 probes".
//                   - a reply whose sequence number jumps by more than M: M or more probes in a
//                     row were lost (a backstop for a late tick). Reason "missed 5 probes".
//                   - the port's link went down, at once. Reason "link down".
//                   - early down: while data is being sent (data_tx grew since anything last
//                     came back), neither data (data_rx) nor a probe reply arrived for more than
//                     2 x I + slack. Reason "data and probes stopped for 212 ms".
//   down -> damped  the up -> down change was the N-th in T (default 5 in 60 s). Reason
//                   "damped for 4 s (5 flaps in 60 s)". The hold starts at hold_min (1 s) and
//                   doubles (to at most hold_max, 60 s) each time damping comes again within
//                   quiet (120 s) of the previous hold's end; after a quiet period it is
//                   hold_min again. Every up -> down change is a flap, so a path that keeps
//                   flapping after release is damped again at once, for twice as long.
//   damped -> up    the hold has ended and the last H probes were good. Reason "3 good probes".
//   damped -> down  the hold has ended, not yet H good probes. Reason "damped 4 s, probing".
//
// Slack = min(I / 2, I / 4 + 4 x RTT jitter). A reply arrives late by about as much as its RTT
// varies; 4 x jitter (like TCP's RTO = SRTT + 4 RTTVAR) covers that, I / 4 covers the probe
// scheduler and the control tick on a path without jitter (BFD gets the same margin from its
// 0-25 % TX jitter), and I / 2 caps it so that M + 1 missed probes are never needed.
//
// data_tx and data_rx must count data only (not probes, which are sent whether or not anything
// comes back): dp::PathCounters' tx_pkts and rx_pkts, which count data only. Feed on_counters before tick, every tick or so: the missed-probe check
// waits for probes_sent to show the probes it judges.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/api/result.hpp"

namespace sdwan::cp {

enum class PathStatus : uint8_t { kDown, kDamped, kUp };

/// "down", "damped", "up".
std::string_view path_status_name(PathStatus s) noexcept;

/// Flap damping. flaps == 0 turns it off.
struct DampingConfig {
  static constexpr uint32_t kMaxFlaps = 16;
  uint32_t flaps = 5;                        ///< up -> down changes ...
  uint64_t window_ns = 60'000'000'000;       ///< ... within this long damp the path
  uint64_t hold_min_ns = 1'000'000'000;      ///< first hold
  uint64_t hold_max_ns = 60'000'000'000;     ///< the doubling stops here
  uint64_t quiet_ns = 120'000'000'000;       ///< no damping for this long: back to hold_min
  bool operator==(const DampingConfig&) const = default;
};

struct PathStateConfig {
  uint64_t interval_ns = 100'000'000;  ///< probe interval, 10 ms .. 10 s
  uint32_t multiplier = 3;             ///< missed probes that make a path down, 1 .. 255
  uint32_t hold_up = 3;                ///< good probes that make it up, 1 .. 255
  DampingConfig damping;
  bool operator==(const PathStateConfig&) const = default;
};

/// Checks the ranges above (hold_min <= hold_max, flaps <= kMaxFlaps); the message names the field.
Status check_path_state_config(const PathStateConfig& c);

/// One state change.
struct PathEvent {
  uint64_t at_ns = 0;
  uint16_t path = 0;
  PathStatus from = PathStatus::kDown, to = PathStatus::kDown;
  std::string reason;
};

/// The last `capacity` events, oldest first, for `show events`. Control thread only.
class EventRing {
 public:
  explicit EventRing(size_t capacity) : ring_(capacity == 0 ? 1 : capacity) {}
  void push(const PathEvent& e);
  size_t size() const noexcept { return count_; }
  uint64_t total() const noexcept { return total_; }  ///< ever pushed (the oldest kept is total - size)
  /// i-th oldest kept, i < size().
  const PathEvent& operator[](size_t i) const noexcept { return ring_[(head_ + i) % ring_.size()]; }

 private:
  std::vector<PathEvent> ring_;
  size_t head_ = 0, count_ = 0;
  uint64_t total_ = 0;
};

/// The state of one path. Each call appends the changes it makes to `out`.
class PathStateMachine {
 public:
  /// Starts down, "probing", at now_ns. cfg must pass check_path_state_config.
  PathStateMachine(uint16_t path, const PathStateConfig& cfg, uint64_t now_ns);

  /// A probe reply arrived. rtt_jitter_ns: the path's current RTT jitter (sizes the slack).
  void on_reply(uint32_t seq, double rtt_jitter_ns, uint64_t now_ns, std::vector<PathEvent>& out);
  /// The workers' counters for the path (data only, see above), then the timers.
  void on_counters(uint64_t probes_sent, uint64_t data_tx, uint64_t data_rx, uint64_t now_ns,
                   std::vector<PathEvent>& out);
  /// The path's port went down or up. Down is immediate; up starts probing again (no event).
  /// why: the event's reason when it goes down ("link down", "next hop 10.1.0.1 unresolved").
  void on_link(bool up, uint64_t now_ns, std::vector<PathEvent>& out, std::string_view why = "link down");
  /// Timers: missed probes, early down, end of damping.
  void tick(uint64_t now_ns, std::vector<PathEvent>& out);

  /// Live reload: new timers and damping from now on; the state, the counts of good and missed
  /// probes and the flap history stay. cfg must pass check_path_state_config.
  void set_config(const PathStateConfig& cfg) noexcept { cfg_ = cfg; }

  PathStatus state() const noexcept { return state_; }
  uint64_t since_ns() const noexcept { return since_ns_; }     ///< time of the last change
  const std::string& reason() const noexcept { return reason_; }
  uint64_t slack_ns() const noexcept;
  uint64_t damped_until_ns() const noexcept { return damped_until_; }

 private:
  void change(PathStatus to, std::string reason, uint64_t now_ns, std::vector<PathEvent>& out);
  void go_down(std::string reason, uint64_t now_ns, std::vector<PathEvent>& out);
  void maybe_up(uint64_t now_ns, std::vector<PathEvent>& out);

  // What tick reads comes first: it runs for every path every few ms, so its fields share two
  // cache lines; reasons and the flap history are touched only on a change.
  PathStatus state_ = PathStatus::kDown;
  bool link_up_ = true;
  bool have_reply_ = false;
  bool have_counters_ = false;
  uint16_t path_;
  uint32_t good_ = 0;           // consecutive good probes
  uint32_t max_seq_ = 0;        // newest reply's sequence number
  uint64_t last_reply_ = 0;     // when it came
  double jitter_ns_ = 0;
  uint64_t probes_sent_ = 0;
  uint64_t last_tx_change_ = 0, last_rx_change_ = 0;
  uint64_t damped_until_ = 0;
  PathStateConfig cfg_;

  uint64_t since_ns_;
  uint64_t data_tx_ = 0, data_rx_ = 0;
  std::string reason_ = "probing";
  std::array<uint64_t, DampingConfig::kMaxFlaps> flaps_{};  // times of the last up -> down changes
  uint32_t flap_head_ = 0, flap_count_ = 0;
  uint64_t damped_from_ = 0;
  uint64_t last_hold_ = 0, last_hold_end_ = 0;
  bool ever_damped_ = false;
};

}  // namespace sdwan::cp
