#include <cctype>

#include "drivers/api/ports.hpp"

namespace sdwan::drv {
namespace {

constexpr std::string_view kForms =
    "pci:DOMAIN:BUS:DEV.FN, af_packet:IFACE, af_xdp:IFACE, tap, tap:NAME, ring:NAME or null";

bool valid_ifname(std::string_view s) {
  // Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never allowed.
  if (s.empty() || s.size() > 15) return false;
  for (char c : s)
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c))) return false;
  return true;
}

bool valid_pci(std::string_view s) {
  // DDDD:BB:DD.F, hexadecimal, as lspci -D prints it.
  if (s.size() != 12) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 4 || i == 7) {
      if (c != ':') return false;
    } else if (i == 10) {
      if (c != '.') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return s[11] >= '0' && s[11] <= '7';
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 24) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

}  // namespace

Result<PortSpec> PortSpec::parse(std::string_view s) {
  const auto colon = s.find(':');
  const std::string_view kind = s.substr(0, colon);
  const std::string_view arg = colon == std::string_view::npos ? std::string_view{} : s.substr(colon + 1);
  const bool has_arg = colon != std::string_view::npos;
  auto bad = [&](std::string_view why) {
    return err("port spec \"" + std::string(s) + "\": " + std::string(why) + " (expected " + std::string(kForms) + ")");
  };
  if (kind == "pci") {
    if (!valid_pci(arg)) return bad("not a PCI address like 0000:03:00.0");
    return PortSpec{PortKind::kPci, std::string(arg)};
  }
  if (kind == "af_packet" || kind == "af_xdp") {
    if (!valid_ifname(arg)) return bad("not a Linux interface name (1-15 characters, no '/', ':' or spaces)");
    return PortSpec{kind == "af_packet" ? PortKind::kAfPacket : PortKind::kAfXdp, std::string(arg)};
  }
  if (kind == "tap") {
    if (has_arg && !valid_ifname(arg)) return bad("not a Linux interface name (1-15 characters, no '/', ':' or spaces)");
    return PortSpec{PortKind::kTap, std::string(arg)};
  }
  if (kind == "ring") {
    if (!valid_name(arg)) return bad("ring name must be 1-24 letters, digits, '_' or '-'");
    return PortSpec{PortKind::kRing, std::string(arg)};
  }
  if (kind == "null") {
    if (has_arg) return bad("null takes no argument");
    return PortSpec{PortKind::kNull, {}};
  }
  return bad("unknown port kind \"" + std::string(kind) + "\"");
}

std::string PortSpec::str() const {
  switch (kind) {
    case PortKind::kPci: return "pci:" + arg;
    case PortKind::kAfPacket: return "af_packet:" + arg;
    case PortKind::kAfXdp: return "af_xdp:" + arg;
    case PortKind::kTap: return arg.empty() ? "tap" : "tap:" + arg;
    case PortKind::kRing: return "ring:" + arg;
    case PortKind::kNull: return "null";
  }
  return "null";
}

}  // namespace sdwan::drv
