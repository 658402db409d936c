// The ESP packet transform on mbufs: tunnel mode (RFC 4303) in UDP (RFC 3948) with AES-256-GCM
// and a 16-byte ICV (RFC 4106), in bursts, in the style of DPDK's lib/ipsec: a burst function
// keeps n packets in pkts[0, n) and moves the failed ones to pkts[n, size), each counted with
// its reason. The caller frees the failed ones; it must never send them (an encrypt failure is
// still plaintext).
//
// Frame built and read (offsets from the outer Ethernet header):
//    0  Ethernet          path dmac, smac, type IPv4
//   14  IPv4 (20)         DF, TTL 64, protocol 17, id = low 16 bits of the sequence number
//   34  UDP (8)           path ports, checksum 0 (RFC 3948 2.1)
//   42  SPI (4), sequence number (low 32 bits, 4)
//   50  explicit IV (8)   the 64-bit sequence number, big-endian: unique per SA, never repeats
//   58  ciphertext of: inner packet, padding 1, 2, 3..., pad length, next header
//       (padding makes inner + trailer a multiple of 4; GCM needs no block padding)
//  ...  ICV (16)
// Nonce = salt (4) || explicit IV (8). AAD (RFC 4106 section 5) = SPI || seq (8 bytes), or
// with ESN SPI || seq high || seq low (12 bytes): the high half never travels in the header.
//
// Threads: the worker that owns the CryptoEngine and the counters; SAs as sa.hpp says.
// Per packet: no allocation, lock, syscall, exception or virtual call.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/api/counters.hpp"
#include "dataplane/esp/gcm.hpp"
#include "dataplane/esp/sa.hpp"

struct rte_mbuf;

namespace sdwan::dp {

constexpr uint32_t kEspHdrLen = 8;   ///< SPI + sequence number
constexpr uint32_t kEspIvLen = 8;    ///< explicit IV
constexpr uint32_t kEspIcvLen = kGcmTagLen;
/// Bytes esp_encrypt_burst puts in front of the inner packet (it needs that much headroom).
constexpr uint32_t kEspPrepend = kEspOuterLen + kEspHdrLen + kEspIvLen;
/// Most bytes esp_encrypt_burst appends (padding 3 + pad length + next header + ICV).
constexpr uint32_t kEspMaxAppend = 3 + 2 + kEspIcvLen;

/// ESP next-header values a tunnel carries.
constexpr uint8_t kEspNextIpv4 = 4;
/// An inner IPv6 packet.
constexpr uint8_t kEspNextIpv6 = 41;
/// Our overlay header followed by the inner packet (RFC 3692 experimental value).
constexpr uint8_t kEspNextOverlay = 253;

/// Outer IPv4 total length of the ESP packet carrying inner_len bytes: what must fit the MTU.
constexpr uint32_t esp_outer_ip_len(uint32_t inner_len) noexcept {
  const uint32_t pad = (4 - (inner_len + 2) % 4) % 4;
  return 20 + 8 + kEspHdrLen + kEspIvLen + inner_len + pad + 2 + kEspIcvLen;
}
/// Largest inner packet an SA on a path of L3 MTU mtu carries.
constexpr uint32_t esp_max_inner(uint32_t mtu) noexcept {
  // inner + trailer is a multiple of 4: the largest one that fits, less its 2 fixed bytes.
  const uint32_t fixed = 20 + 8 + kEspHdrLen + kEspIvLen + kEspIcvLen;
  return mtu < fixed + 4 ? 0 : ((mtu - fixed) & ~3u) - 2;
}

/// Any worker sending on sa. Encrypts each single-segment mbuf of pkts (its data: the inner
/// packet from its IP header on, or our overlay header and the inner packet when next_header is
/// 253) into the ESP-in-UDP frame above, with outer as outer headers and outer.mtu as the
/// limit. Sequence numbers are reserved once per chunk of 32 with one compare-and-swap, consecutive
/// over the packets kept. Keeps n packets in pkts[0, n), in their order; the others are moved
/// to pkts[n, size) and counted: too_big, no_room, sa_expired (all of them once sa is at a
/// hard limit; the byte limit is checked per chunk, so it may be passed by one chunk), each
/// untouched and still plaintext (never send them), and seal_failed, which the library never
/// reports for valid operations (headers already added).
uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, const EspOuter& outer, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters) noexcept;
/// The same with sa's own outer headers (sa.path()).
uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters) noexcept;

/// One worker's share of an outbound SA (docs/keys.md "Workers and SAs"): a block of sequence
/// numbers reserved from the SA with one compare-and-swap, used up by this worker alone, and
/// the packets and bytes it encrypted not yet added to the SA's counters. Owned by one worker;
/// plain stores. A block left unused (the SA replaced, the worker stopped) is a gap on the wire,
/// which the receiver's window does not mind; with one worker per SA there is none.
struct EspSeqBlock {
  static constexpr uint64_t kSize = 256;  ///< sequence numbers reserved at once
  OutboundSa* sa = nullptr;        ///< whose block this is (with its serial); another SA starts afresh
  uint64_t serial = 0;
  uint64_t next = 0, end = 0;      ///< [next, end): reserved and not used yet
  uint64_t pkts = 0, bytes = 0;    ///< encrypted, not yet added to sa's counters
};

/// As the first overload, for the worker that owns blk (one per SA it sends on): sequence
/// numbers come from blk, refilled from sa a block at a time, so no atomic operation touches
/// the SA per burst; the counts wait in blk for esp_seq_block_flush. now_tsc: the caller's
/// current TSC time, for the SA's age limit. Several workers on one SA interleave their blocks
/// (in-window reordering at the receiver); with one worker the wire shows no gaps.
uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, const EspOuter& outer, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters, EspSeqBlock& blk, uint64_t now_tsc) noexcept;

/// Owning worker: adds blk's pending counts to its SA's counters. Call it at the end of every
/// poll that encrypted on the SA, while the poll's snapshot still holds the SA: control's view
/// then lags by at most one poll, and a block never holds counts of an SA that may be freed.
void esp_seq_block_flush(EspSeqBlock& blk) noexcept;

/// esp_decrypt_burst's worker when SA ownership is not checked (one thread uses the table).
constexpr uint16_t kAnyWorker = 0xffff;

/// Owning worker. Decrypts each mbuf of pkts, which holds a frame from the outer Ethernet header
/// on that the caller found to be IPv4/UDP to our ESP port (NAT keep-alives and IKE's non-ESP
/// marker are the caller's: here they count as runt and unknown_spi). Outer parse, SA by SPI
/// from table, anti-replay check before decryption, decryption and ICV check, then the
/// trailer; the replay window records a packet only after all of that passed. Keeps n packets
/// in pkts[0, n), in their order, each now holding the inner packet at its data start, with
/// next_headers_out[i] its next header (4, 41 or 253) and, when sa_tags_out is not null,
/// sa_tags_out[i] the tag of the SA that verified it. The others are moved to pkts[n, size)
/// and counted by reason (per worker in counters, and per SA where one was found); they
/// changed no state, and one that failed its ICV holds zeros where its plaintext would be.
/// next_headers_out (and sa_tags_out) hold pkts.size() entries. worker: the caller's index,
/// which must own each SA (InboundSa::claim; wrong_worker otherwise), or kAnyWorker. sas_out,
/// when not null, gets the SA of each packet kept, like sa_tags_out. outer_checked: the caller
/// vouches that every frame is one segment of untagged IPv4 without options, UDP, unfragmented
/// and whole (ipv4_udp_to said yes), and has just read it: those checks and the prefetch are
/// skipped.
uint16_t esp_decrypt_burst(CryptoEngine& engine, const InboundTable& table, std::span<rte_mbuf*> pkts,
                           EspCounters& counters, uint8_t* next_headers_out,
                           uint16_t* sa_tags_out = nullptr, uint16_t worker = kAnyWorker,
                           const InboundSa** sas_out = nullptr, bool outer_checked = false) noexcept;

}  // namespace sdwan::dp
