#include "control/mgmt/server.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace sdwan::cp {

namespace {

// Bounds the work one poll() does for one client, so a client streaming requests cannot hold
// the control thread; whatever is left is picked up by the next poll().
constexpr std::size_t kReadBudget = 256 * 1024;
// Bounds accepts per poll() for the same reason under a connection flood.
constexpr int kAcceptBudget = 64;
constexpr int kBacklog = 64;

std::string errno_text(int e) { return std::error_code(e, std::system_category()).message(); }

std::string dump_line(const nlohmann::json& j) {
  // replace: a handler may hand us bytes that are not UTF-8 (interface names, file contents);
  // the default handler would throw and lose the whole answer.
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  s += '\n';
  return s;
}

nlohmann::json error_response(std::string msg) {
  return nlohmann::json{{"ok", false}, {"error", std::move(msg)}};
}

// Best effort, one non-blocking send: the connection is being closed either way.
void reject(int fd, std::string msg) {
  const std::string line = dump_line(error_response(std::move(msg)));
  [[maybe_unused]] ssize_t w = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

bool fill_addr(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  std::copy(path.begin(), path.end(), addr.sun_path);
  return true;
}

// Creates each missing directory of dir with mode 0755. chmod after mkdir because the umask
// may have stripped the search bits that group members need to reach the socket.
Status make_dirs(const std::string& dir) {
  if (dir.empty()) return Ok{};
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string part = dir.substr(0, pos);
    struct stat st {};
    if (::stat(part.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        return err(fmt::format("cannot create directory {}: {} exists and is not a directory",
                               dir, part));
      continue;
    }
    if (errno != ENOENT)
      return err(fmt::format("cannot create directory {}: {}", part, errno_text(errno)));
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
      return err(fmt::format("cannot create directory {}: {}", part, errno_text(errno)));
    if (::chmod(part.c_str(), 0755) != 0)
      return err(fmt::format("cannot set mode 0755 on {}: {}", part, errno_text(errno)));
  }
  return Ok{};
}

Result<gid_t> lookup_group(const std::string& name) {
  struct group gr {};
  struct group* found = nullptr;
  std::vector<char> buf(4096);
  for (;;) {
    const int rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0)
      return err(fmt::format("cannot look up management socket group {}: {}", name,
                             errno_text(rc)));
    if (found == nullptr)
      return err(fmt::format("management socket group {} does not exist", name));
    return found->gr_gid;
  }
}

// A socket file is stale when nobody listens on it: connect() is refused. Anything that
// accepts (or queues us in a full backlog) is a live daemon we must not steal the path from.
Status clear_stale(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok{};
    return err(fmt::format("cannot check socket {}: {}", path, errno_text(errno)));
  }
  if (!S_ISSOCK(st.st_mode))
    return err(fmt::format("{} exists and is not a socket; refusing to replace it", path));
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) return err(fmt::format("cannot create a socket: {}", errno_text(errno)));
  const int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int e = errno;
  ::close(probe);
  if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
    return err(fmt::format("socket {} is in use by a running sdwand", path));
  if (e != ECONNREFUSED)
    return err(fmt::format("cannot check socket {}: {}", path, errno_text(e)));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return err(fmt::format("cannot remove stale socket {}: {}", path, errno_text(errno)));
  return Ok{};
}

PeerCred peer_cred(int fd, bool& ok) {
  PeerCred p;
  struct ucred uc {};
  socklen_t len = sizeof(uc);
  ok = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0;
  if (!ok) return p;
  p.uid = uc.uid;
  p.gid = uc.gid;
  // SO_PEERGROUPS reports the groups the process actually holds, which /etc/group cannot
  // (newgrp, sg, groups granted by PAM) and needs no NSS lookup on the control thread.
  p.groups.resize(32);
  for (int tries = 0; tries < 4; ++tries) {
    socklen_t glen = static_cast<socklen_t>(p.groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p.groups.data(), &glen) == 0) {
      p.groups.resize(glen / sizeof(gid_t));
      return p;
    }
    if (errno != ERANGE) break;
    p.groups.resize(glen / sizeof(gid_t) + 1);
  }
  p.groups.clear();
  return p;
}

}  // namespace

bool mgmt_peer_allowed(const PeerCred& peer, uid_t daemon_uid, std::optional<gid_t> group) {
  if (peer.uid == 0 || peer.uid == daemon_uid) return true;
  if (!group) return false;
  if (peer.gid == *group) return true;
  return std::find(peer.groups.begin(), peer.groups.end(), *group) != peer.groups.end();
}

Result<std::unique_ptr<MgmtServer>> MgmtServer::listen(const std::string& path,
                                                       const std::string& group, Handler h) {
  sockaddr_un addr{};
  if (path.empty()) return err("management socket path is empty");
  if (!fill_addr(path, addr))
    return err(fmt::format("management socket path {} is too long (at most {} bytes)", path,
                           sizeof(addr.sun_path) - 1));
  std::optional<gid_t> gid;
  if (!group.empty()) {
    auto g = lookup_group(group);
    if (!g) return g.error();
    gid = *g;
  }
  const auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    if (auto st = make_dirs(path.substr(0, slash)); !st) return st.error();
  }
  if (auto st = clear_stale(path, addr); !st) return st.error();

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return err(fmt::format("cannot create a socket: {}", errno_text(errno)));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EADDRINUSE) return err(fmt::format("socket {} is in use by a running sdwand", path));
    return err(fmt::format("cannot bind management socket {}: {}", path, errno_text(e)));
  }
  // Until listen() below, connects are refused, so setting mode and group here leaves no
  // window in which a wider audience could connect.
  auto fail = [&](std::string msg) -> Result<std::unique_ptr<MgmtServer>> {
    ::close(fd);
    ::unlink(path.c_str());
    return err(std::move(msg));
  };
  if (gid && ::chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0)
    return fail(fmt::format("cannot give socket {} to group {}: {}", path, group,
                            errno_text(errno)));
  if (::chmod(path.c_str(), gid ? 0660 : 0600) != 0)
    return fail(fmt::format("cannot set mode on socket {}: {}", path, errno_text(errno)));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return fail(fmt::format("cannot stat socket {}: {}", path, errno_text(errno)));
  if (::listen(fd, kBacklog) != 0)
    return fail(fmt::format("cannot listen on socket {}: {}", path, errno_text(errno)));
  return std::unique_ptr<MgmtServer>(
      new MgmtServer(path, fd, group, gid, st.st_dev, st.st_ino, std::move(h)));
}

MgmtServer::MgmtServer(std::string path, int fd, std::string group_name,
                       std::optional<gid_t> group, dev_t dev, ino_t ino, Handler h)
    : path_(std::move(path)),
      listen_fd_(fd),
      group_name_(std::move(group_name)),
      group_(group),
      dev_(dev),
      ino_(ino),
      own_uid_(::geteuid()),
      handler_(std::move(h)) {}

MgmtServer::~MgmtServer() {
  for (Conn& c : conns_) ::close(c.fd);
  ::close(listen_fd_);
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
}

void MgmtServer::poll(int timeout_ms) {
  // EINTR and timeouts both mean "nothing to do now": the caller's loop calls again.
  if (wait(timeout_ms) <= 0) return;
  const bool incoming = (pfds_[0].revents & POLLIN) != 0;
  serve();
  if (incoming) accept_ready();
}

int MgmtServer::wait(int timeout_ms) {
  pfds_.clear();
  pfds_.push_back(pollfd{listen_fd_, POLLIN, 0});
  for (const Conn& c : conns_) {
    short ev = 0;
    if (!c.eof) ev |= POLLIN;
    if (c.out_off < c.out.size()) ev |= POLLOUT;
    pfds_.push_back(pollfd{c.fd, ev, 0});
  }
  return ::poll(pfds_.data(), pfds_.size(), timeout_ms);
}

void MgmtServer::serve() {
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    const short re = pfds_[i + 1].revents;
    if (re & POLLNVAL) {
      c.dead = true;
      continue;
    }
    if (!c.eof && (re & (POLLIN | POLLHUP | POLLERR))) read_ready(c);
    if (!c.dead && (re & (POLLOUT | POLLHUP | POLLERR))) flush(c);
  }
  std::erase_if(conns_, [](const Conn& c) {
    if (c.dead && c.fd >= 0) ::close(c.fd);
    return c.dead;
  });
}

void MgmtServer::accept_ready() {
  for (int budget = kAcceptBudget; budget > 0; --budget) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    bool ok = false;
    const PeerCred cred = peer_cred(fd, ok);
    if (!ok) {
      reject(fd, "cannot identify the connecting process");
      continue;
    }
    if (!mgmt_peer_allowed(cred, own_uid_, group_)) {
      reject(fd, group_ ? fmt::format("permission denied: root or group {} only", group_name_)
                        : std::string("permission denied: root only"));
      continue;
    }
    // A client may have left after this poll() looked: one that closes and reconnects at
    // once must find its old slot free, not be turned away.
    if (conns_.size() >= kMgmtMaxClients && wait(0) > 0) serve();
    if (conns_.size() >= kMgmtMaxClients) {
      reject(fd, fmt::format("too many management clients (at most {}); try again later",
                             kMgmtMaxClients));
      continue;
    }
    Conn c;
    c.fd = fd;
    conns_.push_back(std::move(c));
  }
}

void MgmtServer::read_ready(Conn& c) {
  char buf[16 * 1024];
  std::size_t budget = kReadBudget;
  while (budget > 0 && !c.dead) {
    const ssize_t r = ::recv(c.fd, buf, sizeof(buf), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) c.dead = true;
      break;
    }
    if (r == 0) {
      c.eof = true;
      break;
    }
    budget -= std::min(budget, static_cast<std::size_t>(r));
    // Only the new bytes can hold a newline: everything before them was already searched.
    const std::size_t old_size = c.in.size();
    c.in.append(buf, static_cast<std::size_t>(r));
    std::size_t start = 0;
    std::size_t nl = c.in.find('\n', old_size);
    while (nl != std::string::npos && !c.dead) {
      const std::size_t len = nl - start;
      if (len > kMgmtMaxLine) break;
      answer_line(c, std::string_view(c.in).substr(start, len));
      start = nl + 1;
      nl = c.in.find('\n', start);
    }
    c.in.erase(0, start);
    if (c.dead) return;
    const std::size_t line_len = c.in.find('\n');
    if ((line_len == std::string::npos ? c.in.size() : line_len) > kMgmtMaxLine) {
      reject(c.fd, fmt::format("request line longer than {} bytes; closing", kMgmtMaxLine));
      // reject() closed the descriptor; a new one may already reuse the number.
      c.fd = -1;
      c.dead = true;
      return;
    }
  }
  // A client that sends its last request without a newline and then shuts down its side
  // (printf ... | nc -U) still gets an answer.
  if (c.eof && !c.dead) {
    if (!c.in.empty()) {
      answer_line(c, c.in);
      c.in.clear();
    }
    if (c.out_off == c.out.size()) c.dead = true;
  }
  if (!c.dead && c.out_off < c.out.size()) flush(c);
}

void MgmtServer::answer_line(Conn& c, std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;

  nlohmann::json req;
  try {
    req = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    std::string_view what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: operators need the position.
    if (auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
    queue(c, error_response(fmt::format("malformed request: {}", what)));
    return;
  }
  if (!req.is_object()) {
    queue(c, error_response("malformed request: expected a JSON object"));
    return;
  }
  try {
    Result<nlohmann::json> r = handler_(req);
    if (r.ok())
      queue(c, nlohmann::json{{"ok", true}, {"data", std::move(r).value()}});
    else
      queue(c, error_response(r.error().msg));
  } catch (const std::exception& e) {
    queue(c, error_response(e.what()));
  } catch (...) {
    queue(c, error_response("internal error while answering the request"));
  }
}

void MgmtServer::queue(Conn& c, const nlohmann::json& response) {
  const std::string line = dump_line(response);
  const std::size_t pending = c.out.size() - c.out_off;
  // A single large answer is always queued; only answers piling up behind unread ones mean
  // the client is not reading, and it must not make the daemon hold unbounded memory.
  if (pending > 0 && pending + line.size() > kMgmtMaxPendingOutput) {
    c.dead = true;
    return;
  }
  c.out += line;
}

void MgmtServer::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t w = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      c.out_off += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    c.dead = true;
    return;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
    if (c.eof) c.dead = true;
  } else if (c.out_off >= 64 * 1024 && c.out_off * 2 >= c.out.size()) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
}

}  // namespace sdwan::cp
