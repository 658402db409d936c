// libFuzzer target: the inbound path of an uplink on real mbufs. The outer parse (parse_frame),
// then for UDP to the overlay port overlay_pull on its payload, and ESP: outer checks, SA by SPI, anti-replay,
// AES-256-GCM open and ICV check, trailer (esp_decrypt_burst).
//
// The first input byte picks a mode, the rest is read as that mode says:
//   raw    (mode % 3 == 0): the rest is one frame off the wire. It goes through parse_frame and
//          overlay_pull (its UDP payload), and, separately, esp_decrypt_burst. Bit 7 of the mode splits the frame
//          over two segments.
//   single (mode % 3 == 1): the rest describes one ESP packet (see read_spec) that the harness
//          seals with the SAs' fixed key, so it carries a valid ICV, then XORs a few bytes of it
//          as the input says. Without those edits its fate is known in advance (expect_single),
//          and the harness checks it: kept with the right inner packet, or dropped for the
//          right reason.
//   burst  (mode % 3 == 2): up to 40 such packets (more than one chunk of 32) in one burst,
//          then a second burst of the same packets again; whether each is kept is checked
//          against a plain reference model of the replay window (non-ESN SA only).
// Bits 2-3 of the mode choose the engine's burst mode (direct, jobs, burst API).
//
// Every mbuf points at a heap buffer exactly as long as its frame (an external buffer), so
// AddressSanitizer reports any read or write outside the frame: DPDK's own mempools are
// invisible to it. Both SAs are made anew for each input: the outcome depends on the input only.
//
// The EAL starts once (--no-huge, a private file prefix, no shared config); its runtime
// directory is removed right after start and again at exit.
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dataplane/esp/esp.hpp"
#include "dataplane/overlay/overlay.hpp"
#include "dataplane/parse/parse.hpp"

namespace {

using namespace sdwan;
using namespace sdwan::dp;

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) {       \
      std::fprintf(stderr, "fuzz_inbound: check failed at line %d: %s\n", __LINE__, #cond); \
      __builtin_trap();  \
    }                    \
  } while (0)

constexpr uint16_t kEspPort = 4500;
constexpr uint32_t kWindow = ReplayWindow::kMinSize;
constexpr uint32_t kSpiPlain = 0x5d000052;  // the SA without ESN
constexpr uint32_t kSpiEsn = 0x5d010053;    // the SA with ESN (another slot)
constexpr uint16_t kTagPlain = 7;
constexpr uint16_t kTagEsn = 9;
constexpr uint8_t kKeyPlain[kGcmKeyLen] = {
    0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08,
    0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08};
constexpr uint8_t kKeyEsn[kGcmKeyLen] = {
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
constexpr uint8_t kSaltPlain[kEspSaltLen] = {0xca, 0xfe, 0xba, 0xbe};
constexpr uint8_t kSaltEsn[kEspSaltLen] = {0xde, 0xad, 0xbe, 0xef};
constexpr uint32_t kMaxBurst = 40;
constexpr uint32_t kMaxPlain = 1600;

// ---- the EAL, once per process ----

std::string g_runtime_dir;
rte_mempool* g_pool = nullptr;
std::unique_ptr<CryptoEngine> g_engines[3];
InboundTable* g_table = nullptr;

void remove_runtime_dir() {
  std::error_code ec;
  if (!g_runtime_dir.empty()) std::filesystem::remove_all(g_runtime_dir, ec);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_inbound: %s\n", what);
  remove_runtime_dir();
  std::_Exit(1);
}

// The CPUs this process may run on ("0,1"): lcore 0 floats over all of them, so the EAL does
// not pin the fuzzer to a core that another fuzzer may be pinned to as well.
std::string allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "0";
  std::string s;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s.empty() ? "0" : s;
}

void start_eal() {
  const std::string prefix = "sdwan-fuzz-" + std::to_string(getpid());
  g_runtime_dir = "/var/run/dpdk/" + prefix;
  std::atexit(remove_runtime_dir);
  // --in-memory would leave nothing behind but is refused with --no-huge; with --no-shconf the
  // EAL only creates the runtime directory and writes nothing in it, so it can go right away.
  std::vector<std::string> args = {"fuzz_inbound", "--no-huge", "--no-pci", "--no-shconf", "-m", "128",
                                   "--lcores=0@(" + allowed_cpus() + ")", "--log-level=*:error",
                                   "--file-prefix=" + prefix, "--no-telemetry"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) die("rte_eal_init failed");
  remove_runtime_dir();
  // Only the mbuf headers come from the pool: the data lives in external buffers.
  g_pool = rte_pktmbuf_pool_create("fuzz_pool", 2 * 2 * kMaxBurst + 63, 0, 0, 0, SOCKET_ID_ANY);
  if (g_pool == nullptr) die("cannot create the mbuf pool");
  const GcmBurstMode modes[3] = {GcmBurstMode::kDirect, GcmBurstMode::kJobs, GcmBurstMode::kBurst};
  for (int i = 0; i < 3; ++i) {
    auto e = CryptoEngine::create(CryptoEngine::Arch::kAuto, modes[i]);
    if (!e.ok()) die(e.error().msg.c_str());
    g_engines[i] = std::move(e.value());
  }
  g_table = new InboundTable();  // 512 KiB; lives as long as the process
}

// ---- mbufs over exact-size heap buffers ----

void no_free(void*, void*) {}

// One segment: an mbuf from the pool attached to a heap buffer of exactly the frame's bytes.
class Segment {
 public:
  Segment(const uint8_t* bytes, uint32_t len) : buf_(new uint8_t[len == 0 ? 1 : len]) {
    m_ = rte_pktmbuf_alloc(g_pool);
    if (m_ == nullptr) die("mbuf pool empty (an mbuf leaked)");
    if (len != 0) std::memcpy(buf_.get(), bytes, len);
    shinfo_.free_cb = no_free;
    shinfo_.fcb_opaque = nullptr;
    rte_mbuf_ext_refcnt_set(&shinfo_, 1);
    rte_pktmbuf_attach_extbuf(m_, buf_.get(), 0, static_cast<uint16_t>(len), &shinfo_);
    m_->data_off = 0;
    m_->data_len = static_cast<uint16_t>(len);
    m_->pkt_len = len;
  }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  rte_mbuf* m() const { return m_; }
  // Detaches and returns the header to the pool; the buffer goes with this object.
  void release() {
    if (m_ == nullptr) return;
    m_->next = nullptr;
    m_->nb_segs = 1;
    rte_pktmbuf_free_seg(m_);
    m_ = nullptr;
  }
  ~Segment() { release(); }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  rte_mbuf_ext_shared_info shinfo_{};
  rte_mbuf* m_ = nullptr;
};

// A frame in one mbuf, or split over two when split_at is inside it.
class Packet {
 public:
  Packet(const uint8_t* bytes, uint32_t len, uint32_t split_at = 0) {
    if (split_at == 0 || split_at >= len) {
      head_.emplace(bytes, len);
    } else {
      head_.emplace(bytes, split_at);
      tail_.emplace(bytes + split_at, len - split_at);
      rte_mbuf* h = head_->m();
      h->next = tail_->m();
      h->nb_segs = 2;
      h->pkt_len = len;
    }
  }
  rte_mbuf* m() const { return head_->m(); }
  ~Packet() {
    if (tail_) tail_->release();
    head_->release();
  }

 private:
  std::optional<Segment> head_, tail_;
};

struct MbufState {
  uint16_t data_off, data_len;
  uint32_t pkt_len;
  uint16_t nb_segs;
};
MbufState state_of(const rte_mbuf* m) { return {m->data_off, m->data_len, m->pkt_len, m->nb_segs}; }
bool same_state(const MbufState& a, const MbufState& b) {
  return a.data_off == b.data_off && a.data_len == b.data_len && a.pkt_len == b.pkt_len && a.nb_segs == b.nb_segs;
}
void check_inside(const rte_mbuf* m) {
  FUZZ_CHECK(uint32_t{m->data_off} + m->data_len <= m->buf_len);
  if (m->nb_segs == 1) FUZZ_CHECK(m->pkt_len == m->data_len);
}

// ---- input ----

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  uint8_t u8() { return n_ == 0 ? 0 : (--n_, *p_++); }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  uint32_t u32() { return uint32_t{u16()} << 16 | u16(); }
  size_t left() const { return n_; }
  // Up to n bytes, fewer when the input ends.
  std::vector<uint8_t> bytes(size_t n) {
    n = std::min(n, n_);
    std::vector<uint8_t> v(p_, p_ + n);
    p_ += n;
    n_ -= n;
    return v;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

// ---- the SAs of one input ----

struct Sas {
  CryptoEngine& engine;
  InboundSa plain;
  InboundSa esn;
  EspCounters counters;
  explicit Sas(CryptoEngine& e)
      : engine(e),
        plain(e, kSpiPlain, kKeyPlain, kSaltPlain, false, kWindow, kTagPlain),
        esn(e, kSpiEsn, kKeyEsn, kSaltEsn, true, kWindow, kTagEsn) {
    FUZZ_CHECK(g_table->install(&plain) && g_table->install(&esn));
  }
  ~Sas() {
    g_table->remove(kSpiPlain);
    g_table->remove(kSpiEsn);
  }
  uint64_t sa_pkts() const { return plain.pkts.load() + esn.pkts.load(); }
};

uint64_t total_drops(const EspCounters& c) {
  uint64_t t = 0;
  for (const Counter& d : c.drops) t += d.load();
  return t;
}

struct Decrypted {
  uint16_t kept;
  std::vector<rte_mbuf*> order;   // pkts after the call
  std::vector<uint8_t> next_headers;
  std::vector<uint16_t> tags;
};

// esp_decrypt_burst over pkts, with the invariants every call must keep: a permutation of the
// mbufs, kept + dropped == size in the counters, failures untouched (offsets and lengths),
// kept ones inside their buffers with a next header of 4, 41 or 253 and their SA's tag.
Decrypted decrypt_checked(Sas& sas, std::vector<rte_mbuf*> pkts) {
  std::vector<MbufState> before;
  for (rte_mbuf* m : pkts) before.push_back(state_of(m));
  const std::vector<rte_mbuf*> orig = pkts;
  const uint64_t kept0 = sas.counters.dec_pkts.load(), drops0 = total_drops(sas.counters);
  const uint64_t sa0 = sas.sa_pkts();
  Decrypted d;
  d.next_headers.assign(pkts.size(), 0xee);
  d.tags.assign(pkts.size(), 0xeeee);
  d.kept = esp_decrypt_burst(sas.engine, *g_table, std::span<rte_mbuf*>(pkts.data(), pkts.size()), sas.counters,
                             d.next_headers.data(), d.tags.data());
  FUZZ_CHECK(d.kept <= pkts.size());
  FUZZ_CHECK(std::is_permutation(pkts.begin(), pkts.end(), orig.begin()));
  FUZZ_CHECK(sas.counters.dec_pkts.load() - kept0 == d.kept);
  FUZZ_CHECK(total_drops(sas.counters) - drops0 == pkts.size() - d.kept);
  FUZZ_CHECK(sas.sa_pkts() - sa0 == d.kept);
  for (size_t i = 0; i < pkts.size(); ++i) {
    rte_mbuf* m = pkts[i];
    const size_t at = static_cast<size_t>(std::find(orig.begin(), orig.end(), m) - orig.begin());
    check_inside(m);
    if (i < d.kept) {
      const uint8_t nh = d.next_headers[i];
      FUZZ_CHECK(nh == kEspNextIpv4 || nh == kEspNextIpv6 || nh == kEspNextOverlay);
      FUZZ_CHECK(d.tags[i] == kTagPlain || d.tags[i] == kTagEsn);
      FUZZ_CHECK(m->data_off > before[at].data_off && m->data_len < before[at].data_len);
    } else {
      FUZZ_CHECK(same_state(state_of(m), before[at]));
    }
  }
  d.order = std::move(pkts);
  return d;
}

// ---- raw frames ----

void fuzz_raw(Sas& sas, uint8_t mode, Reader& in) {
  const std::vector<uint8_t> frame = in.bytes(65535);
  const auto len = static_cast<uint32_t>(frame.size());
  const uint32_t split = (mode & 0x80) != 0 && len > 1 ? len / 2 : 0;

  HeaderView hv;
  if (parse_frame(frame.data(), len, &hv) == ParseError::kOk && hv.l3 == L3::kIpv4 && hv.proto == kProtoUdp &&
      hv.dport == kEspPort && !hv.fragment) {
    Packet p(frame.data(), len, split);
    rte_mbuf* m = p.m();
    const MbufState before = state_of(m);
    // The UDP payload read as a decrypted ESP payload: what overlay_pull gets after ESP.
    OverlayHdr ov;
    const uint32_t pay = hv.l4_off + 8u;
    if (m->nb_segs == 1 && m->data_len >= pay) {
      rte_pktmbuf_adj(m, static_cast<uint16_t>(pay));
      const MbufState at = state_of(m);
      if (!overlay_pull(m, &ov)) {
        FUZZ_CHECK(same_state(state_of(m), at));
      } else {
        check_inside(m);
        FUZZ_CHECK(m->data_len == at.data_len - sizeof(OverlayHdr) + kEthLen);
        FUZZ_CHECK(ov.ver_type == (kOverlayVersion << 4 | static_cast<uint8_t>(OverlayType::kData)));
        const uint8_t* e = rte_pktmbuf_mtod(m, const uint8_t*);
        for (int i = 0; i < 12; ++i) FUZZ_CHECK(e[i] == 0);
        const uint16_t type = static_cast<uint16_t>(e[12] << 8 | e[13]);
        FUZZ_CHECK(type == ((e[14] >> 4) == 4 ? kEtherIpv4 : kEtherIpv6));
        // What the worker does next with it.
        HeaderView inner;
        (void)parse_frame(e, m->data_len, &inner);
      }
    }
    (void)before;
  }

  Packet p(frame.data(), len, split);
  (void)decrypt_checked(sas, {p.m()});
}

// ---- ESP packets sealed by the harness ----

// One ESP packet, as the input describes it.
struct Spec {
  uint8_t which;                 // 0: the plain SA, 1: the ESN SA, else an SPI from the input
  uint32_t spi;
  uint32_t seq_lo;
  uint32_t seq_hi;               // the high half in the AAD (ESN SA only)
  uint8_t iv[kEspIvLen];
  std::vector<uint8_t> plain;    // ciphertext after sealing: inner packet and trailer
  bool trailer_ok;               // the harness built the trailer (pad 1, 2, 3..., length, nh)
  uint8_t next_header;
  uint32_t eth_pad;              // bytes after the IP datagram (Ethernet padding)
};

// Layout: flags (1), seq_lo (4), [seq_hi (4) when flags & 0x08], [spi (4) when an unknown SA],
// iv (8), length (2), then that many bytes of plaintext; with flags & 0x10 the harness appends
// a valid trailer with next header {4, 41, 253, input byte}[flags >> 5 & 3] to them.
Spec read_spec(Reader& in) {
  Spec s{};
  const uint8_t flags = in.u8();
  s.which = flags & 3;
  s.seq_lo = in.u32();
  s.seq_hi = (flags & 0x08) != 0 ? in.u32() : 0;
  s.spi = s.which == 0 ? kSpiPlain : s.which == 1 ? kSpiEsn : in.u32();
  for (uint8_t& b : s.iv) b = in.u8();
  s.plain = in.bytes(in.u16() % kMaxPlain);
  s.trailer_ok = (flags & 0x10) != 0;
  s.eth_pad = (flags & 0x04) != 0 ? 6 : 0;
  if (s.trailer_ok) {
    static constexpr uint8_t kNh[3] = {kEspNextIpv4, kEspNextIpv6, kEspNextOverlay};
    const uint8_t sel = flags >> 5 & 3;
    s.next_header = sel < 3 ? kNh[sel] : in.u8();
    const uint32_t pad = (0u - (static_cast<uint32_t>(s.plain.size()) + 2)) & 3u;
    for (uint32_t k = 1; k <= pad; ++k) s.plain.push_back(static_cast<uint8_t>(k));
    s.plain.push_back(static_cast<uint8_t>(pad));
    s.plain.push_back(s.next_header);
  }
  return s;
}

void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}

// The frame: Ethernet, IPv4 (valid checksum), UDP 4500 -> 4500, ESP sealed with the SA's key
// (an unknown SPI gets the plain SA's key), Ethernet padding.
std::vector<uint8_t> seal_frame(CryptoEngine& engine, const GcmKey& key_plain, const GcmKey& key_esn, const Spec& s) {
  const auto ct = static_cast<uint32_t>(s.plain.size());
  const uint32_t esp_len = kEspHdrLen + kEspIvLen + ct + kEspIcvLen;
  const uint32_t ip_len = 20 + 8 + esp_len;
  std::vector<uint8_t> f(kEthLen + ip_len + s.eth_pad, 0);
  uint8_t* p = f.data();
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  std::memcpy(p, macs, 12);
  put16(p + 12, kEtherIpv4);
  uint8_t* ip = p + kEthLen;
  ip[0] = 0x45;
  put16(ip + 2, ip_len);
  put16(ip + 6, 0x4000);
  ip[8] = 64;
  ip[9] = kProtoUdp;
  put32(ip + 12, 0x0a010102);
  put32(ip + 16, 0x0a010002);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += uint32_t{ip[i]} << 8 | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  put16(ip + 10, ~sum & 0xffff);
  uint8_t* udp = ip + 20;
  put16(udp, kEspPort);
  put16(udp + 2, kEspPort);
  put16(udp + 4, 8 + esp_len);
  uint8_t* esp = udp + 8;
  put32(esp, s.spi);
  put32(esp + 4, s.seq_lo);
  std::memcpy(esp + 8, s.iv, kEspIvLen);
  uint8_t* text = esp + kEspHdrLen + kEspIvLen;
  if (ct != 0) std::memcpy(text, s.plain.data(), ct);

  const bool esn = s.which == 1;
  uint8_t iv[kGcmIvLen];
  std::memcpy(iv, esn ? kSaltEsn : kSaltPlain, kEspSaltLen);
  std::memcpy(iv + kEspSaltLen, s.iv, kEspIvLen);
  uint8_t aad[12];
  size_t aad_len = 8;
  std::memcpy(aad, esp, 8);
  if (esn) {
    put32(aad + 4, s.seq_hi);
    put32(aad + 8, s.seq_lo);
    aad_len = 12;
  }
  engine.seal(esn ? key_esn : key_plain, iv, aad, aad_len, text, text, ct, text + ct);
  return f;
}

// What esp_decrypt_burst must do with an unedited packet of spec s given to SAs that have
// received nothing yet: keep it (nullopt) or drop it for the reason returned.
std::optional<EspDrop> expect_single(const Spec& s) {
  if (s.plain.size() < 2) return EspDrop::kRunt;
  if (s.spi != kSpiPlain && s.spi != kSpiEsn) return EspDrop::kUnknownSpi;
  if (s.seq_lo == 0) return EspDrop::kTooOld;
  // seal_frame uses the ESN SA's key and AAD only for which == 1, the plain SA's otherwise.
  const bool sealed_esn = s.which == 1;
  if (s.spi == kSpiEsn) {
    // An empty window's bottom (mod 2^32) is 2^32 - size + 1: a low half at or above it
    // belongs to the epoch before 0 (RFC 4303 A2.2), which does not exist.
    if (s.seq_lo >= 0u - kWindow + 1) return EspDrop::kTooOld;
    // The high half inferred from an empty window is 0.
    if (!sealed_esn || s.seq_hi != 0) return EspDrop::kIcvFail;
  } else if (sealed_esn) {
    return EspDrop::kIcvFail;
  }
  const size_t n = s.plain.size();
  const uint32_t pad = s.plain[n - 2];
  if (pad + 2 > n) return EspDrop::kBadPad;
  for (uint32_t k = 0; k < pad; ++k)
    if (s.plain[n - 2 - pad + k] != k + 1) return EspDrop::kBadPad;
  const uint8_t nh = s.plain[n - 1];
  if (nh != kEspNextIpv4 && nh != kEspNextIpv6 && nh != kEspNextOverlay) return EspDrop::kBadNextHeader;
  return std::nullopt;
}

void fuzz_single(Sas& sas, Reader& in) {
  const Spec s = read_spec(in);
  std::vector<uint8_t> f = seal_frame(sas.engine, sas.plain.key, sas.esn.key, s);
  // Edits: (offset, xor) pairs from the rest of the input; an XOR with 0 changes nothing.
  bool edited = false;
  for (uint32_t k = 0, n = in.u8() % 8; k < n && in.left() != 0; ++k) {
    const uint16_t at = in.u16();
    const uint8_t x = in.u8();
    if (f.empty()) break;
    f[at % f.size()] ^= x;
    edited |= x != 0;
  }
  // Whatever follows grows (or with a first byte >= 0x80 cuts) the frame.
  if (in.left() != 0) {
    const uint8_t how = in.u8();
    const std::vector<uint8_t> more = in.bytes(65535 - f.size());
    if (how >= 0x80) {
      f.resize(f.size() - std::min<size_t>(f.size(), how & 0x7f));
    } else {
      f.insert(f.end(), more.begin(), more.end());
    }
    edited |= how >= 0x80 ? (how & 0x7f) != 0 : !more.empty();
  }

  Packet p(f.data(), static_cast<uint32_t>(f.size()));
  const std::optional<EspDrop> want = expect_single(s);
  const uint64_t dropped_before = want ? sas.counters.dropped(*want) : 0;
  const Decrypted d = decrypt_checked(sas, {p.m()});
  if (edited) return;

  if (!want) {
    FUZZ_CHECK(d.kept == 1);
    const rte_mbuf* m = d.order[0];
    const size_t n = s.plain.size();
    const uint32_t inner = static_cast<uint32_t>(n) - 2 - s.plain[n - 2];
    FUZZ_CHECK(m->data_len == inner);
    FUZZ_CHECK(std::memcmp(rte_pktmbuf_mtod(m, const uint8_t*), s.plain.data(), inner) == 0);
    FUZZ_CHECK(d.next_headers[0] == s.plain[n - 1]);
    FUZZ_CHECK(d.tags[0] == (s.spi == kSpiEsn ? kTagEsn : kTagPlain));
    InboundSa& sa = s.spi == kSpiEsn ? sas.esn : sas.plain;
    FUZZ_CHECK(sa.window.top() == s.seq_lo);
  } else {
    FUZZ_CHECK(d.kept == 0);
    FUZZ_CHECK(sas.counters.dropped(*want) == dropped_before + 1);
    FUZZ_CHECK(sas.plain.window.top() == 0 && sas.esn.window.top() == 0);
  }
}

// The replay window of the plain SA as the RFC describes it: the highest sequence number
// accepted and the set of those accepted.
struct ReplayModel {
  uint64_t top = 0;
  std::set<uint64_t> seen;
  bool accept(uint64_t s) {
    if (s == 0 || (s <= top && (top - s >= kWindow || seen.count(s) != 0))) return false;
    top = std::max(top, s);
    seen.insert(s);
    return true;
  }
};

void fuzz_burst(Sas& sas, Reader& in) {
  const uint32_t count = 1 + in.u8() % kMaxBurst;
  std::vector<Spec> specs;
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < count && (i == 0 || in.left() != 0); ++i) {
    specs.push_back(read_spec(in));
    frames.push_back(seal_frame(sas.engine, sas.plain.key, sas.esn.key, specs.back()));
  }
  ReplayModel model;
  // Twice the same packets: the second time every one kept the first time is a replay.
  for (int round = 0; round < 2; ++round) {
    std::vector<std::unique_ptr<Packet>> pkts;
    std::vector<rte_mbuf*> ms;
    for (const auto& f : frames) {
      pkts.push_back(std::make_unique<Packet>(f.data(), static_cast<uint32_t>(f.size())));
      ms.push_back(pkts.back()->m());
    }
    const Decrypted d = decrypt_checked(sas, ms);
    for (size_t i = 0; i < specs.size(); ++i) {
      const size_t at = static_cast<size_t>(std::find(d.order.begin(), d.order.end(), ms[i]) - d.order.begin());
      const bool kept = at < d.kept;
      const Spec& s = specs[i];
      if (s.spi != kSpiPlain) {
        if (s.spi != kSpiEsn) FUZZ_CHECK(!kept);
        continue;
      }
      // The plain SA: whatever expect_single keeps from an empty window (its verdicts on the
      // plain SA do not depend on the window), if the window takes it.
      const bool want = !expect_single(s) && model.accept(s.seq_lo);
      FUZZ_CHECK(kept == want);
      if (kept) {
        const size_t n = s.plain.size();
        FUZZ_CHECK(d.order[at]->data_len == n - 2 - s.plain[n - 2]);
        FUZZ_CHECK(d.next_headers[at] == s.plain[n - 1]);
      }
    }
    FUZZ_CHECK(sas.plain.window.top() == model.top);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  start_eal();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Reader in(data + 1, size - 1);
  const uint8_t mode = data[0];
  Sas sas(*g_engines[(mode >> 2 & 3) % 3]);
  switch (mode % 3) {
    case 0: fuzz_raw(sas, mode, in); break;
    case 1: fuzz_single(sas, in); break;
    default: fuzz_burst(sas, in); break;
  }
  return 0;
}
