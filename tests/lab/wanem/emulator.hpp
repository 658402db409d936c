// The WAN emulator's state without its sockets: both directions' delay lines, the randomness
// and the control language's effect on them. main.cpp adds the ports, the clock and the loop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "delay_line.hpp"

namespace sdwan::wanem {

/// A two-port bridge's impairment state. Single-threaded: the event loop owns it.
class Emulator {
 public:
  /// name and the two interface names appear in status; seed makes loss and jitter
  /// reproducible; started_ns (CLOCK_MONOTONIC) is where uptime counts from.
  Emulator(std::string name, std::string a_if, std::string b_if, uint64_t seed,
           int64_t started_ns, size_t arena_bytes = kDefaultArenaBytes,
           uint32_t max_frames = kDefaultMaxFrames);

  /// The delay line of direction d.
  DelayLine& line(Dir d) noexcept { return d == Dir::up ? up_ : down_; }
  /// The generator for loss draws and jitter samples.
  Rng& rng() noexcept { return rng_; }

  /// Records the SCHED_FIFO priority the loop runs at (0: normal scheduler), for status.
  void set_realtime_priority(int prio) noexcept { realtime_priority_ = prio; }

  /// Runs one control line and returns its one-line reply (no newline): "ok", the status
  /// JSON, or "error: ..." (state unchanged). now_ns is the CLOCK_MONOTONIC time, for uptime.
  std::string handle_line(std::string_view line, int64_t now_ns);

  /// The status object: name, ports, seed, uptime and per direction the settings, counters
  /// and lateness (README.md documents every field).
  nlohmann::json status(int64_t now_ns) const;

 private:
  std::string name_;
  std::string a_if_;
  std::string b_if_;
  uint64_t seed_;
  int64_t started_ns_;
  int realtime_priority_ = 0;
  DelayLine up_;
  DelayLine down_;
  Rng rng_;
};

}  // namespace sdwan::wanem
