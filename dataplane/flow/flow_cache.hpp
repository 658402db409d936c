// Per-worker flow cache: 5-tuple -> (class, path) and the flow's counters. One writer, no locks.
// A bucket is one cache line holding two 32-byte entries, each with its key, the worker's
// decision and small per-packet counters, so a lookup reads one line: at a million flows the
// throughput of random lines (each a TLB miss and a DRAM access on a VM) is what the cache
// costs, and the earlier layout (a signature line, then the entry's line) read two. The
// counters' 64-bit totals and each flow's first-seen time live in a cold array, touched when a
// flow is created and when its small counters fold into the totals (every 65,535 packets or
// ~4 GB). A key lives in its primary bucket, or in an alternative one when the primary was
// full; a short cuckoo search moves entries between their two buckets before anything is
// evicted, so the table fills past 90%. The primary counts its spilled keys, so a miss only
// reads the alternative when something could be there.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

namespace sdwan::dp {

/// IPv4 5-tuple in host order. 16 bytes; pad must be zero (keys compare as bytes).
struct FlowKey {
  uint32_t src, dst;      ///< addresses
  uint16_t sport, dport;  ///< ports (0 for protocols without)
  uint8_t proto;          ///< IP protocol
  uint8_t pad[3];         ///< zero
  /// Byte equality (pad included).
  bool operator==(const FlowKey& o) const noexcept { return std::memcmp(this, &o, sizeof *this) == 0; }
};
static_assert(sizeof(FlowKey) == 16);

/// One flow's hot half: what the worker decided for it and its counters since the last fold.
/// Half a cache line. The key's 13 bytes come first, in FlowKey's layout.
struct alignas(32) FlowEntry {
  uint32_t src, dst;      ///< the key (read it whole with key())
  uint16_t sport, dport;  ///< the key
  uint8_t proto;          ///< the key
  uint8_t cls;            ///< traffic class (caller's)
  uint8_t flags;          ///< caller's flags
  uint8_t meta;           ///< the cache's bookkeeping; do not change
  uint16_t path;          ///< path id chosen for the flow (caller's)
  uint16_t pkts;          ///< packets since the last fold (FlowCache::touch; totals: FlowCache::stats)
  uint32_t gen;           ///< snapshot generation the decision was made in (caller's)
  uint32_t last;          ///< tick of the last packet (FlowCache::touch; TSC: FlowCache::stats)
  uint32_t bytes;         ///< bytes since the last fold
  /// The flow's key.
  FlowKey key() const noexcept {
    FlowKey k{};
    std::memcpy(&k, this, 13);
    return k;
  }
};
static_assert(sizeof(FlowEntry) == 32);

/// A flow's totals, as FlowCache::stats adds them up.
struct FlowStats {
  uint64_t pkts = 0, bytes = 0;  ///< every packet and byte touch() counted
  uint64_t first_tsc = 0;        ///< TSC at insertion
  uint64_t last_tsc = 0;         ///< TSC of the last packet, to the cache's tick
};

/// The cache. Owned by one worker: every member except size()/capacity() is for that thread
/// only (control-side dumps through for_each are for tests and stopped workers).
class FlowCache {
 public:
  /// Allocates room for capacity flows (rounded up to a power of two, 4 to 2^28 slots) before
  /// the loop starts; it fills past 90%. Times are kept in ticks of 2^tick_shift TSC cycles
  /// (32 bits: at 16 and a few GHz, hours between two packets of a flow before an idle test
  /// could be wrong; the sweep removes idle flows long before). On allocation failure the
  /// cache is empty, ok() is false and insert fails.
  explicit FlowCache(uint32_t capacity, uint32_t tick_shift = 0);
  ~FlowCache();
  FlowCache(const FlowCache&) = delete;
  FlowCache& operator=(const FlowCache&) = delete;

  /// The hash every other call takes: CRC32-C of the key when built with SSE4.2 (the
  /// dataplane always is on x86), else a multiplicative mix. Any thread.
  static uint32_t hash(const FlowKey& k) noexcept {
    uint64_t w[2];
    std::memcpy(w, &k, sizeof w);
    return hash_words(w[0], w[1]);
  }
  /// hash() of the key whose two 8-byte halves are w0 and w1 (as FlowKey lays them out), for a
  /// caller that has them in registers: reading back a key just stored in narrower pieces is a
  /// store the CPU cannot forward.
  static uint32_t hash_words(uint64_t w0, uint64_t w1) noexcept {
#if defined(__SSE4_2__)
    return static_cast<uint32_t>(__builtin_ia32_crc32di(__builtin_ia32_crc32di(kHashSeed, w0), w1));
#else
    uint64_t h = (w0 ^ kHashSeed) * 0x9e3779b97f4a7c15ull;
    h = (h ^ w1 ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
    return static_cast<uint32_t>(h ^ (h >> 32));
#endif
  }
  /// The seed of hash().
  static constexpr uint32_t kHashSeed = 0x9e3779b9u;

  /// The entry for k, or nullptr on a miss. hash must be hash(k): the cache recomputes it
  /// from the key when it moves an entry. Does not touch the counters.
  FlowEntry* lookup(const FlowKey& k, uint32_t hash) noexcept;

  /// Looks up n keys at once, out[i] as lookup(keys[i], hashes[i]) would return it. The buckets
  /// are prefetched (for writing: the owner updates a hit entry's counters per packet) for all
  /// keys before any is compared, so the cache misses of a burst overlap (what a table larger
  /// than the CPU caches needs).
  void lookup_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n, FlowEntry** out) noexcept;

  /// lookup_burst in two steps, for a caller with other work to put between them while the
  /// cache misses are served: prefetch_burst fetches the buckets; finish_burst (n at most
  /// kMaxBurst) compares the keys, fetches the alternative buckets of those that may have
  /// spilled, and compares again, into out as lookup would answer.
  void prefetch_burst(const uint32_t* hashes, uint32_t n) const noexcept {
    for (uint32_t i = 0; i < n; ++i) prefetch(hashes[i]);
  }
  /// See prefetch_burst.
  void finish_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n, FlowEntry** out) noexcept;
  /// The most keys finish_burst takes at once.
  static constexpr uint32_t kMaxBurst = 64;

  /// The existing entry for k, or a new one (first and last seen now, counters and the
  /// caller's fields zero). When both candidate buckets are full it first moves entries to
  /// their other bucket (a short cuckoo search), then evicts the least recently used entry of
  /// the two buckets if it has been idle for more than idle_tsc; otherwise returns nullptr (the
  /// caller counts it). Either may move or reuse other entries: pointers from earlier calls are
  /// void after it.
  FlowEntry* insert(const FlowKey& k, uint32_t hash, uint64_t now, uint64_t idle_tsc) noexcept;

  /// One packet of bytes for e at now: its last-seen time and counters (folded into the
  /// totals when the small ones would overflow). The per-packet update.
  void touch(FlowEntry* e, uint64_t now, uint32_t bytes) noexcept {
    e->last = tick(now);
    if (e->pkts == UINT16_MAX || e->bytes > UINT32_MAX - bytes) [[unlikely]]
      fold(e);
    ++e->pkts;
    e->bytes += bytes;
  }
  /// e's totals; now (any recent TSC) places its last-seen tick back on the TSC.
  FlowStats stats(const FlowEntry& e, uint64_t now) const noexcept;

  /// Removes the entry for k if present; true if it was. For control-requested flushes.
  bool erase(const FlowKey& k, uint32_t hash) noexcept;

  /// Removes entries idle for more than idle_tsc from the next max_buckets buckets (a cursor
  /// wraps round the table across calls); returns how many it removed. Once per loop.
  uint32_t expire(uint64_t now, uint64_t idle_tsc, uint32_t max_buckets) noexcept;

  /// Live entries. Any thread (relaxed; approximate while the worker runs).
  uint32_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// Slots (a power of two; 0 after an allocation failure).
  uint32_t capacity() const noexcept { return ok() ? (mask_ + 1) * kSlots : 0; }
  /// Buckets (capacity() / kSlots; 0 after an allocation failure).
  uint32_t buckets() const noexcept { return ok() ? mask_ + 1 : 0; }
  /// False if the constructor could not allocate.
  bool ok() const noexcept { return buckets_ != &empty_bucket_; }
  /// Bytes of table: buckets and the cold totals.
  size_t table_bytes() const noexcept { return ok() ? bytes_for(capacity()) : 0; }
  /// The slots and bytes a cache made with capacity would have. Any thread.
  static uint32_t slots_for(uint32_t capacity) noexcept;
  /// See slots_for.
  static size_t bytes_for(uint32_t capacity) noexcept {
    return size_t{slots_for(capacity)} * (sizeof(FlowEntry) + sizeof(Cold));
  }

  /// Calls f(const FlowEntry&) for every live entry. Not thread safe.
  template <class F>
  void for_each(F&& f) const {
    if (!ok()) return;
    for (uint32_t b = 0; b <= mask_; ++b)
      for (uint32_t s = 0; s < kSlots; ++s)
        if (used(buckets_[b].slot[s])) f(static_cast<const FlowEntry&>(buckets_[b].slot[s]));
  }

  /// Calls f(const FlowEntry&) for every live entry of buckets [first, first + n) (clamped to
  /// the table); returns the bucket after the last one visited, 0 once the table is done. The
  /// owner's way to walk the table a little at a time.
  template <class F>
  uint32_t for_each_in(uint32_t first, uint32_t n, F&& f) const {
    if (!ok() || first > mask_) return 0;
    const uint32_t end = first + n > mask_ + 1 ? mask_ + 1 : first + n;
    for (uint32_t b = first; b < end; ++b)
      for (uint32_t s = 0; s < kSlots; ++s)
        if (used(buckets_[b].slot[s])) f(static_cast<const FlowEntry&>(buckets_[b].slot[s]));
    return end > mask_ ? 0 : end;
  }

  /// Prefetches the primary bucket for hash (for writing), ahead of a burst of lookups.
  void prefetch(uint32_t hash) const noexcept { __builtin_prefetch(&buckets_[hash & mask_], 1, 3); }

  /// Slots per bucket.
  static constexpr uint32_t kSlots = 2;

 private:
  /// meta: the slot holds a flow.
  static constexpr uint8_t kUsed = 0x80;
  /// meta: the flow lives in its alternative bucket.
  static constexpr uint8_t kAway = 0x40;
  /// meta of slot 0: how many keys whose primary is this bucket live in their alternative
  /// (saturating: at kSpillMax it stays there and only costs misses a second read).
  static constexpr uint8_t kSpillMask = 0x3f;
  static constexpr uint8_t kSpillMax = kSpillMask;

  /// Two entries: one cache line.
  struct alignas(64) Bucket {
    FlowEntry slot[kSlots];
  };
  static_assert(sizeof(Bucket) == 64);
  /// A slot's totals (what fold() moved out of its small counters) and first-seen time.
  struct Cold {
    uint64_t pkts, bytes, first_tsc;
  };

  static bool used(const FlowEntry& e) noexcept { return (e.meta & kUsed) != 0; }
  uint32_t tick(uint64_t tsc) const noexcept { return static_cast<uint32_t>(tsc >> shift_); }
  /// Ticks since e's last packet; negative when it was stamped after now (another core's TSC).
  int32_t age(const FlowEntry& e, uint64_t now) const noexcept {
    return static_cast<int32_t>(tick(now) - e.last);
  }
  /// True when e has been idle for more than idle (in ticks).
  static bool idle_for(int32_t age, uint32_t idle) noexcept { return age > 0 && static_cast<uint32_t>(age) > idle; }
  uint32_t idle_ticks(uint64_t idle_tsc) const noexcept;
  /// The other bucket of a key with hash in bucket (symmetric: alt(alt(b)) == b).
  uint32_t alt_bucket(uint32_t bucket, uint32_t hash) const noexcept {
    return (bucket ^ ((((hash >> 16) * 0x9e3779b1u) >> 8) | 1u)) & mask_;
  }
  /// The slot of bucket holding k, or nullptr.
  FlowEntry* find_in(uint32_t bucket, const FlowKey& k) noexcept;
  uint32_t spilled(uint32_t bucket) const noexcept { return buckets_[bucket].slot[0].meta & kSpillMask; }
  void add_spill(uint32_t bucket, int delta) noexcept;
  /// The slot index of e in the table (and in the cold array).
  uint32_t index_of(const FlowEntry* e) const noexcept { return static_cast<uint32_t>(e - &buckets_[0].slot[0]); }
  void fold(FlowEntry* e) noexcept;
  /// Frees a slot, keeping size_ and the primary's spill count right.
  void remove_slot(uint32_t bucket, uint32_t slot) noexcept;
  /// Puts a new entry for k in a free slot.
  FlowEntry* fill_slot(uint32_t bucket, uint32_t slot, const FlowKey& k, uint32_t hash, uint64_t now) noexcept;
  /// The first free slot of bucket, or -1.
  int free_slot(uint32_t bucket) const noexcept;
  /// Frees a slot in one of the full roots by moving entries to their other bucket.
  bool make_room(const uint32_t (&roots)[2], uint32_t n_roots, uint32_t* bucket, uint32_t* slot) noexcept;
  /// Moves an entry (and its totals) to a free slot of its other bucket.
  void move_slot(uint32_t from_bucket, uint32_t from_slot, uint32_t to_bucket, uint32_t to_slot) noexcept;

  /// All-empty stand-in after an allocation failure, so lookup() needs no branch for that case.
  static Bucket empty_bucket_;

  Bucket* buckets_ = &empty_bucket_;  ///< mask_ + 1 buckets
  Cold* cold_ = nullptr;              ///< one per slot
  uint32_t mask_ = 0;                 ///< bucket count - 1
  uint32_t shift_ = 0;                ///< tick = TSC >> shift_
  /// One writer; atomic only so that other threads may read it (relaxed, no locked instruction).
  std::atomic<uint32_t> size_{0};
  uint32_t cursor_ = 0;  ///< next bucket expire() looks at
};

}  // namespace sdwan::dp
