#include "control/esp/keylog.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <openssl/crypto.h>

namespace sdwan::cp {

Result<KeyLog> KeyLog::open(const std::string& path) {
  // O_NOFOLLOW: a symlink planted at the path must not redirect keys elsewhere.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                        0600);
  if (fd < 0) return err(fmt::format("{}: cannot open the key log: {}", path, std::strerror(errno)));
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0)
    problem = fmt::format("cannot stat the key log: {}", std::strerror(errno));
  else if (!S_ISREG(st.st_mode))
    problem = "the key log is not a regular file";
  else if (st.st_uid != ::geteuid())
    problem = fmt::format("the key log is owned by uid {}, not by this daemon (uid {})", st.st_uid, ::geteuid());
  else if ((st.st_mode & 07777) != 0600 && ::fchmod(fd, 0600) != 0)
    problem = fmt::format("cannot set the key log to mode 0600: {}", std::strerror(errno));
  if (!problem.empty()) {
    ::close(fd);
    return err(fmt::format("{}: {}", path, problem));
  }
  return KeyLog(fd, path);
}

KeyLog::KeyLog(KeyLog&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

KeyLog& KeyLog::operator=(KeyLog&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

KeyLog::~KeyLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status KeyLog::append(const SaName& sa, const SaKeys& keys) {
  static constexpr char kHex[] = "0123456789abcdef";
  char hex[2 * (sizeof keys.key + sizeof keys.salt) + 1] = {};
  size_t h = 0;
  auto put = [&](uint8_t b) {
    hex[h++] = kHex[b >> 4];
    hex[h++] = kHex[b & 15];
  };
  for (uint8_t b : keys.key) put(b);
  for (uint8_t b : keys.salt) put(b);
  // Fixed-size buffer: the line is at most ~170 bytes and is wiped before returning.
  char line[256];
  // The column order and names of Wireshark's esp_sa table (4.0): protocol, source, destination,
  // SPI, encryption, encryption key, authentication, authentication key.
  const auto r = fmt::format_to_n(
      line, sizeof line,
      "\"IPv4\",\"{}\",\"{}\",\"0x{:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{}\",\"NULL\",\"\"\n",
      sa.src.ip.str(), sa.dst.ip.str(), sa.spi, std::string_view(hex, h));
  OPENSSL_cleanse(hex, sizeof hex);
  Status st = Ok{};
  if (r.size > sizeof line) {
    st = err(fmt::format("{}: key log line too long", path_));
  } else {
    const ssize_t w = ::write(fd_, line, r.size);
    if (w < 0) st = err(fmt::format("{}: cannot append to the key log: {}", path_, std::strerror(errno)));
    else if (static_cast<size_t>(w) != r.size) st = err(fmt::format("{}: short write to the key log", path_));
  }
  OPENSSL_cleanse(line, sizeof line);
  return st;
}

}  // namespace sdwan::cp
