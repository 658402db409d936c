// The ESP key log (like SSLKEYLOGFILE for TLS): off unless the operator names a file; each SA
// is appended as one line of Wireshark's esp_sa table, so a capture can be decrypted
// (docs/keys.md "Key log"). This file is the only place keys are ever written. Control thread.
#pragma once

#include <string>
#include <utility>

#include "control/esp/derive.hpp"
#include "dataplane/api/result.hpp"

namespace sdwan::cp {

class KeyLog {
 public:
  /// Opens PATH for appending, creating it with mode 0600. An existing file must be a regular
  /// file owned by this euid; it is set to 0600 if it was more open. Errors: "PATH: REASON".
  static Result<KeyLog> open(const std::string& path);
  KeyLog(KeyLog&& o) noexcept;
  KeyLog& operator=(KeyLog&& o) noexcept;
  KeyLog(const KeyLog&) = delete;
  KeyLog& operator=(const KeyLog&) = delete;
  ~KeyLog();

  /// Appends sa as one line with a single write(2), so lines never interleave:
  ///   "IPv4","SRC","DST","0xSPI","AES-GCM with 16 octet ICV [RFC4106]","0xKEY||SALT","NULL",""
  Status append(const SaName& sa, const SaKeys& keys);

  const std::string& path() const noexcept { return path_; }

 private:
  KeyLog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace sdwan::cp
