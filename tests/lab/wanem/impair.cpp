#include "impair.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace sdwan::wanem {

namespace {

constexpr const char* kVerbs = "set, blackout, clear, status or reset-counters";
constexpr const char* kSetKeys = "dir, delay, jitter, loss, rate, backlog, blackout";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    size_t start = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// A non-negative decimal number followed by a unit. Only digits and one dot are taken as the
// number, so "nan", "inf", "-1" and "1e3" are refused rather than read by from_chars.
struct Quantity {
  double value = 0.0;
  std::string unit;  // lower case, may be empty
};

Result<Quantity> split_quantity(std::string_view text, std::string_view what) {
  size_t n = 0;
  while (n < text.size() && (std::isdigit(static_cast<unsigned char>(text[n])) || text[n] == '.')) {
    ++n;
  }
  if (n == 0) {
    return err(fmt::format("{} '{}' does not start with a number", what, text));
  }
  Quantity q;
  auto [end, ec] = std::from_chars(text.data(), text.data() + n, q.value);
  if (ec != std::errc() || end != text.data() + n || !std::isfinite(q.value)) {
    return err(fmt::format("{} '{}' is not a number", what, text));
  }
  q.unit = lower(text.substr(n));
  return q;
}

}  // namespace

const char* dir_name(Dir d) noexcept { return d == Dir::up ? "up" : "down"; }

void SetArgs::apply(Impairment& imp) const noexcept {
  if (delay_ns) imp.delay_ns = *delay_ns;
  if (jitter_ns) imp.jitter_ns = *jitter_ns;
  if (loss) imp.loss = *loss;
  if (rate_bps) imp.rate_bps = *rate_bps;
  if (backlog_ns) imp.backlog_ns = *backlog_ns;
  if (blackout) imp.blackout = *blackout;
}

Result<int64_t> parse_duration_ns(std::string_view text) {
  auto q = split_quantity(text, "duration");
  if (!q) return q.error();
  double scale = 0;
  if (q->unit == "s") {
    scale = 1e9;
  } else if (q->unit == "ms") {
    scale = 1e6;
  } else if (q->unit == "us") {
    scale = 1e3;
  } else if (q->unit.empty() && q->value == 0.0) {
    return int64_t{0};
  } else {
    return err(fmt::format("duration '{}' needs a unit: s, ms or us (e.g. 40ms, 1.5ms, 250us)",
                           text));
  }
  double ns = std::round(q->value * scale);
  if (ns > static_cast<double>(kMaxDurationNs)) {
    return err(fmt::format("duration '{}' is longer than the 10 s this emulator holds frames",
                           text));
  }
  return static_cast<int64_t>(ns);
}

Result<double> parse_percent(std::string_view text) {
  auto q = split_quantity(text, "percentage");
  if (!q) return q.error();
  if (!q->unit.empty() && q->unit != "%") {
    return err(fmt::format("percentage '{}' has unit '{}'; expected a number with an optional %"
                           " (e.g. 2% or 0.5%)", text, q->unit));
  }
  if (q->value > 100.0) {
    return err(fmt::format("percentage '{}' is above 100%", text));
  }
  return q->value / 100.0;
}

Result<uint64_t> parse_rate_bps(std::string_view text) {
  if (lower(text) == "off") return uint64_t{0};
  auto q = split_quantity(text, "rate");
  if (!q) return q.error();
  double scale = 0;
  if (q->unit == "bit") {
    scale = 1;
  } else if (q->unit == "kbit") {
    scale = 1e3;
  } else if (q->unit == "mbit") {
    scale = 1e6;
  } else if (q->unit == "gbit") {
    scale = 1e9;
  } else if (q->unit.empty() && q->value == 0.0) {
    return uint64_t{0};
  } else {
    return err(fmt::format("rate '{}' needs a unit: bit, kbit, mbit or gbit (bits per second, "
                           "e.g. 10mbit), or 0/off for no limit", text));
  }
  double bps = std::round(q->value * scale);
  if (bps == 0.0) return uint64_t{0};
  if (bps < static_cast<double>(kMinRateBps) || bps > static_cast<double>(kMaxRateBps)) {
    return err(fmt::format("rate '{}' is outside 1kbit..400gbit (0 or off: no limit)", text));
  }
  return static_cast<uint64_t>(bps);
}

Result<Command> parse_command(std::string_view line) {
  auto words = split_words(line);
  if (words.empty()) {
    return err(fmt::format("empty command; expected {}", kVerbs));
  }
  Command cmd;
  std::string verb = lower(words[0]);
  if (verb == "set") {
    cmd.verb = Command::Verb::set;
  } else if (verb == "blackout") {
    cmd.verb = Command::Verb::blackout;
  } else if (verb == "clear") {
    cmd.verb = Command::Verb::clear;
  } else if (verb == "status") {
    cmd.verb = Command::Verb::status;
  } else if (verb == "reset-counters") {
    cmd.verb = Command::Verb::reset_counters;
  } else {
    return err(fmt::format("unknown command '{}'; expected {}", words[0], kVerbs));
  }

  if (cmd.verb == Command::Verb::status) {
    if (words.size() > 1) {
      return err(fmt::format("status takes no arguments, got '{}'", words[1]));
    }
    return cmd;
  }

  std::optional<DirSet> dirs;
  bool any_setting = false;
  for (size_t i = 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    size_t eq = w.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == w.size()) {
      return err(fmt::format("'{}' is not key=value; expected {}", w,
                             cmd.verb == Command::Verb::set ? kSetKeys : "dir=up|down|both"));
    }
    std::string key = lower(w.substr(0, eq));
    std::string_view value = w.substr(eq + 1);
    auto duplicate = [&] { return err(fmt::format("{}= given twice", key)); };
    if (key == "dir") {
      if (dirs) return duplicate();
      std::string v = lower(value);
      if (v == "up") {
        dirs = DirSet{true, false};
      } else if (v == "down") {
        dirs = DirSet{false, true};
      } else if (v == "both") {
        dirs = DirSet{true, true};
      } else {
        return err(fmt::format("dir={} is not a direction; expected dir=up (A->B), dir=down "
                               "(B->A) or dir=both", value));
      }
      continue;
    }
    if (cmd.verb != Command::Verb::set) {
      return err(fmt::format("{} takes only dir=up|down|both, got '{}'", words[0], w));
    }
    SetArgs& s = cmd.set;
    if (key == "delay" || key == "jitter" || key == "backlog") {
      std::optional<int64_t>& slot =
          key == "delay" ? s.delay_ns : key == "jitter" ? s.jitter_ns : s.backlog_ns;
      if (slot) return duplicate();
      auto d = parse_duration_ns(value);
      if (!d) return err(fmt::format("{}: {}", key, d.error().msg));
      if (key == "backlog" && *d < 1'000'000) {
        return err(fmt::format("backlog={} is shorter than 1ms; expected 1ms..10s", value));
      }
      slot = *d;
    } else if (key == "loss") {
      if (s.loss) return duplicate();
      auto p = parse_percent(value);
      if (!p) return err(fmt::format("loss: {}", p.error().msg));
      s.loss = *p;
    } else if (key == "rate") {
      if (s.rate_bps) return duplicate();
      auto r = parse_rate_bps(value);
      if (!r) return err(fmt::format("rate: {}", r.error().msg));
      s.rate_bps = *r;
    } else if (key == "blackout") {
      if (s.blackout) return duplicate();
      std::string v = lower(value);
      if (v == "on") {
        s.blackout = true;
      } else if (v == "off") {
        s.blackout = false;
      } else {
        return err(fmt::format("blackout={} is not on or off", value));
      }
    } else {
      return err(fmt::format("unknown setting '{}'; expected {}", key, kSetKeys));
    }
    any_setting = true;
  }

  if (cmd.verb == Command::Verb::set) {
    if (!any_setting) {
      return err("set needs at least one of delay=, jitter=, loss=, rate=, backlog=, blackout= "
                 "(e.g. set dir=up delay=40ms)");
    }
    cmd.dirs = dirs.value_or(DirSet{true, false});
  } else {
    cmd.dirs = dirs.value_or(DirSet{true, true});
  }
  return cmd;
}

}  // namespace sdwan::wanem
