// SA lifetimes and rekeying for the static-key SAs: which SAs each path has, when the next
// epoch comes in and when an SA is retired for good. Pure logic with injected time: the
// daemon feeds it the SA counters and applies the actions it returns to the next snapshot
// (docs/keys.md "Lifetimes and rekeying"). Control thread only.
//
// Protocol, without any message between the appliances:
//  - each side keeps inbound SAs installed for its current epoch and the kAhead next ones,
//    so the peer may move its outbound forward at any time (make-before-break);
//  - a side moves its outbound to the next epoch at a soft limit (its outbound's, or the
//    inbound one's of the current epoch), and follows at once when the first verified packet
//    arrives on a newer inbound epoch;
//  - an old inbound SA stays for drain_ms after the peer's first packet on a newer one, or
//    until its own hard limit; an SA at a hard limit or at sequence exhaustion is never used
//    again, and a path whose outbound cannot move on is left without one (unusable: no send).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "control/esp/derive.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

enum class SaDir : uint8_t { kInbound, kOutbound };

/// Limits of one SA; each dimension counts on its own.
struct SaLimits {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t seconds = 0;  ///< since the SA's first use (install for outbound, first packet for inbound)
  bool operator==(const SaLimits&) const = default;
};

/// Lifetime policy for every SA of the table.
struct SaLifetime {
  SaLimits hard{uint64_t{1} << 31, uint64_t{1} << 40, 8 * 3600};  ///< 2^31 packets, 1 TiB, 8 h
  uint32_t soft_percent = 90;  ///< soft limit of each dimension, in percent of the hard one (1..99)
  uint64_t drain_ms = 10000;   ///< an old inbound SA's life after the peer's first packet on a newer one
  bool operator==(const SaLifetime&) const = default;
};

/// Checks a policy: hard limits above 0, seconds at most ten years, soft_percent 1..99,
/// drain_ms at most one hour. The message names the field.
Status check_lifetime(const SaLifetime& lt);

/// A path as the SA table needs it.
struct SaPathSpec {
  uint16_t path = 0;         ///< the daemon's path id; actions and rows carry it back
  uint16_t link = 0;         ///< SPI link number, the same on both appliances (spi.hpp)
  Endpoint local, remote;
  bool esn = true;           ///< 64-bit extended sequence numbers (else 32-bit)
  uint32_t start_epoch = 0;  ///< EpochStore::next_epoch: never an epoch this side has sent under
};

/// Cumulative counters of one installed SA, summed over the workers.
struct SaUsage {
  SaDir dir = SaDir::kInbound;
  uint32_t spi = 0;
  uint64_t packets = 0;  ///< inbound: packets whose ICV verified
  uint64_t bytes = 0;
  uint64_t seq = 0;      ///< outbound: highest sequence number handed out (full 64 bits)
};

/// One change the daemon applies to the next snapshot, in list order, publishing once per call.
struct SaAction {
  enum class Kind : uint8_t {
    kInstallInbound,   ///< add sa to the inbound table at spi_slot(sa.spi)
    kInstallOutbound,  ///< sa becomes the path's outbound SA; commit its epoch first (EpochStore)
    kRetireInbound,    ///< remove sa from the inbound table
    kRetireOutbound,   ///< the path's outbound SA is gone; without a following install, the path is unusable
  };
  Kind kind = Kind::kInstallInbound;
  uint16_t path = 0;
  SaName sa;             ///< derive_sa(master, sa) gives its keys; the key log takes (sa, keys)
  bool esn = true;
  SaLimits hard;         ///< installs: limits the worker enforces between ticks (outbound packets
                         ///< already capped by the sequence space: 2^32-1, or 2^64-1 with ESN)
  bool operator==(const SaAction&) const = default;
};
/// The runtime parameters of the SA an install action names, with its derived keys (the
/// caller wipes params.key once the runtime is made).
dp::EspSaParams esp_sa_params(const SaAction& a, const SaKeys& keys, uint32_t replay_window);


/// One SA for `show sas` (no keys).
struct SaRow {
  enum class State : uint8_t { kActive, kStandby, kDraining };
  uint16_t path = 0;
  SaDir dir = SaDir::kInbound;
  uint32_t spi = 0;
  uint32_t epoch = 0;
  State state = State::kStandby;
  uint64_t packets = 0, bytes = 0;
  uint64_t age_ms = 0;   ///< since first use; 0 while standby
  bool soft = false;     ///< a soft limit has been reached
};

class SaTable {
 public:
  static constexpr uint32_t kAhead = 3;  ///< inbound epochs installed beyond the current one

  /// Fails if check_lifetime does.
  static Result<SaTable> create(const SaLifetime& lt);

  /// Installs the path at spec.start_epoch: inbound for start..start+kAhead, then outbound.
  /// Fails on a path id or link already present, link >= 4096 or local == remote.
  Result<std::vector<SaAction>> add_path(const SaPathSpec& spec, uint64_t now_ms);

  /// Retires every SA of the path (config reload); nothing if it is unknown.
  std::vector<SaAction> remove_path(uint16_t path);

  /// Takes the counters (entries for unknown SAs are ignored; missing ones keep their last
  /// values) and returns what to change, per path: inbound installs, the outbound switch,
  /// then inbound retirements. Never leaves an outbound SA at or past a hard limit.
  std::vector<SaAction> tick(uint64_t now_ms, std::span<const SaUsage> usage);

  /// True if the path has an outbound SA (it may send).
  bool usable(uint16_t path) const;
  /// The path's outbound epoch (the last one, if it is unusable); nullopt for an unknown path.
  std::optional<uint32_t> outbound_epoch(uint16_t path) const;
  /// Every live SA, by path, outbound first then inbound by epoch.
  std::vector<SaRow> rows(uint64_t now_ms) const;

 private:
  struct Sa {
    SaName name;
    uint64_t packets = 0, bytes = 0, seq = 0;
    bool used = false;           // outbound: always; inbound: a verified packet has arrived
    uint64_t used_ms = 0;
    bool draining = false;
    uint64_t drain_until_ms = 0;
  };
  struct Path {
    SaPathSpec spec;
    uint32_t cur = 0;            // outbound epoch (the last one if retired)
    std::optional<Sa> out;
    std::vector<Sa> in;          // sorted by epoch
    bool peer_seen = false;
    uint32_t peer_epoch = 0;     // newest inbound epoch with a verified packet
    uint32_t in_floor = 0;       // inbound epochs below this were retired: never again
  };

  explicit SaTable(const SaLifetime& lt) : lt_(lt) {}
  SaLimits hard_for(const Path& p, SaDir d) const;
  bool reached(const Path& p, const Sa& sa, SaDir d, uint64_t now_ms, bool soft) const;
  SaAction action(SaAction::Kind k, const Path& p, const SaName& n) const;
  void install_inbound(Path& p, uint32_t epoch, std::vector<SaAction>& out) const;
  void retire_inbound(Path& p, size_t i, std::vector<SaAction>& out) const;
  std::vector<SaAction> tick_path(Path& p, uint64_t now_ms);

  SaLifetime lt_;
  std::map<uint16_t, Path> paths_;
};

}  // namespace sdwan::cp
