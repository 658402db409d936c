// The overlay header that travels inside the ESP tunnel between two appliances, in front of
// the inner packet. Wire format: docs/wire-format.md.
#pragma once

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>

#include "dataplane/api/snapshot.hpp"
#include "dataplane/esp/esp.hpp"

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

/// Largest inner IP packet a path of L3 MTU mtu carries: ESP in UDP (esp.hpp) around our
/// overlay header and the packet.
constexpr uint32_t tunnel_max_inner(uint32_t mtu) noexcept {
  const uint32_t esp = esp_max_inner(mtu);
  return esp < sizeof(OverlayHdr) ? 0 : esp - static_cast<uint32_t>(sizeof(OverlayHdr));
}

/// Overlay flags of a data packet.
constexpr uint8_t kOverlayDuplicated = 0x02;  ///< another copy travels on another path: de-duplicate
constexpr uint8_t kOverlaySprayed = 0x04;     ///< sprayed over paths: reserved holds the spray sequence

/// Replaces the frame's Ethernet header (l3_off bytes) with an overlay header: the mbuf then
/// holds what ESP encrypts with next header 253. False (mbuf untouched) when the headroom is
/// too small for it and the ESP headers. flags and reserved as docs/wire-format.md says.
/// Inline: every packet to a peer takes it.
inline bool overlay_push(rte_mbuf* m, uint16_t l3_off, uint8_t cls, uint8_t stream, uint64_t seq, uint8_t flags = 0,
                         uint32_t reserved = 0) noexcept {
  if (m->nb_segs != 1 || rte_pktmbuf_headroom(m) + l3_off < sizeof(OverlayHdr) + kEspPrepend) return false;
  m->data_off = static_cast<uint16_t>(m->data_off + l3_off - sizeof(OverlayHdr));
  m->data_len = static_cast<uint16_t>(m->data_len - l3_off + sizeof(OverlayHdr));
  m->pkt_len = m->data_len;
  // Two 64-bit stores straight into the packet: a header built aside and copied would be narrow
  // stores read back wide, which the CPU cannot forward (most of overlay_push's time in perf).
  const uint64_t w0 = uint64_t{kOverlayVersion << 4 | static_cast<uint8_t>(OverlayType::kData)} |
                      uint64_t{cls} << 8 | uint64_t{stream} << 16 | uint64_t{flags} << 24 |
                      uint64_t{rte_cpu_to_be_32(reserved)} << 32;
  const uint64_t w1 = rte_cpu_to_be_64(seq);
  auto* d = rte_pktmbuf_mtod(m, uint8_t*);
  std::memcpy(d, &w0, 8);
  std::memcpy(d + 8, &w1, 8);
  return true;
}

/// Reads the overlay header in front of a decrypted payload into out: true when it is one of
/// ours (one segment, version, type data, an IPv4 or IPv6 packet behind it, room for the
/// Ethernet header overlay_pull writes). Leaves m alone.
/// Inline: every packet from a peer takes it.
inline bool overlay_peek(const rte_mbuf* m, OverlayHdr* out) noexcept {
  const uint32_t len = rte_pktmbuf_data_len(m);
  if (m->nb_segs != 1 || len < sizeof(OverlayHdr) + 1 || rte_pktmbuf_headroom(m) + sizeof(OverlayHdr) < kEthLen)
    return false;
  const auto* base = rte_pktmbuf_mtod(m, const uint8_t*);
  // Field by field from the packet: a 16-byte copy read back in narrower pieces is a store the
  // CPU cannot forward.
  if ((base[0] >> 4) != kOverlayVersion || (base[0] & 0xf) != static_cast<uint8_t>(OverlayType::kData)) return false;
  const uint8_t ver = base[sizeof(OverlayHdr)] >> 4;
  if (ver != 4 && ver != 6) return false;
  out->ver_type = base[0];
  out->cls = base[1];
  out->stream = base[2];
  out->flags = base[3];
  uint32_t reserved;
  uint64_t seq;
  std::memcpy(&reserved, base + 4, 4);
  std::memcpy(&seq, base + 8, 8);
  out->reserved = rte_be_to_cpu_32(reserved);
  out->seq = rte_be_to_cpu_64(seq);
  return true;
}

/// Replaces the overlay header overlay_peek accepted with a blank Ethernet header (type IPv4 or
/// IPv6, MACs zero), so the frame parses like one from the LAN.
inline void overlay_strip(rte_mbuf* m) noexcept {
  const auto* base = rte_pktmbuf_mtod(m, const uint8_t*);
  const bool v4 = base[sizeof(OverlayHdr)] >> 4 == 4;
  m->data_off = static_cast<uint16_t>(m->data_off + sizeof(OverlayHdr) - kEthLen);
  m->data_len = static_cast<uint16_t>(m->data_len - sizeof(OverlayHdr) + kEthLen);
  m->pkt_len = m->data_len;
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  std::memset(eth, 0, 12);
  eth->ether_type = rte_cpu_to_be_16(v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
}

/// Takes a decrypted payload that starts with the overlay header: checks version, type and the
/// inner IP version (overlay_peek), then replaces the overlay header with a blank Ethernet
/// header (overlay_strip). False (mbuf untouched) if malformed.
inline bool overlay_pull(rte_mbuf* m, OverlayHdr* out) noexcept {
  if (!overlay_peek(m, out)) return false;
  overlay_strip(m);
  return true;
}

}  // namespace sdwan::dp
