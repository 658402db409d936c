// Ports: the operator's port spec -> EAL arguments -> a started ethdev.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/api/result.hpp"
#include "dataplane/api/types.hpp"

struct rte_mempool;

namespace sdwan::drv {

/// The kinds of port sdwand can drive.
enum class PortKind { kPci, kAfPacket, kAfXdp, kTap, kRing, kNull };

/// A parsed port spec: "pci:0000:03:00.0", "af_packet:IFACE", "af_xdp:IFACE", "tap" or
/// "tap:NAME", "ring:NAME", "null". Value type, any thread.
struct PortSpec {
  PortKind kind = PortKind::kNull;
  std::string arg;                  // PCI address, interface, ring or tap name ("" if none)
  /// Parses a spec; the error says what forms are accepted.
  static Result<PortSpec> parse(std::string_view s);
  /// Back to the operator's form.
  std::string str() const;
};

/// What control asks of one port.
struct PortRequest {
  std::string name;                 // logical name: "lan", "isp1"...
  PortSpec spec;
  uint16_t rx_queues = 1;           // one per worker
  uint16_t tx_queues = 1;           // one per worker
  uint16_t mtu = 1500;
  uint16_t ordinal = 0;             // unique small number per port, for vdev names
};

/// EAL arguments that create or allow the requested ports (--vdev ..., -a ..., or --no-pci
/// when no PCI port is requested), one argv element each. Call before rte_eal_init.
std::vector<std::string> eal_args(const std::vector<PortRequest>& ports);

/// The ethdev open_port looks for: the PCI address, net_<pmd><ordinal> for the vdevs eal_args
/// makes, net_ring_NAME for ring:NAME (what rte_eth_from_rings calls it). Any thread.
std::string ethdev_name(const PortRequest& req);

/// The rte_ring behind queue q of ring:NAME: "NAME_rx" (q 0) or "NAME_rx<q>" is what the port
/// receives from (the wire side enqueues), "NAME_tx"/"NAME_tx<q>" what it transmits into (the
/// wire side dequeues). Single producer, single consumer. Any thread.
std::string ring_name(std::string_view ring_port, bool rx, uint16_t queue);

/// The mbuf data room (RTE_PKTMBUF_HEADROOM included, as rte_pktmbuf_pool_create takes it) the
/// RX mempool of req needs so that a whole frame at req.mtu lands in one mbuf; open_port refuses
/// a smaller pool. af_packet needs more than the frame (its ring frames are copied whole).
uint32_t rx_data_room(const PortRequest& req);

/// The NUMA node a port's device sits on, read from sysfs before EAL starts; -1 if unknown
/// (virtual devices, veths).
int numa_node(const PortSpec& spec);

/// Before EAL init: whether the device behind spec exists, so a typo fails with one clear line
/// instead of EAL's probe errors. af_packet/af_xdp: the kernel interface exists in this network
/// namespace; PCI: the device exists and is bound to a userspace driver (vfio-pci, uio_pci_generic,
/// igb_uio) or to a driver DPDK drives beside the kernel (mlx5). Others need nothing. Any thread.
Status preflight(const PortSpec& spec);

/// A started port.
struct OpenedPort {
  std::string name;
  uint16_t port_id = 0;
  int socket = -1;                  // rte_eth_dev_socket_id
  MacAddr mac;
  std::string driver;               // e.g. "net_af_packet"
  bool rss = false;                 // RX is spread over queues by flow (RSS, or af_packet fanout)
  uint64_t tx_offloads = 0;         // RTE_ETH_TX_OFFLOAD_* enabled
};

/// After EAL init: finds the ethdev for req (creating ring ports on demand), configures
/// queues (RSS when rx_queues > 1 and supported; MBUF_FAST_FREE and IPv4 checksum offload when
/// offered), sets the MTU, starts it and enables promiscuous mode where the kind needs it.
/// Errors name the port and what failed. Control thread, after EAL init. An af_packet port
/// must poll every RX queue (the kernel fans RX out over all of its sockets), so rx_queues must
/// equal the qpairs eal_args gave it; its MTU is set on the kernel interface.
Result<OpenedPort> open_port(const PortRequest& req, rte_mempool* pool);

/// Stops and closes a port opened by open_port (and removes a ring ethdev open_port created, so
/// it can be opened again). Idempotent: unknown or already closed ports are left alone.
void close_port(uint16_t port_id);

/// Link state now (non-blocking). For af_packet/af_xdp, whose PMDs report "up" from start to
/// stop, it is also the kernel interface's carrier (and speed when the kernel knows it).
struct LinkState {
  bool up = false;
  uint32_t speed_mbps = 0;          // 0 if unknown
};
/// Control thread; a port id that is not an ethdev reads as down.
LinkState link_state(uint16_t port_id);

}  // namespace sdwan::drv
