// The impairments of one direction of the lab's WAN emulator and the control language that
// changes them (README.md in this folder). Pure: no sockets, no clock, no randomness.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/api/result.hpp"

namespace sdwan::wanem {

/// Longest delay, jitter or backlog a command may set (ns): ten seconds.
inline constexpr int64_t kMaxDurationNs = 10'000'000'000;
/// Slowest and fastest rate a command may set (bit/s); 0 means no limit.
inline constexpr uint64_t kMinRateBps = 1'000;
inline constexpr uint64_t kMaxRateBps = 400'000'000'000;
/// How long a frame may wait for the rate limiter's serialiser before it is dropped (ns).
inline constexpr int64_t kDefaultBacklogNs = 50'000'000;

/// A direction of the bridge: up = side A -> side B (branch upload), down = B -> A.
enum class Dir : uint8_t { up = 0, down = 1 };

/// "up" or "down".
const char* dir_name(Dir d) noexcept;

/// Which directions a command applies to.
struct DirSet {
  bool up = false;    ///< A -> B
  bool down = false;  ///< B -> A
  /// True if d is in the set.
  bool has(Dir d) const noexcept { return d == Dir::up ? up : down; }
};

/// The impairments of one direction; a default-constructed one impairs nothing.
struct Impairment {
  int64_t delay_ns = 0;   ///< fixed one-way delay added to every frame
  int64_t jitter_ns = 0;  ///< each frame's delay moves by a uniform sample in [-jitter, +jitter]
  double loss = 0.0;      ///< probability in [0, 1] that a frame is dropped (Bernoulli per frame)
  uint64_t rate_bps = 0;  ///< serialisation rate of whole Ethernet frames; 0 = unlimited
  int64_t backlog_ns = kDefaultBacklogNs;  ///< with a rate: longest wait for the serialiser
  bool blackout = false;  ///< drop every frame, queued ones included

  /// True if no setting changes a frame's fate or timing.
  bool none() const noexcept {
    return delay_ns == 0 && jitter_ns == 0 && loss == 0.0 && rate_bps == 0 && !blackout;
  }
};

/// The settings a `set` command names; the others keep their values.
struct SetArgs {
  std::optional<int64_t> delay_ns;     ///< delay=
  std::optional<int64_t> jitter_ns;    ///< jitter=
  std::optional<double> loss;          ///< loss= (as a probability)
  std::optional<uint64_t> rate_bps;    ///< rate=
  std::optional<int64_t> backlog_ns;   ///< backlog=
  std::optional<bool> blackout;        ///< blackout=on|off

  /// Writes the named settings into imp.
  void apply(Impairment& imp) const noexcept;
};

/// One parsed control line.
struct Command {
  /// What the line asks for.
  enum class Verb : uint8_t { set, blackout, clear, status, reset_counters };
  Verb verb = Verb::status;  ///< the first word
  DirSet dirs;               ///< the directions it applies to (defaults filled in)
  SetArgs set;               ///< for Verb::set: what changes
};

/// Parses one control line (without its newline). The Error is the reply's text after
/// "error: ": what is wrong and what is expected. Pure; any thread.
Result<Command> parse_command(std::string_view line);

/// "40ms", "1.5ms", "250us", "2s" or "0" -> ns, within [0, kMaxDurationNs]. Pure.
Result<int64_t> parse_duration_ns(std::string_view text);
/// "2%", "2" or "0.5%" -> a probability in [0, 1]. Pure.
Result<double> parse_percent(std::string_view text);
/// "10mbit", "512kbit", "1gbit", "64000bit", "0" or "off" (no limit) -> bit/s. Pure.
Result<uint64_t> parse_rate_bps(std::string_view text);

}  // namespace sdwan::wanem
