// Per-worker counters: one writer (the worker), read by control with relaxed loads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "dataplane/api/policy.hpp"

namespace sdwan::dp {

/// Why a worker dropped a packet. Stable names: they appear in CLI, JSON and metrics.
enum class Drop : uint8_t {
  kRunt,               // shorter than the headers it claims
  kBadL2,              // unknown or unsupported ethertype
  kBadIpHeader,        // version, IHL or total length wrong
  kBadIpChecksum,      // IPv4 header checksum mismatch
  kTtlExpired,         // TTL would reach 0 on forwarding
  kNoRoute,            // no route for the destination
  kUnresolved,         // next hop or LAN host has no ARP entry yet
  kNoPath,             // peer has no usable path
  kTooBig,             // encapsulated packet exceeds the uplink MTU
  kBadOverlay,         // overlay header malformed or wrong version
  kNotForUs,           // uplink traffic that is neither overlay nor addressed to us
  kIpv6Unsupported,    // IPv6 parsed but not forwarded yet
  kFragment,           // IPv4 fragment to/for us that we do not reassemble
  kExceptionFull,      // exception ring to control was full
  kTxFull,             // the port's TX queue did not take the packet
  kLocalUnhandled,     // addressed to us but not a protocol we answer; broadcast, multicast
  kDuplicate,          // a copy of a duplicate-class packet already delivered (or older than the window)
  kHandoffFull,        // a duplicate or spray packet for the worker that owns its stream: that ring was full
  kCount
};

/// Stable lower-case name of a drop reason ("ttl_expired").
constexpr std::string_view drop_name(Drop d) noexcept {
  constexpr std::string_view names[] = {
      "runt",          "bad_l2",          "bad_ip_header",  "bad_ip_checksum",
      "ttl_expired",   "no_route",        "unresolved",     "no_path",
      "too_big",       "bad_overlay",     "not_for_us",     "ipv6_unsupported",
      "fragment",      "exception_full",  "tx_full",        "local_unhandled", "duplicate",
      "handoff_full"};
  static_assert(std::size(names) == static_cast<size_t>(Drop::kCount));
  return names[static_cast<size_t>(d)];
}

/// A counter with one writer. The writer uses add(); any thread may load().
/// Relaxed load+store (not fetch_add): a single writer needs no locked instruction.
class Counter {
 public:
  void add(uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t load() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

/// A counter several threads add to (an atomic add each time: use it per burst, not per packet).
class AtomicCounter {
 public:
  void add(uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t load() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

constexpr uint32_t kMaxPorts = 8;
constexpr uint32_t kMaxPaths = 4096;  // 1,000 peers x 4 uplinks fits
constexpr uint32_t kMaxPeers = 4096;

/// Why the ESP transform dropped a packet. Stable names (esp_drop_name) for CLI and metrics.
enum class EspDrop : uint8_t {
  // outbound
  kTooBig,         // the ESP packet would exceed the SA's MTU
  kNoRoom,         // not enough headroom or tailroom, or a multi-segment mbuf
  kSaExpired,      // the SA is at a hard limit: sequence numbers, packets, bytes or age
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
  kWrongWorker,    // the SA belongs to another worker (its outer 5-tuple moved to another RX queue)
  kCount
};

/// Stable lower-case name of an ESP drop reason ("icv_fail").
constexpr std::string_view esp_drop_name(EspDrop d) noexcept {
  constexpr std::string_view names[] = {"too_big",     "no_room",  "sa_expired", "seal_failed",
                                        "runt",        "bad_length", "unknown_spi", "replay",
                                        "too_old",     "icv_fail", "bad_pad",    "bad_next_header", "wrong_worker"};
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

/// Per path, per worker (an array of kMaxPaths, indexed by path id).
struct PathCounters {
  Counter tx_pkts, tx_bytes, rx_pkts, rx_bytes;  // data only (inner IP bytes), never probes
  Counter probes_sent;       // test packets this worker sent on the path
  Counter probes_received;   // their reflections that came back
  Counter probes_reflected;  // the peer's test packets this worker reflected
};

/// Per port, per worker.
struct PortCounters {
  Counter rx_pkts, rx_bytes, tx_pkts, tx_bytes;
};

/// Everything one worker counts. Cache-line aligned so no two workers share a line.
struct alignas(64) WorkerCounters {
  std::array<Counter, static_cast<size_t>(Drop::kCount)> drops;
  std::array<PortCounters, kMaxPorts> ports;
  Counter encapsulated;    // LAN -> overlay
  Counter decapsulated;    // overlay -> LAN
  Counter arp_to_control;  // ARP frames handed to the control thread
  Counter icmp_echo_replied;
  Counter to_host;         // packets for the LAN address handed to the host stack (host port)
  Counter icmp_errors_sent;
  Counter icmp_errors_ratelimited;
  Counter mss_clamped;
  Counter flows_created;
  Counter flow_cache_full;  // flow could not be inserted (packet still forwarded)
  Counter polls, busy_polls;  // loop iterations, and those that moved at least one packet
  Counter busy_tsc;        // TSC cycles spent in those busy polls (the metrics' busy ratio)
  Counter control_tx;      // frames control asked this worker to send
  Counter arp_parked;      // packets held while their LAN destination was being resolved
  Counter arp_released;    // ... and sent once it was
  Counter probe_alloc_failed;  // a probe not sent: the mempool was empty
  Counter probe_reports_lost;  // a reflected probe whose report did not fit control's ring
  Counter dup_no_mbuf;     // a copy not made: the mempool was empty (the first copy still went)
  Counter dedup_no_window; // a duplicated packet delivered unchecked: no de-duplication window left
  Counter reorder_held;      // sprayed packets that arrived ahead and waited for the ones before
  Counter reorder_late;      // sprayed packets that arrived after their turn was given up (delivered)
  Counter reorder_timeouts;  // gaps given up after the hold time
  Counter reorder_skipped;   // sequence numbers those gaps (and full buffers) skipped: lost or late
  Counter reorder_no_buffer; // sprayed packets delivered unordered: no reorder buffer left
  Counter handoff_out;       // duplicate and spray packets handed to the worker owning their stream
  Counter handoff_in;        // ... and taken from the other workers, to de-duplicate or reorder here
  std::array<Counter, kMaxClasses> class_pkts;   // LAN packets sent to a peer, by class
  std::array<Counter, kMaxClasses> class_bytes;  // their inner bytes
  // Failover drills (PathInfo::drill_drop_ppm): what the injected failure dropped.
  Counter drill_tx_dropped;     // packets (data, copies, probes, reflections) not sent on a drilled path
  Counter drill_rx_dropped;     // packets received on a drilled path and dropped after decryption
  std::array<Counter, kMaxClasses> drill_lost;     // LAN packets to a peer lost: dropped with no copy
                                                   // of them sent on an undrilled path
  std::array<Counter, kMaxClasses> drill_rx_class; // data packets from a peer dropped on receive
  std::array<Counter, kMaxClasses> class_dup_pkts;   // duplicate classes: copies sent, by class
  std::array<Counter, kMaxClasses> class_dup_bytes;  // their inner bytes: the overhead each class spends
  /// Second copies sent over every class, and their inner bytes (readers only: the worker
  /// counts per class).
  uint64_t dup_sent() const noexcept {
    uint64_t n = 0;
    for (const Counter& c : class_dup_pkts) n += c.load();
    return n;
  }
  uint64_t dup_bytes() const noexcept {
    uint64_t n = 0;
    for (const Counter& c : class_dup_bytes) n += c.load();
    return n;
  }

  void drop(Drop d, uint64_t n = 1) noexcept { drops[static_cast<size_t>(d)].add(n); }
};

}  // namespace sdwan::dp
