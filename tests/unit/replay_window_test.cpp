// ReplayWindow: RFC 4303 anti-replay with and without extended sequence numbers. Table-driven
// cases for each rule, window sizes, copies, and a randomized comparison with a reference
// model (a std::set of accepted numbers, and ESN inference written as plain 128-bit arithmetic).
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dataplane/esp/replay_window.hpp"

namespace sdwan::dp {
namespace {

using V = ReplayWindow::Verdict;

const char* name(V v) {
  switch (v) {
    case V::kOk: return "ok";
    case V::kReplay: return "replay";
    case V::kTooOld: return "too-old";
  }
  return "?";
}

// One packet: the low 32 bits on the wire, what check() must say and infer, and whether its ICV
// verifies (then accept() is called and must succeed).
struct Step {
  uint32_t lo;
  V want;
  uint64_t want64;
  bool icv_ok = true;
};

struct Case {
  std::string name;
  uint32_t size;
  bool esn;
  uint64_t start_top;  // accepted before the steps (0: none)
  std::vector<Step> steps;
  uint64_t want_top;
};

constexpr uint64_t k32 = uint64_t{1} << 32;

Step ok(uint64_t s) { return {static_cast<uint32_t>(s), V::kOk, s}; }
Step replay(uint64_t s) { return {static_cast<uint32_t>(s), V::kReplay, s}; }
Step too_old(uint64_t s) { return {static_cast<uint32_t>(s), V::kTooOld, s}; }
Step forged(uint64_t s) { return {static_cast<uint32_t>(s), V::kOk, s, false}; }
// With ESN, a number below the window is taken for the same low half one epoch on (A2.2);
// the real packet's ICV then fails, since the AAD held its real high half.
Step next_epoch(uint64_t s) { return {static_cast<uint32_t>(s), V::kOk, s + k32, false}; }

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"in order", 4096, true, 0, {ok(1), ok(2), ok(3), ok(4), ok(5)}, 5});
  c.push_back({"reordered inside the window", 4096, true, 0,
               {ok(1), ok(5), ok(3), ok(2), ok(4), replay(5), replay(3), ok(7), ok(6)}, 7});
  {
    Case d{"8 copies -> 7 drops", 4096, true, 0, {ok(6), ok(7)}, 7};
    for (int i = 0; i < 7; ++i) d.steps.push_back(replay(7));
    c.push_back(d);
  }
  c.push_back({"too old, exactly at the edge", 4096, false, 10000,
               {ok(10000 - 4095), too_old(10000 - 4096), too_old(1), replay(10000 - 4095)}, 10000});
  c.push_back({"ESN: below the window is the next epoch", 4096, true, 10000,
               {ok(10000 - 4095), next_epoch(10000 - 4096), next_epoch(1), replay(10000 - 4095)},
               10000});
  c.push_back({"jump far ahead, then an old one still inside the window", 4096, false, 0,
               {ok(1), ok(2), ok(3), ok(4000), ok(100), replay(100), ok(1'000'000),
                ok(1'000'000 - 4095), too_old(3999), too_old(4000)},
               1'000'000});
  c.push_back({"a forged packet far ahead does not move the window", 4096, true, 10,
               {forged(1'000'000), ok(5), replay(10), ok(11), forged(50'000), ok(9),
                ok(1'000'000), next_epoch(12)},
               1'000'000});
  c.push_back({"no ESN: a forged packet far ahead does not move the window", 4096, false, 10,
               {forged(1'000'000), ok(5), replay(10), ok(11), ok(1'000'000), too_old(12)},
               1'000'000});
  c.push_back({"a forged packet inside the window leaves its slot free", 4096, true, 100,
               {forged(50), ok(50), replay(50)}, 100});
  c.push_back({"ESN: across 2^32 into the next epoch", 4096, true, k32 - 16,
               {ok(k32 - 15), ok(k32 + 5), ok(k32 - 8), replay(k32 - 16), ok(k32 - 1),
                ok(k32 + 1), replay(k32 + 5),
                // Below the window: A2.2 takes it for the next epoch, where its ICV fails.
                {0xFFFFF000u, V::kOk, k32 + 0xFFFFF000u, false},
                ok(k32 + 4000), ok(k32 - 90), ok(k32), replay(k32)},
               k32 + 4000});
  c.push_back({"ESN: the previous epoch's tail while the window straddles 2^32", 4096, true,
               3 * k32 + 10,
               {ok(3 * k32 - 1), ok(3 * k32 - 4085), {0xFFFFF00Au, V::kOk, 3 * k32 + 0xFFFFF00Au, false},
                ok(3 * k32 + 9), replay(3 * k32 - 1), ok(3 * k32)},
               3 * k32 + 10});
  c.push_back({"ESN: nothing before epoch 0, and no sequence number 0", 4096, true, 0,
               {{0xFFFFFFFFu, V::kTooOld, 0xFFFFFFFFu}, too_old(0), ok(1), {0xFFFFFFF0u, V::kTooOld, 0xFFFFFFF0u}},
               1});
  c.push_back({"ESN: top's low half at size - 1, the last top whose window fits one epoch", 4096,
               true, k32 + 4095, {ok(k32), ok(k32 + 4096), next_epoch(k32), replay(k32 + 4095)},
               k32 + 4096});
  c.push_back({"ESN: top 4095 in epoch 0 reaches up to 2^32 - 1", 4096, true, 4095,
               {ok(1), ok(k32 - 1), replay(k32 - 1)}, k32 - 1});
  c.push_back({"ESN: sequence number 0 of epoch 1 is valid", 4096, true, k32 - 1,
               {ok(k32), replay(k32 - 1), ok(k32 - 2)}, k32});
  c.push_back({"no ESN: the last number, then nothing wraps", 4096, false, k32 - 2,
               {ok(k32 - 1), too_old(0), too_old(1), replay(k32 - 1), replay(k32 - 2),
                ok(k32 - 1 - 4095), too_old(k32 - 1 - 4096)},
               k32 - 1});
  c.push_back({"no ESN: 0 is never valid", 4096, false, 0, {too_old(0), ok(1), too_old(0)}, 1});
  c.push_back({"window 1024", 1024, false, 5000, {ok(5000 - 1023), too_old(5000 - 1024), ok(6000), ok(6000 - 1023), replay(5000), too_old(6000 - 1024)}, 6000});
  c.push_back({"window 65536", 65536, true, 100000,
               {ok(100000 - 65535), next_epoch(100000 - 65536), ok(100000 - 4096), replay(100000)},
               100000});
  c.push_back({"window 65536 without ESN", 65536, false, 100000,
               {ok(100000 - 65535), too_old(100000 - 65536), ok(100000 - 4096), replay(100000)},
               100000});
  return c;
}

TEST(ReplayWindow, Table) {
  for (const Case& tc : cases()) {
    SCOPED_TRACE(tc.name);
    ReplayWindow w(tc.size, tc.esn);
    ASSERT_EQ(w.size(), tc.size);
    ASSERT_TRUE(w.ok());
    if (tc.start_top != 0) {
      ASSERT_TRUE(w.accept(tc.start_top));
    }
    for (size_t i = 0; i < tc.steps.size(); ++i) {
      const Step& s = tc.steps[i];
      SCOPED_TRACE("step " + std::to_string(i) + " lo=" + std::to_string(s.lo));
      uint64_t s64 = 12345;
      const V v = w.check(s.lo, &s64);
      EXPECT_EQ(name(v), std::string(name(s.want)));
      EXPECT_EQ(s64, s.want64);
      if (v == V::kOk && s.icv_ok) {
        EXPECT_TRUE(w.accept(s64));
      }
    }
    EXPECT_EQ(w.top(), tc.want_top);
  }
}

TEST(ReplayWindow, DuplicateCopiesDropSeven) {
  ReplayWindow w;
  int drops = 0;
  for (int i = 0; i < 8; ++i) {
    uint64_t s64 = 0;
    if (w.check(42, &s64) == V::kOk && w.accept(s64)) continue;
    ++drops;
  }
  EXPECT_EQ(drops, 7);
}

TEST(ReplayWindow, CheckNeverChangesState) {
  ReplayWindow w;
  ASSERT_TRUE(w.accept(100));
  uint64_t s64 = 0;
  for (uint32_t lo : {1u, 99u, 100u, 101u, 5000u, 0xFFFFFFFFu}) (void)w.check(lo, &s64);
  EXPECT_EQ(w.top(), 100u);
  EXPECT_EQ(w.check(101, &s64), V::kOk);
  EXPECT_EQ(w.check(99, &s64), V::kOk);
  EXPECT_EQ(w.check(100, &s64), V::kReplay);
}

// Two copies in one burst both pass check(); only the first accept() may succeed. A packet
// that passed check() becomes too old when a later one of its burst moves the window past it.
TEST(ReplayWindow, AcceptRechecksWithinABurst) {
  ReplayWindow w(1024);
  ASSERT_TRUE(w.accept(10));
  uint64_t a = 0, b = 0, c = 0, d = 0;
  ASSERT_EQ(w.check(20, &a), V::kOk);
  ASSERT_EQ(w.check(20, &b), V::kOk);
  ASSERT_EQ(w.check(5, &c), V::kOk);
  ASSERT_EQ(w.check(2000, &d), V::kOk);
  EXPECT_TRUE(w.accept(a));
  EXPECT_FALSE(w.accept(b));
  EXPECT_TRUE(w.accept(d));
  EXPECT_FALSE(w.accept(c));
  EXPECT_FALSE(w.accept(0));
  EXPECT_EQ(w.top(), 2000u);
}

TEST(ReplayWindow, SizesRoundUpAndClamp) {
  EXPECT_EQ(ReplayWindow(100).size(), 1024u);
  EXPECT_EQ(ReplayWindow(3000).size(), 4096u);
  EXPECT_EQ(ReplayWindow(4096).size(), 4096u);
  EXPECT_EQ(ReplayWindow(65536).size(), 65536u);
  EXPECT_EQ(ReplayWindow(1u << 30).size(), ReplayWindow::kMaxSize);
  EXPECT_TRUE(ReplayWindow(1u << 20).ok());
  EXPECT_EQ(ReplayWindow().size(), 4096u);
  EXPECT_TRUE(ReplayWindow().esn());
  EXPECT_FALSE(ReplayWindow(4096, false).esn());
}

// The window edge at every offset within a word and across the ring's wrap: after the top
// moves by any amount (within a word, across words, past the whole ring), the numbers of the
// old window that are still inside the new one stay replays and every other one is new.
TEST(ReplayWindow, EdgesAtEveryOffset) {
  for (uint32_t size : {1024u, 4096u, 65536u}) {
    SCOPED_TRACE("size " + std::to_string(size));
    ReplayWindow w(size, false);
    uint64_t top = 0;
    std::mt19937_64 rng(size);
    for (int round = 0; round < 300; ++round) {
      const uint64_t step = round % 3 == 0 ? rng() % 70 + 1 : rng() % (size + 130) + 1;
      const uint64_t next = top + step;
      ASSERT_TRUE(w.accept(next));
      // Invariant: every number of (top - size, top] was accepted in earlier rounds.
      for (uint64_t s = next >= size ? next - size + 1 : 1; s < next; ++s) {
        uint64_t s64 = 0;
        const V want = s <= top ? V::kReplay : V::kOk;
        ASSERT_EQ(w.check(static_cast<uint32_t>(s), &s64), want) << "s=" << s << " top=" << next;
        if (want == V::kOk) {
          ASSERT_TRUE(w.accept(s));
        }
      }
      uint64_t s64 = 0;
      if (next >= size) {
        ASSERT_EQ(w.check(static_cast<uint32_t>(next - size), &s64), V::kTooOld);
      }
      ASSERT_EQ(w.check(static_cast<uint32_t>(next + 1), &s64), V::kOk);
      top = next;
    }
  }
}

TEST(ReplayWindow, CopiesAreIndependent) {
  for (uint32_t size : {4096u, 65536u}) {
    ReplayWindow a(size);
    for (uint64_t s = 1; s < 5000; s += 2) ASSERT_TRUE(a.accept(s));
    ReplayWindow b(a);
    uint64_t s64 = 0;
    EXPECT_EQ(b.top(), a.top());
    EXPECT_EQ(b.check(4001, &s64), V::kReplay);
    EXPECT_EQ(b.check(4000, &s64), V::kOk);
    ASSERT_TRUE(b.accept(4000));
    EXPECT_EQ(a.check(4000, &s64), V::kOk);
    ReplayWindow c(1024);
    c = b;
    EXPECT_EQ(c.size(), size);
    EXPECT_EQ(c.check(4000, &s64), V::kReplay);
    ReplayWindow d(std::move(c));
    EXPECT_EQ(d.check(4000, &s64), V::kReplay);
    EXPECT_EQ(d.check(4002, &s64), V::kOk);
  }
}

static_assert(sizeof(ReplayWindow) <= 576, "one SA's window: 512 B of bitmap and its fields");

// The reference: every accepted number in a set; ESN inference as "the number congruent to lo
// mod 2^32 in [top - size + 1, top - size + 1 + 2^32)", computed in 128 bits.
struct Model {
  uint64_t size;
  bool esn;
  uint64_t top = 0;
  std::set<uint64_t> seen;

  V check(uint32_t lo, uint64_t* s64) const {
    uint64_t s = lo;
    if (esn) {
      const __int128 bottom = static_cast<__int128>(top) - static_cast<__int128>(size) + 1;
      const uint32_t off = lo - static_cast<uint32_t>(static_cast<uint64_t>(bottom));
      const __int128 c = bottom + off;
      if (c < 0) {
        *s64 = lo;
        return V::kTooOld;
      }
      s = static_cast<uint64_t>(c);
    }
    *s64 = s;
    if (s == 0) return V::kTooOld;
    if (s > top) return V::kOk;
    if (top - s >= size) return V::kTooOld;
    return seen.count(s) ? V::kReplay : V::kOk;
  }
  bool accept(uint64_t s) {
    if (s == 0) return false;
    if (s <= top && (top - s >= size || seen.count(s))) return false;
    seen.insert(s);
    if (s > top) top = s;
    return true;
  }
  void prune() { seen.erase(seen.begin(), seen.lower_bound(top > size ? top - size : 0)); }
};

struct Stats {
  uint64_t ok = 0, replay = 0, too_old = 0, forged = 0, misinferred = 0, late_refusals = 0;
};

// A sender that mostly goes in order, with reordering (held-back packets released later),
// duplicates, jumps (small and, with ESN, across several epochs), very old packets and
// forgeries, delivered in bursts of up to 32: check() the whole burst, then accept() those whose
// ICV would verify, as the worker does.
Stats run_random(uint32_t size, bool esn, uint64_t start, uint64_t packets, uint64_t seed) {
  ReplayWindow w(size, esn);
  Model m{size, esn};
  std::mt19937_64 rng(seed);
  std::deque<uint64_t> held;
  std::vector<uint64_t> recent;
  uint64_t next = start;
  Stats st;
  const uint64_t limit = esn ? ~uint64_t{0} >> 1 : (k32 - 1);
  uint64_t sent = 0;
  uint64_t bursts = 0;
  struct Pkt {
    uint64_t real;
    bool forged;
    V v;
    uint64_t s64;
  };
  std::vector<Pkt> burst;
  if (start > 1) {
    EXPECT_TRUE(w.accept(start - 1));
    EXPECT_TRUE(m.accept(start - 1));
  }
  while (sent < packets) {
    burst.clear();
    const uint32_t n = 1 + rng() % 32;
    for (uint32_t i = 0; i < n; ++i, ++sent) {
      const uint32_t r = rng() % 1000;
      uint64_t t;
      if (r < 700 || recent.empty()) {
        t = next++;
        if (rng() % 8 == 0) {  // hold it back, send it later
          held.push_back(t);
          t = next++;
        }
      } else if (r < 800 && !held.empty()) {
        const size_t k = rng() % held.size();
        t = held[k];
        held.erase(held.begin() + static_cast<long>(k));
      } else if (r < 900) {
        t = recent[rng() % recent.size()];  // duplicate
      } else if (r < 950) {
        const uint64_t back = size + rng() % (8 * uint64_t{size});
        t = next > back + 1 ? next - back : 1;  // too old (or, with ESN, misinferred)
      } else if (r < 995) {
        next += 1 + rng() % 64;  // a few lost
        t = next++;
      } else if (r < 999) {
        next += 1 + rng() % (2 * uint64_t{size});  // a gap
        t = next++;
      } else {
        next += esn ? rng() % (uint64_t{1} << 31) : rng() % 100000;  // a leap
        t = next++;
      }
      if (t > limit) t = limit;
      if (held.size() > 64) held.pop_front();
      recent.push_back(t);
      if (recent.size() > 256) recent.erase(recent.begin());
      const bool forged = rng() % 20 == 0;
      uint64_t a = 0, b = 0;
      const V va = w.check(static_cast<uint32_t>(t), &a);
      const V vb = m.check(static_cast<uint32_t>(t), &b);
      if (va != vb || a != b) {
        ADD_FAILURE() << "check differs at packet " << sent << ": real " << t << " top " << m.top
                      << " window " << name(va) << "/" << a << " model " << name(vb) << "/" << b;
        return st;
      }
      burst.push_back({t, forged, va, a});
    }
    for (const Pkt& p : burst) {
      if (p.v == V::kReplay) ++st.replay;
      if (p.v == V::kTooOld) ++st.too_old;
      if (p.v != V::kOk) continue;
      // The ICV covers the inferred high half: a wrong inference fails like a forgery.
      if (p.forged || p.s64 != p.real) {
        st.forged += p.forged;
        st.misinferred += !p.forged;
        continue;
      }
      const bool ra = w.accept(p.s64);
      const bool rb = m.accept(p.s64);
      if (ra != rb) {
        ADD_FAILURE() << "accept differs at packet " << sent << ": " << p.s64;
        return st;
      }
      if (ra) ++st.ok; else ++st.late_refusals;
    }
    if (w.top() != m.top) {
      ADD_FAILURE() << "top differs: " << w.top() << " vs " << m.top;
      return st;
    }
    if (++bursts % 128 == 0) m.prune();
  }
  return st;
}

struct RandomCase {
  uint32_t size;
  bool esn;
  uint64_t start;
};

std::string random_case_name(const ::testing::TestParamInfo<RandomCase>& p) {
  return "w" + std::to_string(p.param.size) + (p.param.esn ? "_esn" : "_noesn");
}

class ReplayRandom : public ::testing::TestWithParam<RandomCase> {};

TEST_P(ReplayRandom, MatchesReferenceModelOverAMillionPackets) {
  const RandomCase rc = GetParam();
  const Stats st = run_random(rc.size, rc.esn, rc.start, 1'000'000, rc.size * 31 + rc.esn);
  // Every kind of event happened often enough to have been compared.
  EXPECT_GT(st.ok, 400'000u);
  EXPECT_GT(st.replay, 40'000u);
  // With ESN a number below the window is taken for one of the next epoch (A2.2) and then
  // fails its ICV, so only the window without ESN says kTooOld to old packets.
  if (rc.esn) EXPECT_GT(st.misinferred, 10'000u); else EXPECT_GT(st.too_old, 10'000u);
  EXPECT_GT(st.forged, 20'000u);
  EXPECT_GT(st.late_refusals, 100u);
}

INSTANTIATE_TEST_SUITE_P(Sizes, ReplayRandom,
                         ::testing::Values(RandomCase{4096, true, k32 - 300'000},
                                           RandomCase{1024, true, 1},
                                           RandomCase{65536, true, 5 * k32 - 1'000'000},
                                           RandomCase{4096, false, 1}),
                         random_case_name);

}  // namespace
}  // namespace sdwan::dp
