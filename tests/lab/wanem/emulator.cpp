#include "emulator.hpp"

#include <cmath>
#include <utility>

namespace sdwan::wanem {

namespace {

double ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

// Three decimals are enough for microseconds and keep the line short.
double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

nlohmann::json direction_json(const DelayLine& dl) {
  const Impairment& imp = dl.impairment();
  const Counters& c = dl.counters();
  const Lateness& l = dl.lateness();
  return {
      {"settings",
       {{"delay_ms", ms(imp.delay_ns)},
        {"jitter_ms", ms(imp.jitter_ns)},
        {"jitter_distribution", "uniform"},
        {"loss_pct", round3(imp.loss * 100.0)},
        {"rate_bps", imp.rate_bps},
        {"backlog_ms", ms(imp.backlog_ns)},
        {"blackout", imp.blackout}}},
      {"counters",
       {{"rx", c.rx},
        {"rx_bytes", c.rx_bytes},
        {"tx", c.tx},
        {"tx_bytes", c.tx_bytes},
        {"dropped_loss", c.dropped_loss},
        {"dropped_blackout", c.dropped_blackout},
        {"dropped_queue", c.dropped_queue},
        {"dropped_oversize", c.dropped_oversize},
        {"dropped_tx", c.dropped_tx},
        {"queued", dl.queued()},
        {"queued_bytes", dl.queued_bytes()}}},
      {"lateness_us",
       {{"frames", l.count()},
        {"mean", round3(l.mean_us())},
        {"p99", round3(l.quantile_us(0.99))},
        {"max", round3(l.max_us())}}},
  };
}

}  // namespace

Emulator::Emulator(std::string name, std::string a_if, std::string b_if, uint64_t seed,
                   int64_t started_ns, size_t arena_bytes, uint32_t max_frames)
    : name_(std::move(name)),
      a_if_(std::move(a_if)),
      b_if_(std::move(b_if)),
      seed_(seed),
      started_ns_(started_ns),
      up_(arena_bytes, max_frames),
      down_(arena_bytes, max_frames),
      rng_(seed) {}

std::string Emulator::handle_line(std::string_view text, int64_t now_ns) {
  auto cmd = parse_command(text);
  if (!cmd) return "error: " + cmd.error().msg;
  if (cmd->verb == Command::Verb::status) return status(now_ns).dump();
  for (Dir d : {Dir::up, Dir::down}) {
    if (!cmd->dirs.has(d)) continue;
    DelayLine& dl = line(d);
    switch (cmd->verb) {
      case Command::Verb::set:
        cmd->set.apply(dl.impairment());
        break;
      case Command::Verb::blackout:
        dl.impairment().blackout = true;
        break;
      case Command::Verb::clear:
        dl.impairment() = Impairment{};
        break;
      case Command::Verb::reset_counters:
        dl.reset_counters();
        break;
      case Command::Verb::status:
        break;
    }
  }
  return "ok";
}

nlohmann::json Emulator::status(int64_t now_ns) const {
  return {
      {"name", name_},
      {"a", a_if_},
      {"b", b_if_},
      {"seed", seed_},
      {"realtime_priority", realtime_priority_},
      {"uptime_s", round3(static_cast<double>(now_ns - started_ns_) / 1e9)},
      {"up", direction_json(up_)},
      {"down", direction_json(down_)},
  };
}

}  // namespace sdwan::wanem
