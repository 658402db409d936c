#include "control/measure/path_state.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sdwan::cp {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1'000'000'000;

// "4 s" when whole seconds, else "1500 ms": how the reasons read.
std::string duration(uint64_t ns) {
  if (ns % kSec == 0) return fmt::format("{} s", ns / kSec);
  return fmt::format("{} ms", (ns + kMs / 2) / kMs);
}

}  // namespace

std::string_view path_status_name(PathStatus s) noexcept {
  switch (s) {
    case PathStatus::kDown: return "down";
    case PathStatus::kDamped: return "damped";
    case PathStatus::kUp: return "up";
  }
  return "?";
}

Status check_path_state_config(const PathStateConfig& c) {
  if (c.interval_ns < 10 * kMs || c.interval_ns > 10 * kSec)
    return err(fmt::format("probe interval must be 10 ms .. 10 s, got {}", duration(c.interval_ns)));
  if (c.multiplier < 1 || c.multiplier > 255)
    return err(fmt::format("probe multiplier must be 1..255, got {}", c.multiplier));
  if (c.hold_up < 1 || c.hold_up > 255) return err(fmt::format("hold-up must be 1..255 probes, got {}", c.hold_up));
  const DampingConfig& d = c.damping;
  if (d.flaps > DampingConfig::kMaxFlaps)
    return err(fmt::format("damping flaps must be 0..{} (0: off), got {}", DampingConfig::kMaxFlaps, d.flaps));
  if (d.flaps > 0) {
    if (d.window_ns == 0) return err("damping window must be above 0");
    if (d.hold_min_ns == 0) return err("damping minimum hold must be above 0");
    if (d.hold_max_ns < d.hold_min_ns)
      return err(fmt::format("damping maximum hold ({}) is below the minimum ({})", duration(d.hold_max_ns),
                             duration(d.hold_min_ns)));
  }
  return Ok{};
}

void EventRing::push(const PathEvent& e) {
  ++total_;
  if (count_ < ring_.size()) {
    ring_[(head_ + count_++) % ring_.size()] = e;
    return;
  }
  ring_[head_] = e;  // the oldest goes; string assignment reuses its buffer
  head_ = (head_ + 1) % ring_.size();
}

PathStateMachine::PathStateMachine(uint16_t path, const PathStateConfig& cfg, uint64_t now_ns)
    : path_(path), cfg_(cfg), since_ns_(now_ns) {}

uint64_t PathStateMachine::slack_ns() const noexcept {
  const uint64_t i = cfg_.interval_ns;
  return std::min(i / 2, i / 4 + static_cast<uint64_t>(4 * jitter_ns_));
}

void PathStateMachine::change(PathStatus to, std::string reason, uint64_t now_ns, std::vector<PathEvent>& out) {
  out.push_back(PathEvent{now_ns, path_, state_, to, reason});
  state_ = to;
  since_ns_ = now_ns;
  reason_ = std::move(reason);
}

void PathStateMachine::go_down(std::string reason, uint64_t now_ns, std::vector<PathEvent>& out) {
  good_ = 0;
  if (state_ != PathStatus::kUp) {
    if (state_ == PathStatus::kDown) reason_ = std::move(reason);  // still down, now for this
    return;
  }
  change(PathStatus::kDown, std::move(reason), now_ns, out);

  constexpr uint32_t k = DampingConfig::kMaxFlaps;
  flaps_[(flap_head_ + flap_count_) % k] = now_ns;
  if (flap_count_ < k) ++flap_count_;
  else flap_head_ = (flap_head_ + 1) % k;

  const DampingConfig& d = cfg_.damping;
  if (d.flaps == 0 || flap_count_ < d.flaps) return;
  const uint64_t nth = flaps_[(flap_head_ + flap_count_ - d.flaps) % k];
  if (now_ns - nth >= d.window_ns) return;
  uint32_t recent = 0;
  for (uint32_t i = 0; i < flap_count_; ++i) recent += now_ns - flaps_[(flap_head_ + i) % k] < d.window_ns;
  const bool again = ever_damped_ && now_ns - last_hold_end_ < d.quiet_ns;
  const uint64_t doubled = last_hold_ >= d.hold_max_ns / 2 ? d.hold_max_ns : last_hold_ * 2;
  const uint64_t hold = again ? doubled : d.hold_min_ns;
  ever_damped_ = true;
  last_hold_ = hold;
  damped_from_ = now_ns;
  damped_until_ = now_ns + hold;
  change(PathStatus::kDamped, fmt::format("damped for {} ({} flaps in {})", duration(hold), recent, duration(d.window_ns)),
         now_ns, out);
}

void PathStateMachine::maybe_up(uint64_t now_ns, std::vector<PathEvent>& out) {
  if (state_ == PathStatus::kDown && link_up_ && good_ >= cfg_.hold_up)
    change(PathStatus::kUp, fmt::format("{} good probes", cfg_.hold_up), now_ns, out);
}

void PathStateMachine::on_reply(uint32_t seq, double rtt_jitter_ns, uint64_t now_ns, std::vector<PathEvent>& out) {
  jitter_ns_ = rtt_jitter_ns;
  if (!link_up_) return;  // a reply counted before the link event: not evidence for this link
  if (!have_reply_) {
    good_ = 1;
  } else {
    const auto ahead = static_cast<int32_t>(seq - max_seq_);
    if (ahead <= 0) return;  // a late reply of an older probe: its turn has been judged
    const auto missed = static_cast<uint32_t>(ahead - 1);
    if (missed >= cfg_.multiplier) go_down(fmt::format("missed {} probes", missed), now_ns, out);
    const bool on_time = now_ns - last_reply_ <= cfg_.interval_ns + slack_ns();
    good_ = missed == 0 && on_time ? good_ + 1 : 1;
  }
  have_reply_ = true;
  max_seq_ = seq;
  last_reply_ = now_ns;
  maybe_up(now_ns, out);
}

void PathStateMachine::on_counters(uint64_t probes_sent, uint64_t data_tx, uint64_t data_rx, uint64_t now_ns,
                                   std::vector<PathEvent>& out) {
  if (!have_counters_ || data_tx != data_tx_) last_tx_change_ = now_ns;
  if (!have_counters_ || data_rx != data_rx_) last_rx_change_ = now_ns;
  if (!have_counters_) last_tx_change_ = 0;  // the first read is a baseline, not traffic
  have_counters_ = true;
  probes_sent_ = probes_sent;
  data_tx_ = data_tx;
  data_rx_ = data_rx;
  tick(now_ns, out);
}

void PathStateMachine::on_link(bool up, uint64_t now_ns, std::vector<PathEvent>& out, std::string_view why) {
  link_up_ = up;
  good_ = 0;
  if (!up) {
    go_down(std::string(why), now_ns, out);
  } else if (state_ == PathStatus::kDown) {
    reason_ = "probing";
  }
}

void PathStateMachine::tick(uint64_t now_ns, std::vector<PathEvent>& out) {
  const uint64_t i = cfg_.interval_ns, slack = slack_ns();
  const uint64_t silent = have_reply_ ? now_ns - last_reply_ : 0;
  if (have_reply_ && silent > i + slack) good_ = 0;  // the next reply is overdue: no longer consecutive

  if (state_ == PathStatus::kUp) {
    // Probes numbered max_seq_ + 1 .. probes_sent - 1 went out and have no reply (serial
    // arithmetic: sequence numbers are 32 bits, the counter 64).
    const auto unanswered = static_cast<int32_t>(static_cast<uint32_t>(probes_sent_) - 1 - max_seq_);
    const bool sent_enough = !have_counters_ || unanswered >= static_cast<int64_t>(cfg_.multiplier);
    if (silent > cfg_.multiplier * i + slack && sent_enough) {
      go_down(fmt::format("missed {} probes", cfg_.multiplier), now_ns, out);
    } else if (have_counters_) {
      const uint64_t heard = std::max(last_reply_, last_rx_change_);
      if (last_tx_change_ > heard && now_ns - heard > 2 * i + slack)
        go_down(fmt::format("data and probes stopped for {} ms", (now_ns - heard) / kMs), now_ns, out);
    }
  }

  if (state_ == PathStatus::kDamped && now_ns >= damped_until_) {
    last_hold_end_ = damped_until_;
    if (link_up_ && good_ >= cfg_.hold_up)
      change(PathStatus::kUp, fmt::format("{} good probes", cfg_.hold_up), now_ns, out);
    else
      change(PathStatus::kDown, fmt::format("damped {}, probing", duration(damped_until_ - damped_from_)), now_ns, out);
  }
}

}  // namespace sdwan::cp
