// Stage switches for the cost table of bench/RESULTS.md ("Where the cycles go"): built only
// with `meson setup -Dbench_ablation=true`, set only by bench_pipeline --ablate BITS. Each bit
// makes the worker skip a stage and send what it has as it is, so the difference between two
// runs is that stage's cost per packet. Such a build sends plaintext: sdwand refuses to start
// in it. In every other build ablated() is constant false and the switches compile away.
#pragma once

#include <cstdint>

namespace sdwan::dp {

/// What bench_pipeline --ablate takes (bits, combined with |).
enum Ablation : uint32_t {
  kAblateCipher = 1u << 0,       ///< no AES-GCM call: every seal and open succeeds, data untouched
  kAblateEsp = 1u << 1,          ///< LAN->WAN: no ESP at all, the queued packets go out as they are
  kAblateLanForward = 1u << 2,   ///< lan_fast sends the packet on its path's port untouched
  kAblateLanFlow = 1u << 3,      ///< rx_lan sends each packet on port 1 once parsed
  kAblateLanParse = 1u << 4,     ///< rx_lan sends each packet on port 1 as it came
  kAblateCounters = 1u << 5,     ///< lan_fast counts nothing
  kAblateTouch = 1u << 6,        ///< lan_fast leaves the flow entry's counters and time alone
  kAblateWanRx = 1u << 7,        ///< rx_wan sends each frame to the LAN port as it came
  kAblateWanFront = 1u << 8,     ///< rx_wan sends each ESP frame to the LAN port once classified
  kAblateWanDecrypt = 1u << 9,   ///< wan_esp sends each packet to the LAN port once decrypted
  kAblateWanParse = 1u << 10,    ///< wan_esp sends each packet to the LAN port once wan_inner_hop judged it
                                 ///< (deliver_burst: once parsed)
  kAblateWanOverlay = 1u << 11,  ///< wan_esp sends each packet to the LAN port once its overlay header is read
                                 ///< (deliver_burst: unparsed)
};

#if defined(SDWAN_BENCH_ABLATION)
inline constexpr bool kAblationBuild = true;
/// The bits in force (bench_pipeline only; one writer before the workers start).
inline uint32_t g_ablation = 0;
inline bool ablated(uint32_t bits) noexcept { return (g_ablation & bits) != 0; }
#else
inline constexpr bool kAblationBuild = false;
constexpr bool ablated(uint32_t) noexcept { return false; }
#endif

}  // namespace sdwan::dp
