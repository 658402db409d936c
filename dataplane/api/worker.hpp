// A worker lcore: run-to-completion over its RX queues (DESIGN.md "How a packet travels").
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

struct rte_mempool;

#include "dataplane/api/counters.hpp"
#include "dataplane/api/messages.hpp"
#include "dataplane/api/published.hpp"
#include "dataplane/api/snapshot.hpp"

namespace sdwan::dp {

/// One RX queue a worker polls.
struct RxQueue {
  uint8_t port = 0;    // port index in the snapshot
  uint16_t queue = 0;  // ethdev queue id
};

/// One flow of a worker's cache, as `show flows` reports it.
struct FlowRecord {
  uint32_t src = 0, dst = 0;    // host order
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  uint8_t cls = 0;
  uint16_t path = 0;            // path id of its last decision
  uint64_t pkts = 0, bytes = 0;
  uint64_t first_tsc = 0, last_tsc = 0;
};

/// Everything a worker is given at creation. Control fills it; the worker keeps a copy.
struct WorkerConfig {
  uint16_t index = 0;                       // 0..n-1: also its TX queue on every port and its QSBR id
  uint16_t count = 1;                       // n: the worker probes the paths whose id % n == index
  std::vector<RxQueue> rx;
  IdlePolicy idle = IdlePolicy::kAdaptive;
  const Published<Snapshot>* snapshot = nullptr;
  rte_rcu_qsbr* qsbr = nullptr;             // may be null in tests that call poll_once only
  WorkerChannels channels;
  uint32_t flow_capacity = 65536;           // flow cache entries (rounded up to a power of two)
  rte_mempool* pool = nullptr;              // where probes come from; null: the worker sends none
};

/// A worker. Created by control before launch; afterwards only its own lcore touches it,
/// except counters(), which any thread may read.
class Worker {
 public:
  /// Allocates the flow cache and buffers (not on the packet path). Fails only on memory.
  explicit Worker(const WorkerConfig& cfg);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Owning lcore: one loop iteration (every RX queue once, control TX, flush). Returns the
  /// number of packets received. Reports QSBR quiescence when qsbr is set.
  uint32_t poll_once() noexcept;

  /// Owning lcore: loops until stop is set; sleeps with back-off when idle and the policy is
  /// adaptive (offline for QSBR while asleep). Returns 0.
  int run(const std::atomic<bool>& stop) noexcept;

  /// Any thread: this worker's counters.
  const WorkerCounters& counters() const noexcept;

  /// Any thread: this worker's ESP counters (encrypted, decrypted, drops by reason).
  const EspCounters& esp_counters() const noexcept;

  /// Any thread: this worker's per-path counters (kMaxPaths entries, by path id).
  const PathCounters* path_counters() const noexcept;

  /// Any thread: the number of live flows in its cache (approximate while running).
  uint32_t flow_count() const noexcept;

  /// Worker index.
  uint16_t index() const noexcept;

  /// Control: asks the worker to copy up to max of its flows into out, a few buckets per poll
  /// (out must stay valid until flow_dump_done() says true). A request while one is running
  /// is ignored (false).
  bool request_flow_dump(FlowRecord* out, uint32_t max) noexcept;
  /// Control: true once the dump asked for is complete (or none was asked for); *n is then
  /// the number of records written.
  bool flow_dump_done(uint32_t* n) const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdwan::dp
