// ARP neighbour resolution, owned by the control thread. Pure logic with injected time: the
// caller feeds it ARP packets and resolve requests and sends the requests it asks for.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/api/snapshot.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::cp {

/// One of our interfaces, as neighbour resolution needs it.
struct NeighborPort {
  uint8_t index = 0;  // port index in the snapshot
  MacAddr mac;
  Prefix4 addr;       // our address with prefix length
};

/// An ARP packet's fields (Ethernet/IPv4 only).
struct ArpPacket {
  uint16_t op = 0;    // 1 request, 2 reply
  MacAddr sha;
  Ipv4 spa;
  Ipv4 tpa;
};

class NeighborManager {
 public:
  enum class State { kIncomplete, kReachable, kProbing };
  /// A row for `show neighbors` and tests.
  struct Info {
    uint8_t port;
    Ipv4 ip;
    State state;
    MacAddr mac;
    bool permanent;
    uint64_t updated_ms;
  };

  static constexpr uint64_t kRetryMs = 1000;        // between requests for an unresolved address
  static constexpr uint32_t kMaxTries = 5;          // a wanted (non-permanent) address gives up after this
  static constexpr uint64_t kReachableMs = 30000;   // a confirmed entry is re-checked after this
  static constexpr uint32_t kProbeTries = 3;        // re-check requests before it is forgotten

  explicit NeighborManager(std::vector<NeighborPort> ports);

  /// Asks for ip on port. permanent = a next hop: resolved forever, never forgotten.
  void want(uint8_t port, Ipv4 ip, bool permanent, uint64_t now_ms);

  /// An ARP packet arrived on port. Requests aimed at us create an entry for the sender;
  /// replies and other requests only refresh existing ones; senders outside the port's
  /// subnet are ignored. True if it is a request for our
  /// address on that port: the caller answers it.
  bool on_arp(uint8_t port, const ArpPacket& a, uint64_t now_ms);

  /// Timers. Returns the (port, address) pairs to send an ARP request for now.
  std::vector<std::pair<uint8_t, Ipv4>> tick(uint64_t now_ms);

  /// True once after the resolved set changed (a MAC learned, changed or forgotten).
  bool take_changed() {
    const bool c = changed_;
    changed_ = false;
    return c;
  }

  /// The resolved MAC of ip on port, if any.
  std::optional<MacAddr> lookup(uint8_t port, Ipv4 ip) const;

  /// The resolved entries, for the workers' NeighborTable.
  std::vector<dp::NeighborTable::Entry> resolved() const;

  /// Every entry.
  std::vector<Info> dump() const;

 private:
  struct Entry {
    State state = State::kIncomplete;
    MacAddr mac;
    bool permanent = false;
    uint32_t tries = 0;
    uint64_t next_ms = 0;     // when to send the next request
    uint64_t updated_ms = 0;  // last confirmation
  };
  const NeighborPort* port(uint8_t index) const;
  void learn(uint8_t port, Ipv4 ip, MacAddr mac, uint64_t now_ms, bool create);

  std::vector<NeighborPort> ports_;
  std::map<std::pair<uint8_t, uint32_t>, Entry> entries_;
  bool changed_ = false;
};

/// Handles one ARP frame that a worker handed to control: learns from it and, for a request
/// to our address on that port, writes the reply into out (>= 64 bytes) and returns its
/// length; 0 when there is nothing to send (not ARP, not for us, malformed).
uint32_t handle_arp_frame(NeighborManager& nm, uint8_t port, const uint8_t* frame, uint32_t len, MacAddr our_mac,
                          Ipv4 our_ip, uint64_t now_ms, uint8_t* out);

}  // namespace sdwan::cp
