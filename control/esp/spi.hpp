// SPIs of the static-key SAs: computed, not negotiated, so both appliances of a path agree
// from their configs; laid out so a receiver finds an inbound SA by array index
// (docs/keys.md "SPI layout"). Header-only arithmetic; any thread.
//
//   31        24 23        16 15                  4 3         1   0
//  +------------+------------+---------------------+-----------+-----+
//  | tag 0x5D   | 0 reserved |  link (0..4095)     | epoch % 8 | dir |
//  +------------+------------+---------------------+-----------+-----+
//
// slot = spi & 0xffff indexes the receiver's inbound table (65536 entries); the worker then
// checks that the entry's SPI equals the packet's, so a wrong tag or reserved bits is an
// unknown SPI. dir is 0 for the SA from the lower endpoint to the higher one (Endpoint order),
// 1 the other way: it does not depend on which appliance is edge or hub.
#pragma once

#include <cstdint>
#include <optional>

#include "control/esp/derive.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

inline constexpr uint32_t kSpiTag = 0x5d;              ///< marks a static-key SA; never 0, so SPI > 255
inline constexpr uint32_t kSpiLinks = 4096;            ///< link numbers 0..4095 (the config's path limit)
inline constexpr uint32_t kSpiEpochSlots = 8;          ///< epochs of one link and direction live at once, at most
inline constexpr uint32_t kSpiSlots = 1u << 16;        ///< size of the inbound table
inline constexpr uint32_t kSpiSlotMask = kSpiSlots - 1;

/// The fields of one of our SPIs.
struct SpiParts {
  uint16_t link = 0;
  uint8_t epoch_low = 0;        ///< epoch % 8
  bool from_higher = false;     ///< dir bit: sender is the higher endpoint
  bool operator==(const SpiParts&) const = default;
};

/// The SPI of the SA from src to dst on link at epoch. Fails when link >= 4096 or src == dst.
Result<uint32_t> make_spi(uint16_t link, uint32_t epoch, const Endpoint& src, const Endpoint& dst);

/// The fields of spi, or nullopt if it is not laid out as ours (tag, reserved bits).
std::optional<SpiParts> parse_spi(uint32_t spi);

/// Index of spi in the inbound table.
constexpr uint32_t spi_slot(uint32_t spi) { return spi & kSpiSlotMask; }

/// The link number both appliances compute for the path between two outer endpoints, when
/// the config gives none (docs/keys.md "Where the link number comes from"): the first 12 bits
/// of SHA-256("sdwan-link v1" || lower endpoint || higher endpoint), each endpoint as IPv4
/// address (4 bytes) and UDP port (2 bytes), big-endian. Symmetric in its arguments.
uint16_t default_link(const Endpoint& a, const Endpoint& b) noexcept;

/// Both SAs of a path at one epoch, named from this appliance's side (local, remote).
struct PathSaNames {
  SaName outbound;  ///< local -> remote: its SPI is the peer's inbound SPI
  SaName inbound;   ///< remote -> local: its SPI indexes our inbound table
};

/// Names both SAs of link between local and remote at epoch. The peer, calling it with
/// local and remote swapped, gets the same two SaNames the other way round.
Result<PathSaNames> path_sa_names(uint16_t link, uint32_t epoch, const Endpoint& local, const Endpoint& remote);

}  // namespace sdwan::cp
