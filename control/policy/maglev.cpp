#include "control/policy/maglev.hpp"

#include <algorithm>

namespace sdwan::cp {
namespace {

constexpr uint16_t kEmpty = 0xffff;  // dp::kNoPathId: never a path of a table
constexpr uint64_t kSeedOffset = 0x5344574e4d41474cULL;  // "SDWNMAGL"
constexpr uint64_t kSeedSkip = 0x534b49505345454eULL;

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; uint64_t{d} * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

}  // namespace

uint64_t maglev_hash(uint64_t x, uint64_t seed) noexcept {
  // splitmix64's finaliser: every input bit reaches every output bit.
  uint64_t z = x + seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint32_t next_prime(uint32_t n) {
  while (!is_prime(n)) ++n;
  return n;
}

uint32_t maglev_size(size_t n_paths) {
  const uint64_t want = std::max<uint64_t>(kMaglevMinSize, uint64_t{kMaglevEntriesPerPath} * n_paths);
  return next_prime(static_cast<uint32_t>(want));
}

void MaglevBuilder::build(std::span<const MaglevPath> paths, uint32_t m, std::vector<uint16_t>& table) {
  perms_.clear();
  uint32_t max_w = 0;
  for (const MaglevPath& p : paths) {
    if (p.weight == 0) continue;
    const uint32_t offset = static_cast<uint32_t>(maglev_hash(p.id, kSeedOffset) % m);
    const uint32_t skip = static_cast<uint32_t>(maglev_hash(p.id, kSeedSkip) % (m - 1)) + 1;
    perms_.push_back({p.id, p.weight, offset, skip, 0});
    max_w = std::max(max_w, p.weight);
  }
  table.clear();
  if (perms_.empty()) return;
  // The order of turns decides ties between paths wanting one entry: id order makes it
  // independent of how the caller listed them.
  std::sort(perms_.begin(), perms_.end(), [](const Perm& a, const Perm& b) { return a.id < b.id; });
  table.assign(m, kEmpty);
  uint32_t filled = 0;
  while (true) {
    for (Perm& p : perms_) {
      p.credit += p.weight;
      if (p.credit < max_w) continue;
      p.credit -= max_w;
      // m is prime and 1 <= skip < m, so offset + j * skip (mod m) visits every entry once;
      // pos walks it by addition instead of a division per step.
      while (table[p.pos] != kEmpty) p.pos = p.pos + p.skip >= m ? p.pos + p.skip - m : p.pos + p.skip;
      table[p.pos] = p.id;
      p.pos = p.pos + p.skip >= m ? p.pos + p.skip - m : p.pos + p.skip;
      if (++filled == m) return;
    }
  }
}

}  // namespace sdwan::cp
