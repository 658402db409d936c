// The daemon's log: one line per event on stderr (journald adds its own timestamps; in a
// terminal ours help). Control thread and start-up only: workers count, they never log.
#pragma once

#include <fmt/core.h>

#include <string>
#include <string_view>

namespace sdwan::cp {

enum class LogLevel { kError, kWarning, kInfo, kDebug };

/// Sets the threshold and the name shown in every line. Start-up only.
void log_setup(LogLevel level, std::string name);
/// Parses "error|warning|info|debug"; kInfo for anything else.
LogLevel log_level_from(std::string_view s);
/// Writes one line if level is at or under the threshold.
void log_line(LogLevel level, std::string_view msg);

template <class... A>
void log_error(fmt::format_string<A...> f, A&&... a) { log_line(LogLevel::kError, fmt::format(f, std::forward<A>(a)...)); }
template <class... A>
void log_warn(fmt::format_string<A...> f, A&&... a) { log_line(LogLevel::kWarning, fmt::format(f, std::forward<A>(a)...)); }
template <class... A>
void log_info(fmt::format_string<A...> f, A&&... a) { log_line(LogLevel::kInfo, fmt::format(f, std::forward<A>(a)...)); }
template <class... A>
void log_debug(fmt::format_string<A...> f, A&&... a) { log_line(LogLevel::kDebug, fmt::format(f, std::forward<A>(a)...)); }

}  // namespace sdwan::cp
