#include "dataplane/proto/proto.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace sdwan::dp {
namespace {

constexpr uint32_t kEthHdrLen = 14;
constexpr uint32_t kArpBodyLen = 28;
constexpr uint32_t kIpv4HdrLen = 20;
constexpr uint32_t kIcmpHdrLen = 8;
constexpr uint8_t kReplyTtl = 64;
// Precedence 6 (internetwork control), as RFC 1812 4.3.2.5 asks of ICMP errors a router sends.
constexpr uint8_t kIcmpErrorTos = 0xc0;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpOptEnd = 0;
constexpr uint8_t kTcpOptNop = 1;
constexpr uint8_t kTcpOptMss = 2;

inline uint16_t fold(uint64_t sum) noexcept {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

inline void put_mac(uint8_t* p, const MacAddr& m) noexcept { std::memcpy(p, m.b.data(), 6); }

inline MacAddr get_mac(const uint8_t* p) noexcept {
  MacAddr m;
  std::memcpy(m.b.data(), p, 6);
  return m;
}

uint32_t write_arp(uint8_t* out, const MacAddr& eth_dst, uint16_t op, const MacAddr& sha, Ipv4 spa,
                   const MacAddr& tha, Ipv4 tpa) noexcept {
  std::memset(out, 0, kArpFrameLen);
  put_mac(out, eth_dst);
  put_mac(out + 6, sha);
  be::store16(out + 12, kEtherArp);
  uint8_t* a = out + kEthHdrLen;
  be::store16(a, 1);
  be::store16(a + 2, kEtherIpv4);
  a[4] = 6;
  a[5] = 4;
  be::store16(a + 6, op);
  put_mac(a + 8, sha);
  be::store32(a + 14, spa.v);
  put_mac(a + 18, tha);
  be::store32(a + 24, tpa.v);
  return kArpFrameLen;
}

// ICMP types that ask for an answer (RFC 792, 950, 1256). Every other type is treated as an
// error, so an unknown type never draws an error back (RFC 1812 4.3.2.7 errs on that side).
inline bool icmp_is_query(uint8_t type) noexcept {
  switch (type) {
    case 0: case 8: case 9: case 10: case 13: case 14: case 15: case 16: case 17: case 18:
      return true;
    default:
      return false;
  }
}

// RFC 1812 4.3.2.7: a source that does not name one host (0/8, 127/8, multicast, class E and
// the limited broadcast inside it).
inline bool source_is_not_a_host(uint32_t src) noexcept {
  const uint32_t top = src >> 24;
  return top == 0 || top == 127 || top >= 224;
}

inline bool destination_is_group(uint32_t dst) noexcept {
  return (dst >> 28) == 0xe || dst == 0xffffffffu;
}

}  // namespace

uint16_t inet_checksum(const void* data, size_t len) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
  // 32-bit words summed in 64 bits cannot carry out below 16 GiB, so the loop needs no carry
  // handling; the sum is taken in host order, which RFC 1071 shows gives the stored bytes.
  uint64_t sum = 0;
  while (len >= 16) {
    uint32_t w[4];
    std::memcpy(w, p, 16);
    sum += uint64_t{w[0]} + w[1] + w[2] + w[3];
    p += 16;
    len -= 16;
  }
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    // The odd last byte is the high half of a zero-padded network-order word.
    sum += std::endian::native == std::endian::little ? uint64_t{*p} : uint64_t{*p} << 8;
  }
  return static_cast<uint16_t>(~fold(sum));
}

bool parse_arp(const uint8_t* frame, uint32_t len, const HeaderView& hv, ArpInfo* out) noexcept {
  if (hv.l3_off > len || len - hv.l3_off < kArpBodyLen) return false;
  const uint8_t* a = frame + hv.l3_off;
  if (be::load16(a) != 1 || be::load16(a + 2) != kEtherIpv4 || a[4] != 6 || a[5] != 4) return false;
  out->op = be::load16(a + 6);
  out->sha = get_mac(a + 8);
  out->spa = Ipv4{be::load32(a + 14)};
  out->tha = get_mac(a + 18);
  out->tpa = Ipv4{be::load32(a + 24)};
  return true;
}

uint32_t build_arp_reply(uint8_t* out, MacAddr our_mac, Ipv4 our_ip, const ArpInfo& request) noexcept {
  return write_arp(out, request.sha, kArpOpReply, our_mac, our_ip, request.sha, request.spa);
}

uint32_t build_arp_request(uint8_t* out, MacAddr our_mac, Ipv4 our_ip, Ipv4 target) noexcept {
  return write_arp(out, MacAddr::broadcast(), kArpOpRequest, our_mac, our_ip, MacAddr{}, target);
}

uint32_t build_garp(uint8_t* out, MacAddr our_mac, Ipv4 our_ip) noexcept {
  return write_arp(out, MacAddr::broadcast(), kArpOpRequest, our_mac, our_ip, MacAddr{}, our_ip);
}

bool icmp_echo_to_reply(uint8_t* frame, uint32_t len, const HeaderView& hv) noexcept {
  if (hv.l3 != L3::kIpv4 || hv.proto != kProtoIcmp || hv.fragment) return false;
  const uint32_t ihl = hv.l4_off - hv.l3_off;
  if (hv.l3_off + uint32_t{hv.ip_len} > len || hv.ip_len < ihl + kIcmpHdrLen) return false;
  uint8_t* ip = frame + hv.l3_off;
  uint8_t* icmp = frame + hv.l4_off;
  const uint32_t icmp_len = hv.ip_len - ihl;
  if (icmp[0] != kIcmpEchoRequest || inet_checksum(icmp, icmp_len) != 0) return false;

  uint8_t mac[6];
  std::memcpy(mac, frame, 6);
  std::memcpy(frame, frame + 6, 6);
  std::memcpy(frame + 6, mac, 6);
  uint8_t addr[4];
  std::memcpy(addr, ip + 12, 4);
  std::memcpy(ip + 12, ip + 16, 4);
  std::memcpy(ip + 16, addr, 4);
  ip[8] = kReplyTtl;
  ip[10] = ip[11] = 0;
  const uint16_t ip_sum = inet_checksum(ip, ihl);
  std::memcpy(ip + 10, &ip_sum, 2);

  // Only the type byte changes in the ICMP message, so its checksum is updated, not recomputed
  // over a payload that may be a full MTU long.
  const uint16_t old_word = be::load16(icmp);
  icmp[0] = kIcmpEchoReply;
  be::store16(icmp + 2, csum_update16(be::load16(icmp + 2), old_word, be::load16(icmp)));
  return true;
}

uint32_t build_icmp_error(uint8_t* out, uint32_t cap, const uint8_t* orig_ip, uint32_t orig_len,
                          uint8_t type, uint8_t code, Ipv4 our_ip, uint16_t next_hop_mtu) noexcept {
  if (orig_len < kIpv4HdrLen || (orig_ip[0] >> 4) != 4) return 0;
  const uint32_t ihl = (orig_ip[0] & 0x0fu) * 4;
  const uint32_t total = be::load16(orig_ip + 2);
  if (ihl < kIpv4HdrLen || ihl > orig_len || total < ihl) return 0;
  if ((be::load16(orig_ip + 6) & 0x1fff) != 0) return 0;
  const uint32_t src = be::load32(orig_ip + 12);
  if (source_is_not_a_host(src) || destination_is_group(be::load32(orig_ip + 16))) return 0;
  if (orig_ip[9] == kProtoIcmp) {
    // Without the type byte we cannot tell a query from an error, so stay silent.
    if (total == ihl || orig_len == ihl || !icmp_is_query(orig_ip[ihl])) return 0;
  }

  const uint32_t avail = std::min(total, orig_len);
  if (cap < kIpv4HdrLen + kIcmpHdrLen) return 0;
  const uint32_t quote = std::min({avail, kIcmpErrorMaxLen - kIpv4HdrLen - kIcmpHdrLen,
                                   cap - kIpv4HdrLen - kIcmpHdrLen});
  if (quote < std::min(avail, ihl + 8)) return 0;
  const uint32_t out_len = kIpv4HdrLen + kIcmpHdrLen + quote;

  uint8_t* ip = out;
  ip[0] = 0x45;
  ip[1] = kIcmpErrorTos;
  be::store16(ip + 2, static_cast<uint16_t>(out_len));
  // The original's identification keeps this stateless; with DF clear it only matters if the
  // error itself gets fragmented, and then (src, dst, id) is still unique enough.
  std::memcpy(ip + 4, orig_ip + 4, 2);
  be::store16(ip + 6, 0);
  ip[8] = kReplyTtl;
  ip[9] = kProtoIcmp;
  ip[10] = ip[11] = 0;
  be::store32(ip + 12, our_ip.v);
  be::store32(ip + 16, src);
  const uint16_t ip_sum = inet_checksum(ip, kIpv4HdrLen);
  std::memcpy(ip + 10, &ip_sum, 2);

  uint8_t* icmp = out + kIpv4HdrLen;
  icmp[0] = type;
  icmp[1] = code;
  icmp[2] = icmp[3] = 0;
  be::store16(icmp + 4, 0);
  be::store16(icmp + 6, type == kIcmpUnreachable && code == kIcmpCodeFragNeeded ? next_hop_mtu : 0);
  std::memcpy(icmp + kIcmpHdrLen, orig_ip, quote);
  const uint16_t icmp_sum = inet_checksum(icmp, kIcmpHdrLen + quote);
  std::memcpy(icmp + 2, &icmp_sum, 2);
  return out_len;
}

bool clamp_tcp_mss(uint8_t* frame, uint32_t len, const HeaderView& hv, uint16_t max_mss) noexcept {
  if ((hv.l3 != L3::kIpv4 && hv.l3 != L3::kIpv6) || hv.proto != kProtoTcp || !hv.first_fragment ||
      (hv.tcp_flags & kTcpSyn) == 0) {
    return false;
  }
  const uint32_t ip_end = uint32_t{hv.l3_off} + hv.ip_len;
  if (ip_end > len || hv.l4_off > ip_end || ip_end - hv.l4_off < 20) return false;
  uint8_t* tcp = frame + hv.l4_off;
  const uint32_t doff = (uint32_t{tcp[12]} >> 4) * 4;
  if (doff < 20 || doff > ip_end - hv.l4_off) return false;

  for (uint32_t i = 20; i < doff;) {
    const uint8_t kind = tcp[i];
    if (kind == kTcpOptEnd) break;
    if (kind == kTcpOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= doff) break;
    const uint32_t olen = tcp[i + 1];
    if (olen < 2 || i + olen > doff) break;
    if (kind == kTcpOptMss && olen == 4) {
      const uint16_t mss = be::load16(tcp + i + 2);
      if (mss <= max_mss) return false;
      be::store16(tcp + i + 2, max_mss);
      // The checksum sums 16-bit words aligned to the TCP header; a value at an odd offset
      // straddles two of them and contributes byte-swapped.
      const bool odd = ((i + 2) & 1) != 0;
      const uint16_t old_word = odd ? __builtin_bswap16(mss) : mss;
      const uint16_t new_word = odd ? __builtin_bswap16(max_mss) : max_mss;
      be::store16(tcp + 16, csum_update16(be::load16(tcp + 16), old_word, new_word));
      return true;
    }
    i += olen;
  }
  return false;
}

bool arp_from_frame(const uint8_t* frame, uint32_t len, ArpInfo* out) noexcept {
  HeaderView hv;
  return parse_frame(frame, len, &hv) == ParseError::kOk && hv.l3 == L3::kArp && parse_arp(frame, len, hv, out);
}

}  // namespace sdwan::dp
