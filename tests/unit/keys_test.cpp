// Master key files, HKDF-SHA256 and the SA derivation, SPI layout, and the key log.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "control/esp/derive.hpp"
#include "control/esp/keylog.hpp"
#include "control/esp/keys.hpp"
#include "control/esp/spi.hpp"

namespace sdwan::cp {
namespace {

namespace fs = std::filesystem;

template <class Bytes>
std::string hex(const Bytes& b) {
  static constexpr char k[] = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) s += {k[x >> 4], k[x & 15]};
  return s;
}

std::vector<uint8_t> seq_bytes(unsigned from, unsigned to) {
  std::vector<uint8_t> v;
  for (unsigned i = from; i < to; ++i) v.push_back(static_cast<uint8_t>(i));
  return v;
}

MasterKey test_key() {
  std::array<uint8_t, kMasterKeyBytes> b{};
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i);
  return MasterKey::from_bytes(b);
}

constexpr const char* kKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

Endpoint ep(const char* ip, uint16_t port) { return Endpoint{*Ipv4::parse(ip), port}; }

// A fresh directory per test, removed afterwards.
class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdwan-keys-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

// ---------------------------------------------------------------- key file text

TEST(MasterKeyParse, AcceptsOneHexLineWithCommentsBlankLinesAndCrLf) {
  const std::string upper = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
  for (const std::string& text : {std::string(kKeyHex), std::string(kKeyHex) + "\n",
                                  "# sdwan master key\n\n" + std::string(kKeyHex) + "\r\n# end\n",
                                  upper + " \t\n"}) {
    auto k = parse_master_key(text, "k.key");
    ASSERT_TRUE(k) << k.error().msg;
    EXPECT_EQ(hex(k->bytes()), kKeyHex);
  }
}

TEST(MasterKeyParse, RefusesWithWhatWasExpectedAndNeverEchoesKeyCharacters) {
  struct Case {
    std::string text;
    std::string msg;
  };
  const std::string k = kKeyHex;
  const std::vector<Case> cases = {
      {k.substr(0, 63) + "\n", "k.key:1: expected 64 hex digits (a 256-bit key), got 63 hex digits"},
      {"# c\n" + k + "00\n", "k.key:2: expected 64 hex digits (a 256-bit key), got 66 hex digits"},
      {k.substr(0, 10) + "g" + k.substr(11), "k.key:1: expected 64 hex digits (a 256-bit key), got a character that is not a hex digit at column 11"},
      {"0x" + k.substr(2), "k.key:1: expected 64 hex digits (a 256-bit key), got a character that is not a hex digit at column 2"},
      {k + "\n" + k + "\n", "k.key:2: a second key line (the first is line 1); the file holds exactly one key"},
      {"# only a comment\n\n", "k.key: no key found, expected 64 hex digits (a 256-bit key) on one line"},
      {"", "k.key: no key found, expected 64 hex digits (a 256-bit key) on one line"},
      {std::string(64, '0'), "k.key:1: the key is all zeros; generate one with: openssl rand -hex 32"},
  };
  for (const Case& c : cases) {
    auto r = parse_master_key(c.text, "k.key");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().msg, c.msg);
    EXPECT_EQ(r.error().msg.find("0405060708"), std::string::npos);
  }
}

// ---------------------------------------------------------------- owner and mode

TEST(KeyFileCheck, ModeAndOwnerTable) {
  struct Case {
    uint32_t mode, uid, euid;
    std::string msg;  // "" = accepted
  };
  const std::vector<Case> cases = {
      {S_IFREG | 0600, 0, 0, ""},
      {S_IFREG | 0400, 0, 0, ""},
      {S_IFREG | 0600, 998, 998, ""},
      {S_IFREG | 0644, 0, 0, "/etc/sdwan/k: mode 0644 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 /etc/sdwan/k"},
      {S_IFREG | 0640, 0, 0, "/etc/sdwan/k: mode 0640 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 /etc/sdwan/k"},
      {S_IFREG | 0700, 0, 0, "/etc/sdwan/k: mode 0700 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 /etc/sdwan/k"},
      {S_IFREG | 04600, 0, 0, "/etc/sdwan/k: mode 4600 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 /etc/sdwan/k"},
      {S_IFREG | 0602, 0, 0, "/etc/sdwan/k: mode 0602 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 /etc/sdwan/k"},
      {S_IFREG | 0600, 1000, 0, "/etc/sdwan/k: owned by uid 1000, expected root (uid 0); fix: chown root /etc/sdwan/k"},
      {S_IFREG | 0600, 1000, 998, "/etc/sdwan/k: owned by uid 1000, expected root (uid 0) or this daemon's uid 998; fix: chown root /etc/sdwan/k"},
      {S_IFDIR | 0700, 0, 0, "/etc/sdwan/k: not a regular file; the master key must be in a plain file"},
  };
  for (const Case& c : cases) {
    Status s = check_key_file("/etc/sdwan/k", c.mode, c.uid, c.euid);
    if (c.msg.empty()) {
      EXPECT_TRUE(s) << std::oct << c.mode << ": " << s.error().msg;
    } else {
      ASSERT_FALSE(s) << std::oct << c.mode;
      EXPECT_EQ(s.error().msg, c.msg);
    }
  }
}

using KeyFile = TempDir;

TEST_F(KeyFile, LoadsA0600And0400File) {
  for (mode_t m : {0600, 0400}) {
    const std::string p = file("master.key", std::string("# lab key\n") + kKeyHex + "\n", m);
    auto k = load_master_key(p);
    ASSERT_TRUE(k) << k.error().msg;
    EXPECT_EQ(hex(k->bytes()), kKeyHex);
  }
}

TEST_F(KeyFile, RefusesLooserPermissionsWithTheFix) {
  const std::string p = file("master.key", std::string(kKeyHex) + "\n", 0644);
  auto k = load_master_key(p);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().msg, p + ": mode 0644 is too open, expected 0600 or stricter (no group, other, execute or special bits); fix: chmod 600 " + p);
  ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
  EXPECT_TRUE(load_master_key(p));
}

TEST_F(KeyFile, RefusesAFileOwnedBySomeoneElse) {
  const std::string p = file("master.key", std::string(kKeyHex) + "\n", 0600);
  // Someone who is neither root nor us: the check compares with our euid.
  const uid_t other = ::geteuid() == 0 ? 4242 : 0;
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(p.c_str(), other, static_cast<gid_t>(-1)), 0);
    auto k = load_master_key(p);
    ASSERT_FALSE(k);
    EXPECT_EQ(k.error().msg, p + ": owned by uid 4242, expected root (uid 0); fix: chown root " + p);
  } else {
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    Status s = check_key_file(p, st.st_mode, other + 4242, ::geteuid());
    EXPECT_FALSE(s);
  }
}

TEST_F(KeyFile, RefusesMissingDirectoriesFifosAndBadContent) {
  auto missing = load_master_key(dir_ + "/nope.key");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().msg, dir_ + "/nope.key: cannot read: No such file or directory");

  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  auto d = load_master_key(dir_);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().msg, dir_ + ": not a regular file; the master key must be in a plain file");

  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto f = load_master_key(fifo);  // must not block waiting for a writer
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().msg, fifo + ": not a regular file; the master key must be in a plain file");

  const std::string shortk = file("short.key", std::string(kKeyHex).substr(0, 62) + "\n", 0600);
  auto s = load_master_key(shortk);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().msg, shortk + ":1: expected 64 hex digits (a 256-bit key), got 62 hex digits");

  const std::string big = file("big.key", std::string(70000, '#'), 0600);
  auto b = load_master_key(big);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().msg, big + ": larger than 65536 bytes; a key file holds one line of 64 hex digits");
}

// ---------------------------------------------------------------- wiping

TEST(MasterKeyWipe, MovedFromAndDestroyedKeysAreZero) {
  MasterKey a = test_key();
  MasterKey b = std::move(a);
  EXPECT_EQ(hex(a.bytes()), std::string(64, '0'));  // NOLINT(bugprone-use-after-move): the point
  EXPECT_EQ(hex(b.bytes()), kKeyHex);

  // Destroy one in storage we own and look at what is left.
  alignas(MasterKey) unsigned char buf[sizeof(MasterKey)];
  auto* k = new (buf) MasterKey(test_key());
  ASSERT_EQ(hex(k->bytes()), kKeyHex);
  k->~MasterKey();
  EXPECT_EQ(hex(std::vector<uint8_t>(buf, buf + sizeof buf)), std::string(2 * sizeof buf, '0'));
}

TEST(SaKeysWipe, DestroyedKeysAreZero) {
  alignas(SaKeys) unsigned char buf[sizeof(SaKeys)];
  auto* k = new (buf) SaKeys();
  k->key.fill(0xab);
  k->salt.fill(0xcd);
  k->~SaKeys();
  EXPECT_EQ(hex(std::vector<uint8_t>(buf, buf + sizeof buf)), std::string(2 * sizeof buf, '0'));
}

// ---------------------------------------------------------------- HKDF (RFC 5869 appendix A)

TEST(Hkdf, Rfc5869TestCase1) {
  auto okm = hkdf_sha256(std::vector<uint8_t>(22, 0x0b), seq_bytes(0x00, 0x0d), seq_bytes(0xf0, 0xfa), 42);
  ASSERT_TRUE(okm) << okm.error().msg;
  EXPECT_EQ(hex(*okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, Rfc5869TestCase2LongInputs) {
  auto okm = hkdf_sha256(seq_bytes(0x00, 0x50), seq_bytes(0x60, 0xb0), seq_bytes(0xb0, 0x100), 82);
  ASSERT_TRUE(okm) << okm.error().msg;
  EXPECT_EQ(hex(*okm),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
            "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST(Hkdf, Rfc5869TestCase3EmptySaltAndInfo) {
  // Our derivation uses an empty salt: this is the case that proves OpenSSL treats it as RFC 5869 says.
  auto okm = hkdf_sha256(std::vector<uint8_t>(22, 0x0b), {}, {}, 42);
  ASSERT_TRUE(okm) << okm.error().msg;
  EXPECT_EQ(hex(*okm), "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Hkdf, RefusesImpossibleLengths) {
  auto z = hkdf_sha256(std::vector<uint8_t>(22, 0x0b), {}, {}, 0);
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().msg, "HKDF-SHA256: output length 0 is not 1..8160");
  EXPECT_FALSE(hkdf_sha256(std::vector<uint8_t>(22, 0x0b), {}, {}, 8161));
  EXPECT_TRUE(hkdf_sha256(std::vector<uint8_t>(22, 0x0b), {}, {}, 8160));
}

// ---------------------------------------------------------------- SPIs

TEST(Spi, LayoutKnownValues) {
  const Endpoint edge = ep("10.1.0.2", 4500), hub = ep("10.1.1.2", 4500);
  EXPECT_EQ(*make_spi(5, 9, edge, hub), 0x5d000052u);  // link 5, epoch 9 % 8 = 1, lower -> higher
  EXPECT_EQ(*make_spi(5, 9, hub, edge), 0x5d000053u);
  EXPECT_EQ(*make_spi(0, 0, edge, hub), 0x5d000000u);
  EXPECT_EQ(*make_spi(4095, 7, hub, edge), 0x5d00ffffu);
  // Same address, the port decides the order.
  EXPECT_EQ(*make_spi(1, 0, ep("10.0.0.1", 4501), ep("10.0.0.1", 4500)) & 1, 1u);
  EXPECT_EQ(spi_slot(0x5d00abcd), 0xabcdu);
  EXPECT_EQ(parse_spi(0x5d000053), (SpiParts{5, 1, true}));
  EXPECT_EQ(parse_spi(0x5d00ffff), (SpiParts{4095, 7, true}));
  EXPECT_FALSE(parse_spi(0x00000001));  // RFC 4303 reserved range, never ours
  EXPECT_FALSE(parse_spi(0x5d010000));  // reserved bits set
  EXPECT_FALSE(parse_spi(0x5c000000));  // another tag
}

TEST(Spi, EveryLinkEpochAndDirectionHasItsOwnSlotAndNoneIsReserved) {
  const Endpoint a = ep("192.0.2.1", 4500), b = ep("198.51.100.7", 4500);
  std::set<uint32_t> slots;
  for (uint32_t link = 0; link < kSpiLinks; ++link)
    for (uint32_t epoch = 0; epoch < kSpiEpochSlots; ++epoch)
      for (bool up : {true, false}) {
        auto spi = make_spi(static_cast<uint16_t>(link), epoch + 8 * link, up ? a : b, up ? b : a);
        ASSERT_TRUE(spi);
        ASSERT_GT(*spi, 255u);
        ASSERT_EQ(parse_spi(*spi), (SpiParts{static_cast<uint16_t>(link), static_cast<uint8_t>(epoch), !up}));
        slots.insert(spi_slot(*spi));
      }
  EXPECT_EQ(slots.size(), kSpiSlots);
}

TEST(Spi, RefusesOutOfRangeLinkAndSameEndpoints) {
  auto big = make_spi(4096, 0, ep("10.0.0.1", 4500), ep("10.0.0.2", 4500));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().msg, "link number 4096 is out of range 0..4095");
  auto same = make_spi(3, 0, ep("10.0.0.1", 4500), ep("10.0.0.1", 4500));
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().msg, "link 3: both ends are 10.0.0.1:4500; a path needs two different endpoints");
}

TEST(Spi, BothSidesNameTheSameSas) {
  const Endpoint edge = ep("10.1.0.2", 4500), hub = ep("10.1.1.2", 4500);
  auto e = path_sa_names(7, 12, edge, hub);
  auto h = path_sa_names(7, 12, hub, edge);
  ASSERT_TRUE(e && h);
  EXPECT_EQ(e->outbound, h->inbound);
  EXPECT_EQ(e->inbound, h->outbound);
  EXPECT_EQ(e->outbound, (SaName{edge, hub, 0x5d000078, 0x5d000079, 12}));
}

// ---------------------------------------------------------------- derivation

TEST(Derive, InfoBytesAreTheDocumentedLayout) {
  const SaName up{ep("10.1.0.2", 4500), ep("10.1.1.2", 4500), 0x5d000052, 0x5d000053, 9};
  const SaName down{up.dst, up.src, up.reverse_spi, up.spi, 9};
  EXPECT_EQ(hex(*sa_info(up)), "736477616e2d6573702076310a01000211940a01010211945d0000525d0000530000000900");
  EXPECT_EQ(hex(*sa_info(down)), "736477616e2d6573702076310a01000211940a01010211945d0000525d0000530000000901");
  auto same = sa_info(SaName{up.src, up.src, 1, 2, 0});
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().msg, "SA 0x00000001: sender and receiver are the same endpoint 10.1.0.2:4500");
}

// Expected values computed independently (Python hmac/hashlib HKDF) from the info bytes above.
TEST(Derive, KnownAnswerBothDirections) {
  const MasterKey mk = test_key();
  const SaName up{ep("10.1.0.2", 4500), ep("10.1.1.2", 4500), 0x5d000052, 0x5d000053, 9};
  const SaName down{up.dst, up.src, up.reverse_spi, up.spi, 9};
  auto ku = derive_sa(mk, up);
  auto kd = derive_sa(mk, down);
  ASSERT_TRUE(ku && kd);
  EXPECT_EQ(hex(ku->key), "e796b46da9621395317991f181145a1fc8d4b2a86edbaa70ccda44cf8712a1af");
  EXPECT_EQ(hex(ku->salt), "db0ac156");
  EXPECT_EQ(hex(kd->key), "b8ebcb79b819ea41861951dedb7513bbb8248c73a0768b9ebf3ef7f421af3e38");
  EXPECT_EQ(hex(kd->salt), "a568982e");
}

TEST(Derive, EdgeOutboundIsHubInboundAndEverythingElseDiffers) {
  const MasterKey mk = test_key();
  const Endpoint edge = ep("10.2.0.2", 4500), hub = ep("10.2.1.2", 4500);
  const PathSaNames e = *path_sa_names(1, 3, edge, hub);
  const PathSaNames h = *path_sa_names(1, 3, hub, edge);
  auto key = [&](const SaName& n) { return hex(derive_sa(mk, n)->key) + hex(derive_sa(mk, n)->salt); };
  EXPECT_EQ(key(e.outbound), key(h.inbound));
  EXPECT_EQ(key(e.inbound), key(h.outbound));
  std::set<std::string> distinct = {key(e.outbound), key(e.inbound),
                                    key(path_sa_names(1, 4, edge, hub)->outbound),
                                    key(path_sa_names(2, 3, edge, hub)->outbound),
                                    key(path_sa_names(1, 3, ep("10.2.0.2", 4501), hub)->outbound)};
  EXPECT_EQ(distinct.size(), 5u);
  std::array<uint8_t, kMasterKeyBytes> other{};
  other[31] = 1;
  EXPECT_NE(hex(derive_sa(MasterKey::from_bytes(other), e.outbound)->key), hex(derive_sa(mk, e.outbound)->key));
}

// ---------------------------------------------------------------- key log

using KeyLogFile = TempDir;

TEST_F(KeyLogFile, AppendsWiresharkEspSaLinesToA0600File) {
  const mode_t old = ::umask(0);  // the mode must not depend on the caller's umask
  const std::string p = dir_ + "/esp_sa";
  auto log = KeyLog::open(p);
  ::umask(old);
  ASSERT_TRUE(log) << log.error().msg;
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  const MasterKey mk = test_key();
  const SaName up{ep("10.1.0.2", 4500), ep("10.1.1.2", 4500), 0x5d000052, 0x5d000053, 9};
  const SaName down{up.dst, up.src, up.reverse_spi, up.spi, 9};
  ASSERT_TRUE(log->append(up, *derive_sa(mk, up)));
  ASSERT_TRUE(log->append(down, *derive_sa(mk, down)));
  EXPECT_EQ(slurp(p),
            "\"IPv4\",\"10.1.0.2\",\"10.1.1.2\",\"0x5d000052\",\"AES-GCM with 16 octet ICV [RFC4106]\","
            "\"0xe796b46da9621395317991f181145a1fc8d4b2a86edbaa70ccda44cf8712a1afdb0ac156\",\"NULL\",\"\"\n"
            "\"IPv4\",\"10.1.1.2\",\"10.1.0.2\",\"0x5d000053\",\"AES-GCM with 16 octet ICV [RFC4106]\","
            "\"0xb8ebcb79b819ea41861951dedb7513bbb8248c73a0768b9ebf3ef7f421af3e38a568982e\",\"NULL\",\"\"\n");
}

TEST_F(KeyLogFile, KeepsEarlierLinesAndTightensAnOpenMode) {
  const std::string p = file("esp_sa", "\"IPv4\",\"earlier line\"\n", 0644);
  {
    auto log = KeyLog::open(p);
    ASSERT_TRUE(log) << log.error().msg;
    const SaName n{ep("192.0.2.1", 4500), ep("192.0.2.2", 4500), 0x5d000010, 0x5d000011, 0};
    ASSERT_TRUE(log->append(n, *derive_sa(test_key(), n)));
  }
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::string text = slurp(p);
  EXPECT_EQ(text.rfind("\"IPv4\",\"earlier line\"\n\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x5d000010\",", 0), 0u);
}

TEST_F(KeyLogFile, RefusesSymlinksAndDirectories) {
  const std::string target = file("target", "", 0600);
  const std::string link = dir_ + "/link";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto l = KeyLog::open(link);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().msg, link + ": cannot open the key log: Too many levels of symbolic links");
  auto d = KeyLog::open(dir_);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().msg, dir_ + ": cannot open the key log: Is a directory");
}

}  // namespace
}  // namespace sdwan::cp
