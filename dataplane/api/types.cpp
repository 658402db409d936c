#include "dataplane/api/types.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>

namespace sdwan {

std::string MacAddr::str() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return buf;
}

std::string Ipv4::str() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  return buf;
}

std::optional<Ipv4> Ipv4::parse(std::string_view s) {
  // inet_pton is strict (no leading zeros, no short forms), which is what an operator expects.
  if (s.size() > 15) return std::nullopt;
  char buf[16];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = 0;
  in_addr a{};
  if (inet_pton(AF_INET, buf, &a) != 1) return std::nullopt;
  return Ipv4{ntohl(a.s_addr)};
}

std::string Prefix4::str() const { return addr.str() + "/" + std::to_string(len); }

std::optional<Prefix4> Prefix4::parse(std::string_view s, bool allow_host_bits) {
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto a = Ipv4::parse(s.substr(0, slash));
  if (!a) return std::nullopt;
  const auto ls = s.substr(slash + 1);
  unsigned len = 0;
  auto [p, ec] = std::from_chars(ls.data(), ls.data() + ls.size(), len);
  if (ec != std::errc{} || p != ls.data() + ls.size() || ls.empty() || len > 32) return std::nullopt;
  const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  if (!allow_host_bits && (a->v & ~mask) != 0) return std::nullopt;
  return Prefix4{*a, static_cast<uint8_t>(len)};
}

}  // namespace sdwan
