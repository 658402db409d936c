#include "control/events/event_bus.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "control/app/log.hpp"

namespace sdwan::cp {
namespace {

using json = nlohmann::json;
constexpr std::string_view kReserved[] = {"time", "seq", "type", "name"};

std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

bool known_event_type(std::string_view type) noexcept {
  return std::find(kEventTypes.begin(), kEventTypes.end(), type) != kEventTypes.end();
}

std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const auto secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(((ms % 1000) + 1000) % 1000));
}

HookRunner::Options EventBus::hook_options(const EventsConfig& cfg) {
  HookRunner::Options o;
  o.timeout_ms = cfg.hook_timeout_ms;
  o.kill_grace_ms = cfg.hook_kill_grace_ms;
  o.max_concurrent = cfg.hook_max_concurrent;
  o.queue = cfg.hook_queue;
  o.output_max = cfg.hook_output_max;
  return o;
}

namespace {

size_t hook_count(const EventsConfig& cfg) {
  size_t n = 0;
  for (const auto& [type, list] : cfg.hooks) n += list.size();
  return n;
}

}  // namespace

EventBus::EventBus(const EventsConfig& cfg, std::string appliance_name) : cfg_(cfg), name_(std::move(appliance_name)) {
  if (cfg_.ring == 0) cfg_.ring = 1;
  if (!cfg_.log.empty()) {
    seq_ = EventLog::last_seq(cfg_.log).value_or(0);
    log_ = std::make_shared<EventLog>(EventLog::Options{cfg_.log, cfg_.log_fsync, 4096});
  }
  if (hook_count(cfg_) > 0) hooks_ = std::make_shared<HookRunner>(hook_options(cfg_));
  log_info("events: {} kept in memory, log {}, {} hook(s){}", cfg_.ring, cfg_.log.empty() ? "off" : cfg_.log,
           hook_count(cfg_), seq_ != 0 ? fmt::format(", sequence goes on after {}", seq_) : std::string());
}

EventBus::~EventBus() {
  // Hooks first: ending them may take a second; the log's writer then drains its queue.
  hooks_.reset();
  log_.reset();
}

EventsConfig EventBus::config() const {
  std::lock_guard lk(mu_);
  return cfg_;
}

void EventBus::reconfigure(const EventsConfig& cfg) {
  std::shared_ptr<EventLog> old_log;
  {
    std::lock_guard lk(mu_);
    const bool new_log = cfg.log != cfg_.log || cfg.log_fsync != cfg_.log_fsync;
    cfg_ = cfg;
    if (cfg_.ring == 0) cfg_.ring = 1;
    while (ring_.size() > cfg_.ring) ring_.pop_front();
    if (new_log) {
      old_log = std::move(log_);
      if (!cfg_.log.empty()) log_ = std::make_shared<EventLog>(EventLog::Options{cfg_.log, cfg_.log_fsync, 4096});
    }
    // A runner stays once made (its hooks may still run); without hooks nothing is submitted.
    if (hooks_) hooks_->set_options(hook_options(cfg_));
    else if (hook_count(cfg_) > 0) hooks_ = std::make_shared<HookRunner>(hook_options(cfg_));
  }
  log_info("events: reconfigured: {} kept in memory, log {}, {} hook(s)", cfg.ring, cfg.log.empty() ? "off" : cfg.log,
           hook_count(cfg));
  old_log.reset();  // writes out what it still holds, outside the lock
}

void EventBus::emit(std::string_view type, json detail) { emit(type, std::move(detail), std::chrono::system_clock::now()); }

// Everything under mu_, I/O excepted: the log and the runner only queue (a mutex each and,
// for a hook, one eventfd write).
void EventBus::emit(std::string_view type, json detail, std::chrono::system_clock::time_point at) {
  try {
    json ev = detail.is_object() ? std::move(detail) : detail.is_null() ? json::object() : json{{"detail", std::move(detail)}};
    for (std::string_view k : kReserved) ev.erase(std::string(k));
    const std::string time = rfc3339_utc(at);
    const std::string type_s(type);
    bool unknown = false;
    std::string line;
    {
      std::lock_guard lk(mu_);
      const uint64_t seq = ++seq_;
      ++emitted_;
      if (!known_event_type(type) && unknown_types_++ == 0) unknown = true;
      // The bus's fields first, so that a person reading the file (or a hook's input) sees
      // when and what before the detail.
      line = fmt::format(R"({{"time":"{}","seq":{},"type":{},"name":{})", time, seq, dump(type_s), dump(name_));
      for (const auto& [k, v] : ev.items()) line += fmt::format(",{}:{}", dump(k), dump(v));
      line += '}';
      ev["time"] = time;
      ev["seq"] = seq;
      ev["type"] = type_s;
      ev["name"] = name_;
      ring_.push_back(std::move(ev));
      while (ring_.size() > cfg_.ring) ring_.pop_front();
      if (hooks_) {
        std::vector<const std::vector<std::string>*> run;
        for (const char* key : {type_s.c_str(), "*"}) {
          const auto it = cfg_.hooks.find(key);
          if (it == cfg_.hooks.end()) continue;
          for (const auto& argv : it->second)
            if (std::none_of(run.begin(), run.end(), [&](const auto* r) { return *r == argv; })) run.push_back(&argv);
        }
        for (const auto* argv : run)
          hooks_->submit(*argv, line + "\n",
                         {"SDWAN_EVENT_TYPE=" + type_s, fmt::format("SDWAN_EVENT_SEQ={}", seq), "SDWAN_APPLIANCE=" + name_},
                         seq, type_s);
      }
      if (log_) log_->append(line);
    }
    if (unknown) log_warn("bug: event type \"{}\" is not in kEventTypes (docs/events.md)", type_s);
    log_debug("event {}", line);
  } catch (const std::exception& e) {
    // Only allocation can throw here; an event is not worth the daemon.
    log_error("event {} lost: {}", type, e.what());
  }
}

json EventBus::events(const std::vector<std::string>& types, uint64_t after) const {
  json out = json::array();
  std::lock_guard lk(mu_);
  for (const json& e : ring_) {
    if (e.value("seq", uint64_t{0}) <= after) continue;
    if (!types.empty() && std::find(types.begin(), types.end(), e.value("type", "")) == types.end()) continue;
    out.push_back(e);
  }
  return out;
}

uint64_t EventBus::last_seq() const {
  std::lock_guard lk(mu_);
  return seq_;
}

json EventBus::stats() const {
  json out;
  {
    std::lock_guard lk(mu_);
    out["emitted"] = emitted_;
    out["last_seq"] = seq_;
    out["kept"] = ring_.size();
  }
  std::shared_ptr<EventLog> log;
  std::shared_ptr<HookRunner> hooks;
  std::string path;
  {
    std::lock_guard lk(mu_);
    log = log_;
    hooks = hooks_;
    path = cfg_.log;
  }
  const EventLog::Stats ls = log ? log->stats() : EventLog::Stats{};
  out["log"] = path.empty() ? json(nullptr) : json(path);
  out["log_written"] = ls.written;
  out["log_failed"] = ls.failed;
  out["log_dropped"] = ls.dropped;
  out["log_healthy"] = ls.healthy;
  const HookStats hs = hooks ? hooks->stats() : HookStats{};
  out["hooks_run"] = hs.started;
  out["hooks_ok"] = hs.ok;
  out["hooks_failed"] = hs.failed;
  out["hooks_timed_out"] = hs.timed_out;
  out["hooks_dropped"] = hs.dropped;
  out["hooks_running"] = hs.running;
  out["hooks_queued"] = hs.queued;
  return out;
}

json EventBus::hook_runs() const {
  json out = json::array();
  std::shared_ptr<HookRunner> hooks;
  {
    std::lock_guard lk(mu_);
    hooks = hooks_;
  }
  if (!hooks) return out;
  for (const HookRun& r : hooks->recent())
    out.push_back({{"started", r.started},
                   {"seq", r.seq},
                   {"type", r.type},
                   {"hook", r.hook},
                   {"result", r.result},
                   {"ok", r.ok},
                   {"timed_out", r.timed_out},
                   {"exit_code", r.exit_code >= 0 ? json(r.exit_code) : json(nullptr)},
                   {"signal", r.signal != 0 ? json(r.signal) : json(nullptr)},
                   {"duration_ms", r.duration_ms},
                   {"output", r.output},
                   {"output_bytes", r.output_bytes}});
  return out;
}

bool EventBus::wait_idle(int timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::shared_ptr<EventLog> log;
  std::shared_ptr<HookRunner> hooks;
  {
    std::lock_guard lk(mu_);
    log = log_;
    hooks = hooks_;
  }
  if (log && !log->flush(timeout_ms)) return false;
  if (!hooks) return true;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
  return hooks->wait_idle(std::max(left, std::chrono::milliseconds(0)));
}

Status check_hooks(const EventsConfig& cfg) {
  for (const auto& [type, list] : cfg.hooks)
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string& exe = list[i].empty() ? std::string() : list[i][0];
      struct stat st {};
      std::string why;
      if (::stat(exe.c_str(), &st) != 0) why = std::strerror(errno);
      else if (!S_ISREG(st.st_mode)) why = "not a regular file";
      else if (::access(exe.c_str(), X_OK) != 0) why = fmt::format("not executable ({})", std::strerror(errno));
      if (!why.empty()) return err(fmt::format("events.hooks.{}[{}]: {}: {}", type, i, exe, why));
    }
  return Ok{};
}

}  // namespace sdwan::cp
