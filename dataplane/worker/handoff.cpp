// The worker -> worker rings (dataplane/api/messages.hpp HandoffRings): one allocation holding
// n x (n - 1) single-producer, single-consumer rings of Handoff elements.
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <string>

#include "dataplane/api/messages.hpp"

namespace sdwan::dp {

std::unique_ptr<HandoffRings> HandoffRings::create(uint16_t workers, int socket) {
  if (workers == 0 || workers > kMaxWorkers) return nullptr;
  const ssize_t size = rte_ring_get_memsize_elem(sizeof(Handoff), kRingSize);
  if (size < 0) return nullptr;
  // Each ring on its own cache lines (rte_ring_get_memsize_elem rounds up to one).
  const auto stride = static_cast<uint64_t>(size);
  const uint64_t n_rings = uint64_t{workers} * (workers - 1u);
  void* mem = nullptr;
  if (n_rings != 0) {
    mem = rte_zmalloc_socket("sdwan_handoff", n_rings * stride, RTE_CACHE_LINE_SIZE, socket);
    if (mem == nullptr) return nullptr;
  }
  std::unique_ptr<HandoffRings> h(new HandoffRings(workers, mem, stride));
  for (uint16_t from = 0; from < workers; ++from)
    for (uint16_t to = 0; to < workers; ++to) {
      if (from == to) continue;
      // rte_ring_create_elem does the same in a memzone of this size.
      const std::string name = "sdwan_ho" + std::to_string(from) + "_" + std::to_string(to);
      if (rte_ring_init(h->ring(from, to), name.c_str(), kRingSize, RING_F_SP_ENQ | RING_F_SC_DEQ) != 0) return nullptr;
    }
  return h;
}

HandoffRings::~HandoffRings() {
  for (uint16_t from = 0; from < n_; ++from)
    for (uint16_t to = 0; to < n_; ++to) {
      rte_ring* r = ring(from, to);
      if (r == nullptr) continue;
      Handoff h;
      while (rte_ring_dequeue_elem(r, &h, sizeof h) == 0) rte_pktmbuf_free(h.m);
    }
  rte_free(mem_);
}

rte_ring* HandoffRings::ring(uint16_t from, uint16_t to) const noexcept {
  if (from == to || from >= n_ || to >= n_ || mem_ == nullptr) return nullptr;
  // Ring (from, to) at from * (n - 1) + (to, skipping from).
  const uint64_t i = uint64_t{from} * (n_ - 1u) + (to < from ? to : to - 1u);
  return reinterpret_cast<rte_ring*>(static_cast<uint8_t*>(mem_) + i * stride_);
}

void HandoffRings::attach(uint16_t index, WorkerChannels& ch) const noexcept {
  for (uint16_t w = 0; w < kMaxWorkers; ++w) {
    ch.handoff_to[w] = w < n_ ? ring(index, w) : nullptr;
    ch.handoff_from[w] = w < n_ ? ring(w, index) : nullptr;
  }
}

}  // namespace sdwan::dp
