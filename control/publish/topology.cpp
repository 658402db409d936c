#include "control/publish/topology.hpp"

#include <algorithm>

namespace sdwan::cp {

Topology make_topology(const Config& cfg) {
  Topology t;
  t.overlay_port = cfg.overlay_port;
  t.icmp_errors_per_sec = cfg.icmp_errors_per_sec;
  t.ports.push_back({"lan", cfg.lan.port, dp::PortRole::kLan, cfg.lan.address, cfg.lan.mtu, -1});
  for (size_t i = 0; i < cfg.uplinks.size(); ++i) {
    const auto& u = cfg.uplinks[i];
    t.ports.push_back({u.name, u.port, dp::PortRole::kUplink, u.address, u.mtu, static_cast<int>(i)});
  }
  // The host stack's address is the LAN address: what the LAN and the peers reach it by.
  if (cfg.host.on()) t.ports.push_back({"host", cfg.host.port, dp::PortRole::kHost, Prefix4{cfg.lan.address.addr, 32}, cfg.lan.mtu, -1});
  t.peer_paths.resize(cfg.peers.size());
  for (size_t pi = 0; pi < cfg.peers.size(); ++pi) {
    const auto& peer = cfg.peers[pi];
    for (size_t ei = 0; ei < peer.endpoints.size(); ++ei) {
      const auto& ep = peer.endpoints[ei];
      for (size_t ui = 0; ui < cfg.uplinks.size(); ++ui) {
        const auto& u = cfg.uplinks[ui];
        if (!ep.uplinks.empty() && std::find(ep.uplinks.begin(), ep.uplinks.end(), u.name) == ep.uplinks.end())
          continue;
        TopoPath p;
        p.id = static_cast<uint16_t>(t.paths.size());
        p.name = u.name + ":" + peer.name;
        const auto same = std::count_if(t.paths.begin(), t.paths.end(), [&](const TopoPath& q) {
          return q.port == ui + 1 && q.peer == pi;
        });
        if (same > 0) p.name += "#" + std::to_string(same + 1);
        p.port = static_cast<uint8_t>(ui + 1);
        p.peer = static_cast<uint16_t>(pi);
        p.endpoint = ei;
        p.remote = ep.address;
        p.remote_port = ep.port ? ep.port : cfg.overlay_port;
        p.l2_target = u.address.contains(ep.address) ? ep.address : u.next_hop;
        p.removed = peer.removed;
        t.peer_paths[pi].push_back(p.id);
        t.paths.push_back(std::move(p));
      }
    }
  }
  return t;
}

std::string path_down_reason(const TopoPath& p, const std::vector<PortLive>& live,
                             const NeighborManager& nm) {
  if (p.port >= live.size() || !live[p.port].link_up) return "link down";
  if (!nm.lookup(p.port, p.l2_target)) return "next hop " + p.l2_target.str() + " unresolved";
  return "";
}

Result<std::shared_ptr<const dp::RouteTable>> build_routes(const Config& cfg, int socket) {
  uint32_t n = 1;
  for (const auto& p : cfg.peers) n += static_cast<uint32_t>(p.prefixes.size());
  std::shared_ptr<dp::RouteTable> rt = dp::RouteTable::create(std::max<uint32_t>(n * 2, 64), socket);
  if (!rt) return err("cannot create the route table (rte_lpm_create failed: out of memory?)");
  const uint32_t mask = cfg.lan.address.len == 0 ? 0 : ~uint32_t{0} << (32 - cfg.lan.address.len);
  if (!rt->add(Prefix4{Ipv4{cfg.lan.address.addr.v & mask}, cfg.lan.address.len}, dp::RouteTarget::encode_local(0)))
    return err("cannot add the LAN route");
  for (size_t i = 0; i < cfg.peers.size(); ++i)
    for (const auto& pfx : cfg.peers[i].removed ? std::vector<Prefix4>{} : cfg.peers[i].prefixes)
      if (!rt->add(pfx, dp::RouteTarget::encode_peer(static_cast<uint16_t>(i))))
        return err("cannot add route " + pfx.str() + " for peer " + cfg.peers[i].name);
  return std::shared_ptr<const dp::RouteTable>(std::move(rt));
}

std::unique_ptr<dp::Snapshot> build_snapshot(const Topology& t, const std::vector<PortLive>& live,
                                             const NeighborManager& nm,
                                             std::shared_ptr<const dp::RouteTable> routes, uint64_t generation,
                                             const SnapshotSas& sas, std::span<const PathMeasured> measured) {
  auto s = std::make_unique<dp::Snapshot>();
  s->generation = generation;
  s->overlay_port = t.overlay_port;
  s->icmp_errors_per_sec = t.icmp_errors_per_sec;
  s->probe_interval_ms = t.probe_interval_ms;
  s->lan_port = 0;
  s->ports.reserve(t.ports.size());
  s->paths.reserve(t.paths.size());
  s->peers.reserve(t.peer_paths.size());
  for (size_t i = 0; i < t.ports.size(); ++i) {
    const auto& tp = t.ports[i];
    dp::PortInfo pi;
    pi.port_id = i < live.size() ? live[i].port_id : 0;
    pi.role = tp.role;
    pi.uplink = static_cast<uint8_t>(tp.uplink < 0 ? 0 : tp.uplink);
    pi.mac = i < live.size() ? live[i].mac : MacAddr{};
    pi.addr = tp.addr.addr;
    pi.prefix_len = tp.addr.len;
    pi.mtu = tp.mtu;
    pi.link_up = i < live.size() && live[i].link_up;
    if (tp.role == dp::PortRole::kHost) {
      pi.host_mac = i < live.size() ? live[i].host_mac : MacAddr{};
      s->host_port = static_cast<uint8_t>(i);
    }
    s->ports.push_back(pi);
  }
  for (const auto& tp : t.paths) {
    dp::PathInfo p;
    p.id = tp.id;
    p.port = tp.port;
    p.peer = tp.peer;
    p.sa = tp.id < sas.out.size() ? sas.out[tp.id].get() : nullptr;
    // path_down_reason's test, with one neighbour lookup instead of two and no string: this
    // runs for every path at every publication (once per probe interval).
    const std::optional<MacAddr> next_mac = nm.lookup(tp.port, tp.l2_target);
    const bool link = tp.port < live.size() && live[tp.port].link_up;
    p.usable = link && next_mac.has_value() && p.sa != nullptr;
    if (tp.id < measured.size()) {
      const PathMeasured& m = measured[tp.id];
      p.up = m.up;
      p.rtt_us = m.rtt_us;
      p.jitter_us = m.jitter_us;
      p.loss_fwd_ppm = m.loss_fwd_ppm;
      p.loss_rev_ppm = m.loss_rev_ppm;
      p.drill_drop_ppm = m.drill_drop_ppm;
    }
    p.src_mac = s->ports[tp.port].mac;
    p.dst_mac = next_mac.value_or(MacAddr{});
    p.src_ip = t.ports[tp.port].addr.addr;
    p.dst_ip = tp.remote;
    p.src_port = t.overlay_port;
    p.dst_port = tp.remote_port;
    p.mtu = t.ports[tp.port].mtu;
    p.outer = dp::EspOuter::of(dp::EspPath{p.src_mac, p.dst_mac, p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.mtu});
    s->paths.push_back(p);
  }
  for (const auto& pp : t.peer_paths) {
    dp::PeerInfo pi;
    pi.n_paths = static_cast<uint8_t>(std::min<size_t>(pp.size(), dp::kMaxPathsPerPeer));
    for (size_t i = 0; i < pi.n_paths; ++i) pi.paths[i] = pp[i];
    s->peers.push_back(pi);
  }
  s->routes = std::move(routes);
  s->inbound = sas.inbound;
  s->out_sas = sas.out;
  s->in_sas = sas.in;
  s->neighbors = dp::NeighborTable(nm.resolved());
  return s;
}

}  // namespace sdwan::cp
