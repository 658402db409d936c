#include "control/esp/epoch_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace sdwan::cp {
namespace {

std::optional<Endpoint> parse_endpoint(std::string_view s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4::parse(s.substr(0, colon));
  const std::string_view port = s.substr(colon + 1);
  unsigned v = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (!ip || port.empty() || ec != std::errc{} || end != port.data() + port.size() || v > 65535) return std::nullopt;
  return Endpoint{*ip, static_cast<uint16_t>(v)};
}

Endpoint from_order(uint64_t o) { return Endpoint{Ipv4{static_cast<uint32_t>(o >> 16)}, static_cast<uint16_t>(o)}; }

Status write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return err(std::strerror(errno));
    done += static_cast<size_t>(w);
  }
  return Ok{};
}

}  // namespace

Result<EpochStore> EpochStore::open(const std::string& path) {
  EpochStore st(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return st;
    return err(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  }
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno != 0) return err(fmt::format("{}: cannot read: {}", path, std::strerror(read_errno)));
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    ++line_no;
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (line.empty() || line.front() == '#') continue;
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    auto bad = [&] {
      return err(fmt::format("{}:{}: expected \"LOCAL_IP:PORT REMOTE_IP:PORT EPOCH\", got \"{}\"", path, line_no,
                             line.substr(0, 60)));
    };
    if (sp2 == std::string_view::npos) return bad();
    auto local = parse_endpoint(line.substr(0, sp1));
    auto remote = parse_endpoint(line.substr(sp1 + 1, sp2 - sp1 - 1));
    const std::string_view num = line.substr(sp2 + 1);
    uint32_t epoch = 0;
    auto [e, ec] = std::from_chars(num.data(), num.data() + num.size(), epoch);
    if (!local || !remote || num.empty() || ec != std::errc{} || e != num.data() + num.size()) return bad();
    uint32_t& h = st.high_[{local->order(), remote->order()}];
    h = std::max(h, epoch);
  }
  return st;
}

Result<uint32_t> EpochStore::next_epoch(const Endpoint& local, const Endpoint& remote) const {
  auto it = high_.find({local.order(), remote.order()});
  if (it == high_.end()) return uint32_t{0};
  if (it->second >= std::numeric_limits<uint32_t>::max() - 1024)
    return err(fmt::format("{}: path {}:{} -> {}:{} has used up its epochs; change the master key", path_,
                           local.ip.str(), local.port, remote.ip.str(), remote.port));
  return it->second + 1;
}

Status EpochStore::commit(std::span<const SaAction> actions) {
  bool changed = false;
  for (const SaAction& a : actions) {
    if (a.kind != SaAction::Kind::kInstallOutbound) continue;
    auto [it, inserted] = high_.try_emplace({a.sa.src.order(), a.sa.dst.order()}, a.sa.epoch);
    if (inserted || a.sa.epoch > it->second) {
      it->second = a.sa.epoch;
      changed = true;
    }
  }
  return changed ? write() : Status(Ok{});
}

Status EpochStore::write() const {
  std::string text = "# sdwand: highest ESP epoch sent under, per path. Never edit or delete while the master key stays.\n";
  for (const auto& [k, e] : high_) {
    const Endpoint l = from_order(k.first), r = from_order(k.second);
    text += fmt::format("{}:{} {}:{} {}\n", l.ip.str(), l.port, r.ip.str(), r.port, e);
  }
  const std::string tmp = path_ + ".tmp";
  auto fail = [&](const char* what, int e) {
    return err(fmt::format("{}: cannot {}: {}", tmp, what, std::strerror(e)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail("create", errno);
  if (Status s = write_all(fd, text); !s) {
    ::close(fd);
    return err(fmt::format("{}: cannot write: {}", tmp, s.error().msg));
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return fail("fsync", e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0)
    return err(fmt::format("{}: cannot replace with {}: {}", path_, tmp, std::strerror(errno)));
  // The rename is durable only once the directory entry is.
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return err(fmt::format("{}: cannot open to fsync: {}", dir, std::strerror(errno)));
  const int r = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  if (r != 0) return err(fmt::format("{}: cannot fsync: {}", dir, std::strerror(e)));
  return Ok{};
}

}  // namespace sdwan::cp
