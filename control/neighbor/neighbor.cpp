#include "control/neighbor/neighbor.hpp"

#include "dataplane/api/arp.hpp"

namespace sdwan::cp {

NeighborManager::NeighborManager(std::vector<NeighborPort> ports) : ports_(std::move(ports)) {}

const NeighborPort* NeighborManager::port(uint8_t index) const {
  for (const auto& p : ports_)
    if (p.index == index) return &p;
  return nullptr;
}

void NeighborManager::want(uint8_t p, Ipv4 ip, bool permanent, uint64_t now_ms) {
  const NeighborPort* np = port(p);
  // Only on-link addresses can be resolved; anything else is a routing mistake upstream.
  if (np == nullptr || !np->addr.contains(ip) || ip == np->addr.addr) return;
  auto [it, inserted] = entries_.try_emplace({p, ip.v});
  Entry& e = it->second;
  if (permanent) e.permanent = true;
  if (inserted) {
    e.state = State::kIncomplete;
    e.next_ms = now_ms;
  }
}

void NeighborManager::learn(uint8_t p, Ipv4 ip, MacAddr mac, uint64_t now_ms, bool create) {
  auto it = entries_.find({p, ip.v});
  if (it == entries_.end()) {
    if (!create) return;
    it = entries_.try_emplace({p, ip.v}).first;
  }
  Entry& e = it->second;
  if (e.state != State::kReachable && e.state != State::kProbing) changed_ = true;
  if (e.mac != mac) changed_ = true;
  e.mac = mac;
  e.state = State::kReachable;
  e.tries = 0;
  e.updated_ms = now_ms;
  e.next_ms = now_ms + kReachableMs;
}

bool NeighborManager::on_arp(uint8_t p, const ArpPacket& a, uint64_t now_ms) {
  const NeighborPort* np = port(p);
  if (np == nullptr) return false;
  const bool sender_ok = a.spa.v != 0 && np->addr.contains(a.spa) && a.spa != np->addr.addr && !a.sha.is_zero() &&
                         a.sha != MacAddr::broadcast() && (a.sha.b[0] & 1) == 0;
  const bool for_us = a.tpa == np->addr.addr;
  // Like Linux with arp_accept=0: a request aimed at us creates an entry (we are about to
  // talk to the asker), an unsolicited reply only refreshes one we already have.
  if (sender_ok) learn(p, a.spa, a.sha, now_ms, for_us && a.op == 1);
  return a.op == 1 && for_us;
}

std::vector<std::pair<uint8_t, Ipv4>> NeighborManager::tick(uint64_t now_ms) {
  std::vector<std::pair<uint8_t, Ipv4>> out;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    const auto key = it->first;
    if (now_ms < e.next_ms) {
      ++it;
      continue;
    }
    switch (e.state) {
      case State::kReachable:
        e.state = State::kProbing;
        e.tries = 0;
        [[fallthrough]];
      case State::kProbing:
        if (e.tries >= kProbeTries) {
          changed_ = true;
          if (!e.permanent) {
            it = entries_.erase(it);
            continue;
          }
          e.state = State::kIncomplete;
          e.mac = MacAddr{};
          e.tries = 0;
        }
        break;
      case State::kIncomplete:
        if (!e.permanent && e.tries >= kMaxTries) {
          it = entries_.erase(it);
          continue;
        }
        break;
    }
    out.emplace_back(key.first, Ipv4{key.second});
    ++e.tries;
    e.next_ms = now_ms + kRetryMs;
    ++it;
  }
  return out;
}

std::optional<MacAddr> NeighborManager::lookup(uint8_t p, Ipv4 ip) const {
  auto it = entries_.find({p, ip.v});
  if (it == entries_.end() || it->second.state == State::kIncomplete) return std::nullopt;
  return it->second.mac;
}

std::vector<dp::NeighborTable::Entry> NeighborManager::resolved() const {
  std::vector<dp::NeighborTable::Entry> out;
  for (const auto& [k, e] : entries_)
    if (e.state != State::kIncomplete) out.push_back({k.second, k.first, e.mac});
  return out;
}

std::vector<NeighborManager::Info> NeighborManager::dump() const {
  std::vector<Info> out;
  for (const auto& [k, e] : entries_) out.push_back({k.first, Ipv4{k.second}, e.state, e.mac, e.permanent, e.updated_ms});
  return out;
}

uint32_t handle_arp_frame(NeighborManager& nm, uint8_t port, const uint8_t* frame, uint32_t len, MacAddr our_mac,
                          Ipv4 our_ip, uint64_t now_ms, uint8_t* out) {
  dp::ArpInfo a;
  if (!dp::arp_from_frame(frame, len, &a)) return 0;
  if (!nm.on_arp(port, ArpPacket{a.op, a.sha, a.spa, a.tpa}, now_ms)) return 0;
  return dp::build_arp_reply(out, our_mac, our_ip, a);
}

}  // namespace sdwan::cp
