#include "control/mgmt/client.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>
#include <system_error>

#include <fmt/format.h>

namespace sdwan::cp {

namespace {

using Clock = std::chrono::steady_clock;

// Far above any answer the schemas produce; only guards against a runaway peer.
constexpr std::size_t kMaxAnswer = 256u * 1024 * 1024;

std::string errno_text(int e) { return std::error_code(e, std::system_category()).message(); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Names who may connect, from the socket file itself: the daemon's config is not readable
// from here, but the file's group and mode say the same thing.
std::string permission_hint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "needs root or the socket's group";
  if ((st.st_mode & S_IWGRP) == 0 || st.st_gid == 0) return "needs root";
  if (const struct group* g = ::getgrgid(st.st_gid); g != nullptr)
    return fmt::format("needs root or group {}", g->gr_name);
  return fmt::format("needs root or group {}", st.st_gid);
}

std::string connect_error(const std::string& path, int e, int timeout_ms) {
  switch (e) {
    case ENOENT:
    case ECONNREFUSED:
      return fmt::format("cannot connect to sdwand at {}: {} (is sdwand running?)", path,
                         errno_text(e));
    case EACCES:
    case EPERM:
      return fmt::format("cannot connect to sdwand at {}: {} ({})", path, errno_text(e),
                         permission_hint(path));
    case EAGAIN:
    case EINPROGRESS:
    case ETIMEDOUT:
      return fmt::format("cannot connect to sdwand at {}: not accepted within {} ms (is sdwand stuck?)",
                         path, timeout_ms);
    default:
      return fmt::format("cannot connect to sdwand at {}: {}", path, errno_text(e));
  }
}

// Milliseconds left for poll(): -1 (no limit) when timeout_ms < 0, else never negative.
int remaining_ms(std::optional<Clock::time_point> deadline) {
  if (!deadline) return -1;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(0, left));
}

}  // namespace

Result<nlohmann::json> mgmt_request(const std::string& socket_path, const nlohmann::json& req,
                                    int timeout_ms) {
  std::optional<Clock::time_point> deadline;
  if (timeout_ms >= 0) deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty()) return err("no sdwand socket path given");
  if (socket_path.size() >= sizeof(addr.sun_path))
    return err(fmt::format("socket path {} is too long (at most {} bytes)", socket_path,
                           sizeof(addr.sun_path) - 1));
  std::copy(socket_path.begin(), socket_path.end(), addr.sun_path);

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return err(fmt::format("cannot create a socket: {}", errno_text(errno)));
  // A Unix connect() only waits when the daemon's backlog is full, and then for SO_SNDTIMEO.
  if (timeout_ms >= 0) {
    timeval tv{};
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    if (timeout_ms == 0) tv.tv_usec = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return err(connect_error(socket_path, errno, timeout_ms));
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) != 0)
    return err(fmt::format("cannot set the socket non-blocking: {}", errno_text(errno)));

  const std::string line =
      req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const std::string timeout_msg =
      fmt::format("no answer from sdwand at {} within {} ms", socket_path, timeout_ms);

  // A send failure is remembered, not returned at once: the daemon may have closed us after
  // writing why (too many clients, permission denied), and that line is the better error.
  int send_errno = 0;
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t w = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::size_t>(w);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      send_errno = errno;
      break;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n == 0) return err(timeout_msg);
    if (n < 0 && errno != EINTR) return err(fmt::format("poll failed: {}", errno_text(errno)));
  }

  std::string answer;
  std::size_t nl = std::string::npos;
  bool closed = false;
  while (nl == std::string::npos && !closed) {
    char buf[16 * 1024];
    const ssize_t r = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (r > 0) {
      const std::size_t old = answer.size();
      answer.append(buf, static_cast<std::size_t>(r));
      nl = answer.find('\n', old);
      if (nl == std::string::npos && answer.size() > kMaxAnswer)
        return err(fmt::format("answer from sdwand at {} exceeds {} bytes", socket_path,
                               kMaxAnswer));
      continue;
    }
    if (r == 0) {
      closed = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      closed = true;
      break;
    }
    pollfd p{fd.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n == 0) return err(timeout_msg);
    if (n < 0 && errno != EINTR) return err(fmt::format("poll failed: {}", errno_text(errno)));
  }
  if (nl == std::string::npos) {
    if (send_errno != 0 && answer.empty())
      return err(fmt::format("cannot send to sdwand at {}: {}", socket_path,
                             errno_text(send_errno)));
    return err(fmt::format("sdwand at {} closed the connection without a complete answer",
                           socket_path));
  }
  answer.resize(nl);

  nlohmann::json resp;
  try {
    resp = nlohmann::json::parse(answer);
  } catch (const nlohmann::json::parse_error& e) {
    return err(fmt::format("malformed answer from sdwand at {}: {}", socket_path, e.what()));
  }
  if (!resp.is_object() || !resp.contains("ok") || !resp["ok"].is_boolean())
    return err(fmt::format("malformed answer from sdwand at {}: no boolean \"ok\" field",
                           socket_path));
  if (resp["ok"].get<bool>()) {
    auto it = resp.find("data");
    if (it == resp.end()) return nlohmann::json(nullptr);
    return std::move(*it);
  }
  auto it = resp.find("error");
  if (it != resp.end() && it->is_string()) return err(it->get<std::string>());
  return err(fmt::format("sdwand at {} reported an error without a message", socket_path));
}

}  // namespace sdwan::cp
