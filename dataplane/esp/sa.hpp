// The worker-side SA runtimes of ESP (VPP style): small, cache-aligned records holding only
// what esp_encrypt_burst and esp_decrypt_burst read and write per packet, apart from the
// control side's SA records (control/esp/sa_table.hpp), which keep lifetimes, epochs and names.
//
// Ownership and threads:
//   OutboundSa  one worker owns it: it alone encrypts with it, so its sequence number is a
//               plain store (STYLE.md). Control builds it (init expands the key) and reads only
//               its counters, with relaxed loads.
//   InboundSa   one worker owns it: the replay window is single-writer. Control builds it and
//               reads its counters.
//   InboundTable  one per worker: non-owning pointers, indexed by spi & 0xffff (the SPI layout
//               of control/esp/spi.hpp). Whoever frees an SA removes it from every table first
//               (after the grace period when tables are published by snapshot).
//
// Keys: the expanded AES-GCM key lives inside the SA (1 KiB, 64-byte aligned), so it never
// outlives it and is wiped with it. SAs are neither copied nor moved: a key is never duplicated.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "dataplane/api/counters.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/esp/gcm.hpp"
#include "dataplane/esp/replay_window.hpp"

namespace sdwan::dp {

constexpr uint32_t kEspSaltLen = 4;   ///< RFC 4106 salt: the first 4 bytes of the GCM nonce
constexpr uint32_t kEspOuterLen = 42; ///< outer Ethernet (14) + IPv4 (20) + UDP (8)

/// Sequence numbers an SA without ESN may use lie below this (RFC 4303 3.3.3: never cycle).
constexpr uint64_t kEspSeqLimitNoEsn = uint64_t{1} << 32;
/// ... and with ESN (2^64 - 1 itself is never used: nobody gets there).
constexpr uint64_t kEspSeqLimitEsn = ~uint64_t{0};

/// Where an outbound SA's packets go: the outer headers of every packet it encrypts.
struct EspPath {
  MacAddr smac, dmac;    ///< outer Ethernet source (our uplink) and destination (next hop)
  Ipv4 src, dst;         ///< outer IPv4 source (our uplink address) and destination (peer)
  uint16_t sport = 4500; ///< outer UDP source port
  uint16_t dport = 4500; ///< outer UDP destination port
  uint16_t mtu = 1500;   ///< L3 MTU of the uplink: no outer IPv4 packet is longer
};

/// An outbound SA's runtime. Control constructs it (start-up or rekey, never per packet); the
/// owning worker passes it to esp_encrypt_burst.
struct alignas(64) OutboundSa {
  /// Expands key with engine (any engine of the same arch as the workers'). seq_limit is
  /// clamped to kEspSeqLimitNoEsn without ESN; sequence numbers start at 1.
  OutboundSa(const CryptoEngine& engine, uint32_t spi, const uint8_t key[kGcmKeyLen],
             const uint8_t salt[kEspSaltLen], bool esn, uint64_t seq_limit, const EspPath& path) noexcept;
  /// Wipes the expanded key and the salt.
  ~OutboundSa();
  OutboundSa(const OutboundSa&) = delete;
  OutboundSa& operator=(const OutboundSa&) = delete;

  /// Changes the outer headers (a new next-hop MAC, say); rebuilds the header template. The
  /// owning worker, between bursts.
  void set_path(const EspPath& p) noexcept;
  /// The outer headers in use.
  const EspPath& path() const noexcept { return path_; }
  /// Whether esp_encrypt_burst would encrypt nothing (the sequence space below seq_limit is
  /// used up). Owning worker.
  bool expired() const noexcept { return seq >= seq_limit; }

  // Line 0: everything a burst reads or writes, and the path.
  uint64_t seq = 1;        ///< next sequence number to use; plain store by the owning worker
  uint64_t seq_limit;      ///< sequence numbers below this may be used (exclusive)
  uint32_t spi;            ///< host byte order
  uint8_t salt[kEspSaltLen];
  bool esn;                ///< 64-bit sequence numbers (the high half in the AAD only)
  EspPath path_;           ///< the outer headers; written only by the constructor and set_path
  uint32_t outer_sum = 0;  ///< one's complement sum of the template's IPv4 header words

  // Line 1: the header template, then the counters control reads.
  /// Ethernet + IPv4 (DF, TTL 64, protocol UDP; total length, id and checksum 0) + UDP
  /// (checksum 0, length 0), built from path_: esp_encrypt_burst copies it and patches the
  /// lengths, the id and the checksum.
  alignas(64) uint8_t outer[kEspOuterLen] = {};
  Counter pkts;   ///< packets encrypted and kept
  Counter bytes;  ///< their inner bytes (what was handed to esp_encrypt_burst)

  /// Round keys and GHASH powers: the rest of the record.
  GcmKey key;
};
static_assert(sizeof(OutboundSa) == 2 * 64 + sizeof(GcmKey), "OutboundSa grew past two lines and its key");

/// An inbound SA's runtime. Control constructs it; the owning worker passes it (through its
/// InboundTable) to esp_decrypt_burst.
struct alignas(64) InboundSa {
  /// Expands key with engine. window: replay window size in packets (rounded and clamped as
  /// ReplayWindow does); esn: 64-bit sequence numbers. tag: the owner's label reported for each
  /// packet decrypted with this SA (a path id, say). Allocates only for windows above
  /// ReplayWindow::kInlineSize; if that fails, window.ok() is false and every packet is too old.
  InboundSa(const CryptoEngine& engine, uint32_t spi, const uint8_t key[kGcmKeyLen],
            const uint8_t salt[kEspSaltLen], bool esn,
            uint32_t window_size = ReplayWindow::kDefaultSize, uint16_t tag = 0);
  /// Wipes the expanded key and the salt.
  ~InboundSa();
  InboundSa(const InboundSa&) = delete;
  InboundSa& operator=(const InboundSa&) = delete;

  /// Whether 64-bit sequence numbers are in use (the window's setting).
  bool esn() const noexcept { return window.esn(); }

  // Line 0: identity and the counters control reads (per SA, for `show sas` and lifetimes).
  uint32_t spi;                 ///< host byte order
  uint8_t salt[kEspSaltLen];
  uint16_t tag;                 ///< the owner's label, reported per decrypted packet
  Counter pkts;                 ///< packets decrypted, verified and kept
  Counter bytes;                ///< their inner bytes
  Counter replay;               ///< dropped: a replay (before or after decryption)
  Counter too_old;              ///< dropped: below the window
  Counter icv_fail;             ///< dropped: the ICV did not verify
  Counter bad_trailer;          ///< dropped: verified, but bad padding or next header

  /// Round keys and GHASH powers.
  GcmKey key;
  /// Anti-replay state (single writer: the owning worker).
  ReplayWindow window;
};
static_assert(sizeof(InboundSa) == 64 + sizeof(GcmKey) + sizeof(ReplayWindow),
              "InboundSa grew past one line, its key and its window");

/// A worker's inbound SAs by SPI: an array indexed by spi & 0xffff (control/esp/spi.hpp puts
/// the link, epoch and direction there) and an equality check on the whole SPI. 512 KiB:
/// allocate it on the worker's NUMA node. Non-owning. install/remove by the owner of the table
/// (the worker, or control before the worker starts or through a snapshot).
class InboundTable {
 public:
  static constexpr uint32_t kSlots = 1u << 16;  ///< == cp::kSpiSlots
  static constexpr uint32_t kSlotMask = kSlots - 1;

  /// The SA whose SPI is spi, or null.
  InboundSa* find(uint32_t spi) const noexcept {
    InboundSa* sa = slots_[spi & kSlotMask];
    return sa != nullptr && sa->spi == spi ? sa : nullptr;
  }
  /// Puts sa in its slot. False (nothing changed) when the slot holds another SA.
  bool install(InboundSa* sa) noexcept {
    InboundSa*& s = slots_[sa->spi & kSlotMask];
    if (s != nullptr && s != sa) return false;
    s = sa;
    return true;
  }
  /// Takes the SA whose SPI is spi out; returns it, or null if it was not there.
  InboundSa* remove(uint32_t spi) noexcept {
    InboundSa* sa = find(spi);
    if (sa != nullptr) slots_[spi & kSlotMask] = nullptr;
    return sa;
  }

 private:
  std::array<InboundSa*, kSlots> slots_{};
};

}  // namespace sdwan::dp
