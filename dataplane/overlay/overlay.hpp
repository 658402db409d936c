// The overlay header that travels inside the tunnel between two appliances, and the outer
// Ethernet/IPv4/UDP headers of a path. Wire format: docs/wire-format.md.
#pragma once

#include <cstdint>

#include "dataplane/api/snapshot.hpp"

struct rte_mbuf;

namespace sdwan::dp {

constexpr uint8_t kOverlayVersion = 1;

/// Kinds of overlay payload (low nibble of ver_type).
enum class OverlayType : uint8_t { kData = 0, kProbe = 1 };

/// 16 bytes, network byte order, in front of the inner IP packet.
struct __attribute__((packed)) OverlayHdr {
  uint8_t ver_type;  // version << 4 | type
  uint8_t cls;       // traffic class id (0 = default)
  uint8_t stream;    // sender's worker index: sequence numbers count per (peer, stream)
  uint8_t flags;     // zero for now
  uint32_t reserved; // zero
  uint64_t seq;      // per (peer, stream), for de-duplication and reordering
};
static_assert(sizeof(OverlayHdr) == 16);

constexpr uint32_t kEthLen = 14;
constexpr uint32_t kOuterLen = kEthLen + 20 + 8;            // Ethernet + IPv4 + UDP
/// Bytes the tunnel adds on the uplink at L3 (outer IPv4 + UDP + overlay).
constexpr uint32_t kTunnelL3Overhead = 20 + 8 + sizeof(OverlayHdr);

/// Replaces the frame's Ethernet header (l3_off bytes) with the path's outer headers and an
/// overlay header. False (mbuf untouched) when the headroom is too small.
bool overlay_encap(rte_mbuf* m, uint16_t l3_off, const PathInfo& p, uint8_t cls, uint8_t stream,
                   uint64_t seq, uint16_t ip_id) noexcept;

/// Checks the outer UDP length and overlay header of a frame whose UDP header starts at l4_off,
/// then strips outer headers + overlay and writes a fresh Ethernet header (type IPv4 or IPv6
/// from the inner version nibble, MACs zero). False (mbuf untouched) if malformed.
bool overlay_decap(rte_mbuf* m, uint16_t l4_off, OverlayHdr* out) noexcept;

}  // namespace sdwan::dp
