#include "dataplane/parse/parse.hpp"

#include "dataplane/proto/proto.hpp"

namespace sdwan::dp {
namespace {

constexpr uint32_t kEthHdrLen = 14;
constexpr uint32_t kVlanTagLen = 4;
constexpr uint32_t kIpv4MinHdrLen = 20;
constexpr uint32_t kIpv6HdrLen = 40;
// Bounds the IPv6 extension walk so a crafted chain costs a fixed amount of work.
constexpr int kMaxIpv6Extensions = 4;

// The header checksum holds when the header sums to 0xffff. The option-less header is
// summed inline (ipv4_checksum20_ok); headers with options take the general routine.
inline bool ipv4_checksum_ok(const uint8_t* ip, uint32_t ihl) noexcept {
  if (ihl != kIpv4MinHdrLen) return inet_checksum(ip, ihl) == 0;
  return ipv4_checksum20_ok(ip);
}

// Ports, ICMP type and TCP flags, read only from bytes inside the IP length: a cut L4 header
// leaves them 0 rather than failing the packet, because forwarding does not need them.
inline void parse_l4(const uint8_t* frame, uint32_t l4_off, uint32_t ip_end, HeaderView* hv) noexcept {
  if (l4_off >= ip_end) return;
  const uint8_t* l4 = frame + l4_off;
  const uint32_t avail = ip_end - l4_off;
  switch (hv->proto) {
    case kProtoTcp:
      if (avail >= 14) hv->tcp_flags = l4[13];
      [[fallthrough]];
    case kProtoUdp:
    case kProtoSctp:
      if (avail >= 4) {
        hv->sport = be::load16(l4);
        hv->dport = be::load16(l4 + 2);
      }
      break;
    case kProtoIcmp:
    case kProtoIcmp6:
      hv->icmp_type = l4[0];
      break;
    default:
      break;
  }
}

ParseError parse_ipv4(const uint8_t* frame, uint32_t len, uint32_t off, HeaderView* hv,
                      bool verify_ip_checksum) noexcept {
  if (len - off < kIpv4MinHdrLen) return ParseError::kRunt;
  const uint8_t* ip = frame + off;
  const uint32_t ihl = (ip[0] & 0x0fu) * 4;
  if ((ip[0] >> 4) != 4 || ihl < kIpv4MinHdrLen) return ParseError::kBadIpHeader;
  if (len - off < ihl) return ParseError::kRunt;
  const uint32_t total = be::load16(ip + 2);
  if (total < ihl) return ParseError::kBadIpHeader;
  // A frame shorter than the datagram it announces was cut on the way: that is a runt.
  if (total > len - off) return ParseError::kRunt;
  if (verify_ip_checksum && !ipv4_checksum_ok(ip, ihl)) return ParseError::kBadIpChecksum;

  const uint16_t frag = be::load16(ip + 6);
  const bool mf = (frag & 0x2000) != 0;
  const uint16_t frag_off = frag & 0x1fff;
  hv->l3 = L3::kIpv4;
  hv->l4_off = static_cast<uint16_t>(off + ihl);
  hv->ip_len = static_cast<uint16_t>(total);
  hv->proto = ip[9];
  hv->ttl = ip[8];
  hv->dscp = ip[1] >> 2;
  hv->fragment = mf || frag_off != 0;
  hv->first_fragment = frag_off == 0;
  hv->src4 = be::load32(ip + 12);
  hv->dst4 = be::load32(ip + 16);
  if (frag_off == 0) parse_l4(frame, off + ihl, off + total, hv);
  return ParseError::kOk;
}

ParseError parse_ipv6(const uint8_t* frame, uint32_t len, uint32_t off, HeaderView* hv) noexcept {
  if (len - off < kIpv6HdrLen) return ParseError::kRunt;
  const uint8_t* ip = frame + off;
  if ((ip[0] >> 4) != 6) return ParseError::kBadIpHeader;
  const uint32_t total = kIpv6HdrLen + be::load16(ip + 4);
  if (total > len - off) return ParseError::kRunt;

  const uint32_t end = off + total;
  uint32_t l4 = off + kIpv6HdrLen;
  uint8_t next = ip[6];
  bool fragment = false;
  bool first = true;
  // Hop-by-hop, routing, destination options and fragment headers are walked so the flow
  // key sees the real upper layer; anything else (ESP, AH, no-next-header) ends the walk.
  for (int i = 0; i < kMaxIpv6Extensions; ++i) {
    if (next != 0 && next != 43 && next != 60 && next != 44) break;
    if (end - l4 < 8) return ParseError::kBadIpHeader;
    const uint8_t* ext = frame + l4;
    uint32_t ext_len = 8;
    if (next == 44) {
      fragment = true;
      first = (be::load16(ext + 2) & 0xfff8) == 0;
    } else {
      ext_len = (uint32_t{ext[1]} + 1) * 8;
      if (end - l4 < ext_len) return ParseError::kBadIpHeader;
    }
    next = ext[0];
    l4 += ext_len;
    // Past a non-first fragment header lies payload, not more headers.
    if (!first) break;
  }
  hv->l3 = L3::kIpv6;
  hv->l4_off = static_cast<uint16_t>(l4);
  hv->ip_len = static_cast<uint16_t>(total);
  hv->proto = next;
  hv->ttl = ip[7];
  hv->dscp = static_cast<uint8_t>((be::load16(ip) >> 6) & 0x3f);
  hv->fragment = fragment;
  hv->first_fragment = first;
  std::memcpy(hv->src6.data(), ip + 8, 16);
  std::memcpy(hv->dst6.data(), ip + 24, 16);
  if (first) parse_l4(frame, l4, end, hv);
  return ParseError::kOk;
}

}  // namespace

ParseError parse_frame(const uint8_t* frame, uint32_t len, HeaderView* hv,
                       bool verify_ip_checksum) noexcept {
  // Untagged IPv4 without options, whole and with a good checksum: everything is at a fixed
  // offset, so the view is filled in one go, without the walk's branches. Anything else (or
  // any error) takes the walk, which says why.
  if (len >= kEthHdrLen + kIpv4MinHdrLen && be::load16(frame + 12) == kEtherIpv4 && frame[kEthHdrLen] == 0x45)
      [[likely]] {
    const uint8_t* ip = frame + kEthHdrLen;
    const uint32_t total = be::load16(ip + 2);
    if (total >= kIpv4MinHdrLen && total <= len - kEthHdrLen &&
        (!verify_ip_checksum || ipv4_checksum_ok(ip, kIpv4MinHdrLen))) [[likely]] {
      const uint16_t frag = be::load16(ip + 6);
      const uint16_t frag_off = frag & 0x1fff;
      // Straight into *hv: a view built aside and copied would be narrow stores read back
      // wide, which the CPU cannot forward.
      *hv = HeaderView{};
      hv->l3 = L3::kIpv4;
      hv->l3_off = kEthHdrLen;
      hv->l4_off = kEthHdrLen + kIpv4MinHdrLen;
      hv->ethertype = kEtherIpv4;
      hv->ip_len = static_cast<uint16_t>(total);
      hv->proto = ip[9];
      hv->ttl = ip[8];
      hv->dscp = ip[1] >> 2;
      hv->fragment = (frag & 0x2000) != 0 || frag_off != 0;
      hv->first_fragment = frag_off == 0;
      hv->src4 = be::load32(ip + 12);
      hv->dst4 = be::load32(ip + 16);
      if (frag_off == 0) parse_l4(frame, kEthHdrLen + kIpv4MinHdrLen, kEthHdrLen + total, hv);
      return ParseError::kOk;
    }
  }
  return parse_frame_reference(frame, len, hv, verify_ip_checksum);
}

ParseError parse_frame_reference(const uint8_t* frame, uint32_t len, HeaderView* hv,
                                 bool verify_ip_checksum) noexcept {
  *hv = HeaderView{};
  hv->first_fragment = true;
  if (len < kEthHdrLen) return ParseError::kRunt;
  uint32_t off = kEthHdrLen;
  uint16_t type = be::load16(frame + 12);
  for (int tags = 0; type == kEtherVlan || type == kEtherQinQ; ++tags) {
    hv->ethertype = type;
    if (tags == 2) return ParseError::kBadL2;
    if (len - off < kVlanTagLen) return ParseError::kRunt;
    type = be::load16(frame + off + 2);
    off += kVlanTagLen;
  }
  hv->ethertype = type;
  hv->l3_off = static_cast<uint16_t>(off);
  hv->l4_off = static_cast<uint16_t>(off);
  switch (type) {
    case kEtherIpv4:
      return parse_ipv4(frame, len, off, hv, verify_ip_checksum);
    case kEtherIpv6:
      return parse_ipv6(frame, len, off, hv);
    case kEtherArp:
      hv->l3 = L3::kArp;
      return ParseError::kOk;
    default:
      return ParseError::kBadL2;
  }
}

}  // namespace sdwan::dp
