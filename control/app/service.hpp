// systemd service integration (issue 7): readiness, watchdog and status via sd_notify(3).
// Without NOTIFY_SOCKET (not started by systemd, or Type=simple) every call does nothing.
// Control thread only.
#pragma once

#include <cstdint>
#include <string>

namespace sdwan::cp {

class ServiceNotifier {
 public:
  /// Reads WATCHDOG_USEC/WATCHDOG_PID once (sd_watchdog_enabled).
  ServiceNotifier();

  /// READY=1 with a status line: the appliance is up and serving.
  void ready(const std::string& status);
  /// STATUS=..., shown by systemctl status.
  void status(const std::string& status);
  /// RELOADING=1 (systemd >= 253 also wants MONOTONIC_USEC), then ready() again when done.
  void reloading();
  /// STOPPING=1.
  void stopping();
  /// WATCHDOG=1 at half the watchdog period; call from the control loop, so a stuck loop
  /// stops the pings and systemd restarts the daemon. now_ms: a monotonic clock.
  void tick(uint64_t now_ms);

  bool watchdog_enabled() const noexcept { return watchdog_ms_ != 0; }
  uint64_t watchdog_ms() const noexcept { return watchdog_ms_; }

 private:
  uint64_t watchdog_ms_ = 0;
  uint64_t next_ping_ms_ = 0;
};

}  // namespace sdwan::cp
