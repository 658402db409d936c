// Per-worker counters: one writer (the worker), read by control with relaxed loads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

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
  kUnknownPeer,        // overlay packet from an address that is no configured peer endpoint
  kCount
};

/// Stable lower-case name of a drop reason ("ttl_expired").
constexpr std::string_view drop_name(Drop d) noexcept {
  constexpr std::string_view names[] = {
      "runt",          "bad_l2",          "bad_ip_header",  "bad_ip_checksum",
      "ttl_expired",   "no_route",        "unresolved",     "no_path",
      "too_big",       "bad_overlay",     "not_for_us",     "ipv6_unsupported",
      "fragment",      "exception_full",  "tx_full",        "local_unhandled", "unknown_peer"};
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

constexpr uint32_t kMaxPorts = 8;
constexpr uint32_t kMaxPaths = 4096;  // 1,000 peers x 4 uplinks fits
constexpr uint32_t kMaxPeers = 4096;

/// Per path, per worker (an array of kMaxPaths, indexed by path id).
struct PathCounters {
  Counter tx_pkts, tx_bytes, rx_pkts, rx_bytes;
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
  Counter icmp_errors_sent;
  Counter icmp_errors_ratelimited;
  Counter mss_clamped;
  Counter flows_created;
  Counter flow_cache_full;  // flow could not be inserted (packet still forwarded)
  Counter polls, busy_polls;  // loop iterations, and those that moved at least one packet
  Counter control_tx;      // frames control asked this worker to send
  Counter arp_parked;      // packets held while their LAN destination was being resolved
  Counter arp_released;    // ... and sent once it was

  void drop(Drop d, uint64_t n = 1) noexcept { drops[static_cast<size_t>(d)].add(n); }
};

}  // namespace sdwan::dp
