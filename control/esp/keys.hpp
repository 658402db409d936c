// The appliance's master key: read from a root-only key file, kept in memory that is wiped on
// destruction, never printed. Control thread only (docs/keys.md "Key file").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "dataplane/api/result.hpp"

namespace sdwan::cp {

inline constexpr size_t kMasterKeyBytes = 32;

/// A 256-bit master key. Move-only; wipes itself (OPENSSL_cleanse) when destroyed or moved
/// from. Deliberately has no operator<< and no str(): it never reaches a log or the CLI.
class MasterKey {
 public:
  /// Wraps raw bytes (tests and a future key agreement); the caller wipes its own copy.
  static MasterKey from_bytes(std::span<const uint8_t, kMasterKeyBytes> b) noexcept;
  MasterKey(MasterKey&& o) noexcept;
  MasterKey& operator=(MasterKey&& o) noexcept;
  MasterKey(const MasterKey&) = delete;
  MasterKey& operator=(const MasterKey&) = delete;
  ~MasterKey();
  /// The key bytes, valid while this object lives; for HKDF only.
  std::span<const uint8_t, kMasterKeyBytes> bytes() const noexcept { return k_; }

 private:
  MasterKey() = default;
  std::array<uint8_t, kMasterKeyBytes> k_{};
};

/// Parses key file text: exactly one line of 64 hex digits (either case); blank lines and
/// lines starting with '#' are ignored; trailing spaces, tabs and '\r' are tolerated. Errors read
/// "NAME:LINE: what was expected, got what was found" and never contain key characters.
Result<MasterKey> parse_master_key(std::string_view text, const std::string& name);

/// Checks a key file's owner and mode as fstat returned them: a regular file owned by root or
/// by euid, with no permission bits beyond 0600. Errors name the path, what was found and the
/// fix ("chmod 600 PATH", "chown root PATH").
Status check_key_file(const std::string& path, uint32_t st_mode, uint32_t st_uid, uint32_t euid);

/// Opens PATH, checks it with check_key_file (on the opened file, so a swap in between does
/// not matter), reads at most 64 KiB and parses it. Unreadable: "PATH: cannot read: REASON".
Result<MasterKey> load_master_key(const std::string& path);

}  // namespace sdwan::cp
