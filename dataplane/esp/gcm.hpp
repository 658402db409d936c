// AES-256-GCM with a 16-byte tag through intel-ipsec-mb, for ESP (RFC 4106).
//
// How ESP uses it (RFC 4106; the caller builds the packet, this file only seals and opens):
//   key   32 bytes of the SA's key material; the 4 bytes after them are the salt.
//   IV    12 bytes = salt (4) || explicit IV (8). The explicit IV travels in the packet right
//         after the ESP header and must never repeat under one key: the SA's 64-bit sequence
//         number is the usual choice.
//   AAD   RFC 4106 section 5: SPI (4) || sequence number (4) = 8 bytes, or with extended
//         sequence numbers SPI (4) || high 32 bits (4) || low 32 bits (4) = 12 bytes, all in
//         network byte order. The high half never travels: inbound it comes from
//         ReplayWindow::check().
//   text  the ESP payload after the explicit IV: inner packet, padding, pad length, next
//         header. The 16-byte ICV (the tag) follows it on the wire.
//
// Threads: a CryptoEngine belongs to one worker (made before its loop starts). A GcmKey is
// immutable once expanded and may be read by any number of engines of the same arch().
#pragma once

#include <intel-ipsec-mb.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "dataplane/api/result.hpp"

namespace sdwan::dp {

constexpr size_t kGcmKeyLen = 32;  ///< AES-256
constexpr size_t kGcmIvLen = 12;   ///< salt || explicit IV
constexpr size_t kGcmTagLen = 16;  ///< the ESP ICV

/// One key's AES round keys and GHASH powers, in the layout of the arch that expanded it
/// (CryptoEngine::expand_key). Owned by the SA. 64-byte aligned as the library requires: its
/// header aligns gcm_key_data only when LINUX is defined, which nothing here defines.
struct alignas(64) GcmKey {
  gcm_key_data data;  ///< intel-ipsec-mb's expanded key
};
static_assert(alignof(GcmKey) >= 64);

/// One in-place AEAD operation of a burst.
struct GcmOp {
  const GcmKey* key;   ///< expanded key
  const uint8_t* iv;   ///< kGcmIvLen bytes
  const uint8_t* aad;  ///< aad_len bytes (8 or 12 for ESP)
  uint8_t* data;       ///< len bytes, replaced in place: plaintext -> ciphertext (seal) or back (open)
  uint8_t* tag;        ///< kGcmTagLen bytes: written by seal, the received tag for open
  uint32_t len;        ///< bytes of data (up to a jumbo frame)
  uint16_t aad_len;    ///< bytes of aad
  bool ok;             ///< out: sealed, or opened with a matching tag
};

/// How the burst calls drive the library; chosen once per engine. bench_esp compares them:
/// with intel-ipsec-mb 1.3 on avx512 (vaes), GCM has no multi-buffer code, the job and burst
/// APIs call the same single-buffer functions behind a queue, and kDirect was the fastest at
/// 64, 512 and 1400 bytes (64 B: 30 ns/packet against 51 for kBurst and 68 for kJobs).
enum class GcmBurstMode : uint8_t {
  kDirect,  ///< one direct AES-GCM call per buffer (gcm256_enc/dec); the default
  kJobs,    ///< job API: IMB_GET_NEXT_JOB, IMB_SUBMIT_JOB, IMB_GET_COMPLETED_JOB, IMB_FLUSH_JOB
  kBurst,   ///< burst API: IMB_GET_NEXT_BURST, IMB_SUBMIT_BURST, IMB_FLUSH_BURST
};

/// A worker's intel-ipsec-mb manager (IMB_MGR) and the AES-GCM calls made through it.
class CryptoEngine {
 public:
  /// Which code path of the library to use; kAuto is the best one the CPU supports.
  enum class Arch : uint8_t { kAuto, kSse, kAvx, kAvx2, kAvx512 };

  /// Start-up (never in the packet path): allocates and initialises a manager. Fails with a
  /// one-line reason when the CPU lacks AES-NI/PCLMULQDQ (the library would fall back to a
  /// slow software AES), lacks what a forced arch needs, or memory runs out.
  static Result<std::unique_ptr<CryptoEngine>> create(Arch arch = Arch::kAuto,
                                                      GcmBurstMode mode = GcmBurstMode::kDirect);
  ~CryptoEngine();
  CryptoEngine(const CryptoEngine&) = delete;
  CryptoEngine& operator=(const CryptoEngine&) = delete;

  /// For the start-up log: the arch in use and its AES flavour, e.g. "avx512 (vaes)".
  const char* arch_name() const noexcept { return arch_name_; }
  /// The arch in use (IMB_ARCH_SSE ... IMB_ARCH_AVX512).
  IMB_ARCH arch() const noexcept { return static_cast<IMB_ARCH>(mgr_->used_arch); }
  /// The burst mode chosen at create().
  GcmBurstMode burst_mode() const noexcept { return mode_; }
  /// The library's version, e.g. "1.3.0".
  static const char* library_version() noexcept;
  /// The manager, for code that calls the library itself (benchmarks, tests). Owned here.
  IMB_MGR* mgr() noexcept { return mgr_; }

  /// Expands a 32-byte key for this engine and every other engine of the same arch() (all
  /// engines made with Arch::kAuto in one process). Any thread that owns this engine.
  void expand_key(const uint8_t key[kGcmKeyLen], GcmKey* out) const noexcept;

  /// Encrypts len bytes from in to out (in == out allowed) and writes the tag. aad may be
  /// null when aad_len is 0, in/out when len is 0.
  void seal(const GcmKey& key, const uint8_t iv[kGcmIvLen], const uint8_t* aad, size_t aad_len,
            const uint8_t* in, uint8_t* out, size_t len, uint8_t tag[kGcmTagLen]) noexcept;

  /// Decrypts len bytes from in to out (in == out allowed) and checks the tag in constant
  /// time. False on a mismatch, and then out[0, len) is all zeros: no unauthenticated
  /// plaintext is left behind (in place, the ciphertext is gone too; the packet is dropped).
  bool open(const GcmKey& key, const uint8_t iv[kGcmIvLen], const uint8_t* aad, size_t aad_len,
            const uint8_t* in, uint8_t* out, size_t len, const uint8_t tag[kGcmTagLen]) noexcept;

  /// Seals ops[0, n) in place, as seal() would, and sets each op's ok. Returns how many are
  /// ok: n unless the library refused an op (never for ops within the limits above).
  uint32_t seal_burst(GcmOp* ops, uint32_t n) noexcept;

  /// Opens ops[0, n) in place, as open() would: ok is set per op, a failed op's data is all
  /// zeros. Returns how many are ok.
  uint32_t open_burst(GcmOp* ops, uint32_t n) noexcept;

 private:
  CryptoEngine(IMB_MGR* mgr, GcmBurstMode mode) noexcept;
  template <bool kSeal>
  uint32_t direct_burst(GcmOp* ops, uint32_t n) noexcept;
  template <bool kSeal>
  uint32_t job_burst(GcmOp* ops, uint32_t n) noexcept;
  template <bool kSeal>
  uint32_t imb_burst(GcmOp* ops, uint32_t n) noexcept;
  /// Fills a job for op; the computed tag of an open goes to the job slot's scratch line.
  template <bool kSeal>
  void fill_job(IMB_JOB* job, GcmOp* op) noexcept;
  /// Sets op->ok from a finished job (and for an open compares the tags); returns ok.
  template <bool kSeal>
  bool finish_job(const IMB_JOB* job) noexcept;
  /// Marks op failed; an open's data becomes zeros.
  template <bool kSeal>
  void fail_op(GcmOp* op) noexcept;

  IMB_MGR* mgr_;
  GcmBurstMode mode_;
  const char* arch_name_ = "";
  /// Tags computed by opens in flight, one per job slot of the manager.
  alignas(64) uint8_t scratch_tags_[IMB_MAX_JOBS][kGcmTagLen];
  /// Stands in for the text pointers of empty messages.
  alignas(16) uint8_t empty_[16];
};

}  // namespace sdwan::dp
