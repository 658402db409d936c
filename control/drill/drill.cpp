#include "control/drill/drill.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>

namespace sdwan::cp {

using nlohmann::json;

namespace {

constexpr uint32_t kBlackout = 1000000;
constexpr uint64_t kNsPerMs = 1000000;
constexpr uint64_t kMaxDurationMs = 24ull * 3600 * 1000;

std::string wall_text(uint64_t wall_ms) {
  const time_t t = static_cast<time_t>(wall_ms / 1000);
  tm tmv{};
  gmtime_r(&t, &tmv);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tmv);
  return fmt::format("{}.{:03d}Z", buf, wall_ms % 1000);
}

json ms_or_null(const std::optional<uint64_t>& at_ns, uint64_t start_ns) {
  if (!at_ns) return nullptr;
  return static_cast<double>(*at_ns - start_ns) / 1e6;
}

double round3(double x) { return std::round(x * 1000.0) / 1000.0; }

}  // namespace

const std::vector<uint16_t> DrillManager::kNone;

Result<DrillRequest> DrillRequest::from_json(const json& req) {
  DrillRequest r;
  try {
    const std::string target = req.value("target", "");
    if (target == "uplink") r.target = Target::kUplink;
    else if (target == "peer") r.target = Target::kPeer;
    else return err("drill target must be \"uplink\" or \"peer\", got \"" + target + "\"");
    r.name = req.value("name", "");
    if (r.name.empty()) return err("drill: name the " + target + " to drill");
    const bool blackout = req.contains("blackout_ms"), loss = req.contains("loss_pct");
    if (blackout == loss) return err("drill: give exactly one of --blackout DURATION or --loss PCT");
    if (blackout) {
      r.drop_ppm = kBlackout;
      r.duration_ms = req.at("blackout_ms").get<uint64_t>();
    } else {
      const double pct = req.at("loss_pct").get<double>();
      if (!(pct > 0 && pct <= 100)) return err(fmt::format("drill: --loss must be more than 0 % and at most 100 %, got {}", pct));
      r.drop_ppm = static_cast<uint32_t>(std::lround(pct * 10000.0));
      r.duration_ms = req.value("duration_ms", uint64_t{30000});
    }
    if (r.duration_ms < 100 || r.duration_ms > kMaxDurationMs)
      return err(fmt::format("drill: the duration must be between 100 ms and 24 h, got {} ms", r.duration_ms));
    r.force = req.value("force", false);
  } catch (const std::exception& e) {
    return err(std::string("drill: bad request: ") + e.what());
  }
  return r;
}

DrillManager::DrillManager(std::vector<DrillPath> paths, std::vector<DrillClass> classes, size_t keep)
    : paths_(std::move(paths)), classes_(std::move(classes)), keep_(std::max<size_t>(keep, 1)) {
  uint16_t max_id = 0;
  for (const auto& p : paths_) max_id = std::max<uint16_t>(max_id, static_cast<uint16_t>(p.id + 1));
  ppm_.assign(max_id, 0);
}

const std::vector<uint16_t>& DrillManager::drilled() const noexcept { return cur_ ? cur_->paths : kNone; }

uint32_t DrillManager::drop_ppm(uint16_t path) const noexcept { return path < ppm_.size() ? ppm_[path] : 0; }

bool DrillManager::uses_drilled(const dp::ClassPaths& cp) const {
  const auto drilled_id = [&](uint16_t id) { return id < ppm_.size() && ppm_[id] != 0; };
  if (cp.primary != dp::kNoPathId && drilled_id(cp.primary)) return true;
  if (cp.mode == dp::ClassMode::kDuplicate && cp.duplicating && cp.secondary != dp::kNoPathId && drilled_id(cp.secondary))
    return true;
  if (cp.mode == dp::ClassMode::kBalance || cp.mode == dp::ClassMode::kSpray)
    return std::any_of(cp.lut.begin(), cp.lut.end(), drilled_id);
  return false;
}

Result<uint64_t> DrillManager::start(const DrillRequest& req, const DrillObservation& obs, uint64_t wall_ms) {
  if (cur_) return err(fmt::format("drill {} is running ({}); wait for its end or stop it: sdwanctl drill abort", cur_->id,
                                   cur_->req.name));
  const bool uplink = req.target == DrillRequest::Target::kUplink;
  std::vector<uint16_t> hit;
  bool known = false;
  for (const auto& p : paths_) {
    const bool match = (uplink ? p.uplink : p.peer) == req.name;
    known |= match;
    if (match) hit.push_back(p.id);
  }
  if (!known) {
    std::vector<std::string> names;
    for (const auto& p : paths_) {
      const std::string& n = uplink ? p.uplink : p.peer;
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    return err(fmt::format("no {} named \"{}\" (known: {})", uplink ? "uplink" : "peer", req.name, fmt::join(names, ", ")));
  }
  // A blackout that leaves a peer without any usable path is an outage, not a drill.
  if (req.drop_ppm >= kBlackout && !req.force) {
    std::vector<std::string> peers;
    for (const auto& p : paths_) {
      if (std::find(peers.begin(), peers.end(), p.peer) != peers.end()) continue;
      bool had = false, left = false;
      for (const auto& q : paths_) {
        if (q.peer != p.peer || q.id >= obs.path_up.size() || !obs.path_up[q.id]) continue;
        had = true;
        if (std::find(hit.begin(), hit.end(), q.id) == hit.end()) left = true;
      }
      if (had && !left) peers.push_back(p.peer);
    }
    if (!peers.empty())
      return err(fmt::format("refused: blacking out {} {} leaves no usable path to {} {}; add --force to drill it anyway",
                             uplink ? "uplink" : "peer", req.name, peers.size() == 1 ? "peer" : "peers",
                             fmt::join(peers, ", ")));
  }
  Running r;
  r.id = next_id_++;
  r.req = req;
  r.paths = hit;
  r.start_ns = obs.now_ns;
  r.end_ns = obs.now_ns + req.duration_ms * kNsPerMs;
  r.start_wall_ms = wall_ms;
  for (uint16_t id : hit) ppm_[id] = req.drop_ppm;
  r.classes.resize(classes_.size());
  for (size_t c = 0; c < classes_.size(); ++c) {
    ClassTrack& t = r.classes[c];
    for (uint16_t p = 0; p < obs.n_peers; ++p) {
      const size_t i = c * obs.n_peers + p;
      if (i < obs.class_paths.size() && uses_drilled(obs.class_paths[i])) t.affected = true;
    }
    t.pkts0 = c < obs.class_pkts.size() ? obs.class_pkts[c] : 0;
    t.lost0 = c < obs.class_lost.size() ? obs.class_lost[c] : 0;
    t.rx0 = c < obs.class_rx_dropped.size() ? obs.class_rx_dropped[c] : 0;
  }
  cur_ = std::move(r);
  return cur_->id;
}

void DrillManager::observe(const DrillObservation& obs) {
  Running& r = *cur_;
  if (!r.detected_ns)
    for (uint16_t id : r.paths)
      if (id < obs.path_up.size() && !obs.path_up[id]) {
        r.detected_ns = obs.now_ns;
        break;
      }
  for (size_t c = 0; c < r.classes.size(); ++c) {
    ClassTrack& t = r.classes[c];
    bool on_drilled = false, sla_met = true;
    for (uint16_t p = 0; p < obs.n_peers; ++p) {
      const size_t i = c * obs.n_peers + p;
      if (i < obs.class_paths.size() && uses_drilled(obs.class_paths[i])) on_drilled = true;
      if (i < obs.class_sla_met.size() && !obs.class_sla_met[i]) sla_met = false;
    }
    if (t.affected && !on_drilled && !t.rerouted_ns) t.rerouted_ns = obs.now_ns;
    // The SLA is judged once the class runs where the policy put it after the failure (or all
    // along when the drill never touched it); the detection window shows up in the loss.
    if ((!t.affected || t.rerouted_ns) && !sla_met) t.sla_missed = true;
    if (c < obs.class_pkts.size()) t.pkts = obs.class_pkts[c] - t.pkts0;
    if (c < obs.class_lost.size()) t.lost = obs.class_lost[c] - t.lost0;
    if (c < obs.class_rx_dropped.size()) t.rx = obs.class_rx_dropped[c] - t.rx0;
  }
}

bool DrillManager::tick(const DrillObservation& obs, uint64_t wall_ms) {
  if (!cur_) return false;
  observe(obs);
  if (obs.now_ns < cur_->end_ns) return false;
  finish(obs.now_ns, wall_ms, "completed");
  return true;
}

bool DrillManager::abort(uint64_t now_ns, uint64_t wall_ms) {
  if (!cur_) return false;
  finish(now_ns, wall_ms, "aborted");
  return true;
}

void DrillManager::set_flows(uint64_t on_drilled_at_start, uint64_t moved) {
  if (!cur_) return;
  cur_->flows_at_start = on_drilled_at_start;
  cur_->flows_moved = moved;
  cur_->flows_known = true;
}

json DrillManager::report(const Running& r, uint64_t now_ns, const char* state) const {
  json classes = json::array();
  uint64_t lost_total = 0, sent_total = 0;
  for (size_t c = 0; c < r.classes.size() && c < classes_.size(); ++c) {
    const ClassTrack& t = r.classes[c];
    const DrillClass& dc = classes_[c];
    lost_total += t.lost;
    sent_total += t.pkts;
    const double lost_pct = t.pkts != 0 ? round3(100.0 * static_cast<double>(t.lost) / static_cast<double>(t.pkts)) : 0.0;
    json held = nullptr;
    std::string why = "no SLA";
    if (dc.has_sla) {
      const bool loss_ok = !dc.sla_loss_pct || lost_pct <= *dc.sla_loss_pct;
      if (t.affected && !t.rerouted_ns)
        why = "not rerouted: no other path took it";
      else if (!loss_ok)
        why = fmt::format("lost {} % of its packets, SLA {} %", lost_pct, *dc.sla_loss_pct);
      else if (t.sla_missed)
        why = t.affected ? "its paths after the reroute missed the SLA" : "its paths missed the SLA";
      else
        why = "held";
      held = why == "held";
    }
    classes.push_back({{"class", dc.name},
                       {"affected", t.affected},
                       {"rerouted_ms", t.affected ? ms_or_null(t.rerouted_ns, r.start_ns) : json(nullptr)},
                       {"sent", t.pkts},
                       {"lost", t.lost},
                       {"lost_pct", lost_pct},
                       {"rx_dropped", t.rx},
                       {"sla_held", held},
                       {"why", why}});
  }
  json paths = json::array();
  for (uint16_t id : r.paths)
    for (const auto& p : paths_)
      if (p.id == id) paths.push_back(p.name);
  const bool blackout = r.req.drop_ppm >= kBlackout;
  json out = {{"id", r.id},
              {"state", state},
              {"target", r.req.target == DrillRequest::Target::kUplink ? "uplink" : "peer"},
              {"name", r.req.name},
              {"action", blackout ? "blackout" : "loss"},
              {"loss_pct", round3(static_cast<double>(r.req.drop_ppm) / 10000.0)},
              {"duration_ms", r.req.duration_ms},
              {"forced", r.req.force},
              {"paths", paths},
              {"started", wall_text(r.start_wall_ms)},
              {"elapsed_ms", static_cast<double>(now_ns - r.start_ns) / 1e6},
              {"detection_ms", ms_or_null(r.detected_ns, r.start_ns)},
              {"sent", sent_total},
              {"lost", lost_total},
              {"classes", classes},
              {"flows_on_target", r.flows_known ? json(r.flows_at_start) : json(nullptr)},
              {"flows_moved", r.flows_known ? json(r.flows_moved) : json(nullptr)}};
  return out;
}

json DrillManager::current(uint64_t now_ns) const {
  if (!cur_) return nullptr;
  return report(*cur_, now_ns, "running");
}

void DrillManager::finish(uint64_t now_ns, uint64_t wall_ms, const char* outcome) {
  json rep = report(*cur_, now_ns, outcome);
  rep["ended"] = wall_text(wall_ms);
  for (uint16_t id : cur_->paths) ppm_[id] = 0;
  cur_.reset();
  done_.push_back(std::move(rep));
  if (done_.size() > keep_) done_.erase(done_.begin());
}

void DrillManager::restore(std::vector<json> reports) {
  for (auto& r : reports) {
    if (!r.is_object()) continue;
    if (auto it = r.find("id"); it != r.end() && it->is_number_integer() && it->get<int64_t>() >= 0)
      next_id_ = std::max(next_id_, static_cast<uint64_t>(it->get<int64_t>()) + 1);
    done_.push_back(std::move(r));
  }
  while (done_.size() > keep_) done_.erase(done_.begin());
}

}  // namespace sdwan::cp
