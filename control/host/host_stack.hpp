// The kernel side of the host port (docs/host.md): the appliance's own host stack reaches the
// LAN and the overlay through a tap that the dataplane forwards for. Control thread, at start
// and at exit only (it runs `ip`): never on a packet path.
#pragma once

#include <string>
#include <vector>

#include "dataplane/api/result.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::cp {

/// The kernel's next hop for everything it sends into the tap: a link-local address nobody
/// owns, with a permanent neighbour entry (the DPDK side's MAC), so the kernel never ARPs.
inline constexpr Ipv4 kHostGateway{0xa9fe0001};  // 169.254.0.1

/// What the kernel side of the tap gets.
struct HostStackPlan {
  std::string iface;                 ///< the tap's kernel interface (tap:NAME)
  Ipv4 addr;                         ///< the LAN address, as a /32
  std::vector<Prefix4> routes;       ///< the LAN subnet and every peer prefix, via kHostGateway
  uint16_t mtu = 1500;
};

/// The two ends of the tap: net_tap gives the kernel interface the PMD's own MAC, so the
/// dataplane answers as a gateway MAC of its own (locally administered, never the kernel's).
struct HostMacs {
  MacAddr kernel;                    ///< where the dataplane sends frames for the host stack
  MacAddr gateway;                   ///< the kernel's permanent neighbour for kHostGateway; the source of those frames
};

/// Brings the tap's kernel side up as plan says (IPv6 off, MTU, address, neighbour, routes,
/// replacing what a previous run left). The error names the `ip` command that failed and what
/// it said.
Result<HostMacs> host_stack_up(const HostStackPlan& plan);

/// Live reload of peers: routes the prefixes of routes that plan does not have yet through the
/// tap and removes those it has that routes lacks; plan.routes becomes routes. Errors are
/// logged (a prefix the host cannot reach is not worth refusing the reload for).
void host_stack_reroute(HostStackPlan& plan, const std::vector<Prefix4>& routes);

/// Removes the routes, the neighbour and the address (the tap itself goes with the port).
/// Best effort: errors are logged, never fatal.
void host_stack_down(const HostStackPlan& plan);

/// For a port the kernel sees too (af_packet, af_xdp): the kernel must not answer ARP on it
/// (arp_ignore 8) nor take IPv4 from it for the host stack's address (rp_filter 1: the LAN
/// address's sources route through the tap), so the host is reached through the dataplane only.
Status keep_kernel_off(const std::string& iface);

}  // namespace sdwan::cp
