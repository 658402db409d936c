// The highest epoch this appliance has sent under, per path, kept on disk. Derived keys are a
// function of (master key, path, epoch), and AES-GCM must never see the same key and IV twice:
// after a restart the sequence numbers start again at 1, so every path must start at an epoch
// it has never sent under (docs/keys.md "Epochs across restarts"). Control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>

#include "control/esp/derive.hpp"
#include "control/esp/sa_table.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

class EpochStore {
 public:
  /// Reads PATH ("LOCAL_IP:PORT REMOTE_IP:PORT EPOCH" lines, '#' comments). A missing file is
  /// an empty store (first start); anything unreadable or malformed is "PATH:LINE: ...".
  static Result<EpochStore> open(const std::string& path);

  /// The epoch a path (re)starts at: one past the highest committed, or 0 if none. Fails when
  /// the epochs of the path are used up (the master key must then change).
  Result<uint32_t> next_epoch(const Endpoint& local, const Endpoint& remote) const;

  /// Records the epoch of every kInstallOutbound in actions, and if any is new, rewrites the
  /// file (temporary file, fsync, rename, fsync of the directory) before returning. Call it
  /// before applying the actions; on failure, do not apply the outbound installs.
  Status commit(std::span<const SaAction> actions);

  const std::string& path() const noexcept { return path_; }

 private:
  explicit EpochStore(std::string path) : path_(std::move(path)) {}
  Status write() const;
  std::string path_;
  std::map<std::pair<uint64_t, uint64_t>, uint32_t> high_;  // (local, remote) order() -> epoch
};

}  // namespace sdwan::cp
