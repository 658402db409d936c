#include "control/config/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <utility>

#include "control/esp/spi.hpp"
#include "drivers/api/ports.hpp"

namespace sdwan::cp {
namespace {

using YAML::Node;

constexpr uint64_t kMinMtu = 576;   // the IPv4 minimum every host must accept (RFC 791)
constexpr uint64_t kMaxMtu = 9000;  // common jumbo frame; beyond it NIC support is patchy
// Uplink names label metrics and may name Linux interfaces, so they obey IFNAMSIZ.
constexpr size_t kMaxUplinkName = 15;
constexpr size_t kMaxName = 32;
constexpr uint64_t kMaxLcore = 1023;
constexpr uint64_t kMaxWorkers = 64;
constexpr uint64_t kMinFlows = 1024;
constexpr uint64_t kMaxFlows = 16777216;
constexpr uint64_t kMaxIcmpRate = 1000000;
constexpr uint64_t kMaxMemoryMb = 1048576;
constexpr size_t kMaxGroupName = 32;               // useradd's limit
constexpr size_t kMaxSocketPath = 107;             // sun_path holds 108 bytes with the NUL
constexpr uint64_t kMaxBandwidth = 1000000000000;  // 1 Tbit/s: guards the arithmetic, not a NIC
constexpr size_t kMaxQuoted = 60;
constexpr uint64_t kMinReplayWindow = 1024;
constexpr uint64_t kMaxReplayWindow = 1048576;
constexpr size_t kMaxFilePath = 4095;              // PATH_MAX without the NUL
constexpr uint64_t kMinProbeMs = 10;               // below it the control thread's 1 ms loop and the
constexpr uint64_t kMaxProbeMs = 10000;            // workers' scheduling are a large part of the figure
constexpr uint64_t kMaxWindowS = 3600;
constexpr uint64_t kMaxDampS = 86400;              // a day: longer windows mean a path never recovers
constexpr uint64_t kMaxHoldMs = 3600000;           // an hour
constexpr uint64_t kMaxSlaMs = 10000;             // 10 s: beyond it no interactive SLA means anything
constexpr size_t kMaxRulesPerClass = 256;          // a flow's first packet walks the rules in order
constexpr uint64_t kMaxReorderMs = 1000;           // the receiver holds packets this long at most
constexpr uint64_t kMaxSwitchHoldMs = 600000;      // ten minutes
constexpr uint64_t kMinEventRing = 10, kMaxEventRing = 100000;
constexpr uint64_t kMinHookTimeoutMs = 100, kMaxHookTimeoutMs = 3600000;
constexpr uint64_t kMaxHookConcurrent = 64;
constexpr uint64_t kMaxHookQueue = 100000;
constexpr size_t kMaxIfName = 15;                  // IFNAMSIZ without the NUL
constexpr size_t kMaxApps = 64;
constexpr uint64_t kMinAppIntervalMs = 500, kMaxAppIntervalMs = 3600000;
constexpr uint64_t kMinAppTimeoutMs = 100;
constexpr size_t kMaxAppPath = 1024;
constexpr uint64_t kMaxHookOutput = 1048576;       // per run, kept in memory for show hooks
constexpr size_t kMaxHooksPerType = 16;
constexpr size_t kMaxHookArgs = 64;
constexpr std::string_view kKeyHelp =
    "the file with the peer's 256-bit master key, 64 hex digits, mode 0600 (docs/keys.md \"Key file\"); "
    "make one with: umask 077; openssl rand -hex 32 > /etc/sdwan/master.key";

// A validation failure found deep inside the walk. It never leaves this file: parse_config is
// the boundary that turns it, like yaml-cpp's own exceptions, into a Result, so the walk reads
// as straight-line checks instead of threading a Result through every field.
struct Reject {
  int line = 0;  // 0-based, as yaml-cpp counts
  std::string key;
  std::string msg;
};

int line_of(const Node& n) {
  const YAML::Mark m = n.Mark();
  return m.is_null() ? 0 : m.line;
}

// A value with the line to report it on. yaml-cpp places an empty value ("mtu:" with nothing
// after it) at the next token, often a line further down, so such a value takes its key's line.
struct Val : Node {
  int line = 0;
};

Val located_val(const Node& n) { return Val{n, line_of(n)}; }

[[noreturn]] void fail(const Node& at, std::string key, std::string msg) {
  throw Reject{line_of(at), std::move(key), std::move(msg)};
}

[[noreturn]] void fail(const Val& at, std::string key, std::string msg) {
  throw Reject{at.line, std::move(key), std::move(msg)};
}

// Values are echoed inside one-line messages, so anything that could break the line is escaped
// and very long values are cut.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  const bool cut = s.size() > kMaxQuoted;
  for (char c : s.substr(0, cut ? kMaxQuoted - 3 : s.size())) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (cut) out += "...";
  return out + "\"";
}

std::string describe(const Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: return quoted(n.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "nothing";
  }
}

std::string join(const std::vector<std::string>& items, std::string_view last_sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? last_sep : std::string_view(", ");
    out += items[i];
  }
  return out;
}

std::string index_key(const std::string& list_key, size_t i) { return fmt::format("{}[{}]", list_key, i); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The keys a mapping may hold, checked once (type, unknown keys, duplicates) so that every
// section reports those mistakes with the same words.
class Fields {
 public:
  Fields(const Val& node, std::string path, std::initializer_list<std::string_view> keys)
      : node_(node), path_(std::move(path)), keys_(keys) {
    // An empty section (every key commented out) is an empty mapping, not a type error.
    if (node.IsNull()) return;
    if (!node.IsMap())
      fail(node, path_, fmt::format("expected a mapping with keys {}, got {}", join(names(), ", "), describe(node)));
    for (auto it = node.begin(); it != node.end(); ++it) {
      const Node k = it->first;  // a copy: the iterator hands out a temporary
      if (!k.IsScalar()) fail(k, path_, fmt::format("expected plain key names, got {} as a key", describe(k)));
      const std::string name = k.Scalar();
      if (std::find(keys_.begin(), keys_.end(), name) == keys_.end())
        fail(k, key(name), fmt::format("unknown key (expected one of: {})", join(names(), ", ")));
      for (const auto& e : entries_)
        if (e.name == name) fail(k, key(name), fmt::format("duplicate key (first on line {})", line_of(e.key) + 1));
      const Node v = it->second;
      entries_.push_back({name, k, Val{v, v.IsNull() ? line_of(k) : line_of(v)}});
    }
  }

  std::optional<Val> get(std::string_view k) const {
    for (const auto& e : entries_)
      if (e.name == k) return e.value;
    return std::nullopt;
  }

  Val need(std::string_view k) const {
    auto v = get(k);
    if (!v) fail(node_, key(k), "required key is missing");
    return *v;
  }

  std::string key(std::string_view k) const { return path_.empty() ? std::string(k) : path_ + "." + std::string(k); }

 private:
  struct Entry {
    std::string name;
    Node key;
    Val value;
  };
  std::vector<std::string> names() const { return {keys_.begin(), keys_.end()}; }

  Val node_;
  std::string path_;
  std::vector<std::string_view> keys_;
  std::vector<Entry> entries_;
};

std::string read_scalar(const Val& n, const std::string& key, std::string_view what) {
  if (!n.IsScalar()) fail(n, key, fmt::format("expected {}, got {}", what, describe(n)));
  return n.Scalar();
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

uint64_t read_uint(const Val& n, const std::string& key, uint64_t lo, uint64_t hi,
                   std::string_view noun = "an integer") {
  const std::string what = fmt::format("{} from {} to {}", noun, lo, hi);
  const std::string s = read_scalar(n, key, what);
  auto v = parse_uint(s);
  if (!v || *v < lo || *v > hi) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
  return *v;
}

bool read_bool(const Val& n, const std::string& key) {
  const std::string s = read_scalar(n, key, "true or false");
  const std::string l = lower(s);
  // YAML 1.1 spellings too: operators copy them from older examples.
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  fail(n, key, fmt::format("expected true or false, got {}", quoted(s)));
}

template <class E>
E read_choice(const Val& n, const std::string& key, std::initializer_list<std::pair<std::string_view, E>> choices) {
  std::vector<std::string> names;
  for (const auto& c : choices) names.emplace_back(c.first);
  const std::string what = join(names, " or ");
  const std::string s = read_scalar(n, key, what);
  for (const auto& c : choices)
    if (c.first == s) return c.second;
  fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
}

std::vector<Val> read_list(const Val& n, const std::string& key, size_t lo, size_t hi, std::string_view plural) {
  if (!n.IsSequence()) fail(n, key, fmt::format("expected a list of {}, got {}", plural, describe(n)));
  const size_t count = n.size();
  if (count < lo || count > hi) {
    const std::string got = count == 0 ? "none" : std::to_string(count);
    // Unbounded lists only ever fail for being empty.
    if (hi == SIZE_MAX) fail(n, key, fmt::format("expected a non-empty list of {}, got none", plural));
    fail(n, key, fmt::format("expected {} to {} {}, got {}", lo, hi, plural, got));
  }
  std::vector<Val> items;
  for (const auto& item : n) items.push_back(located_val(item));
  return items;
}

bool name_chars(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

std::string read_name(const Val& n, const std::string& key, size_t max) {
  const std::string what = fmt::format("a name of 1 to {} characters a-z, 0-9, '_' or '-'", max);
  const std::string s = read_scalar(n, key, what);
  if (s.empty() || s.size() > max || !name_chars(s)) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
  return s;
}

uint32_t mask_of(uint8_t len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }

Prefix4 subnet_of(Prefix4 p) { return Prefix4{Ipv4{p.addr.v & mask_of(p.len)}, p.len}; }

bool overlaps(Prefix4 a, Prefix4 b) { return a.contains(b.addr) || b.contains(a.addr); }

// 0/8 (this network), 127/8 (loopback) and 224/3 (multicast, reserved) never name a neighbour.
bool unicast(Ipv4 a) {
  const uint32_t first = a.v >> 24;
  return first != 0 && first != 127 && first < 224;
}

constexpr std::string_view kUnicast = "a unicast IPv4 address (not 0.0.0.0/8, 127.0.0.0/8, multicast or reserved)";

void check_host(const Val& n, const std::string& key, Prefix4 subnet, Ipv4 a, std::string_view written) {
  // A /31 (RFC 3021) or /32 has no network or broadcast address to avoid.
  if (subnet.len > 30) return;
  const uint32_t host = a.v & ~mask_of(subnet.len);
  const std::string net = subnet_of(subnet).str();
  if (host == 0)
    fail(n, key, fmt::format("expected a host address inside {}, got its network address {}", net, quoted(written)));
  if (host == ~mask_of(subnet.len))
    fail(n, key, fmt::format("expected a host address inside {}, got its broadcast address {}", net, quoted(written)));
}

Prefix4 read_iface_address(const Val& n, const std::string& key, std::string_view example) {
  const std::string what = fmt::format("an IPv4 address with prefix length like {}", example);
  const std::string s = read_scalar(n, key, what);
  auto p = Prefix4::parse(s, /*allow_host_bits=*/true);
  if (!p) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
  if (p->len < 1 || p->len > 31)
    fail(n, key, fmt::format("expected a prefix length from /1 to /31 on an interface, got {}", quoted(s)));
  if (!unicast(p->addr)) fail(n, key, fmt::format("expected {}, got {}", kUnicast, quoted(s)));
  check_host(n, key, *p, p->addr, s);
  return *p;
}

Ipv4 read_host(const Val& n, const std::string& key, std::string_view example) {
  const std::string what = fmt::format("an IPv4 address like {}", example);
  const std::string s = read_scalar(n, key, what);
  auto a = Ipv4::parse(s);
  if (!a) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
  if (!unicast(*a)) fail(n, key, fmt::format("expected {}, got {}", kUnicast, quoted(s)));
  return *a;
}

Prefix4 read_network(const Val& n, const std::string& key) {
  const std::string what = "a network like 192.168.20.0/24";
  const std::string s = read_scalar(n, key, what);
  if (auto p = Prefix4::parse(s)) return *p;
  if (auto h = Prefix4::parse(s, /*allow_host_bits=*/true))
    fail(n, key, fmt::format("expected a network with host bits zero ({}), got {}", subnet_of(*h).str(), quoted(s)));
  fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
}

// tc's rate syntax: a bare number is bit/s; k, m and g are powers of 1000 for bits.
std::optional<uint64_t> parse_rate(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  auto whole = parse_uint(s.substr(0, i));
  if (!whole) return std::nullopt;
  uint64_t frac = 0, frac_scale = 1;
  if (i < s.size() && s[i] == '.') {
    const size_t start = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    // Nine digits keep frac * unit below 2^64 for every unit.
    if (i == start || i - start > 9) return std::nullopt;
    frac = *parse_uint(s.substr(start, i - start));
    for (size_t d = start; d < i; ++d) frac_scale *= 10;
  }
  const std::string unit = lower(s.substr(i));
  constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1}, {"bit", 1}, {"kbit", 1000}, {"mbit", 1000000}, {"gbit", 1000000000}};
  uint64_t mult = 0;
  for (const auto& [name, factor] : kUnits)
    if (unit == name) mult = factor;
  if (mult == 0) return std::nullopt;
  if (*whole > kMaxBandwidth / mult) return std::nullopt;
  // A fraction must come out as whole bits: "1.5kbit" is 1500, "1.5bit" is not a rate.
  if ((frac * mult) % frac_scale != 0) return std::nullopt;
  const uint64_t v = *whole * mult + frac * mult / frac_scale;
  if (v == 0 || v > kMaxBandwidth) return std::nullopt;
  return v;
}

// True when n is YAML's null spelled as the word null, as opposed to "~" or an empty value.
bool written_null(std::string_view text, const Node& n) {
  if (!n.IsNull() || n.Mark().is_null()) return false;
  const auto pos = static_cast<size_t>(n.Mark().pos);
  if (pos >= text.size() || text.substr(pos, 4) != "null") return false;
  return pos + 4 == text.size() || std::string_view(" \t\r\n#,]}").find(text[pos + 4]) != std::string_view::npos;
}

// Two specs that reach the same device would fight over it; null and an unnamed tap create a
// fresh device per port, so they may repeat.
std::string device_of(const drv::PortSpec& s) {
  switch (s.kind) {
    case drv::PortKind::kPci: return "pci:" + lower(s.arg);
    case drv::PortKind::kAfPacket:
    case drv::PortKind::kAfXdp: return "iface:" + s.arg;
    case drv::PortKind::kTap: return s.arg.empty() ? std::string() : "iface:" + s.arg;
    case drv::PortKind::kRing: return "ring:" + s.arg;
    case drv::PortKind::kNull: return {};
  }
  return {};
}

class Walker {
 public:
  explicit Walker(std::string_view text) : text_(text) {}

  Config walk(const Val& root) {
    const Fields f(root, "",
                   {"name", "role", "lan", "uplinks", "peers", "lcores", "idle", "overlay_port", "flow_capacity",
                    "icmp_errors_per_sec", "log_level", "dpdk", "mgmt", "metrics", "esp", "paths", "classes", "policy", "events",
                    "host", "apps"});
    c_.role = read_choice<Role>(f.need("role"), "role", {{"edge", Role::kEdge}, {"hub", Role::kHub}});
    c_.name = std::string(role_name(c_.role));
    if (auto n = f.get("name")) c_.name = read_name(*n, "name", kMaxName);
    if (auto n = f.get("idle"))
      c_.idle = read_choice<dp::IdlePolicy>(*n, "idle",
                                            {{"busy", dp::IdlePolicy::kBusy}, {"adaptive", dp::IdlePolicy::kAdaptive}});
    if (auto n = f.get("overlay_port"))
      c_.overlay_port = static_cast<uint16_t>(read_uint(*n, "overlay_port", 1, 65535, "a UDP port"));
    if (auto n = f.get("flow_capacity"))
      c_.flow_capacity = static_cast<uint32_t>(read_uint(*n, "flow_capacity", kMinFlows, kMaxFlows));
    if (auto n = f.get("icmp_errors_per_sec"))
      c_.icmp_errors_per_sec = static_cast<uint32_t>(read_uint(*n, "icmp_errors_per_sec", 0, kMaxIcmpRate));
    if (auto n = f.get("log_level")) {
      c_.log_level = std::string(read_choice<std::string_view>(
          *n, "log_level", {{"error", "error"}, {"warning", "warning"}, {"info", "info"}, {"debug", "debug"}}));
    }
    lan(f.need("lan"));
    uplinks(f.need("uplinks"));
    peers(f.need("peers"));
    if (auto n = f.get("lcores")) lcores(*n);
    c_.dpdk.file_prefix = c_.name;
    if (auto n = f.get("dpdk")) dpdk(*n);
    if (auto n = f.get("mgmt")) mgmt(*n);
    if (auto n = f.get("metrics")) metrics(*n);
    c_.esp.epoch_store = "/var/lib/sdwan/" + c_.name + ".epochs";
    if (auto n = f.get("esp")) esp(*n);
    if (auto n = f.get("paths")) paths(*n);
    if (auto n = f.get("classes")) classes(*n);
    finish_classes(f.get("classes"));
    if (auto n = f.get("policy")) policy(*n);
    if (auto n = f.get("events")) events(*n);
    if (auto n = f.get("host")) host(*n);
    if (auto n = f.get("apps")) apps(*n);
    return std::move(c_);
  }

 private:
  std::string port(const Val& n, const std::string& key) {
    // "port: null" is the null port, but YAML reads a plain null as no value at all; only the
    // source text tells it apart from "port:" left empty.
    const bool null_spec = written_null(text_, n);
    const std::string s = null_spec ? std::string("null") : read_scalar(n, key, "a port spec like af_packet:eth1");
    auto spec = drv::PortSpec::parse(s);
    if (!spec) fail(n, key, spec.error().msg);
    const std::string dev = device_of(*spec);
    if (!dev.empty()) {
      for (const auto& [other_dev, other] : devices_)
        if (other_dev == dev)
          fail(n, key,
               fmt::format("expected a device no other port uses, got {} ({} already uses it)", quoted(s), other));
      devices_.emplace_back(dev, key);
    }
    return s;
  }

  uint16_t mtu(const Val& n, const std::string& key) {
    return static_cast<uint16_t>(read_uint(n, key, kMinMtu, kMaxMtu, "an MTU"));
  }

  void lan(const Val& n) {
    const Fields f(n, "lan", {"port", "address", "mtu"});
    c_.lan.port = port(f.need("port"), "lan.port");
    c_.lan.address = read_iface_address(f.need("address"), "lan.address", "192.168.10.1/24");
    if (auto m = f.get("mtu")) c_.lan.mtu = mtu(*m, "lan.mtu");
  }

  void uplinks(const Val& n) {
    const auto items = read_list(n, "uplinks", 1, dp::kMaxUplinks, "uplinks");
    const Prefix4 lan_net = subnet_of(c_.lan.address);
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string base = index_key("uplinks", i);
      const Fields f(items[i], base, {"name", "port", "address", "next_hop", "cost", "bandwidth", "mtu"});
      UplinkConfig u;
      const Val name = f.need("name");
      u.name = read_name(name, f.key("name"), kMaxUplinkName);
      for (size_t j = 0; j < c_.uplinks.size(); ++j)
        if (c_.uplinks[j].name == u.name)
          fail(name, f.key("name"),
               fmt::format("expected a unique uplink name, got {} (uplinks[{}] has it)", quoted(u.name), j));
      u.port = port(f.need("port"), f.key("port"));
      const Val addr = f.need("address");
      u.address = read_iface_address(addr, f.key("address"), "10.1.0.2/24");
      if (overlaps(subnet_of(u.address), lan_net))
        fail(addr, f.key("address"),
             fmt::format("expected a subnet apart from the LAN subnet {}, got {}", lan_net.str(),
                         quoted(addr.Scalar())));
      const Val hop = f.need("next_hop");
      u.next_hop = read_host(hop, f.key("next_hop"), "10.1.0.1");
      const std::string hop_s = hop.Scalar();
      const std::string net = subnet_of(u.address).str();
      if (!u.address.contains(u.next_hop))
        fail(hop, f.key("next_hop"),
             fmt::format("expected an address inside the uplink's subnet {}, got {}", net, quoted(hop_s)));
      if (u.next_hop == u.address.addr)
        fail(hop, f.key("next_hop"),
             fmt::format("expected the gateway's address, got the uplink's own address {}", quoted(hop_s)));
      check_host(hop, f.key("next_hop"), u.address, u.next_hop, hop_s);
      if (auto c = f.get("cost"))
        u.cost =
            read_choice<CostTier>(*c, f.key("cost"), {{"normal", CostTier::kNormal}, {"metered", CostTier::kMetered}});
      if (auto b = f.get("bandwidth")) {
        const std::string what = "a rate like 100Mbit (bit/s, or a number with unit bit, kbit, Mbit or Gbit)";
        const std::string s = read_scalar(*b, f.key("bandwidth"), what);
        auto rate = parse_rate(s);
        if (!rate) fail(*b, f.key("bandwidth"), fmt::format("expected {}, got {}", what, quoted(s)));
        u.bandwidth_bps = *rate;
      }
      if (auto m = f.get("mtu")) u.mtu = mtu(*m, f.key("mtu"));
      c_.uplinks.push_back(std::move(u));
    }
  }

  std::vector<std::string> uplink_names() const {
    std::vector<std::string> names;
    for (const auto& u : c_.uplinks) names.push_back(u.name);
    return names;
  }

  EndpointConfig endpoint(const Val& n, const std::string& base) {
    const Fields f(n, base, {"address", "port", "uplinks", "link"});
    EndpointConfig e;
    e.address = read_host(f.need("address"), f.key("address"), "203.0.113.1");
    if (auto p = f.get("port")) e.port = static_cast<uint16_t>(read_uint(*p, f.key("port"), 0, 65535, "a UDP port"));
    if (auto u = f.get("uplinks")) {
      const auto items = read_list(*u, f.key("uplinks"), 1, dp::kMaxUplinks, "uplink names");
      const auto names = uplink_names();
      const std::string what = fmt::format("the name of a configured uplink ({})", join(names, " or "));
      for (size_t k = 0; k < items.size(); ++k) {
        const std::string key = index_key(f.key("uplinks"), k);
        const std::string s = read_scalar(items[k], key, what);
        if (std::find(names.begin(), names.end(), s) == names.end())
          fail(items[k], key, fmt::format("expected {}, got {}", what, quoted(s)));
        if (std::find(e.uplinks.begin(), e.uplinks.end(), s) != e.uplinks.end())
          fail(items[k], key, fmt::format("expected each uplink once, got {} twice", quoted(s)));
        e.uplinks.push_back(s);
      }
    }
    std::optional<Val> link_val = f.get("link");
    if (link_val) {
      e.link = static_cast<uint16_t>(read_uint(*link_val, f.key("link"), 0, kSpiLinks - 1, "a link number"));
      const size_t paths = e.uplinks.empty() ? c_.uplinks.size() : e.uplinks.size();
      if (paths != 1)
        fail(*link_val, f.key("link"),
             fmt::format("expected link only on an endpoint with exactly one path (name its uplink: uplinks: [NAME]), "
                         "got an endpoint reached over {} uplinks",
                         paths));
    }
    endpoint_vals_.push_back({n, link_val, base});
    return e;
  }

  void peers(const Val& n) {
    const auto items = read_list(n, "peers", 1, dp::kMaxPeers, "peers");
    const Prefix4 lan_net = subnet_of(c_.lan.address);
    size_t total_paths = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string base = index_key("peers", i);
      const Fields f(items[i], base, {"name", "key_file", "endpoints", "prefixes"});
      PeerConfig p;
      const Val name = f.need("name");
      p.name = read_name(name, f.key("name"), kMaxName);
      for (size_t j = 0; j < c_.peers.size(); ++j)
        if (c_.peers[j].name == p.name)
          fail(name, f.key("name"),
               fmt::format("expected a unique peer name, got {} (peers[{}] has it)", quoted(p.name), j));
      const auto key_file = f.get("key_file");
      if (!key_file) fail(items[i], f.key("key_file"), fmt::format("required key is missing: {}", kKeyHelp));
      p.key_file = absolute_path(*key_file, f.key("key_file"), "/etc/sdwan/master.key");

      const Val eps = f.need("endpoints");
      const auto ep_items = read_list(eps, f.key("endpoints"), 1, dp::kMaxPathsPerPeer, "endpoints");
      size_t paths = 0;
      for (size_t k = 0; k < ep_items.size(); ++k) {
        const std::string ekey = index_key(f.key("endpoints"), k);
        EndpointConfig e = endpoint(ep_items[k], ekey);
        const uint16_t port_of_e = e.port == 0 ? c_.overlay_port : e.port;
        for (size_t j = 0; j < p.endpoints.size(); ++j) {
          const auto& o = p.endpoints[j];
          if (o.address == e.address && (o.port == 0 ? c_.overlay_port : o.port) == port_of_e)
            fail(ep_items[k], ekey,
                 fmt::format("expected a distinct endpoint, got {}:{} again (endpoints[{}] has it)", e.address.str(),
                             port_of_e, j));
        }
        paths += e.uplinks.empty() ? c_.uplinks.size() : e.uplinks.size();
        p.endpoints.push_back(std::move(e));
      }
      if (paths > dp::kMaxPathsPerPeer)
        fail(eps, f.key("endpoints"),
             fmt::format("expected at most {} paths (endpoints x the uplinks that reach them), got {}",
                         dp::kMaxPathsPerPeer, paths));
      total_paths += paths;

      const Val pfx = f.need("prefixes");
      const auto pfx_items = read_list(pfx, f.key("prefixes"), 1, SIZE_MAX, "prefixes");
      for (size_t k = 0; k < pfx_items.size(); ++k) {
        const std::string key = index_key(f.key("prefixes"), k);
        const Prefix4 net = read_network(pfx_items[k], key);
        // A prefix that covers the LAN (a default route via the hub) is fine: the LAN's own,
        // longer route still wins; one inside the LAN would steal local traffic.
        if (net.len >= lan_net.len && lan_net.contains(net.addr))
          fail(pfx_items[k], key,
               fmt::format("expected a network outside the LAN subnet {}, got {}", lan_net.str(), quoted(net.str())));
        if (std::find(p.prefixes.begin(), p.prefixes.end(), net) != p.prefixes.end())
          fail(pfx_items[k], key, fmt::format("expected each prefix once, got {} twice", quoted(net.str())));
        for (size_t j = 0; j < c_.peers.size(); ++j) {
          const auto& other = c_.peers[j].prefixes;
          if (std::find(other.begin(), other.end(), net) != other.end())
            fail(pfx_items[k], key,
                 fmt::format("expected a prefix no other peer has, got {} (peers[{}] \"{}\" has it)", quoted(net.str()),
                             j, c_.peers[j].name));
        }
        p.prefixes.push_back(net);
      }
      c_.peers.push_back(std::move(p));
    }
    if (total_paths > dp::kMaxPaths)
      fail(n, "peers", fmt::format("expected at most {} paths over all peers, got {}", dp::kMaxPaths, total_paths));
    check_links();
  }

  // Every path of this appliance needs its own link number: it picks the inbound table slot
  // of the path's SAs (docs/keys.md "SPI layout"). Paths are walked in make_topology's order
  // and named the same way, so the message names them as `show paths` does.
  void check_links() {
    struct Seen {
      std::string path;
      bool set;
    };
    std::map<uint16_t, Seen> seen;
    size_t ev = 0;
    for (size_t pi = 0; pi < c_.peers.size(); ++pi) {
      const auto& peer = c_.peers[pi];
      std::vector<size_t> per_uplink(c_.uplinks.size(), 0);
      for (size_t ei = 0; ei < peer.endpoints.size(); ++ei, ++ev) {
        const auto& ep = peer.endpoints[ei];
        const EndpointVal& at = endpoint_vals_[ev];
        for (size_t ui = 0; ui < c_.uplinks.size(); ++ui) {
          const auto& u = c_.uplinks[ui];
          if (!ep.uplinks.empty() && std::find(ep.uplinks.begin(), ep.uplinks.end(), u.name) == ep.uplinks.end())
            continue;
          std::string name = u.name + ":" + peer.name;
          if (++per_uplink[ui] > 1) name += "#" + std::to_string(per_uplink[ui]);
          const uint16_t link = path_link(c_, ui, pi, ei);
          const bool set = ep.link.has_value();
          auto [it, fresh] = seen.emplace(link, Seen{name, set});
          if (fresh) continue;
          auto how = [](bool explicit_link) { return explicit_link ? "set by link:" : "computed from its endpoints"; };
          const std::string msg = fmt::format(
              "expected a link number no other path uses, got {} for path {} ({}), the same as path {} ({}); set "
              "link: 0..{} on the endpoint of one of them, and the same number on that path's endpoint in the peer's "
              "config (docs/keys.md)",
              link, name, how(set), it->second.path, how(it->second.set), kSpiLinks - 1);
          if (at.link) fail(*at.link, at.key + ".link", msg);
          fail(at.node, at.key, msg);
        }
      }
    }
  }

  void lcores(const Val& n) {
    const Fields f(n, "lcores", {"control", "workers", "worker_count"});
    if (auto c = f.get("control"))
      c_.lcores.control = static_cast<unsigned>(read_uint(*c, "lcores.control", 0, kMaxLcore, "a core number"));
    if (auto w = f.get("workers")) {
      const auto items = read_list(*w, "lcores.workers", 1, kMaxWorkers, "core numbers");
      for (size_t k = 0; k < items.size(); ++k) {
        const std::string key = index_key("lcores.workers", k);
        const auto core = static_cast<unsigned>(read_uint(items[k], key, 0, kMaxLcore, "a core number"));
        if (core == c_.lcores.control)
          fail(items[k], key,
               fmt::format("expected a core other than the control core {}, got {}", c_.lcores.control,
                           quoted(items[k].Scalar())));
        auto& ws = c_.lcores.workers;
        if (std::find(ws.begin(), ws.end(), core) != ws.end())
          fail(items[k], key, fmt::format("expected each core once, got {} twice", quoted(items[k].Scalar())));
        ws.push_back(core);
      }
      c_.lcores.worker_count = static_cast<unsigned>(c_.lcores.workers.size());
    }
    if (auto wc = f.get("worker_count")) {
      const auto count = static_cast<unsigned>(read_uint(*wc, "lcores.worker_count", 1, kMaxWorkers));
      // Both keys at once is only coherent when they agree; otherwise one of them is a typo.
      if (!c_.lcores.workers.empty() && count != c_.lcores.workers.size())
        fail(*wc, "lcores.worker_count",
             fmt::format("expected {} (the number of cores in lcores.workers) or no worker_count, got {}",
                         c_.lcores.workers.size(), quoted(wc->Scalar())));
      c_.lcores.worker_count = count;
    }
  }

  void dpdk(const Val& n) {
    const Fields f(n, "dpdk", {"file_prefix", "hugepages", "memory_mb", "extra_args"});
    if (auto p = f.get("file_prefix")) {
      const std::string what = fmt::format("a file prefix of 1 to {} characters a-z, A-Z, 0-9, '_' or '-'", kMaxName);
      const std::string s = read_scalar(*p, "dpdk.file_prefix", what);
      const bool ok = !s.empty() && s.size() <= kMaxName && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
      if (!ok) fail(*p, "dpdk.file_prefix", fmt::format("expected {}, got {}", what, quoted(s)));
      c_.dpdk.file_prefix = s;
    }
    if (auto h = f.get("hugepages")) c_.dpdk.hugepages = read_bool(*h, "dpdk.hugepages");
    if (auto m = f.get("memory_mb"))
      c_.dpdk.memory_mb = static_cast<unsigned>(read_uint(*m, "dpdk.memory_mb", 0, kMaxMemoryMb));
    if (auto a = f.get("extra_args")) {
      const auto items = read_list(*a, "dpdk.extra_args", 0, SIZE_MAX, "EAL arguments");
      for (size_t k = 0; k < items.size(); ++k)
        c_.dpdk.extra_args.push_back(read_scalar(items[k], index_key("dpdk.extra_args", k), "an EAL argument string"));
    }
  }

  void mgmt(const Val& n) {
    const Fields f(n, "mgmt", {"socket", "group"});
    if (auto s = f.get("socket")) {
      const std::string what = fmt::format("an absolute path of at most {} bytes", kMaxSocketPath);
      const std::string v = read_scalar(*s, "mgmt.socket", what);
      if (v.empty() || v[0] != '/' || v.size() > kMaxSocketPath)
        fail(*s, "mgmt.socket", fmt::format("expected {}, got {}", what, quoted(v)));
      c_.mgmt.socket = v;
    }
    if (auto g = f.get("group")) {
      const std::string what =
          fmt::format("a group name (letters, digits, '_', '-' or '.', at most {}) or \"\"", kMaxGroupName);
      const std::string v = read_scalar(*g, "mgmt.group", what);
      const bool ok = v.size() <= kMaxGroupName && std::all_of(v.begin(), v.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                      });
      if (!ok) fail(*g, "mgmt.group", fmt::format("expected {}, got {}", what, quoted(v)));
      c_.mgmt.group = v;
    }
  }

  // The host port: a named tap only, since sdwand configures its kernel side by name.
  void host(const Val& n) {
    const Fields f(n, "host", {"port"});
    const Val v = f.need("port");
    const std::string s = port(v, "host.port");
    const auto spec = drv::PortSpec::parse(s);
    if (!spec || spec->kind != drv::PortKind::kTap || spec->arg.empty() || spec->arg.size() > kMaxIfName)
      fail(v, "host.port",
           fmt::format("expected tap:NAME with a kernel interface name of 1 to {} characters (sdwand configures "
                       "that interface), got {}",
                       kMaxIfName, quoted(s)));
    c_.host.port = s;
  }

  // Application checks: each target must lie behind a peer (the check runs through the
  // overlay) and the host port must be on (the checks run from the host stack).
  void apps(const Val& n) {
    const auto items = read_list(n, "apps", 0, kMaxApps, "checks");
    if (!items.empty() && !c_.host.on())
      fail(n, "apps", "checks run from the appliance's host stack: they need host.port (e.g. host: {port: tap:sdwan0})");
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string base = index_key("apps", i);
      const Fields f(items[i], base, {"name", "type", "target", "interval_ms", "timeout_ms", "expect_status"});
      AppCheckConfig a;
      const Val name = f.need("name");
      a.name = read_name(name, f.key("name"), kMaxName);
      for (size_t j = 0; j < c_.apps.size(); ++j)
        if (c_.apps[j].name == a.name)
          fail(name, f.key("name"), fmt::format("expected a unique check name, got {} (apps[{}] has it)", quoted(a.name), j));
      a.kind = read_choice<AppCheckConfig::Kind>(f.need("type"), f.key("type"),
                                                 {{"tcp", AppCheckConfig::Kind::kTcp}, {"http", AppCheckConfig::Kind::kHttp}});
      const Val t = f.need("target");
      const bool http = a.kind == AppCheckConfig::Kind::kHttp;
      const std::string what = http ? "a URL like http://192.168.20.2:8080/health (plain http, an IPv4 address)"
                                    : "an IPv4 address and TCP port like 192.168.20.2:443";
      a.target = read_scalar(t, f.key("target"), what);
      std::string_view rest = a.target;
      if (http) {
        if (!rest.starts_with("http://")) fail(t, f.key("target"), fmt::format("expected {}, got {}", what, quoted(a.target)));
        rest.remove_prefix(7);
        const size_t slash = rest.find('/');
        if (slash != std::string_view::npos) {
          a.path = std::string(rest.substr(slash));
          rest = rest.substr(0, slash);
        }
        const bool path_ok = a.path.size() <= kMaxAppPath && std::all_of(a.path.begin(), a.path.end(), [](char c) {
                               return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
                             });
        if (!path_ok) fail(t, f.key("target"), fmt::format("expected {}, got {}", what, quoted(a.target)));
      }
      const size_t colon = rest.rfind(':');
      const auto addr = Ipv4::parse(colon == std::string_view::npos ? rest : rest.substr(0, colon));
      std::optional<uint64_t> port_v = http ? std::optional<uint64_t>(80) : std::nullopt;
      if (colon != std::string_view::npos) port_v = parse_uint(rest.substr(colon + 1));
      if (!addr || !port_v || *port_v == 0 || *port_v > 65535)
        fail(t, f.key("target"), fmt::format("expected {}, got {}", what, quoted(a.target)));
      a.address = *addr;
      a.port = static_cast<uint16_t>(*port_v);
      bool behind_peer = false;
      std::vector<std::string> nets;
      for (const auto& p : c_.peers)
        for (const auto& pfx : p.prefixes) {
          behind_peer = behind_peer || pfx.contains(a.address);
          nets.push_back(pfx.str());
        }
      if (!behind_peer)
        fail(t, f.key("target"),
             fmt::format("expected a service behind a peer (an address inside {}), got {}", join(nets, " or "),
                         quoted(a.target)));
      if (auto v = f.get("interval_ms"))
        a.interval_ms = static_cast<uint32_t>(read_uint(*v, f.key("interval_ms"), kMinAppIntervalMs, kMaxAppIntervalMs));
      if (auto v = f.get("timeout_ms")) {
        a.timeout_ms = static_cast<uint32_t>(read_uint(*v, f.key("timeout_ms"), kMinAppTimeoutMs, kMaxAppIntervalMs));
        if (a.timeout_ms >= a.interval_ms)
          fail(*v, f.key("timeout_ms"),
               fmt::format("expected less than interval_ms ({}), got {}", a.interval_ms, quoted(v->Scalar())));
      } else {
        a.timeout_ms = std::min<uint32_t>(a.timeout_ms, a.interval_ms / 2);
      }
      if (auto v = f.get("expect_status")) {
        if (!http) fail(*v, f.key("expect_status"), "expected no expect_status on a tcp check (http only)");
        a.expect_status = static_cast<uint16_t>(read_uint(*v, f.key("expect_status"), 100, 599, "an HTTP status"));
      }
      c_.apps.push_back(std::move(a));
    }
  }

  // The Prometheus endpoint: an IPv4 address of this host (or 0.0.0.0) and a TCP port; port 0
  // or enabled: false switches it off, and writing both enabled: true and port 0 is a mistake.
  void metrics(const Val& n) {
    const Fields f(n, "metrics", {"enabled", "address", "port"});
    MetricsConfig& m = c_.metrics;
    std::optional<Val> enabled_v = f.get("enabled");
    if (enabled_v) m.enabled = read_bool(*enabled_v, "metrics.enabled");
    if (auto v = f.get("address")) {
      const std::string what = "an IPv4 address of this host like 127.0.0.1, or 0.0.0.0 for every address";
      const std::string s = read_scalar(*v, "metrics.address", what);
      const auto a = Ipv4::parse(s);
      // Multicast and the reserved block (224.0.0.0/3) cannot be bound to by a TCP listener.
      if (!a || (a->v >> 24) >= 224) fail(*v, "metrics.address", fmt::format("expected {}, got {}", what, quoted(s)));
      m.address = *a;
    }
    if (auto v = f.get("port")) {
      const std::string what = "a TCP port from 0 to 65535 (0: off)";
      const std::string s = read_scalar(*v, "metrics.port", what);
      const auto port = parse_uint(s);
      if (!port || *port > 65535) fail(*v, "metrics.port", fmt::format("expected {}, got {}", what, quoted(s)));
      m.port = static_cast<uint16_t>(*port);
      if (m.port == 0 && enabled_v && m.enabled)
        fail(*v, "metrics.port",
             "expected a TCP port from 1 to 65535 with enabled: true, got \"0\" (port 0 switches the endpoint off; "
             "write enabled: false instead)");
    }
  }

  std::string absolute_path(const Val& n, const std::string& key, std::string_view example) {
    const std::string what = fmt::format("an absolute path like {}", example);
    const std::string v = read_scalar(n, key, what);
    if (v.empty() || v[0] != '/' || v.size() > kMaxFilePath || v.find('\0') != std::string::npos)
      fail(n, key, fmt::format("expected {}, got {}", what, quoted(v)));
    return v;
  }

  void esp(const Val& n) {
    const Fields f(n, "esp", {"esn", "replay_window", "keylog", "epoch_store", "lifetime"});
    if (auto v = f.get("esn")) c_.esp.esn = read_bool(*v, "esp.esn");
    if (auto v = f.get("replay_window")) {
      const std::string what =
          fmt::format("a power of two from {} to {} (packets)", kMinReplayWindow, kMaxReplayWindow);
      const std::string s = read_scalar(*v, "esp.replay_window", what);
      const auto w = parse_uint(s);
      if (!w || *w < kMinReplayWindow || *w > kMaxReplayWindow || (*w & (*w - 1)) != 0)
        fail(*v, "esp.replay_window", fmt::format("expected {}, got {}", what, quoted(s)));
      c_.esp.replay_window = static_cast<uint32_t>(*w);
    }
    if (auto v = f.get("keylog")) c_.esp.keylog = absolute_path(*v, "esp.keylog", "/run/sdwan/edge.keylog");
    if (auto v = f.get("epoch_store"))
      c_.esp.epoch_store = absolute_path(*v, "esp.epoch_store", "/var/lib/sdwan/edge.epochs");
    if (auto v = f.get("lifetime")) lifetime(*v);
  }

  void lifetime(const Val& n) {
    const Fields f(n, "esp.lifetime", {"packets", "bytes", "seconds", "soft_percent", "drain_ms"});
    SaLifetime& lt = c_.esp.lifetime;
    constexpr uint64_t kAny = UINT64_MAX;
    struct Field {
      std::string_view name;
      std::function<void(SaLifetime&, uint64_t)> set;
    };
    const Field fields[] = {
        {"packets", [](SaLifetime& l, uint64_t v) { l.hard.packets = v; }},
        {"bytes", [](SaLifetime& l, uint64_t v) { l.hard.bytes = v; }},
        {"seconds", [](SaLifetime& l, uint64_t v) { l.hard.seconds = v; }},
        {"soft_percent", [](SaLifetime& l, uint64_t v) { l.soft_percent = static_cast<uint32_t>(v); }},
        {"drain_ms", [](SaLifetime& l, uint64_t v) { l.drain_ms = v; }},
    };
    for (const Field& fd : fields) {
      const auto v = f.get(fd.name);
      if (!v) continue;
      const std::string key = f.key(fd.name);
      const uint64_t hi = fd.name == "soft_percent" ? UINT32_MAX : kAny;
      const uint64_t x = read_uint(*v, key, 0, hi);
      // check_lifetime holds the rules; each field is checked alone against the defaults so
      // that the message points at its own line.
      SaLifetime alone;
      fd.set(alone, x);
      if (Status st = check_lifetime(alone); !st) fail(*v, key, st.error().msg);
      fd.set(lt, x);
    }
    if (Status st = check_lifetime(lt); !st) fail(n, "esp.lifetime", st.error().msg);
  }

  // probe_interval is milliseconds: a plain integer, or with "ms" after it, like the lab's
  // impairments are written.
  void paths(const Val& n) {
    const Fields f(n, "paths", {"probe_interval", "multiplier", "hold_up", "window_s", "damping"});
    PathsConfig& pc = c_.paths;
    if (auto v = f.get("probe_interval")) {
      const std::string what =
          fmt::format("a probe interval in milliseconds from {} to {} (an integer, \"ms\" optional)", kMinProbeMs,
                      kMaxProbeMs);
      const std::string s = read_scalar(*v, "paths.probe_interval", what);
      const std::string_view num = std::string_view(s).ends_with("ms") ? std::string_view(s).substr(0, s.size() - 2)
                                                                        : std::string_view(s);
      const auto ms = parse_uint(num);
      if (!ms || *ms < kMinProbeMs || *ms > kMaxProbeMs)
        fail(*v, "paths.probe_interval", fmt::format("expected {}, got {}", what, quoted(s)));
      pc.probe_interval_ms = static_cast<uint32_t>(*ms);
    }
    pc.state.interval_ns = uint64_t{pc.probe_interval_ms} * 1'000'000;
    if (auto v = f.get("multiplier"))
      pc.state.multiplier = static_cast<uint32_t>(read_uint(*v, "paths.multiplier", 1, 255, "a number of probes"));
    if (auto v = f.get("hold_up"))
      pc.state.hold_up = static_cast<uint32_t>(read_uint(*v, "paths.hold_up", 1, 255, "a number of probes"));
    // The statistics need at least two probes in their window (PathMonitor refuses less).
    const uint64_t min_window_s = (2 * uint64_t{pc.probe_interval_ms} + 999) / 1000;
    if (auto v = f.get("window_s")) {
      pc.window_s = static_cast<uint32_t>(read_uint(*v, "paths.window_s", 1, kMaxWindowS, "a number of seconds"));
      if (pc.window_s < min_window_s)
        fail(*v, "paths.window_s",
             fmt::format("expected at least two probe intervals ({} s with probe_interval {} ms), got {}",
                         min_window_s, pc.probe_interval_ms, quoted(v->Scalar())));
    } else {
      pc.window_s = static_cast<uint32_t>(std::max<uint64_t>(pc.window_s, min_window_s));
    }
    if (auto v = f.get("damping")) damping(*v);
    if (Status st = check_path_state_config(pc.state); !st) fail(n, "paths", st.error().msg);
  }

  void damping(const Val& n) {
    const Fields f(n, "paths.damping", {"flaps", "window_s", "hold_min_ms", "hold_max_ms", "quiet_s"});
    DampingConfig& d = c_.paths.state.damping;
    constexpr uint64_t kSec = 1'000'000'000, kMs = 1'000'000;
    if (auto v = f.get("flaps"))
      d.flaps = static_cast<uint32_t>(
          read_uint(*v, f.key("flaps"), 0, DampingConfig::kMaxFlaps, "a number of flaps (0: no damping)"));
    if (auto v = f.get("window_s")) d.window_ns = read_uint(*v, f.key("window_s"), 1, kMaxDampS, "a number of seconds") * kSec;
    if (auto v = f.get("hold_min_ms"))
      d.hold_min_ns = read_uint(*v, f.key("hold_min_ms"), 1, kMaxHoldMs, "a number of milliseconds") * kMs;
    std::optional<Val> max_v = f.get("hold_max_ms");
    if (max_v) d.hold_max_ns = read_uint(*max_v, f.key("hold_max_ms"), 1, kMaxHoldMs, "a number of milliseconds") * kMs;
    if (auto v = f.get("quiet_s")) d.quiet_ns = read_uint(*v, f.key("quiet_s"), 1, kMaxDampS, "a number of seconds") * kSec;
    // check_path_state_config holds the rule between the fields; the message points at the
    // maximum when it was written, else at the section (a minimum above the default maximum).
    if (Status st = check_path_state_config(c_.paths.state); !st) {
      if (max_v) fail(*max_v, f.key("hold_max_ms"), st.error().msg);
      fail(n, "paths.damping", st.error().msg);
    }
  }

  static std::optional<uint8_t> dscp_by_name(std::string_view s) {
    // RFC 2474 class selectors, RFC 2597 assured forwarding (AFxy = 8x + 2y), RFC 3246 EF,
    // RFC 5865 voice-admit, RFC 8622 lower effort.
    if (s == "be" || s == "default") return 0;
    if (s == "ef") return 46;
    if (s == "va") return 44;
    if (s == "le") return 1;
    if (s.size() == 3 && s.starts_with("cs") && s[2] >= '0' && s[2] <= '7') return static_cast<uint8_t>(8 * (s[2] - '0'));
    if (s.size() == 4 && s.starts_with("af") && s[2] >= '1' && s[2] <= '4' && s[3] >= '1' && s[3] <= '3')
      return static_cast<uint8_t>(8 * (s[2] - '0') + 2 * (s[3] - '0'));
    return std::nullopt;
  }

  PortRange port_range(const Val& n, const std::string& key) {
    const std::string what = "a port like 5004 or a range like 5000-5010, from 0 to 65535";
    const std::string s = read_scalar(n, key, what);
    const auto dash = s.find('-');
    const auto lo = parse_uint(std::string_view(s).substr(0, dash));
    const auto hi = dash == std::string::npos ? lo : parse_uint(std::string_view(s).substr(dash + 1));
    if (!lo || !hi || *lo > 65535 || *hi > 65535) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
    if (*lo > *hi) fail(n, key, fmt::format("expected a range with its low end first, got {}", quoted(s)));
    return PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi)};
  }

  MatchRule match_rule(const Val& n, const std::string& base) {
    const Fields f(n, base, {"src", "dst", "proto", "sport", "dport", "dscp"});
    MatchRule r;
    if (auto v = f.get("src")) r.src = read_network(*v, f.key("src"));
    if (auto v = f.get("dst")) r.dst = read_network(*v, f.key("dst"));
    std::string proto_s;
    if (auto v = f.get("proto")) {
      const std::string what = "udp, tcp, icmp or a protocol number from 1 to 255";
      proto_s = read_scalar(*v, f.key("proto"), what);
      const std::string l = lower(proto_s);
      if (l == "udp") r.proto = 17;
      else if (l == "tcp") r.proto = 6;
      else if (l == "icmp") r.proto = 1;
      else if (auto num = parse_uint(l); num && *num >= 1 && *num <= 255) r.proto = static_cast<uint8_t>(*num);
      else fail(*v, f.key("proto"), fmt::format("expected {}, got {}", what, quoted(proto_s)));
    }
    for (const char* k : {"sport", "dport"}) {
      auto v = f.get(k);
      if (!v) continue;
      // The workers read ports from TCP and UDP headers only; a port rule on another
      // protocol would never match.
      if (r.proto != 0 && r.proto != 6 && r.proto != 17)
        fail(*v, f.key(k), fmt::format("expected ports only with proto tcp or udp (or no proto), got proto {}",
                                       quoted(proto_s)));
      (std::string_view(k) == "sport" ? r.sport : r.dport) = port_range(*v, f.key(k));
    }
    if (auto v = f.get("dscp")) {
      const std::string what = "a DSCP value from 0 to 63 or a name like ef, af41, cs1";
      const std::string s = read_scalar(*v, f.key("dscp"), what);
      auto num = parse_uint(s);
      auto named = dscp_by_name(lower(s));
      if (num && *num <= 63) r.dscp = static_cast<uint8_t>(*num);
      else if (named) r.dscp = *named;
      else fail(*v, f.key("dscp"), fmt::format("expected {}, got {}", what, quoted(s)));
    }
    if (!r.src && !r.dst && r.proto == 0 && !r.sport && !r.dport && !r.dscp)
      fail(n, base, "expected at least one of src, dst, proto, sport, dport, dscp, got an empty rule");
    return r;
  }

  // Milliseconds as a plain integer; loss as a percentage with up to three decimals (0.5).
  double sla_ms(const Val& n, const std::string& key) {
    return static_cast<double>(read_uint(n, key, 1, kMaxSlaMs, "a number of milliseconds"));
  }

  double sla_pct(const Val& n, const std::string& key) {
    const std::string what = "a percentage from 0 to 100 with at most three decimals, like 1 or 0.5";
    const std::string s = read_scalar(n, key, what);
    const auto dot = s.find('.');
    const auto whole = parse_uint(std::string_view(s).substr(0, dot));
    std::optional<uint64_t> frac = 0;
    size_t frac_digits = 0;
    if (dot != std::string::npos) {
      frac_digits = s.size() - dot - 1;
      frac = frac_digits == 0 || frac_digits > 3 ? std::nullopt : parse_uint(std::string_view(s).substr(dot + 1));
    }
    double scale = 1;
    for (size_t i = 0; i < frac_digits; ++i) scale *= 10;
    const double v = whole && frac ? static_cast<double>(*whole) + static_cast<double>(*frac) / scale : -1;
    if (!whole || !frac || v > 100) fail(n, key, fmt::format("expected {}, got {}", what, quoted(s)));
    return v;
  }

  void classes(const Val& n) {
    const auto items = read_list(n, "classes", 1, dp::kMaxClasses, "classes");
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string base = index_key("classes", i);
      const Fields f(items[i], base,
                     {"name", "default", "match", "sla", "mode", "adaptive", "max_overhead_pct", "reorder_max_ms",
                      "metered", "fallback"});
      ClassConfig c;
      const Val name = f.need("name");
      c.name = read_name(name, f.key("name"), kMaxName);
      for (size_t j = 0; j < c_.classes.size(); ++j)
        if (c_.classes[j].name == c.name)
          fail(name, f.key("name"),
               fmt::format("expected a unique class name, got {} (classes[{}] has it)", quoted(c.name), j));
      if (auto v = f.get("default")) {
        c.is_default = read_bool(*v, f.key("default"));
        if (c.is_default)
          for (size_t j = 0; j < c_.classes.size(); ++j)
            if (c_.classes[j].is_default)
              fail(*v, f.key("default"),
                   fmt::format("expected one default class, got a second one (classes[{}] \"{}\" is the default)", j,
                               c_.classes[j].name));
      }
      if (c.name == "default" && !c.is_default)
        fail(name, f.key("name"), "expected default: true on the class named \"default\" (the name is the default class's)");
      if (auto v = f.get("match")) {
        if (c.is_default)
          fail(*v, f.key("match"),
               "expected no match rules on the default class (it takes every packet no other class matches)");
        const auto rules = read_list(*v, f.key("match"), 1, kMaxRulesPerClass, "match rules");
        for (size_t k = 0; k < rules.size(); ++k) c.match.push_back(match_rule(rules[k], index_key(f.key("match"), k)));
      } else if (!c.is_default) {
        fail(items[i], f.key("match"), "required key is missing: a class needs match rules unless it is the default (default: true)");
      }
      if (auto v = f.get("sla")) {
        const Fields s(*v, f.key("sla"), {"latency_ms", "jitter_ms", "loss_pct"});
        if (auto x = s.get("latency_ms")) c.sla.latency_ms = sla_ms(*x, s.key("latency_ms"));
        if (auto x = s.get("jitter_ms")) c.sla.jitter_ms = sla_ms(*x, s.key("jitter_ms"));
        if (auto x = s.get("loss_pct")) c.sla.loss_pct = sla_pct(*x, s.key("loss_pct"));
      }
      std::string mode_s = "best";
      if (auto v = f.get("mode")) {
        c.mode = read_choice<dp::ClassMode>(*v, f.key("mode"),
                                            {{"best", dp::ClassMode::kBest},
                                             {"balance", dp::ClassMode::kBalance},
                                             {"spray", dp::ClassMode::kSpray},
                                             {"duplicate", dp::ClassMode::kDuplicate}});
        mode_s = v->Scalar();
      }
      auto only_with = [&](const char* k, dp::ClassMode m) -> std::optional<Val> {
        auto v = f.get(k);
        if (v && c.mode != m)
          fail(*v, f.key(k), fmt::format("expected {} only with mode {}, got mode {}", k, mode_name(m), mode_s));
        return v;
      };
      if (auto v = only_with("adaptive", dp::ClassMode::kDuplicate)) c.adaptive = read_bool(*v, f.key("adaptive"));
      if (auto v = only_with("max_overhead_pct", dp::ClassMode::kDuplicate))
        c.max_overhead_pct = static_cast<uint32_t>(read_uint(*v, f.key("max_overhead_pct"), 1, 100, "a percentage"));
      if (auto v = only_with("reorder_max_ms", dp::ClassMode::kSpray))
        c.reorder_max_ms =
            static_cast<uint32_t>(read_uint(*v, f.key("reorder_max_ms"), 1, kMaxReorderMs, "a number of milliseconds"));
      if (auto v = f.get("metered"))
        c.metered = read_choice<MeteredUse>(
            *v, f.key("metered"),
            {{"avoid", MeteredUse::kAvoid}, {"allow", MeteredUse::kAllow}, {"never", MeteredUse::kNever}});
      if (auto v = f.get("fallback"))
        c.fallback =
            read_choice<Fallback>(*v, f.key("fallback"), {{"least_bad", Fallback::kLeastBad}, {"drop", Fallback::kDrop}});
      c_.classes.push_back(std::move(c));
    }
  }

  // Every packet needs a class: without a default in the file, one is added last.
  void finish_classes(const std::optional<Val>& n) {
    for (const auto& c : c_.classes)
      if (c.is_default) return;
    if (n && c_.classes.size() >= dp::kMaxClasses)
      fail(*n, "classes",
           fmt::format("expected at most {} classes without a default class (the implicit default class takes the "
                       "last id), got {}",
                       dp::kMaxClasses - 1, c_.classes.size()));
    ClassConfig d;
    d.name = "default";
    d.is_default = true;
    c_.classes.push_back(std::move(d));
  }

  void policy(const Val& n) {
    const Fields f(n, "policy", {"switch_margin_pct", "switch_margin_ms", "switch_hold_ms", "failback_stable_ms"});
    PolicyConfig& p = c_.policy;
    const auto pct = f.get("switch_margin_pct");
    if (pct) p.switch_margin_pct = static_cast<uint32_t>(read_uint(*pct, f.key("switch_margin_pct"), 0, 100, "a percentage"));
    if (auto v = f.get("switch_margin_ms")) {
      if (pct) fail(*v, f.key("switch_margin_ms"), "expected switch_margin_pct or switch_margin_ms, not both");
      p.switch_margin_ms = static_cast<uint32_t>(
          read_uint(*v, f.key("switch_margin_ms"), 0, kMaxSlaMs, "a number of milliseconds"));
    }
    if (auto v = f.get("switch_hold_ms"))
      p.switch_hold_ms =
          static_cast<uint32_t>(read_uint(*v, f.key("switch_hold_ms"), 0, kMaxSwitchHoldMs, "a number of milliseconds"));
    if (auto v = f.get("failback_stable_ms"))
      p.failback_stable_ms =
          static_cast<uint32_t>(read_uint(*v, f.key("failback_stable_ms"), 0, kMaxHoldMs, "a number of milliseconds"));
  }

  void events(const Val& n) {
    const Fields f(n, "events",
                   {"log", "log_fsync", "ring", "hooks", "hook_timeout_ms", "hook_kill_grace_ms", "hook_max_concurrent",
                    "hook_queue", "hook_output_max"});
    EventsConfig& e = c_.events;
    if (auto v = f.get("log")) e.log = absolute_path(*v, "events.log", "/var/log/sdwan/edge.events.jsonl");
    if (auto v = f.get("log_fsync")) e.log_fsync = read_bool(*v, "events.log_fsync");
    if (auto v = f.get("ring"))
      e.ring = static_cast<uint32_t>(read_uint(*v, "events.ring", kMinEventRing, kMaxEventRing, "a number of events"));
    if (auto v = f.get("hook_timeout_ms"))
      e.hook_timeout_ms = static_cast<uint32_t>(
          read_uint(*v, "events.hook_timeout_ms", kMinHookTimeoutMs, kMaxHookTimeoutMs, "a number of milliseconds"));
    if (auto v = f.get("hook_kill_grace_ms"))
      e.hook_kill_grace_ms = static_cast<uint32_t>(
          read_uint(*v, "events.hook_kill_grace_ms", 0, kMaxHookTimeoutMs, "a number of milliseconds"));
    if (auto v = f.get("hook_max_concurrent"))
      e.hook_max_concurrent = static_cast<uint32_t>(
          read_uint(*v, "events.hook_max_concurrent", 1, kMaxHookConcurrent, "a number of hooks"));
    if (auto v = f.get("hook_queue"))
      e.hook_queue = static_cast<uint32_t>(read_uint(*v, "events.hook_queue", 1, kMaxHookQueue, "a number of runs"));
    if (auto v = f.get("hook_output_max"))
      e.hook_output_max =
          static_cast<uint32_t>(read_uint(*v, "events.hook_output_max", 0, kMaxHookOutput, "a number of bytes"));
    if (auto v = f.get("hooks")) hooks(*v);
  }

  // events.hooks: event type (or "*") -> a list of hooks, each an absolute path or a list of
  // an absolute path and its arguments. The keys are event types, not fixed names, so this
  // mapping is walked by hand rather than with Fields.
  void hooks(const Val& n) {
    const std::string base = "events.hooks";
    std::vector<std::string> types{"\"*\""};
    for (auto t : kEventTypes) types.emplace_back(t);
    if (n.IsNull()) return;
    if (!n.IsMap()) fail(n, base, fmt::format("expected a mapping of event type to hooks, got {}", describe(n)));
    std::map<std::string, int> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const Node k = it->first;
      if (!k.IsScalar()) fail(k, base, fmt::format("expected event types as keys, got {} as a key", describe(k)));
      const std::string type = k.Scalar();
      const std::string key = base + "." + type;
      if (type != "*" && !known_event_type(type))
        fail(k, key, fmt::format("unknown event type (expected one of: {})", join(types, ", ")));
      if (auto s = seen.find(type); s != seen.end())
        fail(k, key, fmt::format("duplicate key (first on line {})", s->second + 1));
      seen[type] = line_of(k);
      const Node v = it->second;
      const Val val{v, v.IsNull() ? line_of(k) : line_of(v)};
      const auto items = read_list(val, key, 1, kMaxHooksPerType, "hooks (an absolute path, or a list of one and its arguments)");
      auto& out = c_.events.hooks[type];
      for (size_t i = 0; i < items.size(); ++i) {
        const std::string ikey = index_key(key, i);
        std::vector<std::string> argv;
        if (items[i].IsSequence()) {
          const auto parts = read_list(items[i], ikey, 1, kMaxHookArgs, "words: the hook's path, then its arguments");
          argv.push_back(absolute_path(parts[0], index_key(ikey, 0), "/usr/local/lib/sdwan/hooks/alert"));
          for (size_t j = 1; j < parts.size(); ++j) {
            std::string arg = read_scalar(parts[j], index_key(ikey, j), "an argument (a string)");
            if (arg.find('\0') != std::string::npos)
              fail(parts[j], index_key(ikey, j), "expected an argument without NUL bytes");
            argv.push_back(std::move(arg));
          }
        } else {
          argv.push_back(absolute_path(items[i], ikey, "/usr/local/lib/sdwan/hooks/alert"));
        }
        out.push_back(std::move(argv));
      }
    }
  }

  struct EndpointVal {
    Val node;
    std::optional<Val> link;
    std::string key;
  };

  std::string_view text_;
  Config c_;
  std::vector<EndpointVal> endpoint_vals_;  // every endpoint in config order, for check_links
  std::vector<std::pair<std::string, std::string>> devices_;  // device identity, key that took it
};

std::string located(const std::string& file, int line0, std::string_view key, std::string_view msg) {
  const int line = std::max(line0, 0) + 1;
  if (key.empty()) return fmt::format("{}:{}: {}", file, line, msg);
  return fmt::format("{}:{}: {}: {}", file, line, key, msg);
}

}  // namespace

uint16_t path_link(const Config& c, size_t uplink, size_t peer, size_t endpoint) {
  const EndpointConfig& e = c.peers[peer].endpoints[endpoint];
  if (e.link) return *e.link;
  const Endpoint local{c.uplinks[uplink].address.addr, c.overlay_port};
  const Endpoint remote{e.address, e.port ? e.port : c.overlay_port};
  return default_link(local, remote);
}

std::string_view app_kind_name(AppCheckConfig::Kind k) { return k == AppCheckConfig::Kind::kHttp ? "http" : "tcp"; }

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kEdge: return "edge";
    case Role::kHub: return "hub";
  }
  return "edge";
}

std::string_view mode_name(dp::ClassMode m) {
  switch (m) {
    case dp::ClassMode::kBest: return "best";
    case dp::ClassMode::kBalance: return "balance";
    case dp::ClassMode::kSpray: return "spray";
    case dp::ClassMode::kDuplicate: return "duplicate";
  }
  return "best";
}

std::string_view metered_name(MeteredUse m) {
  switch (m) {
    case MeteredUse::kAvoid: return "avoid";
    case MeteredUse::kAllow: return "allow";
    case MeteredUse::kNever: return "never";
  }
  return "avoid";
}

std::string_view fallback_name(Fallback f) { return f == Fallback::kDrop ? "drop" : "least_bad"; }

std::string_view cost_name(CostTier c) {
  switch (c) {
    case CostTier::kNormal: return "normal";
    case CostTier::kMetered: return "metered";
  }
  return "normal";
}

Result<Config> parse_config(std::string_view text, const std::string& filename) {
  try {
    const std::string owned(text);
    const std::vector<Node> docs = YAML::LoadAll(owned);
    if (docs.size() > 1)
      return err(located(filename, line_of(docs[1]), "", "expected one YAML document, got a second one"));
    Config c = Walker{owned}.walk(docs.empty() ? Val{} : located_val(docs[0]));
    c.file = filename;
    return c;
  } catch (const Reject& r) {
    return err(located(filename, r.line, r.key, r.msg));
  } catch (const YAML::Exception& e) {
    // e.what() repeats the position in yaml-cpp's own words; the contract has ours.
    return err(located(filename, e.mark.is_null() ? 0 : e.mark.line, "", "invalid YAML: " + e.msg));
  }
}

Result<Config> load_config(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return err(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  // A directory opens fine and fails here with EISDIR.
  const int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno != 0) return err(fmt::format("{}: cannot read: {}", path, std::strerror(read_errno)));
  return parse_config(text, path);
}

}  // namespace sdwan::cp
