#include "control/app/service.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include "control/app/log.hpp"

namespace sdwan::cp {

namespace {

void notify(const std::string& msg) {
  const int rc = sd_notify(0, msg.c_str());
  if (rc < 0) log_warn("sd_notify failed: {}", rc);
}

uint64_t monotonic_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 1000) {
    watchdog_ms_ = usec / 1000;
    log_info("systemd watchdog: {} ms, pinging every {} ms", watchdog_ms_, watchdog_ms_ / 2);
  }
}

void ServiceNotifier::ready(const std::string& s) { notify("READY=1\nSTATUS=" + s); }

void ServiceNotifier::status(const std::string& s) { notify("STATUS=" + s); }

void ServiceNotifier::reloading() { notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_us())); }

void ServiceNotifier::stopping() { notify("STOPPING=1\nSTATUS=stopping"); }

void ServiceNotifier::tick(uint64_t now_ms) {
  if (watchdog_ms_ == 0 || now_ms < next_ping_ms_) return;
  next_ping_ms_ = now_ms + watchdog_ms_ / 2;
  notify("WATCHDOG=1");
}

}  // namespace sdwan::cp
