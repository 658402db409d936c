#include "control/metrics/host.hpp"

#include <sys/statvfs.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace sdwan::cp {
namespace {

std::string_view next_line(std::string_view& text) {
  const size_t nl = text.find('\n');
  std::string_view line = text.substr(0, nl);
  text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  return line;
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::optional<uint64_t> to_u64(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> to_double(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<CpuTimes> parse_proc_stat(std::string_view text) {
  while (!text.empty()) {
    const auto w = words(next_line(text));
    if (w.empty() || w[0] != "cpu") continue;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // inside user and nice, so it is not added again.
    if (w.size() < 9) return std::nullopt;
    uint64_t v[8];
    for (size_t i = 0; i < 8; ++i) {
      auto x = to_u64(w[i + 1]);
      if (!x) return std::nullopt;
      v[i] = *x;
    }
    CpuTimes t;
    t.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    t.total = t.busy + v[3] + v[4];
    return t;
  }
  return std::nullopt;
}

MemInfo parse_meminfo(std::string_view text) {
  MemInfo m;
  while (!text.empty()) {
    const auto w = words(next_line(text));
    if (w.size() < 2) continue;
    const auto v = to_u64(w[1]);
    if (!v) continue;
    const uint64_t kb = w.size() >= 3 && w[2] == "kB" ? 1024 : 1;
    if (w[0] == "MemTotal:") m.total_bytes = *v * kb;
    else if (w[0] == "MemAvailable:") m.available_bytes = *v * kb;
    else if (w[0] == "HugePages_Total:") m.hugepages_total = *v;
    else if (w[0] == "HugePages_Free:") m.hugepages_free = *v;
    else if (w[0] == "Hugepagesize:") m.hugepage_size_bytes = *v * kb;
  }
  return m;
}

std::optional<LoadAvg> parse_loadavg(std::string_view text) {
  const auto w = words(next_line(text));
  if (w.size() < 3) return std::nullopt;
  const auto a = to_double(w[0]), b = to_double(w[1]), c = to_double(w[2]);
  if (!a || !b || !c) return std::nullopt;
  return LoadAvg{*a, *b, *c};
}

std::string read_text_file(const std::string& path) {
  constexpr size_t kMax = 1 << 20;
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return {};
  std::string out;
  char buf[4096];
  size_t n = 0;
  while (out.size() < kMax && (n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

std::optional<DiskSpace> disk_space(const std::string& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return std::nullopt;
  return DiskSpace{static_cast<uint64_t>(s.f_blocks) * s.f_frsize, static_cast<uint64_t>(s.f_bavail) * s.f_frsize};
}

void RateMeter::sample(uint64_t value, uint64_t now_ns) noexcept {
  if (have_ && value >= value_ && now_ns > at_ns_)
    rate_ = static_cast<double>(value - value_) * 1e9 / static_cast<double>(now_ns - at_ns_);
  else if (have_)
    rate_.reset();
  have_ = true;
  value_ = value;
  at_ns_ = now_ns;
}

void CpuMeter::sample(const CpuTimes& t) noexcept {
  if (last_ && t.total > last_->total && t.busy >= last_->busy) {
    const double r = static_cast<double>(t.busy - last_->busy) / static_cast<double>(t.total - last_->total);
    ratio_ = r > 1.0 ? 1.0 : r;
  } else if (last_ && t.total != last_->total) {
    ratio_.reset();  // went backwards: not the same counters (or a wrap); start again
  }
  last_ = t;
}

}  // namespace sdwan::cp
