#include <rte_errno.h>
#include <rte_lpm.h>

#include <atomic>
#include <string>

#include "dataplane/api/snapshot.hpp"

namespace sdwan::dp {

std::unique_ptr<RouteTable> RouteTable::create(uint32_t max_rules, int socket) {
  // rte_lpm names are global to the process; a counter keeps successive tables apart.
  static std::atomic<uint32_t> seq{0};
  const std::string name = "sdwan_rt" + std::to_string(seq.fetch_add(1));
  rte_lpm_config cfg{};
  cfg.max_rules = max_rules;
  cfg.number_tbl8s = 256;
  auto t = std::unique_ptr<RouteTable>(new RouteTable());
  t->lpm_ = rte_lpm_create(name.c_str(), socket, &cfg);
  if (t->lpm_ == nullptr) return nullptr;
  return t;
}

RouteTable::~RouteTable() {
  if (lpm_ != nullptr) rte_lpm_free(lpm_);
}

bool RouteTable::add(Prefix4 p, uint32_t target) {
  if (p.len == 0) {
    if (!has_default_) ++n_;
    has_default_ = true;
    default_target_ = target;
    return true;
  }
  if (rte_lpm_add(lpm_, p.addr.v, p.len, target) != 0) return false;
  ++n_;
  return true;
}

bool RouteTable::lookup(Ipv4 a, uint32_t* target) const noexcept {
  if (rte_lpm_lookup(lpm_, a.v, target) == 0) return true;
  return default_route(target);
}

NeighborTable::NeighborTable(const std::vector<Entry>& entries) {
  uint32_t cap = 16;
  while (cap < entries.size() * 2) cap <<= 1;
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  for (const auto& e : entries) {
    if (e.ip == 0) continue;
    uint32_t i = hash(e.ip, e.port) & mask_;
    while (slots_[i].ip != 0 && !(slots_[i].ip == e.ip && slots_[i].port == e.port)) i = (i + 1) & mask_;
    if (slots_[i].ip == 0) ++n_;
    slots_[i] = e;
  }
}

}  // namespace sdwan::dp
