#include "dataplane/flow/flow_cache.hpp"

#include <sys/mman.h>

#include <bit>
#include <cstddef>
#include <cstdlib>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace sdwan::dp {
namespace {

constexpr uint32_t kMinCapacity = 2 * FlowCache::kSlots;  // two buckets: every key has an alternative
constexpr uint32_t kMaxCapacity = 1u << 28;
constexpr size_t kHugePage = 2u << 20;

// Large tables are 2 MiB aligned and marked for transparent huge pages: at a million flows a
// lookup would otherwise take a TLB miss on top of its cache misses.
void* alloc_table(size_t bytes) noexcept {
  const size_t align = bytes >= kHugePage ? kHugePage : 64;
  bytes = (bytes + align - 1) & ~(align - 1);
  void* p = std::aligned_alloc(align, bytes);
  if (p && align == kHugePage) (void)madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

}  // namespace

FlowCache::Bucket FlowCache::empty_bucket_{};

uint32_t FlowCache::slots_for(uint32_t capacity) noexcept {
  return capacity <= kMinCapacity ? kMinCapacity : capacity >= kMaxCapacity ? kMaxCapacity : std::bit_ceil(capacity);
}

FlowCache::FlowCache(uint32_t capacity, uint32_t tick_shift) : shift_(tick_shift < 32 ? tick_shift : 31) {
  const uint32_t slots = slots_for(capacity);
  auto* buckets = static_cast<Bucket*>(alloc_table(size_t{slots} * sizeof(FlowEntry)));
  auto* cold = static_cast<Cold*>(alloc_table(size_t{slots} * sizeof(Cold)));
  if (!buckets || !cold) {
    std::free(buckets);
    std::free(cold);
    return;
  }
  // Only the meta bytes need to start empty; the rest is written when a slot is filled.
  std::memset(static_cast<void*>(buckets), 0, size_t{slots} * sizeof(FlowEntry));
  buckets_ = buckets;
  cold_ = cold;
  mask_ = slots / kSlots - 1;
}

FlowCache::~FlowCache() {
  if (ok()) {
    std::free(buckets_);
    std::free(cold_);
  }
}

uint32_t FlowCache::idle_ticks(uint64_t idle_tsc) const noexcept {
  const uint64_t t = idle_tsc >> shift_;
  return t >= INT32_MAX ? INT32_MAX : static_cast<uint32_t>(t);
}

// A slot's first 16 bytes are the key's 13, cls, flags and meta; the key's pad is zero. So the
// first word compares whole, and the second under a mask of the key's 5 bytes and meta's used
// bit, which the probe word sets: an empty slot never matches, whatever it held before.
[[gnu::always_inline]] inline FlowEntry* FlowCache::find_in(uint32_t bucket, const FlowKey& k) noexcept {
  static_assert(offsetof(FlowEntry, meta) == 15 && offsetof(FlowEntry, proto) == 12);
  constexpr uint64_t kMask = 0x800000ffffffffffull;
  uint64_t kw[2];
  std::memcpy(kw, &k, sizeof kw);
  const uint64_t want = kw[1] | uint64_t{kUsed} << 56;
  FlowEntry* slots = buckets_[bucket].slot;
  for (uint32_t s = 0; s < kSlots; ++s) {
    uint64_t w[2];
    std::memcpy(w, &slots[s], sizeof w);
    if (w[0] == kw[0] && ((w[1] ^ want) & kMask) == 0) return &slots[s];
  }
  return nullptr;
}

FlowEntry* FlowCache::lookup(const FlowKey& k, uint32_t hash) noexcept {
  const uint32_t b = hash & mask_;
  if (FlowEntry* e = find_in(b, k)) return e;
  if (spilled(b) == 0) return nullptr;
  return find_in(alt_bucket(b, hash), k);
}

void FlowCache::finish_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n, FlowEntry** out) noexcept {
  // Keys that spilled are looked for in their primary first, then all together in their
  // alternatives (prefetched in the first pass), so those second misses overlap too.
  uint32_t again[kMaxBurst];
  uint32_t n_again = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t b = hashes[i] & mask_;
    out[i] = find_in(b, keys[i]);
    if (out[i] == nullptr && spilled(b) != 0) {
      __builtin_prefetch(&buckets_[alt_bucket(b, hashes[i])], 1, 3);
      again[n_again++] = i;
    }
  }
  for (uint32_t j = 0; j < n_again; ++j) {
    const uint32_t i = again[j];
    out[i] = find_in(alt_bucket(hashes[i] & mask_, hashes[i]), keys[i]);
  }
}

void FlowCache::lookup_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n,
                             FlowEntry** out) noexcept {
  for (uint32_t base = 0; base < n; base += kMaxBurst) {
    const uint32_t m = n - base < kMaxBurst ? n - base : kMaxBurst;
    prefetch_burst(hashes + base, m);
    finish_burst(keys + base, hashes + base, m, out + base);
  }
}

void FlowCache::add_spill(uint32_t bucket, int delta) noexcept {
  uint8_t& meta = buckets_[bucket].slot[0].meta;
  const uint32_t n = meta & kSpillMask;
  if (n == kSpillMax) return;  // saturated: stays (a miss in this bucket reads the alternative too)
  meta = static_cast<uint8_t>((meta & ~kSpillMask) | static_cast<uint32_t>(static_cast<int>(n) + delta));
}

void FlowCache::fold(FlowEntry* e) noexcept {
  Cold& c = cold_[index_of(e)];
  c.pkts += e->pkts;
  c.bytes += e->bytes;
  e->pkts = 0;
  e->bytes = 0;
}

FlowStats FlowCache::stats(const FlowEntry& e, uint64_t now) const noexcept {
  const Cold& c = cold_[index_of(&e)];
  FlowStats st;
  st.pkts = c.pkts + e.pkts;
  st.bytes = c.bytes + e.bytes;
  st.first_tsc = c.first_tsc;
  const int64_t back = int64_t{age(e, now)} * (int64_t{1} << shift_);
  st.last_tsc = static_cast<uint64_t>(static_cast<int64_t>(now & ~((uint64_t{1} << shift_) - 1)) - back);
  return st;
}

void FlowCache::remove_slot(uint32_t bucket, uint32_t slot) noexcept {
  FlowEntry& e = buckets_[bucket].slot[slot];
  if ((e.meta & kAway) != 0) add_spill(hash(e.key()) & mask_, -1);
  e.meta &= kSpillMask;  // slot 0 keeps its bucket's spill count
  size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

FlowEntry* FlowCache::fill_slot(uint32_t bucket, uint32_t slot, const FlowKey& k, uint32_t hash,
                                uint64_t now) noexcept {
  const uint32_t primary = hash & mask_;
  FlowEntry* e = &buckets_[bucket].slot[slot];
  const uint8_t keep = e->meta & kSpillMask;
  std::memcpy(static_cast<void*>(e), &k, 13);
  e->cls = 0;
  e->flags = 0;
  e->meta = static_cast<uint8_t>(keep | kUsed | (primary != bucket ? kAway : 0));
  e->path = 0;
  e->pkts = 0;
  e->gen = 0;
  e->last = tick(now);
  e->bytes = 0;
  if (primary != bucket) add_spill(primary, +1);
  cold_[index_of(e)] = Cold{0, 0, now};
  size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return e;
}

int FlowCache::free_slot(uint32_t bucket) const noexcept {
  for (uint32_t s = 0; s < kSlots; ++s)
    if (!used(buckets_[bucket].slot[s])) return static_cast<int>(s);
  return -1;
}

void FlowCache::move_slot(uint32_t from_bucket, uint32_t from_slot, uint32_t to_bucket,
                          uint32_t to_slot) noexcept {
  FlowEntry& from = buckets_[from_bucket].slot[from_slot];
  FlowEntry& to = buckets_[to_bucket].slot[to_slot];
  const uint32_t primary = hash(from.key()) & mask_;
  const uint8_t to_keep = to.meta & kSpillMask;
  const uint8_t from_keep = from.meta & kSpillMask;
  const bool away = primary != to_bucket;
  to = from;
  to.meta = static_cast<uint8_t>(to_keep | kUsed | (away ? kAway : 0));
  from.meta = from_keep;
  cold_[index_of(&to)] = cold_[index_of(&from)];
  // From primary to alternative, or back.
  if (away) {
    add_spill(primary, +1);
  } else {
    add_spill(primary, -1);
  }
}

// Breadth-first search for the shortest chain of moves (each entry to its other bucket) that
// ends in a free slot, then the moves from the far end back, freeing a slot in a root bucket.
// Only reached when both buckets of a new key are full, so its cost (at most 62 bucket reads,
// each entry's hash recomputed from its key) is paid by rare inserts at high load.
bool FlowCache::make_room(const uint32_t (&roots)[2], uint32_t n_roots, uint32_t* bucket,
                          uint32_t* slot) noexcept {
  struct Node {
    uint32_t bucket;
    int16_t parent;        // index in the queue, -1 for a root
    uint16_t parent_slot;  // slot of the parent whose entry would move into this bucket
  };
  constexpr uint32_t kDepth = 4;
  constexpr uint32_t kMaxNodes = 2 + 4 + 8 + 16 + 32;  // 2 roots x 2 slots per level, kDepth levels
  Node q[kMaxNodes];
  uint32_t n = 0;
  for (uint32_t r = 0; r < n_roots; ++r) q[n++] = Node{roots[r], -1, 0};

  uint32_t level_begin = 0;
  for (uint32_t depth = 0; depth <= kDepth; ++depth) {
    const uint32_t level_end = n;
    for (uint32_t i = level_begin; i < level_end; ++i) {
      const uint32_t b = q[i].bucket;
      for (uint32_t s = 0; s < kSlots; ++s) {
        const uint32_t other = alt_bucket(b, hash(buckets_[b].slot[s].key()));
        const int free = other == b ? -1 : free_slot(other);
        if (free >= 0) {
          uint32_t to_bucket = other;
          auto to_slot = static_cast<uint32_t>(free);
          uint32_t from_slot = s;
          for (int j = static_cast<int>(i); j >= 0; j = q[j].parent) {
            move_slot(q[j].bucket, from_slot, to_bucket, to_slot);
            to_bucket = q[j].bucket;
            to_slot = from_slot;
            from_slot = q[j].parent_slot;
          }
          *bucket = to_bucket;
          *slot = to_slot;
          return true;
        }
        if (depth < kDepth && n < kMaxNodes) q[n++] = Node{other, static_cast<int16_t>(i), static_cast<uint16_t>(s)};
      }
    }
    level_begin = level_end;
  }
  return false;
}

FlowEntry* FlowCache::insert(const FlowKey& k, uint32_t hash, uint64_t now, uint64_t idle_tsc) noexcept {
  if (!ok()) return nullptr;
  if (FlowEntry* e = lookup(k, hash)) return e;
  const uint32_t b = hash & mask_;
  const uint32_t a = alt_bucket(b, hash);
  const uint32_t candidates[2] = {b, a};
  const uint32_t n_candidates = a == b ? 1 : 2;

  for (uint32_t c = 0; c < n_candidates; ++c) {
    const int s = free_slot(candidates[c]);
    if (s >= 0) return fill_slot(candidates[c], static_cast<uint32_t>(s), k, hash, now);
  }
  uint32_t room_bucket = 0;
  uint32_t room_slot = 0;
  if (make_room(candidates, n_candidates, &room_bucket, &room_slot)) {
    return fill_slot(room_bucket, room_slot, k, hash, now);
  }

  // Both buckets are full: the least recently used of their entries makes room, but only if
  // it is idle, so a burst of new flows cannot push out flows that are still active.
  uint32_t victim_bucket = b;
  uint32_t victim_slot = 0;
  int32_t oldest = INT32_MIN;
  for (uint32_t c = 0; c < n_candidates; ++c) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      const int32_t a_ge = age(buckets_[candidates[c]].slot[s], now);
      if (a_ge > oldest) {
        oldest = a_ge;
        victim_bucket = candidates[c];
        victim_slot = s;
      }
    }
  }
  if (!idle_for(oldest, idle_ticks(idle_tsc))) return nullptr;
  remove_slot(victim_bucket, victim_slot);
  return fill_slot(victim_bucket, victim_slot, k, hash, now);
}

bool FlowCache::erase(const FlowKey& k, uint32_t hash) noexcept {
  FlowEntry* e = ok() ? lookup(k, hash) : nullptr;
  if (!e) return false;
  const uint32_t i = index_of(e);
  remove_slot(i / kSlots, i % kSlots);
  return true;
}

uint32_t FlowCache::expire(uint64_t now, uint64_t idle_tsc, uint32_t max_buckets) noexcept {
  if (!ok()) return 0;
  uint32_t removed = 0;
  const uint32_t idle = idle_ticks(idle_tsc);
  const uint32_t n = max_buckets > mask_ ? mask_ + 1 : max_buckets;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t b = cursor_;
    cursor_ = (cursor_ + 1) & mask_;
    for (uint32_t s = 0; s < kSlots; ++s) {
      const FlowEntry& e = buckets_[b].slot[s];
      if (used(e) && idle_for(age(e, now), idle)) {
        remove_slot(b, s);
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace sdwan::dp
