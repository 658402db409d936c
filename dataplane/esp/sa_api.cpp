// dataplane/api/esp.hpp: control's way to make SA runtimes and read their counters without
// seeing sa.hpp. Control thread only; never per packet.
#include <rte_cycles.h>
#include <string.h>  // explicit_bzero

#include <new>

#include "dataplane/api/esp.hpp"
#include "dataplane/esp/esp.hpp"
#include "dataplane/esp/sa.hpp"

namespace sdwan::dp {
namespace {

// Expands keys for control: any engine of the workers' arch expands the same bytes, and all
// engines made with Arch::kAuto in one process have the same arch.
const CryptoEngine* key_engine() {
  static std::unique_ptr<CryptoEngine> engine = [] {
    auto e = CryptoEngine::create();
    return e ? std::move(*e) : nullptr;
  }();
  return engine.get();
}

}  // namespace

Result<std::string> esp_crypto_arch() {
  auto e = CryptoEngine::create();
  if (!e) return e.error();
  return std::string((*e)->arch_name());
}

std::shared_ptr<OutboundSa> make_outbound_sa(const EspSaParams& p, const EspPath& path) {
  const CryptoEngine* eng = key_engine();
  if (eng == nullptr) return nullptr;
  const uint64_t seq_limit = p.max_packets == 0 || p.max_packets == ~uint64_t{0} ? ~uint64_t{0} : p.max_packets + 1;
  const uint64_t expire = p.max_age_ms == 0 ? 0 : rte_rdtsc() + p.max_age_ms * (rte_get_tsc_hz() / 1000);
  auto* sa = new (std::nothrow) OutboundSa(*eng, p.spi, p.key.data(), p.salt.data(), p.esn, seq_limit, path,
                                           p.max_bytes, expire);
  return std::shared_ptr<OutboundSa>(sa);
}

std::shared_ptr<InboundSa> make_inbound_sa(const EspSaParams& p) {
  const CryptoEngine* eng = key_engine();
  if (eng == nullptr) return nullptr;
  std::shared_ptr<InboundSa> sa(new (std::nothrow)
                                    InboundSa(*eng, p.spi, p.key.data(), p.salt.data(), p.esn, p.replay_window, p.tag));
  if (sa == nullptr || !sa->window.ok()) return nullptr;
  return sa;
}

EspSaStats esp_sa_stats(const OutboundSa& sa) noexcept {
  EspSaStats s;
  s.spi = sa.spi;
  s.packets = sa.pkts.load();
  s.bytes = sa.bytes.load();
  const uint64_t next = sa.seq.load(std::memory_order_relaxed);
  s.seq = std::min(next, sa.seq_limit) - 1;
  s.expired = sa.expired();
  return s;
}

EspSaStats esp_sa_stats(const InboundSa& sa) noexcept {
  EspSaStats s;
  s.spi = sa.spi;
  s.tag = sa.tag;
  s.packets = sa.pkts.load();
  s.bytes = sa.bytes.load();
  s.seq = sa.window.top();
  s.replay = sa.replay.load();
  s.too_old = sa.too_old.load();
  s.icv_fail = sa.icv_fail.load();
  s.bad_trailer = sa.bad_trailer.load();
  return s;
}

std::shared_ptr<InboundTable> make_inbound_table() { return std::shared_ptr<InboundTable>(new (std::nothrow) InboundTable()); }

bool inbound_table_install(InboundTable& t, InboundSa* sa) noexcept { return t.install(sa); }

}  // namespace sdwan::dp
