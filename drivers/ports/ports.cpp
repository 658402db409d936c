#include <linux/if_packet.h>
#include <net/if.h>
#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>

#include "drivers/api/ports.hpp"

namespace sdwan::drv {
namespace {

// Descriptor count asked of every PMD before rte_eth_dev_adjust_nb_rx_tx_desc trims it.
constexpr uint16_t kDescriptors = 1024;
// Ring ports: one 1024-slot SP/SC rte_ring per queue and direction.
constexpr unsigned kRingSlots = 1024;
constexpr uint64_t kRssHashes = RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP;
constexpr uint64_t kTxOffloads = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE | RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;

// TPACKET_V2 puts the network header of a received frame at this offset in its ring frame
// (TPACKET_ALIGN(hdrlen + max(16, maclen)), even with VLAN tags in the MAC header), and the
// kernel silently truncates what does not fit after it. net_af_packet hands the truncated
// frame on as if it were whole, so the frame must hold this much plus the MTU.
constexpr uint32_t kAfPacketNetOffset = TPACKET_ALIGN(TPACKET2_HDRLEN + 16);
// net_af_packet copies a frame's data from this offset (it writes TX data there as well).
constexpr uint32_t kAfPacketDataOffset = TPACKET2_HDRLEN - sizeof(sockaddr_ll);
constexpr uint32_t kAfPacketFrameGranule = 2048;  // the PMD's default frame size
constexpr uint32_t kAfPacketRingBytes = 2u << 20;  // per ring: about 1 ms of a 10G link
constexpr uint32_t kAfPacketMinFrames = 512;

struct AfPacketGeometry {
  uint32_t block = 0;
  uint32_t frame = 0;
  uint32_t count = 0;
};

// The kernel wants: block a multiple of the page size, frames that do not straddle blocks,
// frame count a whole number of blocks. Blocks grow until at most 1/8 of each is wasted.
AfPacketGeometry af_packet_geometry(uint16_t mtu) {
  AfPacketGeometry g;
  const uint32_t need = kAfPacketNetOffset + mtu;
  g.frame = (need + kAfPacketFrameGranule - 1) / kAfPacketFrameGranule * kAfPacketFrameGranule;
  const long page = sysconf(_SC_PAGESIZE);
  g.block = page > 0 ? static_cast<uint32_t>(page) : 4096;
  while (g.block < g.frame) g.block *= 2;
  while ((g.block % g.frame) * 8 > g.block) g.block *= 2;
  const uint32_t per_block = g.block / g.frame;
  const uint32_t want = std::max(kAfPacketMinFrames, kAfPacketRingBytes / g.frame);
  g.count = (want + per_block - 1) / per_block * per_block;
  return g;
}

uint16_t queue_pairs(const PortRequest& r) { return std::max<uint16_t>({r.rx_queues, r.tx_queues, 1}); }

std::optional<std::string> read_sysfs(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!f || !std::getline(f, s)) return std::nullopt;
  return s;
}

std::optional<long> read_sysfs_long(const std::string& path) {
  const auto s = read_sysfs(path);
  if (!s || s->empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s->c_str(), &end, 10);
  if (errno != 0 || end == s->c_str()) return std::nullopt;
  return v;
}

std::string rte_error_text(int rc) { return rte_strerror(rc < 0 ? -rc : rc); }

// What open_port remembers about a port until close_port: close_port must not touch an
// ethdev it did not open (port ids are reused), and link_state needs the kernel interface.
struct OpenRecord {
  PortKind kind = PortKind::kNull;
  std::string iface;          // af_packet / af_xdp
  std::string created_vdev;   // a ring ethdev open_port made, removed again by close_port
};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<uint16_t, OpenRecord>& registry() {
  static std::map<uint16_t, OpenRecord> r;
  return r;
}

std::optional<uint16_t> port_by_name(const std::string& name) {
  uint16_t id = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) return std::nullopt;
  return id;
}

Result<rte_ring*> ring_for(const std::string& name) {
  if (name.size() >= RTE_RING_NAMESIZE)
    return err("ring name " + name + " is longer than " + std::to_string(RTE_RING_NAMESIZE - 1) + " characters");
  if (rte_ring* r = rte_ring_lookup(name.c_str())) return r;
  rte_ring* r = rte_ring_create(name.c_str(), kRingSlots, static_cast<int>(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (r == nullptr) return err("rte_ring_create(" + name + "): " + rte_error_text(rte_errno));
  return r;
}

// ring:NAME is an ethdev the caller made (named NAME, or net_ring_NAME by rte_eth_from_rings)
// or one made here over the NAME_rx* / NAME_tx* rings; created tells close_port to remove it.
Result<uint16_t> ring_port(const PortRequest& req, bool& created) {
  created = false;
  if (auto id = port_by_name(req.spec.arg)) return *id;
  if (auto id = port_by_name(ethdev_name(req))) return *id;
  std::vector<rte_ring*> rx, tx;
  for (uint16_t q = 0; q < req.rx_queues; ++q) {
    auto r = ring_for(ring_name(req.spec.arg, true, q));
    if (!r) return r.error();
    rx.push_back(*r);
  }
  for (uint16_t q = 0; q < req.tx_queues; ++q) {
    auto r = ring_for(ring_name(req.spec.arg, false, q));
    if (!r) return r.error();
    tx.push_back(*r);
  }
  const int id = rte_eth_from_rings(req.spec.arg.c_str(), rx.data(), static_cast<unsigned>(rx.size()), tx.data(),
                                    static_cast<unsigned>(tx.size()), rte_socket_id());
  if (id < 0) return err("rte_eth_from_rings(" + req.spec.arg + "): " + rte_error_text(rte_errno));
  created = true;
  return static_cast<uint16_t>(id);
}

// DPDK 22.11's ethdev layer caps net_af_packet at max_rx_pktlen 1518 (MTU 1500) although the
// frames eal_args sized hold req.mtu; the kernel interface is what enforces the MTU, so it is
// set there directly, as the PMD itself does for MTUs the ethdev layer lets through.
Status set_kernel_mtu(const std::string& iface, uint16_t mtu) {
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return err(std::string("socket: ") + std::strerror(errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  ifr.ifr_mtu = mtu;
  const int rc = ioctl(s, SIOCSIFMTU, &ifr);
  const int e = errno;
  close(s);
  if (rc != 0) return err("setting MTU " + std::to_string(mtu) + " on " + iface + ": " + std::strerror(e));
  return Ok{};
}

}  // namespace

std::string ethdev_name(const PortRequest& req) {
  const std::string ord = std::to_string(req.ordinal);
  switch (req.spec.kind) {
    case PortKind::kPci: return req.spec.arg;
    case PortKind::kAfPacket: return "net_af_packet" + ord;
    case PortKind::kAfXdp: return "net_af_xdp" + ord;
    case PortKind::kTap: return "net_tap" + ord;
    case PortKind::kRing: return "net_ring_" + req.spec.arg;
    case PortKind::kNull: return "net_null" + ord;
  }
  return "net_null" + ord;
}

std::string ring_name(std::string_view ring_port, bool rx, uint16_t queue) {
  std::string n = std::string(ring_port) + (rx ? "_rx" : "_tx");
  if (queue != 0) n += std::to_string(queue);
  return n;
}

uint32_t rx_data_room(const PortRequest& req) {
  if (req.spec.kind == PortKind::kAfPacket)
    return RTE_PKTMBUF_HEADROOM + af_packet_geometry(req.mtu).frame - kAfPacketDataOffset;
  return RTE_PKTMBUF_HEADROOM + RTE_ETHER_HDR_LEN + 2 * RTE_VLAN_HLEN + uint32_t{req.mtu};
}

std::vector<std::string> eal_args(const std::vector<PortRequest>& ports) {
  std::vector<std::string> args;
  bool any_pci = false;
  for (const auto& p : ports) {
    const std::string name = ethdev_name(p);
    const std::string n = std::to_string(queue_pairs(p));
    switch (p.spec.kind) {
      case PortKind::kPci:
        args.insert(args.end(), {"-a", p.spec.arg});
        any_pci = true;
        break;
      case PortKind::kAfPacket: {
        const AfPacketGeometry g = af_packet_geometry(p.mtu);
        args.insert(args.end(), {"--vdev", name + ",iface=" + p.spec.arg + ",qpairs=" + n + ",blocksz=" +
                                               std::to_string(g.block) + ",framesz=" + std::to_string(g.frame) +
                                               ",framecnt=" + std::to_string(g.count)});
        break;
      }
      case PortKind::kAfXdp:
        args.insert(args.end(), {"--vdev", name + ",iface=" + p.spec.arg + ",start_queue=0,queue_count=" + n});
        break;
      case PortKind::kTap:
        args.insert(args.end(), {"--vdev", p.spec.arg.empty() ? name : name + ",iface=" + p.spec.arg});
        break;
      case PortKind::kNull:
        args.insert(args.end(), {"--vdev", name});
        break;
      case PortKind::kRing:
        break;  // created by open_port, after EAL init
    }
  }
  if (!any_pci) args.push_back("--no-pci");
  return args;
}

int numa_node(const PortSpec& spec) {
  std::string path;
  switch (spec.kind) {
    case PortKind::kPci: path = "/sys/bus/pci/devices/" + spec.arg + "/numa_node"; break;
    case PortKind::kAfPacket:
    case PortKind::kAfXdp: path = "/sys/class/net/" + spec.arg + "/device/numa_node"; break;
    default: return -1;
  }
  const auto v = read_sysfs_long(path);
  return v && *v >= 0 ? static_cast<int>(*v) : -1;
}

Status preflight(const PortSpec& spec) {
  switch (spec.kind) {
    case PortKind::kAfPacket:
    case PortKind::kAfXdp:
      if (if_nametoindex(spec.arg.c_str()) == 0)
        return err("interface " + spec.arg + " does not exist in this network namespace (ip link show " + spec.arg + ")");
      return Ok{};
    case PortKind::kPci: {
      const std::string dev = "/sys/bus/pci/devices/" + spec.arg;
      std::error_code ec;
      if (!std::filesystem::exists(dev, ec))
        return err("PCI device " + spec.arg + " does not exist (lspci -D lists the addresses)");
      const auto drv_link = std::filesystem::read_symlink(dev + "/driver", ec);
      const std::string drv = ec ? std::string() : drv_link.filename().string();
      static constexpr std::string_view kOk[] = {"vfio-pci", "uio_pci_generic", "igb_uio", "mlx5_core", "mlx4_core"};
      if (std::find(std::begin(kOk), std::end(kOk), drv) == std::end(kOk))
        return err("PCI device " + spec.arg + " is bound to " + (drv.empty() ? std::string("no driver") : drv) +
                   ", not to a DPDK-capable one: dpdk-devbind.py --bind=vfio-pci " + spec.arg);
      return Ok{};
    }
    default:
      return Ok{};
  }
}

Result<OpenedPort> open_port(const PortRequest& req, rte_mempool* pool) {
  const std::string who = "port " + req.name + " (" + req.spec.str() + "): ";
  auto fail_rc = [&](const char* call, int rc) { return err(who + call + ": " + rte_error_text(rc)); };
  if (pool == nullptr) return err(who + "no mempool given");
  if (req.rx_queues == 0 || req.tx_queues == 0) return err(who + "needs at least one RX and one TX queue");

  uint16_t port_id = 0;
  bool created = false;
  if (req.spec.kind == PortKind::kRing) {
    auto id = ring_port(req, created);
    if (!id) return err(who + id.error().msg);
    port_id = *id;
  } else if (auto id = port_by_name(ethdev_name(req))) {
    port_id = *id;
  } else {
    return err(who + "no ethdev named " + ethdev_name(req) + " (eal_args creates it; were they given to rte_eal_init?)");
  }

  rte_eth_dev_info info{};
  if (const int rc = rte_eth_dev_info_get(port_id, &info); rc != 0) return fail_rc("rte_eth_dev_info_get", rc);
  const std::string driver = info.driver_name != nullptr ? info.driver_name : "";
  if (req.rx_queues > info.max_rx_queues || req.tx_queues > info.max_tx_queues)
    return err(who + std::to_string(req.rx_queues) + " RX / " + std::to_string(req.tx_queues) + " TX queues requested but " +
               driver + " offers at most " + std::to_string(info.max_rx_queues) + " RX / " +
               std::to_string(info.max_tx_queues) + " TX");
  // Every queue socket of an af_packet device is in one PACKET_FANOUT group from the moment it
  // is created, so the kernel hashes flows onto sockets nobody would poll.
  if (req.spec.kind == PortKind::kAfPacket && req.rx_queues != info.max_rx_queues)
    return err(who + "the kernel spreads received packets over all " + std::to_string(info.max_rx_queues) +
               " af_packet queue sockets, so all must be polled: rx_queues must be " +
               std::to_string(info.max_rx_queues) + ", not " + std::to_string(req.rx_queues));
  const uint32_t room = rte_pktmbuf_data_room_size(pool);
  if (room < rx_data_room(req))
    return err(who + "mempool " + pool->name + " has a data room of " + std::to_string(room) + " bytes; MTU " +
               std::to_string(req.mtu) + " on this port needs " + std::to_string(rx_data_room(req)));

  rte_eth_conf conf{};
  const uint64_t rss_hf = kRssHashes & info.flow_type_rss_offloads;
  const bool rss = req.rx_queues > 1 && rss_hf != 0;
  if (rss) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
  }
  conf.txmode.offloads = kTxOffloads & info.tx_offload_capa;
  if (const int rc = rte_eth_dev_configure(port_id, req.rx_queues, req.tx_queues, &conf); rc != 0)
    return fail_rc("rte_eth_dev_configure", rc);

  uint16_t nb_rxd = kDescriptors, nb_txd = kDescriptors;
  if (const int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rxd, &nb_txd); rc != 0)
    return fail_rc("rte_eth_dev_adjust_nb_rx_tx_desc", rc);
  const int socket = rte_eth_dev_socket_id(port_id);
  const unsigned queue_socket = socket < 0 ? static_cast<unsigned>(SOCKET_ID_ANY) : static_cast<unsigned>(socket);
  rte_eth_rxconf rxconf = info.default_rxconf;
  rxconf.offloads = conf.rxmode.offloads;
  for (uint16_t q = 0; q < req.rx_queues; ++q)
    if (const int rc = rte_eth_rx_queue_setup(port_id, q, nb_rxd, queue_socket, &rxconf, pool); rc != 0)
      return fail_rc(("rte_eth_rx_queue_setup(" + std::to_string(q) + ")").c_str(), rc);
  rte_eth_txconf txconf = info.default_txconf;
  txconf.offloads = conf.txmode.offloads;
  for (uint16_t q = 0; q < req.tx_queues; ++q)
    if (const int rc = rte_eth_tx_queue_setup(port_id, q, nb_txd, queue_socket, &txconf); rc != 0)
      return fail_rc(("rte_eth_tx_queue_setup(" + std::to_string(q) + ")").c_str(), rc);

  const bool ethdev_caps_af_packet = req.spec.kind == PortKind::kAfPacket &&
                                     uint32_t{req.mtu} + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN > info.max_rx_pktlen;
  if (ethdev_caps_af_packet) {
    if (auto s = set_kernel_mtu(req.spec.arg, req.mtu); !s) return err(who + s.error().msg);
  } else if (const int rc = rte_eth_dev_set_mtu(port_id, req.mtu); rc != 0 && rc != -ENOTSUP) {
    return err(who + "rte_eth_dev_set_mtu(" + std::to_string(req.mtu) + "): " + rte_error_text(rc));
  }

  if (const int rc = rte_eth_dev_start(port_id); rc != 0) return fail_rc("rte_eth_dev_start", rc);
  const bool kernel_iface = req.spec.kind == PortKind::kAfPacket || req.spec.kind == PortKind::kAfXdp;
  // The kernel interface keeps its own MAC filter; we receive for addresses it does not own
  // (a shared HA address, frames the emulator forwards unchanged).
  if (kernel_iface || req.spec.kind == PortKind::kTap) {
    if (const int rc = rte_eth_promiscuous_enable(port_id); rc != 0 && rc != -ENOTSUP) {
      rte_eth_dev_stop(port_id);
      return fail_rc("rte_eth_promiscuous_enable", rc);
    }
  }

  OpenedPort out;
  out.name = req.name;
  out.port_id = port_id;
  out.socket = socket;
  rte_ether_addr mac{};
  if (const int rc = rte_eth_macaddr_get(port_id, &mac); rc != 0) {
    rte_eth_dev_stop(port_id);
    return fail_rc("rte_eth_macaddr_get", rc);
  }
  std::copy(std::begin(mac.addr_bytes), std::end(mac.addr_bytes), out.mac.b.begin());
  out.driver = driver;
  // af_packet has no RSS of its own, but its fanout group hashes flows over the queues alike.
  out.rss = rss || (req.spec.kind == PortKind::kAfPacket && req.rx_queues > 1);
  out.tx_offloads = conf.txmode.offloads;

  std::lock_guard lock(registry_mutex());
  registry()[port_id] = OpenRecord{req.spec.kind, kernel_iface ? req.spec.arg : std::string{},
                                   created ? ethdev_name(req) : std::string{}};
  return out;
}

void close_port(uint16_t port_id) {
  OpenRecord rec;
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(port_id);
    if (it == registry().end()) return;
    rec = std::move(it->second);
    registry().erase(it);
  }
  // Errors are of no use here: the port is going away whatever they say.
  (void)rte_eth_dev_stop(port_id);
  (void)rte_eth_dev_close(port_id);
  if (!rec.created_vdev.empty()) (void)rte_vdev_uninit(rec.created_vdev.c_str());
}

LinkState link_state(uint16_t port_id) {
  rte_eth_link link{};
  if (!rte_eth_dev_is_valid_port(port_id) || rte_eth_link_get_nowait(port_id, &link) != 0) return {};
  LinkState s;
  s.up = link.link_status == RTE_ETH_LINK_UP;
  s.speed_mbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
  std::string iface;
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(port_id);
    if (it != registry().end()) iface = it->second.iface;
  }
  if (iface.empty()) return s;
  // Reading carrier fails (EINVAL) while the interface is administratively down.
  const auto carrier = read_sysfs_long("/sys/class/net/" + iface + "/carrier");
  s.up = s.up && carrier && *carrier == 1;
  if (const auto speed = read_sysfs_long("/sys/class/net/" + iface + "/speed"); speed && *speed > 0)
    s.speed_mbps = static_cast<uint32_t>(*speed);
  return s;
}

}  // namespace sdwan::drv
