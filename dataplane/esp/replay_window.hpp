// Inbound anti-replay window of one SA: RFC 4303 section 3.4.3, with extended sequence numbers
// inferred as in Appendix A2.2. The bitmap is a ring of 64-bit words indexed by the sequence
// number itself (RFC 6479 style), so moving the window clears the words it passes over and
// never shifts the bitmap. The window is exact: a sequence number s is inside it when
// top - s < size, and a bit's meaning changes only when the top passes it.
//
// Two phases, so a forged packet never changes state: check() before decryption judges the
// 32 bits from the wire and yields the 64-bit number the ICV covers; accept() after the ICV
// verified records it. One writer (the worker that owns the inbound SA).
#pragma once

#include <cstdint>
#include <memory>

namespace sdwan::dp {

class ReplayWindow {
 public:
  /// Smallest, default and largest window in packets; sizes are powers of two.
  static constexpr uint32_t kMinSize = 1024;
  static constexpr uint32_t kDefaultSize = 4096;
  static constexpr uint32_t kMaxSize = 1u << 20;
  /// Windows up to this size keep their bitmap inside the object; larger ones on the heap.
  static constexpr uint32_t kInlineSize = 4096;

  /// Empty window (top() == 0). size is rounded up to a power of two and clamped to
  /// [kMinSize, kMaxSize] (control rejects other values in the config before this). esn:
  /// 64-bit sequence numbers of which the wire carries the low 32. Allocates only above
  /// kInlineSize; if that allocation fails, ok() is false and every check() says kTooOld.
  explicit ReplayWindow(uint32_t size = kDefaultSize, bool esn = true);
  ~ReplayWindow() = default;
  /// Copies the whole state (HA mirrors windows); the copy allocates like the constructor.
  ReplayWindow(const ReplayWindow& o);
  ReplayWindow& operator=(const ReplayWindow& o);
  ReplayWindow(ReplayWindow&&) noexcept = default;
  ReplayWindow& operator=(ReplayWindow&&) noexcept = default;

  /// What check() says about a sequence number.
  enum class Verdict : uint8_t {
    kOk,      ///< new: decrypt and verify it, then accept()
    kReplay,  ///< inside the window and already accepted
    kTooOld,  ///< below the window (or 0, which no sender uses, or before epoch 0 with ESN)
  };

  /// Before decryption: judges seq_lo from the wire and writes the full sequence number into
  /// *seq64 (with ESN the high half inferred per RFC 4303 A2.2, needed for the ICV's AAD;
  /// without, seq_lo itself). Never changes state. With ESN a packet older than the window
  /// is taken for one of the next epoch (kOk) and then fails its ICV, as A2.2 intends.
  Verdict check(uint32_t seq_lo, uint64_t* seq64) const noexcept;

  /// After the ICV verified: records seq64, moving the window if it is ahead. False (nothing
  /// changed) if seq64 is now a replay or below the window: another packet of the same burst
  /// was accepted since check() (a duplicate, or one far enough ahead). Count it as a replay.
  bool accept(uint64_t seq64) noexcept;

  /// Highest accepted sequence number, 0 before the first.
  uint64_t top() const noexcept { return top_; }
  /// Window size in packets (a power of two).
  uint32_t size() const noexcept { return size_; }
  /// Whether 64-bit sequence numbers are in use.
  bool esn() const noexcept { return esn_; }
  /// False only when a window above kInlineSize could not allocate its bitmap.
  bool ok() const noexcept { return size_ <= kInlineSize || heap_ != nullptr; }

 private:
  static constexpr uint32_t kInlineWords = kInlineSize / 64;

  const uint64_t* words() const noexcept { return size_ <= kInlineSize ? inline_ : heap_.get(); }
  uint64_t* words() noexcept { return size_ <= kInlineSize ? inline_ : heap_.get(); }
  /// Bit of s in the ring, for s inside the window.
  bool seen(const uint64_t* w, uint64_t s) const noexcept {
    return (w[(s >> 6) & word_mask_] >> (s & 63)) & 1;
  }
  /// Clears the bits of (top_, s] before the top moves to s (s - top_ < size_).
  void advance(uint64_t* w, uint64_t s) noexcept;

  uint64_t top_ = 0;            ///< highest accepted; bits of (top_ - size_, top_] are valid
  uint32_t size_;               ///< window in packets, a power of two
  uint32_t word_mask_;          ///< size_ / 64 - 1
  bool esn_;                    ///< 64-bit sequence numbers
  std::unique_ptr<uint64_t[]> heap_;  ///< bitmap when size_ > kInlineSize
  alignas(64) uint64_t inline_[kInlineWords] = {};  ///< bitmap when size_ <= kInlineSize
};
// A worker-side SA runtime holds one: 512 B of bitmap and one line of fields.
static_assert(sizeof(ReplayWindow) <= 512 + 64);

inline ReplayWindow::Verdict ReplayWindow::check(uint32_t seq_lo, uint64_t* seq64) const noexcept {
  uint64_t s = seq_lo;
  if (esn_) {
    // A2.2: the window is [top - size + 1, top]; a low half at or above the window's bottom
    // (taken mod 2^32) belongs to the bottom's epoch, one below it to the next epoch.
    const uint32_t tl = static_cast<uint32_t>(top_);
    uint32_t th = static_cast<uint32_t>(top_ >> 32);
    const uint32_t bottom_lo = tl - size_ + 1;  // mod 2^32
    if (tl >= size_ - 1) {
      if (seq_lo < bottom_lo) ++th;
    } else if (seq_lo >= bottom_lo) {
      // The window straddles an epoch boundary and seq_lo is in its lower epoch.
      if (th == 0) {
        *seq64 = seq_lo;
        return Verdict::kTooOld;
      }
      --th;
    }
    s = static_cast<uint64_t>(th) << 32 | seq_lo;
  }
  *seq64 = s;
  if (s == 0) [[unlikely]] return Verdict::kTooOld;
  const uint64_t* w = words();
  if (w == nullptr) [[unlikely]] return Verdict::kTooOld;
  if (s > top_) return Verdict::kOk;
  if (top_ - s >= size_) return Verdict::kTooOld;
  return seen(w, s) ? Verdict::kReplay : Verdict::kOk;
}

inline bool ReplayWindow::accept(uint64_t seq64) noexcept {
  uint64_t* w = words();
  if (seq64 == 0 || w == nullptr) [[unlikely]] return false;
  if (seq64 == top_ + 1) [[likely]] {
    // In order, the usual case: the one bit that changes epoch is this packet's own, so
    // advance()'s clear and the set below come down to the set.
    w[(seq64 >> 6) & word_mask_] |= uint64_t{1} << (seq64 & 63);
    top_ = seq64;
    return true;
  }
  if (seq64 > top_) {
    advance(w, seq64);
    top_ = seq64;
  } else if (top_ - seq64 >= size_ || seen(w, seq64)) {
    return false;
  }
  w[(seq64 >> 6) & word_mask_] |= uint64_t{1} << (seq64 & 63);
  return true;
}

inline void ReplayWindow::advance(uint64_t* w, uint64_t s) noexcept {
  const uint64_t first = top_ + 1;
  if (s - top_ >= size_) [[unlikely]] {
    for (uint32_t i = 0; i <= word_mask_; ++i) w[i] = 0;
    return;
  }
  // Bits [first, s] change epoch of the ring: clear them word by word. When they span
  // size_/64 + 1 words the first and last are the same ring word, and clearing its top part
  // then its bottom part leaves exactly the middle, which still holds in-window bits.
  const uint64_t fw = first >> 6;
  const uint64_t lw = s >> 6;
  const uint64_t below_first = (uint64_t{1} << (first & 63)) - 1;
  const uint64_t upto_last = ~uint64_t{0} >> (63 - (s & 63));
  if (fw == lw) {
    w[fw & word_mask_] &= below_first | ~upto_last;
    return;
  }
  w[fw & word_mask_] &= below_first;
  for (uint64_t i = fw + 1; i < lw; ++i) w[i & word_mask_] = 0;
  w[lw & word_mask_] &= ~upto_last;
}

}  // namespace sdwan::dp
