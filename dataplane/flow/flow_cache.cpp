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

constexpr uint32_t kMinCapacity = FlowCache::kSlots;
constexpr uint32_t kMaxCapacity = 1u << 28;
constexpr size_t kHugePage = 2u << 20;
constexpr uint32_t kHashSeed = 0x9e3779b9u;

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

FlowCache::Group FlowCache::empty_group_{};

uint32_t FlowCache::slots_for(uint32_t capacity) noexcept {
  return capacity <= kMinCapacity ? kMinCapacity : capacity >= kMaxCapacity ? kMaxCapacity : std::bit_ceil(capacity);
}

FlowCache::FlowCache(uint32_t capacity) {
  const uint32_t n_buckets = slots_for(capacity) / kSlots;
  auto* groups = static_cast<Group*>(alloc_table(size_t{n_buckets} * sizeof(Group)));
  if (!groups) return;
  // Only the signatures need to start empty; entries are written when their slot is filled.
  for (uint32_t b = 0; b < n_buckets; ++b) groups[b].head = Bucket{};
  groups_ = groups;
  mask_ = n_buckets - 1;
}

FlowCache::~FlowCache() {
  if (ok()) std::free(groups_);
}

uint32_t FlowCache::hash(const FlowKey& k) noexcept {
  uint64_t w[2];
  std::memcpy(w, &k, sizeof w);
#if defined(__SSE4_2__)
  uint64_t h = _mm_crc32_u64(kHashSeed, w[0]);
  h = _mm_crc32_u64(h, w[1]);
  return static_cast<uint32_t>(h);
#else
  uint64_t h = (w[0] ^ kHashSeed) * 0x9e3779b97f4a7c15ull;
  h = (h ^ w[1] ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
  return static_cast<uint32_t>(h ^ (h >> 32));
#endif
}

void FlowCache::hash_burst(const FlowKey* keys, uint32_t n, uint32_t* out) noexcept {
  for (uint32_t i = 0; i < n; ++i) out[i] = hash(keys[i]);
}

[[gnu::always_inline]] inline uint16_t FlowCache::signature(uint32_t hash) noexcept {
  // 0 marks an empty slot, so the one signature that would collide with it is moved to 1.
  const auto s = static_cast<uint16_t>(hash >> 16);
  return s ? s : 1;
}

[[gnu::always_inline]] inline uint32_t FlowCache::alt_bucket(uint32_t bucket, uint16_t sig) const noexcept {
  // An xor makes the pair symmetric (either bucket and the signature give the other one, so
  // entries can move without reading their key); forcing it odd keeps the two distinct.
  return (bucket ^ (((sig * 0x9e3779b1u) >> 8) | 1u)) & mask_;
}

// Bit i set when slot i holds sig.
[[gnu::always_inline]] inline uint32_t FlowCache::match_mask(uint32_t bucket, uint16_t sig) const noexcept {
  const Bucket& b = groups_[bucket].head;
#if defined(__SSE2__)
  const __m128i sigs = _mm_load_si128(reinterpret_cast<const __m128i*>(b.sig));
  const __m128i eq = _mm_cmpeq_epi16(sigs, _mm_set1_epi16(static_cast<short>(sig)));
  // Packing the 16-bit lanes to bytes leaves one mask bit per slot.
  return static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128())));
#else
  uint32_t m = 0;
  for (uint32_t s = 0; s < kSlots; ++s) m |= uint32_t{b.sig[s] == sig} << s;
  return m;
#endif
}

[[gnu::always_inline]] inline FlowEntry* FlowCache::find_matches(uint32_t bucket, const FlowKey& k, uint32_t matches) noexcept {
  while (matches) {
    FlowEntry* e = &groups_[bucket].slot[std::countr_zero(matches)];
    if (e->key == k) return e;
    matches &= matches - 1;
  }
  return nullptr;
}

[[gnu::always_inline]] inline FlowEntry* FlowCache::find_in(uint32_t bucket, const FlowKey& k, uint16_t sig) noexcept {
  return find_matches(bucket, k, match_mask(bucket, sig));
}

FlowEntry* FlowCache::lookup(const FlowKey& k, uint32_t hash) noexcept {
  const uint32_t b = hash & mask_;
  const uint16_t sig = signature(hash);
  if (FlowEntry* e = find_in(b, k, sig)) return e;
  if (groups_[b].head.spilled == 0) return nullptr;
  return find_in(alt_bucket(b, sig), k, sig);
}

void FlowCache::probe_burst(const uint32_t* hashes, uint32_t n, uint32_t* matches) noexcept {
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t b = hashes[i] & mask_;
    matches[i] = match_mask(b, signature(hashes[i]));
    // The first match is almost always the only one and the right one. On a miss, the slot
    // an insert would take is fetched for writing, as a new flow usually follows.
    if (matches[i]) {
      __builtin_prefetch(&groups_[b].slot[std::countr_zero(matches[i])], 1, 3);
    } else if (const uint32_t free = match_mask(b, 0)) {
      __builtin_prefetch(&groups_[b].slot[std::countr_zero(free)], 1, 3);
    }
  }
}

FlowEntry* FlowCache::finish(const FlowKey& k, uint32_t hash, uint32_t matches) noexcept {
  const uint32_t b = hash & mask_;
  FlowEntry* e = find_matches(b, k, matches);
  if (!e && groups_[b].head.spilled != 0) e = find_in(alt_bucket(b, signature(hash)), k, signature(hash));
  return e;
}

void FlowCache::lookup_burst(const FlowKey* keys, const uint32_t* hashes, uint32_t n,
                             FlowEntry** out) noexcept {
  constexpr uint32_t kChunk = 64;
  uint32_t matches[kChunk];
  for (uint32_t base = 0; base < n; base += kChunk) {
    const uint32_t m = n - base < kChunk ? n - base : kChunk;
    prefetch_burst(hashes + base, m);
    probe_burst(hashes + base, m, matches);
    for (uint32_t i = 0; i < m; ++i) out[base + i] = finish(keys[base + i], hashes[base + i], matches[i]);
  }
}

void FlowCache::remove_slot(uint32_t bucket, uint32_t slot) noexcept {
  const uint32_t primary = groups_[bucket].slot[slot].hash & mask_;
  if (primary != bucket) --groups_[primary].head.spilled;
  groups_[bucket].head.sig[slot] = 0;
  size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

FlowEntry* FlowCache::fill_slot(uint32_t bucket, uint32_t slot, const FlowKey& k, uint32_t hash,
                                uint64_t now) noexcept {
  const uint32_t primary = hash & mask_;
  if (primary != bucket) ++groups_[primary].head.spilled;
  groups_[bucket].head.sig[slot] = signature(hash);
  FlowEntry* e = &groups_[bucket].slot[slot];
  *e = FlowEntry{};
  e->key = k;
  e->hash = hash;
  e->first_tsc = now;
  e->last_tsc = now;
  size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return e;
}

int FlowCache::free_slot(uint32_t bucket) const noexcept {
  const uint32_t free = match_mask(bucket, 0);
  return free ? std::countr_zero(free) : -1;
}

void FlowCache::move_slot(uint32_t from_bucket, uint32_t from_slot, uint32_t to_bucket,
                          uint32_t to_slot) noexcept {
  FlowEntry& from = groups_[from_bucket].slot[from_slot];
  const uint32_t primary = from.hash & mask_;
  if (primary == from_bucket) {
    ++groups_[primary].head.spilled;
  } else {
    --groups_[primary].head.spilled;
  }
  groups_[to_bucket].slot[to_slot] = from;
  groups_[to_bucket].head.sig[to_slot] = groups_[from_bucket].head.sig[from_slot];
  groups_[from_bucket].head.sig[from_slot] = 0;
}

// Breadth-first search for the shortest chain of moves (each entry to its other bucket) that
// ends in a free slot, then the moves from the far end back, freeing a slot in a root bucket.
// Only reached when both buckets of a new key are full, so its cost (at most 146 bucket
// reads) is paid by rare inserts at high load, and it lifts the fill of a table from about
// 94% to over 99%.
bool FlowCache::make_room(const uint32_t (&roots)[2], uint32_t n_roots, uint32_t* bucket,
                          uint32_t* slot) noexcept {
  struct Node {
    uint32_t bucket;
    int16_t parent;       // index in the queue, -1 for a root
    uint16_t parent_slot; // slot of the parent whose entry would move into this bucket
  };
  constexpr uint32_t kDepth = 2;
  constexpr uint32_t kMaxNodes = 2 + 2 * kSlots + 2 * kSlots * kSlots;
  Node q[kMaxNodes];
  uint32_t n = 0;
  for (uint32_t r = 0; r < n_roots; ++r) q[n++] = Node{roots[r], -1, 0};

  uint32_t level_begin = 0;
  for (uint32_t depth = 0; depth <= kDepth; ++depth) {
    const uint32_t level_end = n;
    for (uint32_t i = level_begin; i < level_end; ++i) {
      const uint32_t b = q[i].bucket;
      for (uint32_t s = 0; s < kSlots; ++s) {
        const uint32_t other = alt_bucket(b, groups_[b].head.sig[s]);
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
        if (depth < kDepth) q[n++] = Node{other, static_cast<int16_t>(i), static_cast<uint16_t>(s)};
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
  const uint16_t sig = signature(hash);
  const uint32_t a = alt_bucket(b, sig);
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
  uint64_t oldest = UINT64_MAX;
  for (uint32_t c = 0; c < n_candidates; ++c) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      const uint64_t last = groups_[candidates[c]].slot[s].last_tsc;
      if (last < oldest) {
        oldest = last;
        victim_bucket = candidates[c];
        victim_slot = s;
      }
    }
  }
  if (now < oldest || now - oldest <= idle_tsc) return nullptr;
  remove_slot(victim_bucket, victim_slot);
  return fill_slot(victim_bucket, victim_slot, k, hash, now);
}

bool FlowCache::erase(const FlowKey& k, uint32_t hash) noexcept {
  FlowEntry* e = ok() ? lookup(k, hash) : nullptr;
  if (!e) return false;
  const auto b = static_cast<uint32_t>((reinterpret_cast<const char*>(e) - reinterpret_cast<const char*>(groups_)) /
                                       static_cast<ptrdiff_t>(sizeof(Group)));
  remove_slot(b, static_cast<uint32_t>(e - groups_[b].slot));
  return true;
}

uint32_t FlowCache::expire(uint64_t now, uint64_t idle_tsc, uint32_t max_buckets) noexcept {
  if (!ok()) return 0;
  uint32_t removed = 0;
  const uint32_t n = max_buckets > mask_ ? mask_ + 1 : max_buckets;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t b = cursor_;
    cursor_ = (cursor_ + 1) & mask_;
    // Occupied slots only: the complement of the free ones.
    for (uint32_t used = ~match_mask(b, 0) & ((1u << kSlots) - 1); used != 0; used &= used - 1) {
      const auto s = static_cast<uint32_t>(std::countr_zero(used));
      const uint64_t last = groups_[b].slot[s].last_tsc;
      if (now > last && now - last > idle_tsc) {
        remove_slot(b, s);
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace sdwan::dp
