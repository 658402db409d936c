#include "control/apps/checker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <deque>

#include "control/events/event_bus.hpp"

namespace sdwan::cp {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

AppResult tcp_check(const AppCheckConfig& c) {
  AppResult r;
  const auto t0 = Clock::now();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.error = fmt::format("socket: {}", std::strerror(errno));
    return r;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(c.port);
  sa.sin_addr.s_addr = htonl(c.address.v);
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  int e = rc == 0 ? 0 : errno;
  if (rc != 0 && e == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    const auto deadline = t0 + std::chrono::milliseconds(c.timeout_ms);
    int n = 0;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      n = left <= 0 ? 0 : ::poll(&p, 1, static_cast<int>(left));
      if (n >= 0 || errno != EINTR) break;
    }
    if (n == 0) {
      ::close(fd);
      r.ms = ms_since(t0);
      r.error = fmt::format("connect: no answer in {} ms", c.timeout_ms);
      return r;
    }
    socklen_t len = sizeof e;
    if (n < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
  }
  r.ms = ms_since(t0);
  ::close(fd);
  if (e != 0) {
    r.error = fmt::format("connect: {}", std::strerror(e));
    return r;
  }
  r.ok = true;
  return r;
}

AppResult http_check(const AppCheckConfig& c) {
  AppResult r;
  const auto t0 = Clock::now();
  httplib::Client cli(c.address.str(), c.port);
  const auto to = std::chrono::milliseconds(c.timeout_ms);
  const auto sec = static_cast<time_t>(c.timeout_ms / 1000);
  const auto usec = static_cast<time_t>((c.timeout_ms % 1000) * 1000);
  cli.set_connection_timeout(sec, usec);
  cli.set_read_timeout(sec, usec);
  cli.set_write_timeout(sec, usec);
  cli.set_keep_alive(false);
  httplib::Result res = cli.Get(c.path.c_str());
  r.ms = ms_since(t0);
  if (!res) {
    r.error = fmt::format("http: {}", httplib::to_string(res.error()));
    return r;
  }
  r.http_status = static_cast<uint16_t>(res->status);
  const bool status_ok = c.expect_status ? res->status == *c.expect_status : res->status >= 200 && res->status < 400;
  if (!status_ok) {
    r.error = c.expect_status ? fmt::format("http: status {} (expected {})", res->status, *c.expect_status)
                              : fmt::format("http: status {} (expected 2xx or 3xx)", res->status);
    return r;
  }
  // The connect and the read each have the timeout; the check as a whole has it too.
  if (Clock::now() - t0 > to) {
    r.error = fmt::format("http: answered after {:.0f} ms, over the {} ms timeout", r.ms, c.timeout_ms);
    return r;
  }
  r.ok = true;
  return r;
}

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

}  // namespace

AppResult run_app_check(const AppCheckConfig& c) {
  try {
    return c.kind == AppCheckConfig::Kind::kHttp ? http_check(c) : tcp_check(c);
  } catch (const std::exception& e) {  // cpp-httplib's allocations: a check failure, not a crash
    AppResult r;
    r.error = e.what();
    return r;
  }
}

struct AppChecker::Slot {
  AppCheckConfig cfg;
  AppStatus st;
  std::deque<bool> window;
  Clock::time_point last_end{};
  bool ran = false;
  bool stop = false;  // under mu_: the check was removed or replaced, or the checker ends
  bool done = false;  // under mu_: its thread has left loop()
  std::thread th;
};

AppChecker::AppChecker(const std::vector<AppCheckConfig>& checks, EventBus* bus) : bus_(bus) {
  for (const auto& c : checks) slots_.push_back(make_slot(c, {}));
  launch();
}

AppChecker::~AppChecker() {
  {
    std::lock_guard lk(mu_);
    for (auto& s : slots_) s->stop = true;
    for (auto& s : retired_) s->stop = true;
  }
  cv_.notify_all();
  for (auto& s : slots_)
    if (s->th.joinable()) s->th.join();
  reap(true);
}

// A slot for c: with the figures of the old slot of the same settings, if there is one.
std::unique_ptr<AppChecker::Slot> AppChecker::make_slot(const AppCheckConfig& c,
                                                        const std::vector<std::unique_ptr<Slot>>& old) const {
  auto s = std::make_unique<Slot>();
  s->cfg = c;
  for (const auto& o : old)
    if (o->cfg == c) {
      s->st = o->st;
      s->window = o->window;
      s->last_end = o->last_end;
      s->ran = o->ran;
      return s;
    }
  s->st.name = c.name;
  s->st.type = std::string(app_kind_name(c.kind));
  s->st.target = c.target;
  s->st.interval_ms = c.interval_ms;
  s->st.timeout_ms = c.timeout_ms;
  return s;
}

void AppChecker::launch() {
  for (auto& s : slots_)
    if (!s->th.joinable()) s->th = std::thread([this, p = s.get()] { loop(p); });
}

// Joins the retired threads that are done (all: every one, waiting for checks in flight).
void AppChecker::reap(bool all) {
  std::vector<std::unique_ptr<Slot>> finished;
  {
    std::lock_guard lk(mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (all || (*it)->done) {
        finished.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& s : finished)
    if (s->th.joinable()) s->th.join();
}

void AppChecker::reconfigure(const std::vector<AppCheckConfig>& checks) {
  {
    std::lock_guard lk(mu_);
    std::vector<std::unique_ptr<Slot>> next;
    for (const auto& c : checks) next.push_back(make_slot(c, slots_));
    for (auto& s : slots_) {
      s->stop = true;
      retired_.push_back(std::move(s));
    }
    slots_ = std::move(next);
  }
  cv_.notify_all();
  launch();
  reap(false);
}

void AppChecker::loop(Slot* s) {
  const auto interval = std::chrono::milliseconds(s->cfg.interval_ms);
  auto next = Clock::now() + interval;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (cv_.wait_until(lk, next, [&] { return s->stop; })) {
        s->done = true;
        return;
      }
    }
    const AppResult r = run_app_check(s->cfg);
    record(*s, r);
    // Every interval from the last start, or at once after a check that overran it.
    next = std::max(next + interval, Clock::now());
  }
}

void AppChecker::record(Slot& s, const AppResult& r) {
  std::string from, to;
  AppStatus st;
  {
    std::lock_guard lk(mu_);
    if (s.stop) return;  // removed or replaced while it ran: its figures are no one's now
    AppStatus& a = s.st;
    from = a.state;
    ++a.checks;
    (r.ok ? a.ok : a.failed) += 1;
    s.window.push_back(r.ok);
    if (s.window.size() > AppStatus::kWindow) s.window.pop_front();
    a.window_checks = static_cast<uint32_t>(s.window.size());
    a.window_ok = static_cast<uint32_t>(std::count(s.window.begin(), s.window.end(), true));
    a.success_pct = 100.0 * a.window_ok / a.window_checks;
    a.last_ms = r.ms;
    if (r.ok) a.latency_ms = r.ms;
    a.http_status = r.http_status;
    a.last_error = r.error;
    a.consecutive_failures = r.ok ? 0 : a.consecutive_failures + 1;
    // Failing on the first failed check: an event within one interval of the service stopping
    // (docs/apps.md); ok again on the first good one.
    a.state = r.ok ? "ok" : "failing";
    to = a.state;
    s.last_end = Clock::now();
    s.ran = true;
    st = a;
  }
  if (bus_ == nullptr || from == to) return;
  if (to == "failing") {
    bus_->emit("app_failing", {{"app", st.name},
                               {"check", st.type},
                               {"target", st.target},
                               {"from", from},
                               {"to", to},
                               {"error", st.last_error},
                               {"duration_ms", round3(r.ms)}});
  } else if (from == "failing") {
    bus_->emit("app_ok", {{"app", st.name},
                          {"check", st.type},
                          {"target", st.target},
                          {"from", from},
                          {"to", to},
                          {"latency_ms", round3(r.ms)}});
  }
}

std::vector<AppStatus> AppChecker::status() const {
  std::lock_guard lk(mu_);
  std::vector<AppStatus> out;
  const auto now = Clock::now();
  for (const auto& s : slots_) {
    AppStatus a = s->st;
    if (s->ran) a.age_s = std::chrono::duration<double>(now - s->last_end).count();
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace sdwan::cp
