#include "control/esp/sa_table.hpp"

#include <algorithm>
#include <limits>
#include <unordered_map>

#include <fmt/format.h>

#include "control/esp/spi.hpp"

namespace sdwan::cp {
namespace {

constexpr uint64_t kMaxSeconds = 10ull * 366 * 24 * 3600;
constexpr uint64_t kMaxDrainMs = 3600 * 1000;

// pct % of x without overflowing 64 bits.
uint64_t percent_of(uint64_t x, uint32_t pct) { return x / 100 * pct + x % 100 * pct / 100; }

uint64_t usage_key(SaDir d, uint32_t spi) { return uint64_t{d == SaDir::kOutbound} << 32 | spi; }

}  // namespace

Status check_lifetime(const SaLifetime& lt) {
  if (lt.hard.packets == 0) return err("sa lifetime: hard packets must be above 0");
  if (lt.hard.bytes == 0) return err("sa lifetime: hard bytes must be above 0");
  if (lt.hard.seconds == 0 || lt.hard.seconds > kMaxSeconds)
    return err(fmt::format("sa lifetime: hard seconds must be 1..{} (ten years), got {}", kMaxSeconds, lt.hard.seconds));
  if (lt.soft_percent < 1 || lt.soft_percent > 99)
    return err(fmt::format("sa lifetime: soft percent must be 1..99, got {}", lt.soft_percent));
  if (lt.drain_ms > kMaxDrainMs)
    return err(fmt::format("sa lifetime: drain must be at most {} ms, got {}", kMaxDrainMs, lt.drain_ms));
  return Ok{};
}

Result<SaTable> SaTable::create(const SaLifetime& lt) {
  if (Status s = check_lifetime(lt); !s) return s.error();
  return SaTable(lt);
}

SaLimits SaTable::hard_for(const Path& p, SaDir d) const {
  SaLimits h = lt_.hard;
  if (d == SaDir::kOutbound) {
    // RFC 4303 3.3.3: the counter never cycles; its last value is the last packet of the SA.
    const uint64_t seq_max = p.spec.esn ? std::numeric_limits<uint64_t>::max() : uint64_t{0xffffffff};
    h.packets = std::min(h.packets, seq_max);
  }
  return h;
}

bool SaTable::reached(const Path& p, const Sa& sa, SaDir d, uint64_t now_ms, bool soft) const {
  const SaLimits h = hard_for(p, d);
  // A soft limit is at least 1, or a tiny hard limit would rekey on every tick.
  auto lim = [&](uint64_t x) { return soft ? std::max<uint64_t>(1, percent_of(x, lt_.soft_percent)) : x; };
  // Outbound: the sequence number can run ahead of the packet count (numbers reserved per
  // burst, packets dropped after), and it is the sequence space that must not be exceeded.
  const uint64_t count = d == SaDir::kOutbound ? std::max(sa.packets, sa.seq) : sa.packets;
  if (count >= lim(h.packets) || sa.bytes >= lim(h.bytes)) return true;
  return sa.used && now_ms - sa.used_ms >= lim(h.seconds * 1000);
}

SaAction SaTable::action(SaAction::Kind k, const Path& p, const SaName& n) const {
  const bool out = k == SaAction::Kind::kInstallOutbound || k == SaAction::Kind::kRetireOutbound;
  return SaAction{k, p.spec.path, n, p.spec.esn, hard_for(p, out ? SaDir::kOutbound : SaDir::kInbound)};
}

void SaTable::retire_inbound(Path& p, size_t i, std::vector<SaAction>& out) const {
  out.push_back(action(SaAction::Kind::kRetireInbound, p, p.in[i].name));
  p.in_floor = std::max(p.in_floor, p.in[i].name.epoch + 1);
  p.in.erase(p.in.begin() + static_cast<std::ptrdiff_t>(i));
}

void SaTable::install_inbound(Path& p, uint32_t epoch, std::vector<SaAction>& out) const {
  if (epoch < p.in_floor) return;
  for (const Sa& s : p.in)
    if (s.name.epoch == epoch) return;
  // Names cannot fail here: add_path checked link and endpoints.
  const PathSaNames names = *path_sa_names(p.spec.link, epoch, p.spec.local, p.spec.remote);
  // Epochs eight apart share a table slot: the older one goes first (it can only be an
  // old SA kept for draining, or a standby one the peer jumped over).
  for (size_t i = 0; i < p.in.size(); ++i)
    if (spi_slot(p.in[i].name.spi) == spi_slot(names.inbound.spi)) {
      retire_inbound(p, i, out);
      break;
    }
  Sa sa;
  sa.name = names.inbound;
  out.push_back(action(SaAction::Kind::kInstallInbound, p, sa.name));
  p.in.insert(std::upper_bound(p.in.begin(), p.in.end(), epoch,
                               [](uint32_t e, const Sa& s) { return e < s.name.epoch; }),
              sa);
}

Result<std::vector<SaAction>> SaTable::add_path(const SaPathSpec& spec, uint64_t now_ms) {
  if (paths_.count(spec.path) != 0) return err(fmt::format("path {}: already has SAs", spec.path));
  for (const auto& [id, p] : paths_)
    if (p.spec.link == spec.link)
      return err(fmt::format("path {}: link number {} is already used by path {}", spec.path, spec.link, id));
  if (spec.start_epoch > std::numeric_limits<uint32_t>::max() - 2 * kSpiEpochSlots)
    return err(fmt::format("path {}: epochs exhausted (start epoch {}); change the master key", spec.path,
                           spec.start_epoch));
  auto names = path_sa_names(spec.link, spec.start_epoch, spec.local, spec.remote);
  if (!names) return err(fmt::format("path {}: {}", spec.path, names.error().msg));
  Path p;
  p.spec = spec;
  p.cur = spec.start_epoch;
  p.in_floor = spec.start_epoch;
  std::vector<SaAction> out;
  for (uint32_t e = spec.start_epoch; e <= spec.start_epoch + kAhead; ++e) install_inbound(p, e, out);
  Sa o;
  o.name = names->outbound;
  o.used = true;
  o.used_ms = now_ms;
  p.out = o;
  out.push_back(action(SaAction::Kind::kInstallOutbound, p, o.name));
  paths_.emplace(spec.path, std::move(p));
  return out;
}

std::vector<SaAction> SaTable::remove_path(uint16_t path) {
  std::vector<SaAction> out;
  auto it = paths_.find(path);
  if (it == paths_.end()) return out;
  Path& p = it->second;
  if (p.out) out.push_back(action(SaAction::Kind::kRetireOutbound, p, p.out->name));
  for (const Sa& s : p.in) out.push_back(action(SaAction::Kind::kRetireInbound, p, s.name));
  paths_.erase(it);
  return out;
}

std::vector<SaAction> SaTable::tick(uint64_t now_ms, std::span<const SaUsage> usage) {
  std::unordered_map<uint64_t, const SaUsage*> by_spi;
  by_spi.reserve(usage.size());
  for (const SaUsage& u : usage) by_spi[usage_key(u.dir, u.spi)] = &u;
  auto apply = [&](Sa& sa, SaDir d) {
    auto it = by_spi.find(usage_key(d, sa.name.spi));
    if (it == by_spi.end()) return;
    // Counters only grow; a smaller value is a late report and must not hide usage.
    sa.packets = std::max(sa.packets, it->second->packets);
    sa.bytes = std::max(sa.bytes, it->second->bytes);
    sa.seq = std::max(sa.seq, it->second->seq);
  };
  std::vector<SaAction> out;
  for (auto& [id, p] : paths_) {
    if (p.out) apply(*p.out, SaDir::kOutbound);
    for (Sa& s : p.in) apply(s, SaDir::kInbound);
    auto acts = tick_path(p, now_ms);
    out.insert(out.end(), acts.begin(), acts.end());
  }
  return out;
}

std::vector<SaAction> SaTable::tick_path(Path& p, uint64_t now_ms) {
  std::vector<SaAction> installs, outbound, retires;

  // 1. What the peer sends under: the newest inbound epoch with a verified packet.
  for (Sa& s : p.in)
    if (!s.used && s.packets > 0) {
      s.used = true;
      s.used_ms = now_ms;
    }
  for (auto it = p.in.rbegin(); it != p.in.rend(); ++it)
    if (it->used) {
      if (!p.peer_seen || it->name.epoch > p.peer_epoch) {
        p.peer_seen = true;
        p.peer_epoch = it->name.epoch;
      }
      break;
    }

  // 2. Inbound SAs older than the peer's: used ones drain (packets still in flight), never
  // used ones were jumped over and go now. Any used one at a hard limit goes now.
  bool current_in_expired = false;
  for (size_t i = 0; i < p.in.size();) {
    Sa& s = p.in[i];
    const bool older = p.peer_seen && s.name.epoch < p.peer_epoch;
    if (older && s.used && !s.draining) {
      s.draining = true;
      s.drain_until_ms = now_ms + lt_.drain_ms;
    }
    const bool expired = s.used && reached(p, s, SaDir::kInbound, now_ms, false);
    if (expired && s.name.epoch >= p.cur) current_in_expired = true;
    const bool go = (older && !s.used) || (s.draining && now_ms >= s.drain_until_ms) || expired;
    if (go)
      retire_inbound(p, i, retires);
    else
      ++i;
  }

  // 3. The outbound epoch: follow the peer, move on at a soft limit, must move at a hard one.
  uint32_t want = p.cur;
  bool must = !p.out;
  if (p.peer_seen && p.peer_epoch > want) want = p.peer_epoch;
  if (p.out) {
    if (reached(p, *p.out, SaDir::kOutbound, now_ms, true)) want = std::max(want, p.cur + 1);
    if (reached(p, *p.out, SaDir::kOutbound, now_ms, false)) must = true;
  }
  for (const Sa& s : p.in)
    if (s.used && s.name.epoch >= p.cur && reached(p, s, SaDir::kInbound, now_ms, true))
      want = std::max(want, p.cur + 1);
  if (must || current_in_expired) want = std::max(want, p.cur + 1);
  // The peer has inbound SAs up to kAhead past the newest epoch it has been seen sending
  // under (before that: past the one before our start). Beyond that it would drop us.
  const int64_t base = p.peer_seen ? int64_t{p.peer_epoch} : int64_t{p.spec.start_epoch} - 1;
  const int64_t allowed = std::min<int64_t>(base + kAhead, std::numeric_limits<uint32_t>::max());
  if (int64_t{want} > allowed) want = static_cast<uint32_t>(std::max<int64_t>(allowed, p.cur));

  // Retire before install: if the daemon fails to install the new one, the path has no
  // outbound SA rather than one past its limit.
  if (p.out && (must || want > p.cur)) {
    outbound.push_back(action(SaAction::Kind::kRetireOutbound, p, p.out->name));
    p.out.reset();
  }
  if (want > p.cur) {
    const PathSaNames names = *path_sa_names(p.spec.link, want, p.spec.local, p.spec.remote);
    p.cur = want;
    Sa o;
    o.name = names.outbound;
    o.used = true;
    o.used_ms = now_ms;
    p.out = o;
    outbound.push_back(action(SaAction::Kind::kInstallOutbound, p, o.name));
  }

  // 4. Inbound for the current epoch and the next kAhead, ready before the peer needs them.
  for (uint32_t e = p.cur; e <= p.cur + kAhead && e >= p.cur; ++e) install_inbound(p, e, installs);

  // Installs before retirements, except that a retirement freeing a slot an install takes
  // goes just before it: a daemon applying the list in order never finds a slot taken.
  std::vector<SaAction> out;
  out.reserve(installs.size() + outbound.size() + retires.size());
  for (const SaAction& a : installs) {
    if (a.kind == SaAction::Kind::kInstallInbound) {
      auto r = std::find_if(retires.begin(), retires.end(),
                            [&](const SaAction& x) { return spi_slot(x.sa.spi) == spi_slot(a.sa.spi); });
      if (r != retires.end()) {
        out.push_back(*r);
        retires.erase(r);
      }
    }
    out.push_back(a);
  }
  out.insert(out.end(), outbound.begin(), outbound.end());
  out.insert(out.end(), retires.begin(), retires.end());
  return out;
}

bool SaTable::usable(uint16_t path) const {
  auto it = paths_.find(path);
  return it != paths_.end() && it->second.out.has_value();
}

std::optional<uint32_t> SaTable::outbound_epoch(uint16_t path) const {
  auto it = paths_.find(path);
  if (it == paths_.end()) return std::nullopt;
  return it->second.cur;
}

std::vector<SaRow> SaTable::rows(uint64_t now_ms) const {
  std::vector<SaRow> rows;
  auto row = [&](const Path& p, const Sa& s, SaDir d) {
    SaRow r;
    r.path = p.spec.path;
    r.dir = d;
    r.spi = s.name.spi;
    r.epoch = s.name.epoch;
    r.state = s.draining ? SaRow::State::kDraining : s.used ? SaRow::State::kActive : SaRow::State::kStandby;
    r.packets = s.packets;
    r.bytes = s.bytes;
    r.age_ms = s.used ? now_ms - s.used_ms : 0;
    r.soft = reached(p, s, d, now_ms, true);
    rows.push_back(r);
  };
  for (const auto& [id, p] : paths_) {
    if (p.out) row(p, *p.out, SaDir::kOutbound);
    for (const Sa& s : p.in) row(p, s, SaDir::kInbound);
  }
  return rows;
}

dp::EspSaParams esp_sa_params(const SaAction& a, const SaKeys& keys, uint32_t replay_window) {
  dp::EspSaParams p;
  p.spi = a.sa.spi;
  p.key = keys.key;
  p.salt = keys.salt;
  p.esn = a.esn;
  p.max_packets = a.hard.packets;
  p.max_bytes = a.hard.bytes;
  p.max_age_ms = a.hard.seconds * 1000;
  p.replay_window = replay_window;
  p.tag = a.path;
  return p;
}

}  // namespace sdwan::cp
