// sdwan-wanem: the lab's WAN emulator, a two-port AF_PACKET bridge that delays, jitters,
// drops, rate-limits or blacks out the frames it forwards, changeable at run time over a
// Unix control socket. One thread: epoll over both ports, a timerfd for the delay line, a
// signalfd and the control connections. README.md in this folder is the manual.

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "emulator.hpp"

namespace sdwan::wanem {
namespace {

/// Largest frame a port receives whole: a 64 KiB GSO super-frame and its Ethernet header.
/// Standard and jumbo (9216) frames fit many times over.
constexpr size_t kRxFrameMax = 65536 + 256;
constexpr size_t kRxBatch = 32;
/// recvmmsg calls per port per wake-up, so one busy port cannot starve the other or the timer.
constexpr int kRxRoundsPerWake = 4;
constexpr size_t kMaxClients = 16;
constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxPendingOutput = 1 << 20;
constexpr int kSocketBufferBytes = 16 << 20;
/// A kernel receive timestamp older than this is not trusted (clock step) and "now" is used.
constexpr int64_t kMaxTimestampAgeNs = 1'000'000'000;
/// virtio_net_hdr flag: the checksum was verified. Meaningless on transmit, so not echoed.
constexpr uint8_t kVnetDataValid = 2;

enum Tag : uint64_t { kTagPortA, kTagPortB, kTagTimer, kTagSignal, kTagListen, kTagClient };

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string errno_text() { return std::strerror(errno); }

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }

void set_int(int fd, int level, int opt, int value, const char* what, const std::string& ifname) {
  if (setsockopt(fd, level, opt, &value, sizeof value) != 0) {
    fail(fmt::format("{}: setsockopt {}: {}", ifname, what, errno_text()));
  }
}

// One side of the bridge: an AF_PACKET socket bound to one interface, with preallocated
// receive and send batches.
class Port {
 public:
  explicit Port(std::string ifname) : ifname_(std::move(ifname)), rxbuf_(kRxBatch * kRxFrameMax) {
    ifindex_ = static_cast<int>(if_nametoindex(ifname_.c_str()));
    if (ifindex_ == 0) {
      fail(fmt::format("interface {} does not exist in this network namespace", ifname_));
    }
    // Protocol 0 until bind: an ETH_P_ALL socket would queue frames of every interface
    // between socket() and bind().
    fd_ = Fd(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd_.get() < 0) fail(fmt::format("{}: AF_PACKET socket: {}", ifname_, errno_text()));
    int fd = fd_.get();
    // Our own transmissions would otherwise come back on this socket and loop.
    set_int(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING", ifname_);
    // Through the qdisc, so a tbf (or anything) on the egress veth still applies.
    set_int(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 0, "PACKET_QDISC_BYPASS", ifname_);
    // Offload metadata travels with each frame, so partial checksums and GSO super-frames
    // from kernel hosts are forwarded intact instead of arriving corrupt.
    set_int(fd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR", ifname_);
    // The kernel's arrival time: delays count from when the frame reached the veth, not from
    // when this process woke up.
    set_int(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS", ifname_);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kSocketBufferBytes, sizeof(int)) != 0) {
      set_int(fd, SOL_SOCKET, SO_RCVBUF, kSocketBufferBytes, "SO_RCVBUF", ifname_);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &kSocketBufferBytes, sizeof(int)) != 0) {
      set_int(fd, SOL_SOCKET, SO_SNDBUF, kSocketBufferBytes, "SO_SNDBUF", ifname_);
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex_;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      fail(fmt::format("{}: bind AF_PACKET: {}", ifname_, errno_text()));
    }
    packet_mreq mr{};
    mr.mr_ifindex = ifindex_;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) != 0) {
      fail(fmt::format("{}: promiscuous mode: {}", ifname_, errno_text()));
    }
    for (size_t i = 0; i < kRxBatch; ++i) {
      rx_iov_[2 * i] = {&rx_vnet_[i], sizeof(VnetHdr)};
      rx_iov_[2 * i + 1] = {rxbuf_.data() + i * kRxFrameMax, kRxFrameMax};
    }
    for (size_t i = 0; i < kTxBatch; ++i) {
      tx_iov_[2 * i] = {&tx_vnet_[i], sizeof(VnetHdr)};
    }
  }

  int fd() const noexcept { return fd_.get(); }
  const std::string& name() const noexcept { return ifname_; }

  // Receives one batch and admits each frame into dl. Returns frames received, 0 when none
  // were waiting.
  size_t receive(DelayLine& dl, Rng& rng) {
    for (size_t i = 0; i < kRxBatch; ++i) {
      msghdr& h = rx_msgs_[i].msg_hdr;
      h = msghdr{};
      h.msg_iov = &rx_iov_[2 * i];
      h.msg_iovlen = 2;
      h.msg_control = rx_ctrl_[i].data();
      h.msg_controllen = rx_ctrl_[i].size();
    }
    int n = recvmmsg(fd_.get(), rx_msgs_.data(), kRxBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // ENETDOWN and friends: reported once per event by the kernel, then cleared.
        rx_errors_++;
      }
      return 0;
    }
    int64_t now = mono_ns();
    int64_t real_minus_mono = clock_ns(CLOCK_REALTIME) - now;
    for (int i = 0; i < n; ++i) {
      const msghdr& h = rx_msgs_[i].msg_hdr;
      size_t got = rx_msgs_[i].msg_len;
      size_t len = got > sizeof(VnetHdr) ? got - sizeof(VnetHdr) : 0;
      if ((h.msg_flags & MSG_TRUNC) != 0) {
        dl.count_oversize(len);
        continue;
      }
      if (len == 0) continue;
      int64_t arrival = now;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr;
           c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec ts{};
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          int64_t t = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec -
                      real_minus_mono;
          if (t <= now && now - t < kMaxTimestampAgeNs) arrival = t;
        }
      }
      dl.admit({rxbuf_.data() + static_cast<size_t>(i) * kRxFrameMax, len}, rx_vnet_[i],
               arrival, rng);
    }
    return static_cast<size_t>(n);
  }

  // Sends what dl has due. Returns false when the socket is full (EAGAIN): the caller waits
  // for EPOLLOUT and the frames stay in dl's send batch.
  bool send_due(DelayLine& dl) {
    for (;;) {
      // Lateness is taken when the batch is handed to the kernel: a frame has left the
      // emulator then. The kernel's own work in sendmmsg (a few us per frame, and on a veth
      // the peer's receive processing) is not counted, nor is time this thread might be
      // preempted inside the call after the frames were delivered.
      int64_t now = mono_ns();
      auto batch = dl.fill_tx(now);
      if (batch.empty()) return true;
      for (size_t i = 0; i < batch.size(); ++i) {
        tx_vnet_[i] = batch[i].vnet;
        tx_vnet_[i].flags &= static_cast<uint8_t>(~kVnetDataValid);
        tx_iov_[2 * i + 1] = {const_cast<uint8_t*>(batch[i].data), batch[i].len};
        msghdr& h = tx_msgs_[i].msg_hdr;
        h = msghdr{};
        h.msg_iov = &tx_iov_[2 * i];
        h.msg_iovlen = 2;
      }
      int n = sendmmsg(fd_.get(), tx_msgs_.data(), static_cast<unsigned>(batch.size()),
                       MSG_DONTWAIT);
      if (n > 0) {
        dl.tx_done(static_cast<size_t>(n), true, now);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return false;
      } else if (errno != EINTR) {
        // Refused for good (link down, qdisc drop, larger than the MTU): like a wire, drop it.
        dl.tx_done(1, false, now);
      }
    }
  }

  uint64_t rx_errors() const noexcept { return rx_errors_; }

 private:
  std::string ifname_;
  int ifindex_ = 0;
  Fd fd_;
  std::vector<uint8_t> rxbuf_;
  std::array<VnetHdr, kRxBatch> rx_vnet_{};
  std::array<iovec, 2 * kRxBatch> rx_iov_{};
  std::array<mmsghdr, kRxBatch> rx_msgs_{};
  std::array<std::array<char, CMSG_SPACE(sizeof(timespec)) + 64>, kRxBatch> rx_ctrl_{};
  std::array<VnetHdr, kTxBatch> tx_vnet_{};
  std::array<iovec, 2 * kTxBatch> tx_iov_{};
  std::array<mmsghdr, kTxBatch> tx_msgs_{};
  uint64_t rx_errors_ = 0;
};

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    fail(fmt::format("control socket path '{}' must be 1..{} bytes", path,
                     sizeof sa.sun_path - 1));
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

// Binds the control socket at path (mode 0600). A live emulator on that path is an error; a
// stale socket file is replaced; anything else there is left alone and refused.
Fd listen_control(const std::string& path) {
  sockaddr_un sa = unix_address(path);
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      fail(fmt::format("control socket path {} exists and is not a socket", path));
    }
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      fail(fmt::format("another process listens on control socket {}", path));
    }
    unlink(path.c_str());
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) fail(fmt::format("control socket: {}", errno_text()));
  mode_t old = umask(0077);  // never world-connectable, not even between bind and chmod
  int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int bind_errno = errno;
  umask(old);
  if (rc != 0) fail(fmt::format("bind {}: {}", path, std::strerror(bind_errno)));
  if (chmod(path.c_str(), 0600) != 0 || listen(fd.get(), 16) != 0) {
    std::string e = errno_text();
    unlink(path.c_str());
    fail(fmt::format("control socket {}: {}", path, e));
  }
  return fd;
}

struct Client {
  Fd fd;
  std::string in;
  std::string out;
  bool closing = false;   // refused (overlong line, too much unread output): no more commands
  bool shut = false;      // closing and the reply is out: our write side is shut
  bool eof = false;       // the peer shut its write side
  size_t discarded = 0;   // bytes read and ignored while closing
  uint32_t events = EPOLLIN;
};

class Loop {
 public:
  Loop(Emulator& emu, Port& a, Port& b, Fd listen_fd)
      : emu_(emu), a_(a), b_(b), listen_(std::move(listen_fd)) {
    ep_ = Fd(epoll_create1(EPOLL_CLOEXEC));
    timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sig_ = Fd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (ep_.get() < 0 || timer_.get() < 0 || sig_.get() < 0) {
      fail(fmt::format("epoll/timerfd/signalfd: {}", errno_text()));
    }
    add(a_.fd(), EPOLLIN, kTagPortA);
    add(b_.fd(), EPOLLIN, kTagPortB);
    add(timer_.get(), EPOLLIN, kTagTimer);
    add(sig_.get(), EPOLLIN, kTagSignal);
    add(listen_.get(), EPOLLIN, kTagListen);
  }

  // Runs until SIGTERM or SIGINT.
  void run() {
    std::array<epoll_event, 32> evs{};
    while (!stop_) {
      int n = epoll_wait(ep_.get(), evs.data(), static_cast<int>(evs.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(fmt::format("epoll_wait: {}", errno_text()));
      }
      for (int i = 0; i < n; ++i) dispatch(evs[i]);
      flush(Dir::up);
      flush(Dir::down);
      arm_timer();
    }
  }

 private:
  static uint64_t key(Tag t, uint64_t id = 0) { return (id << 8) | t; }

  void add(int fd, uint32_t events, uint64_t k) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = k;
    if (epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      fail(fmt::format("epoll_ctl: {}", errno_text()));
    }
  }

  void modify(int fd, uint32_t events, uint64_t k) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = k;
    epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev);
  }

  Port& egress(Dir d) { return d == Dir::up ? b_ : a_; }

  void dispatch(const epoll_event& ev) {
    auto tag = static_cast<Tag>(ev.data.u64 & 0xff);
    uint64_t id = ev.data.u64 >> 8;
    switch (tag) {
      case kTagPortA:
      case kTagPortB: {
        Port& p = tag == kTagPortA ? a_ : b_;
        Dir d = tag == kTagPortA ? Dir::up : Dir::down;
        if ((ev.events & EPOLLOUT) != 0) {
          blocked_[static_cast<int>(tag == kTagPortA ? Dir::down : Dir::up)] = false;
          modify(p.fd(), EPOLLIN, key(tag));
        }
        if ((ev.events & (EPOLLIN | EPOLLERR)) != 0) {
          for (int r = 0; r < kRxRoundsPerWake; ++r) {
            if (p.receive(emu_.line(d), emu_.rng()) < kRxBatch) break;
          }
        }
        break;
      }
      case kTagTimer: {
        uint64_t expirations = 0;
        (void)!read(timer_.get(), &expirations, sizeof expirations);
        armed_ns_ = -1;
        break;
      }
      case kTagSignal: {
        signalfd_siginfo si{};
        (void)!read(sig_.get(), &si, sizeof si);
        stop_ = true;
        break;
      }
      case kTagListen:
        accept_clients();
        break;
      case kTagClient:
        serve_client(id, ev.events);
        break;
    }
  }

  void flush(Dir d) {
    int i = static_cast<int>(d);
    if (blocked_[i]) return;
    Port& out = egress(d);
    if (!out.send_due(emu_.line(d))) {
      blocked_[i] = true;
      modify(out.fd(), EPOLLIN | EPOLLOUT, key(&out == &a_ ? kTagPortA : kTagPortB));
    }
  }

  // One absolute deadline for both directions: the earliest frame not held up by a full
  // socket. Absolute, so a late wake-up does not push later deadlines back.
  void arm_timer() {
    int64_t next = -1;
    for (Dir d : {Dir::up, Dir::down}) {
      if (blocked_[static_cast<int>(d)]) continue;
      if (auto t = emu_.line(d).next_release(); t && (next < 0 || *t < next)) next = *t;
    }
    if (next == armed_ns_) return;
    itimerspec its{};
    if (next >= 0) {
      // A zero it_value disarms: a deadline at 0 (or in the past) must still fire.
      int64_t when = std::max<int64_t>(next, 1);
      its.it_value.tv_sec = when / 1'000'000'000;
      its.it_value.tv_nsec = when % 1'000'000'000;
    }
    timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &its, nullptr);
    armed_ns_ = next;
  }

  void accept_clients() {
    for (;;) {
      Fd fd(accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd.get() < 0) return;
      if (clients_.size() >= kMaxClients) {
        std::string msg = fmt::format("error: too many control connections (at most {})\n",
                                      kMaxClients);
        (void)!send(fd.get(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        continue;
      }
      uint64_t id = next_client_++;
      add(fd.get(), EPOLLIN, key(kTagClient, id));
      clients_[id].fd = std::move(fd);
    }
  }

  // A refused connection gets its error line, then our write side is shut and its input is
  // read and discarded until it closes: closing with unread input would reset the
  // connection and could destroy the error line before the client reads it.
  void serve_client(uint64_t id, uint32_t events) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    Client& c = it->second;
    if ((events & EPOLLIN) != 0) {
      std::array<char, 4096> buf{};
      for (;;) {
        ssize_t n = recv(c.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
          if (!c.closing) {
            c.in.append(buf.data(), static_cast<size_t>(n));
            answer_lines(c);
          } else if ((c.discarded += static_cast<size_t>(n)) > kMaxPendingOutput) {
            return drop_client(id);
          }
          continue;
        }
        if (n == 0) c.eof = true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          return drop_client(id);
        }
        break;
      }
    }
    if ((events & (EPOLLHUP | EPOLLERR)) != 0 || !write_out(c)) return drop_client(id);
    if (c.out.empty()) {
      if (c.eof) return drop_client(id);
      if (c.closing && !c.shut) {
        shutdown(c.fd.get(), SHUT_WR);
        c.shut = true;
      }
    }
    uint32_t want = (c.eof ? 0u : static_cast<uint32_t>(EPOLLIN)) |
                    (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    if (want != c.events) {
      modify(c.fd.get(), want, key(kTagClient, id));
      c.events = want;
    }
  }

  void answer_lines(Client& c) {
    size_t pos;
    while (!c.closing && (pos = c.in.find('\n')) != std::string::npos) {
      std::string line = c.in.substr(0, pos);
      c.in.erase(0, pos + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      c.out += emu_.handle_line(line, mono_ns());
      c.out += '\n';
      if (c.out.size() > kMaxPendingOutput) {
        c.out = "error: too many unread replies; closing\n";
        c.closing = true;
      }
    }
    if (!c.closing && c.in.size() > kMaxLine) {
      c.out += fmt::format("error: command longer than {} bytes; one command per line\n",
                           kMaxLine);
      c.closing = true;
    }
    if (c.closing) c.in.clear();
  }

  // Writes what it can. False when the peer is gone.
  bool write_out(Client& c) {
    while (!c.out.empty()) {
      ssize_t n = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
    return true;
  }

  void drop_client(uint64_t id) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
    clients_.erase(it);
  }

  Emulator& emu_;
  Port& a_;
  Port& b_;
  Fd listen_;
  Fd ep_;
  Fd timer_;
  Fd sig_;
  std::map<uint64_t, Client> clients_;
  uint64_t next_client_ = 0;
  std::array<bool, 2> blocked_{};
  int64_t armed_ns_ = -1;
  bool stop_ = false;
};

// `sdwan-wanem ctl SOCKET WORDS...`: one command, one reply line on stdout.
int run_client(const std::string& path, const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
  line += '\n';
  sockaddr_un sa{};
  try {
    sa = unix_address(path);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 || connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    fmt::print(stderr, "error: cannot connect to {}: {}\n", path, errno_text());
    return 1;
  }
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (size_t off = 0; off < line.size();) {
    ssize_t n = send(fd.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      fmt::print(stderr, "error: sending to {}: {}\n", path, errno_text());
      return 1;
    }
    off += static_cast<size_t>(n);
  }
  std::string reply;
  std::array<char, 4096> buf{};
  while (reply.find('\n') == std::string::npos) {
    ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
    if (n <= 0) {
      fmt::print(stderr, "error: no reply from {}: {}\n", path,
                 n == 0 ? "connection closed" : errno_text());
      return 1;
    }
    reply.append(buf.data(), static_cast<size_t>(n));
  }
  reply.resize(reply.find('\n'));
  fmt::print("{}\n", reply);
  return reply.rfind("error", 0) == 0 ? 1 : 0;
}

struct Options {
  std::string a, b, control, name;
  std::optional<uint64_t> seed;
  std::optional<int> realtime;  // unset: try kDefaultRealtimePriority, carry on without
};

/// SCHED_FIFO priority by default: under CFS, CPU-bound neighbours (DPDK workers that poll,
/// compilers) delayed releases by up to 100+ ms on this 2-core lab machine; under FIFO the
/// emulator preempts them the moment a frame is due (README.md: measured precision). The
/// emulator sleeps whenever nothing is due, so it takes only the CPU its traffic needs.
constexpr int kDefaultRealtimePriority = 10;

// Returns the SCHED_FIFO priority in force (0: the normal scheduler).
int apply_realtime(std::optional<int> requested) {
  int prio = requested.value_or(kDefaultRealtimePriority);
  if (prio == 0) return 0;
  sched_param sp{};
  sp.sched_priority = prio;
  if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) return prio;
  if (requested) fail(fmt::format("--realtime {}: SCHED_FIFO: {}", prio, errno_text()));
  fmt::print(stderr, "sdwan-wanem: warning: SCHED_FIFO {} refused ({}); running under the "
                     "normal scheduler, release times will be less precise\n",
             prio, errno_text());
  return 0;
}

int run_bridge(const Options& o) {
  if (o.a == o.b) fail(fmt::format("--a and --b are both {}; expected two interfaces", o.a));
  // Timer slack would add up to 50 us to every epoll/timer wake-up; ask for none.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int realtime = apply_realtime(o.realtime);
  // Signals arrive through the signalfd only; the socket is removed on the way out.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  uint64_t seed = o.seed ? *o.seed : (uint64_t{std::random_device{}()} << 32) |
                                         std::random_device{}();
  std::string name = o.name.empty() ? o.a + "-" + o.b : o.name;
  Emulator emu(name, o.a, o.b, seed, mono_ns());
  emu.set_realtime_priority(realtime);
  Port a(o.a);
  Port b(o.b);
  Fd listen_fd = listen_control(o.control);
  // From here on the socket file is ours: removed however the loop ends.
  struct Unlink {
    const std::string& path;
    ~Unlink() { unlink(path.c_str()); }
  } unlink_socket{o.control};
  Loop loop(emu, a, b, std::move(listen_fd));
  fmt::print(stderr, "sdwan-wanem {}: bridging {} (A) <-> {} (B), control {}, seed {}, {}\n",
             name, o.a, o.b, o.control, seed,
             realtime ? fmt::format("SCHED_FIFO {}", realtime) : std::string("SCHED_OTHER"));
  loop.run();
  fmt::print(stderr, "sdwan-wanem {}: stopped\n", name);
  return 0;
}

}  // namespace
}  // namespace sdwan::wanem

int main(int argc, char** argv) {
  using namespace sdwan::wanem;
  CLI::App app{
      "sdwan-wanem: the lab's WAN emulator. Bridges two interfaces and delays, jitters, drops, "
      "rate-limits or blacks out frames per direction (up = A->B, down = B->A), changeable "
      "over a Unix control socket."};
  app.require_subcommand(0, 1);
  Options o;
  app.add_option("--a", o.a,
                 "side A interface (the edge side): frames arriving here go up, A->B");
  app.add_option("--b", o.b,
                 "side B interface (the ISP core side): frames arriving here go down, B->A");
  app.add_option("--control", o.control, "Unix control socket to create (mode 0600)");
  app.add_option("--name", o.name, "name shown in status (default: A-B)");
  app.add_option("--seed", o.seed, "seed for loss and jitter draws (default: random, logged)");
  app.add_option("--realtime", o.realtime,
                 "SCHED_FIFO priority 1..99, or 0 for the normal scheduler (default: 10 if "
                 "allowed, else the normal scheduler with a warning)")
      ->check(CLI::Range(0, 99));
  std::string ctl_socket;
  std::vector<std::string> ctl_words;
  CLI::App* ctl = app.add_subcommand(
      "ctl", "send one command to a running emulator and print its reply; exit 0 on ok or "
             "status, 1 on error");
  ctl->add_option("socket", ctl_socket, "the emulator's control socket")->required();
  ctl->add_option("command", ctl_words,
                  "e.g. set dir=up delay=40ms jitter=5ms loss=2% rate=10mbit | blackout | "
                  "clear | status | reset-counters")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is not an error; a usage error is status 2
  }
  if (ctl->parsed()) return run_client(ctl_socket, ctl_words);
  if (o.a.empty() || o.b.empty() || o.control.empty()) {
    fmt::print(stderr, "sdwan-wanem: --a IFACE --b IFACE --control SOCKET are required "
                       "(or: sdwan-wanem ctl SOCKET COMMAND...); see --help\n");
    return 2;
  }
  try {
    return run_bridge(o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "sdwan-wanem: {}\n", e.what());
    return 1;
  }
}
