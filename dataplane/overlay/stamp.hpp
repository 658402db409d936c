// Path probes: STAMP test packets (RFC 8762, unauthenticated mode) carried as overlay type
// probe inside the path's own ESP SA, so a probe takes the data's route and cannot be forged
// (docs/wire-format.md "Probes"). The worker that sends a probe stamps it, the peer's worker
// reflects it at once, and the worker that receives the reflection hands the four timestamps
// to control (ProbeReport). Header-only; any thread.
//
// After the overlay header (type 1, flags bit 0: 0 = test packet, 1 = reflected):
//   test packet       StampTest (44 bytes)      + ProbeExt (32 bytes, zero)
//   reflected packet  StampReflected (44 bytes) + ProbeExt (32 bytes, the reflector's counters)
// Timestamps are PTPv2-format (Z = 1): 32-bit seconds and 32-bit nanoseconds of the stamping
// appliance's monotonic TSC clock, not synchronised (S = 0): only differences taken on one
// appliance mean anything, which is all an RTT needs.
#pragma once

#include <rte_byteorder.h>

#include <cstdint>
#include <cstring>

namespace sdwan::dp {

/// Overlay flags bit of a probe: set on the reflected one.
constexpr uint8_t kProbeReflected = 0x01;

/// A PTPv2-format timestamp, network byte order.
struct __attribute__((packed)) StampTs {
  uint32_t sec;
  uint32_t nsec;
};

/// RFC 8762 4.2.1 session-sender test packet, unauthenticated. Network byte order.
struct __attribute__((packed)) StampTest {
  uint32_t seq;           ///< the sender's probe sequence number on this path, from 0
  StampTs ts;             ///< transmit timestamp
  uint16_t err_est;       ///< error estimate (RFC 4656 4.1.2): S = 0, Z = 1, scale, multiplier
  uint8_t mbz[30];
};
static_assert(sizeof(StampTest) == 44);

/// RFC 8762 4.3.1 session-reflector test packet, unauthenticated. Network byte order.
struct __attribute__((packed)) StampReflected {
  uint32_t seq;           ///< the reflector's sequence number (stateless: the sender's)
  StampTs ts;             ///< the reflector's transmit timestamp
  uint16_t err_est;
  uint16_t mbz1;
  StampTs rx;             ///< the reflector's receive timestamp
  uint32_t s_seq;         ///< the sender's fields, echoed
  StampTs s_ts;
  uint16_t s_err_est;
  uint16_t mbz2;
  uint8_t s_ttl;          ///< the sender's TTL: 255, as a probe crosses no router inside the tunnel
  uint8_t mbz3[3];
};
static_assert(sizeof(StampReflected) == 44);

/// Our fields after the STAMP packet: the reflector's receive counters for the path, so the
/// sender learns forward loss (probes, and data from ESP sequence gaps).
struct __attribute__((packed)) ProbeExt {
  uint64_t probes_rx;     ///< test packets the reflector received on this path (cumulative)
  uint64_t esp_rx;        ///< ESP packets it verified on the SA this probe came on (cumulative)
  uint64_t esp_top;       ///< the highest ESP sequence number it accepted on that SA
  uint32_t spi;           ///< that SA: the two counts above restart with a new one
  uint32_t reserved;
};
static_assert(sizeof(ProbeExt) == 32);

/// Bytes after the overlay header, both ways.
constexpr uint32_t kProbeLen = sizeof(StampTest) + sizeof(ProbeExt);
static_assert(sizeof(StampReflected) == sizeof(StampTest));

/// Error estimate: not synchronised (S = 0), PTP format (Z = 1), about 1 us (multiplier 1,
/// scale 12: 1 x 2^12 x 2^-32 s).
constexpr uint16_t kStampErrEst = 0x4000 | (12 << 8) | 1;

/// Monotonic ns as a PTPv2 timestamp.
inline StampTs stamp_ts(uint64_t ns) noexcept {
  return StampTs{rte_cpu_to_be_32(static_cast<uint32_t>(ns / 1000000000u)),
                 rte_cpu_to_be_32(static_cast<uint32_t>(ns % 1000000000u))};
}
/// Back to ns (the seconds wrap after 136 years of uptime).
inline uint64_t stamp_ns(StampTs t) noexcept {
  return uint64_t{rte_be_to_cpu_32(t.sec)} * 1000000000u + rte_be_to_cpu_32(t.nsec);
}

}  // namespace sdwan::dp
