// Plain value types shared by every layer: addresses, prefixes, MACs.
// Header-only, no DPDK: unit tests and the control thread use them freely.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace sdwan {

/// An Ethernet address. Value type, any thread.
struct MacAddr {
  std::array<uint8_t, 6> b{};
  bool operator==(const MacAddr&) const = default;
  /// True for 00:00:00:00:00:00 (an unresolved neighbour).
  bool is_zero() const noexcept { return (b[0] | b[1] | b[2] | b[3] | b[4] | b[5]) == 0; }
  /// "aa:bb:cc:dd:ee:ff". Control side only (allocates).
  std::string str() const;
  static constexpr MacAddr broadcast() { return MacAddr{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
};

/// An IPv4 address in host byte order. Value type, any thread.
struct Ipv4 {
  uint32_t v = 0;
  bool operator==(const Ipv4&) const = default;
  auto operator<=>(const Ipv4&) const = default;
  /// Dotted quad. Control side only (allocates).
  std::string str() const;
  /// Parses a dotted quad; nullopt on anything else. Control side only.
  static std::optional<Ipv4> parse(std::string_view s);
};

/// An IPv4 prefix (address masked to its length on construction through parse()).
struct Prefix4 {
  Ipv4 addr;
  uint8_t len = 0;
  bool operator==(const Prefix4&) const = default;
  /// True if a lies inside this prefix.
  bool contains(Ipv4 a) const noexcept {
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    return (a.v & mask) == (addr.v & mask);
  }
  /// "10.0.0.0/8". Control side only.
  std::string str() const;
  /// Parses "a.b.c.d/len" (len 0..32); host bits must be zero unless allow_host_bits
  /// (an interface address such as 192.168.1.1/24). nullopt on anything else.
  static std::optional<Prefix4> parse(std::string_view s, bool allow_host_bits = false);
};

}  // namespace sdwan
