// One direction of the WAN emulator: admission (blackout, loss, queue limits), scheduling
// (delay, jitter, rate) and the frames waiting for their release time. Pure: time and
// randomness come from the caller, so tests can drive it frame by frame.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "impair.hpp"

namespace sdwan::wanem {

/// Most frames one direction holds at once (queued, or released but not yet sent).
inline constexpr uint32_t kDefaultMaxFrames = 20'000;
/// Most bytes of frames one direction holds at once.
inline constexpr size_t kDefaultArenaBytes = 32u << 20;
/// Frames handed to one sendmmsg.
inline constexpr size_t kTxBatch = 64;

/// The offload metadata the kernel passes with each frame on a PACKET_VNET_HDR socket (the
/// layout of struct virtio_net_hdr). Forwarded unchanged, so partial checksums and GSO
/// super-frames leave as they came in.
struct VnetHdr {
  uint8_t flags = 0;        ///< VIRTIO_NET_HDR_F_*
  uint8_t gso_type = 0;     ///< VIRTIO_NET_HDR_GSO_*
  uint16_t hdr_len = 0;     ///< length of the headers before the GSO payload
  uint16_t gso_size = 0;    ///< segment size of a GSO super-frame
  uint16_t csum_start = 0;  ///< where a partial checksum's sum starts
  uint16_t csum_offset = 0; ///< where, after csum_start, the checksum goes
};
static_assert(sizeof(VnetHdr) == 10, "VnetHdr must match struct virtio_net_hdr");

/// Per-direction counters since start or the last reset_counters(). Single writer (the loop).
struct Counters {
  uint64_t rx = 0;                ///< frames received on the direction's ingress port
  uint64_t rx_bytes = 0;          ///< their bytes (Ethernet header included, no FCS)
  uint64_t tx = 0;                ///< frames sent on the egress port
  uint64_t tx_bytes = 0;          ///< their bytes
  uint64_t dropped_loss = 0;      ///< dropped by the loss setting
  uint64_t dropped_blackout = 0;  ///< dropped by a blackout (on arrival or while queued)
  uint64_t dropped_queue = 0;     ///< no room: frame or byte limit, or rate backlog exceeded
  uint64_t dropped_oversize = 0;  ///< larger than the receive buffer (truncated by the kernel)
  uint64_t dropped_tx = 0;        ///< the egress port refused it (link down, qdisc full, MTU)
};

/// How late frames left relative to their scheduled release time: a log-linear histogram in
/// microseconds (exact below 1024 us, 0.2 % wide buckets above). Single writer.
class Lateness {
 public:
  /// Records one frame that left late_ns after its release time (negative counts as 0).
  void add(int64_t late_ns) noexcept;
  /// Forgets every recorded frame.
  void reset() noexcept;
  /// Frames recorded.
  uint64_t count() const noexcept { return count_; }
  /// Mean lateness in us (0 without frames).
  double mean_us() const noexcept;
  /// Largest lateness in us.
  double max_us() const noexcept { return static_cast<double>(max_ns_) / 1e3; }
  /// The q-quantile (0 < q <= 1) in us: the top of the bucket that holds it, at most max_us().
  double quantile_us(double q) const noexcept;

 private:
  static constexpr size_t kExact = 1024;
  static constexpr size_t kSub = 512;
  static constexpr size_t kOctaves = 31;
  static constexpr size_t kBuckets = kExact + kOctaves * kSub;
  static size_t bucket(uint64_t us) noexcept;
  static uint64_t bucket_top_us(size_t idx) noexcept;

  std::vector<uint64_t> hist_ = std::vector<uint64_t>(kBuckets, 0);
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
  uint64_t max_ns_ = 0;
};

/// The emulator's randomness (loss draws and jitter samples), seeded for reproducible runs.
class Rng {
 public:
  /// A generator that repeats its sequence for the same seed.
  explicit Rng(uint64_t seed) : gen_(seed) {}
  /// Uniform in [0, 1).
  double uniform01() noexcept { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 gen_;
};

/// A frame released for sending: valid until the tx_done() that retires it.
struct TxFrame {
  const uint8_t* data = nullptr;  ///< the Ethernet frame, inside the DelayLine's arena
  uint32_t len = 0;               ///< its length
  VnetHdr vnet;                   ///< its offload metadata, as received
  int64_t release_ns = 0;         ///< when it was scheduled to leave (CLOCK_MONOTONIC)
};

/// One direction's delay line. Frames are copied into a preallocated arena on admit() and
/// leave in release-time order (FIFO while a rate is set). No allocation after construction.
/// Single-threaded: the event loop owns it.
class DelayLine {
 public:
  /// What admit() did with a frame.
  enum class Verdict : uint8_t { queued, dropped_blackout, dropped_loss, dropped_queue };

  /// Reserves room for max_frames frames and arena_bytes bytes of frames. Throws bad_alloc.
  explicit DelayLine(size_t arena_bytes = kDefaultArenaBytes,
                     uint32_t max_frames = kDefaultMaxFrames);
  DelayLine(const DelayLine&) = delete;
  DelayLine& operator=(const DelayLine&) = delete;

  /// The settings applied to frames admitted from now on (and blackout to queued ones).
  Impairment& impairment() noexcept { return imp_; }
  /// Read-only view of the settings.
  const Impairment& impairment() const noexcept { return imp_; }
  /// Counters since start or the last reset.
  const Counters& counters() const noexcept { return counters_; }
  /// Lateness since start or the last reset.
  const Lateness& lateness() const noexcept { return lateness_; }
  /// Zeroes the counters and the lateness record (queued frames stay).
  void reset_counters() noexcept;

  /// Counts a received frame that arrived arrival_ns (CLOCK_MONOTONIC) and decides its fate:
  /// blackout, loss draw, schedule (delay + jitter, then the rate's serialiser), room check,
  /// copy. Never fails otherwise.
  Verdict admit(std::span<const uint8_t> frame, const VnetHdr& vnet, int64_t arrival_ns,
                Rng& rng) noexcept;
  /// Counts a received frame that did not fit the receive buffer.
  void count_oversize(size_t len) noexcept;

  /// The earliest release time among frames not yet moved to the send batch.
  std::optional<int64_t> next_release() const noexcept;
  /// Moves frames due at now_ns into the send batch (dropping them during a blackout) and
  /// returns the whole batch, oldest first; at most kTxBatch frames.
  std::span<const TxFrame> fill_tx(int64_t now_ns) noexcept;
  /// Retires the first n frames of the send batch: sent at send_ns (counted as tx, lateness
  /// recorded) or, when sent is false, refused by the port (counted as dropped_tx).
  void tx_done(size_t n, bool sent, int64_t send_ns) noexcept;
  /// Frames waiting (scheduled or in the send batch).
  uint32_t queued() const noexcept { return queued_; }
  /// Their bytes.
  size_t queued_bytes() const noexcept { return queued_bytes_; }

 private:
  struct Slot {
    int64_t release_ns = 0;
    uint64_t seq = 0;
    uint32_t off = 0;
    uint32_t len = 0;
    VnetHdr vnet;
    bool done = false;
  };

  std::optional<uint32_t> alloc(uint32_t len) noexcept;
  void release_slot(uint32_t idx) noexcept;
  bool heap_before(uint32_t a, uint32_t b) const noexcept;

  Impairment imp_;
  Counters counters_;
  Lateness lateness_;

  size_t arena_bytes_;
  std::unique_ptr<uint8_t[]> arena_;
  size_t wr_ = 0;  // end of the newest frame in the arena

  // Slots in arrival order, a ring indexed by seq % max_frames_. A slot is reclaimed once it
  // and every older one are done, so arena space is freed in the order it was taken.
  uint32_t max_frames_;
  std::vector<Slot> slots_;
  uint64_t head_seq_ = 0;
  uint64_t next_seq_ = 0;

  // Min-heap on (release_ns, seq): reordering by release time, FIFO among equal times.
  std::vector<uint32_t> heap_;
  size_t heap_len_ = 0;

  std::array<TxFrame, kTxBatch> tx_{};
  std::array<uint32_t, kTxBatch> tx_slot_{};
  size_t tx_begin_ = 0;
  size_t tx_end_ = 0;

  int64_t last_release_ns_ = INT64_MIN;  // latest release time handed out so far
  uint64_t carry_ = 0;  // serialisation time below 1 ns, in ns*bit/s, owed by the next frame
  uint32_t queued_ = 0;
  size_t queued_bytes_ = 0;
};

}  // namespace sdwan::wanem
