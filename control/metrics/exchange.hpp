// How the HTTP and DPDK telemetry threads get figures from the control thread without
// touching its state: they post a request and wait; the control loop sees it (one relaxed
// load per iteration), collects a MetricsData and hands it over. Every waiter gets a
// collection that started after its request, so a page is never older than its scrape.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "control/metrics/metrics.hpp"

namespace sdwan::cp {

/// The meeting point of the control thread and the metrics readers. Shared by both
/// (std::shared_ptr): the DPDK telemetry thread may outlive the appliance.
class MetricsExchange {
 public:
  /// Reader threads (never the control thread: it would wait for itself): asks for a fresh
  /// collection and waits for it at most timeout. Null when the wait timed out (the control
  /// loop is busy or stopped) or the exchange is closed.
  std::shared_ptr<const MetricsData> fetch(std::chrono::milliseconds timeout);

  /// Control thread, once per loop: true when a reader waits. One relaxed load.
  bool wanted() const noexcept {
    return requested_.load(std::memory_order_relaxed) != served_.load(std::memory_order_relaxed);
  }

  /// Control thread, before collecting: the requests the coming put() answers.
  uint64_t begin() const noexcept { return requested_.load(std::memory_order_acquire); }

  /// Control thread: hands over a collection that started after begin() returned ticket,
  /// and wakes the readers it answers.
  void put(uint64_t ticket, std::shared_ptr<const MetricsData> data);

  /// Any thread: wakes every reader with null and answers every later fetch with null at once.
  void close();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> requested_{0}, served_{0};
  std::shared_ptr<const MetricsData> data_;
  bool closed_ = false;
};

}  // namespace sdwan::cp
