// Per-SA keys and salts from the master key with HKDF-SHA256 (RFC 5869), computed the same
// way on both appliances of a path (docs/keys.md "Derivation"). Control thread only.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "control/esp/keys.hpp"
#include "dataplane/api/result.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::cp {

/// One end of a path as it appears in outer headers: IPv4 address and UDP port.
struct Endpoint {
  Ipv4 ip;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
  /// The order both appliances agree on: (address, port) as one 48-bit number.
  auto operator<=>(const Endpoint& o) const noexcept { return order() <=> o.order(); }
  uint64_t order() const noexcept { return uint64_t{ip.v} << 16 | port; }
};

/// One SA (one direction of one path at one epoch), named identically by both appliances.
struct SaName {
  Endpoint src;              ///< the sender's outer address and port
  Endpoint dst;              ///< the receiver's
  uint32_t spi = 0;          ///< carried on the wire: the receiver's inbound SPI
  uint32_t reverse_spi = 0;  ///< the SA of the same path and epoch going the other way
  uint32_t epoch = 0;
  bool operator==(const SaName&) const = default;
};

/// AES-256-GCM key and the 4-byte salt of RFC 4106 (the nonce is salt || 8-byte IV).
/// Wiped on destruction; copies are wiped too. No operator<<: keys never reach a log.
struct SaKeys {
  std::array<uint8_t, 32> key{};
  std::array<uint8_t, 4> salt{};
  SaKeys() = default;
  SaKeys(const SaKeys&) = default;
  SaKeys& operator=(const SaKeys&) = default;
  ~SaKeys();
};

inline constexpr size_t kSaInfoBytes = 37;

/// HKDF-SHA256 (extract then expand) through OpenSSL's EVP_KDF "HKDF". An empty salt means
/// HashLen zero bytes (RFC 5869 2.2). Fails if OpenSSL does (message names the step).
Result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                         std::span<const uint8_t> info, size_t length);

/// The HKDF info string for sa (docs/keys.md has the byte table): "sdwan-esp v1", the two
/// endpoints lower first, the SPI of lower->higher then of higher->lower, the epoch, and the
/// direction of this SA (0 lower->higher, 1 higher->lower). Fails if src == dst.
Result<std::array<uint8_t, kSaInfoBytes>> sa_info(const SaName& sa);

/// key || salt = HKDF-SHA256(salt = none, IKM = master key, info = sa_info(sa), L = 36).
/// Both appliances get the same bytes for the same SA: the sender's outbound equals the
/// receiver's inbound.
Result<SaKeys> derive_sa(const MasterKey& mk, const SaName& sa);

}  // namespace sdwan::cp
