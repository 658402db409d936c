// libFuzzer target: the per-packet header parser (dataplane/parse) on arbitrary bytes, and the
// wire readers of dataplane/proto that run on what it accepted (ARP body, ICMP echo, ICMP
// error quoting, TCP MSS clamping). The input is one Ethernet frame, exactly as long as the
// input, so AddressSanitizer sees any read past its end.
//
// Beyond "no crash, leak or UB": the one looks (ipv4_udp_to, ipv4_flow_look) agree with the walk,
// the offsets parse_frame reports stay inside the frame and the
// IP length it reports, the checksum switch only ever turns kBadIpChecksum into kOk, and the
// proto helpers leave a frame they refuse untouched and one they change still parsing, with
// valid checksums where they promise them.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "dataplane/api/types.hpp"
#include "dataplane/parse/parse.hpp"
#include "dataplane/proto/proto.hpp"

namespace {

using namespace sdwan;
using namespace sdwan::dp;

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) {       \
      std::fprintf(stderr, "fuzz_parse: check failed at line %d: %s\n", __LINE__, #cond); \
      __builtin_trap();  \
    }                    \
  } while (0)

bool same_view(const HeaderView& a, const HeaderView& b) {
  return a.l3 == b.l3 && a.l3_off == b.l3_off && a.l4_off == b.l4_off && a.ethertype == b.ethertype &&
         a.ip_len == b.ip_len && a.proto == b.proto && a.ttl == b.ttl && a.dscp == b.dscp &&
         a.fragment == b.fragment && a.first_fragment == b.first_fragment && a.src4 == b.src4 &&
         a.dst4 == b.dst4 && a.src6 == b.src6 && a.dst6 == b.dst6 && a.sport == b.sport &&
         a.dport == b.dport && a.icmp_type == b.icmp_type && a.tcp_flags == b.tcp_flags;
}

// The offsets of a view parse_frame returned kOk for, against the frame's length.
void check_view(const HeaderView& hv, uint32_t len) {
  FUZZ_CHECK(hv.l3 != L3::kNone);
  FUZZ_CHECK(hv.l3_off == 14 || hv.l3_off == 18 || hv.l3_off == 22);
  FUZZ_CHECK(hv.l3_off <= len);
  FUZZ_CHECK(hv.fragment || hv.first_fragment);
  switch (hv.l3) {
    case L3::kArp:
      FUZZ_CHECK(hv.ethertype == kEtherArp && hv.l4_off == hv.l3_off && hv.ip_len == 0);
      break;
    case L3::kIpv4:
      FUZZ_CHECK(hv.ethertype == kEtherIpv4);
      FUZZ_CHECK(hv.l4_off >= hv.l3_off + 20u && hv.l4_off <= hv.l3_off + 60u);
      FUZZ_CHECK(hv.l4_off <= hv.l3_off + uint32_t{hv.ip_len});
      FUZZ_CHECK(hv.l3_off + uint32_t{hv.ip_len} <= len);
      break;
    case L3::kIpv6:
      FUZZ_CHECK(hv.ethertype == kEtherIpv6 && hv.src4 == 0 && hv.dst4 == 0);
      FUZZ_CHECK(hv.ip_len >= 40);
      FUZZ_CHECK(hv.l4_off >= hv.l3_off + 40u);
      FUZZ_CHECK(hv.l4_off <= hv.l3_off + uint32_t{hv.ip_len});
      FUZZ_CHECK(hv.l3_off + uint32_t{hv.ip_len} <= len);
      break;
    case L3::kNone:
      break;
  }
  const bool has_ports = hv.proto == kProtoTcp || hv.proto == kProtoUdp || hv.proto == kProtoSctp;
  if (!has_ports) FUZZ_CHECK(hv.sport == 0 && hv.dport == 0);
  if (hv.proto != kProtoTcp) FUZZ_CHECK(hv.tcp_flags == 0);
  if (!hv.first_fragment) FUZZ_CHECK(hv.sport == 0 && hv.dport == 0 && hv.icmp_type == 0 && hv.tcp_flags == 0);
}

uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t{p[i]} << 8 | p[i + 1];
  if (n & 1) s += uint32_t{p[n - 1]} << 8;
  return s;
}
uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// The TCP checksum of an unfragmented IPv4 segment verifies (pseudo header included).
bool tcp4_checksum_ok(const std::vector<uint8_t>& f, const HeaderView& hv) {
  const uint32_t seg = hv.l3_off + uint32_t{hv.ip_len} - hv.l4_off;
  uint32_t s = sum16(f.data() + hv.l3_off + 12, 8);
  s += kProtoTcp + seg;
  return fold(sum16(f.data() + hv.l4_off, seg, s)) == 0xffff;
}

void fuzz_proto(const uint8_t* data, uint32_t len, const HeaderView& hv) {
  if (hv.l3 == L3::kArp) {
    ArpInfo arp;
    (void)parse_arp(data, len, hv, &arp);
    return;
  }

  // MSS clamping: changes nothing else the parser sees, and keeps a valid TCP checksum valid.
  {
    std::vector<uint8_t> f(data, data + len);
    const uint16_t max_mss = static_cast<uint16_t>(len > 0 ? 536 + data[len - 1] * 4 : 1360);
    const bool tcp_ok = hv.l3 == L3::kIpv4 && hv.proto == kProtoTcp && !hv.fragment &&
                        hv.l4_off + 20u <= hv.l3_off + uint32_t{hv.ip_len} && tcp4_checksum_ok(f, hv);
    const bool changed = clamp_tcp_mss(f.data(), len, hv, max_mss);
    if (!changed) {
      FUZZ_CHECK(std::memcmp(f.data(), data, len) == 0);
    } else {
      HeaderView after;
      FUZZ_CHECK(parse_frame(f.data(), len, &after, false) == ParseError::kOk && same_view(after, hv));
      if (tcp_ok) FUZZ_CHECK(tcp4_checksum_ok(f, hv));
    }
  }

  if (hv.l3 != L3::kIpv4) return;

  // Echo request to reply: untouched when refused; a reply still parses, with a valid ICMP
  // checksum over the IP payload.
  {
    std::vector<uint8_t> f(data, data + len);
    if (!icmp_echo_to_reply(f.data(), len, hv)) {
      FUZZ_CHECK(std::memcmp(f.data(), data, len) == 0);
    } else {
      HeaderView after;
      FUZZ_CHECK(parse_frame(f.data(), len, &after) == ParseError::kOk);
      FUZZ_CHECK(after.icmp_type == 0 && after.src4 == hv.dst4 && after.dst4 == hv.src4);
      const uint32_t icmp_len = hv.l3_off + uint32_t{hv.ip_len} - hv.l4_off;
      FUZZ_CHECK(inet_checksum(f.data() + hv.l4_off, icmp_len) == 0);
    }
  }

  // ICMP error quoting the datagram, into buffers of exactly their capacity: one as large as
  // the worker's, one too small for some quotes.
  const uint8_t* ip = data + hv.l3_off;
  const uint32_t ip_avail = len - hv.l3_off;
  for (const uint32_t cap : {600u, 20u + 8u + (len > 0 ? data[0] % 64u : 0u)}) {
    std::vector<uint8_t> out(cap);
    const uint32_t n = build_icmp_error(out.data(), cap, ip, ip_avail, kIcmpUnreachable,
                                        kIcmpCodeFragNeeded, Ipv4{0x0a000001}, 1400);
    FUZZ_CHECK(n <= cap && n <= 576);
    if (n == 0) continue;
    FUZZ_CHECK(n >= 20 + 8 + 20);
    FUZZ_CHECK(inet_checksum(out.data(), 20) == 0);
    FUZZ_CHECK(inet_checksum(out.data() + 20, n - 20) == 0);
    // Behind an Ethernet header, the error is a frame the parser accepts as it was built.
    std::vector<uint8_t> frame(14 + n);
    frame[12] = 0x08;
    std::memcpy(frame.data() + 14, out.data(), n);
    HeaderView ev;
    FUZZ_CHECK(parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), &ev) == ParseError::kOk);
    FUZZ_CHECK(ev.l3 == L3::kIpv4 && ev.proto == kProtoIcmp && ev.ip_len == n && ev.dst4 == hv.src4);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Frames longer than 16 bits of length do not exist on our ports (the mbuf's data_len).
  if (size > 65535) return -1;
  const auto len = static_cast<uint32_t>(size);

  HeaderView hv, nocheck;
  const ParseError e = parse_frame(data, len, &hv, true);
  const ParseError e2 = parse_frame(data, len, &nocheck, false);
  // The fast path for untagged IPv4 says exactly what the general walk says.
  for (const bool verify : {true, false}) {
    HeaderView ref;
    const ParseError er = parse_frame_reference(data, len, &ref, verify);
    FUZZ_CHECK(er == (verify ? e : e2));
    if (er == ParseError::kOk) FUZZ_CHECK(same_view(ref, verify ? hv : nocheck));
  }
  // The uplink's one look for ESP agrees with the walk, for the frame's own address and port.
  if (len >= 38) {
    const uint32_t dst = be::load32(data + 30);
    const uint16_t dport = be::load16(data + 36);
    const bool want = e == ParseError::kOk && hv.l3 == L3::kIpv4 && hv.l3_off == 14 && hv.l4_off == 34 &&
                      hv.proto == kProtoUdp && !hv.fragment && hv.ip_len >= 28 && hv.dst4 == dst && hv.dport == dport;
    FUZZ_CHECK(ipv4_udp_to(data, len, dst, dport) == want);
  }
  // The LAN's one look agrees with the walk: yes exactly for an untagged, option-less,
  // unfragmented IPv4 packet whose TCP header reaches its flags (UDP, SCTP: ports), same fields.
  {
    Ipv4FlowLook fl;
    const bool ports = hv.proto == kProtoTcp || hv.proto == kProtoUdp || hv.proto == kProtoSctp;
    const uint32_t need = hv.proto == kProtoTcp ? 14 : ports ? 4 : 0;
    const bool want = e == ParseError::kOk && hv.l3 == L3::kIpv4 && hv.l3_off == 14 && hv.l4_off == 34 &&
                      !hv.fragment && hv.ip_len >= 20 + need;
    FUZZ_CHECK(ipv4_flow_look(data, len, &fl) == want);
    if (want)
      FUZZ_CHECK(fl.src == hv.src4 && fl.dst == hv.dst4 && fl.sport == hv.sport && fl.dport == hv.dport &&
                 fl.ip_len == hv.ip_len && fl.proto == hv.proto && fl.ttl == hv.ttl && fl.tcp_flags == hv.tcp_flags);
  }
  if (e == ParseError::kOk) {
    check_view(hv, len);
    FUZZ_CHECK(e2 == ParseError::kOk && same_view(hv, nocheck));
  } else {
    FUZZ_CHECK(hv.l3 == L3::kNone);
    if (e == ParseError::kBadIpChecksum) {
      FUZZ_CHECK(e2 == ParseError::kOk && nocheck.l3 == L3::kIpv4);
    } else {
      FUZZ_CHECK(e2 == e);
    }
  }
  if (e2 == ParseError::kOk) {
    check_view(nocheck, len);
    fuzz_proto(data, len, nocheck);
  }
  return 0;
}
