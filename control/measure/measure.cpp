#include "control/measure/measure.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sdwan::cp {

PathMonitor::PathMonitor(size_t event_capacity) : slot_of_(size_t{1} << 16, -1), events_(event_capacity) {}

Status PathMonitor::add_path(const PathSpec& spec, uint64_t now_ns) {
  if (slot(spec.id) >= 0) return err(fmt::format("path {}: id {} is already measured", spec.name, spec.id));
  if (Status s = check_path_state_config(spec.state); !s) return err(fmt::format("path {}: {}", spec.name, s.error().msg));
  if (spec.window_ns < 2 * spec.state.interval_ns)
    return err(fmt::format("path {}: the measurement window must be at least two probe intervals", spec.name));
  PathEstimator est(EstimatorConfig{spec.state.interval_ns, spec.window_ns});
  if (scratch_.size() < est.capacity()) scratch_.resize(est.capacity());
  // Room for a few events per path per tick, so that even a mass failure does not grow them.
  pending_.reserve(4 * (paths_.size() + 1));
  returned_.reserve(4 * (paths_.size() + 1));
  slot_of_[spec.id] = static_cast<int32_t>(paths_.size());
  paths_.push_back(Path{spec, std::move(est)});
  sms_.emplace_back(spec.id, spec.state, now_ns);
  return Ok{};
}

Status PathMonitor::reconfigure(uint16_t id, const PathStateConfig& state, uint64_t window_ns) {
  const int32_t k = slot(id);
  if (k < 0) return err(fmt::format("path id {} is not measured", id));
  Path& p = paths_[static_cast<size_t>(k)];
  if (Status s = check_path_state_config(state); !s) return err(fmt::format("path {}: {}", p.spec.name, s.error().msg));
  if (window_ns < 2 * state.interval_ns)
    return err(fmt::format("path {}: the measurement window must be at least two probe intervals", p.spec.name));
  if (state.interval_ns != p.spec.state.interval_ns || window_ns != p.spec.window_ns) {
    p.est = PathEstimator(EstimatorConfig{state.interval_ns, window_ns});
    if (scratch_.size() < p.est.capacity()) scratch_.resize(p.est.capacity());
  }
  p.spec.state = state;
  p.spec.window_ns = window_ns;
  sms_[static_cast<size_t>(k)].set_config(state);
  return Ok{};
}

void PathMonitor::remove_path(uint16_t id) {
  const int32_t s = slot_of_[id];
  if (s < 0) return;
  if (static_cast<size_t>(s) != paths_.size() - 1) {
    paths_[static_cast<size_t>(s)] = std::move(paths_.back());
    sms_[static_cast<size_t>(s)] = std::move(sms_.back());
    slot_of_[paths_[static_cast<size_t>(s)].spec.id] = s;
  }
  paths_.pop_back();
  sms_.pop_back();
  slot_of_[id] = -1;
}

void PathMonitor::on_sample(const ProbeSample& s, uint64_t now_ns) {
  const int32_t k = slot(s.path);
  if (k < 0) {
    ++unknown_samples_;
    return;
  }
  Path* p = &paths_[static_cast<size_t>(k)];
  if (!p->est.on_sample(s, now_ns)) return;
  const size_t before = pending_.size();
  sms_[static_cast<size_t>(k)].on_reply(s.seq, p->est.jitter_ns(), now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_counters(uint16_t path, uint64_t probes_sent, uint64_t data_tx, uint64_t data_rx,
                              const SaCounters& rev_sa, uint64_t now_ns) {
  const int32_t k = slot(path);
  if (k < 0) return;
  Path* p = &paths_[static_cast<size_t>(k)];
  p->est.set_probes_sent(probes_sent);
  p->est.on_rev_sa(rev_sa, now_ns);
  const size_t before = pending_.size();
  sms_[static_cast<size_t>(k)].on_counters(probes_sent, data_tx, data_rx, now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_link_port(uint8_t port, bool up, uint64_t now_ns) {
  const size_t before = pending_.size();
  for (size_t i = 0; i < paths_.size(); ++i)
    if (paths_[i].spec.port == port) sms_[i].on_link(up, now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_link_path(uint16_t path, bool up, uint64_t now_ns, std::string_view why) {
  const int32_t k = slot(path);
  if (k < 0) return;
  const size_t before = pending_.size();
  sms_[static_cast<size_t>(k)].on_link(up, now_ns, pending_, why);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

std::span<const PathEvent> PathMonitor::tick(uint64_t now_ns) {
  const size_t before = pending_.size();
  for (PathStateMachine& sm : sms_) sm.tick(now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
  // Swap, not copy: both vectors keep their buffers, so a quiet tick allocates nothing.
  returned_.clear();
  std::swap(pending_, returned_);
  return returned_;
}

std::optional<PathView> PathMonitor::view(uint16_t path, uint64_t now_ns) {
  const int32_t k = slot(path);
  if (k < 0) return std::nullopt;
  Path* p = &paths_[static_cast<size_t>(k)];
  const PathStateMachine& sm = sms_[static_cast<size_t>(k)];
  const EstimatorStats st = p->est.stats(now_ns, scratch_);
  PathView v;
  v.id = p->spec.id;
  v.name = p->spec.name;
  v.state = sm.state();
  v.since_ns = sm.since_ns();
  v.reason = sm.reason();
  v.rtt_ms = st.rtt_ms;
  v.rtt_min_ms = st.rtt_min_ms;
  v.rtt_p50_ms = st.rtt_p50_ms;
  v.rtt_p95_ms = st.rtt_p95_ms;
  v.rtt_p99_ms = st.rtt_p99_ms;
  v.jitter_ms = st.jitter_ms;
  v.jitter_fwd_ms = st.jitter_fwd_ms;
  v.jitter_rev_ms = st.jitter_rev_ms;
  v.loss_fwd_pct = st.loss_fwd_pct;
  v.loss_rev_pct = st.loss_rev_pct;
  v.loss_data_fwd_pct = st.loss_data_fwd_pct;
  v.loss_data_rev_pct = st.loss_data_rev_pct;
  v.probes_sent = p->est.probes_sent();
  v.probes_received = p->est.probes_received();
  v.window_samples = st.window_samples;
  return v;
}

std::optional<PathMetrics> PathMonitor::metrics(uint16_t path, uint64_t now_ns) {
  const int32_t k = slot(path);
  if (k < 0) return std::nullopt;
  const EstimatorBrief b = paths_[static_cast<size_t>(k)].est.brief(now_ns);
  return PathMetrics{sms_[static_cast<size_t>(k)].state(), b.rtt_ms, b.jitter_ms, b.loss_fwd_pct, b.loss_rev_pct};
}

std::optional<PathStatus> PathMonitor::state(uint16_t path) const {
  const int32_t k = slot(path);
  if (k < 0) return std::nullopt;
  return sms_[static_cast<size_t>(k)].state();
}

std::vector<uint16_t> PathMonitor::paths() const {
  std::vector<uint16_t> ids;
  ids.reserve(paths_.size());
  for (const Path& p : paths_) ids.push_back(p.spec.id);
  return ids;
}

size_t PathMonitor::memory_bytes() const noexcept {
  size_t n = sizeof(*this) + slot_of_.capacity() * sizeof(int32_t) + scratch_.capacity() * sizeof(uint32_t) +
             paths_.capacity() * sizeof(Path) + sms_.capacity() * sizeof(PathStateMachine);
  for (const Path& p : paths_) n += p.est.memory_bytes() - sizeof(PathEstimator) + p.spec.name.capacity();
  return n;
}

}  // namespace sdwan::cp
