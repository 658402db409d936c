#include "control/events/event_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "control/app/log.hpp"

namespace sdwan::cp {
namespace {

constexpr size_t kTailBytes = 64 * 1024;

// mkdir -p of path's directory, 0755: the log is for operators and their tools to read.
void make_parent_dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  const std::string dir = path.substr(0, slash);
  for (size_t at = 1; at != std::string::npos;) {
    at = dir.find('/', at + 1);
    ::mkdir(dir.substr(0, at).c_str(), 0755);
  }
}

}  // namespace

EventLog::EventLog(Options opt) : opt_(std::move(opt)) {
  if (opt_.queue == 0) opt_.queue = 1;
  thread_ = std::thread([this] { run(); });
}

EventLog::~EventLog() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void EventLog::append(std::string line) {
  {
    std::lock_guard lk(mu_);
    if (queue_.size() >= opt_.queue) {
      ++stats_.dropped;
      return;
    }
    queue_.push_back(std::move(line));
    ++queued_total_;
  }
  cv_.notify_one();
}

EventLog::Stats EventLog::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

bool EventLog::flush(int timeout_ms) {
  std::unique_lock lk(mu_);
  const uint64_t target = queued_total_;
  return done_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return tried_total_ >= target; });
}

// Reopens when the path no longer names the open file (moved away by logrotate, deleted):
// a stat per batch, and batches are as rare as events.
bool EventLog::ensure_open() {
  if (fd_ >= 0) {
    struct stat at_path {}, open_file {};
    if (::stat(opt_.path.c_str(), &at_path) != 0 || ::fstat(fd_, &open_file) != 0 ||
        at_path.st_ino != open_file.st_ino || at_path.st_dev != open_file.st_dev) {
      ::close(fd_);
      fd_ = -1;
      log_info("event log {}: the file was moved or removed; opening a new one", opt_.path);
    }
  }
  if (fd_ >= 0) return true;
  make_parent_dir(opt_.path);
  fd_ = ::open(opt_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
  if (fd_ >= 0) return true;
  errno_ = errno;
  what_ = "cannot open it";
  return false;
}

// One write of whole lines; on a short write the part that made it is cut off again so the
// file never holds half a line (a reader takes every line as a whole JSON object).
EventLog::Outcome EventLog::write_all(const std::string& buf) {
  struct stat st {};
  const off_t before = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
  size_t off = 0;
  while (off < buf.size()) {
    const ssize_t n = ::write(fd_, buf.data() + off, buf.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    errno_ = n < 0 ? errno : ENOSPC;
    what_ = "cannot write to it";
    if (off > 0 && before >= 0 && ::ftruncate(fd_, before) != 0) what_ += " (and cannot cut off a partial line)";
    return Outcome::kFailed;
  }
  if (opt_.fsync && ::fdatasync(fd_) != 0) {
    errno_ = errno;
    what_ = "cannot sync it";
    return Outcome::kNotSynced;
  }
  return Outcome::kOk;
}

void EventLog::run() {
  std::unique_lock lk(mu_);
  uint64_t dropped_seen = 0;
  while (true) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stop_ and nothing left
    std::deque<std::string> batch;
    batch.swap(queue_);
    const uint64_t dropped = stats_.dropped;
    lk.unlock();

    std::string buf;
    for (const auto& l : batch) {
      buf += l;
      buf += '\n';
    }
    const Outcome out = ensure_open() ? write_all(buf) : Outcome::kFailed;
    const bool ok = out == Outcome::kOk;
    // Not synced: the lines are in the file (the page cache), only their durability is in
    // doubt; they count as written, the log as unhealthy.
    const bool written = out != Outcome::kFailed;
    const uint64_t lost = written ? 0 : batch.size();
    if (dropped > dropped_seen)
      log_warn("event log {}: {} line(s) dropped: the writer is that far behind (disk slow?)", opt_.path,
               dropped - dropped_seen);
    dropped_seen = dropped;

    lk.lock();
    const bool was_healthy = stats_.healthy;
    (written ? stats_.written : stats_.failed) += batch.size();
    stats_.healthy = ok;
    tried_total_ += batch.size();
    lk.unlock();
    done_cv_.notify_all();

    // Logged once per failure episode, never per line: a full disk must not flood the log.
    if (!ok && was_healthy) {
      log_warn("event log {}: {}: {}; events are counted as lost (show stats: events.log_failed) until it works again",
               opt_.path, what_, std::strerror(errno_));
      lost_since_ok_ = 0;
    }
    lost_since_ok_ += lost;
    if (ok && !was_healthy) {
      log_info("event log {}: writing again ({} line(s) lost meanwhile)", opt_.path, lost_since_ok_);
      lost_since_ok_ = 0;
    }
    lk.lock();
  }
  lk.unlock();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::optional<uint64_t> EventLog::last_seq(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::string tail;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    const off_t from = st.st_size > static_cast<off_t>(kTailBytes) ? st.st_size - static_cast<off_t>(kTailBytes) : 0;
    tail.resize(static_cast<size_t>(st.st_size - from));
    const ssize_t n = ::pread(fd, tail.data(), tail.size(), from);
    tail.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  // Only lines that end in a newline are complete; the last one may be cut.
  size_t end = tail.rfind('\n');
  while (end != std::string::npos && end > 0) {
    const size_t start = tail.rfind('\n', end - 1);
    const size_t b = start == std::string::npos ? 0 : start + 1;
    const auto j = nlohmann::json::parse(tail.begin() + static_cast<std::ptrdiff_t>(b),
                                         tail.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
    if (j.is_object()) {
      const auto it = j.find("seq");
      if (it != j.end() && it->is_number_unsigned()) return it->get<uint64_t>();
    }
    // The first line of a 64 KiB tail may be a fragment: only lines after a newline count.
    if (start == std::string::npos) break;
    end = start;
  }
  return std::nullopt;
}

}  // namespace sdwan::cp
