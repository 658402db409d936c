#include "control/esp/derive.hpp"

#include <cstring>
#include <memory>
#include <string_view>

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

namespace sdwan::cp {
namespace {

constexpr std::string_view kLabel = "sdwan-esp v1";
static_assert(kLabel.size() + 2 * 6 + 3 * 4 + 1 == kSaInfoBytes);

std::string openssl_error(const char* step) {
  const unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return fmt::format("HKDF-SHA256: {} failed: {}", step, buf);
}

uint8_t* put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
  return p + 4;
}

uint8_t* put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
  return p + 2;
}

uint8_t* put_endpoint(uint8_t* p, const Endpoint& e) { return put16(put32(p, e.ip.v), e.port); }

struct KdfFree {
  void operator()(EVP_KDF* k) const { EVP_KDF_free(k); }
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};

}  // namespace

SaKeys::~SaKeys() {
  OPENSSL_cleanse(key.data(), key.size());
  OPENSSL_cleanse(salt.data(), salt.size());
}

Result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                         std::span<const uint8_t> info, size_t length) {
  if (length == 0 || length > 255 * 32) return err(fmt::format("HKDF-SHA256: output length {} is not 1..8160", length));
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (!kdf) return err(openssl_error("EVP_KDF_fetch"));
  std::unique_ptr<EVP_KDF_CTX, KdfFree> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return err(openssl_error("EVP_KDF_CTX_new"));
  // OSSL_PARAM wants non-const pointers; OpenSSL copies and never writes through them.
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()), ikm.size());
  // Left out when empty: HKDF then extracts with HashLen zero bytes, which RFC 5869 defines
  // as the same thing.
  if (!salt.empty())
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size());
  if (!info.empty())
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  std::vector<uint8_t> out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return err(openssl_error("EVP_KDF_derive"));
  }
  return out;
}

Result<std::array<uint8_t, kSaInfoBytes>> sa_info(const SaName& sa) {
  if (sa.src == sa.dst)
    return err(fmt::format("SA {:#010x}: sender and receiver are the same endpoint {}:{}", sa.spi, sa.src.ip.str(),
                           sa.src.port));
  const bool src_lower = sa.src < sa.dst;
  const Endpoint& lower = src_lower ? sa.src : sa.dst;
  const Endpoint& higher = src_lower ? sa.dst : sa.src;
  const uint32_t spi_up = src_lower ? sa.spi : sa.reverse_spi;
  const uint32_t spi_down = src_lower ? sa.reverse_spi : sa.spi;
  std::array<uint8_t, kSaInfoBytes> info{};
  std::memcpy(info.data(), kLabel.data(), kLabel.size());
  uint8_t* p = info.data() + kLabel.size();
  p = put_endpoint(p, lower);
  p = put_endpoint(p, higher);
  p = put32(p, spi_up);
  p = put32(p, spi_down);
  p = put32(p, sa.epoch);
  *p = src_lower ? 0 : 1;
  return info;
}

Result<SaKeys> derive_sa(const MasterKey& mk, const SaName& sa) {
  auto info = sa_info(sa);
  if (!info) return info.error();
  auto okm = hkdf_sha256(mk.bytes(), {}, *info, 36);
  if (!okm) return okm.error();
  SaKeys k;
  std::memcpy(k.key.data(), okm->data(), k.key.size());
  std::memcpy(k.salt.data(), okm->data() + k.key.size(), k.salt.size());
  OPENSSL_cleanse(okm->data(), okm->size());
  return k;
}

}  // namespace sdwan::cp
