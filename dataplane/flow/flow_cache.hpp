// Per-worker flow cache: 5-tuple -> (class, path) and the flow's counters. One writer, no locks.
// A bucket is a line of 8 16-bit signatures followed by its 8 64-byte entries (576 bytes), so a
// lookup reads the signature line and, on a match, one entry next to it: one page, one TLB
// entry. (With signatures and entries in two arrays a lookup touched two random pages: on this
// VM a million flows cost 0.66 of one flow, the page walks more than the cache misses.) A key lives in
// its primary bucket, or in an alternative one when the primary was full; a short cuckoo
// search moves entries between their two buckets before anything is evicted, so the table
// fills past 95%. The primary counts its spilled keys, so a miss only reads the alternative
// when something could be there.
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

/// One flow: what the worker decided for it and what it has seen. One cache line.
struct alignas(64) FlowEntry {
  FlowKey key;          ///< the flow
  uint16_t path;        ///< path id chosen for the flow (caller's)
  uint8_t cls;          ///< traffic class (caller's)
  uint8_t flags;        ///< caller's flags
  uint32_t gen;         ///< snapshot generation the decision was made in (caller's)
  uint64_t first_tsc;   ///< TSC at insertion
  uint64_t last_tsc;    ///< TSC of the last packet; the caller updates it on each hit
  uint64_t pkts;        ///< packets seen (caller's)
  uint64_t bytes;       ///< bytes seen (caller's)
  uint32_t hash;        ///< the key's hash, kept by the cache for its bookkeeping; do not change
};
static_assert(sizeof(FlowEntry) == 64);

/// The cache. Owned by one worker: every member except size()/capacity() is for that thread
/// only (control-side dumps through for_each are for tests and stopped workers).
class FlowCache {
 public:
  /// Allocates room for capacity flows (rounded up to a power of two, 8 to 2^28) before the
  /// loop starts. On allocation failure the cache is empty, ok() is false and insert fails.
  explicit FlowCache(uint32_t capacity);
  ~FlowCache();
  FlowCache(const FlowCache&) = delete;
  FlowCache& operator=(const FlowCache&) = delete;

  /// The hash every other call takes: CRC32-C of the key when built with SSE4.2 (the
  /// dataplane always is on x86), else a multiplicative mix. Any thread.
  static uint32_t hash(const FlowKey& k) noexcept;
  /// hash() of keys[0, n) into out[0, n): one call for a burst. Any thread.
  static void hash_burst(const FlowKey* keys, uint32_t n, uint32_t* out) noexcept;

  /// The entry for k (hash == hash(k)), or nullptr on a miss. Does not touch last_tsc.
  FlowEntry* lookup(const FlowKey& k, uint32_t hash) noexcept;

  /// Looks up n keys at once, out[i] as lookup(keys[i], hashes[i]) would return it. Buckets,
  /// then the matching entries, are prefetched for all keys before any is compared, so the
  /// cache misses of a burst overlap (what a table larger than the CPU caches needs). Entries
  /// are fetched for writing: the owner updates a hit entry's counters per packet.
  void lookup_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n, FlowEntry** out) noexcept;

  /// lookup_burst in three steps, for a caller with other work to put between them while the
  /// cache misses are served: prefetch_burst fetches the buckets; probe_burst compares their
  /// signatures into matches[i] and fetches the matching entry (for writing), or the slot an
  /// insert would take; finish compares the key and returns what lookup would. An insert
  /// between probe_burst and finish voids the matches (look up again).
  void prefetch_burst(const uint32_t* hashes, uint32_t n) const noexcept {
    for (uint32_t i = 0; i < n; ++i) prefetch(hashes[i]);
  }
  /// See prefetch_burst.
  void probe_burst(const uint32_t* hashes, uint32_t n, uint32_t* matches) noexcept;
  /// See prefetch_burst.
  FlowEntry* finish(const FlowKey& k, uint32_t hash, uint32_t matches) noexcept;

  /// The existing entry for k, or a new one (first_tsc = last_tsc = now, the caller's fields
  /// zero). When both candidate buckets are full it first moves entries to their other bucket
  /// (a short cuckoo search), then evicts the least recently used entry of the two buckets if
  /// it has been idle for more than idle_tsc; otherwise returns nullptr (the caller counts it).
  /// Either may move or reuse other entries: pointers from earlier calls are void after it.
  FlowEntry* insert(const FlowKey& k, uint32_t hash, uint64_t now, uint64_t idle_tsc) noexcept;

  /// Removes the entry for k if present; true if it was. For control-requested flushes.
  bool erase(const FlowKey& k, uint32_t hash) noexcept;

  /// Removes entries idle for more than idle_tsc from the next max_buckets buckets (a cursor
  /// wraps round the table across calls); returns how many it removed. Once per loop.
  uint32_t expire(uint64_t now, uint64_t idle_tsc, uint32_t max_buckets) noexcept;

  /// Live entries. Any thread (relaxed; approximate while the worker runs).
  uint32_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// Slots (a power of two; 0 after an allocation failure).
  uint32_t capacity() const noexcept { return groups_ != &empty_group_ ? (mask_ + 1) * kSlots : 0; }
  /// False if the constructor could not allocate.
  bool ok() const noexcept { return groups_ != &empty_group_; }
  /// Bytes of table: buckets and entries.
  size_t table_bytes() const noexcept { return ok() ? size_t{mask_ + 1} * sizeof(Group) : 0; }
  /// The slots and bytes a cache made with capacity would have. Any thread.
  static uint32_t slots_for(uint32_t capacity) noexcept;
  /// See slots_for.
  static size_t bytes_for(uint32_t capacity) noexcept { return size_t{slots_for(capacity) / kSlots} * sizeof(Group); }

  /// Calls f(const FlowEntry&) for every live entry. Not thread safe.
  template <class F>
  void for_each(F&& f) const {
    if (!ok()) return;
    for (uint32_t b = 0; b <= mask_; ++b) {
      for (uint32_t s = 0; s < kSlots; ++s) {
        if (groups_[b].head.sig[s] != 0) f(static_cast<const FlowEntry&>(groups_[b].slot[s]));
      }
    }
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
        if (groups_[b].head.sig[s] != 0) f(static_cast<const FlowEntry&>(groups_[b].slot[s]));
    return end > mask_ ? 0 : end;
  }

  /// Prefetches the primary bucket for hash, ahead of a burst of lookups.
  void prefetch(uint32_t hash) const noexcept { __builtin_prefetch(&groups_[hash & mask_].head, 0, 3); }

  /// Slots per bucket.
  static constexpr uint32_t kSlots = 8;

 private:
  /// Eight signatures and the spill count: the first line of a Group.
  struct alignas(32) Bucket {
    uint16_t sig[kSlots];  ///< 0 = empty slot
    uint32_t spilled;      ///< keys whose primary is this bucket but which live in their alternative
    uint32_t pad[3];       ///< up to 32 bytes
  };
  static_assert(sizeof(Bucket) == 32);
  /// A bucket's signatures and its entries, together.
  struct Group {
    Bucket head;
    FlowEntry slot[kSlots];  ///< 64-byte aligned: the first starts on the line after head
  };
  static_assert(sizeof(Group) == 64 + kSlots * sizeof(FlowEntry));

  /// The 16-bit signature of hash (never 0, which marks an empty slot).
  static uint16_t signature(uint32_t hash) noexcept;
  /// The other bucket of an entry with sig in bucket (symmetric: alt(alt(b)) == b).
  uint32_t alt_bucket(uint32_t bucket, uint16_t sig) const noexcept;
  /// Bit s set when slot s of bucket holds sig (sig 0: the free slots).
  uint32_t match_mask(uint32_t bucket, uint16_t sig) const noexcept;
  /// The entry for k in bucket, comparing keys only where the signature matches.
  FlowEntry* find_in(uint32_t bucket, const FlowKey& k, uint16_t sig) noexcept;
  /// The entry for k among the slots of bucket set in matches.
  FlowEntry* find_matches(uint32_t bucket, const FlowKey& k, uint32_t matches) noexcept;
  /// Frees a slot, keeping size_ and the primary's spill count right.
  void remove_slot(uint32_t bucket, uint32_t slot) noexcept;
  /// Puts a new entry for k in a free slot.
  FlowEntry* fill_slot(uint32_t bucket, uint32_t slot, const FlowKey& k, uint32_t hash,
                       uint64_t now) noexcept;
  /// The first free slot of bucket, or -1.
  int free_slot(uint32_t bucket) const noexcept;
  /// Frees a slot in one of the full roots by moving entries to their other bucket.
  bool make_room(const uint32_t (&roots)[2], uint32_t n_roots, uint32_t* bucket, uint32_t* slot) noexcept;
  /// Moves an entry to the free slot of its other bucket.
  void move_slot(uint32_t from_bucket, uint32_t from_slot, uint32_t to_bucket, uint32_t to_slot) noexcept;

  /// All-empty stand-in after an allocation failure, so lookup() needs no branch for that case.
  static Group empty_group_;

  Group* groups_ = &empty_group_;  ///< mask_ + 1 buckets with their entries
  uint32_t mask_ = 0;                 ///< bucket count - 1
  /// One writer; atomic only so that other threads may read it (relaxed, no locked instruction).
  std::atomic<uint32_t> size_{0};
  uint32_t cursor_ = 0;               ///< next bucket expire() looks at
};

}  // namespace sdwan::dp
