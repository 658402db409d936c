// Small protocol pieces a worker applies to single packets: Internet checksums, TTL
// decrement, ARP, ICMP echo and errors, TCP MSS clamping. Byte buffers only (no mbuf, no EAL);
// no allocation; every function may run on any thread on buffers that thread owns.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/api/arp.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/parse/parse.hpp"

namespace sdwan::dp {

/// Largest ICMP error build_icmp_error writes (RFC 1812 4.3.2.3).
constexpr uint32_t kIcmpErrorMaxLen = 576;
/// ICMP types and codes the worker sends.
constexpr uint8_t kIcmpEchoReply = 0;
/// Destination unreachable.
constexpr uint8_t kIcmpUnreachable = 3;
/// Echo request.
constexpr uint8_t kIcmpEchoRequest = 8;
/// Time exceeded.
constexpr uint8_t kIcmpTimeExceeded = 11;
/// Code of kIcmpUnreachable: fragmentation needed and DF set (carries the next-hop MTU).
constexpr uint8_t kIcmpCodeFragNeeded = 4;
/// ARP operations.
constexpr uint16_t kArpOpRequest = 1;
/// ARP reply operation.
constexpr uint16_t kArpOpReply = 2;

/// Internet checksum (RFC 1071) of len bytes, complemented and ready to store: memcpy the
/// returned value into the checksum field (it is already in network byte order). Over a region
/// that includes a correct checksum it returns 0.
uint16_t inet_checksum(const void* data, size_t len) noexcept;

/// RFC 1624 eqn. 3: the checksum (host order) after a 16-bit word (host order) changed from
/// old_word to new_word. Inline: every forwarded packet takes it.
inline uint16_t csum_update16(uint16_t check, uint16_t old_word, uint16_t new_word) noexcept {
  // Eqn. 3 rather than eqn. 2: it never turns a valid checksum into 0xffff (-0).
  uint32_t sum = uint32_t{static_cast<uint16_t>(~check)} + static_cast<uint16_t>(~old_word) + new_word;
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

/// Decrements the TTL of the IPv4 header at ip in place, updating the header checksum
/// incrementally (RFC 1624). Precondition: TTL > 1 (the caller sends time-exceeded otherwise).
inline void ipv4_ttl_decrement(uint8_t* ip) noexcept {
  const uint16_t old_word = be::load16(ip + 8);
  const auto new_word = static_cast<uint16_t>(old_word - 0x0100);
  be::store16(ip + 10, csum_update16(be::load16(ip + 10), old_word, new_word));
  ip[8] = static_cast<uint8_t>(ip[8] - 1);
}

/// Reads the ARP body at hv.l3_off of a frame parse_frame classified as kArp. False unless it
/// is Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4) and all 28 bytes are present.
bool parse_arp(const uint8_t* frame, uint32_t len, const HeaderView& hv, ArpInfo* out) noexcept;

// build_arp_reply, build_arp_request and build_garp: dataplane/api/arp.hpp.

/// Turns the IPv4 ICMP echo request frame parsed into hv into its reply in place: MACs and
/// addresses swapped, type 0, TTL 64, both checksums updated. False, frame untouched, unless it
/// is an unfragmented echo request of at least 8 ICMP bytes with a correct ICMP checksum.
bool icmp_echo_to_reply(uint8_t* frame, uint32_t len, const HeaderView& hv) noexcept;

/// Writes into out (capacity cap) an IPv4 ICMP error (no Ethernet header) about the datagram
/// at orig_ip (orig_len bytes available): type/code as given (3/4 carries next_hop_mtu, RFC
/// 1191), quoting the original header and as much of its data as keeps the error within 576
/// bytes (RFC 1812 4.3.2.3); src our_ip, dst the original source, TTL 64, DF clear, checksums
/// valid. Returns its length, or 0 when RFC 1812 4.3.2.7 forbids an error (the original is an
/// ICMP error or a non-first fragment; its source is not one host: 0/8, 127/8, multicast,
/// class E or 255.255.255.255; its destination is multicast or 255.255.255.255), when the
/// original header is malformed, or when cap cannot hold the header plus 8 data bytes.
uint32_t build_icmp_error(uint8_t* out, uint32_t cap, const uint8_t* orig_ip, uint32_t orig_len,
                          uint8_t type, uint8_t code, Ipv4 our_ip, uint16_t next_hop_mtu) noexcept;

/// If the frame parsed into hv is a TCP SYN (or SYN-ACK), IPv4 or IPv6, whose MSS option
/// exceeds max_mss, lowers it to max_mss and updates the TCP checksum incrementally. True if it
/// changed the frame. Non-first fragments and cut or malformed options are left alone.
bool clamp_tcp_mss(uint8_t* frame, uint32_t len, const HeaderView& hv, uint16_t max_mss) noexcept;

}  // namespace sdwan::dp
