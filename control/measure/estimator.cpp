#include "control/measure/estimator.hpp"

#include <algorithm>
#include <limits>

namespace sdwan::cp {
namespace {

constexpr double kNsPerMs = 1e6;

double clamp_pct(double ratio_lost) { return std::clamp(ratio_lost, 0.0, 1.0) * 100.0; }

// Nearest rank: the ceil(pct/100 * n)-th smallest, at least the first; 0-based.
uint64_t rank_index(uint64_t n, uint32_t pct) {
  const uint64_t rank = std::max<uint64_t>(1, (uint64_t{pct} * n + 99) / 100);
  return std::min(rank, n) - 1;
}

}  // namespace

uint32_t percentile_nearest_rank(std::span<uint32_t> v, uint32_t pct) noexcept {
  const auto k = v.begin() + static_cast<std::ptrdiff_t>(rank_index(v.size(), pct));
  std::nth_element(v.begin(), k, v.end());
  return *k;
}

void EspGapAccumulator::update(uint32_t spi, uint64_t rx, uint64_t top) noexcept {
  if (!seen_) {
    // Whatever the SA counted before we looked is not ours to judge: baseline only.
    seen_ = true;
    slots_[0] = Slot{spi, true, rx, top};
    cur_ = 0;
    return;
  }
  Slot* s = nullptr;
  for (uint8_t i = 0; i < 2; ++i)
    if (slots_[i].used && slots_[i].spi == spi) s = &slots_[i], cur_ = i;
  if (s == nullptr) {
    // A new SA: its counters start from 0, so everything it reports is new. It takes the slot
    // of the SA before the current one; the current one stays for late replies.
    cur_ ^= 1;
    s = &slots_[cur_];
    *s = Slot{spi, true, 0, 0};
  }
  if (rx < s->rx || top < s->top) s->rx = s->top = 0;  // the SA was installed again: restart
  acc_rx_ += rx - s->rx;
  acc_top_ += top - s->top;
  s->rx = rx;
  s->top = top;
}

PathEstimator::PathEstimator(const EstimatorConfig& cfg) : cfg_(cfg) {
  const uint64_t interval = std::max<uint64_t>(cfg.interval_ns, 1);
  const uint64_t want = cfg.window_ns / interval * 9 / 8 + 8;
  ring_.resize(std::min<uint64_t>(want, kMaxWindowSamples));
}

void PathEstimator::clear_window() noexcept { head_ = count_ = late_ = 0; }

void PathEstimator::pop_oldest() noexcept {
  if (at(0).refl_rx & kLate) --late_;
  head_ = (head_ + 1) % static_cast<uint32_t>(ring_.size());
  --count_;
}

void PathEstimator::expire(uint64_t now_ns) noexcept {
  while (count_ > 0 && now_ns > at(0).at_ns && now_ns - at(0).at_ns > cfg_.window_ns) pop_oldest();
}

void PathEstimator::snapshot(uint64_t now_ns) noexcept {
  const uint64_t step = std::max<uint64_t>(cfg_.window_ns / 8, 1);
  if (snap_count_ > 0) {
    const DataSnap& newest = snaps_[(snap_head_ + snap_count_ - 1) % kSnaps];
    if (now_ns - newest.at_ns < step) return;
  }
  if (snap_count_ == kSnaps) {
    snap_head_ = (snap_head_ + 1) % kSnaps;
    --snap_count_;
  }
  snaps_[(snap_head_ + snap_count_) % kSnaps] = DataSnap{now_ns, fwd_.rx(), fwd_.top(), rev_.rx(), rev_.top()};
  ++snap_count_;
}

bool PathEstimator::on_sample(const ProbeSample& s, uint64_t now_ns) noexcept {
  // Each turnaround is a difference on one clock; unsigned wrap then signed keeps it right
  // whatever the clock's origin.
  const auto ours = static_cast<int64_t>(s.t4_ns - s.t1_ns);
  const auto theirs = static_cast<int64_t>(s.t3_ns - s.t2_ns);
  if (ours < 0) return false;  // not a reply to a probe of ours as sent: garbage, not a measurement
  const int64_t rtt = std::max<int64_t>(ours - std::max<int64_t>(theirs, 0), 0);
  ++received_;

  const auto cap = static_cast<uint32_t>(ring_.size());
  if (have_seq_) {
    const auto ahead = static_cast<int32_t>(s.seq - max_seq_);
    // R counts from the reflector's start: going back on a newer probe means it restarted, and
    // a reply far behind the newest means our sequence restarted. Either way the old samples
    // cannot be compared with the new ones.
    if ((ahead > 0 && s.refl_probes_rx < max_seq_refl_rx_) || ahead < -2 * static_cast<int64_t>(cap)) {
      clear_window();
      have_seq_ = false;
    }
  }
  const bool late = have_seq_ && static_cast<int32_t>(s.seq - max_seq_) < 0;
  if (!have_seq_ || static_cast<int32_t>(s.seq - max_seq_) > 0) {
    have_seq_ = true;
    max_seq_ = s.seq;
    max_seq_refl_rx_ = s.refl_probes_rx;
  }

  expire(now_ns);
  if (count_ == cap) pop_oldest();
  ring_[(head_ + count_) % cap] =
      Entry{now_ns, (s.refl_probes_rx & ~kLate) | (late ? kLate : 0), s.seq,
            static_cast<uint32_t>(std::min<int64_t>(rtt, std::numeric_limits<uint32_t>::max()))};
  ++count_;
  late_ += late;

  const uint64_t fwd = s.t2_ns - s.t1_ns, rev = s.t4_ns - s.t3_ns;
  if (!have_rtt_) {
    have_rtt_ = true;
    srtt_ = static_cast<double>(rtt);
  } else {
    srtt_ += (static_cast<double>(rtt) - srtt_) * kSrttGain;
    auto step = [](double& j, int64_t d) { j += (static_cast<double>(d < 0 ? -d : d) - j) / 16; };
    step(jitter_rtt_, rtt - last_rtt_);
    step(jitter_fwd_, static_cast<int64_t>(fwd - last_fwd_));
    step(jitter_rev_, static_cast<int64_t>(rev - last_rev_));
  }
  last_rtt_ = rtt;
  last_fwd_ = fwd;
  last_rev_ = rev;

  fwd_.update(s.refl_spi, s.refl_data_rx, s.refl_data_top);
  snapshot(now_ns);
  return true;
}

void PathEstimator::on_rev_sa(const SaCounters& sa, uint64_t now_ns) noexcept {
  rev_.update(sa.spi, sa.pkts, sa.top);
  snapshot(now_ns);
}

void PathEstimator::probe_loss(std::optional<double>& fwd, std::optional<double>& rev) const noexcept {
  if (count_ < 2) return;
  // The replies with the lowest and highest seq: the oldest and the newest, unless some came
  // out of order, which is rare enough to pay for a scan.
  uint32_t lo = 0, hi = count_ - 1;
  if (late_ > 0) {
    for (uint32_t i = 0; i < count_; ++i) {
      if (static_cast<int32_t>(at(i).seq - at(lo).seq) < 0) lo = i;
      if (static_cast<int32_t>(at(i).seq - at(hi).seq) > 0) hi = i;
    }
  }
  const Entry& a = at(lo);
  const Entry& b = at(hi);
  const uint64_t ra = a.refl_rx & ~kLate, rb = b.refl_rx & ~kLate;
  const double sent = static_cast<uint32_t>(b.seq - a.seq);
  const double reached = rb > ra ? static_cast<double>(rb - ra) : 0.0;
  const double back = count_ - 1;
  if (sent > 0) fwd = clamp_pct(1.0 - reached / sent);
  if (reached > 0) rev = clamp_pct(1.0 - back / reached);
}

EstimatorBrief PathEstimator::brief(uint64_t now_ns) noexcept {
  EstimatorBrief b;
  expire(now_ns);
  if (count_ == 0) return b;
  b.rtt_ms = srtt_ / kNsPerMs;
  if (received_ >= 2) b.jitter_ms = jitter_rtt_ / kNsPerMs;
  probe_loss(b.loss_fwd_pct, b.loss_rev_pct);
  return b;
}

EstimatorStats PathEstimator::stats(uint64_t now_ns, std::span<uint32_t> scratch) {
  EstimatorStats st;
  expire(now_ns);
  st.window_samples = count_;
  if (count_ > 0) {
    st.rtt_ms = srtt_ / kNsPerMs;
    if (received_ >= 2) {
      st.jitter_ms = jitter_rtt_ / kNsPerMs;
      st.jitter_fwd_ms = jitter_fwd_ / kNsPerMs;
      st.jitter_rev_ms = jitter_rev_ / kNsPerMs;
    }
    const uint32_t n = std::min<uint32_t>(count_, static_cast<uint32_t>(scratch.size()));
    for (uint32_t i = 0; i < n; ++i) scratch[i] = at(i).rtt_ns;
    std::span<uint32_t> v = scratch.first(n);
    st.rtt_min_ms = *std::min_element(v.begin(), v.end()) / kNsPerMs;
    // Ascending ranks: nth_element leaves everything at or above its k on the right, so each
    // further rank only needs to look there.
    uint32_t pv[3];
    auto from = v.begin();
    for (int i = 0; i < 3; ++i) {
      static constexpr uint32_t kPct[3] = {50, 95, 99};
      const auto k = v.begin() + static_cast<std::ptrdiff_t>(rank_index(n, kPct[i]));
      std::nth_element(from, k, v.end());
      pv[i] = *k;
      from = k;
    }
    const uint32_t p50 = pv[0], p95 = pv[1], p99 = pv[2];
    st.rtt_p50_ms = p50 / kNsPerMs;
    st.rtt_p95_ms = p95 / kNsPerMs;
    st.rtt_p99_ms = p99 / kNsPerMs;

    probe_loss(st.loss_fwd_pct, st.loss_rev_pct);
  }

  if (snap_count_ > 0) {
    // Baseline: the newest snapshot at least a window old, else the oldest one there is.
    const DataSnap* base = &snaps_[snap_head_];
    for (uint32_t i = 0; i < snap_count_; ++i) {
      const DataSnap& d = snaps_[(snap_head_ + i) % kSnaps];
      if (now_ns >= d.at_ns && now_ns - d.at_ns >= cfg_.window_ns) base = &d;
    }
    if (const uint64_t dtop = fwd_.top() - base->fwd_top; dtop > 0)
      st.loss_data_fwd_pct = clamp_pct(1.0 - static_cast<double>(fwd_.rx() - base->fwd_rx) / dtop);
    if (const uint64_t dtop = rev_.top() - base->rev_top; dtop > 0)
      st.loss_data_rev_pct = clamp_pct(1.0 - static_cast<double>(rev_.rx() - base->rev_rx) / dtop);
  }
  return st;
}

}  // namespace sdwan::cp
