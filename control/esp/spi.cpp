#include "control/esp/spi.hpp"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>

namespace sdwan::cp {

Result<uint32_t> make_spi(uint16_t link, uint32_t epoch, const Endpoint& src, const Endpoint& dst) {
  if (link >= kSpiLinks) return err(fmt::format("link number {} is out of range 0..{}", link, kSpiLinks - 1));
  if (src == dst)
    return err(fmt::format("link {}: both ends are {}:{}; a path needs two different endpoints", link, src.ip.str(),
                           src.port));
  const uint32_t dir = src < dst ? 0 : 1;
  return kSpiTag << 24 | uint32_t{link} << 4 | (epoch % kSpiEpochSlots) << 1 | dir;
}

std::optional<SpiParts> parse_spi(uint32_t spi) {
  if (spi >> 24 != kSpiTag || (spi >> 16 & 0xff) != 0) return std::nullopt;
  return SpiParts{static_cast<uint16_t>(spi >> 4 & 0xfff), static_cast<uint8_t>(spi >> 1 & 7), (spi & 1) != 0};
}

uint16_t default_link(const Endpoint& a, const Endpoint& b) noexcept {
  static constexpr char kLabel[] = "sdwan-link v1";
  std::array<uint8_t, sizeof kLabel - 1 + 12> msg{};
  std::copy(kLabel, kLabel + sizeof kLabel - 1, msg.begin());
  size_t at = sizeof kLabel - 1;
  for (const Endpoint& e : {std::min(a, b), std::max(a, b)}) {
    const uint64_t o = e.order();
    for (int shift = 40; shift >= 0; shift -= 8) msg[at++] = static_cast<uint8_t>(o >> shift);
  }
  uint8_t h[SHA256_DIGEST_LENGTH];
  SHA256(msg.data(), msg.size(), h);
  return static_cast<uint16_t>(h[0] << 4 | h[1] >> 4);
}

Result<PathSaNames> path_sa_names(uint16_t link, uint32_t epoch, const Endpoint& local, const Endpoint& remote) {
  auto out = make_spi(link, epoch, local, remote);
  if (!out) return out.error();
  auto in = make_spi(link, epoch, remote, local);
  if (!in) return in.error();
  return PathSaNames{SaName{local, remote, *out, *in, epoch}, SaName{remote, local, *in, *out, epoch}};
}

}  // namespace sdwan::cp
