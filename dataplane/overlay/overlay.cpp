#include "dataplane/overlay/overlay.hpp"

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstring>

namespace sdwan::dp {

bool overlay_encap(rte_mbuf* m, uint16_t l3_off, const PathInfo& p, uint8_t cls, uint8_t stream,
                   uint64_t seq, uint16_t ip_id) noexcept {
  constexpr uint16_t kAdd = kOuterLen + sizeof(OverlayHdr);
  if (rte_pktmbuf_headroom(m) + l3_off < kAdd) return false;
  rte_pktmbuf_adj(m, l3_off);
  const uint16_t inner_len = static_cast<uint16_t>(rte_pktmbuf_pkt_len(m));
  auto* h = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kAdd));
  if (h == nullptr) {  // unreachable after the headroom check; keeps the mbuf as it was
    rte_pktmbuf_prepend(m, l3_off);
    return false;
  }

  auto* eth = reinterpret_cast<rte_ether_hdr*>(h);
  std::memcpy(&eth->dst_addr, p.dst_mac.b.data(), 6);
  std::memcpy(&eth->src_addr, p.src_mac.b.data(), 6);
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);

  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(h + kEthLen);
  ip->version_ihl = 0x45;
  ip->type_of_service = 0;
  ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(inner_len + kTunnelL3Overhead));
  ip->packet_id = rte_cpu_to_be_16(ip_id);
  // DF: a tunnel packet fragmented on the WAN would be lost (no reassembly at the peer);
  // the MTU check before encapsulation keeps us under the uplink MTU instead.
  ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->hdr_checksum = 0;
  ip->src_addr = rte_cpu_to_be_32(p.src_ip.v);
  ip->dst_addr = rte_cpu_to_be_32(p.dst_ip.v);
  ip->hdr_checksum = rte_ipv4_cksum(ip);

  auto* udp = reinterpret_cast<rte_udp_hdr*>(h + kEthLen + 20);
  udp->src_port = rte_cpu_to_be_16(p.src_port);
  udp->dst_port = rte_cpu_to_be_16(p.dst_port);
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(inner_len + 8 + sizeof(OverlayHdr)));
  // Zero UDP checksum over IPv4, as RFC 3948 recommends for ESP-in-UDP: the payload carries
  // its own integrity once ESP is in place, and the IPv4 header has its checksum.
  udp->dgram_cksum = 0;

  auto* ov = reinterpret_cast<OverlayHdr*>(h + kOuterLen);
  ov->ver_type = static_cast<uint8_t>(kOverlayVersion << 4 | static_cast<uint8_t>(OverlayType::kData));
  ov->cls = cls;
  ov->stream = stream;
  ov->flags = 0;
  ov->reserved = 0;
  ov->seq = rte_cpu_to_be_64(seq);
  m->l2_len = kEthLen;
  m->l3_len = 20;
  return true;
}

bool overlay_decap(rte_mbuf* m, uint16_t l4_off, OverlayHdr* out) noexcept {
  const uint32_t len = rte_pktmbuf_data_len(m);
  if (m->nb_segs != 1 || len < l4_off + 8u + sizeof(OverlayHdr) + 1) return false;
  auto* base = rte_pktmbuf_mtod(m, uint8_t*);
  const auto* udp = reinterpret_cast<const rte_udp_hdr*>(base + l4_off);
  const uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
  if (ulen < 8 + sizeof(OverlayHdr) + 1 || l4_off + ulen > len) return false;
  std::memcpy(out, base + l4_off + 8, sizeof(OverlayHdr));
  if ((out->ver_type >> 4) != kOverlayVersion || (out->ver_type & 0xf) != static_cast<uint8_t>(OverlayType::kData))
    return false;
  const uint8_t* inner = base + l4_off + 8 + sizeof(OverlayHdr);
  const uint8_t ver = inner[0] >> 4;
  if (ver != 4 && ver != 6) return false;
  out->seq = rte_be_to_cpu_64(out->seq);
  // Trim Ethernet padding or anything past the UDP datagram, then swap outer for Ethernet.
  rte_pktmbuf_trim(m, static_cast<uint16_t>(len - (l4_off + ulen)));
  const uint16_t strip = static_cast<uint16_t>(l4_off + 8 + sizeof(OverlayHdr) - kEthLen);
  rte_pktmbuf_adj(m, strip);
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  std::memset(eth, 0, 12);
  eth->ether_type = rte_cpu_to_be_16(ver == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
  return true;
}

}  // namespace sdwan::dp
