#include "delay_line.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace sdwan::wanem {

namespace {

constexpr size_t kAlign = 64;

}  // namespace

// --- Lateness ----------------------------------------------------------------------------

size_t Lateness::bucket(uint64_t us) noexcept {
  if (us < kExact) return static_cast<size_t>(us);
  // us has bit_width >= 11; keep its top 10 bits: 512 sub-buckets per power of two.
  unsigned shift = static_cast<unsigned>(std::bit_width(us)) - 10;
  if (shift > kOctaves) return kBuckets - 1;
  return kExact + (shift - 1) * kSub + static_cast<size_t>((us >> shift) - kSub);
}

uint64_t Lateness::bucket_top_us(size_t idx) noexcept {
  if (idx < kExact) return idx;
  size_t shift = (idx - kExact) / kSub + 1;
  uint64_t mantissa = (idx - kExact) % kSub + kSub;
  return ((mantissa + 1) << shift) - 1;
}

void Lateness::add(int64_t late_ns) noexcept {
  uint64_t ns = late_ns > 0 ? static_cast<uint64_t>(late_ns) : 0;
  ++hist_[bucket(ns / 1000)];
  ++count_;
  sum_ns_ += ns;
  max_ns_ = std::max(max_ns_, ns);
}

void Lateness::reset() noexcept {
  std::fill(hist_.begin(), hist_.end(), 0);
  count_ = sum_ns_ = max_ns_ = 0;
}

double Lateness::mean_us() const noexcept {
  return count_ ? static_cast<double>(sum_ns_) / static_cast<double>(count_) / 1e3 : 0.0;
}

double Lateness::quantile_us(double q) const noexcept {
  if (count_ == 0) return 0.0;
  auto need = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  need = std::clamp<uint64_t>(need, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += hist_[i];
    if (seen >= need) {
      return std::min(static_cast<double>(bucket_top_us(i)), max_us());
    }
  }
  return max_us();
}

// --- DelayLine ---------------------------------------------------------------------------

DelayLine::DelayLine(size_t arena_bytes, uint32_t max_frames)
    : arena_bytes_(arena_bytes),
      // Default-initialised: the pages are touched only when frames first land on them.
      arena_(new uint8_t[arena_bytes]),
      max_frames_(max_frames),
      slots_(max_frames),
      heap_(max_frames) {}

void DelayLine::reset_counters() noexcept {
  counters_ = Counters{};
  lateness_.reset();
}

void DelayLine::count_oversize(size_t len) noexcept {
  ++counters_.rx;
  counters_.rx_bytes += len;
  ++counters_.dropped_oversize;
}

bool DelayLine::heap_before(uint32_t a, uint32_t b) const noexcept {
  const Slot& x = slots_[a];
  const Slot& y = slots_[b];
  return x.release_ns != y.release_ns ? x.release_ns < y.release_ns : x.seq < y.seq;
}

// Arena space is taken in arrival order, like a ring: the live region runs from the oldest
// live slot's offset (rd) to wr_. Unwrapped, rd < wr_; wrapped, wr_ < rd, and a frame placed
// while wrapped must end strictly before rd so that wr_ == rd never means "full" and "empty"
// at once (an empty line restarts at 0).
std::optional<uint32_t> DelayLine::alloc(uint32_t len) noexcept {
  size_t need = (static_cast<size_t>(len) + kAlign - 1) / kAlign * kAlign;
  uint64_t live = next_seq_ - head_seq_;
  if (live >= max_frames_ || need > arena_bytes_) return std::nullopt;
  size_t off = 0;
  if (live == 0) {
    off = 0;
  } else {
    size_t rd = slots_[head_seq_ % max_frames_].off;
    if (wr_ > rd) {
      if (wr_ + need <= arena_bytes_) {
        off = wr_;
      } else if (need < rd) {
        off = 0;
      } else {
        return std::nullopt;
      }
    } else if (wr_ + need < rd) {
      off = wr_;
    } else {
      return std::nullopt;
    }
  }
  wr_ = off + need;
  uint64_t seq = next_seq_++;
  auto idx = static_cast<uint32_t>(seq % max_frames_);
  Slot& s = slots_[idx];
  s.seq = seq;
  s.off = static_cast<uint32_t>(off);
  s.len = len;
  s.done = false;
  return idx;
}

void DelayLine::release_slot(uint32_t idx) noexcept {
  Slot& s = slots_[idx];
  s.done = true;
  --queued_;
  queued_bytes_ -= s.len;
  while (head_seq_ != next_seq_ && slots_[head_seq_ % max_frames_].done) ++head_seq_;
}

DelayLine::Verdict DelayLine::admit(std::span<const uint8_t> frame, const VnetHdr& vnet,
                                    int64_t arrival_ns, Rng& rng) noexcept {
  ++counters_.rx;
  counters_.rx_bytes += frame.size();
  if (imp_.blackout) {
    ++counters_.dropped_blackout;
    return Verdict::dropped_blackout;
  }
  if (imp_.loss > 0.0 && rng.uniform01() < imp_.loss) {
    ++counters_.dropped_loss;
    return Verdict::dropped_loss;
  }
  int64_t release = arrival_ns + imp_.delay_ns;
  if (imp_.jitter_ns > 0) {
    // Uniform in [-jitter, +jitter], as netem without a distribution table; a sample that
    // would send the frame before it arrived is clamped to "now".
    double u = 2.0 * rng.uniform01() - 1.0;
    release += std::llround(u * static_cast<double>(imp_.jitter_ns));
    release = std::max(release, arrival_ns);
  }
  uint64_t carry = carry_;
  if (imp_.rate_bps > 0) {
    // The serialiser sends one frame after the other (FIFO): a frame starts when its delay
    // has passed and the previous frame has left, and leaves len*8/rate later.
    int64_t start = std::max(release, last_release_ns_);
    if (start - release > imp_.backlog_ns && queued_ > 0) {
      ++counters_.dropped_queue;
      return Verdict::dropped_queue;
    }
    // len*8/rate seconds, exactly: the remainder of the division carries to the next frame.
    // A carry left by a faster rate is worth less than 1 ns at the old rate: drop it rather
    // than let it count as whole nanoseconds at the new one.
    uint64_t owed = carry_ < imp_.rate_bps ? carry_ : 0;
    uint64_t bit_ns = static_cast<uint64_t>(frame.size()) * 8'000'000'000ull + owed;
    release = start + static_cast<int64_t>(bit_ns / imp_.rate_bps);
    carry = bit_ns % imp_.rate_bps;
  }
  auto idx = alloc(static_cast<uint32_t>(frame.size()));
  if (!idx) {
    ++counters_.dropped_queue;
    return Verdict::dropped_queue;
  }
  carry_ = carry;
  Slot& s = slots_[*idx];
  std::memcpy(arena_.get() + s.off, frame.data(), frame.size());
  s.vnet = vnet;
  s.release_ns = release;
  last_release_ns_ = std::max(last_release_ns_, release);
  ++queued_;
  queued_bytes_ += frame.size();
  heap_[heap_len_++] = *idx;
  std::push_heap(heap_.begin(), heap_.begin() + static_cast<ptrdiff_t>(heap_len_),
                 [this](uint32_t a, uint32_t b) { return heap_before(b, a); });
  return Verdict::queued;
}

std::optional<int64_t> DelayLine::next_release() const noexcept {
  if (heap_len_ == 0) return std::nullopt;
  return slots_[heap_[0]].release_ns;
}

std::span<const TxFrame> DelayLine::fill_tx(int64_t now_ns) noexcept {
  if (tx_begin_ > 0) {
    std::copy(tx_.begin() + static_cast<ptrdiff_t>(tx_begin_),
              tx_.begin() + static_cast<ptrdiff_t>(tx_end_), tx_.begin());
    std::copy(tx_slot_.begin() + static_cast<ptrdiff_t>(tx_begin_),
              tx_slot_.begin() + static_cast<ptrdiff_t>(tx_end_), tx_slot_.begin());
    tx_end_ -= tx_begin_;
    tx_begin_ = 0;
  }
  auto later = [this](uint32_t a, uint32_t b) { return heap_before(b, a); };
  while (heap_len_ > 0 && tx_end_ < kTxBatch && slots_[heap_[0]].release_ns <= now_ns) {
    std::pop_heap(heap_.begin(), heap_.begin() + static_cast<ptrdiff_t>(heap_len_), later);
    uint32_t idx = heap_[--heap_len_];
    if (imp_.blackout) {
      ++counters_.dropped_blackout;
      release_slot(idx);
      continue;
    }
    const Slot& s = slots_[idx];
    tx_[tx_end_] = TxFrame{arena_.get() + s.off, s.len, s.vnet, s.release_ns};
    tx_slot_[tx_end_] = idx;
    ++tx_end_;
  }
  return {tx_.data() + tx_begin_, tx_end_ - tx_begin_};
}

void DelayLine::tx_done(size_t n, bool sent, int64_t send_ns) noexcept {
  n = std::min(n, tx_end_ - tx_begin_);
  for (size_t i = tx_begin_; i < tx_begin_ + n; ++i) {
    if (sent) {
      ++counters_.tx;
      counters_.tx_bytes += tx_[i].len;
      lateness_.add(send_ns - tx_[i].release_ns);
    } else {
      ++counters_.dropped_tx;
    }
    release_slot(tx_slot_[i]);
  }
  tx_begin_ += n;
}

}  // namespace sdwan::wanem
