// Published<T>: control builds an immutable T and publishes it with one release store;
// workers read the pointer without locks; old versions are freed once every worker has
// passed a quiescent point (DPDK rte_rcu_qsbr), never while one may still read them.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace sdwan::dp {

/// Owns the QSBR variable that all workers of one appliance report to. Control thread.
class Rcu {
 public:
  /// Allocates room for max_threads readers (worker indexes 0..max_threads-1). Needs EAL.
  explicit Rcu(uint32_t max_threads) {
    const size_t sz = rte_rcu_qsbr_get_memsize(max_threads);
    mem_ = std::make_unique<std::byte[]>(sz + 64);
    // rte_rcu_qsbr wants cache-line alignment; the extra 64 bytes leave room for it.
    auto p = reinterpret_cast<uintptr_t>(mem_.get());
    v_ = reinterpret_cast<rte_rcu_qsbr*>((p + 63) & ~uintptr_t{63});
    rte_rcu_qsbr_init(v_, max_threads);
  }
  /// The raw variable, for workers' register/online/quiescent/offline calls.
  rte_rcu_qsbr* get() const noexcept { return v_; }

 private:
  std::unique_ptr<std::byte[]> mem_;
  rte_rcu_qsbr* v_ = nullptr;
};

/// One writer (control), many readers (workers).
template <class T>
class Published {
 public:
  explicit Published(rte_rcu_qsbr* qs) : qs_(qs) {}
  Published(const Published&) = delete;
  Published& operator=(const Published&) = delete;

  /// Worker: the current version; valid until this worker's next quiescent report.
  const T* read() const noexcept { return cur_.load(std::memory_order_acquire); }

  /// Control: makes next current; the previous one is retired until its grace period ends.
  void publish(std::unique_ptr<const T> next) {
    // release: a worker that sees the new pointer sees every byte control wrote into it.
    cur_.store(next.get(), std::memory_order_release);
    if (owner_) retired_.push_back({std::move(owner_), qs_ ? rte_rcu_qsbr_start(qs_) : 0});
    owner_ = std::move(next);
    reclaim();
  }

  /// Control: frees retired versions no worker can still hold. Cheap; call it every tick.
  void reclaim() {
    while (!retired_.empty()) {
      if (qs_ && rte_rcu_qsbr_check(qs_, retired_.front().token, false) != 1) break;
      retired_.erase(retired_.begin());
    }
  }

  /// Control: the version it published last (for building the next one from it).
  const T* current() const noexcept { return owner_.get(); }

  /// Control: how many versions wait for their grace period (for stats and tests).
  size_t retired() const noexcept { return retired_.size(); }

 private:
  struct Retired {
    std::unique_ptr<const T> p;
    uint64_t token;
  };
  rte_rcu_qsbr* qs_;
  std::atomic<const T*> cur_{nullptr};
  std::unique_ptr<const T> owner_;
  std::vector<Retired> retired_;
};

}  // namespace sdwan::dp
