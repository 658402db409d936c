// Per-packet header parsing: one pass over Ethernet, up to two VLAN tags, IPv4/IPv6 and the
// first L4 bytes, into a small view the rest of the pipeline reads instead of the packet.
// Works on plain byte buffers (no mbuf, no EAL), so unit tests and fuzzers call it directly.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

namespace sdwan::dp {

/// Big-endian loads and stores on unaligned wire bytes. Any thread; no bounds checks.
namespace be {
/// Reads a network-order 16-bit field at p.
inline uint16_t load16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return __builtin_bswap16(v);
}
/// Reads a network-order 32-bit field at p.
inline uint32_t load32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
/// Writes v at p in network order.
inline void store16(uint8_t* p, uint16_t v) noexcept {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, 2);
}
/// Writes v at p in network order.
inline void store32(uint8_t* p, uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
}  // namespace be

/// True when the 20-byte IPv4 header at ip (no options) has a good header checksum: it sums
/// to 0xffff. Word by word from the packet: a copy to the stack first would be one wide store
/// read back as narrow loads, which the CPU cannot forward (a stall of 20% of parse_frame in
/// perf). Two 64-bit words and a 32-bit one, with the end-around carries of one's complement.
inline bool ipv4_checksum20_ok(const uint8_t* ip) noexcept {
  uint64_t a, b;
  uint32_t c;
  std::memcpy(&a, ip, 8);
  std::memcpy(&b, ip + 8, 8);
  std::memcpy(&c, ip + 16, 4);
  uint64_t sum = a + b;
  sum += sum < a;
  sum += c;
  sum += sum < c;
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return sum == 0xffff;
}

/// Ethertypes and IP protocol numbers the dataplane tells apart.
constexpr uint16_t kEtherIpv4 = 0x0800;
/// ARP ethertype.
constexpr uint16_t kEtherArp = 0x0806;
/// IPv6 ethertype.
constexpr uint16_t kEtherIpv6 = 0x86dd;
/// 802.1Q customer tag.
constexpr uint16_t kEtherVlan = 0x8100;
/// 802.1ad service tag (outer tag of QinQ).
constexpr uint16_t kEtherQinQ = 0x88a8;
/// ICMP protocol number.
constexpr uint8_t kProtoIcmp = 1;
/// TCP protocol number.
constexpr uint8_t kProtoTcp = 6;
/// UDP protocol number.
constexpr uint8_t kProtoUdp = 17;
/// SCTP protocol number.
constexpr uint8_t kProtoSctp = 132;
/// ICMPv6 protocol number.
constexpr uint8_t kProtoIcmp6 = 58;

/// Network layer of a parsed frame.
enum class L3 : uint8_t { kNone, kArp, kIpv4, kIpv6 };

/// Why parse_frame refused a frame; maps 1:1 to Drop::kRunt .. Drop::kBadIpChecksum.
enum class ParseError : uint8_t { kOk, kRunt, kBadL2, kBadIpHeader, kBadIpChecksum };

/// What the pipeline needs from a frame's headers. Offsets are from the frame start; multi-byte
/// values are host order. Filled by parse_frame; every field is written on every call.
struct HeaderView {
  L3 l3;                  ///< kArp, kIpv4 or kIpv6 on success (kNone on failure)
  uint16_t l3_off;        ///< first byte after the Ethernet header and VLAN tags
  uint16_t l4_off;        ///< first byte after the IP header (IPv6: after the extensions walked)
  uint16_t ethertype;     ///< innermost ethertype, after up to two VLAN tags
  uint16_t ip_len;        ///< IPv4 total length / 40 + IPv6 payload length
  uint8_t proto;          ///< IPv4 protocol / IPv6 upper-layer header after the walked extensions
  uint8_t ttl;            ///< TTL / hop limit
  uint8_t dscp;           ///< DSCP (TOS / traffic class >> 2)
  bool fragment;          ///< IPv4 MF or offset != 0 / an IPv6 fragment header is present
  bool first_fragment;    ///< fragment offset == 0 (also true when not a fragment)
  uint32_t src4, dst4;    ///< IPv4 addresses (0 for IPv6)
  std::array<uint8_t, 16> src6, dst6;  ///< IPv6 addresses in wire order (zero for IPv4)
  uint16_t sport, dport;  ///< TCP/UDP/SCTP ports; 0 otherwise, in a non-first fragment or when cut
  uint8_t icmp_type;      ///< ICMP/ICMPv6 type (first fragment only), else 0
  uint8_t tcp_flags;      ///< TCP flags byte (FIN 0x01 .. CWR 0x80), else 0
};
static_assert(sizeof(HeaderView) == 64, "HeaderView is meant to fill one cache line");

/// The total length of the IPv4 header at ip (room bytes from ip on, at least 20) when it is
/// what the one looks below take: no options, a total length of at least 20 and within room,
/// not a fragment, a good header checksum; else 0.
inline uint32_t ipv4_plain_len(const uint8_t* ip, uint32_t room) noexcept {
  const uint32_t total = be::load16(ip + 2);
  if (ip[0] != 0x45 || total < 20 || total > room || (be::load16(ip + 6) & 0x3fff) != 0 || !ipv4_checksum20_ok(ip))
    return 0;
  return total;
}

/// True for the frame nearly everything an uplink receives is: untagged IPv4 without options,
/// whole (total length within len), a good header checksum, not a fragment, UDP with its whole
/// header to dst:dport (host order). parse_frame accepts every such frame with exactly those
/// fields, so a caller may take this as its answer and leave anything else to parse_frame;
/// one look at fixed offsets instead of the view parse_frame fills.
inline bool ipv4_udp_to(const uint8_t* frame, uint32_t len, uint32_t dst, uint16_t dport) noexcept {
  if (len < 14 + 20 + 8 || be::load16(frame + 12) != kEtherIpv4) return false;
  const uint8_t* ip = frame + 14;
  return ip[9] == kProtoUdp && be::load32(ip + 16) == dst && be::load16(ip + 22) == dport &&
         ipv4_plain_len(ip, len - 14) >= 28;
}

/// What a LAN packet's flow and its forwarding need, read by ipv4_flow_look. Host order.
struct Ipv4FlowLook {
  uint32_t src, dst;      ///< addresses
  uint16_t sport, dport;  ///< TCP/UDP/SCTP ports, else 0
  uint16_t ip_len;        ///< IPv4 total length
  uint8_t proto;          ///< IP protocol
  uint8_t ttl;            ///< TTL
  uint8_t tcp_flags;      ///< TCP flags byte, else 0
};

/// True for the frame nearly every LAN packet is: untagged IPv4 without options, whole (total
/// length within len), a good header checksum, not a fragment, and for TCP its header up to the
/// flags byte (for UDP and SCTP the ports) within the IP length. Then *out holds exactly what
/// parse_frame reports in those fields, and l3_off 14; anything else is parse_frame's to judge.
/// One look at fixed offsets, without the 64-byte view: inline, so the fields stay in registers.
inline bool ipv4_flow_look(const uint8_t* frame, uint32_t len, Ipv4FlowLook* out) noexcept {
  if (len < 14 + 20 || be::load16(frame + 12) != kEtherIpv4) return false;
  const uint8_t* ip = frame + 14;
  const uint32_t total = ipv4_plain_len(ip, len - 14);
  if (total == 0) return false;
  const uint8_t proto = ip[9];
  const uint32_t l4_len = total - 20;
  uint16_t sport = 0, dport = 0;
  uint8_t flags = 0;
  if (proto == kProtoTcp || proto == kProtoUdp || proto == kProtoSctp) {
    if (l4_len < (proto == kProtoTcp ? 14u : 4u)) return false;
    sport = be::load16(ip + 20);
    dport = be::load16(ip + 22);
    if (proto == kProtoTcp) flags = ip[20 + 13];
  }
  out->src = be::load32(ip + 12);
  out->dst = be::load32(ip + 16);
  out->sport = sport;
  out->dport = dport;
  out->ip_len = static_cast<uint16_t>(total);
  out->proto = proto;
  out->ttl = ip[8];
  out->tcp_flags = flags;
  return true;
}

/// Parses an Ethernet frame of len bytes into hv. Any thread; reads only the frame.
/// kRunt: the frame ends before a header it carries (Ethernet, VLAN tag, IP header or options,
/// or before the IP total/payload length). kBadL2: ethertype neither ARP, IPv4 nor IPv6 (an
/// 802.3 length, or a third VLAN tag). kBadIpHeader: IP version wrong, IHL < 5, total length <
/// IHL*4, or an IPv6 extension header that overruns the payload. kBadIpChecksum: IPv4 header
/// checksum wrong (skipped when verify_ip_checksum is false because the NIC checked it).
/// ARP returns kOk with l3 == kArp; parse_arp validates its body. Trailing Ethernet padding
/// after the IP length is allowed and ignored.
ParseError parse_frame(const uint8_t* frame, uint32_t len, HeaderView* hv,
                       bool verify_ip_checksum = true) noexcept;

/// parse_frame without its fast path for the frame nearly every packet is (untagged IPv4
/// without options): the same results by the general walk. Tests and the fuzzer compare them.
ParseError parse_frame_reference(const uint8_t* frame, uint32_t len, HeaderView* hv,
                                 bool verify_ip_checksum = true) noexcept;

}  // namespace sdwan::dp
