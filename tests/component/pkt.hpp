// Tiny packet builder and reader for component tests: bytes in, bytes out, checksums right.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dataplane/api/types.hpp"
#include "dataplane/proto/proto.hpp"

namespace sdwan::test {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}
inline void put32(Bytes& b, size_t off, uint32_t v) {
  put16(b, off, static_cast<uint16_t>(v >> 16));
  put16(b, off + 2, static_cast<uint16_t>(v));
}
inline uint16_t get16(const Bytes& b, size_t off) { return static_cast<uint16_t>(b[off] << 8 | b[off + 1]); }
inline uint32_t get32(const Bytes& b, size_t off) { return uint32_t{get16(b, off)} << 16 | get16(b, off + 2); }

inline MacAddr mac(uint8_t last) { return MacAddr{{0x02, 0, 0, 0, 0, last}}; }
inline Ipv4 ip(const char* s) { return *Ipv4::parse(s); }

struct Ip4Opts {
  uint8_t ttl = 64;
  uint8_t proto = 17;
  bool df = false;
  uint8_t tos = 0;
};

/// Ethernet + IPv4 + payload (payload is the L4 header and data, already built).
inline Bytes eth_ipv4(MacAddr dst, MacAddr src, Ipv4 s, Ipv4 d, const Bytes& l4, Ip4Opts o = {}) {
  Bytes b(14 + 20 + l4.size());
  std::memcpy(b.data(), dst.b.data(), 6);
  std::memcpy(b.data() + 6, src.b.data(), 6);
  put16(b, 12, 0x0800);
  b[14] = 0x45;
  b[15] = o.tos;
  put16(b, 16, static_cast<uint16_t>(20 + l4.size()));
  put16(b, 18, 0x1234);
  put16(b, 20, o.df ? 0x4000 : 0);
  b[22] = o.ttl;
  b[23] = o.proto;
  put32(b, 26, s.v);
  put32(b, 30, d.v);
  const uint16_t c = dp::inet_checksum(b.data() + 14, 20);
  std::memcpy(b.data() + 24, &c, 2);
  std::memcpy(b.data() + 34, l4.data(), l4.size());
  return b;
}

/// UDP header + payload, checksum 0 (allowed over IPv4).
inline Bytes udp(uint16_t sport, uint16_t dport, const std::string& payload) {
  Bytes b(8 + payload.size());
  put16(b, 0, sport);
  put16(b, 2, dport);
  put16(b, 4, static_cast<uint16_t>(b.size()));
  std::memcpy(b.data() + 8, payload.data(), payload.size());
  return b;
}

/// ICMP echo request with a valid checksum.
inline Bytes icmp_echo(uint16_t id, uint16_t seq, size_t data_len = 32) {
  Bytes b(8 + data_len);
  b[0] = 8;
  put16(b, 4, id);
  put16(b, 6, seq);
  for (size_t i = 0; i < data_len; ++i) b[8 + i] = static_cast<uint8_t>(i);
  const uint16_t c = dp::inet_checksum(b.data(), b.size());
  std::memcpy(b.data() + 2, &c, 2);
  return b;
}

/// TCP SYN with an MSS option (checksum computed over the IPv4 pseudo header).
inline Bytes tcp_syn(Ipv4 s, Ipv4 d, uint16_t sport, uint16_t dport, uint16_t mss) {
  Bytes b(24);
  put16(b, 0, sport);
  put16(b, 2, dport);
  put32(b, 4, 1000);
  b[12] = 6 << 4;
  b[13] = 0x02;
  put16(b, 14, 65535);
  b[20] = 2;
  b[21] = 4;
  put16(b, 22, mss);
  Bytes ph(12 + b.size());
  put32(ph, 0, s.v);
  put32(ph, 4, d.v);
  ph[9] = 6;
  put16(ph, 10, static_cast<uint16_t>(b.size()));
  std::memcpy(ph.data() + 12, b.data(), b.size());
  const uint16_t c = dp::inet_checksum(ph.data(), ph.size());
  std::memcpy(b.data() + 16, &c, 2);
  return b;
}

/// True if the IPv4 header at off has a valid checksum.
inline bool ipv4_checksum_ok(const Bytes& b, size_t off) {
  return dp::inet_checksum(b.data() + off, (b[off] & 0xf) * 4u) == 0;
}

/// Broadcast ARP request from (smac, sip) for tip.
inline Bytes arp_request(MacAddr smac, Ipv4 sip, Ipv4 tip) {
  Bytes b(60, 0);
  std::memset(b.data(), 0xff, 6);
  std::memcpy(b.data() + 6, smac.b.data(), 6);
  put16(b, 12, 0x0806);
  put16(b, 14, 1);
  put16(b, 16, 0x0800);
  b[18] = 6;
  b[19] = 4;
  put16(b, 20, 1);
  std::memcpy(b.data() + 22, smac.b.data(), 6);
  put32(b, 28, sip.v);
  put32(b, 38, tip.v);
  return b;
}

}  // namespace sdwan::test
