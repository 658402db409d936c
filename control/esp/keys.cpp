#include "control/esp/keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <openssl/crypto.h>

namespace sdwan::cp {
namespace {

constexpr size_t kMaxKeyFileBytes = 64 * 1024;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Wipes a buffer that held key text, whatever happens to the parse.
struct Wipe {
  void* p;
  size_t n;
  ~Wipe() { OPENSSL_cleanse(p, n); }
};

}  // namespace

MasterKey MasterKey::from_bytes(std::span<const uint8_t, kMasterKeyBytes> b) noexcept {
  MasterKey k;
  std::memcpy(k.k_.data(), b.data(), kMasterKeyBytes);
  return k;
}

MasterKey::MasterKey(MasterKey&& o) noexcept : k_(o.k_) { OPENSSL_cleanse(o.k_.data(), o.k_.size()); }

MasterKey& MasterKey::operator=(MasterKey&& o) noexcept {
  if (this != &o) {
    k_ = o.k_;
    OPENSSL_cleanse(o.k_.data(), o.k_.size());
  }
  return *this;
}

MasterKey::~MasterKey() { OPENSSL_cleanse(k_.data(), k_.size()); }

Result<MasterKey> parse_master_key(std::string_view text, const std::string& name) {
  constexpr const char* kWant = "expected 64 hex digits (a 256-bit key)";
  std::array<uint8_t, kMasterKeyBytes> raw{};
  Wipe wipe_raw{raw.data(), raw.size()};
  size_t key_line = 0;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    ++line_no;
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r'))
      line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (key_line != 0)
      return err(fmt::format("{}:{}: a second key line (the first is line {}); the file holds exactly one key",
                             name, line_no, key_line));
    key_line = line_no;
    // Messages say where and how long, never which characters: they may be most of a key.
    for (size_t i = 0; i < line.size(); ++i)
      if (hex_value(line[i]) < 0)
        return err(fmt::format("{}:{}: {}, got a character that is not a hex digit at column {}", name,
                               line_no, kWant, i + 1));
    if (line.size() != 2 * kMasterKeyBytes)
      return err(fmt::format("{}:{}: {}, got {} hex digits", name, line_no, kWant, line.size()));
    for (size_t i = 0; i < kMasterKeyBytes; ++i)
      raw[i] = static_cast<uint8_t>(hex_value(line[2 * i]) << 4 | hex_value(line[2 * i + 1]));
  }
  if (key_line == 0) return err(fmt::format("{}: no key found, {} on one line", name, kWant));
  uint8_t any = 0;
  for (uint8_t b : raw) any |= b;
  if (any == 0) return err(fmt::format("{}:{}: the key is all zeros; generate one with: openssl rand -hex 32", name, key_line));
  return MasterKey::from_bytes(raw);
}

Status check_key_file(const std::string& path, uint32_t st_mode, uint32_t st_uid, uint32_t euid) {
  if (!S_ISREG(st_mode)) return err(fmt::format("{}: not a regular file; the master key must be in a plain file", path));
  if (st_uid != 0 && st_uid != euid)
    return err(fmt::format("{}: owned by uid {}, expected root (uid 0){}; fix: chown root {}", path, st_uid,
                           euid == 0 ? "" : fmt::format(" or this daemon's uid {}", euid), path));
  const uint32_t perm = st_mode & 07777;
  if ((perm & ~uint32_t{0600}) != 0)
    return err(fmt::format("{}: mode {:04o} is too open, expected 0600 or stricter (no group, other, execute or "
                           "special bits); fix: chmod 600 {}",
                           path, perm, path));
  return Ok{};
}

Result<MasterKey> load_master_key(const std::string& path) {
  // O_NONBLOCK: a FIFO in the key's place must not hang start-up; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return err(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return err(fmt::format("{}: cannot read: {}", path, std::strerror(e)));
  }
  if (Status s = check_key_file(path, st.st_mode, st.st_uid, ::geteuid()); !s) {
    ::close(fd);
    return s.error();
  }
  std::array<char, kMaxKeyFileBytes + 1> buf;
  Wipe wipe_buf{buf.data(), buf.size()};
  size_t n = 0;
  while (n < buf.size()) {
    const ssize_t r = ::read(fd, buf.data() + n, buf.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int e = errno;
      ::close(fd);
      return err(fmt::format("{}: cannot read: {}", path, std::strerror(e)));
    }
    if (r == 0) break;
    n += static_cast<size_t>(r);
  }
  ::close(fd);
  if (n > kMaxKeyFileBytes)
    return err(fmt::format("{}: larger than {} bytes; a key file holds one line of 64 hex digits", path,
                           kMaxKeyFileBytes));
  return parse_master_key(std::string_view(buf.data(), n), path);
}

}  // namespace sdwan::cp
