// Failover drills (issue 7): `sdwanctl drill uplink isp1 --blackout 30s` injects a failure
// inside the dataplane for a while (PathInfo::drill_drop_ppm on the target's paths), watches
// what the appliance does about it and writes a report: how long detection took, how long
// until each class was rerouted, what each class lost, how many flows moved and whether each
// class's SLA held. Pure logic with an injected clock: the appliance feeds it path states,
// the compiled class paths and the workers' counters. Control thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dataplane/api/policy.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// What a drill does, as sdwanctl asks for it.
struct DrillRequest {
  enum class Target : uint8_t { kUplink, kPeer } target = Target::kUplink;
  std::string name;               ///< the uplink's or the peer's name
  uint32_t drop_ppm = 1000000;    ///< share of packets dropped: 1,000,000 is a blackout
  uint64_t duration_ms = 30000;   ///< how long the failure lasts
  bool force = false;             ///< also when it takes down the last usable path of a peer

  /// From the management request {"target": "uplink"|"peer", "name", "blackout_ms" or
  /// ("loss_pct", "duration_ms"), "force"}; errors say which field is wrong and why.
  static Result<DrillRequest> from_json(const nlohmann::json& req);
};

/// What the drill needs to know of the topology and the classes (names by index).
struct DrillPath {
  uint16_t id = 0;
  std::string name;               ///< "isp1:hub"
  std::string uplink, peer;
};
struct DrillClass {
  std::string name;
  std::optional<double> sla_loss_pct;  ///< nullopt: the class has no loss SLA
  bool has_sla = false;                ///< any SLA (latency, jitter or loss)
};

/// What the appliance observes at each tick.
struct DrillObservation {
  uint64_t now_ns = 0;
  std::span<const uint8_t> path_up;                ///< by path id: up and usable
  /// [cls * n_peers + peer]: the class's paths now (primary, secondary, lut), and whether the
  /// compiler found them within the class's SLA.
  std::span<const dp::ClassPaths> class_paths;
  std::span<const uint8_t> class_sla_met;
  uint16_t n_peers = 0;
  /// By class, summed over workers: LAN packets sent to peers, LAN packets the drill lost
  /// (no copy on an undrilled path), data packets dropped on receive.
  std::span<const uint64_t> class_pkts, class_lost, class_rx_dropped;
};

class DrillManager {
 public:
  DrillManager(std::vector<DrillPath> paths, std::vector<DrillClass> classes, size_t keep = 50);

  /// Starts a drill now; refused while another runs, for an unknown target, or when it would
  /// black out every usable path of a peer without force. Returns the drill's id.
  Result<uint64_t> start(const DrillRequest& req, const DrillObservation& obs, uint64_t wall_ms);

  /// Ends the running drill early (its report says "aborted"); false when none runs.
  bool abort(uint64_t now_ns, uint64_t wall_ms);

  /// Follows the running drill; ends it when its time is up. True when the drop shares changed
  /// (a drill ended): the caller publishes a snapshot.
  bool tick(const DrillObservation& obs, uint64_t wall_ms);

  /// The drop share the snapshot gives path id (0: no drill on it).
  uint32_t drop_ppm(uint16_t path) const noexcept;
  bool running() const noexcept { return cur_.has_value(); }
  /// The running drill's time is up: the next tick ends it.
  bool due(uint64_t now_ns) const noexcept { return cur_ && now_ns >= cur_->end_ns; }
  /// The running drill's id (0 when none runs).
  uint64_t running_id() const noexcept { return cur_ ? cur_->id : 0; }
  /// Paths the running drill drops on (empty when none runs).
  const std::vector<uint16_t>& drilled() const noexcept;

  /// The running drill as a report so far ({"state": "running", ...}); null when none runs.
  nlohmann::json current(uint64_t now_ns) const;
  /// Finished reports, oldest first (at most keep).
  const std::vector<nlohmann::json>& history() const noexcept { return done_; }
  /// Live reload: the classes reports name (not while a drill runs).
  void set_classes(std::vector<DrillClass> classes) { classes_ = std::move(classes); }
  /// Reports loaded from the drill log at start.
  void restore(std::vector<nlohmann::json> reports);
  /// The last report that was finished (for the log and the event); null before the first.
  const nlohmann::json* last() const noexcept { return done_.empty() ? nullptr : &done_.back(); }
  uint64_t next_id() const noexcept { return next_id_; }

  /// How long flows were seen on drilled paths at the start, and how many of them are on other
  /// paths at the end: the appliance counts them from flow dumps.
  void set_flows(uint64_t on_drilled_at_start, uint64_t moved);

 private:
  struct ClassTrack {
    bool affected = false;                 // used a drilled path at the start
    std::optional<uint64_t> rerouted_ns;   // first time none of its paths was drilled
    bool sla_missed = false;               // its paths missed the SLA at some tick after rerouting
    uint64_t pkts0 = 0, lost0 = 0, rx0 = 0;
    uint64_t pkts = 0, lost = 0, rx = 0;   // deltas at the last tick
  };
  struct Running {
    uint64_t id = 0;
    DrillRequest req;
    std::vector<uint16_t> paths;
    uint64_t start_ns = 0, end_ns = 0, start_wall_ms = 0;
    std::optional<uint64_t> detected_ns;   // first time a drilled path was seen down
    std::vector<ClassTrack> classes;
    uint64_t flows_at_start = 0, flows_moved = 0;
    bool flows_known = false;
  };

  bool uses_drilled(const dp::ClassPaths& cp) const;
  void observe(const DrillObservation& obs);
  nlohmann::json report(const Running& r, uint64_t now_ns, const char* state) const;
  void finish(uint64_t now_ns, uint64_t wall_ms, const char* outcome);

  std::vector<DrillPath> paths_;
  std::vector<DrillClass> classes_;
  size_t keep_;
  std::optional<Running> cur_;
  std::vector<uint32_t> ppm_;              // by path id
  std::vector<nlohmann::json> done_;
  uint64_t next_id_ = 1;
  static const std::vector<uint16_t> kNone;
};

}  // namespace sdwan::cp
