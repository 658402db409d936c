#include "control/metrics/exchange.hpp"

namespace sdwan::cp {

std::shared_ptr<const MetricsData> MetricsExchange::fetch(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (closed_) return nullptr;
  // Request numbers only grow under the mutex, so the control thread's begin() (acquire) sees
  // every request made before it started collecting.
  const uint64_t mine = requested_.load(std::memory_order_relaxed) + 1;
  requested_.store(mine, std::memory_order_release);
  const bool done = cv_.wait_for(lock, timeout, [&] {
    return closed_ || served_.load(std::memory_order_relaxed) >= mine;
  });
  if (!done || closed_) return nullptr;
  return data_;
}

void MetricsExchange::put(uint64_t ticket, std::shared_ptr<const MetricsData> data) {
  {
    std::lock_guard lock(mu_);
    data_ = std::move(data);
    if (ticket > served_.load(std::memory_order_relaxed)) served_.store(ticket, std::memory_order_relaxed);
  }
  cv_.notify_all();
}

void MetricsExchange::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    data_.reset();
  }
  cv_.notify_all();
}

}  // namespace sdwan::cp
