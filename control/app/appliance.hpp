// The running appliance: EAL, ports, workers, neighbour resolution, snapshots and the
// management socket, driven by one control thread (the EAL main lcore).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "control/config/config.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

class Appliance {
 public:
  /// Brings everything up: management socket, EAL, ports, workers, first snapshot. Call
  /// once per process (EAL cannot be initialised twice). Errors are one line for the operator.
  static Result<std::unique_ptr<Appliance>> start(const Config& cfg);

  /// Control loop until stop is set. Returns the process exit code. reload (SIGHUP): when set,
  /// the loop clears it and reloads the config file, as `sdwanctl reload` does.
  int run(const std::atomic<bool>& stop, std::atomic<bool>* reload = nullptr);

  /// Stops workers, ports, frees memory, removes the socket, cleans up EAL.
  ~Appliance();

  struct Impl;

 private:
  explicit Appliance(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The version string shown by --version and `sdwanctl show version`.
const char* version();

}  // namespace sdwan::cp
