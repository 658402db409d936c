#include "control/app/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace sdwan::cp {
namespace {
LogLevel g_level = LogLevel::kInfo;
std::string g_name = "sdwand";
constexpr const char* kNames[] = {"error", "warning", "info", "debug"};
}  // namespace

void log_setup(LogLevel level, std::string name) {
  g_level = level;
  g_name = std::move(name);
}

LogLevel log_level_from(std::string_view s) {
  if (s == "error") return LogLevel::kError;
  if (s == "warning") return LogLevel::kWarning;
  if (s == "debug") return LogLevel::kDebug;
  return LogLevel::kInfo;
}

void log_line(LogLevel level, std::string_view msg) {
  if (level > g_level) return;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  // One write per line so lines from the daemon and EAL never interleave mid-line.
  const std::string line = fmt::format("{}.{:03}Z {}[{}] {}: {}\n", ts, ms, "sdwand", g_name,
                                       kNames[static_cast<int>(level)], msg);
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace sdwan::cp
