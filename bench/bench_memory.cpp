// bench_memory: what one random cache-line read costs on this machine as the memory touched
// grows, with 32 reads in flight (as the flow cache's burst lookups have them) and one at a
// time. The flow cache of 1,000,000 flows (2^21 slots) is 64 MiB of buckets: its line per lookup costs what this
// says at that size (bench/RESULTS.md, "Why the targets are not met"). Transparent huge pages
// are asked for, as the flow cache does. Never a test: figures only.
#include <sys/mman.h>
#include <x86intrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace {

constexpr int kInFlight = 32;
constexpr int kRounds = 4000;
constexpr int kRepeats = 15;

// Cycles per line: the best of kRepeats rounds of kRounds x kInFlight reads.
double cycles_per_line(const char* p, size_t lines, bool together, uint64_t* x, uint64_t* sink) {
  double best = 1e30;
  for (int rep = 0; rep < kRepeats; ++rep) {
    const uint64_t t0 = __rdtsc();
    for (int r = 0; r < kRounds; ++r) {
      size_t at[kInFlight];
      for (auto& a : at) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        a = (*x % lines) * 64;
      }
      if (together) {
        for (size_t a : at) __builtin_prefetch(p + a);
        for (size_t a : at) *sink += static_cast<unsigned char>(p[a]);
      } else {
        // One at a time: each address depends on the byte read before it.
        size_t dep = 0;
        for (size_t a : at) {
          dep = static_cast<unsigned char>(p[(a + dep) % (lines * 64)]);
          *sink += dep;
        }
      }
    }
    const double c = double(__rdtsc() - t0) / (kRounds * kInFlight);
    if (c < best) best = c;
  }
  return best;
}

}  // namespace

int main() {
  std::printf("random 64-byte reads over a region (THP asked for); TSC cycles per line\n");
  std::printf("%8s %18s %18s\n", "MiB", "32 in flight", "one at a time");
  uint64_t x = 0x9e3779b97f4a7c15ull, sink = 0;
  for (size_t mib : {1, 4, 16, 32, 64, 144, 512}) {
    const size_t bytes = mib << 20;
    auto* p = static_cast<char*>(std::aligned_alloc(2u << 20, bytes));
    if (p == nullptr) return 1;
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 1, bytes);
    const double together = cycles_per_line(p, bytes / 64, true, &x, &sink);
    const double alone = cycles_per_line(p, bytes / 64, false, &x, &sink);
    std::printf("%8zu %18.1f %18.1f\n", mib, together, alone);
    std::free(p);
  }
  return sink == 42 ? 2 : 0;
}
