// The worker-side SA runtimes of ESP (VPP style): small, cache-aligned records holding only
// what esp_encrypt_burst and esp_decrypt_burst read and write per packet, apart from the
// control side's SA records (control/esp/sa_table.hpp), which keep lifetimes, epochs and names.
//
// Ownership and threads:
//   OutboundSa  shared by the workers that send on its path (dataplane/api/esp.hpp): a
//               worker reserves its sequence numbers a block at a time (EspSeqBlock) with one
//               compare-and-swap, so no IV is ever used twice, and adds its counts atomically
//               once per poll. Control builds it (the constructor expands the key) and reads
//               only its counters, with relaxed loads.
//   InboundSa   one worker owns it: the replay window is single-writer. The first worker whose
//               decrypt burst meets it claims it (owner); control builds it and reads its
//               counters.
//   InboundTable  one per worker: non-owning pointers, indexed by spi & 0xffff (the SPI layout
//               of control/esp/spi.hpp). Whoever frees an SA removes it from every table first
//               (after the grace period when tables are published by snapshot).
//
// Keys: the expanded AES-GCM key lives inside the SA (1 KiB, 64-byte aligned), so it never
// outlives it and is wiped with it. SAs are neither copied nor moved: a key is never duplicated.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "dataplane/api/counters.hpp"
#include "dataplane/api/esp.hpp"
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

/// An outbound SA's runtime. Control constructs it (start-up or rekey, never per packet); the
/// workers pass it to esp_encrypt_burst.
struct alignas(64) OutboundSa {
  /// Expands key with engine (any engine of the same arch as the workers'). seq_limit is
  /// clamped to kEspSeqLimitNoEsn without ESN; sequence numbers start at 1. byte_limit: inner
  /// bytes after which nothing more is sent (0: none); expire_tsc: TSC time from which nothing
  /// more is sent (0: never).
  OutboundSa(const CryptoEngine& engine, uint32_t spi, const uint8_t key[kGcmKeyLen],
             const uint8_t salt[kEspSaltLen], bool esn, uint64_t seq_limit, const EspPath& path,
             uint64_t byte_limit = 0, uint64_t expire_tsc = 0) noexcept;
  /// Wipes the expanded key and the salt.
  ~OutboundSa();
  OutboundSa(const OutboundSa&) = delete;
  OutboundSa& operator=(const OutboundSa&) = delete;

  /// Changes the outer headers used when esp_encrypt_burst gets none of its own; rebuilds the
  /// template. Not while a worker sends on it.
  void set_path(const EspPath& p) noexcept;
  /// The outer headers in use.
  const EspPath& path() const noexcept { return path_; }
  /// Whether esp_encrypt_burst would encrypt nothing at TSC time now: sequence numbers used
  /// up below seq_limit, byte_limit reached or expire_tsc passed. Any thread.
  bool expired(uint64_t now_tsc) const noexcept {
    return seq.load(std::memory_order_relaxed) >= seq_limit ||
           (byte_limit != 0 && bytes.load() >= byte_limit) || (expire_tsc != 0 && now_tsc >= expire_tsc);
  }
  /// expired() at the current TSC time.
  bool expired() const noexcept;

  // Line 0: what a burst reads and reserves.
  std::atomic<uint64_t> seq{1};  ///< next sequence number to use; reserved per burst (compare-and-swap)
  uint64_t seq_limit;      ///< sequence numbers below this may be used (exclusive)
  uint64_t byte_limit;     ///< inner bytes after which the SA sends nothing (0: no limit)
  uint64_t expire_tsc;     ///< TSC time from which the SA sends nothing (0: never)
  uint32_t spi;            ///< host byte order
  uint8_t salt[kEspSaltLen];
  bool esn;                ///< 64-bit sequence numbers (the high half in the AAD only)
  /// Unique among the SAs this process makes: a worker's EspSeqBlock knows by it whose numbers
  /// it holds even when a new SA comes to the address of a freed one.
  uint64_t serial;

  // Line 1: the counters control reads (atomic adds: several workers may send on one SA).
  alignas(64) AtomicCounter pkts;   ///< packets encrypted and kept
  AtomicCounter bytes;              ///< their inner bytes (what was handed to esp_encrypt_burst)

  // Lines 2-3: the default outer headers (path_ as a template).
  alignas(64) EspOuter outer;
  EspPath path_;           ///< written only by the constructor and set_path

  /// Round keys and GHASH powers: the rest of the record.
  GcmKey key;
};
static_assert(sizeof(OutboundSa) <= 4 * 64 + sizeof(GcmKey), "OutboundSa grew past four lines and its key");

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
  /// Whether worker may process this SA's packets: true if it owns it, or if nobody did and it
  /// now does. Any worker; lock-free.
  bool claim(uint16_t worker) noexcept {
    int32_t o = owner.load(std::memory_order_relaxed);
    if (o == worker) return true;
    if (o >= 0) return false;
    return owner.compare_exchange_strong(o, worker, std::memory_order_relaxed) || o == worker;
  }

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
  std::atomic<int32_t> owner{-1};  ///< the worker that processes it (claim()); -1 before the first packet

  /// Round keys and GHASH powers.
  GcmKey key;
  /// Anti-replay state (single writer: the owning worker).
  ReplayWindow window;
};
static_assert(sizeof(InboundSa) <= 2 * 64 + sizeof(GcmKey) + sizeof(ReplayWindow),
              "InboundSa grew past two lines, its key and its window");

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
