#include "control/config/reload.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sdwan::cp {

namespace {

Error restart(const std::string& what) {
  return err(what + ": needs a restart (a reload applies " + reload_live_keys() + ")");
}

std::string names(const std::vector<ClassConfig>& cs) {
  std::string s;
  for (const auto& c : cs) s += (s.empty() ? "" : ", ") + c.name;
  return s;
}

}  // namespace

const char* reload_live_keys() {
  return "classes, policy, peers (added, removed or changed), uplinks' cost and bandwidth, paths (probe timers, "
         "damping, window), events, apps and log_level";
}

std::vector<PeerConfig> live_peers(const std::vector<PeerConfig>& running) {
  std::vector<PeerConfig> out;
  for (const auto& p : running)
    if (!p.removed) out.push_back(p);
  return out;
}

std::vector<PeerConfig> merge_peers(const std::vector<PeerConfig>& running, const std::vector<PeerConfig>& next) {
  std::vector<PeerConfig> out = running;
  for (auto& p : out) {
    if (p.removed) continue;
    const auto it = std::find_if(next.begin(), next.end(), [&](const PeerConfig& n) { return n.name == p.name; });
    if (it != next.end() && *it == p) continue;
    p.removed = true;
    p.name += " (removed)";
    p.prefixes.clear();
  }
  for (const auto& n : next) {
    const bool kept = std::any_of(out.begin(), out.end(), [&](const PeerConfig& p) { return !p.removed && p == n; });
    if (!kept) out.push_back(n);
  }
  return out;
}

Result<ReloadPlan> plan_reload(const Config& cur, const Config& next) {
  ReloadPlan plan;
  if (cur.name != next.name) return restart(fmt::format("name: {} -> {}", cur.name, next.name));
  if (cur.role != next.role) return restart("role");
  if (!(cur.lan == next.lan)) return restart("lan");
  if (cur.uplinks.size() != next.uplinks.size()) return restart("uplinks: an uplink added or removed");
  for (size_t i = 0; i < cur.uplinks.size(); ++i) {
    const UplinkConfig &a = cur.uplinks[i], &b = next.uplinks[i];
    if (a.name != b.name) return restart(fmt::format("uplinks[{}].name: {} -> {}", i, a.name, b.name));
    if (a.port != b.port || !(a.address == b.address) || !(a.next_hop == b.next_hop) || a.mtu != b.mtu)
      return restart(fmt::format("uplinks[{}] ({}): port, address, next_hop or mtu", i, a.name));
    if (a.cost != b.cost) {
      plan.uplinks = true;
      plan.changes.push_back(fmt::format("uplink {}: cost {} -> {}", a.name, cost_name(a.cost), cost_name(b.cost)));
    }
    if (a.bandwidth_bps != b.bandwidth_bps) {
      plan.uplinks = true;
      plan.changes.push_back(fmt::format("uplink {}: bandwidth {} -> {} bit/s", a.name, a.bandwidth_bps, b.bandwidth_bps));
    }
  }
  {
    const std::vector<PeerConfig> live = live_peers(cur.peers);
    for (const auto& p : live) {
      const auto it = std::find_if(next.peers.begin(), next.peers.end(), [&](const PeerConfig& n) { return n.name == p.name; });
      if (it == next.peers.end()) {
        plan.peers_removed.push_back(p.name);
        plan.changes.push_back("peer " + p.name + ": removed");
      } else if (!(*it == p)) {
        plan.peers_removed.push_back(p.name);
        plan.peers_added.push_back(p.name);
        plan.changes.push_back("peer " + p.name + ": changed (its paths start again with new SAs)");
      }
    }
    for (const auto& n : next.peers)
      if (std::none_of(live.begin(), live.end(), [&](const PeerConfig& p) { return p.name == n.name; })) {
        plan.peers_added.push_back(n.name);
        plan.changes.push_back("peer " + n.name + ": added");
      }
    plan.peers = !plan.peers_added.empty() || !plan.peers_removed.empty();
    // A reordered list with the same peers changes nothing: indexes stay as they are.
  }
  if (!(cur.lcores == next.lcores)) return restart("lcores");
  if (cur.idle != next.idle) return restart("idle");
  if (!(cur.dpdk == next.dpdk)) return restart("dpdk");
  if (!(cur.mgmt == next.mgmt)) return restart("mgmt");
  if (!(cur.esp == next.esp)) return restart("esp");
  if (!(cur.metrics == next.metrics)) return restart("metrics");
  if (cur.overlay_port != next.overlay_port) return restart("overlay_port");
  if (cur.flow_capacity != next.flow_capacity) return restart("flow_capacity");
  if (cur.icmp_errors_per_sec != next.icmp_errors_per_sec) return restart("icmp_errors_per_sec");
  if (!(cur.host == next.host)) return restart("host");
  if (!(cur.apps == next.apps)) {
    plan.apps = true;
    plan.changes.push_back(fmt::format("apps: {} check(s) -> {}", cur.apps.size(), next.apps.size()));
  }
  if (!(cur.paths == next.paths)) {
    plan.paths = true;
    plan.changes.push_back(fmt::format("paths: probe interval {} -> {} ms, multiplier {} -> {}, hold_up {} -> {}",
                                       cur.paths.probe_interval_ms, next.paths.probe_interval_ms,
                                       cur.paths.state.multiplier, next.paths.state.multiplier, cur.paths.state.hold_up,
                                       next.paths.state.hold_up));
  }
  if (!(cur.classes == next.classes)) {
    plan.classes = true;
    const size_t before = plan.changes.size();
    for (const auto& c : next.classes) {
      const auto it = std::find_if(cur.classes.begin(), cur.classes.end(), [&](const ClassConfig& o) { return o.name == c.name; });
      if (it == cur.classes.end()) plan.changes.push_back("class " + c.name + ": added");
      else if (!(*it == c)) plan.changes.push_back("class " + c.name + ": changed");
    }
    for (const auto& c : cur.classes)
      if (std::none_of(next.classes.begin(), next.classes.end(), [&](const ClassConfig& n) { return n.name == c.name; }))
        plan.changes.push_back("class " + c.name + ": removed");
    if (plan.changes.size() == before)
      plan.changes.push_back("classes: order " + names(cur.classes) + " -> " + names(next.classes));
  }
  if (!(cur.policy == next.policy)) {
    plan.policy = true;
    plan.changes.push_back(fmt::format("policy: margin {} -> {} %, hold {} -> {} ms, failback {} -> {} ms",
                                       cur.policy.switch_margin_pct, next.policy.switch_margin_pct, cur.policy.switch_hold_ms,
                                       next.policy.switch_hold_ms, cur.policy.failback_stable_ms,
                                       next.policy.failback_stable_ms));
  }
  if (!(cur.events == next.events)) {
    plan.events = true;
    plan.changes.push_back("events: log, ring or hooks");
  }
  if (cur.log_level != next.log_level) {
    plan.log_level = true;
    plan.changes.push_back(fmt::format("log_level: {} -> {}", cur.log_level, next.log_level));
  }
  return plan;
}

}  // namespace sdwan::cp
