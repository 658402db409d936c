// Path estimators (issue #5): RTT, jitter and loss per direction of one path, from the STAMP
// probes the workers send and reflect inside the path's ESP SA (dataplane/overlay/stamp.hpp),
// plus ESP-level loss per direction from sequence-number gaps. Pure logic with injected time:
// the caller passes now_ns (the control thread's monotonic clock); nothing here reads a clock,
// sleeps or allocates after construction. Control thread only.
//
// Units: every time is in ns (uint64_t); results are in ms and percent, as double.
// A value that cannot be computed (no sample in the window, no data sent) is std::nullopt.
//
// Window. Every statistic but the EWMA and the jitter describes a sliding window: the replies
// that arrived (by now_ns at on_sample) in the last window_ns (default 10 s). Its samples live
// in a ring preallocated at construction with room for window / interval * 9/8 + 8 entries
// (120 at 100 ms, 1,133 at 10 ms; capped at kMaxWindowSamples); if replies ever come faster
// than that, the window is the last `capacity` replies instead. A ring entry is 24 bytes, so
// 4,000 paths at 100 ms hold about 12 MB (memory_bytes() tells; bench_measure prints it).
//
// RTT = (t4 - t1) - (t3 - t2): our turnaround minus the reflector's, each difference taken on
// one clock, so the two clocks never need to agree. A negative value (clock step) counts as 0.
//  - rtt (EWMA): srtt += (rtt - srtt) / 4, the first sample sets it. RFC 6298's SRTT uses 1/8;
//    path choice must follow a brownout faster than a retransmit timer: with 1/4 a 30 ms step
//    is within 3 ms after 8 replies (0.8 s at 100 ms), with 1/8 after 18 (1.8 s).
//  - min, p50, p95, p99 over the window: nearest rank, the ceil(p/100 * n)-th smallest of the n
//    samples (p0 = min, p100 = max), computed on demand with nth_element on a copy.
//
// Jitter. RFC 3550 6.4.1 interarrival jitter, the figure voice engineers already read: for
// consecutive replies i-1, i (in arrival order), D = transit_i - transit_{i-1} and
// J += (|D| - J) / 16. Three transits, each needing no clock agreement since only differences
// of the same clock's values enter D:
//  - jitter (round trip): transit = RTT;
//  - jitter_fwd: transit = t2 - t1 (the offset between the clocks cancels in D);
//  - jitter_rev: transit = t4 - t3.
// A lost probe in between does not matter (D joins the two replies that did come back). Like
// the EWMA it is smoothed over about 16 samples rather than windowed.
//
// Probe loss per direction. Each reply for our probe `seq` carries R = refl_probes_rx, the
// number of our probes the reflector had received when it reflected that one (itself
// included). Take, among the window's n replies, a = the one with the lowest seq and b = the
// one with the highest. Between them:
//    we sent                      S  = seq_b - seq_a          probes (those numbered a+1..b),
//    the reflector received       F  = R_b - R_a              of them, and reflected each at once,
//    we received the reflections  B  = n - 1                  (the replies numbered a+1..b).
//    loss_fwd = 1 - F / S        loss_rev = 1 - B / F
// With drop probability p forward and q reverse, F = (1-p) S and B = (1-q) F, so each
// direction comes out alone: 5 % forward gives 5 % and 0 %, and (1 - loss_fwd)(1 - loss_rev)
// is the round-trip delivery ratio. Only probes that have come back bound the span, so a
// probe still in flight is never counted as lost (probes lost after the last reply are the
// path state machine's business: "missed N probes"). Needs n >= 2 and F > 0 (else nullopt
// for the direction that cannot be computed); results are clamped to 0..100 %. A reply whose
// R went backwards (the reflector restarted) or whose seq is far below the newest (we
// restarted) empties the window first.
//
// ESP (data) loss per direction, from sequence gaps: a receiver that verified `rx` packets on
// an SA whose highest sequence number seen is `top` lost top - rx of them (reordering aside).
//    forward: refl_data_rx / refl_data_top from each reply (the peer's view of our SA);
//    reverse: our own inbound SA's counters (on_rev_sa).
// Deltas are accumulated across SAs: a new SPI starts from 0, as its counters do, and the
// previous SPI is remembered, so a late reply on the old SA during a rekey is no restart. The
// window for these is coarse: a snapshot of the accumulated counts is kept every window / 8,
// and the baseline is the newest one at least window_ns old (else the oldest), so the span is
// window .. window * 9/8. loss_data = 1 - drx / dtop; nullopt when dtop == 0 (nothing sent).
// ESP counts include the probes, which ride the same SA.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace sdwan::cp {

/// The smoothed RTT's gain per reply (estimator.hpp "rtt (EWMA)").
inline constexpr double kSrttGain = 0.25;

/// One reflected probe that came back (from dp::ProbeReport). t1/t4 are our monotonic ns (TX,
/// RX), t2/t3 the reflector's (RX, TX); the refl_* counters are cumulative on the reflector.
struct ProbeSample {
  uint16_t path = 0;
  uint32_t seq = 0;              ///< our probe sequence number on the path, from 0
  uint64_t t1_ns = 0, t4_ns = 0;
  uint64_t t2_ns = 0, t3_ns = 0;
  uint64_t refl_probes_rx = 0;   ///< our probes the reflector had received on this path
  uint64_t refl_data_rx = 0;     ///< ESP packets it verified on our SA of this path
  uint64_t refl_data_top = 0;    ///< the highest ESP sequence number it accepted on it
  uint32_t refl_spi = 0;         ///< that SA (the two counts restart from 0 on a new SA)
};

/// Cumulative counters of one of our inbound SAs (the reverse data direction).
struct SaCounters {
  uint32_t spi = 0;
  uint64_t pkts = 0;  ///< packets verified
  uint64_t top = 0;   ///< highest sequence number accepted
};

/// What an estimator needs to know of its path.
struct EstimatorConfig {
  uint64_t interval_ns = 100'000'000;  ///< probe interval (sizes the ring)
  uint64_t window_ns = 10'000'000'000;  ///< sliding window of the windowed statistics
};

/// Every figure of one path; nullopt when it cannot be computed yet.
struct EstimatorStats {
  std::optional<double> rtt_ms, rtt_min_ms, rtt_p50_ms, rtt_p95_ms, rtt_p99_ms;
  std::optional<double> jitter_ms, jitter_fwd_ms, jitter_rev_ms;
  std::optional<double> loss_fwd_pct, loss_rev_pct;
  std::optional<double> loss_data_fwd_pct, loss_data_rev_pct;
  uint32_t window_samples = 0;  ///< replies in the window
};

/// What the snapshot needs once per probe interval: no percentiles, O(1) unless replies in
/// the window came out of order.
struct EstimatorBrief {
  std::optional<double> rtt_ms, jitter_ms, loss_fwd_pct, loss_rev_pct;
};

/// Sequence-gap loss of one direction, accumulated over the SAs that carried it.
class EspGapAccumulator {
 public:
  /// Takes an SA's cumulative counters. The first call only sets the baseline.
  void update(uint32_t spi, uint64_t rx, uint64_t top) noexcept;
  uint64_t rx() const noexcept { return acc_rx_; }    ///< packets received, summed over SAs
  uint64_t top() const noexcept { return acc_top_; }  ///< sequence numbers used, summed over SAs

 private:
  struct Slot {
    uint32_t spi = 0;
    bool used = false;
    uint64_t rx = 0, top = 0;
  };
  std::array<Slot, 2> slots_{};  // the current SA and the one before (late replies at a rekey)
  uint8_t cur_ = 0;
  bool seen_ = false;
  uint64_t acc_rx_ = 0, acc_top_ = 0;
};

/// The estimators of one path. Control thread only; no allocation after construction.
class PathEstimator {
 public:
  static constexpr uint32_t kMaxWindowSamples = 8192;  ///< ring cap, whatever window / interval

  explicit PathEstimator(const EstimatorConfig& cfg);

  /// A reply arrived (now_ns: control's clock when it was taken off the ring). False, and
  /// nothing counted, if it cannot be a reply to our probe (t4 before t1).
  bool on_sample(const ProbeSample& s, uint64_t now_ns) noexcept;
  /// Our inbound SA's counters for the path (reverse ESP loss).
  void on_rev_sa(const SaCounters& sa, uint64_t now_ns) noexcept;
  /// Probes sent on the path so far (the workers' counter).
  void set_probes_sent(uint64_t n) noexcept { probes_sent_ = n; }

  /// Every figure at now_ns. scratch must hold capacity() values (percentiles sort a copy).
  EstimatorStats stats(uint64_t now_ns, std::span<uint32_t> scratch);
  /// rtt, jitter and probe loss at now_ns, the same values as stats gives.
  EstimatorBrief brief(uint64_t now_ns) noexcept;

  uint64_t probes_sent() const noexcept { return probes_sent_; }
  uint64_t probes_received() const noexcept { return received_; }
  /// RTT jitter in ns (RFC 3550), 0 before two replies.
  double jitter_ns() const noexcept { return jitter_rtt_; }
  uint32_t capacity() const noexcept { return static_cast<uint32_t>(ring_.size()); }
  size_t memory_bytes() const noexcept { return sizeof(*this) + ring_.capacity() * sizeof(Entry); }

 private:
  static constexpr uint64_t kLate = uint64_t{1} << 63;  // in Entry::refl_rx: arrived after a higher seq
  struct Entry {
    uint64_t at_ns;    // arrival (now_ns at on_sample)
    uint64_t refl_rx;  // R, and kLate
    uint32_t seq;
    uint32_t rtt_ns;   // saturates at 4.29 s
  };
  static_assert(sizeof(Entry) == 24);
  struct DataSnap {
    uint64_t at_ns = 0;
    uint64_t fwd_rx = 0, fwd_top = 0, rev_rx = 0, rev_top = 0;
  };
  static constexpr uint32_t kSnaps = 12;  // window / 8 apart: 9 needed, 3 spare

  void expire(uint64_t now_ns) noexcept;
  void pop_oldest() noexcept;
  void probe_loss(std::optional<double>& fwd, std::optional<double>& rev) const noexcept;
  void clear_window() noexcept;
  void snapshot(uint64_t now_ns) noexcept;
  const Entry& at(uint32_t i) const noexcept { return ring_[(head_ + i) % ring_.size()]; }

  EstimatorConfig cfg_;
  std::vector<Entry> ring_;  // the window: entries head_ .. head_ + count_ - 1, oldest first
  uint32_t head_ = 0, count_ = 0;
  uint32_t late_ = 0;        // entries in the window marked kLate: while 0, seq grows with arrival

  bool have_rtt_ = false;
  double srtt_ = 0, jitter_rtt_ = 0, jitter_fwd_ = 0, jitter_rev_ = 0;
  int64_t last_rtt_ = 0;
  uint64_t last_fwd_ = 0, last_rev_ = 0;  // previous one-way transits (two clocks: only D means anything)
  bool have_seq_ = false;
  uint32_t max_seq_ = 0;
  uint64_t max_seq_refl_rx_ = 0;

  EspGapAccumulator fwd_, rev_;
  std::array<DataSnap, kSnaps> snaps_{};
  uint32_t snap_head_ = 0, snap_count_ = 0;

  uint64_t probes_sent_ = 0, received_ = 0;
};

/// Nearest-rank percentile of v: the ceil(pct/100 * n)-th smallest (at least the 1st).
/// Reorders v; v must not be empty.
uint32_t percentile_nearest_rank(std::span<uint32_t> v, uint32_t pct) noexcept;

}  // namespace sdwan::cp
