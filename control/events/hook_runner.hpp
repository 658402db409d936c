// Hooks (issue 7): executables run for events, supervised by a thread of their own so that a
// slow, stuck or failing hook never holds up the control thread or the dataplane
// (docs/events.md "Hooks").
//
// Contract with a hook:
// - argv as configured; the event's JSON line (ending in "\n") on standard input, then EOF;
//   environment: the daemon's, plus SDWAN_EVENT_TYPE, SDWAN_EVENT_SEQ and SDWAN_APPLIANCE;
//   working directory "/"; signals at their defaults, none blocked; no other file descriptor.
// - Its own process group (the leader is the hook). At the timeout the group gets SIGTERM,
//   kill_grace later SIGKILL. Processes it leaves behind when it exits are killed (same
//   signals) at the run's timeout.
// - Standard output and error together: the first output_max bytes are kept for the daemon's
//   log and `sdwanctl show hooks`; the rest is read and counted, never blocks the hook.
// - Exit status 0 is success; anything else, a signal or a timeout is a failure.
//
// Runs start in submit order, at most max_concurrent at once; up to queue more wait; beyond
// that a submit is refused and counted (dropped).
//
// Children: the runner reaps every process it starts (the lab's and many containers' PID 1
// reaps nothing). It makes the daemon a child subreaper (PR_SET_CHILD_SUBREAPER) so that what
// a hook leaves behind becomes the daemon's child too and is reaped by process group, and it
// never waits for any other child of the process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sdwan::cp {

/// One finished run, for the log and `show hooks`.
struct HookRun {
  std::string started;         ///< RFC 3339 UTC, ms
  uint64_t seq = 0;            ///< the event's seq
  std::string type;            ///< the event's type
  std::string hook;            ///< argv[0]
  std::string result;          ///< "ok", "exit 3", "signal 9", "timeout", "spawn failed: ..."
  bool ok = false;
  bool timed_out = false;
  int exit_code = -1;          ///< -1 when it did not exit by itself
  int signal = 0;              ///< the signal that ended it, 0 if none
  uint64_t duration_ms = 0;
  std::string output;          ///< at most output_max bytes
  uint64_t output_bytes = 0;   ///< everything it wrote
};

struct HookStats {
  uint64_t submitted = 0;  ///< runs accepted into the queue
  uint64_t started = 0;    ///< runs started (a process exists or spawning was tried)
  uint64_t ok = 0;         ///< exited 0 in time
  uint64_t failed = 0;     ///< exited non-zero or by a signal, or could not be started
  uint64_t timed_out = 0;  ///< killed at the timeout (not counted in failed)
  uint64_t dropped = 0;    ///< refused: the queue was full
  uint32_t running = 0;    ///< runs whose hook is running now
  uint32_t queued = 0;     ///< runs waiting for a free slot
};

class HookRunner {
 public:
  struct Options {
    uint32_t timeout_ms = 10000;
    uint32_t kill_grace_ms = 2000;
    uint32_t max_concurrent = 4;
    uint32_t queue = 256;
    uint32_t output_max = 4096;
    size_t history = 100;  ///< finished runs kept for recent()
  };

  /// Starts the supervisor thread (all signals blocked in it) and makes the process a child
  /// subreaper.
  explicit HookRunner(Options opt);
  /// Drops what is queued, ends what runs (SIGTERM to each group, SIGKILL after at most 1 s),
  /// reaps it all and joins the thread.
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  /// Queues one run: argv (argv[0] an absolute path), input for its standard input, extra
  /// environment entries ("K=V"), and the event's seq and type for the records. False (and
  /// counted as dropped) when the queue is full. Any thread; a mutex for a moment, no syscall
  /// but one write to wake the supervisor.
  bool submit(std::vector<std::string> argv, std::string input, std::vector<std::string> env, uint64_t seq,
              std::string type);

  /// New limits: a running hook keeps the timeout, grace and output limit it started with;
  /// max_concurrent and queue apply at once (runs already queued stay). Any thread.
  void set_options(Options opt);
  Options options() const;

  HookStats stats() const;
  /// The last finished runs, oldest first.
  std::vector<HookRun> recent() const;
  /// Waits until nothing is queued or running (stragglers included); false on timeout. Tests.
  bool wait_idle(std::chrono::milliseconds timeout) const;

 private:
  struct Job {
    std::vector<std::string> argv, env;
    std::string input;
    uint64_t seq = 0;
    std::string type;
  };
  struct Active;  // a started run
  struct Linger;  // the process group of a finished run with members left

  void run();
  void start(Job job, uint64_t now_ms);
  void finish(Active& a, uint64_t now_ms);
  void record(HookRun r);
  void wake();
  void shutdown_children();

  Options opt_;  // guarded by mu_
  int wake_fd_ = -1;  // eventfd: submit and the destructor wake the supervisor's poll
  mutable std::mutex mu_;
  mutable std::condition_variable idle_cv_;
  std::deque<Job> queue_;
  std::deque<HookRun> history_;
  HookStats stats_;
  bool stop_ = false;
  bool dropping_ = false;  // drops since the queue last had room: logged once
  uint64_t dropped_logged_ = 0;
  uint32_t busy_ = 0;  // taken from the queue, running or lingering: wait_idle waits for 0
  // Supervisor thread only.
  std::vector<std::unique_ptr<Active>> active_;
  std::vector<Linger> lingering_;
  std::thread thread_;
};

}  // namespace sdwan::cp
