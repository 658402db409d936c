// The classes of the config as the workers match them (issue 6): each class's rules, in config
// order, turned into dp::ClassRule. Control thread; pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "control/config/config.hpp"
#include "dataplane/api/policy.hpp"

namespace sdwan::cp {

/// The rules of every class in order (class id = index in classes) and the default class.
struct ClassRules {
  std::vector<dp::ClassRule> rules;  ///< class 0's rules first, then class 1's, ...
  uint8_t n_classes = 1;
  uint8_t default_class = 0;
};

/// Compiles validated classes (parse_config's: 1 to kMaxClasses, exactly one default).
ClassRules compile_rules(const std::vector<ClassConfig>& classes);

/// A packet's header fields as classification reads them (host order; ports 0 for non-TCP/UDP).
struct PacketKey {
  uint32_t src = 0, dst = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  uint8_t dscp = 0;
};

/// True when the rule matches: every field given matches; a port range other than 0..65535
/// matches TCP and UDP only. The workers' semantics, for tests and `explain`.
bool rule_matches(const dp::ClassRule& r, const PacketKey& k) noexcept;

/// The class of a packet: the first matching rule's, else the default class.
uint8_t classify(const ClassRules& rules, const PacketKey& k) noexcept;

}  // namespace sdwan::cp
