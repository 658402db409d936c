// ARP frames as the control thread meets them: it owns neighbour resolution, the workers hand
// it every ARP frame they receive and send the frames it builds. Byte buffers, any thread.
#pragma once

#include <cstdint>

#include "dataplane/api/types.hpp"

namespace sdwan::dp {

/// Length of every ARP frame this module writes (Ethernet minimum, without FCS).
constexpr uint32_t kArpFrameLen = 60;

/// The fields of an Ethernet/IPv4 ARP packet, host order.
struct ArpInfo {
  uint16_t op;  ///< kArpOpRequest, kArpOpReply, or anything the sender put there
  MacAddr sha;  ///< sender hardware address
  Ipv4 spa;     ///< sender protocol address
  MacAddr tha;  ///< target hardware address
  Ipv4 tpa;     ///< target protocol address
};

/// Reads a whole Ethernet frame (untagged or VLAN-tagged) as Ethernet/IPv4 ARP; false for
/// anything else or anything cut short.
bool arp_from_frame(const uint8_t* frame, uint32_t len, ArpInfo* out) noexcept;

/// Writes an untagged Ethernet+ARP reply to request (to its sender) into out (>= 60 bytes),
/// zero-padded; returns kArpFrameLen.
uint32_t build_arp_reply(uint8_t* out, MacAddr our_mac, Ipv4 our_ip, const ArpInfo& request) noexcept;

/// Writes a broadcast ARP request for target into out (>= 60 bytes); returns kArpFrameLen.
uint32_t build_arp_request(uint8_t* out, MacAddr our_mac, Ipv4 our_ip, Ipv4 target) noexcept;

/// Writes a gratuitous ARP (broadcast request, spa == tpa == our_ip, tha zero, RFC 5227) into
/// out (>= 60 bytes); returns kArpFrameLen.
uint32_t build_garp(uint8_t* out, MacAddr our_mac, Ipv4 our_ip) noexcept;

}  // namespace sdwan::dp
