// ESP tunnel mode in UDP with AES-256-GCM on mbufs (esp.hpp), and the SA runtimes' set-up
// (sa.hpp). Each burst runs in chunks of kChunk packets: a first pass checks and lays out every
// packet and fills one GcmOp per packet, one crypto burst seals or opens the chunk, a last pass
// sorts the outcome. Failures move behind the packets kept with std::rotate, which neither
// allocates nor reorders the kept ones.
#include "dataplane/esp/esp.hpp"

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <string.h>  // explicit_bzero

#include <algorithm>
#include <atomic>
#include <cstring>

namespace sdwan::dp {
namespace {

// Packets per crypto burst: bounds the arrays on the stack (about 2.5 KiB) and matches the
// worker's RX burst, so a burst is one chunk in practice.
constexpr uint32_t kChunk = 32;
// Frames ahead of the one being parsed whose first line is fetched (inbound: cold after RX).
constexpr uint32_t kPrefetchAhead = 4;

constexpr uint32_t kIpOff = 14;
constexpr uint32_t kEspOff = kEspOuterLen;               // in frames we build
constexpr uint32_t kCtOff = kEspHdrLen + kEspIvLen;      // from the ESP header
constexpr uint32_t kMinEspLen = kCtOff + 2 + kEspIcvLen;  // header, IV, pad length, next header, ICV

inline void put16(uint8_t* p, uint16_t v) noexcept {
  const uint16_t be = rte_cpu_to_be_16(v);
  std::memcpy(p, &be, 2);
}
inline void put32(uint8_t* p, uint32_t v) noexcept {
  const uint32_t be = rte_cpu_to_be_32(v);
  std::memcpy(p, &be, 4);
}
inline void put64(uint8_t* p, uint64_t v) noexcept {
  const uint64_t be = rte_cpu_to_be_64(v);
  std::memcpy(p, &be, 8);
}
inline uint16_t get16(const uint8_t* p) noexcept {
  uint16_t be;
  std::memcpy(&be, p, 2);
  return rte_be_to_cpu_16(be);
}
inline uint32_t get32(const uint8_t* p) noexcept {
  uint32_t be;
  std::memcpy(&be, p, 4);
  return rte_be_to_cpu_32(be);
}

inline uint16_t fold(uint32_t s) noexcept {
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// Bytes of padding that make inner + pad + 2 a multiple of 4.
inline uint32_t pad_for(uint32_t inner_len) noexcept { return (0u - (inner_len + 2)) & 3u; }

// The start of the padding RFC 4303 2.4 prescribes (1, 2, 3...): at most 3 bytes are needed.
constexpr uint8_t kPadStart[4] = {1, 2, 3, 4};

// RFC 4303 2.4 padding, 1, 2, 3...: a loop rather than memcmp, as it is 0 to 3 bytes nearly
// always and a call costs more than that.
inline bool pad_ok(const uint8_t* p, uint32_t pad) noexcept {
  uint32_t diff = 0;
  for (uint32_t k = 0; k < pad; ++k) diff |= p[k] ^ (k + 1);
  return diff == 0;
}

// Moves the chunk at pkts[base, base + n), already laid out as [kept kc][failed], behind the
// packets kept so far: pkts[0, kept) kept, pkts[kept, base) earlier failures.
inline void settle(rte_mbuf** pkts, size_t& kept, size_t base, uint32_t kc) noexcept {
  if (kc != 0 && kept != base) std::rotate(pkts + kept, pkts + base, pkts + base + kc);
  kept += kc;
}

std::atomic<uint64_t> next_sa_serial{1};

}  // namespace

OutboundSa::OutboundSa(const CryptoEngine& engine, uint32_t spi_, const uint8_t key_bytes[kGcmKeyLen],
                       const uint8_t salt_[kEspSaltLen], bool esn_, uint64_t seq_limit_,
                       const EspPath& path, uint64_t byte_limit_, uint64_t expire_tsc_) noexcept
    : seq_limit(std::min(seq_limit_, esn_ ? kEspSeqLimitEsn : kEspSeqLimitNoEsn)),
      byte_limit(byte_limit_),
      expire_tsc(expire_tsc_),
      spi(spi_),
      esn(esn_),
      serial(next_sa_serial.fetch_add(1, std::memory_order_relaxed)) {
  std::memcpy(salt, salt_, kEspSaltLen);
  engine.expand_key(key_bytes, &key);
  set_path(path);
}

OutboundSa::~OutboundSa() {
  explicit_bzero(&key, sizeof key);
  explicit_bzero(salt, sizeof salt);
}

bool OutboundSa::expired() const noexcept { return expired(rte_rdtsc()); }

void OutboundSa::set_path(const EspPath& p) noexcept {
  path_ = p;
  outer = EspOuter::of(p);
}

EspOuter EspOuter::of(const EspPath& p) noexcept {
  EspOuter o;
  o.mtu = p.mtu;
  uint8_t* h = o.hdr;
  std::memcpy(h, p.dmac.b.data(), 6);
  std::memcpy(h + 6, p.smac.b.data(), 6);
  put16(h + 12, 0x0800);
  uint8_t* ip = h + kIpOff;
  ip[0] = 0x45;
  ip[1] = 0;
  put16(ip + 2, 0);       // total length: per packet
  put16(ip + 4, 0);       // id: per packet
  // DF: an ESP packet fragmented on the WAN would be lost (nobody reassembles); the MTU check
  // keeps every one within the uplink's MTU instead.
  put16(ip + 6, 0x4000);
  ip[8] = 64;
  ip[9] = 17;
  put16(ip + 10, 0);      // checksum: per packet, from sum
  put32(ip + 12, p.src.v);
  put32(ip + 16, p.dst.v);
  uint32_t sum = 0;
  for (uint32_t i = 0; i < 20; i += 2) sum += get16(ip + i);
  o.sum = sum;
  uint8_t* udp = ip + 20;
  put16(udp, p.sport);
  put16(udp + 2, p.dport);
  put16(udp + 4, 0);      // length: per packet
  put16(udp + 6, 0);      // RFC 3948 2.1: zero over IPv4; ESP authenticates what matters
  return o;
}

InboundSa::InboundSa(const CryptoEngine& engine, uint32_t spi_, const uint8_t key_bytes[kGcmKeyLen],
                     const uint8_t salt_[kEspSaltLen], bool esn_, uint32_t window_size, uint16_t tag_)
    : spi(spi_), tag(tag_), window(window_size, esn_) {
  std::memcpy(salt, salt_, kEspSaltLen);
  engine.expand_key(key_bytes, &key);
}

InboundSa::~InboundSa() {
  explicit_bzero(&key, sizeof key);
  explicit_bzero(salt, sizeof salt);
}

namespace {

// Where a burst's sequence numbers come from and where its counts go: the SA itself (any number
// of workers, one compare-and-swap and two atomic adds per chunk), or a worker's EspSeqBlock.
struct SharedSeq {
  OutboundSa& sa;
  // Reserves up to n numbers; *first is the first. Returns how many (fewer only at seq_limit).
  uint64_t reserve(uint64_t n, uint64_t* first) noexcept {
    uint64_t seq0 = sa.seq.load(std::memory_order_relaxed), avail = 0;
    do {
      avail = seq0 < sa.seq_limit ? std::min<uint64_t>(n, sa.seq_limit - seq0) : 0;
    } while (avail != 0 && !sa.seq.compare_exchange_weak(seq0, seq0 + avail, std::memory_order_relaxed));
    *first = seq0;
    return avail;
  }
  // Returns the last n numbers reserved, ending at end, unless another reservation followed:
  // then they are skipped (a gap the peer's window accepts; a number is never used twice).
  void give_back(uint64_t end, uint64_t n) noexcept {
    uint64_t want = end;
    sa.seq.compare_exchange_strong(want, end - n, std::memory_order_relaxed);
  }
  bool live() const noexcept {
    return (sa.byte_limit == 0 || sa.bytes.load() < sa.byte_limit) && (sa.expire_tsc == 0 || rte_rdtsc() < sa.expire_tsc);
  }
  void account(uint64_t pkts, uint64_t bytes) noexcept {
    sa.pkts.add(pkts);
    sa.bytes.add(bytes);
  }
};

struct BlockSeq {
  OutboundSa& sa;
  EspSeqBlock& blk;
  uint64_t now;
  // Numbers of one chunk are consecutive. When the block has too few left, the next block
  // extends it if nobody reserved in between (always, with one worker: no gap); otherwise the
  // rest of the old one is skipped. At the SA's limit, what is left goes out.
  uint64_t reserve(uint64_t n, uint64_t* first) noexcept {
    if (blk.end - blk.next < n) {
      uint64_t seq0 = sa.seq.load(std::memory_order_relaxed), avail = 0;
      do {
        avail = seq0 < sa.seq_limit ? std::min<uint64_t>(std::max(n, EspSeqBlock::kSize), sa.seq_limit - seq0) : 0;
      } while (avail != 0 && !sa.seq.compare_exchange_weak(seq0, seq0 + avail, std::memory_order_relaxed));
      if (avail != 0) {
        if (seq0 != blk.end) blk.next = seq0;
        blk.end = seq0 + avail;
      }
    }
    if (blk.next == blk.end) return 0;
    const uint64_t take = std::min(n, blk.end - blk.next);
    *first = blk.next;
    blk.next += take;
    return take;
  }
  // Returns the last n numbers taken, ending at end, to the block (the worker's own).
  void give_back(uint64_t end, uint64_t n) noexcept {
    if (blk.next == end) blk.next = end - n;
  }
  bool live() const noexcept {
    return (sa.byte_limit == 0 || sa.bytes.load() + blk.bytes < sa.byte_limit) &&
           (sa.expire_tsc == 0 || now < sa.expire_tsc);
  }
  void account(uint64_t pkts, uint64_t bytes) noexcept {
    blk.pkts += pkts;
    blk.bytes += bytes;
  }
};

// Why m (len bytes, pad bytes of padding) cannot go out as ESP through `outer`: true and *why, or
// false when it can.
inline bool unfit(const rte_mbuf* m, uint32_t len, uint32_t pad, const EspOuter& outer, EspDrop* why) noexcept {
  if (m->nb_segs != 1)
    *why = EspDrop::kNoRoom;
  else if (esp_outer_ip_len(len) > outer.mtu)
    *why = EspDrop::kTooBig;
  else if (rte_pktmbuf_headroom(m) < kEspPrepend || rte_pktmbuf_tailroom(m) < pad + 2 + kEspIcvLen)
    *why = EspDrop::kNoRoom;
  else
    return false;
  return true;
}

template <class Seq>
uint16_t encrypt_burst(CryptoEngine& engine, OutboundSa& sa, const EspOuter& outer, std::span<rte_mbuf*> pkts,
                       uint8_t next_header, EspCounters& counters, Seq seqs) noexcept {
  rte_mbuf** all = pkts.data();
  const size_t total = pkts.size();
  size_t kept = 0;
  for (size_t base = 0; base < total; base += kChunk) {
    const auto n = static_cast<uint32_t>(std::min<size_t>(kChunk, total - base));
    rte_mbuf** in = all + base;
    rte_mbuf* good[kChunk];
    rte_mbuf* bad[kChunk];
    uint32_t nb = 0;

    // Sequence numbers: one per packet of the chunk reserved up front (fewer at seq_limit: past a
    // hard limit nothing is encrypted, ever), handed out consecutively to the packets that pass
    // their checks, the rest given back below. One pass checks and lays out each packet.
    uint64_t seq0 = 0, avail = 0;
    if (seqs.live()) [[likely]]
      avail = seqs.reserve(n, &seq0);
    uint32_t take = 0;

    GcmOp ops[kChunk];
    alignas(16) uint8_t iv[kChunk][kGcmIvLen];
    alignas(16) uint8_t aad[kChunk][12];
    uint32_t inner_len[kChunk];
    uint64_t bytes = 0;
    const uint32_t spi = sa.spi;
    for (uint32_t j = 0; j < n; ++j) {
      rte_mbuf* m = in[j];
      const uint32_t len = m->data_len;
      const uint32_t pad = pad_for(len);
      EspDrop why;
      if (unfit(m, len, pad, outer, &why)) [[unlikely]] {
        counters.drop(why);
        bad[nb++] = m;
        continue;
      }
      if (take == avail) [[unlikely]] {
        counters.drop(EspDrop::kSaExpired);
        bad[nb++] = m;
        continue;
      }
      const uint32_t i = take++;
      good[i] = m;
      const uint32_t ct_len = len + pad + 2;
      const uint64_t seq = seq0 + i;
      uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
      // Trailer: 1, 2, 3 then pad length and next header over them; the tailroom check
      // covers these 4 bytes (they end inside the ICV's room when pad < 2).
      uint8_t* t = data + len;
      std::memcpy(t, kPadStart, 4);
      t[pad] = static_cast<uint8_t>(pad);
      t[pad + 1] = next_header;

      uint8_t* h = data - kEspPrepend;
      std::memcpy(h, outer.hdr, kEspOuterLen);
      const uint32_t ip_len = esp_outer_ip_len(len);
      const auto id = static_cast<uint16_t>(seq);
      uint8_t* ip = h + kIpOff;
      put16(ip + 2, static_cast<uint16_t>(ip_len));
      put16(ip + 4, id);
      put16(ip + 10, static_cast<uint16_t>(~fold(outer.sum + ip_len + id)));
      put16(ip + 24, static_cast<uint16_t>(ip_len - 20));
      uint8_t* esp = h + kEspOff;
      put32(esp, spi);
      put32(esp + 4, static_cast<uint32_t>(seq));
      put64(esp + 8, seq);
      std::memcpy(iv[i], sa.salt, kEspSaltLen);
      std::memcpy(iv[i] + kEspSaltLen, esp + 8, kEspIvLen);
      GcmOp& op = ops[i];
      if (sa.esn) {
        std::memcpy(aad[i], esp, 4);
        put32(aad[i] + 4, static_cast<uint32_t>(seq >> 32));
        std::memcpy(aad[i] + 8, esp + 4, 4);
        op.aad = aad[i];
        op.aad_len = 12;
      } else {
        op.aad = esp;  // SPI || seq as they stand in the header
        op.aad_len = 8;
      }
      op.key = &sa.key;
      op.iv = iv[i];
      op.data = esp + kCtOff;
      op.len = ct_len;
      op.tag = esp + kCtOff + ct_len;
      inner_len[i] = len;
      bytes += len;

      const auto frame_len = static_cast<uint16_t>(kEspPrepend + ct_len + kEspIcvLen);
      m->data_off = static_cast<uint16_t>(m->data_off - kEspPrepend);
      m->data_len = frame_len;
      m->pkt_len = frame_len;
      m->l2_len = kIpOff;
      m->l3_len = 20;
      // Offloads the inner packet asked for would now apply to the outer headers.
      m->ol_flags &= ~RTE_MBUF_F_TX_OFFLOAD_MASK;
    }
    // The numbers no packet took (some failed a check) go back when nobody reserved after us.
    if (take < avail) [[unlikely]]
      seqs.give_back(seq0 + avail, avail - take);
    uint32_t kc = take;
    if (engine.seal_burst(ops, take) != take) [[unlikely]] {
      kc = 0;
      bytes = 0;
      for (uint32_t i = 0; i < take; ++i) {
        if (ops[i].ok) {
          in[kc++] = good[i];
          bytes += inner_len[i];
        } else {
          counters.drop(EspDrop::kSealFailed);
          bad[nb++] = good[i];
        }
      }
    } else if (nb != 0) [[unlikely]] {
      std::memcpy(in, good, take * sizeof(rte_mbuf*));
    }
    // Without a failure, good[] is in[] already: nothing moves.
    if (nb != 0) [[unlikely]]
      std::memcpy(in + kc, bad, nb * sizeof(rte_mbuf*));
    counters.enc_pkts.add(kc);
    counters.enc_bytes.add(bytes);
    seqs.account(kc, bytes);
    settle(all, kept, base, kc);
  }
  return static_cast<uint16_t>(kept);
}

}  // namespace

uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters) noexcept {
  return esp_encrypt_burst(engine, sa, sa.outer, pkts, next_header, counters);
}

uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, const EspOuter& outer, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters) noexcept {
  return encrypt_burst(engine, sa, outer, pkts, next_header, counters, SharedSeq{sa});
}

uint16_t esp_encrypt_burst(CryptoEngine& engine, OutboundSa& sa, const EspOuter& outer, std::span<rte_mbuf*> pkts,
                           uint8_t next_header, EspCounters& counters, EspSeqBlock& blk, uint64_t now_tsc) noexcept {
  if (blk.sa != &sa || blk.serial != sa.serial) [[unlikely]] {
    // Pending counts of a previous SA were flushed at the end of the poll that made them
    // (esp_seq_block_flush), so the old pointer is not followed: that SA may be gone.
    blk = EspSeqBlock{};
    blk.sa = &sa;
    blk.serial = sa.serial;
  }
  return encrypt_burst(engine, sa, outer, pkts, next_header, counters, BlockSeq{sa, blk, now_tsc});
}

void esp_seq_block_flush(EspSeqBlock& blk) noexcept {
  if (blk.pkts == 0) return;
  blk.sa->pkts.add(blk.pkts);
  blk.sa->bytes.add(blk.bytes);
  blk.pkts = blk.bytes = 0;
}

uint16_t esp_decrypt_burst(CryptoEngine& engine, const InboundTable& table, std::span<rte_mbuf*> pkts,
                           EspCounters& counters, uint8_t* next_headers_out, uint16_t* sa_tags_out,
                           uint16_t worker, const InboundSa** sas_out, bool outer_checked) noexcept {
  rte_mbuf** all = pkts.data();
  const size_t total = pkts.size();
  size_t kept = 0;
  for (size_t base = 0; base < total; base += kChunk) {
    const auto n = static_cast<uint32_t>(std::min<size_t>(kChunk, total - base));
    rte_mbuf** in = all + base;
    rte_mbuf* bad[kChunk];
    uint32_t nb = 0;

    struct Pending {
      rte_mbuf* m;
      InboundSa* sa;
      uint64_t seq;
      uint32_t ct_off;  // ciphertext offset in the frame
    };
    Pending pend[kChunk];
    GcmOp ops[kChunk];
    alignas(16) uint8_t iv[kChunk][kGcmIvLen];
    alignas(16) uint8_t aad[kChunk][12];
    uint32_t ng = 0;
    // The SA of the previous packet: consecutive packets mostly share one.
    uint32_t last_spi = 0;
    InboundSa* last_sa = nullptr;
    bool last_mine = false;

    // A caller that checked the outer headers has just read them: no prefetch.
    for (uint32_t i = 0; i < std::min(n, kPrefetchAhead) && !outer_checked; ++i)
      rte_prefetch0(rte_pktmbuf_mtod(in[i], void*));
    for (uint32_t i = 0; i < n; ++i) {
      if (i + kPrefetchAhead < n && !outer_checked) rte_prefetch0(rte_pktmbuf_mtod(in[i + kPrefetchAhead], void*));
      rte_mbuf* m = in[i];
      uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
      const uint32_t len = m->data_len;
      EspDrop why;
      InboundSa* sa = nullptr;
      uint64_t seq = 0;
      uint32_t esp_off = 0, esp_len = 0;
      if (!outer_checked && m->nb_segs != 1) [[unlikely]] {
        why = EspDrop::kBadLength;
      } else if (!outer_checked && len < kIpOff + 20) [[unlikely]] {
        why = EspDrop::kRunt;
      } else {
        const uint8_t* ip = f + kIpOff;
        const uint32_t ihl = outer_checked ? 20 : (ip[0] & 0xfu) * 4;
        const uint32_t tot = get16(ip + 2);
        if (!outer_checked && (get16(f + 12) != 0x0800 || (ip[0] >> 4) != 4 || ihl < 20 || tot < ihl + 8 ||
                               (get16(ip + 6) & 0x3fff) != 0 || ip[9] != 17)) [[unlikely]] {
          why = EspDrop::kBadLength;
        } else if (!outer_checked && kIpOff + tot > len) [[unlikely]] {
          why = EspDrop::kRunt;
        } else {
          const uint32_t ulen = get16(ip + ihl + 4);
          esp_off = kIpOff + ihl + 8;
          esp_len = ulen - 8;
          if (ulen < 8 || ulen > tot - ihl) [[unlikely]] {
            why = EspDrop::kBadLength;
          } else if (esp_len < kMinEspLen) [[unlikely]] {
            why = EspDrop::kRunt;
          } else {
            const uint8_t* esp = f + esp_off;
            const uint32_t spi = get32(esp);
            if (spi != last_spi || last_sa == nullptr) {
              last_sa = table.find(spi);
              last_spi = spi;
              last_mine = last_sa != nullptr && (worker == kAnyWorker || last_sa->claim(worker));
            }
            sa = last_sa;
            if (sa == nullptr) [[unlikely]] {
              why = EspDrop::kUnknownSpi;
            } else if (!last_mine) [[unlikely]] {
              why = EspDrop::kWrongWorker;
            } else {
              const ReplayWindow::Verdict v = sa->window.check(get32(esp + 4), &seq);
              if (v == ReplayWindow::Verdict::kOk) [[likely]] {
                Pending& p = pend[ng];
                p.m = m;
                p.sa = sa;
                p.seq = seq;
                p.ct_off = esp_off + kCtOff;
                const uint32_t ct_len = esp_len - kCtOff - kEspIcvLen;
                std::memcpy(iv[ng], sa->salt, kEspSaltLen);
                std::memcpy(iv[ng] + kEspSaltLen, esp + kEspHdrLen, kEspIvLen);
                GcmOp& op = ops[ng];
                if (sa->esn()) {
                  std::memcpy(aad[ng], esp, 4);
                  put32(aad[ng] + 4, static_cast<uint32_t>(seq >> 32));
                  std::memcpy(aad[ng] + 8, esp + 4, 4);
                  op.aad = aad[ng];
                  op.aad_len = 12;
                } else {
                  op.aad = esp;
                  op.aad_len = 8;
                }
                op.key = &sa->key;
                op.iv = iv[ng];
                op.data = f + p.ct_off;
                op.len = ct_len;
                op.tag = f + p.ct_off + ct_len;
                ++ng;
                continue;
              }
              if (v == ReplayWindow::Verdict::kReplay) {
                why = EspDrop::kReplay;
                sa->replay.add();
              } else {
                why = EspDrop::kTooOld;
                sa->too_old.add();
              }
            }
          }
        }
      }
      counters.drop(why);
      bad[nb++] = m;
    }

    engine.open_burst(ops, ng);

    uint32_t kc = 0;
    uint64_t bytes = 0;
    // Per-SA counts go out once per run of packets of one SA (a burst is mostly one SA),
    // not once per packet.
    InboundSa* run_sa = nullptr;
    uint64_t run_pkts = 0, run_bytes = 0;
    for (uint32_t j = 0; j < ng; ++j) {
      const Pending& p = pend[j];
      const GcmOp& op = ops[j];
      InboundSa* sa = p.sa;
      EspDrop why;
      if (!op.ok) [[unlikely]] {
        why = EspDrop::kIcvFail;
        sa->icv_fail.add();
      } else {
        const uint8_t* pt = op.data;
        const uint32_t pad = pt[op.len - 2];
        const uint8_t nh = pt[op.len - 1];
        if (pad + 2 > op.len || !pad_ok(pt + op.len - 2 - pad, pad)) [[unlikely]] {
          why = EspDrop::kBadPad;
          sa->bad_trailer.add();
        } else if (nh != kEspNextIpv4 && nh != kEspNextIpv6 && nh != kEspNextOverlay) [[unlikely]] {
          why = EspDrop::kBadNextHeader;
          sa->bad_trailer.add();
        } else if (!sa->window.accept(p.seq)) [[unlikely]] {
          // A copy earlier in this burst got there first (or one far enough ahead moved the
          // window past it).
          why = EspDrop::kReplay;
          sa->replay.add();
        } else {
          const uint32_t inner = op.len - 2 - pad;
          rte_mbuf* m = p.m;
          m->data_off = static_cast<uint16_t>(m->data_off + p.ct_off);
          m->data_len = static_cast<uint16_t>(inner);
          m->pkt_len = inner;
          // What the NIC said about the outer headers says nothing about the inner packet.
          m->ol_flags &= ~(RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK |
                           RTE_MBUF_F_RX_OUTER_L4_CKSUM_MASK | RTE_MBUF_F_RX_OUTER_IP_CKSUM_BAD);
          m->packet_type = 0;
          if (sa != run_sa) {
            if (run_sa != nullptr) {
              run_sa->pkts.add(run_pkts);
              run_sa->bytes.add(run_bytes);
            }
            run_sa = sa;
            run_pkts = run_bytes = 0;
          }
          ++run_pkts;
          run_bytes += inner;
          next_headers_out[kept + kc] = nh;
          if (sa_tags_out != nullptr) sa_tags_out[kept + kc] = sa->tag;
          if (sas_out != nullptr) sas_out[kept + kc] = sa;
          in[kc++] = m;
          bytes += inner;
          continue;
        }
      }
      counters.drop(why);
      bad[nb++] = p.m;
    }
    if (run_sa != nullptr) {
      run_sa->pkts.add(run_pkts);
      run_sa->bytes.add(run_bytes);
    }
    std::memcpy(in + kc, bad, nb * sizeof(rte_mbuf*));
    counters.dec_pkts.add(kc);
    counters.dec_bytes.add(bytes);
    settle(all, kept, base, kc);
  }
  return static_cast<uint16_t>(kept);
}

}  // namespace sdwan::dp
