// Each class's rate, from the workers' cumulative byte counters (issue 6): what duplicate's
// overhead cap (ClassConfig::max_overhead_pct) compares with the copy uplink's bandwidth, fed
// to PolicyCompiler::set_class_rate. Control thread only; time injected, nothing sleeps.
//
// The rate is the bytes of the last full window over its length (1 s by default: ten probe
// intervals, so one burst does not stop the copies, and the cap follows a rise within two
// windows). It counts the class's own packets, not their copies, so stopping the copies never
// lowers it: the cap does not switch copies on and off by itself.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sdwan::cp {

class ClassRateMeter {
 public:
  /// window_ns: how long each measurement lasts (> 0).
  explicit ClassRateMeter(uint64_t window_ns = 1'000'000'000) noexcept : window_ns_(window_ns) {}

  /// bytes[c]: class c's cumulative bytes (summed over the workers) at now_ns. The first call
  /// starts the first window. True when a window ended and the rates were recomputed.
  bool update(std::span<const uint64_t> bytes, uint64_t now_ns);

  /// Class c's rate in bit/s over the last full window; 0 before the first one ends (unknown).
  uint64_t bps(size_t cls) const noexcept { return cls < bps_.size() ? bps_[cls] : 0; }

 private:
  uint64_t window_ns_;
  uint64_t since_ns_ = 0;
  bool started_ = false;
  std::vector<uint64_t> base_, bps_;
};

}  // namespace sdwan::cp
