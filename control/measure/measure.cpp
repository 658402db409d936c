#include "control/measure/measure.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sdwan::cp {

PathMonitor::PathMonitor(size_t event_capacity) : slot_of_(size_t{1} << 16, -1), events_(event_capacity) {}

PathMonitor::Path* PathMonitor::find(uint16_t id) noexcept {
  const int32_t s = slot_of_[id];
  return s < 0 ? nullptr : &paths_[static_cast<size_t>(s)];
}

const PathMonitor::Path* PathMonitor::find(uint16_t id) const noexcept {
  const int32_t s = slot_of_[id];
  return s < 0 ? nullptr : &paths_[static_cast<size_t>(s)];
}

Status PathMonitor::add_path(const PathSpec& spec, uint64_t now_ns) {
  if (find(spec.id) != nullptr) return err(fmt::format("path {}: id {} is already measured", spec.name, spec.id));
  if (Status s = check_path_state_config(spec.state); !s) return err(fmt::format("path {}: {}", spec.name, s.error().msg));
  if (spec.window_ns < 2 * spec.state.interval_ns)
    return err(fmt::format("path {}: the measurement window must be at least two probe intervals", spec.name));
  PathEstimator est(EstimatorConfig{spec.state.interval_ns, spec.window_ns});
  if (scratch_.size() < est.capacity()) scratch_.resize(est.capacity());
  // Room for a few events per path per tick, so that even a mass failure does not grow them.
  pending_.reserve(4 * (paths_.size() + 1));
  returned_.reserve(4 * (paths_.size() + 1));
  slot_of_[spec.id] = static_cast<int32_t>(paths_.size());
  paths_.push_back(Path{spec, std::move(est), PathStateMachine(spec.id, spec.state, now_ns)});
  return Ok{};
}

void PathMonitor::remove_path(uint16_t id) {
  const int32_t s = slot_of_[id];
  if (s < 0) return;
  if (static_cast<size_t>(s) != paths_.size() - 1) {
    paths_[static_cast<size_t>(s)] = std::move(paths_.back());
    slot_of_[paths_[static_cast<size_t>(s)].spec.id] = s;
  }
  paths_.pop_back();
  slot_of_[id] = -1;
}

void PathMonitor::on_sample(const ProbeSample& s, uint64_t now_ns) {
  Path* p = find(s.path);
  if (p == nullptr) {
    ++unknown_samples_;
    return;
  }
  if (!p->est.on_sample(s, now_ns)) return;
  const size_t before = pending_.size();
  p->sm.on_reply(s.seq, p->est.jitter_ns(), now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_counters(uint16_t path, uint64_t probes_sent, uint64_t data_tx, uint64_t data_rx,
                              const SaCounters& rev_sa, uint64_t now_ns) {
  Path* p = find(path);
  if (p == nullptr) return;
  p->est.set_probes_sent(probes_sent);
  p->est.on_rev_sa(rev_sa, now_ns);
  const size_t before = pending_.size();
  p->sm.on_counters(probes_sent, data_tx, data_rx, now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_link_port(uint8_t port, bool up, uint64_t now_ns) {
  const size_t before = pending_.size();
  for (Path& p : paths_)
    if (p.spec.port == port) p.sm.on_link(up, now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

void PathMonitor::on_link_path(uint16_t path, bool up, uint64_t now_ns) {
  Path* p = find(path);
  if (p == nullptr) return;
  const size_t before = pending_.size();
  p->sm.on_link(up, now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
}

std::span<const PathEvent> PathMonitor::tick(uint64_t now_ns) {
  const size_t before = pending_.size();
  for (Path& p : paths_) p.sm.tick(now_ns, pending_);
  for (size_t i = before; i < pending_.size(); ++i) events_.push(pending_[i]);
  // Swap, not copy: both vectors keep their buffers, so a quiet tick allocates nothing.
  returned_.clear();
  std::swap(pending_, returned_);
  return returned_;
}

std::optional<PathView> PathMonitor::view(uint16_t path, uint64_t now_ns) {
  Path* p = find(path);
  if (p == nullptr) return std::nullopt;
  const EstimatorStats st = p->est.stats(now_ns, scratch_);
  PathView v;
  v.id = p->spec.id;
  v.name = p->spec.name;
  v.state = p->sm.state();
  v.since_ns = p->sm.since_ns();
  v.reason = p->sm.reason();
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

std::optional<PathStatus> PathMonitor::state(uint16_t path) const {
  const Path* p = find(path);
  if (p == nullptr) return std::nullopt;
  return p->sm.state();
}

std::vector<uint16_t> PathMonitor::paths() const {
  std::vector<uint16_t> ids;
  ids.reserve(paths_.size());
  for (const Path& p : paths_) ids.push_back(p.spec.id);
  return ids;
}

size_t PathMonitor::memory_bytes() const noexcept {
  size_t n = sizeof(*this) + slot_of_.capacity() * sizeof(int32_t) + scratch_.capacity() * sizeof(uint32_t) +
             paths_.capacity() * sizeof(Path);
  for (const Path& p : paths_) n += p.est.memory_bytes() - sizeof(PathEstimator) + p.spec.name.capacity();
  return n;
}

}  // namespace sdwan::cp
