#include "control/policy/compiler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace sdwan::cp {
namespace {

constexpr uint64_t kMs = 1'000'000;
// A path that is up but has no RTT yet ranks behind every measured one.
constexpr double kUnknownRttMs = 100000;
// Weight scale: the best path of a table weighs 1000, so shares resolve to 0.1 %.
constexpr double kWeightScale = 1000;
// In fallback, paths are ranked by how far they exceed their limits (a ratio), where an
// absolute switch_margin_ms means nothing; this relative margin stands in for it.
constexpr double kFallbackMarginPct = 10;
// A percentage margin alone would let paths of sub-millisecond RTT (a LAN, a metro link) trade
// places on measurement noise: 10 % of 0.5 ms is 50 us. A move also needs this much score.
constexpr double kMinMarginMs = 1.0;
// Spray's reorder hold beyond the measured delay difference and jitter: what the receiver's
// own scheduling adds (a worker reads each port 32 packets at a time, so the packet due may
// still wait in its RX ring while the hold runs out; a busy host or VM stalls it for a few
// ms). With 1 ms the lab's TCP spray test gave up dozens of gaps a second that were only
// late, and each one reached TCP as reordering; an overestimate costs only the wait of a
// packet behind a lost one.
constexpr double kReorderSlackMs = 5;

// "180", "12.5", "0.25": enough digits for an operator, no trailing zeros.
std::string num(double x) {
  std::string s = fmt::format("{:.2f}", x);
  if (x >= 100) s = fmt::format("{:.0f}", x);
  else if (x >= 10) s = fmt::format("{:.1f}", x);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::string secs(uint64_t ns) { return num(static_cast<double>(ns) / 1e9) + " s"; }

}  // namespace

PolicyCompiler::PolicyCompiler(std::vector<ClassConfig> classes, PolicyConfig policy,
                               std::vector<std::string> peer_names, std::vector<std::string> path_names)
    : classes_(std::move(classes)),
      pc_(policy),
      peer_names_(std::move(peer_names)),
      path_names_(std::move(path_names)),
      rules_(compile_rules(classes_)) {
  const size_t n = classes_.size() * peer_names_.size();
  state_.resize(n);
  decisions_.resize(n);
  for (size_t c = 0; c < classes_.size(); ++c)
    for (size_t p = 0; p < peer_names_.size(); ++p) {
      ClassDecision& d = decisions_[c * peer_names_.size() + p];
      d.cls = static_cast<uint8_t>(c);
      d.peer = static_cast<uint16_t>(p);
      d.out.mode = classes_[c].mode;
    }
  compliant_since_.assign(classes_.size() * dp::kMaxPaths, 0);
  lapsed_.assign(classes_.size() * dp::kMaxPaths, 0);
  by_peer_.resize(peer_names_.size());
}

void PolicyCompiler::reconfigure(std::vector<ClassConfig> classes, PolicyConfig policy,
                                 std::optional<uint32_t> reclassify_gen) {
  const size_t np = peer_names_.size();
  std::vector<State> st(classes.size() * np);
  std::vector<ClassDecision> dec(classes.size() * np);
  std::vector<uint64_t> since(classes.size() * dp::kMaxPaths, 0);
  std::vector<uint8_t> lapsed(classes.size() * dp::kMaxPaths, 0);
  for (size_t c = 0; c < classes.size(); ++c) {
    const auto old = std::find_if(classes_.begin(), classes_.end(), [&](const ClassConfig& o) {
      return o.name == classes[c].name && o.mode == classes[c].mode;
    });
    const size_t oc = static_cast<size_t>(old - classes_.begin());
    for (size_t p = 0; p < np; ++p) {
      ClassDecision& d = dec[c * np + p];
      if (old != classes_.end()) {
        st[c * np + p] = state_[oc * np + p];
        d = decisions_[oc * np + p];
      }
      d.cls = static_cast<uint8_t>(c);
      d.peer = static_cast<uint16_t>(p);
      d.out.mode = classes[c].mode;
    }
    if (old != classes_.end()) {
      std::copy_n(compliant_since_.begin() + static_cast<ptrdiff_t>(oc * dp::kMaxPaths), dp::kMaxPaths,
                  since.begin() + static_cast<ptrdiff_t>(c * dp::kMaxPaths));
      std::copy_n(lapsed_.begin() + static_cast<ptrdiff_t>(oc * dp::kMaxPaths), dp::kMaxPaths,
                  lapsed.begin() + static_cast<ptrdiff_t>(c * dp::kMaxPaths));
    }
  }
  classes_ = std::move(classes);
  pc_ = policy;
  rules_ = compile_rules(classes_);
  state_ = std::move(st);
  decisions_ = std::move(dec);
  compliant_since_ = std::move(since);
  lapsed_ = std::move(lapsed);
  if (reclassify_gen) reclassify_gen_ = *reclassify_gen;
  policy_.reset();  // the next compile publishes a new policy
}

void PolicyCompiler::set_peers(std::vector<std::string> peer_names, std::vector<bool> removed,
                               std::vector<std::string> path_names) {
  const size_t op = peer_names_.size(), np = std::max(op, peer_names.size());
  peer_names.resize(np);
  removed.resize(np, false);
  std::vector<State> st(classes_.size() * np);
  std::vector<ClassDecision> dec(classes_.size() * np);
  for (size_t c = 0; c < classes_.size(); ++c)
    for (size_t p = 0; p < np; ++p) {
      ClassDecision& d = dec[c * np + p];
      if (p < op && !removed[p]) {
        st[c * np + p] = state_[c * op + p];
        d = decisions_[c * op + p];
      }
      d.cls = static_cast<uint8_t>(c);
      d.peer = static_cast<uint16_t>(p);
      d.out.mode = classes_[c].mode;
    }
  // Path ids are never reused (a tombstone keeps its paths), so compliant_since_ needs no change.
  peer_names_ = std::move(peer_names);
  removed_ = std::move(removed);
  if (!path_names.empty()) path_names_ = std::move(path_names);
  state_ = std::move(st);
  decisions_ = std::move(dec);
  by_peer_.resize(np);
  policy_.reset();  // the next compile publishes a new policy
}

std::string PolicyCompiler::path_name(uint16_t id) const {
  if (id < path_names_.size() && !path_names_[id].empty()) return path_names_[id];
  if (id == dp::kNoPathId) return "none";
  return fmt::format("path {}", id);
}

std::optional<uint8_t> PolicyCompiler::class_id(std::string_view name) const {
  for (size_t c = 0; c < classes_.size(); ++c)
    if (classes_[c].name == name) return static_cast<uint8_t>(c);
  return std::nullopt;
}

const ClassDecision* PolicyCompiler::decision(uint8_t cls, uint16_t peer) const noexcept {
  if (!policy_ || cls >= classes_.size() || peer >= peer_names_.size()) return nullptr;
  if (peer < removed_.size() && removed_[peer]) return nullptr;
  return &decisions_[size_t{cls} * peer_names_.size() + peer];
}

void PolicyCompiler::set_class_rate(uint8_t cls, uint16_t peer, uint64_t bps) {
  if (cls < classes_.size() && peer < peer_names_.size()) state_[size_t{cls} * peer_names_.size() + peer].rate_bps = bps;
}

std::shared_ptr<const dp::Policy> PolicyCompiler::compile(std::span<const PathInput> paths, uint64_t now_ns) {
  for (auto& v : by_peer_) v.clear();
  for (size_t i = 0; i < paths.size(); ++i)
    if (paths[i].peer < by_peer_.size() && paths[i].id < dp::kMaxPaths) by_peer_[paths[i].peer].push_back(i);
  changed_ = !policy_;
  for (size_t c = 0; c < classes_.size(); ++c)
    for (size_t p = 0; p < peer_names_.size(); ++p)
      if (p >= removed_.size() || !removed_[p]) compile_one(static_cast<uint8_t>(c), static_cast<uint16_t>(p), paths, now_ns);
  if (changed_) {
    auto pol = std::make_shared<dp::Policy>();
    pol->rules = rules_.rules;
    pol->n_classes = rules_.n_classes;
    pol->default_class = rules_.default_class;
    pol->n_peers = static_cast<uint16_t>(peer_names_.size());
    pol->reclassify_gen = reclassify_gen_;
    pol->paths.reserve(decisions_.size());
    for (const ClassDecision& d : decisions_) pol->paths.push_back(d.out);
    policy_ = std::move(pol);
  }
  return policy_;
}

bool PolicyCompiler::better_by_margin(double cand, double cur, bool by_excess, double& better) const {
  if (by_excess || !pc_.switch_margin_ms) {
    const double pct = by_excess && pc_.switch_margin_ms ? kFallbackMarginPct : pc_.switch_margin_pct;
    better = cur > 0 ? (cur - cand) / cur * 100 : 0;
    return cand < cur && better >= pct && (by_excess || cur - cand >= kMinMarginMs);
  }
  better = cur - cand;
  return better > 0 && better >= *pc_.switch_margin_ms;
}

// The sticky choice of one path among cands: at once when the current one is not among them;
// otherwise only to a better one, by the margin, for the hold time.
uint16_t PolicyCompiler::choose(Sticky& s, Held& held, std::span<const Eval> cands, bool by_excess,
                                std::span<const PathInput> in, uint64_t now_ns) {
  held = {};
  if (cands.empty()) {
    s = {};
    return dp::kNoPathId;
  }
  auto rank = [&](const Eval& e) { return by_excess ? e.excess : e.score; };
  auto less = [&](const Eval& a, const Eval& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    if (a.score != b.score) return a.score < b.score;
    return in[a.in].id < in[b.in].id;
  };
  const Eval* best = &cands[0];
  const Eval* cur = nullptr;
  for (const Eval& e : cands) {
    if (less(e, *best)) best = &e;
    if (in[e.in].id == s.cur) cur = &e;
  }
  const uint16_t best_id = in[best->in].id;
  if (cur == nullptr) {  // down, out of the SLA, or no longer allowed: move now
    s.cur = best_id;
    s.cand = dp::kNoPathId;
    return best_id;
  }
  if (cur == best) {
    s.cand = dp::kNoPathId;
    return s.cur;
  }
  double better = 0;
  if (!better_by_margin(rank(*best), rank(*cur), by_excess, better)) {
    s.cand = dp::kNoPathId;
    if (better > 0) held = {Held::kMargin, s.cur, best_id, better, 0};
    return s.cur;
  }
  if (s.cand != best_id) {
    s.cand = best_id;
    s.cand_since = now_ns;
  }
  if (now_ns - s.cand_since >= uint64_t{pc_.switch_hold_ms} * kMs) {
    s.cur = best_id;
    s.cand = dp::kNoPathId;
    return best_id;
  }
  held = {Held::kHold, s.cur, best_id, better, s.cand_since};
  return s.cur;
}

void PolicyCompiler::weigh(std::span<const Eval> members, std::span<const PathInput> in, State& st,
                           ClassDecision& d, uint64_t now_ns) {
  double min_rtt = kUnknownRttMs, known_bw = 0, max_bw = 0;
  size_t n_known = 0;
  for (const Eval& e : members) {
    const PathInput& p = in[e.in];
    if (p.rtt_ms) min_rtt = std::min(min_rtt, *p.rtt_ms);
    if (p.bandwidth_bps) {
      known_bw += static_cast<double>(p.bandwidth_bps);
      ++n_known;
    }
  }
  const double unknown_bw = n_known ? known_bw / static_cast<double>(n_known) : 1;
  for (const Eval& e : members) {
    const PathInput& p = in[e.in];
    max_bw = std::max(max_bw, p.bandwidth_bps ? static_cast<double>(p.bandwidth_bps) : unknown_bw);
  }
  const double margin = pc_.switch_margin_ms ? kFallbackMarginPct : pc_.switch_margin_pct;
  weights_.clear();
  for (const Eval& e : members) {
    const PathInput& p = in[e.in];
    const double bw = (p.bandwidth_bps ? static_cast<double>(p.bandwidth_bps) : unknown_bw) / max_bw;
    double q = 1 / (1 + std::max(0.0, p.loss_pct.value_or(0)));
    q *= p.rtt_ms ? 100 / (100 + std::max(0.0, *p.rtt_ms - min_rtt)) : 0.5;
    auto w = static_cast<uint32_t>(std::max(1.0, std::round(kWeightScale * bw * q)));
    // Noise in the figures must not rebuild tables (and move flows): a weight follows only a
    // change beyond the margin, and only once it has lasted the hold time, as a best path
    // does. One odd figure (the loss estimate jumps for a probe interval when a delay change
    // reorders the replies) would otherwise rebuild the table twice and move flows away and
    // back within 100 ms.
    auto pending = std::find_if(st.weight_since.begin(), st.weight_since.end(),
                                [&](const auto& x) { return x.first == p.id; });
    for (const MaglevPath& old : st.members) {
      if (old.id != p.id) continue;
      if (std::abs(double(w) - double(old.weight)) * 100 <= margin * double(old.weight)) {
        if (pending != st.weight_since.end()) st.weight_since.erase(pending);
        w = old.weight;
      } else if (pending == st.weight_since.end()) {
        st.weight_since.emplace_back(p.id, now_ns);
        w = old.weight;
      } else if (now_ns - pending->second < uint64_t{pc_.switch_hold_ms} * kMs) {
        w = old.weight;
      } else {
        st.weight_since.erase(pending);
      }
      break;
    }
    weights_.push_back({p.id, w});
  }
  // A path that left the table takes its pending change with it.
  std::erase_if(st.weight_since, [&](const auto& x) {
    return std::none_of(weights_.begin(), weights_.end(), [&](const MaglevPath& m) { return m.id == x.first; });
  });
  std::sort(weights_.begin(), weights_.end(), [](const MaglevPath& a, const MaglevPath& b) { return a.id < b.id; });
  const bool same = weights_.size() == st.members.size() &&
                    std::equal(weights_.begin(), weights_.end(), st.members.begin(), [](const auto& a, const auto& b) {
                      return a.id == b.id && a.weight == b.weight;
                    });
  if (!same) {
    st.members = weights_;
    if (weights_.size() >= 2) maglev_.build(weights_, maglev_size(by_peer_[d.peer].size()), d.out.lut);
    else d.out.lut.clear();
    changed_ = true;
  }
  for (PathDecision& pd : d.paths)
    for (const MaglevPath& m : st.members)
      if (pd.id == m.id) {
        pd.verdict = Verdict::kChosen;
        pd.weight = m.weight;
      }
}

void PolicyCompiler::compile_one(uint8_t cls, uint16_t peer, std::span<const PathInput> in, uint64_t now_ns) {
  const ClassConfig& cc = classes_[cls];
  const size_t slot = size_t{cls} * peer_names_.size() + peer;
  State& st = state_[slot];
  ClassDecision& d = decisions_[slot];
  d.at_ns = now_ns;
  d.paths.clear();
  d.held_primary = d.held_secondary = {};
  d.sla_met = d.fallback = d.none = false;
  d.dup = ClassDecision::Dup::kNotDuplicate;
  evals_.clear();
  const uint64_t failback_ns = uint64_t{pc_.failback_stable_ms} * kMs;
  auto member = [&](uint16_t id) {
    if (id == st.primary.cur || id == st.secondary.cur) return true;
    return std::any_of(st.members.begin(), st.members.end(), [&](const MaglevPath& m) { return m.id == id; });
  };

  for (size_t k : by_peer_[peer]) {
    const PathInput& p = in[k];
    PathDecision pd;
    pd.id = p.id;
    pd.rtt_ms = p.rtt_ms;
    pd.jitter_ms = p.jitter_ms;
    pd.loss_pct = p.loss_pct;
    pd.score = p.rtt_ms.value_or(kUnknownRttMs) + 2 * p.jitter_ms.value_or(0) + 10 * p.loss_pct.value_or(0);
    double excess = 0;
    bool violated = false;
    auto check = [&](const std::optional<double>& v, const std::optional<double>& lim, Verdict why) {
      if (!v || !lim) return;
      // A zero loss limit: any loss exceeds it by a large ratio.
      excess = std::max(excess, *lim > 0 ? *v / *lim : (*v > 0 ? 1e6 : 0));
      if (*v > *lim && !violated) {
        violated = true;
        pd.verdict = why;
        pd.value = *v;
        pd.limit = *lim;
      }
    };
    check(p.rtt_ms, cc.sla.latency_ms, Verdict::kRtt);
    check(p.jitter_ms, cc.sla.jitter_ms, Verdict::kJitter);
    check(p.loss_pct, cc.sla.loss_pct, Verdict::kLoss);
    if (!p.up) pd.verdict = Verdict::kDown;
    pd.compliant = p.up && !violated;
    uint64_t& since = compliant_since_[size_t{cls} * dp::kMaxPaths + p.id];
    uint8_t& lapsed = lapsed_[size_t{cls} * dp::kMaxPaths + p.id];
    if (!pd.compliant) {
      if (since != 0) lapsed = 1;  // it complied and stopped: its next streak is a recovery
      since = 0;
    } else if (since == 0) {
      since = std::max<uint64_t>(now_ns, 1);  // 0 means not compliant
    }
    pd.compliant_since_ns = since;
    if (pd.compliant) pd.verdict = Verdict::kStandby;
    // Failback waits only for a path that complied before: one that comes up for the first time
    // (at start, or newly added) is not recovering, so a class does not sit on the first path up
    // (the metered one, say) for failback_stable_ms after start.
    const bool recovering = pd.compliant && lapsed && now_ns - since < failback_ns && !member(p.id);
    evals_.push_back({k, p.up, pd.compliant, recovering, p.metered, pd.score, excess});
    d.paths.push_back(pd);
  }
  auto decision_of = [&](const Eval& e) -> PathDecision& { return d.paths[size_t(&e - evals_.data())]; };

  // The pool: compliant paths, without those still proving themselves after a recovery
  // (unless nothing else complies), without metered ones as the class says.
  const bool any_stable = std::any_of(evals_.begin(), evals_.end(), [](const Eval& e) { return e.compliant && !e.recovering; });
  pool_.clear();
  for (const Eval& e : evals_) {
    if (!e.compliant) continue;
    if (any_stable && e.recovering) {
      decision_of(e).verdict = Verdict::kRecovering;
      continue;
    }
    if (e.metered && cc.metered == MeteredUse::kNever) {
      decision_of(e).verdict = Verdict::kMeteredNever;
      continue;
    }
    pool_.push_back(e);
  }
  const Eval* best_unmetered = nullptr;
  for (const Eval& e : pool_)
    if (!e.metered && (!best_unmetered || e.score < best_unmetered->score)) best_unmetered = &e;
  const bool avoid_metered = cc.metered == MeteredUse::kAvoid && best_unmetered != nullptr;
  if (avoid_metered) {
    const uint16_t other = in[best_unmetered->in].id;
    for (const Eval& e : pool_)
      if (e.metered) {
        // pool_ holds copies; evals_ and d.paths share their order.
        const auto at = std::find_if(evals_.begin(), evals_.end(), [&](const Eval& x) { return x.in == e.in; });
        PathDecision& pd = d.paths[size_t(at - evals_.begin())];
        pd.verdict = Verdict::kMeteredAvoided;
        pd.other = other;
      }
    std::erase_if(pool_, [](const Eval& e) { return e.metered; });
  }

  // The candidates: the pool, else (nothing complies) every up path for the least-bad one.
  std::span<const Eval> cands = pool_;
  bool by_excess = false;
  if (pool_.empty()) {
    scratch_.clear();
    if (cc.fallback == Fallback::kLeastBad)
      for (const Eval& e : evals_)
        if (e.up && !(e.metered && cc.metered == MeteredUse::kNever)) scratch_.push_back(e);
    d.fallback = !scratch_.empty();
    cands = scratch_;
    by_excess = true;
  } else {
    d.sla_met = true;
  }
  d.none = cands.empty();

  uint16_t primary = choose(st.primary, d.held_primary, cands, by_excess, in, now_ns);
  uint16_t secondary = dp::kNoPathId;
  bool duplicating = false;
  uint32_t hold_us = 0;
  const PathInput* prim_in = nullptr;
  for (size_t k : by_peer_[peer])
    if (in[k].id == primary) prim_in = &in[k];

  switch (cc.mode) {
    case dp::ClassMode::kBest:
      st.members.clear();
      st.secondary = {};
      if (!d.out.lut.empty()) {
        d.out.lut.clear();
        changed_ = true;
      }
      break;
    case dp::ClassMode::kDuplicate: {
      st.members.clear();
      // Copies go over another uplink: the best candidate there, else (a copy on a path that
      // misses the SLA still helps) the least-bad up path there, metered as the class allows.
      std::vector<Eval>& other = weights_tmp_;
      other.clear();
      if (prim_in)
        for (const Eval& e : cands)
          if (in[e.in].uplink != prim_in->uplink) other.push_back(e);
      bool sec_by_excess = by_excess;
      if (prim_in && other.empty()) {
        const bool no_metered = cc.metered == MeteredUse::kNever || avoid_metered;
        for (const Eval& e : evals_)
          if (e.up && in[e.in].uplink != prim_in->uplink && !(e.metered && no_metered)) other.push_back(e);
        sec_by_excess = true;
      }
      secondary = choose(st.secondary, d.held_secondary, other, sec_by_excess, in, now_ns);
      const bool prim_ok = prim_in && !d.fallback && !d.none;
      if (!cc.adaptive) {
        duplicating = true;
        d.dup = ClassDecision::Dup::kAlways;
      } else {
        if (!prim_ok) st.primary_ok_since = 0;
        else if (st.primary_ok_since == 0) st.primary_ok_since = now_ns;
        if (!prim_ok) st.dup_on = true;
        else if (now_ns - st.primary_ok_since >= uint64_t{pc_.switch_hold_ms} * kMs) st.dup_on = false;
        duplicating = st.dup_on;
        d.dup = duplicating ? ClassDecision::Dup::kSlaMissed : ClassDecision::Dup::kSlaMet;
      }
      const PathInput* sec_in = nullptr;
      for (size_t k : by_peer_[peer])
        if (in[k].id == secondary) sec_in = &in[k];
      if (!sec_in) {
        duplicating = false;
        d.dup = ClassDecision::Dup::kNoOtherUplink;
      } else if (duplicating && st.rate_bps && sec_in->bandwidth_bps &&
                 st.rate_bps * 100 > uint64_t{cc.max_overhead_pct} * sec_in->bandwidth_bps) {
        duplicating = false;
        d.dup = ClassDecision::Dup::kOverhead;
      }
      if (!d.out.lut.empty()) {
        d.out.lut.clear();
        changed_ = true;
      }
      break;
    }
    case dp::ClassMode::kBalance:
    case dp::ClassMode::kSpray: {
      st.secondary = {};
      // In fallback only the least-bad path carries the class.
      std::span<const Eval> members = cands;
      if (d.fallback) {
        members = {};
        for (const Eval& e : cands)
          if (in[e.in].id == primary) members = std::span<const Eval>(&e, 1);
      }
      weigh(members, in, st, d, now_ns);
      if (!d.out.lut.empty()) d.held_primary = {};
      if (cc.mode == dp::ClassMode::kSpray && members.size() >= 2) {
        double lo = kUnknownRttMs, hi = 0, jit = 0;
        for (const Eval& e : members) {
          const PathInput& p = in[e.in];
          lo = std::min(lo, p.rtt_ms.value_or(0));
          hi = std::max(hi, p.rtt_ms.value_or(0));
          jit = std::max(jit, p.jitter_ms.value_or(0));
        }
        const double want_ms = std::min<double>(cc.reorder_max_ms, hi - lo + 2 * jit + kReorderSlackMs);
        hold_us = static_cast<uint32_t>(std::ceil(want_ms * 1000));
        // Like weights: the hold follows the figures only beyond the margin (and 1 ms).
        const uint32_t old = d.out.reorder_hold_us;
        const double margin = pc_.switch_margin_ms ? kFallbackMarginPct : pc_.switch_margin_pct;
        if (old != 0 && std::abs(double(hold_us) - double(old)) <= std::max(1000.0, double(old) * margin / 100))
          hold_us = old;
      }
      break;
    }
  }

  for (PathDecision& pd : d.paths)
    if (pd.id == primary || (pd.id == secondary && duplicating)) pd.verdict = Verdict::kChosen;
  dp::ClassPaths& o = d.out;
  if (o.mode != cc.mode || o.primary != primary || o.secondary != secondary || o.duplicating != duplicating ||
      o.reorder_hold_us != hold_us)
    changed_ = true;
  o.mode = cc.mode;
  o.primary = primary;
  o.secondary = secondary;
  o.duplicating = duplicating;
  o.reorder_hold_us = hold_us;
}

std::string PolicyCompiler::reason(const ClassDecision& d, const PathDecision& p) const {
  switch (p.verdict) {
    case Verdict::kChosen:
      if (!d.out.lut.empty()) return fmt::format("chosen, weight {}", p.weight);
      if (p.id == d.out.primary) return "primary";
      return "secondary (copies)";
    case Verdict::kStandby: return p.id == d.out.secondary ? "secondary, not copying" : "complies, standby";
    case Verdict::kDown: return "down";
    case Verdict::kRtt: return fmt::format("rtt {} ms > {} ms", num(p.value), num(p.limit));
    case Verdict::kJitter: return fmt::format("jitter {} ms > {} ms", num(p.value), num(p.limit));
    case Verdict::kLoss: return fmt::format("loss {} % > {} %", num(p.value), num(p.limit));
    case Verdict::kMeteredAvoided: return fmt::format("metered, avoided: {} complies", path_name(p.other));
    case Verdict::kMeteredNever: return "metered, never for this class";
    case Verdict::kRecovering:
      return fmt::format("recovered {} ago, waiting {}", secs(d.at_ns - p.compliant_since_ns),
                         secs(uint64_t{pc_.failback_stable_ms} * kMs));
  }
  return "";
}

std::string PolicyCompiler::sla_text(const ClassDecision& d) const {
  const ClassConfig& c = classes_[d.cls];
  if (d.sla_met) return c.sla.any() ? "met" : "met (no SLA)";
  bool any_up = false;
  for (const PathDecision& p : d.paths) any_up |= p.verdict != Verdict::kDown;
  if (!any_up) return "not met: no path is up";
  if (d.none) return "not met: no path complies, fallback drop";
  for (const PathDecision& p : d.paths)
    if (p.id == d.out.primary)
      return fmt::format("not met: no path complies; least-bad {} ({})", path_name(p.id),
                         p.verdict == Verdict::kChosen ? "chosen" : reason(d, p));
  return "not met";
}

std::string PolicyCompiler::held_text(const ClassDecision& d, const Held& h) const {
  if (h.kind == Held::kNone) return "";
  const bool ms = pc_.switch_margin_ms && !d.fallback;
  const std::string by = ms ? fmt::format("{} ms", num(h.better)) : fmt::format("{} %", num(h.better));
  if (h.kind == Held::kMargin) {
    const std::string margin = ms ? fmt::format("{} ms", *pc_.switch_margin_ms)
                                  : fmt::format("{} %", pc_.switch_margin_ms ? kFallbackMarginPct : pc_.switch_margin_pct);
    return fmt::format("{} better by {} < {} margin", path_name(h.cand), by, margin);
  }
  return fmt::format("{} better by {} for {} < {} hold", path_name(h.cand), by, secs(d.at_ns - h.since_ns),
                     secs(uint64_t{pc_.switch_hold_ms} * kMs));
}

std::string PolicyCompiler::dup_text(const ClassDecision& d) const {
  static constexpr const char* kDup[] = {"", "yes (always)", "yes: the primary misses the SLA (adaptive)",
                                         "no: the primary meets the SLA (adaptive)",
                                         "no: copies would exceed max_overhead_pct of the copy uplink",
                                         "no: no usable path on another uplink"};
  return kDup[static_cast<int>(d.dup)];
}

std::vector<std::string> PolicyCompiler::explain(uint8_t cls) const {
  std::vector<std::string> out;
  if (cls >= classes_.size()) return out;
  const ClassConfig& c = classes_[cls];
  std::string sla;
  if (c.sla.latency_ms) sla += fmt::format(", rtt <= {} ms", num(*c.sla.latency_ms));
  if (c.sla.jitter_ms) sla += fmt::format(", jitter <= {} ms", num(*c.sla.jitter_ms));
  if (c.sla.loss_pct) sla += fmt::format(", loss <= {} %", num(*c.sla.loss_pct));
  out.push_back(fmt::format("class {} (id {}): mode {}, SLA {}, metered {}, fallback {}", c.name, cls,
                            mode_name(c.mode), sla.empty() ? "none" : sla.substr(2), metered_name(c.metered),
                            fallback_name(c.fallback)));
  for (uint16_t p = 0; p < peer_names_.size(); ++p) {
    const ClassDecision* d = decision(cls, p);
    if (!d) continue;
    out.push_back(fmt::format("to {}: SLA {}", peer_names_[p], sla_text(*d)));
    for (const PathDecision& pd : d->paths) {
      std::string figs = fmt::format("rtt {} ms, jitter {} ms, loss {} %", pd.rtt_ms ? num(*pd.rtt_ms) : "-",
                                     pd.jitter_ms ? num(*pd.jitter_ms) : "-", pd.loss_pct ? num(*pd.loss_pct) : "-");
      out.push_back(fmt::format("  {}: {} ({}{})", path_name(pd.id), reason(*d, pd), figs,
                                pd.compliant ? ", complies" : ""));
    }
    for (const Held* h : {&d->held_primary, &d->held_secondary})
      if (h->kind != Held::kNone) out.push_back("  hysteresis: " + held_text(*d, *h));
    if (c.mode == dp::ClassMode::kDuplicate) out.push_back(fmt::format("  duplicating: {}", dup_text(*d)));
    if (c.mode == dp::ClassMode::kSpray)
      out.push_back(fmt::format("  reorder hold: {} ms", num(d->out.reorder_hold_us / 1000.0)));
    if (!d->out.lut.empty()) out.push_back(fmt::format("  table: {} entries", d->out.lut.size()));
  }
  return out;
}

}  // namespace sdwan::cp
