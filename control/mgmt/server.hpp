// The management socket: newline-delimited JSON over a Unix stream socket (docs/mgmt-api.md).
// Lives on the control thread and never blocks it: non-blocking sockets, bounded buffers.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// Longest request line the server accepts (bytes, newline excluded); longer closes the connection.
inline constexpr std::size_t kMgmtMaxLine = 64 * 1024;
/// Most clients connected at once; the next one gets an error line and is closed.
inline constexpr std::size_t kMgmtMaxClients = 32;
/// Unread answers a client may leave queued (bytes) before it is dropped.
inline constexpr std::size_t kMgmtMaxPendingOutput = 4 * 1024 * 1024;

/// Who is on the other end of a connection, as the kernel reports it (SO_PEERCRED, SO_PEERGROUPS).
struct PeerCred {
  uid_t uid = 0;                 ///< effective uid of the connecting process
  gid_t gid = 0;                 ///< its effective gid
  std::vector<gid_t> groups;     ///< its supplementary groups
};

/// True if peer may use the API: root, the daemon's own user (it owns the socket file), or a
/// member of group when one is configured (nullopt = root only). Pure, any thread.
bool mgmt_peer_allowed(const PeerCred& peer, uid_t daemon_uid, std::optional<gid_t> group);

/// Serves the management API on one Unix socket. Control thread only; owns its socket file.
class MgmtServer {
 public:
  /// Answers one request: the request object in, the response's "data" out. Failure: return an
  /// Error or throw std::exception; either becomes {"ok":false,"error":msg}. Control thread.
  using Handler = std::function<Result<nlohmann::json>(const nlohmann::json& request)>;

  /// Creates path's parent directory if missing (mode 0755), refuses a path another live daemon
  /// answers on, replaces a stale socket file, binds, sets mode 0600 (group empty) or 0660 and
  /// chgrp to group, then listens. Fails with an operator-ready Error. Control thread.
  static Result<std::unique_ptr<MgmtServer>> listen(const std::string& path,
                                                    const std::string& group, Handler h);

  /// Accepts, reads, answers and writes whatever is ready, waiting at most timeout_ms
  /// (0 = just look) for something to happen. Never blocks longer. Control thread.
  void poll(int timeout_ms);

  /// How many clients are connected now. Control thread.
  std::size_t client_count() const noexcept { return conns_.size(); }

  /// The socket's path as given to listen(). Control thread.
  const std::string& path() const noexcept { return path_; }

  /// Closes every connection and unlinks the socket file if it is still the one we bound.
  ~MgmtServer();

  /// Not copyable or movable: it owns file descriptors and a file on disk.
  MgmtServer(const MgmtServer&) = delete;
  /// Not assignable, for the same reason.
  MgmtServer& operator=(const MgmtServer&) = delete;

 private:
  struct Conn {
    int fd = -1;
    std::string in;       // bytes received, not yet a complete line
    std::string out;      // answers not yet written
    std::size_t out_off = 0;
    bool eof = false;     // the client shut its side; answer what it sent, then close
    bool dead = false;    // closed at the end of this poll()
  };

  MgmtServer(std::string path, int fd, std::string group_name, std::optional<gid_t> group,
             dev_t dev, ino_t ino, Handler h);
  int wait(int timeout_ms);
  void serve();
  void accept_ready();
  void read_ready(Conn& c);
  void answer_line(Conn& c, std::string_view line);
  void queue(Conn& c, const nlohmann::json& response);
  void flush(Conn& c);

  std::string path_;
  int listen_fd_ = -1;
  std::string group_name_;
  std::optional<gid_t> group_;
  dev_t dev_ = 0;         // identity of the socket file we bound, so ~MgmtServer never
  ino_t ino_ = 0;         // unlinks a file that a newer daemon put at the same path
  uid_t own_uid_ = 0;
  Handler handler_;
  std::vector<Conn> conns_;
  std::vector<struct pollfd> pfds_;  // reused by every poll() call
};

}  // namespace sdwan::cp
