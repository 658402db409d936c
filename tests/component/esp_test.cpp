// ESP tunnel mode in UDP on real mbufs (dataplane/esp/esp.hpp): known answers from the GCM
// specification (McGrew & Viega, test case 15's key stream) and draft-mcgrew-gcm-test-01 (an
// ESP packet with a 256-bit key), OpenSSL as an independent AES-GCM for every ICV the tests
// predict, round trips of every inner size, single-bit tampering, replay, sequence numbers and
// their limit, malformed frames, failures moved behind the kept packets, and scapy's
// SecurityAssociation decrypting our packets and encrypting packets for us.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <rte_mbuf.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "control/esp/spi.hpp"
#include "dataplane/esp/esp.hpp"
#include "pkt.hpp"

namespace sdwan::test {
namespace {

using dp::EspDrop;
using dp::InboundSa;
using dp::OutboundSa;

static_assert(dp::InboundTable::kSlots == cp::kSpiSlots, "the inbound table follows the SPI layout");
static_assert(dp::esp_max_inner(1500) == 1438 && dp::esp_outer_ip_len(1438) == 1500 &&
              dp::esp_outer_ip_len(1439) > 1500);

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("ct_esp_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

dp::CryptoEngine& engine() {
  static std::unique_ptr<dp::CryptoEngine> e = [] {
    auto r = dp::CryptoEngine::create();
    if (!r.ok()) {
      std::fprintf(stderr, "esp_test: %s\n", r.error().msg.c_str());
      std::abort();
    }
    return std::move(r.value());
  }();
  return *e;
}

Bytes hex(std::string_view s) {
  Bytes out;
  auto nib = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10); };
  for (size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<uint8_t>(nib(s[i]) << 4 | nib(s[i + 1])));
  return out;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}
std::string to_hex(const Bytes& b) { return to_hex(b.data(), b.size()); }

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes be32(uint32_t v) { return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}; }
Bytes be64(uint64_t v) { return cat({be32(static_cast<uint32_t>(v >> 32)), be32(static_cast<uint32_t>(v))}); }
uint64_t get64(const Bytes& b, size_t off) { return uint64_t{get32(b, off)} << 32 | get32(b, off + 4); }

// ---- an independent AES-256-GCM: OpenSSL ----

/// Seals (enc) or opens in with key, nonce (12 bytes) and aad; for open, tag is the received
/// one and the result is false on a mismatch.
bool ossl_gcm(bool enc, const uint8_t* key, const Bytes& nonce, const Bytes& aad, const Bytes& in, Bytes* out, Bytes* tag) {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int len = 0;
  bool ok = c != nullptr && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr, enc ? 1 : 0) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) == 1 &&
            EVP_CipherInit_ex(c, nullptr, nullptr, key, nonce.data(), enc ? 1 : 0) == 1 &&
            EVP_CipherUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1;
  out->assign(in.size() + 16, 0);
  int n = 0;
  if (ok && !in.empty()) ok = EVP_CipherUpdate(c, out->data(), &n, in.data(), static_cast<int>(in.size())) == 1;
  if (ok && !enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag->data()) == 1;
  int fin = 0;
  if (ok) ok = EVP_CipherFinal_ex(c, out->data() + n, &fin) == 1;
  out->resize(static_cast<size_t>(n + fin));
  if (ok && enc) {
    tag->assign(16, 0);
    ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag->data()) == 1;
  }
  EVP_CIPHER_CTX_free(c);
  return ok;
}

// ---- mbufs ----

rte_mbuf* mbuf(const Bytes& b, int data_off = -1) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool());
  if (m == nullptr) {
    std::fprintf(stderr, "esp_test: mbuf pool empty\n");
    std::abort();
  }
  if (data_off >= 0) m->data_off = static_cast<uint16_t>(data_off);
  if (!b.empty()) std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(b.size())), b.data(), b.size());
  return m;
}

Bytes bytes(const rte_mbuf* m) {
  const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
  return Bytes(p, p + m->data_len);
}

/// A burst of mbufs freed at the end of the scope, whatever order the burst functions left.
struct Mbufs {
  std::vector<rte_mbuf*> v;
  Mbufs() = default;
  explicit Mbufs(const std::vector<Bytes>& frames) {
    for (const Bytes& f : frames) v.push_back(mbuf(f));
  }
  Mbufs(const Mbufs&) = delete;
  ~Mbufs() {
    for (rte_mbuf* m : v) rte_pktmbuf_free(m);
  }
  std::span<rte_mbuf*> span() { return {v.data(), v.size()}; }
};

// ---- SAs ----

struct KeyMat {
  uint8_t key[32];
  uint8_t salt[4];
};

KeyMat key_mat(uint8_t seed) {
  KeyMat k;
  for (int i = 0; i < 32; ++i) k.key[i] = static_cast<uint8_t>(seed + i * 7);
  for (int i = 0; i < 4; ++i) k.salt[i] = static_cast<uint8_t>(0xa0 + seed + i);
  return k;
}

dp::EspPath test_path(uint16_t mtu = 1500) {
  dp::EspPath p;
  p.smac = mac(0x01);
  p.dmac = mac(0x02);
  p.src = ip("10.1.0.2");
  p.dst = ip("10.1.1.2");
  p.sport = 4500;
  p.dport = 4500;
  p.mtu = mtu;
  return p;
}

using Snap = std::array<uint64_t, static_cast<size_t>(EspDrop::kCount)>;
Snap snap(const dp::EspCounters& c) {
  Snap s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = c.drops[i].load();
  return s;
}
/// The drop counters that moved between two snapshots, as "name+n ...", "" if none.
std::string moved(const Snap& a, const Snap& b) {
  std::string s;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) {
      s += s.empty() ? "" : " ";
      s += std::string(dp::esp_drop_name(static_cast<EspDrop>(i))) + "+" + std::to_string(b[i] - a[i]);
    }
  return s;
}
std::string one(EspDrop d) { return std::string(dp::esp_drop_name(d)) + "+1"; }

/// An outbound SA looped back into an inbound one with the same key (one direction of a path).
struct Tunnel {
  KeyMat k;
  uint32_t spi;
  bool esn;
  std::unique_ptr<OutboundSa> out;
  std::unique_ptr<InboundSa> in;
  std::unique_ptr<dp::InboundTable> table = std::make_unique<dp::InboundTable>();
  dp::EspCounters tx, rx;

  explicit Tunnel(bool esn_, uint16_t mtu = 1500, uint32_t spi_ = 0x5d000052, uint32_t window = 1024, uint8_t seed = 1)
      : k(key_mat(seed)), spi(spi_), esn(esn_) {
    out = std::make_unique<OutboundSa>(engine(), spi, k.key, k.salt, esn, ~uint64_t{0}, test_path(mtu));
    in = std::make_unique<InboundSa>(engine(), spi, k.key, k.salt, esn, window, 77);
    EXPECT_TRUE(table->install(in.get()));
  }

  /// Encrypts inners in one burst; the frames of the kept ones, in order.
  std::vector<Bytes> seal(const std::vector<Bytes>& inners, uint8_t nh) {
    Mbufs b(inners);
    const uint16_t n = dp::esp_encrypt_burst(engine(), *out, b.span(), nh, tx);
    std::vector<Bytes> frames;
    for (uint16_t i = 0; i < n; ++i) frames.push_back(bytes(b.v[i]));
    return frames;
  }
  Bytes seal_one(const Bytes& inner, uint8_t nh, uint64_t seq) {
    out->seq = seq;
    auto f = seal({inner}, nh);
    EXPECT_EQ(f.size(), 1u);
    return f.empty() ? Bytes{} : f[0];
  }
};

struct Rx {
  bool kept = false;
  Bytes data;       // inner packet when kept, the frame's bytes as left otherwise
  uint8_t nh = 0;
  uint16_t tag = 0;
};

/// Decrypts frames in one burst; per frame what became of it. Checks the burst contract: the
/// kept ones first, in their order, the others after them.
std::vector<Rx> open(dp::InboundTable& table, dp::EspCounters& c, const std::vector<Bytes>& frames) {
  Mbufs b(frames);
  const std::vector<rte_mbuf*> before = b.v;
  std::vector<uint8_t> nh(frames.size(), 0xee);
  std::vector<uint16_t> tags(frames.size(), 0xeeee);
  const uint16_t n = dp::esp_decrypt_burst(engine(), table, b.span(), c, nh.data(), tags.data());
  std::vector<Rx> out(frames.size());
  std::map<rte_mbuf*, size_t> index;
  for (size_t i = 0; i < before.size(); ++i) index[before[i]] = i;
  size_t last = 0;
  for (size_t i = 0; i < b.v.size(); ++i) {
    const size_t at = index.at(b.v[i]);
    Rx& r = out[at];
    r.data = bytes(b.v[i]);
    if (i < n) {
      EXPECT_TRUE(i == 0 || at > last) << "kept packets out of order";
      last = at;
      r.kept = true;
      r.nh = nh[i];
      r.tag = tags[i];
    }
  }
  EXPECT_EQ(std::set<rte_mbuf*>(b.v.begin(), b.v.end()).size(), frames.size()) << "an mbuf got lost or doubled";
  return out;
}

/// An inner packet of exactly size bytes: IPv4 (UDP from 28 bytes on) with next header 4, or
/// below 20 bytes raw bytes with next header 253.
Bytes inner_packet(uint32_t size, uint8_t* nh) {
  Bytes b(size);
  for (uint32_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(i * 13 + size);
  if (size < 20) {
    *nh = dp::kEspNextOverlay;
    return b;
  }
  *nh = dp::kEspNextIpv4;
  b[0] = 0x45;
  b[1] = 0;
  put16(b, 2, static_cast<uint16_t>(size));
  put16(b, 4, static_cast<uint16_t>(size));
  put16(b, 6, 0);
  b[8] = 64;
  b[9] = size >= 28 ? 17 : 59;
  put16(b, 10, 0);
  put32(b, 12, ip("192.168.10.2").v);
  put32(b, 16, ip("192.168.20.2").v);
  const uint16_t c = dp::inet_checksum(b.data(), 20);
  std::memcpy(b.data() + 10, &c, 2);
  if (size >= 28) {
    put16(b, 20, 1111);
    put16(b, 22, 2222);
    put16(b, 24, static_cast<uint16_t>(size - 20));
    put16(b, 26, 0);
  }
  return b;
}

/// The outer headers of a frame esp_encrypt_burst built; "" when all is as esp.hpp says.
std::string check_outer(const Bytes& f, size_t inner_len, const dp::EspPath& p, uint32_t spi, uint64_t seq) {
  std::ostringstream e;
  const uint32_t ip_len = dp::esp_outer_ip_len(static_cast<uint32_t>(inner_len));
  if (f.size() != 14 + ip_len) return "frame length " + std::to_string(f.size());
  if (!std::equal(f.begin(), f.begin() + 6, p.dmac.b.begin())) e << " dmac";
  if (!std::equal(f.begin() + 6, f.begin() + 12, p.smac.b.begin())) e << " smac";
  if (get16(f, 12) != 0x0800) e << " ethertype";
  if (f[14] != 0x45 || f[15] != 0) e << " version/ihl/tos";
  if (get16(f, 16) != ip_len) e << " total length";
  if (get16(f, 18) != static_cast<uint16_t>(seq)) e << " id";
  if (get16(f, 20) != 0x4000) e << " DF";
  if (f[22] != 64) e << " ttl";
  if (f[23] != 17) e << " protocol";
  if (!ipv4_checksum_ok(f, 14)) e << " ip checksum";
  if (get32(f, 26) != p.src.v || get32(f, 30) != p.dst.v) e << " addresses";
  if (get16(f, 34) != p.sport || get16(f, 36) != p.dport) e << " ports";
  if (get16(f, 38) != ip_len - 20) e << " udp length";
  if (get16(f, 40) != 0) e << " udp checksum";
  if (get32(f, 42) != spi) e << " spi";
  if (get32(f, 46) != static_cast<uint32_t>(seq)) e << " seq";
  if (get64(f, 50) != seq) e << " iv";
  return e.str();
}

/// Eth/IPv4/UDP 4500 around an ESP packet (as a peer would send it).
Bytes udp_frame(const Bytes& esp, uint16_t dport = 4500) {
  Bytes l4(8 + esp.size());
  put16(l4, 0, 4500);
  put16(l4, 2, dport);
  put16(l4, 4, static_cast<uint16_t>(l4.size()));
  std::copy(esp.begin(), esp.end(), l4.begin() + 8);
  return eth_ipv4(mac(0x01), mac(0x02), ip("10.1.1.2"), ip("10.1.0.2"), l4, {.ttl = 64, .proto = 17, .df = true});
}

/// An ESP packet sealed by OpenSSL with a plaintext (inner + trailer) of the test's choice.
Bytes craft_esp(const KeyMat& k, uint32_t spi, uint64_t seq, bool esn, const Bytes& plaintext, const Bytes& iv8) {
  const Bytes aad = esn ? cat({be32(spi), be32(static_cast<uint32_t>(seq >> 32)), be32(static_cast<uint32_t>(seq))})
                        : cat({be32(spi), be32(static_cast<uint32_t>(seq))});
  Bytes ct, tag;
  EXPECT_TRUE(ossl_gcm(true, k.key, cat({Bytes(k.salt, k.salt + 4), iv8}), aad, plaintext, &ct, &tag));
  return cat({be32(spi), be32(static_cast<uint32_t>(seq)), iv8, ct, tag});
}

Bytes trailer(uint32_t inner_len, uint8_t nh) {
  const uint32_t pad = (4 - (inner_len + 2) % 4) % 4;
  Bytes t;
  for (uint32_t i = 1; i <= pad; ++i) t.push_back(static_cast<uint8_t>(i));
  t.push_back(static_cast<uint8_t>(pad));
  t.push_back(nh);
  return t;
}

// =====================================================================================
// Known answers
// =====================================================================================

// GCM specification test case 15 (AES-256): key, nonce cafebabefacedbaddecaf888, a 64-byte
// plaintext and its ciphertext, i.e. 64 bytes of the key stream of that key and nonce. An SA
// with that key, salt cafebabe and ESN sequence number facedbaddecaf888 (the explicit IV is the
// sequence number) has that nonce, so the ciphertext of any inner packet + trailer of up to 64
// bytes is predicted byte for byte by the specification. The ICV covers RFC 4106's AAD, which no
// GCM-spec vector has: OpenSSL computes it independently.
constexpr const char* kTc15Key = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr const char* kTc15Plain =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr const char* kTc15Cipher =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

TEST(EspKnownAnswer, GcmSpecKeyStreamAndIndependentIcv) {
  const Bytes key = hex(kTc15Key), p15 = hex(kTc15Plain), c15 = hex(kTc15Cipher);
  const uint8_t salt[4] = {0xca, 0xfe, 0xba, 0xbe};
  const uint64_t seq = 0xfacedbaddecaf888ULL;
  const uint32_t spi = 0x5d000052;
  struct Row {
    uint32_t inner_len;
    uint8_t nh;
  };
  const Row rows[] = {{0, 253}, {1, 253}, {2, 253}, {5, 253}, {30, 253}, {58, 253}, {61, 253}, {62, 253}, {62, 4}};
  for (const Row& r : rows) {
    SCOPED_TRACE("inner length " + std::to_string(r.inner_len) + " next header " + std::to_string(r.nh));
    OutboundSa out(engine(), spi, key.data(), salt, true, ~uint64_t{0}, test_path());
    out.seq = seq;
    const Bytes inner(p15.begin(), p15.begin() + r.inner_len);
    dp::EspCounters c;
    Mbufs b({inner});
    ASSERT_EQ(dp::esp_encrypt_burst(engine(), out, b.span(), r.nh, c), 1);
    const Bytes f = bytes(b.v[0]);
    EXPECT_EQ(check_outer(f, r.inner_len, test_path(), spi, seq), "");
    EXPECT_EQ(to_hex(Bytes(f.begin() + 50, f.begin() + 58)), "facedbaddecaf888");  // the spec's explicit IV

    const Bytes plain = cat({inner, trailer(r.inner_len, r.nh)});
    ASSERT_LE(plain.size(), 64u);
    Bytes want_ct(plain.size());
    for (size_t i = 0; i < plain.size(); ++i) want_ct[i] = static_cast<uint8_t>(plain[i] ^ p15[i] ^ c15[i]);
    const Bytes got_ct(f.begin() + 58, f.end() - 16);
    const Bytes got_icv(f.end() - 16, f.end());
    EXPECT_EQ(to_hex(got_ct), to_hex(want_ct)) << "ciphertext differs from the GCM spec's key stream";

    Bytes ossl_ct, ossl_icv;
    const Bytes aad = cat({be32(spi), be32(0xfacedbad), be32(0xdecaf888)});
    ASSERT_TRUE(ossl_gcm(true, key.data(), hex("cafebabefacedbaddecaf888"), aad, plain, &ossl_ct, &ossl_icv));
    EXPECT_EQ(to_hex(ossl_ct), to_hex(want_ct));
    EXPECT_EQ(to_hex(got_icv), to_hex(ossl_icv)) << "ICV differs from OpenSSL's";

    // And our inbound side takes it, once its window knows the high half.
    InboundSa in(engine(), spi, key.data(), salt, true, 1024, 5);
    ASSERT_TRUE(in.window.accept(0xfacedbaddecaf000ULL));
    auto t = std::make_unique<dp::InboundTable>();
    ASSERT_TRUE(t->install(&in));
    dp::EspCounters rc;
    const auto rx = open(*t, rc, {f});
    ASSERT_TRUE(rx[0].kept) << moved(Snap{}, snap(rc));
    EXPECT_EQ(rx[0].data, inner);
    EXPECT_EQ(rx[0].nh, r.nh);
    EXPECT_EQ(rx[0].tag, 5);
    EXPECT_EQ(in.window.top(), seq);
  }
}

// draft-mcgrew-gcm-test-01, the 256-bit-key case: SPI 4a2cbfe3, sequence 2, salt 11223344,
// IV 0102030405060708, a complete ESP packet made by someone else. Its trailer ends in next
// header 1, which a tunnel does not carry: the packet must authenticate (so nonce and AAD are
// formed as the reference forms them), decrypt to the draft's plaintext, and then be dropped as
// bad_next_header without touching the window. With one ICV bit flipped it is an ICV failure.
TEST(EspKnownAnswer, DraftMcGrewGcmTest256BitEspPacket) {
  const Bytes key = hex("abbccddef00112233445566778899aababbccddef00112233445566778899aab");
  const uint8_t salt[4] = {0x11, 0x22, 0x33, 0x44};
  const Bytes esp = hex(
      "4a2cbfe3000000020102030405060708ff425c9b724599df7a3bcd510194e00d"
      "6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99d"
      "ef842d8eb335f4eecfdbf831824b4c4915956c96");
  const Bytes plain = hex(
      "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
      "7002400020bf0000020405b40101040201020201");
  for (bool tamper : {false, true}) {
    SCOPED_TRACE(tamper ? "ICV bit flipped" : "as published");
    InboundSa in(engine(), 0x4a2cbfe3, key.data(), salt, false, 1024);
    auto t = std::make_unique<dp::InboundTable>();
    ASSERT_TRUE(t->install(&in));
    Bytes e = esp;
    if (tamper) e.back() ^= 0x01;
    dp::EspCounters c;
    const auto rx = open(*t, c, {udp_frame(e)});
    EXPECT_FALSE(rx[0].kept);
    EXPECT_EQ(moved(Snap{}, snap(c)), one(tamper ? EspDrop::kIcvFail : EspDrop::kBadNextHeader));
    const Bytes region(rx[0].data.begin() + 58, rx[0].data.end() - 16);
    EXPECT_EQ(to_hex(region), tamper ? std::string(plain.size() * 2, '0') : to_hex(plain));
    EXPECT_EQ(in.window.top(), 0u);
    EXPECT_EQ(in.pkts.load(), 0u);
    EXPECT_EQ(tamper ? in.icv_fail.load() : in.bad_trailer.load(), 1u);
  }
}

// =====================================================================================
// Round trips and the frame we build
// =====================================================================================

class EspEsn : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Esn, EspEsn, ::testing::Bool(), [](const auto& i) { return i.param ? "esn" : "no_esn"; });

TEST_P(EspEsn, RoundTripEveryInnerSize0To1500) {
  Tunnel t(GetParam(), 1600);
  constexpr uint32_t kMax = 1500;
  uint64_t seq = 1;
  uint32_t checked = 0;
  for (uint32_t lo = 0; lo <= kMax;) {
    // A burst of consecutive sizes sharing a next header (253 below 20 bytes, 4 from 20 on).
    std::vector<Bytes> inners;
    uint8_t nh = 0, first_nh = 0;
    inners.push_back(inner_packet(lo, &first_nh));
    uint32_t hi = lo + 1;
    for (; hi <= kMax && inners.size() < 40; ++hi) {
      Bytes p = inner_packet(hi, &nh);
      if (nh != first_nh) break;
      inners.push_back(std::move(p));
    }
    const auto frames = t.seal(inners, first_nh);
    ASSERT_EQ(frames.size(), inners.size()) << "sizes " << lo << ".." << hi - 1;
    for (size_t i = 0; i < frames.size(); ++i)
      EXPECT_EQ(check_outer(frames[i], inners[i].size(), test_path(1600), t.spi, seq + i), "") << "size " << lo + i;
    const auto rx = open(*t.table, t.rx, frames);
    for (size_t i = 0; i < rx.size(); ++i) {
      ASSERT_TRUE(rx[i].kept) << "size " << lo + i << ": " << moved(Snap{}, snap(t.rx));
      EXPECT_EQ(rx[i].data, inners[i]) << "size " << lo + i;
      EXPECT_EQ(rx[i].nh, first_nh);
      EXPECT_EQ(rx[i].tag, 77);
      ++checked;
    }
    seq += frames.size();
    lo = hi;
  }
  EXPECT_EQ(checked, kMax + 1);
  EXPECT_EQ(t.tx.enc_pkts.load(), kMax + 1);
  EXPECT_EQ(t.rx.dec_pkts.load(), kMax + 1);
  EXPECT_EQ(t.tx.enc_bytes.load(), uint64_t{kMax} * (kMax + 1) / 2);
  EXPECT_EQ(t.rx.dec_bytes.load(), uint64_t{kMax} * (kMax + 1) / 2);
  EXPECT_EQ(t.out->pkts.load(), kMax + 1);
  EXPECT_EQ(t.in->pkts.load(), kMax + 1);
  EXPECT_EQ(t.in->window.top(), kMax + 1);
  EXPECT_EQ(moved(Snap{}, snap(t.tx)) + moved(Snap{}, snap(t.rx)), "");
}

// Each frame of a burst also verifies with OpenSSL's AES-GCM under RFC 4106's nonce and AAD, and
// its plaintext is the inner packet, RFC 4303 padding 1, 2, 3..., pad length and next header.
TEST_P(EspEsn, EveryFrameOpensWithOpenSsl) {
  Tunnel t(GetParam());
  if (GetParam()) t.out->seq = 0x7fffffffdULL;  // crosses into a new high half mid-burst
  const uint64_t seq0 = t.out->seq;
  std::vector<Bytes> inners;
  for (uint32_t size : {20u, 21u, 22u, 23u, 24u, 100u, 1438u}) {
    uint8_t nh;
    inners.push_back(inner_packet(size, &nh));
  }
  const auto frames = t.seal(inners, 4);
  ASSERT_EQ(frames.size(), inners.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const Bytes& f = frames[i];
    const uint64_t seq = seq0 + i;
    const Bytes iv(f.begin() + 50, f.begin() + 58);
    EXPECT_EQ(iv, be64(seq));
    Bytes aad = cat({be32(t.spi), be32(static_cast<uint32_t>(seq))});
    if (GetParam()) aad = cat({be32(t.spi), be32(static_cast<uint32_t>(seq >> 32)), be32(static_cast<uint32_t>(seq))});
    Bytes tag(f.end() - 16, f.end());
    Bytes plain;
    ASSERT_TRUE(ossl_gcm(false, t.k.key, cat({Bytes(t.k.salt, t.k.salt + 4), iv}), aad, Bytes(f.begin() + 58, f.end() - 16), &plain, &tag))
        << "frame " << i;
    EXPECT_EQ(plain, cat({inners[i], trailer(static_cast<uint32_t>(inners[i].size()), 4)}));
    EXPECT_EQ(plain.size() % 4, 0u);
  }
}

// =====================================================================================
// Sequence numbers
// =====================================================================================

TEST(EspEncrypt, SequenceNumbersConsecutiveFromOneAndIvsNeverRepeat) {
  Tunnel t(false);
  uint8_t nh;
  const Bytes inner = inner_packet(64, &nh);
  std::vector<Bytes> all;
  for (size_t burst : {5u, 32u, 7u}) {
    const auto frames = t.seal(std::vector<Bytes>(burst, inner), nh);
    ASSERT_EQ(frames.size(), burst);
    all.insert(all.end(), frames.begin(), frames.end());
  }
  std::set<uint64_t> ivs;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(get32(all[i], 46), i + 1) << "wire sequence number of packet " << i;
    EXPECT_EQ(get64(all[i], 50), i + 1);
    ivs.insert(get64(all[i], 50));
  }
  EXPECT_EQ(ivs.size(), all.size()) << "an IV repeated under one key";
  EXPECT_EQ(t.out->seq, 45u);
  EXPECT_EQ(t.out->pkts.load(), 44u);
  EXPECT_EQ(t.out->bytes.load(), 44u * 64);
}

// With ESN the header carries the low 32 bits; the high half is in the AAD (and, being the
// explicit IV, in the IV), so leaving it out or getting it wrong fails the ICV.
TEST(EspEncrypt, EsnHighHalfOnlyInTheAad) {
  Tunnel t(true);
  t.out->seq = 0xfffffffeULL;
  uint8_t nh;
  const Bytes inner = inner_packet(80, &nh);
  const auto frames = t.seal(std::vector<Bytes>(4, inner), nh);
  ASSERT_EQ(frames.size(), 4u);
  const uint64_t seqs[] = {0xfffffffeULL, 0xffffffffULL, 0x100000000ULL, 0x100000001ULL};
  for (size_t i = 0; i < 4; ++i) {
    const Bytes& f = frames[i];
    SCOPED_TRACE("sequence " + std::to_string(seqs[i]));
    EXPECT_EQ(get32(f, 46), static_cast<uint32_t>(seqs[i]));
    EXPECT_EQ(get64(f, 50), seqs[i]);
    const Bytes nonce = cat({Bytes(t.k.salt, t.k.salt + 4), Bytes(f.begin() + 50, f.begin() + 58)});
    const Bytes ct(f.begin() + 58, f.end() - 16);
    const uint32_t hi = static_cast<uint32_t>(seqs[i] >> 32), lo = static_cast<uint32_t>(seqs[i]);
    Bytes plain, tag(f.end() - 16, f.end());
    EXPECT_TRUE(ossl_gcm(false, t.k.key, nonce, cat({be32(t.spi), be32(hi), be32(lo)}), ct, &plain, &tag));
    EXPECT_FALSE(ossl_gcm(false, t.k.key, nonce, cat({be32(t.spi), be32(lo)}), ct, &plain, &tag));
    EXPECT_FALSE(ossl_gcm(false, t.k.key, nonce, cat({be32(t.spi), be32(hi + 1), be32(lo)}), ct, &plain, &tag));
  }
  // The receiver infers the high half from its window across the wrap of the low half.
  ASSERT_TRUE(t.in->window.accept(0xfffffff0ULL));
  const auto rx = open(*t.table, t.rx, frames);
  for (const Rx& r : rx) EXPECT_TRUE(r.kept) << moved(Snap{}, snap(t.rx));
  EXPECT_EQ(t.in->window.top(), 0x100000001ULL);
}

TEST(EspEncrypt, SeqLimitReachedSendsNothing) {
  struct Row {
    const char* name;
    bool esn;
    uint64_t start, limit;  // limit ~0: the SA's default
    uint32_t burst, kept;
  };
  const Row rows[] = {
      {"room for all", false, 1, 100, 5, 5},
      {"room for 3 of 5", false, 1, 4, 5, 3},
      {"at the limit", false, 4, 4, 5, 0},
      {"no ESN: 2^32 - 1 is the last", false, 0xfffffffeULL, ~uint64_t{0}, 4, 2},
      {"no ESN: exhausted", false, 0x100000000ULL, ~uint64_t{0}, 3, 0},
      {"ESN: goes on past 2^32", true, 0xfffffffeULL, ~uint64_t{0}, 4, 4},
      {"ESN: limit from control", true, 0x500000000ULL, 0x500000002ULL, 40, 2},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    const KeyMat k = key_mat(3);
    OutboundSa out(engine(), 0x5d000060, k.key, k.salt, r.esn, r.limit, test_path());
    out.seq = r.start;
    dp::EspCounters c;
    uint8_t nh;
    const Bytes inner = inner_packet(60, &nh);
    Mbufs b(std::vector<Bytes>(r.burst, inner));
    ASSERT_EQ(dp::esp_encrypt_burst(engine(), out, b.span(), nh, c), r.kept);
    EXPECT_EQ(c.dropped(EspDrop::kSaExpired), r.burst - r.kept);
    EXPECT_EQ(moved(Snap{}, snap(c)), r.burst == r.kept ? "" : std::string("sa_expired+") + std::to_string(r.burst - r.kept));
    for (uint32_t i = r.kept; i < r.burst; ++i) EXPECT_EQ(bytes(b.v[i]), inner) << "an expired packet was touched";
    EXPECT_EQ(out.seq, r.start + r.kept);
    if (r.kept < r.burst) {
      EXPECT_TRUE(out.expired());
    }
    // Once expired, never again.
    if (out.expired()) {
      Mbufs again(std::vector<Bytes>(3, inner));
      EXPECT_EQ(dp::esp_encrypt_burst(engine(), out, again.span(), nh, c), 0);
      for (rte_mbuf* m : again.v) EXPECT_EQ(bytes(m), inner);
    }
  }
}

// Workers' sequence blocks (EspSeqBlock): numbers reserved from the SA a block at a time, so no
// two workers ever use one (an IV never repeats under the key), one worker alone leaves no gap,
// the counts reach the SA when flushed, and an SA made where a freed one was starts afresh.
TEST(EspEncrypt, WorkerSequenceBlocksNeverShareANumber) {
  Tunnel t(true, 1500, 0x5d000052, 4096);
  uint8_t nh;
  const Bytes inner = inner_packet(64, &nh);
  dp::EspSeqBlock a, b;
  auto seal_with = [&](dp::EspSeqBlock& blk, size_t n) {
    Mbufs m(std::vector<Bytes>(n, inner));
    const uint16_t kept = dp::esp_encrypt_burst(engine(), *t.out, t.out->outer, m.span(), nh, t.tx, blk, rte_rdtsc());
    EXPECT_EQ(kept, n);
    std::vector<Bytes> f;
    for (uint16_t i = 0; i < kept; ++i) f.push_back(bytes(m.v[i]));
    return f;
  };
  // One worker: 1, 2, 3... across bursts and blocks, as without blocks.
  std::vector<Bytes> frames;
  for (size_t n : {5u, 32u, 7u, 32u, 32u, 32u, 32u, 32u, 32u, 32u, 20u}) {
    const auto f = seal_with(a, n);
    frames.insert(frames.end(), f.begin(), f.end());
  }
  for (size_t i = 0; i < frames.size(); ++i) ASSERT_EQ(get64(frames[i], 50), i + 1) << "packet " << i;
  EXPECT_EQ(t.out->pkts.load(), 0u) << "counts wait in the block until flushed";
  dp::esp_seq_block_flush(a);
  EXPECT_EQ(t.out->pkts.load(), frames.size());
  EXPECT_EQ(t.out->bytes.load(), frames.size() * 64);
  // Two workers interleaved: every number once, and the receiver takes them all.
  std::set<uint64_t> seen;
  for (const Bytes& f : frames) seen.insert(get64(f, 50));
  std::vector<Bytes> mixed;
  for (int round = 0; round < 20; ++round) {
    for (dp::EspSeqBlock* blk : {&a, &b}) {
      for (const Bytes& f : seal_with(*blk, 29)) {
        EXPECT_TRUE(seen.insert(get64(f, 50)).second) << "sequence number " << get64(f, 50) << " used twice";
        mixed.push_back(f);
      }
    }
  }
  const auto rx = open(*t.table, t.rx, frames);
  for (const Rx& r : rx) EXPECT_TRUE(r.kept);
  const auto rx2 = open(*t.table, t.rx, mixed);
  for (const Rx& r : rx2) EXPECT_TRUE(r.kept) << moved(Snap{}, snap(t.rx));
  EXPECT_LE(t.out->seq.load(), *seen.rbegin() + 2 * dp::EspSeqBlock::kSize) << "at most a block per worker unused";

  // A new SA at the address of the freed one: its numbers start at 1, not in the old block.
  alignas(OutboundSa) unsigned char store[sizeof(OutboundSa)];
  auto* first = new (store) OutboundSa(engine(), 0x5d000070, t.k.key, t.k.salt, true, ~uint64_t{0}, test_path());
  dp::EspSeqBlock c;
  {
    Mbufs m(std::vector<Bytes>(3, inner));
    ASSERT_EQ(dp::esp_encrypt_burst(engine(), *first, first->outer, m.span(), nh, t.tx, c, rte_rdtsc()), 3);
    dp::esp_seq_block_flush(c);
  }
  first->~OutboundSa();
  auto* second = new (store) OutboundSa(engine(), 0x5d000070, t.k.key, t.k.salt, true, ~uint64_t{0}, test_path());
  ASSERT_EQ(static_cast<void*>(second), static_cast<void*>(first));
  {
    Mbufs m(std::vector<Bytes>(2, inner));
    ASSERT_EQ(dp::esp_encrypt_burst(engine(), *second, second->outer, m.span(), nh, t.tx, c, rte_rdtsc()), 2);
    EXPECT_EQ(get64(bytes(m.v[0]), 50), 1u) << "the new SA's first number, not the old block's fourth";
    EXPECT_EQ(get64(bytes(m.v[1]), 50), 2u);
    dp::esp_seq_block_flush(c);
    EXPECT_EQ(second->pkts.load(), 2u);
  }
  second->~OutboundSa();
}

// A block never reaches past the SA's limit: the last numbers go out, then nothing.
TEST(EspEncrypt, WorkerSequenceBlockStopsAtTheLimit) {
  const KeyMat k = key_mat(4);
  OutboundSa out(engine(), 0x5d000062, k.key, k.salt, true, 41, test_path());
  dp::EspSeqBlock blk;
  dp::EspCounters c;
  uint8_t nh;
  const Bytes inner = inner_packet(60, &nh);
  uint32_t kept = 0;
  for (int i = 0; i < 3; ++i) {
    Mbufs b(std::vector<Bytes>(16, inner));
    kept += dp::esp_encrypt_burst(engine(), out, out.outer, b.span(), nh, c, blk, rte_rdtsc());
  }
  EXPECT_EQ(kept, 40u) << "numbers 1..40 under a limit of 41 (exclusive)";
  EXPECT_EQ(c.dropped(EspDrop::kSaExpired), 8u);
  EXPECT_EQ(out.seq.load(), 41u);
  EXPECT_TRUE(out.expired());
}

// A refused packet takes no sequence number, with or without a worker's block, and near the
// limit the numbers go to the packets that can use them: a burst of 6 whose first and third
// packets are too big, 3 numbers left -> the 2nd, 4th and 5th go out as 38, 39, 40, the 6th is
// expired; the next burst, back from the limit, continues with no gap.
TEST(EspEncrypt, RefusedPacketsTakeNoSequenceNumber) {
  for (const bool block : {false, true}) {
    SCOPED_TRACE(block ? "worker block" : "shared");
    const KeyMat k = key_mat(5);
    OutboundSa out(engine(), 0x5d000064, k.key, k.salt, true, 41, test_path(1500));
    out.seq = 38;
    dp::EspSeqBlock blk;
    dp::EspCounters c;
    uint8_t nh;
    const Bytes small = inner_packet(60, &nh), big = inner_packet(1480, &nh);
    auto seal = [&](Mbufs& b) {
      return block ? dp::esp_encrypt_burst(engine(), out, out.outer, b.span(), nh, c, blk, rte_rdtsc())
                   : dp::esp_encrypt_burst(engine(), out, out.outer, b.span(), nh, c);
    };
    Mbufs b({big, small, big, small, small, small});
    const std::vector<rte_mbuf*> before = b.v;
    ASSERT_EQ(seal(b), 3);
    EXPECT_EQ(moved(Snap{}, snap(c)), "too_big+2 sa_expired+1");
    const rte_mbuf* sent[] = {before[1], before[3], before[4]};
    for (uint64_t i = 0; i < 3; ++i) {
      EXPECT_EQ(b.v[i], sent[i]);
      EXPECT_EQ(get64(bytes(b.v[i]), 50), 38 + i);
    }
    EXPECT_EQ(bytes(before[5]), small) << "the expired packet was touched";
    EXPECT_EQ(out.seq.load(), 41u);

    // Room again (a raised limit stands for a fresh SA here): 41, 42 and no gap for the refusal.
    out.seq_limit = 100;
    Mbufs b2({small, big, small});
    ASSERT_EQ(seal(b2), 2);
    EXPECT_EQ(get64(bytes(b2.v[0]), 50), 41u);
    EXPECT_EQ(get64(bytes(b2.v[1]), 50), 42u);
    Mbufs b3({small});
    ASSERT_EQ(seal(b3), 1);
    EXPECT_EQ(get64(bytes(b3.v[0]), 50), 43u) << "a refused packet left a gap";
  }
}

// =====================================================================================
// Outbound refusals: size and room
// =====================================================================================

TEST(EspEncrypt, TooBigNoRoomTable) {
  const uint32_t need_tail_100 = 2 + 2 + 16;  // inner 100: pad 2, pad length, next header, ICV
  struct Row {
    const char* name;
    uint32_t inner_len;
    int data_off;       // -1: the pool's headroom
    int tailroom;       // -1: whatever is left
    bool chained;
    const char* drop;   // "" = kept
  };
  const Row rows[] = {
      {"fits the MTU exactly, pad 0", 1438, -1, -1, false, ""},
      {"fits the MTU exactly, pad 1", 1437, -1, -1, false, ""},
      {"fits the MTU exactly, pad 2", 1436, -1, -1, false, ""},
      {"one byte over the MTU", 1439, -1, -1, false, "too_big+1"},
      {"far over the MTU", 1480, -1, -1, false, "too_big+1"},
      {"headroom exactly enough", 100, static_cast<int>(dp::kEspPrepend), -1, false, ""},
      {"headroom one short", 100, static_cast<int>(dp::kEspPrepend) - 1, -1, false, "no_room+1"},
      {"tailroom exactly enough", 100, -1, static_cast<int>(need_tail_100), false, ""},
      {"tailroom one short", 100, -1, static_cast<int>(need_tail_100) - 1, false, "no_room+1"},
      {"two segments", 100, -1, -1, true, "no_room+1"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Tunnel t(false);
    uint8_t nh;
    const Bytes inner = inner_packet(r.inner_len, &nh);
    int off = r.data_off;
    if (r.tailroom >= 0) off = static_cast<int>(RTE_MBUF_DEFAULT_BUF_SIZE) - static_cast<int>(r.inner_len) - r.tailroom;
    Mbufs b;
    if (r.chained) {
      rte_mbuf* a = mbuf(Bytes(inner.begin(), inner.begin() + 50));
      ASSERT_EQ(rte_pktmbuf_chain(a, mbuf(Bytes(inner.begin() + 50, inner.end()))), 0);
      b.v.push_back(a);
    } else {
      b.v.push_back(mbuf(inner, off));
    }
    const uint16_t off_before = b.v[0]->data_off;
    const uint16_t n = dp::esp_encrypt_burst(engine(), *t.out, b.span(), nh, t.tx);
    EXPECT_EQ(moved(Snap{}, snap(t.tx)), r.drop);
    if (std::string_view(r.drop).empty()) {
      ASSERT_EQ(n, 1);
      const Bytes f = bytes(b.v[0]);
      EXPECT_EQ(check_outer(f, r.inner_len, test_path(), t.spi, 1), "");
      EXPECT_LE(f.size() - 14, 1500u);
      const auto rx = open(*t.table, t.rx, {f});
      EXPECT_TRUE(rx[0].kept);
      EXPECT_EQ(rx[0].data, inner);
    } else {
      EXPECT_EQ(n, 0);
      EXPECT_EQ(b.v[0]->data_off, off_before);
      EXPECT_EQ(b.v[0]->pkt_len, r.inner_len);
      if (!r.chained) {
        EXPECT_EQ(bytes(b.v[0]), inner) << "a refused packet was changed";
      }
      EXPECT_EQ(t.out->seq, 1u) << "a refused packet used a sequence number";
    }
  }
}

// =====================================================================================
// Inbound: tampering, replay, malformed frames, bad trailers
// =====================================================================================

// One flipped bit anywhere in the ESP packet: SPI -> unknown SPI; sequence number (in the AAD),
// IV (in the nonce), ciphertext (trailer included) or ICV -> ICV failure. The packet is dropped,
// its plaintext zeroed, and the window does not move: a valid packet with a lower sequence
// number than the tampered one is still accepted afterwards, and then the genuine one.
TEST_P(EspEsn, OneFlippedBitAnywhereIsDropped) {
  Tunnel t(GetParam());
  uint8_t nh;
  const Bytes inner = inner_packet(100, &nh);
  const Bytes lower = t.seal_one(inner, nh, 0x12345);
  const Bytes victim = t.seal_one(inner, nh, 0x12346);
  ASSERT_FALSE(victim.empty());
  const size_t esp = 42, ct = 58, icv = victim.size() - 16;
  struct Region {
    const char* name;
    size_t from, to;
    EspDrop drop;
  };
  const Region regions[] = {
      {"spi", esp, esp + 4, EspDrop::kUnknownSpi},
      {"sequence number", esp + 4, esp + 8, EspDrop::kIcvFail},
      {"iv", esp + 8, ct, EspDrop::kIcvFail},
      {"ciphertext", ct, icv - 4, EspDrop::kIcvFail},
      {"trailer", icv - 4, icv, EspDrop::kIcvFail},
      {"icv", icv, victim.size(), EspDrop::kIcvFail},
  };
  uint64_t flips = 0, icv_fails = 0;
  for (const Region& r : regions) {
    for (size_t byte = r.from; byte < r.to; ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        Bytes f = victim;
        f[byte] ^= static_cast<uint8_t>(1u << bit);
        const Snap before = snap(t.rx);
        const auto rx = open(*t.table, t.rx, {f});
        ++flips;
        ASSERT_FALSE(rx[0].kept) << r.name << " byte " << byte << " bit " << bit;
        ASSERT_EQ(moved(before, snap(t.rx)), one(r.drop)) << r.name << " byte " << byte << " bit " << bit;
        if (r.drop == EspDrop::kIcvFail) {
          ++icv_fails;
          const Bytes region(rx[0].data.begin() + ct, rx[0].data.end() - 16);
          ASSERT_EQ(region, Bytes(region.size(), 0)) << "plaintext of a forged packet left in the mbuf";
        }
        ASSERT_EQ(t.in->window.top(), 0u) << "a forged packet moved the window";
      }
    }
  }
  EXPECT_EQ(flips, victim.size() * 8 - 42 * 8);
  EXPECT_EQ(t.in->icv_fail.load(), icv_fails);
  EXPECT_EQ(t.in->pkts.load(), 0u);
  const auto rx = open(*t.table, t.rx, {lower, victim});
  EXPECT_TRUE(rx[0].kept);
  EXPECT_TRUE(rx[1].kept);
  EXPECT_EQ(rx[1].data, inner);
  EXPECT_EQ(t.in->window.top(), 0x12346u);
}

TEST_P(EspEsn, ReplayTable) {
  struct Row {
    const char* name;
    std::vector<std::vector<uint64_t>> bursts;  // sequence numbers of the frames sent
    std::vector<std::vector<bool>> kept;
    uint64_t replay, too_old, top;
  };
  const std::vector<uint64_t> eight(8, 9);
  const Row rows[] = {
      {"in order", {{1, 2, 3, 4, 5}}, {{true, true, true, true, true}}, 0, 0, 5},
      {"reordered inside the window", {{5, 3, 4, 1, 2}}, {{true, true, true, true, true}}, 0, 0, 5},
      {"the same packet twice", {{7}, {7}}, {{true}, {false}}, 1, 0, 7},
      {"duplicates in one burst", {{1, 1, 2, 1}}, {{true, false, true, false}}, 2, 0, 2},
      {"8 copies -> 7 drops", {eight}, {{true, false, false, false, false, false, false, false}}, 7, 0, 9},
      {"too old", {{3000}, {1}}, {{true}, {false}}, 0, 1, 3000},
      {"jump ahead, then the window's edges", {{3000}, {1977}, {1976}}, {{true}, {true}, {false}}, 0, 1, 3000},
      {"in one burst, one far ahead pushes an earlier one out", {{2000, 5}}, {{true, false}}, 1, 0, 2000},
      {"in one burst, ahead after behind", {{5, 2000}}, {{true, true}}, 0, 0, 2000},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Tunnel t(GetParam());
    uint8_t nh;
    const Bytes inner = inner_packet(64, &nh);
    std::map<uint64_t, Bytes> frame;
    for (const auto& b : r.bursts)
      for (uint64_t s : b)
        if (!frame.count(s)) frame[s] = t.seal_one(inner, nh, s);
    for (size_t i = 0; i < r.bursts.size(); ++i) {
      std::vector<Bytes> frames;
      for (uint64_t s : r.bursts[i]) frames.push_back(frame[s]);
      const auto rx = open(*t.table, t.rx, frames);
      for (size_t j = 0; j < rx.size(); ++j) {
        EXPECT_EQ(rx[j].kept, r.kept[i][j]) << "burst " << i << " packet " << j;
        if (rx[j].kept) {
          EXPECT_EQ(rx[j].data, inner);
        }
      }
    }
    // With ESN a low half below the window is taken for the next epoch of the high half (RFC
    // 4303 A2.2), so what is "too old" without ESN fails its ICV instead; nothing is accepted.
    const bool esn = GetParam();
    EXPECT_EQ(t.rx.dropped(EspDrop::kReplay), r.replay);
    EXPECT_EQ(t.rx.dropped(EspDrop::kTooOld), esn ? 0 : r.too_old);
    EXPECT_EQ(t.rx.dropped(EspDrop::kIcvFail), esn ? r.too_old : 0);
    EXPECT_EQ(t.in->replay.load(), r.replay);
    EXPECT_EQ(t.in->too_old.load(), esn ? 0 : r.too_old);
    EXPECT_EQ(t.in->window.top(), r.top);
  }
}

TEST(EspDecrypt, MalformedOuterTable) {
  Tunnel t(false);
  uint8_t nh;
  const Bytes inner = inner_packet(100, &nh);
  const Bytes good = t.seal_one(inner, nh, 50);
  struct Row {
    const char* name;
    std::function<Bytes(Bytes)> mutate;
    const char* drop;  // "" = kept
  };
  auto set_tot = [](Bytes f, uint16_t v) { put16(f, 16, v); return f; };
  auto set_ulen = [](Bytes f, uint16_t v) { put16(f, 38, v); return f; };
  const Row rows[] = {
      {"as built", [](Bytes f) { return f; }, ""},
      {"Ethernet padding after the datagram", [](Bytes f) { f.resize(f.size() + 10, 0); return f; }, ""},
      {"IPv4 options (IHL 6)",
       [](Bytes f) {
         f.insert(f.begin() + 34, {1, 1, 1, 1});
         f[14] = 0x46;
         put16(f, 16, static_cast<uint16_t>(get16(f, 16) + 4));
         return f;
       },
       ""},
      {"shorter than Ethernet + IPv4", [](Bytes f) { f.resize(33); return f; }, "runt+1"},
      {"cut inside the ESP packet", [](Bytes f) { f.pop_back(); return f; }, "runt+1"},
      {"not IPv4 (ethertype)", [](Bytes f) { put16(f, 12, 0x86dd); return f; }, "bad_length+1"},
      {"IP version 6", [](Bytes f) { f[14] = 0x65; return f; }, "bad_length+1"},
      {"IHL 4", [](Bytes f) { f[14] = 0x44; return f; }, "bad_length+1"},
      {"more fragments", [](Bytes f) { put16(f, 20, 0x2000); return f; }, "bad_length+1"},
      {"fragment offset", [](Bytes f) { put16(f, 20, 0x0010); return f; }, "bad_length+1"},
      {"not UDP", [](Bytes f) { f[23] = 6; return f; }, "bad_length+1"},
      {"IP total length below IP + UDP", [=](Bytes f) { return set_tot(f, 27); }, "bad_length+1"},
      {"IP total length past the frame", [=](Bytes f) { return set_tot(f, static_cast<uint16_t>(f.size() - 13)); }, "runt+1"},
      {"UDP length below 8", [=](Bytes f) { return set_ulen(f, 7); }, "bad_length+1"},
      {"UDP length past the IP payload", [=](Bytes f) { return set_ulen(f, static_cast<uint16_t>(get16(f, 16) - 19)); }, "bad_length+1"},
      {"UDP length leaves ESP + ICV short", [=](Bytes f) { return set_ulen(f, 8 + 33); }, "runt+1"},
      {"NAT keep-alive (one byte 0xff)",
       [](Bytes f) {
         f.resize(43);
         f[42] = 0xff;
         put16(f, 16, 29);
         put16(f, 38, 9);
         return f;
       },
       "runt+1"},
      {"IKE non-ESP marker (SPI 0)", [](Bytes f) { put32(f, 42, 0); return f; }, "unknown_spi+1"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    InboundSa in(engine(), t.spi, t.k.key, t.k.salt, false, 1024);
    auto table = std::make_unique<dp::InboundTable>();
    ASSERT_TRUE(table->install(&in));
    dp::EspCounters c;
    const auto rx = open(*table, c, {r.mutate(good)});
    EXPECT_EQ(moved(Snap{}, snap(c)), r.drop);
    EXPECT_EQ(rx[0].kept, std::string_view(r.drop).empty());
    if (rx[0].kept) {
      EXPECT_EQ(rx[0].data, inner);
    } else {
      EXPECT_EQ(in.window.top(), 0u);
    }
  }
  // Two segments: one segment frames only.
  InboundSa in(engine(), t.spi, t.k.key, t.k.salt, false, 1024);
  auto table = std::make_unique<dp::InboundTable>();
  ASSERT_TRUE(table->install(&in));
  Mbufs b;
  b.v.push_back(mbuf(Bytes(good.begin(), good.begin() + 60)));
  ASSERT_EQ(rte_pktmbuf_chain(b.v[0], mbuf(Bytes(good.begin() + 60, good.end()))), 0);
  dp::EspCounters c;
  uint8_t nhs[1];
  EXPECT_EQ(dp::esp_decrypt_burst(engine(), *table, b.span(), c, nhs), 0);
  EXPECT_EQ(moved(Snap{}, snap(c)), "bad_length+1");
}

// Packets that authenticate (sealed by OpenSSL with the right key) but whose trailer is wrong:
// dropped after verification, counted per reason, the window unmoved. And the extremes a peer
// may legitimately send: 255 bytes of padding, an IPv6 inner packet.
TEST(EspDecrypt, TrailerTable) {
  const KeyMat k = key_mat(9);
  const uint32_t spi = 0x5d000071;
  const Bytes body = {0x45, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto with = [&](std::initializer_list<uint8_t> tail) { return cat({body, Bytes(tail)}); };
  Bytes pad255 = {0x60, 0, 0};
  for (int i = 1; i <= 255; ++i) pad255.push_back(static_cast<uint8_t>(i));
  pad255.push_back(255);
  pad255.push_back(41);
  struct Row {
    const char* name;
    Bytes plaintext;
    const char* drop;   // "" = kept
    size_t inner_len;   // when kept
    uint8_t nh;         // when kept
  };
  const Row rows[] = {
      {"pad 0, next header 4", with({0, 4}), "", 10, 4},
      {"pad 2, next header 253", with({1, 2, 2, 253}), "", 10, 253},
      {"pad 255, next header 41", pad255, "", 3, 41},
      {"pad length past the payload", with({11, 4}), "bad_pad+1", 0, 0},
      {"pad length 255 in a short payload", with({255, 4}), "bad_pad+1", 0, 0},
      {"padding not 1, 2, 3", with({1, 3, 2, 4}), "bad_pad+1", 0, 0},
      {"padding of zeros", with({0, 0, 0, 3, 4}), "bad_pad+1", 0, 0},
      {"next header 6 (TCP: transport mode)", with({0, 6}), "bad_next_header+1", 0, 0},
      {"next header 59 (dummy packet)", with({0, 59}), "bad_next_header+1", 0, 0},
      {"next header 1", with({0, 1}), "bad_next_header+1", 0, 0},
      {"only the trailer", Bytes{0, 4}, "", 0, 4},
  };
  for (bool esn : {false, true}) {
    for (const Row& r : rows) {
      SCOPED_TRACE(std::string(r.name) + (esn ? " (ESN)" : ""));
      InboundSa in(engine(), spi, k.key, k.salt, esn, 1024);
      auto table = std::make_unique<dp::InboundTable>();
      ASSERT_TRUE(table->install(&in));
      dp::EspCounters c;
      const Bytes frame = udp_frame(craft_esp(k, spi, 33, esn, r.plaintext, hex("0001020304050607")));
      const auto rx = open(*table, c, {frame});
      EXPECT_EQ(moved(Snap{}, snap(c)), r.drop);
      if (std::string_view(r.drop).empty()) {
        ASSERT_TRUE(rx[0].kept);
        EXPECT_EQ(rx[0].data, Bytes(r.plaintext.begin(), r.plaintext.begin() + static_cast<long>(r.inner_len)));
        EXPECT_EQ(rx[0].nh, r.nh);
        EXPECT_EQ(in.window.top(), 33u);
      } else {
        EXPECT_FALSE(rx[0].kept);
        EXPECT_EQ(in.window.top(), 0u);
        EXPECT_EQ(in.bad_trailer.load(), 1u);
      }
    }
  }
}

TEST(EspDecrypt, UnknownSpiTable) {
  Tunnel t(false, 1500, 0x5d000052);
  uint8_t nh;
  const Bytes inner = inner_packet(64, &nh);
  const Bytes good = t.seal_one(inner, nh, 1);
  struct Row {
    const char* name;
    uint32_t spi;
  };
  const Row rows[] = {
      {"empty slot", 0x5d000053},
      {"same slot, other tag", 0x5e000052},
      {"same slot, reserved bits", 0x5d010052},
      {"zero", 0},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Bytes f = good;
    put32(f, 42, r.spi);
    const Snap before = snap(t.rx);
    EXPECT_FALSE(open(*t.table, t.rx, {f})[0].kept);
    EXPECT_EQ(moved(before, snap(t.rx)), one(EspDrop::kUnknownSpi));
  }
  // The table: one SA per slot, removal by full SPI only.
  const KeyMat k = key_mat(4);
  InboundSa other(engine(), 0x5e000052, k.key, k.salt, false);
  EXPECT_FALSE(t.table->install(&other)) << "two SAs in one slot";
  EXPECT_EQ(t.table->remove(0x5e000052), nullptr);
  EXPECT_EQ(t.table->find(0x5d000052), t.in.get());
  EXPECT_EQ(t.table->remove(0x5d000052), t.in.get());
  EXPECT_EQ(t.table->find(0x5d000052), nullptr);
  EXPECT_TRUE(t.table->install(&other));
  EXPECT_FALSE(open(*t.table, t.rx, {good})[0].kept);
  EXPECT_EQ(t.rx.dropped(EspDrop::kUnknownSpi), 5u);
}

// =====================================================================================
// The burst contract over several chunks
// =====================================================================================

TEST(EspBurst, FailuresMoveBehindKeptOnesInOrderAcrossChunks) {
  Tunnel t(false, 1500);
  // 100 packets (four chunks of 32): every 5th too big for the MTU.
  std::vector<Bytes> inners;
  std::vector<bool> fits;
  for (uint32_t i = 0; i < 100; ++i) {
    uint8_t nh;
    const bool big = i % 5 == 3;
    inners.push_back(inner_packet(big ? 1460 : 40 + i, &nh));
    fits.push_back(!big);
  }
  Mbufs b(inners);
  const std::vector<rte_mbuf*> before = b.v;
  const uint16_t n = dp::esp_encrypt_burst(engine(), *t.out, b.span(), 4, t.tx);
  ASSERT_EQ(n, 80);
  std::vector<rte_mbuf*> want_kept, want_bad;
  for (size_t i = 0; i < before.size(); ++i) (fits[i] ? want_kept : want_bad).push_back(before[i]);
  EXPECT_EQ(std::vector<rte_mbuf*>(b.v.begin(), b.v.begin() + n), want_kept);
  EXPECT_EQ(std::set<rte_mbuf*>(b.v.begin() + n, b.v.end()), std::set<rte_mbuf*>(want_bad.begin(), want_bad.end()));
  EXPECT_EQ(t.tx.dropped(EspDrop::kTooBig), 20u);
  std::vector<Bytes> frames;
  for (uint16_t i = 0; i < n; ++i) {
    frames.push_back(bytes(b.v[i]));
    EXPECT_EQ(get32(frames.back(), 46), i + 1u) << "sequence numbers have gaps";
  }

  // Inbound: the 80 frames with a foreign SPI every 7th and a runt every 11th.
  std::vector<Bytes> in_frames;
  std::vector<int> expect;  // index into inners of the kept ones, -1 for the dropped
  size_t k = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    Bytes f = frames[i];
    while (!fits[k]) ++k;
    if (i % 7 == 2) {
      put32(f, 42, 0x5d000099);
      expect.push_back(-1);
    } else if (i % 11 == 4) {
      f.resize(40);
      expect.push_back(-1);
    } else {
      expect.push_back(static_cast<int>(k));
    }
    ++k;
    in_frames.push_back(std::move(f));
  }
  const auto rx = open(*t.table, t.rx, in_frames);
  size_t kept = 0;
  for (size_t i = 0; i < rx.size(); ++i) {
    EXPECT_EQ(rx[i].kept, expect[i] >= 0) << "frame " << i;
    if (expect[i] >= 0 && rx[i].kept) {
      EXPECT_EQ(rx[i].data, inners[static_cast<size_t>(expect[i])]);
      EXPECT_EQ(rx[i].nh, 4);
      ++kept;
    }
  }
  EXPECT_EQ(kept, t.rx.dec_pkts.load());
  EXPECT_EQ(t.rx.dropped(EspDrop::kUnknownSpi) + t.rx.dropped(EspDrop::kRunt), rx.size() - kept);
}

// =====================================================================================
// An independent decoder: scapy's SecurityAssociation (and the cryptography package)
// =====================================================================================

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Our frames go to scapy, which must authenticate and decrypt each to its inner packet (and
// check the trailer, the outer headers, and that a flipped ICV bit or a missing ESN high half
// fails); scapy's frames come back and our inbound path must decrypt each. ESN off and on.
TEST(EspScapy, DecryptsOursAndWeDecryptTheirs) {
  char tmpl[] = "/tmp/sdwan-esp-scapy-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir(tmpl);
  struct RemoveDir {
    std::filesystem::path p;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } remove_dir{dir};
  std::ofstream ours(dir / "ours.txt"), make(dir / "make.txt");
  std::vector<std::unique_ptr<Tunnel>> tunnels;
  std::map<std::string, Bytes> made_inner;
  size_t n_ours = 0, n_make = 0;
  for (bool esn : {false, true}) {
    tunnels.push_back(std::make_unique<Tunnel>(esn, 1500, esn ? 0x5d000063 : 0x5d000062, 1024, esn ? 21 : 11));
    Tunnel& t = *tunnels.back();
    if (esn) t.out->seq = 0x2fffffffcULL;  // the high half goes from 2 to 3 among these
    const std::string tag = esn ? "esn" : "noesn";
    const std::string keys = to_hex(t.k.key, 32) + " " + to_hex(t.k.salt, 4) + " " + to_hex(be32(t.spi)) + " " + (esn ? "1" : "0");
    for (uint8_t nh : {dp::kEspNextOverlay, dp::kEspNextIpv4}) {
      std::vector<Bytes> inners;
      for (uint32_t size : {0u, 1u, 3u, 19u, 20u, 21u, 28u, 29u, 64u, 100u, 513u, 1400u, 1438u}) {
        uint8_t inner_nh;
        Bytes p = inner_packet(size, &inner_nh);
        if (inner_nh == nh) inners.push_back(std::move(p));
      }
      const auto frames = t.seal(inners, nh);
      ASSERT_EQ(frames.size(), inners.size());
      for (size_t i = 0; i < frames.size(); ++i) {
        const uint64_t seq = get64(frames[i], 50);
        ours << tag << "-" << int{nh} << "-" << inners[i].size() << " " << keys << " " << (seq >> 32) << " "
             << to_hex(frames[i]) << " " << (inners[i].empty() ? "-" : to_hex(inners[i])) << " " << int{nh} << "\n";
        ++n_ours;
      }
    }
    const uint32_t hi = esn ? 5 : 0;
    uint32_t lo = esn ? 10 : 100;
    for (uint32_t size : {20u, 28u, 100u, 1400u, 1438u}) {
      uint8_t nh;
      const Bytes p = inner_packet(size, &nh);
      const std::string name = tag + "-" + std::to_string(size);
      make << name << " " << keys << " " << hi << " " << lo++ << " " << to_hex(p) << "\n";
      made_inner[name] = p;
      ++n_make;
    }
    if (esn) {
      ASSERT_TRUE(t.in->window.accept(uint64_t{hi} << 32 | 1));
    }
  }
  ours.close();
  make.close();

  const std::string cmd = "/usr/bin/python3 " SDWAN_SOURCE_ROOT "/tests/component/esp_scapy_check.py " + dir.string() +
                          " > " + (dir / "log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = slurp(dir / "log");
  EXPECT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("ours: " + std::to_string(n_ours) + " packets verified"), std::string::npos) << log;
  EXPECT_NE(log.find("theirs: " + std::to_string(n_make) + " packets made"), std::string::npos) << log;

  std::ifstream theirs(dir / "theirs.txt");
  std::string name, frame_hex;
  size_t n_theirs = 0;
  while (theirs >> name >> frame_hex) {
    SCOPED_TRACE(name);
    Tunnel& t = *tunnels[name.rfind("esn", 0) == 0 ? 1 : 0];
    const auto rx = open(*t.table, t.rx, {hex(frame_hex)});
    ASSERT_TRUE(rx[0].kept) << moved(Snap{}, snap(t.rx));
    EXPECT_EQ(rx[0].data, made_inner.at(name));
    EXPECT_EQ(rx[0].nh, dp::kEspNextIpv4);
    ++n_theirs;
  }
  EXPECT_EQ(n_theirs, n_make);
  EXPECT_EQ(tunnels[1]->in->window.top(), (uint64_t{5} << 32) + 10 + n_make / 2 - 1);
}

}  // namespace
}  // namespace sdwan::test
