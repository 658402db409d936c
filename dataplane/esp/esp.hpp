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
// Threads: the worker that owns the CryptoEngine, the SAs, the InboundTable and the counters.
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

/// Why the ESP transform dropped a packet. Stable names (esp_drop_name) for CLI and metrics.
enum class EspDrop : uint8_t {
  // outbound
  kTooBig,         // the ESP packet would exceed the SA's MTU
  kNoRoom,         // not enough headroom or tailroom, or a multi-segment mbuf
  kSaExpired,      // the SA's sequence numbers are used up (seq_limit)
  kSealFailed,     // the crypto library refused the operation (never within its limits)
  // inbound
  kRunt,           // frame shorter than its headers claim, or too short for ESP + ICV
  kBadLength,      // outer headers malformed: not IPv4/UDP, fragment, lengths inconsistent
  kUnknownSpi,     // no inbound SA with this SPI
  kReplay,         // sequence number already received
  kTooOld,         // sequence number below the replay window
  kIcvFail,        // the ICV did not verify (wrong key, tampered, wrong ESN high half)
  kBadPad,         // verified, but the pad length exceeds the payload or the padding is not 1, 2, 3...
  kBadNextHeader,  // verified, but the next header is none of 4, 41, 253
  kCount
};

/// Stable lower-case name of an ESP drop reason ("icv_fail").
constexpr std::string_view esp_drop_name(EspDrop d) noexcept {
  constexpr std::string_view names[] = {"too_big",     "no_room",  "sa_expired", "seal_failed",
                                        "runt",        "bad_length", "unknown_spi", "replay",
                                        "too_old",     "icv_fail", "bad_pad",    "bad_next_header"};
  static_assert(std::size(names) == static_cast<size_t>(EspDrop::kCount));
  return names[static_cast<size_t>(d)];
}

/// A worker's ESP counters: one writer (the worker), read by control with relaxed loads.
struct alignas(64) EspCounters {
  Counter enc_pkts;   ///< packets encrypted and kept
  Counter enc_bytes;  ///< their inner bytes
  Counter dec_pkts;   ///< packets decrypted, verified and kept
  Counter dec_bytes;  ///< their inner bytes
  std::array<Counter, static_cast<size_t>(EspDrop::kCount)> drops;

  void drop(EspDrop d, uint64_t n = 1) noexcept { drops[static_cast<size_t>(d)].add(n); }
  uint64_t dropped(EspDrop d) const noexcept { return drops[static_cast<size_t>(d)].load(); }
};

/// Owning worker. Encrypts each single-segment mbuf of pkts (its data: the inner packet from
/// its IP header on, or our overlay header and the inner packet when next_header is 253) into
/// the ESP-in-UDP frame above, with sa's path as outer headers. Sequence numbers are reserved
/// once per burst, consecutive over the packets kept. Keeps n packets in pkts[0, n), in their
/// order; the others are moved to pkts[n, size) and counted: too_big, no_room, sa_expired (all
/// of them once sa.expired()), each untouched and still plaintext (never send them), and
/// seal_failed, which the library never reports for valid operations (headers already added).
uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters) noexcept;

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
/// next_headers_out (and sa_tags_out) hold pkts.size() entries.
uint16_t esp_decrypt_burst(CryptoEngine& engine, InboundTable& table, std::span<rte_mbuf*> pkts,
                           EspCounters& counters, uint8_t* next_headers_out,
                           uint16_t* sa_tags_out = nullptr) noexcept;

}  // namespace sdwan::dp
