// The policy compiler (issue 6): from every path's state and metrics, per class and per peer,
// which paths carry the class and with what weight, as the dp::Policy a snapshot publishes, and
// a decision record per (class, peer) for `sdwanctl show classes` and `explain`.
//
// Threads: control thread only. Time is injected: compile() takes now_ns (the control thread's
// monotonic clock); nothing sleeps or reads a clock. Per compile, no allocation once warm except
// the new Policy when something changed; when nothing changed compile() returns the same
// shared_ptr, so consecutive snapshots share it.
//
// Rules (docs/policy.md has the operator's version):
// - compliant: the path is up and each SLA limit given is met (rtt <= latency_ms, jitter <=
//   jitter_ms, loss towards the peer <= loss_pct); a figure not measured yet meets its limit
//   (an up path already answered hold_up probes in time).
// - score (ms, lower is better): rtt + 2 x jitter + 10 x loss_pct; the `best` path is the
//   compliant path of lowest score. Jitter counts twice as in the E-model's effective latency
//   (a jitter buffer adds about two jitters); 1 % loss weighs like 10 ms.
// - metered: `avoid` keeps metered paths only while no unmetered path complies; `never` drops
//   them; `allow` ignores the cost.
// - fallback when nothing complies: `least_bad` takes the up path whose worst figure exceeds
//   its limit by the smallest ratio (then lowest score); `drop` takes none.
// - weights (balance, spray): bandwidth x quality; bandwidth relative to the largest among the
//   chosen paths (unknown: the mean of the known ones, or all equal); quality =
//   1 / (1 + loss_pct) x 100 / (100 + rtt - lowest rtt) (1 % loss halves a path's share, 100 ms
//   more RTT halves it). Integer weights of up to 1000; a weight moves only when it has been
//   beyond the switch margin for switch_hold_ms, so measurement noise rebuilds no table.
// - hysteresis: a class leaves its current path for a better one only when the new one's score
//   is lower by the margin (switch_margin_pct, or switch_margin_ms) continuously for
//   switch_hold_ms; a path that became compliant less than failback_stable_ms ago takes no
//   traffic while another path complies (failback); a class never moves onto a path that is
//   not better than its current one (viable target). When the current path goes down or
//   breaks the SLA (or becomes an avoided metered path), the class moves at once.
// - duplicate: primary = the best path; secondary = the best other path on another uplink,
//   with the same hysteresis. adaptive: copies only while the primary misses the SLA, and
//   again none once it has met it for switch_hold_ms. Copies stop when the class's rate
//   (set_class_rate) exceeds max_overhead_pct of the copy uplink's bandwidth.
// - spray: reorder_hold_us = min(reorder_max_ms, max rtt - min rtt + 2 x max jitter + 5 ms)
//   over the chosen paths (0 with one path); see docs/policy.md for why the full RTT difference
//   and the 5 ms.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "control/config/config.hpp"
#include "control/policy/classify.hpp"
#include "control/policy/maglev.hpp"
#include "dataplane/api/policy.hpp"

namespace sdwan::cp {

/// One path as the compiler sees it, every compile.
struct PathInput {
  uint16_t id = 0;                  ///< the daemon's path id (< dp::kMaxPaths)
  uint16_t peer = 0;                ///< peer index (Config::peers)
  uint8_t uplink = 0;               ///< uplink index (Config::uplinks): duplicate copies use another
  bool metered = false;             ///< the uplink's cost is metered
  uint64_t bandwidth_bps = 0;       ///< the uplink's bandwidth; 0: unknown
  bool up = false;                  ///< PathMonitor says up and the path is usable (SA, next hop)
  std::optional<double> rtt_ms, jitter_ms, loss_pct;  ///< PathMetrics (loss: towards the peer)
};

/// Why a path carries a class, or not.
enum class Verdict : uint8_t {
  kChosen,          ///< carries the class (primary, secondary, or in the table)
  kStandby,         ///< compliant and allowed, not chosen (not the best; or held by hysteresis)
  kDown,            ///< not up
  kRtt,             ///< SLA: rtt over latency_ms
  kJitter,          ///< SLA: jitter over jitter_ms
  kLoss,            ///< SLA: loss over loss_pct
  kMeteredAvoided,  ///< metered, and an unmetered path complies (`other`)
  kMeteredNever,    ///< metered, class says never
  kRecovering,      ///< compliant for less than failback_stable_ms
};

/// One path's part in a decision.
struct PathDecision {
  uint16_t id = 0;
  Verdict verdict = Verdict::kDown;
  bool compliant = false;
  double score = 0;                 ///< ms, lower is better
  std::optional<double> rtt_ms, jitter_ms, loss_pct;  ///< the figures it was judged on
  double value = 0, limit = 0;      ///< kRtt / kJitter / kLoss: the figure and its limit
  uint16_t other = dp::kNoPathId;   ///< kMeteredAvoided: an unmetered path that complies
  uint64_t compliant_since_ns = 0;  ///< kRecovering: since when
  uint32_t weight = 0;              ///< kChosen in balance / spray: the table weight
};

/// What hysteresis held back: the current path stays although cand looks better.
struct Held {
  enum Kind : uint8_t { kNone, kMargin, kHold } kind = kNone;
  uint16_t cur = dp::kNoPathId, cand = dp::kNoPathId;
  double better = 0;                ///< by how much cand is better: percent, or ms with switch_margin_ms
  uint64_t since_ns = 0;            ///< kHold: since when cand has been better by the margin
};

/// The decision for one class towards one peer at the last compile.
struct ClassDecision {
  uint8_t cls = 0;
  uint16_t peer = 0;
  uint64_t at_ns = 0;
  bool sla_met = false;             ///< the chosen paths comply (a class without SLA: a path is up)
  bool fallback = false;            ///< nothing complies: the least-bad path carries the class
  bool none = false;                ///< no path carries the class (none up, or fallback drop)
  dp::ClassPaths out;               ///< what the snapshot says (lut included)
  enum class Dup : uint8_t { kNotDuplicate, kAlways, kSlaMissed, kSlaMet, kOverhead, kNoOtherUplink } dup =
      Dup::kNotDuplicate;
  Held held_primary, held_secondary;
  std::vector<PathDecision> paths;  ///< every path of the peer, in input order
};

class PolicyCompiler {
 public:
  /// classes and policy as parse_config validated them; peer_names by peer index;
  /// path_names by path id (for explain; a missing name prints as "path N").
  PolicyCompiler(std::vector<ClassConfig> classes, PolicyConfig policy, std::vector<std::string> peer_names,
                 std::vector<std::string> path_names = {});

  /// Recomputes every (class, peer) from paths (every path of every peer, every time; the
  /// number of paths per peer sizes its Maglev tables, so keep it fixed for one config) and
  /// returns the policy to publish: the previous pointer when nothing changed.
  std::shared_ptr<const dp::Policy> compile(std::span<const PathInput> paths, uint64_t now_ns);

  /// Live reload: new classes and hysteresis for the same peers and paths. A class that keeps
  /// its name (and mode) keeps its sticky paths, hysteresis and failback timers, so its flows
  /// stay where they are; a new class starts fresh. With reclassify_gen (classes changed), the
  /// next policy tells the workers to classify flows decided before that generation again.
  void reconfigure(std::vector<ClassConfig> classes, PolicyConfig policy, std::optional<uint32_t> reclassify_gen);

  /// Live reload of peers: peer_names by peer index, at least as many as before (peers are only
  /// appended; a removed one stays as a tombstone), removed[p] for each tombstone. Every live
  /// (class, peer) keeps its state; a new peer starts fresh; a tombstone's state is dropped,
  /// it is compiled no more and decision() says nullptr for it. path_names as in the constructor.
  void set_peers(std::vector<std::string> peer_names, std::vector<bool> removed, std::vector<std::string> path_names);

  /// The class's measured rate (bit/s; 0 unknown) for duplicate's overhead cap towards a peer,
  /// used from the next compile on. sdwand feeds each class's rate over all peers
  /// (ClassRateMeter): the copies of every peer may leave by the same copy uplink.
  void set_class_rate(uint8_t cls, uint16_t peer, uint64_t bps);

  /// The last compile's decision; nullptr before the first compile or out of range.
  const ClassDecision* decision(uint8_t cls, uint16_t peer) const noexcept;
  /// The last policy compiled (nullptr before the first compile).
  const std::shared_ptr<const dp::Policy>& policy() const noexcept { return policy_; }
  /// Class id by name; nullopt if unknown.
  std::optional<uint8_t> class_id(std::string_view name) const;
  const std::vector<ClassConfig>& classes() const noexcept { return classes_; }
  const PolicyConfig& config() const noexcept { return pc_; }
  uint16_t n_peers() const noexcept { return static_cast<uint16_t>(peer_names_.size()); }
  const std::string& peer_name(uint16_t peer) const { return peer_names_.at(peer); }
  std::string path_name(uint16_t id) const;

  /// One path's part in words: "rtt 180 ms > 150 ms", "down", "metered, avoided: isp1:hub
  /// complies", "recovered 2.1 s ago, waiting 5 s", "chosen, weight 500", "standby".
  std::string reason(const ClassDecision& d, const PathDecision& p) const;
  /// The SLA state in words: "met (isp1:hub complies)", "not met: no path complies, least-bad
  /// isp2:hub (rtt 180 ms > 150 ms)", "not met: no path is up".
  std::string sla_text(const ClassDecision& d) const;
  /// What hysteresis held, in words; "" when nothing: "isp2:hub better by 8 % < 10 % margin",
  /// "isp2:hub better by 12 % for 0.4 s < 1 s hold".
  std::string held_text(const ClassDecision& d, const Held& h) const;
  /// A duplicate class's copies in words: "yes (always)", "no: copies would exceed
  /// max_overhead_pct of the copy uplink", ...; "" for other modes.
  std::string dup_text(const ClassDecision& d) const;
  /// `sdwanctl explain CLASS`: the decision towards every peer in lines of words.
  std::vector<std::string> explain(uint8_t cls) const;

 private:
  struct Sticky {
    uint16_t cur = dp::kNoPathId;
    uint16_t cand = dp::kNoPathId;
    uint64_t cand_since = 0;
  };
  struct State {
    Sticky primary, secondary;
    std::vector<MaglevPath> members;  // balance / spray: the table's paths and weights, by id
    std::vector<std::pair<uint16_t, uint64_t>> weight_since;  // members whose weight is held: since when
    uint64_t primary_ok_since = 0;    // adaptive: since when the primary has met the SLA
    bool dup_on = false;
    uint64_t rate_bps = 0;
  };
  struct Eval {  // one path for one class, this compile
    size_t in;   // index into the input
    bool up, compliant, recovering, metered;
    double score, excess;
  };

  void compile_one(uint8_t cls, uint16_t peer, std::span<const PathInput> in, uint64_t now_ns);
  uint16_t choose(Sticky& s, Held& held, std::span<const Eval> cands, bool by_excess, std::span<const PathInput> in,
                  uint64_t now_ns);
  bool better_by_margin(double cand, double cur, bool by_excess, double& better) const;
  void weigh(std::span<const Eval> members, std::span<const PathInput> in, State& st, ClassDecision& d,
             uint64_t now_ns);

  std::vector<ClassConfig> classes_;
  PolicyConfig pc_;
  std::vector<std::string> peer_names_, path_names_;
  std::vector<bool> removed_;              // by peer: a tombstone of a live reload
  std::vector<State> state_;               // [cls * n_peers + peer]
  std::vector<ClassDecision> decisions_;   // [cls * n_peers + peer]
  std::vector<uint64_t> compliant_since_;  // [cls * kMaxPaths + path id]; 0: not compliant
  // [cls * kMaxPaths + path id]: the path has complied before its current streak, so this one
  // is a recovery (failback waits failback_stable_ms); a path's first streak is none.
  std::vector<uint8_t> lapsed_;
  std::vector<std::vector<size_t>> by_peer_;  // input indexes per peer, rebuilt per compile
  std::vector<Eval> evals_, pool_, scratch_, weights_tmp_;
  std::vector<MaglevPath> weights_;
  MaglevBuilder maglev_;
  std::shared_ptr<const dp::Policy> policy_;
  ClassRules rules_;
  bool changed_ = false;
  uint32_t reclassify_gen_ = 0;
};

}  // namespace sdwan::cp
