#include "dataplane/overlay/overlay.hpp"

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstring>

namespace sdwan::dp {

bool overlay_pull(rte_mbuf* m, OverlayHdr* out) noexcept {
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
  m->data_off = static_cast<uint16_t>(m->data_off + sizeof(OverlayHdr) - kEthLen);
  m->data_len = static_cast<uint16_t>(len - sizeof(OverlayHdr) + kEthLen);
  m->pkt_len = m->data_len;
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  std::memset(eth, 0, 12);
  eth->ether_type = rte_cpu_to_be_16(ver == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
  return true;
}

}  // namespace sdwan::dp
