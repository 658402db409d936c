#include "control/policy/classify.hpp"

namespace sdwan::cp {
namespace {

uint32_t mask_of(uint8_t len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }

}  // namespace

ClassRules compile_rules(const std::vector<ClassConfig>& classes) {
  ClassRules out;
  out.n_classes = static_cast<uint8_t>(classes.size());
  for (size_t c = 0; c < classes.size(); ++c) {
    if (classes[c].is_default) out.default_class = static_cast<uint8_t>(c);
    for (const MatchRule& m : classes[c].match) {
      dp::ClassRule r;
      if (m.src) {
        r.src_mask = mask_of(m.src->len);
        r.src = m.src->addr.v & r.src_mask;
      }
      if (m.dst) {
        r.dst_mask = mask_of(m.dst->len);
        r.dst = m.dst->addr.v & r.dst_mask;
      }
      r.proto = m.proto;
      if (m.dscp) r.dscp = *m.dscp;
      if (m.sport) {
        r.sport_lo = m.sport->lo;
        r.sport_hi = m.sport->hi;
      }
      if (m.dport) {
        r.dport_lo = m.dport->lo;
        r.dport_hi = m.dport->hi;
      }
      r.cls = static_cast<uint8_t>(c);
      out.rules.push_back(r);
    }
  }
  return out;
}

bool rule_matches(const dp::ClassRule& r, const PacketKey& k) noexcept {
  if ((k.src & r.src_mask) != r.src || (k.dst & r.dst_mask) != r.dst) return false;
  if (r.proto != 0 && r.proto != k.proto) return false;
  if (r.dscp != 0xff && r.dscp != k.dscp) return false;
  const bool any_ports = r.sport_lo == 0 && r.sport_hi == 0xffff && r.dport_lo == 0 && r.dport_hi == 0xffff;
  if (any_ports) return true;
  if (k.proto != 6 && k.proto != 17) return false;
  return k.sport >= r.sport_lo && k.sport <= r.sport_hi && k.dport >= r.dport_lo && k.dport <= r.dport_hi;
}

uint8_t classify(const ClassRules& rules, const PacketKey& k) noexcept {
  for (const dp::ClassRule& r : rules.rules)
    if (rule_matches(r, k)) return r.cls;
  return rules.default_class;
}

}  // namespace sdwan::cp
