// What control needs of the ESP SA runtimes without seeing their insides (DESIGN.md: control
// includes only dataplane/api): the outer headers of a path, making an SA from derived keys,
// reading its counters, and an inbound table to publish in a snapshot. Implemented in
// dataplane/esp/. Control thread only, never per packet.
//
// Workers and SAs (docs/keys.md "Workers and SAs"): one SA pair per path, shared by the
// workers. A worker reserves an outbound SA's sequence numbers 256 at a time with one
// compare-and-swap, so two workers never use the same IV (one worker alone leaves no gap), and
// adds its counts to the SA's atomic counters once per poll. An inbound SA has one writer: the first worker that receives a packet
// for it claims it (the sender uses one outer 5-tuple per path, so RSS or the kernel's fanout
// steers every packet of the SA to one RX queue); a packet of it on another worker's queue is
// dropped as wrong_worker and never touches the window.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "dataplane/api/result.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::dp {

struct OutboundSa;
struct InboundSa;
class InboundTable;

/// Where an outbound SA's packets go: the outer headers of every packet it encrypts.
struct EspPath {
  MacAddr smac, dmac;    ///< outer Ethernet source (our uplink) and destination (next hop)
  Ipv4 src, dst;         ///< outer IPv4 source (our uplink address) and destination (peer)
  uint16_t sport = 4500; ///< outer UDP source port
  uint16_t dport = 4500; ///< outer UDP destination port
  uint16_t mtu = 1500;   ///< L3 MTU of the uplink: no outer IPv4 packet is longer
  bool operator==(const EspPath&) const = default;
};

/// The outer headers of a path ready to copy: Ethernet + IPv4 (DF, TTL 64, protocol UDP;
/// total length, id and checksum 0) + UDP (length and checksum 0), the one's complement sum
/// of the IPv4 header words, and the MTU. esp_encrypt_burst copies it and patches lengths,
/// id and checksum per packet.
struct EspOuter {
  uint8_t hdr[42] = {};
  uint16_t mtu = 0;
  uint32_t sum = 0;
  /// Builds the template of p.
  static EspOuter of(const EspPath& p) noexcept;
};

/// Everything an SA runtime is made from (control/esp derives keys and SPIs).
struct EspSaParams {
  uint32_t spi = 0;
  std::array<uint8_t, 32> key{};    ///< AES-256 key; the caller wipes its copy
  std::array<uint8_t, 4> salt{};    ///< RFC 4106 salt
  bool esn = true;                  ///< 64-bit extended sequence numbers
  uint64_t max_packets = 0;         ///< outbound hard limit in packets (0: the sequence space only)
  uint64_t max_bytes = 0;           ///< outbound hard limit in inner bytes (0: none)
  uint64_t max_age_ms = 0;          ///< outbound hard limit in age from creation (0: none)
  uint32_t replay_window = 4096;    ///< inbound window in packets (1024 .. 2^20, a power of two)
  uint16_t tag = 0;                 ///< the path id: inbound packets report it, counters use it
};

/// Checks that the CPU and intel-ipsec-mb can run AES-256-GCM here (AES-NI, PCLMULQDQ) and
/// returns the architecture every worker will use, e.g. "avx512 (vaes)", for the start-up log.
Result<std::string> esp_crypto_arch();

/// A new outbound SA (sequence numbers from 1) sending on path; null only when memory or the
/// crypto library fails.
std::shared_ptr<OutboundSa> make_outbound_sa(const EspSaParams& p, const EspPath& path);
/// A new inbound SA; null only when memory or the crypto library fails.
std::shared_ptr<InboundSa> make_inbound_sa(const EspSaParams& p);

/// An SA's counters (relaxed reads of what the workers count).
struct EspSaStats {
  uint32_t spi = 0;
  uint16_t tag = 0;
  uint64_t packets = 0;   ///< encrypted and sent / decrypted and verified
  uint64_t bytes = 0;     ///< their inner bytes
  uint64_t seq = 0;       ///< outbound: highest sequence number handed out; inbound: highest accepted
  uint64_t replay = 0, too_old = 0, icv_fail = 0, bad_trailer = 0;  ///< inbound drops
  bool expired = false;   ///< outbound: at a hard limit, sends nothing more
};
EspSaStats esp_sa_stats(const OutboundSa& sa) noexcept;
EspSaStats esp_sa_stats(const InboundSa& sa) noexcept;

/// An empty inbound table (512 KiB; allocates).
std::shared_ptr<InboundTable> make_inbound_table();
/// Puts sa at its SPI's slot; false when another SA holds that slot.
bool inbound_table_install(InboundTable& t, InboundSa* sa) noexcept;

}  // namespace sdwan::dp
