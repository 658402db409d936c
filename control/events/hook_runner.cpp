#include "control/events/hook_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "control/app/log.hpp"
#include "control/events/types.hpp"

extern char** environ;

namespace sdwan::cp {
namespace {

// While anything runs, the supervisor looks for exits and deadlines this often (it learns of
// an exit by polling waitid: no SIGCHLD handler in a daemon whose signals belong to main).
constexpr int kTickMs = 10;
// At shutdown: how long running hooks get after SIGTERM, then after SIGKILL.
constexpr uint64_t kStopGraceMs = 1000;
constexpr uint64_t kStopKillWaitMs = 1000;
constexpr size_t kReadChunk = 4096;

uint64_t mono_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// A hook's output inside one log line: newlines and control bytes escaped.
std::string escaped(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
    else out += c;
  }
  return out;
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : std::to_string(sig);
}

void set_nonblock(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Reaps every exited child of ours in process group pgid. True when the leader was among them
// (its waitid code and status in *code, *status).
bool reap_group(pid_t pgid, pid_t leader, int* code, int* status) {
  bool found = false;
  for (;;) {
    siginfo_t si{};
    if (::waitid(P_PGID, static_cast<id_t>(pgid), &si, WEXITED | WNOHANG) != 0) break;  // ECHILD: none left
    if (si.si_pid == 0) break;  // some alive, none exited
    if (si.si_pid == leader) {
      found = true;
      *code = si.si_code;
      *status = si.si_status;
    }
  }
  return found;
}

bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

}  // namespace

struct HookRunner::Active {
  Job job;
  pid_t pid = -1;  // the leader, and the process group's id
  int in_fd = -1, out_fd = -1;
  size_t in_off = 0;
  std::string output;
  uint64_t output_bytes = 0;
  std::string started;
  HookRunner::Options opt;  // as they were when it started (set_options may change them)
  uint64_t start_ms = 0, deadline_ms = 0, kill_ms = 0;
  bool term_sent = false, kill_sent = false;
  bool exited = false;
  int code = 0, status = 0;  // waitid's si_code and si_status of the leader
};

struct HookRunner::Linger {
  pid_t pgid = -1;
  std::string hook;
  uint64_t kill_grace_ms = 0;
  uint64_t deadline_ms = 0, kill_ms = 0;
  bool term_sent = false, kill_sent = false;
};

HookRunner::HookRunner(Options opt) : opt_(opt) {
  if (opt_.max_concurrent == 0) opt_.max_concurrent = 1;
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // What a hook leaves behind when its parent dies comes to us instead of PID 1 (which may
  // never reap it): the supervisor reaps it by process group.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log_warn("hooks: cannot become a child subreaper ({}): processes a hook leaves behind are reaped by PID 1",
             std::strerror(errno));
  thread_ = std::thread([this] {
    // Every signal stays with the other threads (sdwand's main thread handles them); a write
    // to a hook that closed its input then fails with EPIPE instead of raising SIGPIPE.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    run();
  });
}

HookRunner::~HookRunner() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void HookRunner::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

bool HookRunner::submit(std::vector<std::string> argv, std::string input, std::vector<std::string> env, uint64_t seq,
                        std::string type) {
  bool log_drop = false;
  {
    std::lock_guard lk(mu_);
    if (stop_ || argv.empty()) return false;
    if (queue_.size() >= opt_.queue) {
      ++stats_.dropped;
      log_drop = !dropping_;
      dropping_ = true;
      if (!log_drop) return false;
    } else {
      queue_.push_back(Job{std::move(argv), std::move(env), std::move(input), seq, std::move(type)});
      ++stats_.submitted;
      stats_.queued = static_cast<uint32_t>(queue_.size());
    }
  }
  if (log_drop) {
    const Options o = options();
    log_warn("hooks: {} run(s) waiting and {} running: dropping new runs (event {} #{}) until the queue has room",
             o.queue, o.max_concurrent, type, seq);
    return false;
  }
  wake();
  return true;
}

void HookRunner::set_options(Options opt) {
  if (opt.max_concurrent == 0) opt.max_concurrent = 1;
  {
    std::lock_guard lk(mu_);
    opt_ = opt;
  }
  wake();  // a higher limit may start queued runs now
}

HookRunner::Options HookRunner::options() const {
  std::lock_guard lk(mu_);
  return opt_;
}

HookStats HookRunner::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

std::vector<HookRun> HookRunner::recent() const {
  std::lock_guard lk(mu_);
  return {history_.begin(), history_.end()};
}

bool HookRunner::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return idle_cv_.wait_for(lk, timeout, [&] { return queue_.empty() && busy_ == 0; });
}

void HookRunner::record(HookRun r) {
  std::lock_guard lk(mu_);
  if (r.timed_out) ++stats_.timed_out;
  else if (r.ok) ++stats_.ok;
  else ++stats_.failed;
  history_.push_back(std::move(r));
  while (history_.size() > opt_.history) history_.pop_front();
}

// Spawned with posix_spawn (vfork-like: no copy of the daemon's page tables, hugepages
// included), in a new process group, with default signals, an empty mask, "/" as its working
// directory and nothing open but its three standard descriptors.
void HookRunner::start(Job job, uint64_t now_ms) {
  auto a = std::make_unique<Active>();
  a->started = rfc3339_utc(std::chrono::system_clock::now());
  a->start_ms = now_ms;
  {
    std::lock_guard lk(mu_);
    ++stats_.started;
    a->opt = opt_;
  }
  a->deadline_ms = now_ms + a->opt.timeout_ms;
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  int rc = 0;
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) rc = errno;

  std::vector<std::string> env_s;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (kv.starts_with("SDWAN_EVENT_") || kv.starts_with("SDWAN_APPLIANCE=")) continue;
    env_s.emplace_back(kv);
  }
  for (auto& e : job.env) env_s.push_back(e);
  std::vector<char*> envp, argv;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& s : job.argv) argv.push_back(s.data());
  argv.push_back(nullptr);

  if (rc == 0) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    posix_spawn_file_actions_addchdir_np(&fa, "/");
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    // sdwand ignores SIGPIPE and handles INT/TERM/HUP: a hook starts with every signal at its
    // default (SIGKILL and SIGSTOP cannot be touched).
    for (int s = 1; s < SIGRTMIN; ++s)
      if (s != SIGKILL && s != SIGSTOP) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &defaults);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = ::posix_spawn(&a->pid, argv[0], &fa, &at, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
  }
  for (int fd : {in[0], out[1]})
    if (fd >= 0) ::close(fd);
  if (rc != 0) {
    for (int fd : {in[1], out[0]})
      if (fd >= 0) ::close(fd);
    HookRun r;
    r.started = a->started;
    r.seq = job.seq;
    r.type = job.type;
    r.hook = job.argv[0];
    r.result = fmt::format("spawn failed: {}", std::strerror(rc));
    log_warn("hook {} for {} #{}: cannot start it: {}", r.hook, r.type, r.seq, std::strerror(rc));
    record(std::move(r));
    return;
  }
  a->in_fd = in[1];
  a->out_fd = out[0];
  set_nonblock(a->in_fd);
  set_nonblock(a->out_fd);
  a->job = std::move(job);
  log_debug("hook {} for {} #{}: started, pid {}", a->job.argv[0], a->job.type, a->job.seq, a->pid);
  active_.push_back(std::move(a));
}

void HookRunner::finish(Active& a, uint64_t now_ms) {
  HookRun r;
  r.started = a.started;
  r.seq = a.job.seq;
  r.type = a.job.type;
  r.hook = a.job.argv[0];
  r.duration_ms = now_ms - a.start_ms;
  r.output = std::move(a.output);
  r.output_bytes = a.output_bytes;
  r.timed_out = a.term_sent;
  if (a.code == CLD_EXITED) {
    r.exit_code = a.status;
    r.ok = a.status == 0 && !r.timed_out;
  } else if (a.code != -1) {
    r.signal = a.status;
  }
  const std::string how = r.exit_code >= 0 ? fmt::format("exit {}", r.exit_code)
                          : r.signal != 0  ? "killed by " + signal_name(r.signal)
                                           : std::string("exit status unknown (reaped elsewhere)");
  r.result = r.timed_out ? "timeout" : r.ok ? "ok" : how;
  std::string out;
  if (!r.output.empty()) {
    out = "; output: " + escaped(r.output);
    if (r.output_bytes > r.output.size()) out += fmt::format(" ... ({} bytes in all)", r.output_bytes);
  }
  if (r.timed_out)
    log_warn("hook {} for {} #{}: timed out after {} ms, {} ({} ms in all){}", r.hook, r.type, r.seq, a.opt.timeout_ms,
             how, r.duration_ms, out);
  else if (r.ok)
    log_info("hook {} for {} #{}: ok in {} ms{}", r.hook, r.type, r.seq, r.duration_ms, out);
  else
    log_warn("hook {} for {} #{}: failed, {} after {} ms{}", r.hook, r.type, r.seq, how, r.duration_ms, out);
  record(std::move(r));
}

void HookRunner::run() {
  std::vector<pollfd> pfds;
  char buf[kReadChunk];
  for (;;) {
    std::vector<Job> take;
    uint64_t room_again = 0;  // runs dropped in all, when the queue has room after dropping
    {
      std::lock_guard lk(mu_);
      if (stop_) break;
      while (!queue_.empty() && active_.size() + take.size() < opt_.max_concurrent) {
        take.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      busy_ += static_cast<uint32_t>(take.size());
      stats_.queued = static_cast<uint32_t>(queue_.size());
      if (dropping_ && queue_.size() < opt_.queue) {
        dropping_ = false;
        if (stats_.dropped > dropped_logged_) room_again = stats_.dropped;
        dropped_logged_ = stats_.dropped;
      }
    }
    // Logged outside the lock: a slow stderr must not hold up submit() on the control thread.
    if (room_again != 0) log_info("hooks: the queue has room again; {} run(s) dropped in all", room_again);
    for (auto& j : take) start(std::move(j), mono_ms());

    pfds.clear();
    pfds.push_back({wake_fd_, POLLIN, 0});
    for (const auto& a : active_) {
      if (a->out_fd >= 0) pfds.push_back({a->out_fd, POLLIN, 0});
      if (a->in_fd >= 0) pfds.push_back({a->in_fd, POLLOUT, 0});
    }
    const bool waiting = !active_.empty() || !lingering_.empty();
    ::poll(pfds.data(), pfds.size(), waiting ? kTickMs : -1);
    uint64_t drained = 0;
    [[maybe_unused]] auto n = ::read(wake_fd_, &drained, sizeof drained);

    const uint64_t now = mono_ms();
    for (auto& a : active_) {
      if (a->in_fd >= 0) {
        const std::string& in = a->job.input;
        while (a->in_off < in.size()) {
          const ssize_t w = ::write(a->in_fd, in.data() + a->in_off, in.size() - a->in_off);
          if (w > 0) a->in_off += static_cast<size_t>(w);
          else break;
        }
        // All written (EOF for the hook), or it closed its input (EPIPE): either way, done.
        if (a->in_off >= in.size() || (errno != EAGAIN && errno != EINTR)) close_fd(a->in_fd);
      }
      if (!a->exited && reap_group(a->pid, a->pid, &a->code, &a->status)) a->exited = true;
      // Gone without us reaping it: something else in the process waited for it.
      if (!a->exited && !group_alive(a->pid)) {
        a->exited = true;
        a->code = -1;
      }
      // Read after the reap: what the leader wrote before it exited is in the pipe now.
      while (a->out_fd >= 0) {
        const ssize_t r = ::read(a->out_fd, buf, sizeof buf);
        if (r > 0) {
          a->output_bytes += static_cast<uint64_t>(r);
          const size_t room = a->opt.output_max > a->output.size() ? a->opt.output_max - a->output.size() : 0;
          a->output.append(buf, std::min(room, static_cast<size_t>(r)));
          continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) close_fd(a->out_fd);  // every writer closed it
        break;
      }
      if (a->exited) continue;
      if (!a->term_sent && now >= a->deadline_ms) {
        a->term_sent = true;
        a->kill_ms = now + a->opt.kill_grace_ms;
        ::kill(-a->pid, SIGTERM);
        log_warn("hook {} for {} #{}: still running after {} ms: SIGTERM to its process group {}", a->job.argv[0],
                 a->job.type, a->job.seq, a->opt.timeout_ms, a->pid);
      } else if (a->term_sent && !a->kill_sent && now >= a->kill_ms) {
        a->kill_sent = true;
        ::kill(-a->pid, SIGKILL);
        log_warn("hook {} for {} #{}: still running {} ms after SIGTERM: SIGKILL to its process group {}",
                 a->job.argv[0], a->job.type, a->job.seq, a->opt.kill_grace_ms, a->pid);
      }
    }
    for (size_t i = 0; i < active_.size();) {
      Active& a = *active_[i];
      if (!a.exited) {
        ++i;
        continue;
      }
      // Stragglers may hold the output pipe open: the run ends with its leader.
      close_fd(a.in_fd);
      close_fd(a.out_fd);
      if (group_alive(a.pid))
        lingering_.push_back(Linger{a.pid, a.job.argv[0], a.opt.kill_grace_ms, a.deadline_ms,
                                    a.term_sent ? a.kill_ms : 0, a.term_sent, a.kill_sent});
      finish(a, now);
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    for (size_t i = 0; i < lingering_.size();) {
      Linger& l = lingering_[i];
      int code = 0, status = 0;
      reap_group(l.pgid, -1, &code, &status);
      if (!group_alive(l.pgid)) {
        lingering_.erase(lingering_.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      if (!l.term_sent && now >= l.deadline_ms) {
        l.term_sent = true;
        l.kill_ms = now + l.kill_grace_ms;
        ::kill(-l.pgid, SIGTERM);
        log_warn("hook {}: processes it left behind still run at its timeout: SIGTERM to process group {}", l.hook,
                 l.pgid);
      } else if (l.term_sent && !l.kill_sent && now >= l.kill_ms) {
        l.kill_sent = true;
        ::kill(-l.pgid, SIGKILL);
      }
      ++i;
    }
    {
      std::lock_guard lk(mu_);
      busy_ = static_cast<uint32_t>(active_.size() + lingering_.size());
      stats_.running = static_cast<uint32_t>(active_.size());
      if (queue_.empty() && busy_ == 0) idle_cv_.notify_all();
    }
  }
  shutdown_children();
}

// The daemon is stopping: nothing it started may outlive it as an orphan or a zombie.
void HookRunner::shutdown_children() {
  std::vector<pid_t> groups;
  for (const auto& a : active_) {
    if (!a->exited) groups.push_back(a->pid);
    close_fd(a->in_fd);
    close_fd(a->out_fd);
  }
  for (const auto& l : lingering_) groups.push_back(l.pgid);
  if (!groups.empty())
    log_info("hooks: stopping {} running hook(s) and what they started (SIGTERM, SIGKILL after {} ms)", groups.size(),
             kStopGraceMs);
  for (pid_t g : groups) ::kill(-g, SIGTERM);
  const uint64_t t0 = mono_ms();
  bool killed = false;
  while (!groups.empty() && mono_ms() - t0 < kStopGraceMs + kStopKillWaitMs) {
    if (!killed && mono_ms() - t0 >= kStopGraceMs) {
      for (pid_t g : groups) ::kill(-g, SIGKILL);
      killed = true;
    }
    for (size_t i = 0; i < groups.size();) {
      int code = 0, status = 0;
      reap_group(groups[i], -1, &code, &status);
      if (group_alive(groups[i])) ++i;
      else groups.erase(groups.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (!groups.empty()) ::usleep(kTickMs * 1000);
  }
  std::lock_guard lk(mu_);
  const auto dropped_queue = queue_.size();
  queue_.clear();
  active_.clear();
  lingering_.clear();
  busy_ = 0;
  stats_.running = 0;
  stats_.queued = 0;
  if (dropped_queue > 0) stats_.dropped += dropped_queue;
  idle_cv_.notify_all();
}

}  // namespace sdwan::cp
