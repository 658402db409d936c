// FlowCache: placement, lookup, eviction of idle entries only, the expiry sweep, iteration,
// and keys that share a hash (the tests choose the hash, so collisions are exact).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "dataplane/flow/flow_cache.hpp"

namespace sdwan::dp {
namespace {

FlowKey key(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto = 6) {
  FlowKey k{};
  k.src = src;
  k.dst = dst;
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  return k;
}

FlowKey key_n(uint32_t n) { return key(0x0a000000u | n, 0xc0a80001u, static_cast<uint16_t>(n * 7), 443); }

auto tuple_of(const FlowKey& k) { return std::make_tuple(k.src, k.dst, k.sport, k.dport, k.proto); }

struct Rng {
  uint64_t x = 0x2545f4914f6cdd1dull;
  uint64_t operator()() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

constexpr uint64_t kNever = UINT64_MAX;  // idle threshold no entry reaches

// Every live entry is found through its own key and hash, and size() counts them.
void expect_consistent(FlowCache& c) {
  uint32_t n = 0;
  c.for_each([&](const FlowEntry& e) {
    ++n;
    EXPECT_EQ(c.lookup(e.key(), FlowCache::hash(e.key())), &e);
  });
  EXPECT_EQ(n, c.size());
}

TEST(FlowCache, CapacityIsAPowerOfTwo) {
  EXPECT_EQ(FlowCache(0).capacity(), 4u) << "two buckets at least: every key has an alternative";
  EXPECT_EQ(FlowCache(8).capacity(), 8u);
  EXPECT_EQ(FlowCache(8).buckets(), 4u);
  EXPECT_EQ(FlowCache(1000).capacity(), 1024u);
  EXPECT_EQ(FlowCache(1u << 16).capacity(), 1u << 16);
  FlowCache c(100);
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.size(), 0u);
}

TEST(FlowCache, HashDependsOnEveryField) {
  const FlowKey k = key(1, 2, 3, 4, 6);
  const uint32_t h = FlowCache::hash(k);
  EXPECT_EQ(h, FlowCache::hash(key(1, 2, 3, 4, 6)));
  EXPECT_NE(h, FlowCache::hash(key(9, 2, 3, 4, 6)));
  EXPECT_NE(h, FlowCache::hash(key(1, 9, 3, 4, 6)));
  EXPECT_NE(h, FlowCache::hash(key(1, 2, 9, 4, 6)));
  EXPECT_NE(h, FlowCache::hash(key(1, 2, 3, 9, 6)));
  EXPECT_NE(h, FlowCache::hash(key(1, 2, 3, 4, 17)));
}

TEST(FlowCache, InsertThenLookup) {
  FlowCache c(1024);
  const FlowKey k = key(0x0a000001, 0x0a000002, 1234, 80);
  const uint32_t h = FlowCache::hash(k);
  EXPECT_EQ(c.lookup(k, h), nullptr);
  FlowEntry* e = c.insert(k, h, 1000, kNever);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->key(), k);
  EXPECT_EQ(c.stats(*e, 1000).first_tsc, 1000u);
  EXPECT_EQ(c.stats(*e, 1000).last_tsc, 1000u);
  EXPECT_EQ(c.stats(*e, 1000).pkts, 0u);
  EXPECT_EQ(e->path, 0);
  EXPECT_EQ(c.size(), 1u);
  e->path = 7;
  e->cls = 2;

  EXPECT_EQ(c.lookup(k, h), e);
  EXPECT_EQ(c.insert(k, h, 2000, kNever), e) << "inserting a present key returns it unchanged";
  EXPECT_EQ(e->path, 7);
  EXPECT_EQ(e->cls, 2);
  EXPECT_EQ(c.stats(*e, 2000).first_tsc, 1000u);
  EXPECT_EQ(c.size(), 1u);

  const FlowKey other = key(0x0a000001, 0x0a000002, 1235, 80);
  EXPECT_EQ(c.lookup(other, FlowCache::hash(other)), nullptr);
  EXPECT_EQ(c.lookup(other, h), nullptr) << "same hash, different key";
}

TEST(FlowCache, Erase) {
  FlowCache c(64);
  const FlowKey k = key_n(1);
  const uint32_t h = FlowCache::hash(k);
  ASSERT_NE(c.insert(k, h, 0, kNever), nullptr);
  EXPECT_TRUE(c.erase(k, h));
  EXPECT_FALSE(c.erase(k, h));
  EXPECT_EQ(c.lookup(k, h), nullptr);
  EXPECT_EQ(c.size(), 0u);
}

// A million random flows offered to 2^20 slots (95% load): two-choice placement with the cuckoo
// search fills over 90% of the slots (two slots per bucket; 92% here), and every key that fit is
// found again with its own first-seen time.
TEST(FlowCache, AMillionRandomFlowsInTwoToTheTwenty) {
  FlowCache c(1u << 20);
  Rng rng;
  std::vector<FlowKey> keys(1000000);
  std::vector<bool> in(keys.size());
  uint32_t inserted = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint64_t r = rng();
    // The index in the destination keeps the keys distinct.
    keys[i] = key(static_cast<uint32_t>(r), static_cast<uint32_t>(i), static_cast<uint16_t>(r >> 32),
                  static_cast<uint16_t>(r >> 48), static_cast<uint8_t>(r % 2 ? 6 : 17));
    in[i] = c.insert(keys[i], FlowCache::hash(keys[i]), i, kNever) != nullptr;
    inserted += in[i];
  }
  EXPECT_EQ(c.size(), inserted);
  EXPECT_GE(inserted, 950000u) << "fill: " << inserted << " (0.95 of the keys, 0.906 of the slots)";
  for (size_t i = 0; i < keys.size(); ++i) {
    FlowEntry* e = c.lookup(keys[i], FlowCache::hash(keys[i]));
    ASSERT_EQ(e != nullptr, in[i]) << i;
    if (e) {
      ASSERT_EQ(c.stats(*e, i).first_tsc, i);
    }
  }
  ::testing::Test::RecordProperty("fitted", static_cast<int>(inserted));
  std::printf("  1e6 random flows in 2^20 slots: %u fitted (%.2f%%)\n", inserted, inserted / 1e4);
}

// The same with structured keys (one host pair, all ports): CRC32 must still spread them.
TEST(FlowCache, AMillionSequentialPortFlows) {
  FlowCache c(1u << 20);
  uint32_t inserted = 0;
  for (uint32_t i = 0; i < 1000000; ++i) {
    const FlowKey k = key(0x0a000001, 0x0a000002 + (i >> 16), static_cast<uint16_t>(i), 443);
    inserted += c.insert(k, FlowCache::hash(k), 0, kNever) != nullptr;
  }
  EXPECT_GE(inserted, 950000u);
  std::printf("  1e6 sequential-port flows in 2^20 slots: %u fitted\n", inserted);
}

// 4 slots = two buckets, so every key may use both: the table fills exactly.
TEST(FlowCache, FullTableEvictsOnlyIdleEntriesLeastRecentlyUsedFirst) {
  FlowCache c(4);
  std::vector<FlowKey> keys;
  for (uint32_t i = 0; i < 4; ++i) {
    keys.push_back(key_n(i));
    ASSERT_NE(c.insert(keys[i], FlowCache::hash(keys[i]), 100 + i, kNever), nullptr) << i;
  }
  EXPECT_EQ(c.size(), 4u);
  const FlowKey extra = key_n(100);
  const uint32_t hx = FlowCache::hash(extra);

  // At 200 the oldest entry (last 100) has been idle 100: not more than 100, so nothing moves.
  EXPECT_EQ(c.insert(extra, hx, 200, 100), nullptr);
  EXPECT_EQ(c.size(), 4u);
  for (const auto& k : keys) EXPECT_NE(c.lookup(k, FlowCache::hash(k)), nullptr);

  // A packet refreshes key 0, so key 1 is now the least recently used.
  c.touch(c.lookup(keys[0], FlowCache::hash(keys[0])), 150, 60);
  FlowEntry* e = c.insert(extra, hx, 202, 100);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->key(), extra);
  EXPECT_EQ(c.stats(*e, 202).first_tsc, 202u);
  EXPECT_EQ(c.stats(*e, 202).pkts, 0u) << "the evicted flow's counters are not inherited";
  EXPECT_EQ(c.size(), 4u);
  EXPECT_EQ(c.lookup(keys[1], FlowCache::hash(keys[1])), nullptr);
  FlowEntry* k0 = c.lookup(keys[0], FlowCache::hash(keys[0]));
  ASSERT_NE(k0, nullptr);
  EXPECT_EQ(c.stats(*k0, 202).pkts, 1u);
  EXPECT_EQ(c.stats(*k0, 202).bytes, 60u);
  EXPECT_EQ(c.stats(*k0, 202).last_tsc, 150u);
  for (uint32_t i = 2; i < 4; ++i) EXPECT_NE(c.lookup(keys[i], FlowCache::hash(keys[i])), nullptr) << i;
  expect_consistent(c);
}

TEST(FlowCache, ExpireSweepsABoundedNumberOfBucketsPerCall) {
  FlowCache c(1024);  // 512 buckets
  const uint32_t eighth = c.buckets() / 8;
  uint32_t odd = 0, even = 0;
  for (uint32_t i = 0; i < 600; ++i) {
    const FlowKey k = key_n(i);
    ASSERT_NE(c.insert(k, FlowCache::hash(k), i % 2 ? 1000 : 0, kNever), nullptr);
    (i % 2 ? odd : even) += 1;
  }
  EXPECT_EQ(c.expire(1500, 1000, 0), 0u);
  uint32_t removed = 0;
  for (int call = 0; call < 4; ++call) removed += c.expire(1500, 1000, eighth);
  EXPECT_GT(removed, 0u);
  EXPECT_LT(removed, even) << "half the table swept, half the idle flows gone at most";
  for (int call = 0; call < 4; ++call) removed += c.expire(1500, 1000, eighth);
  EXPECT_EQ(removed, even);
  EXPECT_EQ(c.size(), odd);
  for (uint32_t i = 0; i < 600; ++i) {
    const FlowKey k = key_n(i);
    EXPECT_EQ(c.lookup(k, FlowCache::hash(k)) != nullptr, i % 2 == 1) << i;
  }
  // The cursor wraps: a full sweep later removes the rest.
  EXPECT_EQ(c.expire(5000, 1000, 100000), odd);
  EXPECT_EQ(c.size(), 0u);
  // An entry stamped after now (another core's TSC running ahead) is not treated as idle.
  const FlowKey k = key_n(1);
  ASSERT_NE(c.insert(k, FlowCache::hash(k), 10000, kNever), nullptr);
  EXPECT_EQ(c.expire(9000, 10, 100000), 0u);
}

// Times in ticks of 2^16 TSC cycles, as the worker keeps them: idleness and the last-seen time
// hold at a real TSC's magnitude, to the tick, and a tick's worth of idleness is not rounded up.
TEST(FlowCache, TicksOfATscCycleShift) {
  FlowCache c(64, 16);
  const uint64_t hz = 2'600'000'000ull;
  const uint64_t t0 = 40 * 3600 * hz;  // 40 hours of uptime: a TSC past 2^48, which 32-bit ticks do not hold
  const FlowKey k = key_n(7);
  const uint32_t h = FlowCache::hash(k);
  FlowEntry* e = c.insert(k, h, t0, kNever);
  ASSERT_NE(e, nullptr);
  c.touch(e, t0 + 5 * hz, 100);
  const FlowStats st = c.stats(*e, t0 + 6 * hz);
  EXPECT_EQ(st.first_tsc, t0);
  EXPECT_LE(st.last_tsc, t0 + 5 * hz);
  EXPECT_GT(st.last_tsc + (1u << 16), t0 + 5 * hz);
  EXPECT_EQ(c.expire(t0 + 100 * hz, 120 * hz, 1000), 0u) << "95 s idle of 120";
  EXPECT_EQ(c.expire(t0 + 124 * hz, 120 * hz, 1000), 0u) << "119 s idle of 120";
  EXPECT_EQ(c.expire(t0 + 126 * hz, 120 * hz, 1000), 1u) << "121 s idle of 120";
}

// The small per-packet counters fold into the totals before they overflow: more than 65,535
// packets and 4 GiB are counted exactly.
TEST(FlowCache, CountersFoldIntoTotals) {
  FlowCache c(16);
  const FlowKey k = key_n(3);
  FlowEntry* e = c.insert(k, FlowCache::hash(k), 1, kNever);
  ASSERT_NE(e, nullptr);
  for (uint32_t i = 0; i < 200000; ++i) c.touch(e, 2 + i, 1500);
  FlowStats st = c.stats(*e, 200001);
  EXPECT_EQ(st.pkts, 200000u);
  EXPECT_EQ(st.bytes, 300000000u);
  for (uint32_t i = 0; i < 3000000; ++i) c.touch(e, 300000, 9000);  // 27 GB more
  st = c.stats(*e, 300000);
  EXPECT_EQ(st.pkts, 3200000u);
  EXPECT_EQ(st.bytes, 300000000u + 27000000000ull);
  EXPECT_EQ(st.last_tsc, 300000u);
}

TEST(FlowCache, ForEachVisitsEveryLiveEntryOnce) {
  FlowCache c(4096);
  std::set<std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>> want;
  for (uint32_t i = 0; i < 3000; ++i) {
    const FlowKey k = key_n(i);
    if (c.insert(k, FlowCache::hash(k), 0, kNever)) want.insert(tuple_of(k));
  }
  for (uint32_t i = 0; i < 3000; i += 3) {
    const FlowKey k = key_n(i);
    if (c.erase(k, FlowCache::hash(k))) want.erase(tuple_of(k));
  }
  std::set<std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>> seen;
  size_t visits = 0;
  c.for_each([&](const FlowEntry& e) {
    ++visits;
    seen.insert(tuple_of(e.key()));
  });
  EXPECT_EQ(visits, want.size());
  EXPECT_EQ(seen, want);
  EXPECT_EQ(c.size(), want.size());
}

// Keys whose hashes give the same primary and the same alternative bucket: two fit in the
// primary, two more in the alternative, then the pair is full (nothing else can move).
TEST(FlowCache, KeysSharingBothBuckets) {
  FlowCache c(1024);  // 512 buckets
  const uint32_t mask = c.buckets() - 1;
  const auto pair_of = [&](uint32_t h) {
    const uint32_t b = h & mask;
    return std::make_pair(b, (b ^ ((((h >> 16) * 0x9e3779b1u) >> 8) | 1u)) & mask);
  };
  const auto want = pair_of(FlowCache::hash(key_n(0)));
  std::vector<FlowKey> keys{key_n(0)};
  for (uint32_t i = 1; keys.size() < 7 && i < 50000000; ++i)
    if (pair_of(FlowCache::hash(key_n(i))) == want) keys.push_back(key_n(i));
  ASSERT_EQ(keys.size(), 7u);
  const auto h = [](const FlowKey& k) { return FlowCache::hash(k); };
  for (uint32_t i = 0; i < 4; ++i) {
    FlowEntry* e = c.insert(keys[i], h(keys[i]), i, kNever);
    ASSERT_NE(e, nullptr) << i;
    e->path = static_cast<uint16_t>(i);
  }
  EXPECT_EQ(c.insert(keys[4], h(keys[4]), 4, kNever), nullptr);
  for (uint32_t i = 0; i < 4; ++i) {
    FlowEntry* e = c.lookup(keys[i], h(keys[i]));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->path, i);
    EXPECT_EQ(e->key(), keys[i]);
  }
  EXPECT_EQ(c.lookup(keys[4], h(keys[4])), nullptr);
  // Freeing a primary slot and a spilled slot: both make room and spilled keys stay found.
  EXPECT_TRUE(c.erase(keys[1], h(keys[1])));
  EXPECT_TRUE(c.erase(keys[2], h(keys[2])));
  EXPECT_NE(c.insert(keys[4], h(keys[4]), 20, kNever), nullptr);
  EXPECT_NE(c.insert(keys[5], h(keys[5]), 20, kNever), nullptr);
  EXPECT_EQ(c.insert(keys[6], h(keys[6]), 20, kNever), nullptr);
  for (uint32_t i = 0; i < 7; ++i) EXPECT_EQ(c.lookup(keys[i], h(keys[i])) != nullptr, i != 1 && i != 2 && i != 6) << i;
  expect_consistent(c);
}

// lookup_burst agrees with lookup key by key: hits in primary and spilled slots, misses, and
// bursts longer than its internal chunk.
TEST(FlowCache, LookupBurstAgreesWithLookup) {
  FlowCache c(1024);
  Rng rng;
  std::vector<FlowKey> keys;
  for (uint32_t i = 0; i < 2000; ++i) keys.push_back(key_n(i));
  uint32_t present = 0;
  for (uint32_t i = 0; i < 1800; i += 2) present += c.insert(keys[i], FlowCache::hash(keys[i]), 0, kNever) != nullptr;
  ASSERT_GT(present, 850u) << "crowded enough that keys spill to their alternative bucket";
  for (uint32_t n : {1u, 7u, 32u, 64u, 65u, 200u}) {
    std::vector<FlowKey> burst(n);
    std::vector<uint32_t> hashes(n);
    for (uint32_t i = 0; i < n; ++i) {
      burst[i] = keys[rng() % keys.size()];
      hashes[i] = FlowCache::hash(burst[i]);
    }
    std::vector<FlowEntry*> out(n, reinterpret_cast<FlowEntry*>(1));
    c.lookup_burst(burst.data(), hashes.data(), n, out.data());
    uint32_t hits = 0;
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_EQ(out[i], c.lookup(burst[i], hashes[i])) << n << " " << i;
      hits += out[i] != nullptr;
    }
    if (n >= 32) {
      EXPECT_GT(hits, 0u);
      EXPECT_LT(hits, n);
    }
  }
}

// Random inserts, hits, erases and sweeps on a small, crowded table, checked against a model:
// the spill counters and the sweep must never hide a live entry or keep a dead one, and entries
// that the cuckoo search moved keep their counters.
TEST(FlowCache, ChurnMatchesAModel) {
  FlowCache c(256);
  Rng rng;
  std::map<std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>, uint64_t> model;  // -> last_tsc
  std::map<std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>, uint64_t> pkts;   // -> packets
  uint64_t now = 1;
  const uint64_t idle = 500;
  for (int step = 0; step < 200000; ++step) {
    now += rng() % 3;
    const FlowKey k = key_n(static_cast<uint32_t>(rng() % 600));
    const uint32_t h = FlowCache::hash(k);
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        const bool had = c.lookup(k, h) != nullptr;
        ASSERT_EQ(had, model.count(tuple_of(k)) == 1) << step;
        const uint32_t before = c.size();
        FlowEntry* e = c.insert(k, h, now, idle);
        if (!e) {
          ASSERT_FALSE(had);
          break;
        }
        if (!had && c.size() == before) {
          // An eviction: exactly one model key vanished, and it was idle.
          int gone = 0;
          for (auto it = model.begin(); it != model.end();) {
            const FlowKey m = key(std::get<0>(it->first), std::get<1>(it->first), std::get<2>(it->first),
                                  std::get<3>(it->first), std::get<4>(it->first));
            if (!c.lookup(m, FlowCache::hash(m))) {
              ASSERT_GT(now - it->second, idle) << step;
              it = model.erase(it);
              ++gone;
            } else {
              ++it;
            }
          }
          ASSERT_EQ(gone, 1) << step;
        }
        model[tuple_of(k)] = c.stats(*e, now).last_tsc;
        if (!had) pkts[tuple_of(k)] = 0;
        break;
      }
      case 3:
      case 4:
        if (FlowEntry* e = c.lookup(k, h)) {
          c.touch(e, now, 1);
          model[tuple_of(k)] = now;
          ++pkts[tuple_of(k)];
        } else {
          ASSERT_EQ(model.count(tuple_of(k)), 0u) << step;
        }
        break;
      case 5:
        ASSERT_EQ(c.erase(k, h), model.erase(tuple_of(k)) == 1) << step;
        break;
      default: {
        c.expire(now, idle, 4);
        for (auto it = model.begin(); it != model.end();) {
          const FlowKey m = key(std::get<0>(it->first), std::get<1>(it->first), std::get<2>(it->first),
                                std::get<3>(it->first), std::get<4>(it->first));
          if (!c.lookup(m, FlowCache::hash(m))) {
            ASSERT_GT(now - it->second, idle) << step;
            it = model.erase(it);
          } else {
            ++it;
          }
        }
        break;
      }
    }
    ASSERT_EQ(c.size(), model.size()) << step;
  }
  expect_consistent(c);
  c.for_each([&](const FlowEntry& e) {
    const auto t = tuple_of(e.key());
    EXPECT_EQ(c.stats(e, now).pkts, pkts[t]);
    EXPECT_EQ(c.stats(e, now).bytes, pkts[t]);
  });
}

}  // namespace
}  // namespace sdwan::dp
