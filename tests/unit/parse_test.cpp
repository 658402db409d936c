// parse_frame against frames built independently (scapy 2.5, pasted as hex): every layer it
// understands, every error class, and every truncation of a valid frame.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
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

// Frames generated with scapy; comments give the layers.
constexpr std::string_view kIpv4TcpSyn =
    "020000000002020000000001080045b8002c000100003f0666110a0000010a000102303901bb000003e8000000006002"
    "20002d480000020405b4";
constexpr std::string_view kIpv4UdpPadded =
    "02000000000202000000000108004500001e000200004011a90bc0a8010a0808080813880035000ab8f8616200000000"
    "000000000000000000000000";
constexpr std::string_view kIpv4IcmpEcho =
    "02000000000202000000000108004500002d00030000400165cf0a0000010a0000fe080061c000070001303132333435"
    "3637383961626364656667";
constexpr std::string_view kVlanIpv4Udp =
    "0200000000020200000000018100a00a08004500002600040000401166bf0a0100010a0200011194119400126e437878"
    "7878787878787878";
constexpr std::string_view kQinQIpv4Tcp =
    "02000000000202000000000188a800648100000a08004500002d00050000400666c20a0100010a02000100509c400000"
    "000000000000501820009b60000068656c6c6f";
constexpr std::string_view kDoubleDot1qIpv4Udp =
    "020000000002020000000001810000018100000208004500001c0006000040116ab80102030405060708000100020008"
    "efc7";
constexpr std::string_view kIpv4FirstFragment =
    "02000000000202000000000108004500003c00072000401145a80a0000010a0001021b581b5903f00000797979797979"
    "7979797979797979797979797979797979797979797979797979";
constexpr std::string_view kIpv4LaterFragment =
    "02000000000202000000000108004500003c000700b9401164ef0a0000010a0001027a7a7a7a7a7a7a7a7a7a7a7a7a7a"
    "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a";
constexpr std::string_view kIpv4Options =
    "02000000000202000000000108004600002000080000401159c00a0000010a000102070304000009000a0008eac8";
constexpr std::string_view kIpv4CutL4 =
    "02000000000202000000000108004500001600090000401165cc0a0000010a0001021388";
constexpr std::string_view kIpv6Udp =
    "02000000000202000000000186dd6b800000000a114020010db800000000000000000000000120010db8000000000000"
    "00000000000214e914ea000a045c7636";
constexpr std::string_view kIpv6HopByHopTcp =
    "02000000000202000000000186dd60000000001c000120010db800000000000000000000000120010db8000000000000"
    "000000000002060005020000010000b3c350000000000000000050122000705a0000";
constexpr std::string_view kIpv6FirstFragment =
    "02000000000202000000000186dd6000000000202c4020010db800000000000000000000000120010db8000000000000"
    "0000000000021100000100000001000b000c001818a771717171717171717171717171717171";
constexpr std::string_view kIpv6LaterFragment =
    "02000000000202000000000186dd6000000000182c4020010db800000000000000000000000120010db8000000000000"
    "000000000002110000180000000171717171717171717171717171717171";
constexpr std::string_view kIpv6Icmp6 =
    "02000000000202000000000186dd6000000000083afffe800000000000000000000000000001ff020000000000000000"
    "0000000000018000823700000000";
constexpr std::string_view kArpRequest =
    "ffffffffffff020000000001080600010800060400010200000000010a0000010000000000000a0000fe000000000000"
    "000000000000000000000000";
constexpr std::string_view kVlanArpRequest =
    "ffffffffffff02000000000181000007080600010800060400010200000000010a0000010000000000000a0000fe";
constexpr std::string_view kIpv4BadChecksum =
    "02000000000202000000000108004500001c000a0000401112340a0000010a000102000100020008ead8";
constexpr std::string_view kIpv4Ihl4 =
    "02000000000202000000000108004400001c000b0000401166c40a0000010a000102000100020008ead8";
constexpr std::string_view kIpv4TotalLenBelowIhl =
    "020000000002020000000001080045000013000c0000401165cc0a0000010a000102000100020008eae0";
constexpr std::string_view kIpv4TotalLenBeyondFrame =
    "0200000000020200000000010800450000c8000d0000401165160a0000010a000102000100020008ea2c";
constexpr std::string_view kIpv4Version6 =
    "020000000002020000000001080060000000000811400000000000000000000000000000000100000000000000000000"
    "000000000002000100020008ffd8";
constexpr std::string_view kIpv6Version4 =
    "02000000000202000000000186dd4500003c00010000400074bc01010101020202020000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000";
constexpr std::string_view kIpv6PayloadBeyondFrame =
    "02000000000202000000000186dd60000000006411400000000000000000000000000000000100000000000000000000"
    "000000000002000100020008ffd8";
constexpr std::string_view kIpv6HopByHopOverrun =
    "02000000000202000000000186dd60000000000800400000000000000000000000000000000100000000000000000000"
    "0000000000021104000000000000";
constexpr std::string_view kLldp =
    "0180c200000e02000000000188cc02070400000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000";
constexpr std::string_view kIeee8023 =
    "020000000002020000000001002eaaaa0300000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000";
constexpr std::string_view kTripleVlan =
    "02000000000202000000000181000001810000028100000308004500001c0001000040116abd01020304050607080035"
    "00350008ef60";

// What a successful parse must produce; addresses and ports host order.
struct Want {
  L3 l3;
  uint16_t l3_off, l4_off, ethertype, ip_len;
  uint8_t proto, ttl, dscp;
  bool fragment, first_fragment;
  uint32_t src4, dst4;
  uint16_t sport, dport;
  uint8_t icmp_type, tcp_flags;
};

struct Case {
  const char* name;
  std::string_view hex;
  uint32_t cut;  // parse only the first cut bytes (0: the whole frame)
  ParseError err;
  Want want;     // checked only when err == kOk
};

constexpr ParseError kOk = ParseError::kOk;
constexpr Want kNoWant{};

const Case kCases[] = {
    // Ether / IPv4 (DSCP EF, TTL 63) / TCP SYN 12345 -> 443 with an MSS option.
    {"ipv4_tcp_syn", kIpv4TcpSyn, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 44, 6, 63, 46, false, true, 0x0a000001, 0x0a000102, 12345, 443, 0, 0x02}},
    // UDP datagram of 30 bytes in a frame padded to 60: the padding is not IP.
    {"ipv4_udp_padded", kIpv4UdpPadded, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 30, 17, 64, 0, false, true, 0xc0a8010a, 0x08080808, 5000, 53, 0, 0}},
    {"ipv4_icmp_echo", kIpv4IcmpEcho, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 45, 1, 64, 0, false, true, 0x0a000001, 0x0a0000fe, 0, 0, 8, 0}},
    {"vlan_ipv4_udp", kVlanIpv4Udp, 0, kOk,
     {L3::kIpv4, 18, 38, 0x0800, 38, 17, 64, 0, false, true, 0x0a010001, 0x0a020001, 4500, 4500, 0, 0}},
    // 802.1ad outer tag, 802.1Q inner tag, TCP PSH|ACK.
    {"qinq_ipv4_tcp", kQinQIpv4Tcp, 0, kOk,
     {L3::kIpv4, 22, 42, 0x0800, 45, 6, 64, 0, false, true, 0x0a010001, 0x0a020001, 80, 40000, 0, 0x18}},
    {"double_dot1q_ipv4_udp", kDoubleDot1qIpv4Udp, 0, kOk,
     {L3::kIpv4, 22, 42, 0x0800, 28, 17, 64, 0, false, true, 0x01020304, 0x05060708, 1, 2, 0, 0}},
    // MF set, offset 0: still has the UDP header, so ports are known.
    {"ipv4_first_fragment", kIpv4FirstFragment, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 60, 17, 64, 0, true, true, 0x0a000001, 0x0a000102, 7000, 7001, 0, 0}},
    // Offset 185 (x8 bytes), MF clear: the last fragment, payload only, no ports.
    {"ipv4_later_fragment", kIpv4LaterFragment, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 60, 17, 64, 0, true, false, 0x0a000001, 0x0a000102, 0, 0, 0, 0}},
    // Record-route option: IHL 6, so L4 starts 24 bytes in.
    {"ipv4_options", kIpv4Options, 0, kOk,
     {L3::kIpv4, 14, 38, 0x0800, 32, 17, 64, 0, false, true, 0x0a000001, 0x0a000102, 9, 10, 0, 0}},
    // Total length 22: only 2 bytes of UDP; the packet is fine, the ports are unknown.
    {"ipv4_cut_l4", kIpv4CutL4, 0, kOk,
     {L3::kIpv4, 14, 34, 0x0800, 22, 17, 64, 0, false, true, 0x0a000001, 0x0a000102, 0, 0, 0, 0}},
    {"ipv6_udp", kIpv6Udp, 0, kOk,
     {L3::kIpv6, 14, 54, 0x86dd, 50, 17, 64, 46, false, true, 0, 0, 5353, 5354, 0, 0}},
    // Hop-by-hop (router alert) before TCP SYN|ACK.
    {"ipv6_hop_by_hop_tcp", kIpv6HopByHopTcp, 0, kOk,
     {L3::kIpv6, 14, 62, 0x86dd, 68, 6, 1, 0, false, true, 0, 0, 179, 50000, 0, 0x12}},
    {"ipv6_first_fragment", kIpv6FirstFragment, 0, kOk,
     {L3::kIpv6, 14, 62, 0x86dd, 72, 17, 64, 0, true, true, 0, 0, 11, 12, 0, 0}},
    {"ipv6_later_fragment", kIpv6LaterFragment, 0, kOk,
     {L3::kIpv6, 14, 62, 0x86dd, 64, 17, 64, 0, true, false, 0, 0, 0, 0, 0, 0}},
    {"ipv6_icmp6_echo", kIpv6Icmp6, 0, kOk,
     {L3::kIpv6, 14, 54, 0x86dd, 48, 58, 255, 0, false, true, 0, 0, 0, 0, 128, 0}},
    {"arp", kArpRequest, 0, kOk,
     {L3::kArp, 14, 14, 0x0806, 0, 0, 0, 0, false, true, 0, 0, 0, 0, 0, 0}},
    {"vlan_arp", kVlanArpRequest, 0, kOk,
     {L3::kArp, 18, 18, 0x0806, 0, 0, 0, 0, false, true, 0, 0, 0, 0, 0, 0}},

    // Runts, one per layer.
    {"runt_ethernet", kIpv4TcpSyn, 13, ParseError::kRunt, kNoWant},
    {"runt_empty", kIpv4TcpSyn, 0xffffffff, ParseError::kRunt, kNoWant},
    {"runt_vlan_tag", kVlanIpv4Udp, 17, ParseError::kRunt, kNoWant},
    {"runt_inner_vlan_tag", kQinQIpv4Tcp, 21, ParseError::kRunt, kNoWant},
    {"runt_ipv4_header", kIpv4TcpSyn, 14 + 19, ParseError::kRunt, kNoWant},
    {"runt_ipv4_options", kIpv4Options, 14 + 22, ParseError::kRunt, kNoWant},
    {"runt_ipv4_payload", kIpv4TcpSyn, 14 + 43, ParseError::kRunt, kNoWant},
    {"runt_ipv6_header", kIpv6Udp, 14 + 39, ParseError::kRunt, kNoWant},
    {"runt_ipv6_payload", kIpv6Udp, 14 + 49, ParseError::kRunt, kNoWant},
    // IPv4 total length 200 in a 42-byte datagram.
    {"ipv4_total_len_beyond_frame", kIpv4TotalLenBeyondFrame, 0, ParseError::kRunt, kNoWant},
    {"ipv6_payload_len_beyond_frame", kIpv6PayloadBeyondFrame, 0, ParseError::kRunt, kNoWant},

    // Malformed IP headers.
    {"ipv4_ihl_4", kIpv4Ihl4, 0, ParseError::kBadIpHeader, kNoWant},
    {"ipv4_total_len_below_ihl", kIpv4TotalLenBelowIhl, 0, ParseError::kBadIpHeader, kNoWant},
    {"ipv4_ethertype_version_6", kIpv4Version6, 0, ParseError::kBadIpHeader, kNoWant},
    {"ipv6_ethertype_version_4", kIpv6Version4, 0, ParseError::kBadIpHeader, kNoWant},
    // Hop-by-hop header announcing 40 bytes in an 8-byte payload.
    {"ipv6_hop_by_hop_overrun", kIpv6HopByHopOverrun, 0, ParseError::kBadIpHeader, kNoWant},
    {"ipv4_bad_checksum", kIpv4BadChecksum, 0, ParseError::kBadIpChecksum, kNoWant},

    // Not ours at L2.
    {"lldp", kLldp, 0, ParseError::kBadL2, kNoWant},
    {"ieee_802_3_length", kIeee8023, 0, ParseError::kBadL2, kNoWant},
    {"three_vlan_tags", kTripleVlan, 0, ParseError::kBadL2, kNoWant},
};

class ParseFrame : public ::testing::TestWithParam<Case> {};

TEST_P(ParseFrame, Table) {
  const Case& c = GetParam();
  std::vector<uint8_t> frame = bytes_of(c.hex);
  uint32_t len = static_cast<uint32_t>(frame.size());
  if (c.cut == 0xffffffff) {
    len = 0;
  } else if (c.cut != 0) {
    ASSERT_LT(c.cut, len);
    len = c.cut;
  }
  // An exact-size copy, so a read past len is a read past the allocation under ASan.
  std::vector<uint8_t> buf(frame.begin(), frame.begin() + len);
  HeaderView hv;
  std::memset(&hv, 0xa5, sizeof hv);
  const ParseError err = parse_frame(buf.data(), len, &hv);
  ASSERT_EQ(static_cast<int>(err), static_cast<int>(c.err));
  if (err != kOk) {
    EXPECT_EQ(hv.l3, L3::kNone);
    return;
  }
  const Want& w = c.want;
  EXPECT_EQ(hv.l3, w.l3);
  EXPECT_EQ(hv.l3_off, w.l3_off);
  EXPECT_EQ(hv.l4_off, w.l4_off);
  EXPECT_EQ(hv.ethertype, w.ethertype);
  EXPECT_EQ(hv.ip_len, w.ip_len);
  EXPECT_EQ(hv.proto, w.proto);
  EXPECT_EQ(hv.ttl, w.ttl);
  EXPECT_EQ(hv.dscp, w.dscp);
  EXPECT_EQ(hv.fragment, w.fragment);
  EXPECT_EQ(hv.first_fragment, w.first_fragment);
  EXPECT_EQ(hv.src4, w.src4);
  EXPECT_EQ(hv.dst4, w.dst4);
  EXPECT_EQ(hv.sport, w.sport);
  EXPECT_EQ(hv.dport, w.dport);
  EXPECT_EQ(hv.icmp_type, w.icmp_type);
  EXPECT_EQ(hv.tcp_flags, w.tcp_flags);
  if (w.l3 == L3::kIpv6) {
    EXPECT_EQ(std::vector<uint8_t>(buf.begin() + w.l3_off + 8, buf.begin() + w.l3_off + 24),
              std::vector<uint8_t>(hv.src6.begin(), hv.src6.end()));
    EXPECT_EQ(std::vector<uint8_t>(buf.begin() + w.l3_off + 24, buf.begin() + w.l3_off + 40),
              std::vector<uint8_t>(hv.dst6.begin(), hv.dst6.end()));
  } else {
    EXPECT_EQ(hv.src6, (std::array<uint8_t, 16>{}));
    EXPECT_EQ(hv.dst6, (std::array<uint8_t, 16>{}));
  }
}

INSTANTIATE_TEST_SUITE_P(Packets, ParseFrame, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(ParseFrame, BadChecksumPassesWhenTheNicVerified) {
  std::vector<uint8_t> f = bytes_of(kIpv4BadChecksum);
  HeaderView hv;
  EXPECT_EQ(parse_frame(f.data(), static_cast<uint32_t>(f.size()), &hv, true), ParseError::kBadIpChecksum);
  EXPECT_EQ(parse_frame(f.data(), static_cast<uint32_t>(f.size()), &hv, false), ParseError::kOk);
  EXPECT_EQ(hv.l3, L3::kIpv4);
  EXPECT_EQ(hv.sport, 1);
}

// Every prefix of a valid frame: runt until the whole datagram is there, then the full parse.
TEST(ParseFrame, EveryTruncationIsARuntUntilTheDatagramIsComplete) {
  for (std::string_view hex : {kIpv4TcpSyn, kQinQIpv4Tcp, kIpv4Options, kIpv6HopByHopTcp, kIpv6FirstFragment}) {
    const std::vector<uint8_t> frame = bytes_of(hex);
    HeaderView full;
    ASSERT_EQ(parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), &full), ParseError::kOk);
    const uint32_t needed = uint32_t{full.l3_off} + full.ip_len;
    for (uint32_t len = 0; len < frame.size(); ++len) {
      std::vector<uint8_t> buf(frame.begin(), frame.begin() + len);
      HeaderView hv;
      const ParseError err = parse_frame(buf.data(), len, &hv);
      if (len < needed) {
        EXPECT_EQ(err, ParseError::kRunt) << hex << " cut at " << len;
      } else {
        EXPECT_EQ(err, ParseError::kOk) << hex << " cut at " << len;
      }
    }
  }
}

// The view is rewritten on every call: nothing from a previous TCP packet survives into a
// later fragment parsed into the same view.
TEST(ParseFrame, ViewIsResetBetweenFrames) {
  const std::vector<uint8_t> tcp = bytes_of(kIpv4TcpSyn);
  const std::vector<uint8_t> frag = bytes_of(kIpv4LaterFragment);
  const std::vector<uint8_t> v6 = bytes_of(kIpv6Udp);
  HeaderView hv;
  ASSERT_EQ(parse_frame(v6.data(), static_cast<uint32_t>(v6.size()), &hv), ParseError::kOk);
  ASSERT_EQ(parse_frame(tcp.data(), static_cast<uint32_t>(tcp.size()), &hv), ParseError::kOk);
  EXPECT_EQ(hv.src6, (std::array<uint8_t, 16>{}));
  ASSERT_EQ(parse_frame(frag.data(), static_cast<uint32_t>(frag.size()), &hv), ParseError::kOk);
  EXPECT_EQ(hv.sport, 0);
  EXPECT_EQ(hv.dport, 0);
  EXPECT_EQ(hv.tcp_flags, 0);
  EXPECT_FALSE(hv.first_fragment);
}

bool same_view(const HeaderView& a, const HeaderView& b) {
  return a.l3 == b.l3 && a.l3_off == b.l3_off && a.l4_off == b.l4_off && a.ethertype == b.ethertype &&
         a.ip_len == b.ip_len && a.proto == b.proto && a.ttl == b.ttl && a.dscp == b.dscp &&
         a.fragment == b.fragment && a.first_fragment == b.first_fragment && a.src4 == b.src4 &&
         a.dst4 == b.dst4 && a.src6 == b.src6 && a.dst6 == b.dst6 && a.sport == b.sport &&
         a.dport == b.dport && a.icmp_type == b.icmp_type && a.tcp_flags == b.tcp_flags;
}

// parse_frame's fast path for untagged, option-less IPv4 says exactly what the general walk
// says: for every table frame, every cut of it, and random frames that mostly take the fast path
// (good and bad checksums, fragments, short and long totals, every protocol).
TEST(ParseFrame, FastPathAgreesWithTheWalk) {
  std::vector<std::vector<uint8_t>> frames;
  for (const Case& c : kCases) {
    const std::vector<uint8_t> f = bytes_of(c.hex);
    for (size_t len = 0; len <= f.size(); ++len) frames.emplace_back(f.begin(), f.begin() + len);
  }
  uint64_t x = 0x13198a2e03707344ull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < 50000; ++i) {
    std::vector<uint8_t> f(14 + 20 + next() % 60);
    for (auto& b : f) b = static_cast<uint8_t>(next());
    f[12] = 0x08;
    f[13] = 0x00;
    f[14] = 0x45;
    const uint16_t total = static_cast<uint16_t>(i % 4 == 0 ? next() : f.size() - 14 - next() % 8);
    f[16] = static_cast<uint8_t>(total >> 8);
    f[17] = static_cast<uint8_t>(total);
    if (i % 3 != 0) f[20] = f[21] = 0;  // mostly unfragmented
    if (i % 5 != 0) f[23] = i % 5 == 1 ? kProtoTcp : kProtoUdp;  // mostly UDP, as ipv4_udp_to wants; some TCP
    if (i % 2 == 0) {  // mostly a good checksum
      f[24] = f[25] = 0;
      const uint16_t c = inet_checksum(f.data() + 14, 20);
      std::memcpy(f.data() + 24, &c, 2);
    }
    frames.push_back(std::move(f));
  }
  int fast = 0, udp_to = 0, flow_look = 0, flow_look_tcp = 0;
  for (const auto& f : frames) {
    // The checksum verdict is RFC 1071's, as inet_checksum computes it.
    if (f.size() >= 34 && f[12] == 0x08 && f[13] == 0 && f[14] == 0x45) {
      const uint32_t total = uint32_t{f[16]} << 8 | f[17];
      HeaderView v;
      if (total >= 20 && total <= f.size() - 14) {
        EXPECT_EQ(parse_frame(f.data(), static_cast<uint32_t>(f.size()), &v) == ParseError::kBadIpChecksum,
                  inet_checksum(f.data() + 14, 20) != 0);
      }
    }
    // ipv4_udp_to (the uplink's one look for ESP) says yes exactly when the walk finds a whole,
    // unfragmented, checksummed UDP datagram to that address and port in an untagged,
    // option-less frame.
    {
      HeaderView w;
      const bool walk_ok = parse_frame_reference(f.data(), static_cast<uint32_t>(f.size()), &w) == kOk;
      const uint32_t dst = f.size() >= 34 ? uint32_t{f[30]} << 24 | uint32_t{f[31]} << 16 | uint32_t{f[32]} << 8 | f[33] : 0;
      const uint16_t dport = f.size() >= 38 ? static_cast<uint16_t>(f[36] << 8 | f[37]) : 0;
      const bool want = walk_ok && w.l3 == L3::kIpv4 && w.l3_off == 14 && w.l4_off == 34 && w.proto == kProtoUdp &&
                        !w.fragment && w.ip_len >= 28 && w.dst4 == dst && w.dport == dport;
      ASSERT_EQ(ipv4_udp_to(f.data(), static_cast<uint32_t>(f.size()), dst, dport), want) << "frame of " << f.size();
      udp_to += want;
      if (want) {
        EXPECT_FALSE(ipv4_udp_to(f.data(), static_cast<uint32_t>(f.size()), dst ^ 1, dport));
        EXPECT_FALSE(ipv4_udp_to(f.data(), static_cast<uint32_t>(f.size()), dst, static_cast<uint16_t>(dport ^ 1)));
      }
    }
    // ipv4_flow_look (the LAN's one look) says yes exactly when the walk finds an untagged,
    // option-less, unfragmented IPv4 packet whose TCP header reaches its flags byte (UDP's and
    // SCTP's their ports), and then says what the walk says.
    {
      HeaderView w;
      const bool walk_ok = parse_frame_reference(f.data(), static_cast<uint32_t>(f.size()), &w) == kOk;
      const bool ports = w.proto == kProtoTcp || w.proto == kProtoUdp || w.proto == kProtoSctp;
      const uint32_t need = w.proto == kProtoTcp ? 14 : ports ? 4 : 0;
      const bool want = walk_ok && w.l3 == L3::kIpv4 && w.l3_off == 14 && w.l4_off == 34 && !w.fragment &&
                        w.ip_len >= 20 + need;
      Ipv4FlowLook fl;
      std::memset(&fl, 0x5a, sizeof fl);
      ASSERT_EQ(ipv4_flow_look(f.data(), static_cast<uint32_t>(f.size()), &fl), want) << "frame of " << f.size();
      if (want) {
        EXPECT_EQ(fl.src, w.src4);
        EXPECT_EQ(fl.dst, w.dst4);
        EXPECT_EQ(fl.sport, w.sport);
        EXPECT_EQ(fl.dport, w.dport);
        EXPECT_EQ(fl.ip_len, w.ip_len);
        EXPECT_EQ(fl.proto, w.proto);
        EXPECT_EQ(fl.ttl, w.ttl);
        EXPECT_EQ(fl.tcp_flags, w.tcp_flags);
        ++flow_look;
        flow_look_tcp += w.proto == kProtoTcp;
      }
    }
    for (const bool verify : {true, false}) {
      HeaderView a, b;
      std::memset(&a, 0x5a, sizeof a);
      std::memset(&b, 0xa5, sizeof b);
      const ParseError ea = parse_frame(f.data(), static_cast<uint32_t>(f.size()), &a, verify);
      const ParseError eb = parse_frame_reference(f.data(), static_cast<uint32_t>(f.size()), &b, verify);
      ASSERT_EQ(static_cast<int>(ea), static_cast<int>(eb)) << "frame of " << f.size();
      if (ea == kOk) {
        ASSERT_TRUE(same_view(a, b)) << "frame of " << f.size();
        fast += a.l3 == L3::kIpv4 && a.l3_off == 14 && a.l4_off == 34;
      } else {
        EXPECT_EQ(a.l3, L3::kNone);
      }
    }
  }
  EXPECT_GT(fast, 20000) << "the random frames exercised the fast path";
  EXPECT_GT(udp_to, 3000) << "and ipv4_udp_to's yes";
  EXPECT_GT(flow_look, 5000) << "and ipv4_flow_look's";
  EXPECT_GT(flow_look_tcp, 1000);
}

// Random bytes behind a valid Ethernet/IPv4 or IPv6 start: whatever the verdict, the offsets
// it reports stay inside the frame.
TEST(ParseFrame, RandomPayloadsKeepOffsetsInsideTheFrame) {
  uint64_t x = 0x243f6a8885a308d3ull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    const uint32_t len = 14 + static_cast<uint32_t>(next() % 120);
    std::vector<uint8_t> buf(len);
    for (auto& b : buf) b = static_cast<uint8_t>(next());
    const bool v6 = (i & 1) != 0;
    buf[12] = v6 ? 0x86 : 0x08;
    buf[13] = v6 ? 0xdd : 0x00;
    if (len > 14) buf[14] = static_cast<uint8_t>(v6 ? 0x60 : 0x45);
    if (!v6 && len >= 18) {
      buf[16] = 0;
      buf[17] = static_cast<uint8_t>(len - 14);
    }
    if (v6 && len >= 20) {
      buf[18] = 0;
      buf[19] = static_cast<uint8_t>(len >= 54 ? (len - 54) / 2 : 0);
    }
    HeaderView hv;
    if (parse_frame(buf.data(), len, &hv, false) != ParseError::kOk) continue;
    ++ok;
    EXPECT_LE(uint32_t{hv.l3_off} + hv.ip_len, len);
    EXPECT_LE(hv.l4_off, uint32_t{hv.l3_off} + hv.ip_len);
  }
  EXPECT_GT(ok, 1000);
}

}  // namespace
}  // namespace sdwan::dp
