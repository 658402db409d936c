// The event log file: one JSON line per event, appended by a writer thread of its own so that
// neither a slow disk nor a full one ever holds up the thread that emits (docs/events.md "The
// log file").
//
// - Opened O_APPEND (mode 0640), its parent directory created (0755) if missing.
// - Rotation without a signal: before each batch the writer compares the path's inode with
//   the open file's and reopens when the file was moved or deleted (logrotate's create mode);
//   copytruncate works as is (O_APPEND).
// - A line is written whole or not at all: a short write (disk full) is cut back off.
// - Failures (cannot open, ENOSPC, EIO...) count every line lost and log one warning; the
//   next success logs one line saying the log works again and how many lines were lost.
// - fsync: fdatasync after each batch when asked to (the writer waits, nobody else).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace sdwan::cp {

class EventLog {
 public:
  struct Options {
    std::string path;     ///< absolute path of the file; must not be empty
    bool fsync = true;    ///< fdatasync after each batch
    size_t queue = 4096;  ///< lines waiting for the writer; beyond, new lines are dropped (counted)
  };
  struct Stats {
    uint64_t written = 0;  ///< lines appended
    uint64_t failed = 0;   ///< lines that could not be written (open or write error)
    uint64_t dropped = 0;  ///< lines dropped because the writer was that far behind
    bool healthy = true;   ///< false from a failure until the next successful write
  };

  /// Starts the writer thread; the file is opened by it, so this never fails or blocks on I/O.
  explicit EventLog(Options opt);
  /// Writes what is queued (one attempt), then stops the writer.
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// Queues one line (without its newline). Any thread; takes a mutex for a moment, no I/O.
  void append(std::string line);
  /// Counters. Any thread.
  Stats stats() const;
  /// Waits until every line queued so far has been tried (written or counted failed); false
  /// on timeout. For tests and shutdown; any thread except the writer.
  bool flush(int timeout_ms);
  const std::string& path() const noexcept { return opt_.path; }

  /// The `seq` of the last complete JSON line of the file at path (reads at most its last
  /// 64 KiB); nullopt when there is none. Lets a restarted daemon continue the sequence.
  static std::optional<uint64_t> last_seq(const std::string& path);

 private:
  enum class Outcome { kOk, kFailed, kNotSynced };
  void run();
  bool ensure_open();
  Outcome write_all(const std::string& buf);

  Options opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::string> queue_;
  uint64_t queued_total_ = 0, tried_total_ = 0;  // lines ever queued / ever taken by the writer
  bool stop_ = false;
  Stats stats_;
  // Writer thread only.
  int fd_ = -1;
  int errno_ = 0;        // the last failure's errno ...
  std::string what_;     // ... and what failed ("cannot open it")
  uint64_t lost_since_ok_ = 0;
  std::thread thread_;
};

}  // namespace sdwan::cp
