// Protocol helpers against independent references: RFC 1071's worked example, full checksum
// recomputation, and frames built by scapy 2.5 (pasted as hex) for the exact expected bytes.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "dataplane/parse/parse.hpp"
#include "dataplane/proto/proto.hpp"

namespace sdwan::dp {
namespace {

std::vector<uint8_t> bytes_of(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    auto nib = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
    out.push_back(static_cast<uint8_t>(nib(hex[i]) << 4 | nib(hex[i + 1])));
  }
  return out;
}

HeaderView parsed(const std::vector<uint8_t>& f) {
  HeaderView hv;
  EXPECT_EQ(parse_frame(f.data(), static_cast<uint32_t>(f.size()), &hv), ParseError::kOk);
  return hv;
}

// Straight RFC 1071: 16-bit network-order words, one at a time, folded at the end.
uint16_t reference_checksum(const uint8_t* p, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t{p[i]} << 8 | p[i + 1];
  if (len & 1) sum += uint32_t{p[len - 1]} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t stored(uint16_t v) { return ntohs(v); }

struct Rng {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  uint64_t operator()() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

// Frames generated with scapy; names say what each is.
constexpr std::string_view kIpv4TcpSyn =
    "020000000002020000000001080045b8002c000100003f0666110a0000010a000102303901bb000003e8000000006002"
    "20002d480000020405b4";
constexpr std::string_view kIpv4UdpPadded =
    "02000000000202000000000108004500001e000200004011a90bc0a8010a0808080813880035000ab8f8616200000000"
    "000000000000000000000000";
constexpr std::string_view kIpv4LaterFragment =
    "02000000000202000000000108004500003c000700b9401164ef0a0000010a0001027a7a7a7a7a7a7a7a7a7a7a7a7a7a"
    "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a";
constexpr std::string_view kArpRequest =
    "ffffffffffff020000000001080600010800060400010200000000010a0000010000000000000a0000fe000000000000"
    "000000000000000000000000";
constexpr std::string_view kVlanArpRequest =
    "ffffffffffff02000000000181000007080600010800060400010200000000010a0000010000000000000a0000fe";
constexpr std::string_view kArpReplyExpected =
    "02000000000102aabbccddee0806000108000604000202aabbccddee0a0000fe0200000000010a000001000000000000"
    "000000000000000000000000";
constexpr std::string_view kArpRequestExpected =
    "ffffffffffff02aabbccddee0806000108000604000102aabbccddee0a0000fe0000000000000a000009000000000000"
    "000000000000000000000000";
constexpr std::string_view kGarpExpected =
    "ffffffffffff02aabbccddee0806000108000604000102aabbccddee0a0000fe0000000000000a0000fe000000000000"
    "000000000000000000000000";
constexpr std::string_view kArpIpv6Ptype =
    "ffffffffffff0200000000010806000186dd0608000102000000000131302e302e302e3100000000000031302e302e30"
    "2e323534000000000000000000000000000000000000";
constexpr std::string_view kEchoRequest =
    "02000000000202000000000108004500002d424240003d01e68f0a0000010a0000fe0800614e00770003303132333435"
    "3637383961626364656667";
constexpr std::string_view kEchoReplyExpected =
    "02000000000102000000000208004500002d424240004001e38f0a0000fe0a0000010000694e00770003303132333435"
    "3637383961626364656667";
constexpr std::string_view kEchoRequestVlanOptions =
    "0200000000020200000000018100000308004600014c00090000050193a70a0000010a0000fe07030400080061670001"
    "000178787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878";
constexpr std::string_view kEchoReplyVlanOptionsExpected =
    "0200000000010200000000028100000308004600014c00090000400158a70a0000fe0a00000107030400000069670001"
    "000178787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878";
constexpr std::string_view kEchoRequestBadIcmpSum =
    "02000000000202000000000108004500001f00010000400165df0a0000010a0000fe0800dead00000000616263";
constexpr std::string_view kEchoReplyIn =
    "02000000000202000000000108004500001f00010000400165df0a0000010a0000fe00003b9d00000000616263";
constexpr std::string_view kEchoRequestShort =
    "02000000000202000000000108004500001800010000400165e60a0000010a0000fe0800f7ff";
constexpr std::string_view kEchoRequestFragment =
    "02000000000202000000000108004500002400012000400145da0a0000010a0000fe0800666a00000000616263646566"
    "6768";
constexpr std::string_view kSynMss1460 =
    "02000000000202000000000108004500003c004d000040065d5d0a0000010a0909099c4001bb0102030400000000a002"
    "200068eb0000020405b40402080a000000010000000001030307";
constexpr std::string_view kSynMss1360Expected =
    "02000000000202000000000108004500003c004d000040065d5d0a0000010a0909099c4001bb0102030400000000a002"
    "2000694f0000020405500402080a000000010000000001030307";
constexpr std::string_view kSynOddMss1460 =
    "020000000002020000000001080045000030004d000040065d690a0000010a0909099c4001bb01020304000000007002"
    "2000f6bc000001020405b4010101";
constexpr std::string_view kSynOddMss1360Expected =
    "020000000002020000000001080045000030004d000040065d690a0000010a0909099c4001bb01020304000000007002"
    "20005abd00000102040550010101";
constexpr std::string_view kSynAckVlanMss9000 =
    "0200000000020200000000018100000c08004500002c004d000040065d6d0a0000010a0909099c4001bb010203040000"
    "0000601220009b8e000002042328";
constexpr std::string_view kSynAckVlanMss1360Expected =
    "0200000000020200000000018100000c08004500002c004d000040065d6d0a0000010a0909099c4001bb010203040000"
    "000060122000b966000002040550";
constexpr std::string_view kSyn6Mss1440 =
    "02000000000202000000000186dd600000000018064020010db800000000000000000000000120010db8000000000000"
    "0000000000029c4001bb0102030400000000600220007ac40000020405a0";
constexpr std::string_view kSyn6Mss1340Expected =
    "02000000000202000000000186dd600000000018064020010db800000000000000000000000120010db8000000000000"
    "0000000000029c4001bb0102030400000000600220007b2800000204053c";
constexpr std::string_view kAckWithMss =
    "02000000000202000000000108004500002c004d000040065d6d0a0000010a0909099c4001bb01020304000000006010"
    "2000b9040000020405b4";
constexpr std::string_view kSynMss1200 =
    "02000000000202000000000108004500002c004d000040065d6d0a0000010a0909099c4001bb01020304000000006002"
    "2000ba160000020404b0";
constexpr std::string_view kSynMssLenZero =
    "02000000000202000000000108004500002c004d000040065d6d0a0000010a0909099c4001bb00000005000000006002"
    "2000bd170000020005b4";
constexpr std::string_view kSynMssCutByDoff =
    "02000000000202000000000108004500002c004d000040065d6d0a0000010a0909099c4001bb00000005000000006002"
    "2000c2c8000001010102";
constexpr std::string_view kSynMssAfterEnd =
    "020000000002020000000001080045000030004d000040065d690a0000010a0909099c4001bb00000005000000007002"
    "2000ad0f000000000000020405b4";
constexpr std::string_view kTimeExceededExpected =
    "45c0003a000200004001ad510a0000fec0a8010a0b00c6dd000000004500001e000200004011a90bc0a8010a08080808"
    "13880035000ab8f86162";
constexpr std::string_view kFragNeededExpected =
    "45c0004800010000400164f60a0000fe0a00000103040ca50000057845b8002c000100003f0666110a0000010a000102"
    "303901bb000003e800000000600220002d480000020405b4";

const MacAddr kOurMac{{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}};
const MacAddr kHostMac{{0x02, 0, 0, 0, 0, 0x01}};
constexpr Ipv4 kOurIp{0x0a0000fe};  // 10.0.0.254

// ---- checksums -------------------------------------------------------------------------

TEST(InetChecksum, Rfc1071Example) {
  // RFC 1071 section 3: the sum of these words is 0xddf2, so the checksum is 0x220d.
  const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(stored(inet_checksum(data, sizeof data)), 0x220d);
}

TEST(InetChecksum, KnownIpv4Header) {
  // 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF: header checksum 0xb861.
  uint8_t h[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  const uint16_t c = inet_checksum(h, sizeof h);
  EXPECT_EQ(stored(c), 0xb861);
  std::memcpy(h + 10, &c, 2);
  EXPECT_EQ(h[10], 0xb8);
  EXPECT_EQ(h[11], 0x61);
  EXPECT_EQ(inet_checksum(h, sizeof h), 0) << "a region holding its own checksum sums to zero";
}

TEST(InetChecksum, MatchesReferenceForEveryLengthAndAlignment) {
  Rng rng;
  std::vector<uint8_t> buf(1600);
  for (int round = 0; round < 4; ++round) {
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    for (size_t off = 0; off < 8; ++off) {
      for (size_t len = 0; len <= 200; ++len) {
        ASSERT_EQ(stored(inet_checksum(buf.data() + off, len)), reference_checksum(buf.data() + off, len))
            << "off " << off << " len " << len;
      }
      ASSERT_EQ(stored(inet_checksum(buf.data() + off, 1500)), reference_checksum(buf.data() + off, 1500));
    }
  }
  std::vector<uint8_t> ones(1501, 0xff);
  EXPECT_EQ(stored(inet_checksum(ones.data(), ones.size())), reference_checksum(ones.data(), ones.size()));
}

TEST(CsumUpdate16, MatchesRecompute) {
  Rng rng;
  for (int i = 0; i < 100000; ++i) {
    uint8_t buf[32];
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    buf[30] = buf[31] = 0;
    const uint16_t before = reference_checksum(buf, sizeof buf);
    const size_t w = (rng() % 15) * 2;
    const uint16_t old_word = static_cast<uint16_t>(buf[w] << 8 | buf[w + 1]);
    const auto new_word = static_cast<uint16_t>(rng());
    buf[w] = static_cast<uint8_t>(new_word >> 8);
    buf[w + 1] = static_cast<uint8_t>(new_word);
    ASSERT_EQ(csum_update16(before, old_word, new_word), reference_checksum(buf, sizeof buf));
  }
}

// ---- TTL ---------------------------------------------------------------------------------

TEST(Ipv4TtlDecrement, IncrementalChecksumEqualsFullRecompute) {
  Rng rng;
  int wrapped = 0;
  for (int i = 0; i < 200000; ++i) {
    uint8_t h[20];
    for (auto& b : h) b = static_cast<uint8_t>(rng());
    h[0] = 0x45;
    h[8] = static_cast<uint8_t>(2 + rng() % 254);
    // Every few headers, steer the id word so that the checksum lands on the edges: 0x0000
    // after the decrement (sum 0x0100 before it), or 0x0000 before it (0x0100 after).
    if (i % 4 == 0) {
      h[10] = h[11] = 0;
      const uint32_t sum = static_cast<uint16_t>(~reference_checksum(h, 20));
      const uint32_t target = (i % 8 == 0) ? 0x0100 : 0xffff;
      const uint32_t delta = (target + 0xffff - sum) % 0xffff;
      uint32_t w = (uint32_t{h[4]} << 8 | h[5]) + delta;
      w = (w & 0xffff) + (w >> 16);
      h[4] = static_cast<uint8_t>(w >> 8);
      h[5] = static_cast<uint8_t>(w);
    }
    h[10] = h[11] = 0;
    const uint16_t c = inet_checksum(h, 20);
    std::memcpy(h + 10, &c, 2);
    const uint8_t ttl = h[8];

    ipv4_ttl_decrement(h);
    ASSERT_EQ(h[8], ttl - 1);
    const uint16_t incremental = static_cast<uint16_t>(h[10] << 8 | h[11]);
    h[10] = h[11] = 0;
    ASSERT_EQ(incremental, reference_checksum(h, 20)) << "header " << i;
    if (incremental == 0 || incremental == 0x0100) ++wrapped;
  }
  EXPECT_GT(wrapped, 1000) << "the edge cases were exercised";
}

// ---- ARP ---------------------------------------------------------------------------------

TEST(Arp, ParsesRequest) {
  for (std::string_view hex : {kArpRequest, kVlanArpRequest}) {
    const auto f = bytes_of(hex);
    const HeaderView hv = parsed(f);
    ArpInfo a{};
    ASSERT_TRUE(parse_arp(f.data(), static_cast<uint32_t>(f.size()), hv, &a));
    EXPECT_EQ(a.op, kArpOpRequest);
    EXPECT_EQ(a.sha, kHostMac);
    EXPECT_EQ(a.spa, Ipv4{0x0a000001});
    EXPECT_EQ(a.tha, MacAddr{});
    EXPECT_EQ(a.tpa, kOurIp);
  }
}

TEST(Arp, RejectsOtherProtocolsAndCutBodies) {
  ArpInfo a{};
  const auto v6 = bytes_of(kArpIpv6Ptype);
  EXPECT_FALSE(parse_arp(v6.data(), static_cast<uint32_t>(v6.size()), parsed(v6), &a));

  const auto f = bytes_of(kArpRequest);
  const HeaderView hv = parsed(f);
  EXPECT_FALSE(parse_arp(f.data(), 14 + 27, hv, &a));
  EXPECT_TRUE(parse_arp(f.data(), 14 + 28, hv, &a));
  auto bad = f;
  bad[14 + 1] = 6;  // htype 6 (IEEE 802)
  EXPECT_FALSE(parse_arp(bad.data(), static_cast<uint32_t>(bad.size()), hv, &a));
  bad = f;
  bad[14 + 4] = 8;  // hlen 8
  EXPECT_FALSE(parse_arp(bad.data(), static_cast<uint32_t>(bad.size()), hv, &a));
  bad = f;
  bad[14 + 5] = 16;  // plen 16
  EXPECT_FALSE(parse_arp(bad.data(), static_cast<uint32_t>(bad.size()), hv, &a));
}

TEST(Arp, ReplyBytesExact) {
  const auto f = bytes_of(kArpRequest);
  ArpInfo req{};
  ASSERT_TRUE(parse_arp(f.data(), static_cast<uint32_t>(f.size()), parsed(f), &req));
  std::vector<uint8_t> out(kArpFrameLen, 0xcc);
  EXPECT_EQ(build_arp_reply(out.data(), kOurMac, kOurIp, req), kArpFrameLen);
  EXPECT_EQ(out, bytes_of(kArpReplyExpected));
}

TEST(Arp, RequestAndGratuitousBytesExact) {
  std::vector<uint8_t> out(kArpFrameLen, 0xcc);
  EXPECT_EQ(build_arp_request(out.data(), kOurMac, kOurIp, Ipv4{0x0a000009}), kArpFrameLen);
  EXPECT_EQ(out, bytes_of(kArpRequestExpected));
  std::fill(out.begin(), out.end(), 0xcc);
  EXPECT_EQ(build_garp(out.data(), kOurMac, kOurIp), kArpFrameLen);
  EXPECT_EQ(out, bytes_of(kGarpExpected));
}

// ---- ICMP echo -----------------------------------------------------------------------------

TEST(IcmpEcho, ReplyBytesExact) {
  struct {
    std::string_view req, want;
  } cases[] = {{kEchoRequest, kEchoReplyExpected},
               // VLAN tag, record-route option, 300-byte payload.
               {kEchoRequestVlanOptions, kEchoReplyVlanOptionsExpected}};
  for (const auto& c : cases) {
    auto f = bytes_of(c.req);
    const HeaderView hv = parsed(f);
    ASSERT_TRUE(icmp_echo_to_reply(f.data(), static_cast<uint32_t>(f.size()), hv));
    EXPECT_EQ(f, bytes_of(c.want));
    EXPECT_EQ(inet_checksum(f.data() + hv.l3_off, hv.l4_off - hv.l3_off), 0);
    EXPECT_EQ(inet_checksum(f.data() + hv.l4_off, hv.ip_len - (hv.l4_off - hv.l3_off)), 0);
  }
}

TEST(IcmpEcho, LeavesAnythingElseUntouched) {
  for (std::string_view hex : {kEchoRequestBadIcmpSum, kEchoReplyIn, kEchoRequestShort,
                               kEchoRequestFragment, kIpv4UdpPadded}) {
    auto f = bytes_of(hex);
    const auto before = f;
    EXPECT_FALSE(icmp_echo_to_reply(f.data(), static_cast<uint32_t>(f.size()), parsed(f))) << hex;
    EXPECT_EQ(f, before);
  }
  auto f = bytes_of(kEchoRequest);
  HeaderView hv = parsed(f);
  const auto before = f;
  EXPECT_FALSE(icmp_echo_to_reply(f.data(), hv.l3_off + hv.ip_len - 1u, hv)) << "frame shorter than the view";
  EXPECT_EQ(f, before);
}

// ---- ICMP errors ---------------------------------------------------------------------------

// A valid IPv4 datagram of total bytes (payload filled with a counting pattern).
std::vector<uint8_t> datagram(uint32_t src, uint32_t dst, uint8_t proto, uint16_t total,
                              uint16_t frag = 0, uint8_t first_payload_byte = 0) {
  std::vector<uint8_t> d(total);
  d[0] = 0x45;
  d[2] = static_cast<uint8_t>(total >> 8);
  d[3] = static_cast<uint8_t>(total);
  d[4] = 0x12;
  d[5] = 0x34;
  d[6] = static_cast<uint8_t>(frag >> 8);
  d[7] = static_cast<uint8_t>(frag);
  d[8] = 1;
  d[9] = proto;
  for (int i = 0; i < 4; ++i) {
    d[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
    d[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
  }
  for (size_t i = 20; i < total; ++i) d[i] = static_cast<uint8_t>(i);
  if (total > 20) d[20] = first_payload_byte;
  const uint16_t c = inet_checksum(d.data(), 20);
  std::memcpy(d.data() + 10, &c, 2);
  return d;
}

TEST(IcmpError, TimeExceededBytesExact) {
  // The 30-byte UDP datagram inside a 60-byte frame: the Ethernet padding is not quoted.
  const auto f = bytes_of(kIpv4UdpPadded);
  std::vector<uint8_t> out(kIcmpErrorMaxLen);
  const uint32_t n = build_icmp_error(out.data(), static_cast<uint32_t>(out.size()), f.data() + 14,
                                      static_cast<uint32_t>(f.size() - 14), kIcmpTimeExceeded, 0, kOurIp, 0);
  out.resize(n);
  EXPECT_EQ(out, bytes_of(kTimeExceededExpected));
}

TEST(IcmpError, FragmentationNeededCarriesMtu) {
  const auto f = bytes_of(kIpv4TcpSyn);
  std::vector<uint8_t> out(kIcmpErrorMaxLen);
  const uint32_t n = build_icmp_error(out.data(), static_cast<uint32_t>(out.size()), f.data() + 14,
                                      static_cast<uint32_t>(f.size() - 14), kIcmpUnreachable,
                                      kIcmpCodeFragNeeded, kOurIp, 1400);
  out.resize(n);
  EXPECT_EQ(out, bytes_of(kFragNeededExpected));
}

TEST(IcmpError, QuotesAsMuchAsFitsIn576Bytes) {
  const auto orig = datagram(0x0a000001, 0x0a010101, kProtoUdp, 1500);
  std::vector<uint8_t> out(2048, 0xee);
  const uint32_t n = build_icmp_error(out.data(), static_cast<uint32_t>(out.size()), orig.data(),
                                      static_cast<uint32_t>(orig.size()), kIcmpUnreachable, 1, kOurIp, 0);
  ASSERT_EQ(n, kIcmpErrorMaxLen);
  EXPECT_EQ(out[576], 0xee) << "nothing written past the error";
  EXPECT_EQ(out[0], 0x45);
  EXPECT_EQ(out[2] << 8 | out[3], 576);
  EXPECT_EQ(out[6] & 0x40, 0) << "DF clear";
  EXPECT_EQ(out[8], 64);
  EXPECT_EQ(out[9], kProtoIcmp);
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 12, out.begin() + 16), (std::vector<uint8_t>{10, 0, 0, 254}));
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 16, out.begin() + 20), (std::vector<uint8_t>{10, 0, 0, 1}));
  EXPECT_EQ(inet_checksum(out.data(), 20), 0);
  EXPECT_EQ(out[20], kIcmpUnreachable);
  EXPECT_EQ(out[21], 1);
  EXPECT_EQ(inet_checksum(out.data() + 20, n - 20), 0);
  EXPECT_TRUE(std::equal(out.begin() + 28, out.begin() + n, orig.begin()));

  // A buffer smaller than 576 bytes still gets a valid, shorter error.
  std::vector<uint8_t> small(100);
  const uint32_t m = build_icmp_error(small.data(), 100, orig.data(), static_cast<uint32_t>(orig.size()),
                                      kIcmpTimeExceeded, 0, kOurIp, 0);
  ASSERT_EQ(m, 100u);
  EXPECT_EQ(inet_checksum(small.data(), 20), 0);
  EXPECT_EQ(inet_checksum(small.data() + 20, 80), 0);
  // One that cannot hold the original header and 8 data bytes gets nothing.
  EXPECT_EQ(build_icmp_error(small.data(), 20 + 8 + 27, orig.data(), static_cast<uint32_t>(orig.size()),
                             kIcmpTimeExceeded, 0, kOurIp, 0), 0u);
  EXPECT_EQ(build_icmp_error(small.data(), 20 + 8 + 28, orig.data(), static_cast<uint32_t>(orig.size()),
                             kIcmpTimeExceeded, 0, kOurIp, 0), 56u);
}

TEST(IcmpError, AboutAQueryOrAFirstFragmentIsAllowed) {
  std::vector<uint8_t> out(kIcmpErrorMaxLen);
  const auto echo = datagram(0x0a000001, 0x0a010101, kProtoIcmp, 84, 0, kIcmpEchoRequest);
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, echo.data(), 84, kIcmpTimeExceeded, 0, kOurIp, 0), 112u);
  const auto first = datagram(0x0a000001, 0x0a010101, kProtoUdp, 100, 0x2000);
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, first.data(), 100, kIcmpTimeExceeded, 0, kOurIp, 0), 128u);
}

struct Forbidden {
  const char* why;
  std::vector<uint8_t> orig;
};

TEST(IcmpError, ForbiddenByRfc1812) {
  const uint32_t ok_src = 0x0a000001;
  const uint32_t ok_dst = 0x0a010101;
  const Forbidden cases[] = {
      {"icmp dest unreachable", datagram(ok_src, ok_dst, kProtoIcmp, 56, 0, kIcmpUnreachable)},
      {"icmp time exceeded", datagram(ok_src, ok_dst, kProtoIcmp, 56, 0, kIcmpTimeExceeded)},
      {"icmp redirect", datagram(ok_src, ok_dst, kProtoIcmp, 56, 0, 5)},
      {"icmp parameter problem", datagram(ok_src, ok_dst, kProtoIcmp, 56, 0, 12)},
      {"icmp unknown type", datagram(ok_src, ok_dst, kProtoIcmp, 56, 0, 200)},
      {"icmp without a type byte", datagram(ok_src, ok_dst, kProtoIcmp, 20)},
      {"non-first fragment", datagram(ok_src, ok_dst, kProtoUdp, 100, 185)},
      {"non-first fragment with MF", datagram(ok_src, ok_dst, kProtoUdp, 100, 0x2000 | 1)},
      {"source 0.0.0.0", datagram(0, ok_dst, kProtoUdp, 100)},
      {"source 0/8", datagram(0x00010203, ok_dst, kProtoUdp, 100)},
      {"source loopback", datagram(0x7f000001, ok_dst, kProtoUdp, 100)},
      {"source multicast", datagram(0xe0000005, ok_dst, kProtoUdp, 100)},
      {"source class E", datagram(0xf0000001, ok_dst, kProtoUdp, 100)},
      {"source broadcast", datagram(0xffffffff, ok_dst, kProtoUdp, 100)},
      {"destination multicast", datagram(ok_src, 0xefffff01, kProtoUdp, 100)},
      {"destination broadcast", datagram(ok_src, 0xffffffff, kProtoUdp, 100)},
  };
  std::vector<uint8_t> out(kIcmpErrorMaxLen);
  for (const auto& c : cases) {
    EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, c.orig.data(), static_cast<uint32_t>(c.orig.size()),
                               kIcmpTimeExceeded, 0, kOurIp, 0), 0u) << c.why;
  }
  // The same datagrams with a unicast source and destination do get an error.
  const auto fine = datagram(ok_src, ok_dst, kProtoUdp, 100);
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, fine.data(), 100, kIcmpTimeExceeded, 0, kOurIp, 0), 128u);
}

TEST(IcmpError, MalformedOriginalGetsNothing) {
  std::vector<uint8_t> out(kIcmpErrorMaxLen);
  auto d = datagram(0x0a000001, 0x0a010101, kProtoUdp, 100);
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, d.data(), 19, kIcmpTimeExceeded, 0, kOurIp, 0), 0u);
  d[0] = 0x44;
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, d.data(), 100, kIcmpTimeExceeded, 0, kOurIp, 0), 0u);
  d[0] = 0x65;
  EXPECT_EQ(build_icmp_error(out.data(), kIcmpErrorMaxLen, d.data(), 100, kIcmpTimeExceeded, 0, kOurIp, 0), 0u);
}

// ---- MSS clamping --------------------------------------------------------------------------

TEST(ClampTcpMss, LowersTheOptionAndKeepsTheChecksumValid) {
  struct {
    const char* name;
    std::string_view in, want;
    uint16_t max;
  } cases[] = {
      {"ipv4 syn", kSynMss1460, kSynMss1360Expected, 1360},
      {"mss at an odd offset", kSynOddMss1460, kSynOddMss1360Expected, 1360},
      {"vlan syn-ack", kSynAckVlanMss9000, kSynAckVlanMss1360Expected, 1360},
      {"ipv6 syn", kSyn6Mss1440, kSyn6Mss1340Expected, 1340},
  };
  for (const auto& c : cases) {
    auto f = bytes_of(c.in);
    const HeaderView hv = parsed(f);
    EXPECT_TRUE(clamp_tcp_mss(f.data(), static_cast<uint32_t>(f.size()), hv, c.max)) << c.name;
    EXPECT_EQ(f, bytes_of(c.want)) << c.name;
    EXPECT_FALSE(clamp_tcp_mss(f.data(), static_cast<uint32_t>(f.size()), hv, c.max)) << c.name << " twice";
  }
}

TEST(ClampTcpMss, LeavesOtherSegmentsAlone) {
  struct {
    const char* name;
    std::string_view in;
  } cases[] = {
      {"ack, not syn", kAckWithMss},
      {"mss already small", kSynMss1200},
      {"option length 0", kSynMssLenZero},
      {"option cut by the data offset", kSynMssCutByDoff},
      {"mss after end of options", kSynMssAfterEnd},
      {"udp", kIpv4UdpPadded},
      {"non-first fragment", kIpv4LaterFragment},
  };
  for (const auto& c : cases) {
    auto f = bytes_of(c.in);
    const auto before = f;
    EXPECT_FALSE(clamp_tcp_mss(f.data(), static_cast<uint32_t>(f.size()), parsed(f), 1360)) << c.name;
    EXPECT_EQ(f, before) << c.name;
  }
}

}  // namespace
}  // namespace sdwan::dp
