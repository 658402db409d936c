// The host's health for the metrics page: CPU, load, memory, hugepages and disk space, read
// from /proc and statvfs by the control thread. The parsers take the files' text, so tests
// feed them fixed samples; the meters turn two readings into a rate.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sdwan::cp {

/// Jiffies of every CPU since boot, from /proc/stat's "cpu" line.
struct CpuTimes {
  uint64_t busy = 0;   ///< user + nice + system + irq + softirq + steal
  uint64_t total = 0;  ///< busy + idle + iowait
};

/// The "cpu " line of /proc/stat's text; nullopt when it is missing or malformed.
std::optional<CpuTimes> parse_proc_stat(std::string_view text);

/// /proc/meminfo, in bytes and pages.
struct MemInfo {
  uint64_t total_bytes = 0, available_bytes = 0;
  uint64_t hugepages_total = 0, hugepages_free = 0, hugepage_size_bytes = 0;
};

/// /proc/meminfo's text; fields it lacks stay 0.
MemInfo parse_meminfo(std::string_view text);

/// /proc/loadavg: runnable tasks averaged over 1, 5 and 15 minutes.
struct LoadAvg {
  double m1 = 0, m5 = 0, m15 = 0;
};

/// /proc/loadavg's text; nullopt when malformed.
std::optional<LoadAvg> parse_loadavg(std::string_view text);

/// The whole of a small file (at most 1 MiB); "" when it cannot be read.
std::string read_text_file(const std::string& path);

/// Size and space available to unprivileged users of the filesystem holding dir (statvfs).
struct DiskSpace {
  uint64_t size_bytes = 0, avail_bytes = 0;
};
std::optional<DiskSpace> disk_space(const std::string& dir);

/// The per-second rate of a counter between its last two samples. Control thread.
class RateMeter {
 public:
  /// A reading of the counter at now_ns. A counter that went backwards restarts the meter.
  void sample(uint64_t value, uint64_t now_ns) noexcept;
  /// Per second over the last interval; nullopt before the second sample.
  std::optional<double> rate() const noexcept { return rate_; }

 private:
  bool have_ = false;
  uint64_t value_ = 0, at_ns_ = 0;
  std::optional<double> rate_;
};

/// The share of CPU time that was busy between the last two readings. Control thread.
class CpuMeter {
 public:
  void sample(const CpuTimes& t) noexcept;
  /// 0..1; nullopt before the second reading or when no time passed.
  std::optional<double> ratio() const noexcept { return ratio_; }

 private:
  std::optional<CpuTimes> last_;
  std::optional<double> ratio_;
};

}  // namespace sdwan::cp
