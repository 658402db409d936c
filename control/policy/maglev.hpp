// Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI 2016, section 3.4), for the per-(class, peer) tables of the
// balance and spray modes (issue 6). A worker hashes a flow (or a packet) to an entry; the
// entry names the path. Control thread only; deterministic: the same paths and weights give
// the same table on every run and every appliance (a fixed 64-bit mix, never std::hash).
//
// Weights: each round every path adds its weight to a credit and claims one entry of its
// permutation when the credit reaches the largest weight (Katran's MaglevHashV2), so entries
// come out proportional to the weights. Disruption: a path that leaves frees only its own
// entries' preferences, and other paths keep most entries; a weight change moves entries
// mostly to or from that path (tests/unit/policy_test.cpp measures both).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sdwan::cp {

/// Smallest table: 251 (the largest prime below 256) gives about 1 % granularity of weight
/// even for two paths.
constexpr uint32_t kMaglevMinSize = 251;
/// Entries per path: Maglev's paper keeps the imbalance under 1 % with M >= 100 N.
constexpr uint32_t kMaglevEntriesPerPath = 100;

/// The table size for a peer with n paths: the smallest prime >= max(251, 100 n). Sized by the
/// paths the peer has (not by how many comply now), so that a path leaving or coming back never
/// changes the size, which would reshuffle every entry. 16 paths (the most per peer): 1601
/// entries, 3.2 KB; 4,000 paths in one table: 400,009 entries, 800 KB.
uint32_t maglev_size(size_t n_paths);

/// The smallest prime >= n (n >= 2).
uint32_t next_prime(uint32_t n);

/// One path of a table and its weight (0: not in the table).
struct MaglevPath {
  uint16_t id = 0;
  uint32_t weight = 1;
};

/// Builds tables, keeping its scratch between builds (no allocation once warm).
class MaglevBuilder {
 public:
  /// Fills table with m entries (m prime, at least 2) of path ids, each path's share
  /// proportional to its weight. Paths are taken in id order, whatever order they come in; ids
  /// must be distinct. No path with a weight: table is empty.
  void build(std::span<const MaglevPath> paths, uint32_t m, std::vector<uint16_t>& table);

 private:
  struct Perm {
    uint16_t id;
    uint32_t weight, pos, skip;  // pos: the next entry of the permutation to try
    uint64_t credit;
  };
  std::vector<Perm> perms_;
};

/// A path id's permutation seeds: splitmix64 of the id with two fixed seeds.
uint64_t maglev_hash(uint64_t x, uint64_t seed) noexcept;

}  // namespace sdwan::cp
