// Traffic classes as the workers see them (issue 6): the match rules control compiled from the
// config, and per (class, peer) the paths the policy compiler chose from live measurements.
// Part of the snapshot (Snapshot::policy), immutable once published; a worker classifies a
// flow once, on its first packet, and keeps the class in its flow cache entry.
#pragma once

#include <cstdint>
#include <vector>

namespace sdwan::dp {

/// How a class uses its paths.
enum class ClassMode : uint8_t {
  kBest,       ///< every flow on the best compliant path (primary)
  kBalance,    ///< flows spread by weight (lut), each flow sticky
  kSpray,      ///< packets spread by weight (lut); the receiver restores the order
  kDuplicate,  ///< each packet on primary and secondary (two uplinks); the receiver keeps the first
};

/// A path id that names no path.
constexpr uint16_t kNoPathId = 0xffff;
/// Most classes (class ids 0 .. kMaxClasses - 1; the overlay header carries one byte).
constexpr uint32_t kMaxClasses = 64;

/// One match rule. A packet matches when every field matches; rules are tried in order and
/// the first match gives the class, else Policy::default_class.
struct ClassRule {
  uint32_t src = 0, src_mask = 0;  ///< host order; mask 0: any source
  uint32_t dst = 0, dst_mask = 0;  ///< host order; mask 0: any destination
  uint8_t proto = 0;               ///< IP protocol; 0: any
  uint8_t dscp = 0xff;             ///< 0..63; 0xff: any
  uint16_t sport_lo = 0, sport_hi = 0xffff;  ///< inclusive; only for TCP/UDP (others match 0..0xffff only)
  uint16_t dport_lo = 0, dport_hi = 0xffff;
  uint8_t cls = 0;                 ///< the class it gives
};

/// What one class uses towards one peer.
struct ClassPaths {
  ClassMode mode = ClassMode::kBest;
  uint16_t primary = kNoPathId;    ///< best / duplicate: the path; balance / spray: when lut is empty
  uint16_t secondary = kNoPathId;  ///< duplicate: the second copy's path (another uplink); none: no copy
  bool duplicating = true;         ///< duplicate: false while an adaptive class needs no copy
  uint32_t reorder_hold_us = 0;    ///< spray: how long the receiver may hold a packet for order
  std::vector<uint16_t> lut;       ///< balance / spray: consistent-hash (Maglev) table of path ids,
                                   ///< a prime number of entries; empty: use primary
};

/// The whole policy of one snapshot.
struct Policy {
  std::vector<ClassRule> rules;    ///< in order
  uint8_t n_classes = 1;
  uint8_t default_class = 0;
  uint16_t n_peers = 0;
  std::vector<ClassPaths> paths;   ///< [cls * n_peers + peer]
  /// A live reload changed the classes: a flow whose entry was decided in a snapshot generation
  /// before this one is classified again on its next packet (same class: nothing changes for it).
  uint32_t reclassify_gen = 0;

  const ClassPaths& at(uint8_t cls, uint16_t peer) const noexcept { return paths[size_t{cls} * n_peers + peer]; }
};

}  // namespace sdwan::dp
