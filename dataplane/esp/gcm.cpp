// AES-256-GCM through intel-ipsec-mb: the manager's set-up and the direct, job and burst paths.
#include "dataplane/esp/gcm.hpp"

#include <cstring>
#include <new>
#include <string>

#include "dataplane/api/ablation.hpp"

namespace sdwan::dp {
namespace {

// The library may check or touch the AAD pointer even when its length is 0; a valid address
// keeps a null from the caller harmless. Never written.
alignas(16) constexpr uint8_t kNoAad[16] = {};

// Constant time: every byte is compared whatever the first difference.
bool tags_equal(const uint8_t* a, const uint8_t* b) noexcept {
  uint64_t a0, a1, b0, b1;
  std::memcpy(&a0, a, 8);
  std::memcpy(&a1, a + 8, 8);
  std::memcpy(&b0, b, 8);
  std::memcpy(&b1, b + 8, 8);
  const uint64_t diff = (a0 ^ b0) | (a1 ^ b1);
  return diff == 0;
}

const char* name_of(const IMB_MGR* m) noexcept {
  const bool vaes = (m->features & (IMB_FEATURE_VAES | IMB_FEATURE_VPCLMULQDQ)) ==
                    (IMB_FEATURE_VAES | IMB_FEATURE_VPCLMULQDQ);
  switch (m->used_arch) {
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return vaes ? "avx2 (vaes)" : "avx2";
    case IMB_ARCH_AVX512: return vaes ? "avx512 (vaes)" : "avx512";
    default: return "no-aesni";
  }
}

}  // namespace

Result<std::unique_ptr<CryptoEngine>> CryptoEngine::create(Arch arch, GcmBurstMode mode) {
  const uint64_t cpu = imb_get_feature_flags();
  if ((cpu & IMB_CPUFLAGS_SSE) != IMB_CPUFLAGS_SSE)
    return Error{"crypto: this CPU lacks AES-NI or PCLMULQDQ; intel-ipsec-mb would fall back to "
                 "software AES, which cannot keep up with the dataplane"};
  uint64_t need = IMB_CPUFLAGS_SSE;
  const char* want = "sse";
  switch (arch) {
    case Arch::kAuto: break;
    case Arch::kSse: break;
    case Arch::kAvx: need = IMB_CPUFLAGS_AVX; want = "avx"; break;
    case Arch::kAvx2: need = IMB_CPUFLAGS_AVX2; want = "avx2"; break;
    case Arch::kAvx512: need = IMB_CPUFLAGS_AVX512; want = "avx512"; break;
  }
  if ((cpu & need) != need)
    return Error{std::string("crypto: arch ") + want + " was asked for but this CPU lacks it"};

  IMB_MGR* m = alloc_mb_mgr(0);
  if (m == nullptr) return Error{"crypto: cannot allocate an intel-ipsec-mb manager (out of memory)"};
  switch (arch) {
    case Arch::kAuto: init_mb_mgr_auto(m, nullptr); break;
    case Arch::kSse: init_mb_mgr_sse(m); break;
    case Arch::kAvx: init_mb_mgr_avx(m); break;
    case Arch::kAvx2: init_mb_mgr_avx2(m); break;
    case Arch::kAvx512: init_mb_mgr_avx512(m); break;
  }
  const int err = imb_get_errno(m);
  if (err != 0 || m->used_arch < IMB_ARCH_SSE) {
    std::string msg = "crypto: intel-ipsec-mb manager initialisation failed: ";
    msg += err != 0 ? imb_get_strerror(err) : "no AES-NI code path chosen";
    free_mb_mgr(m);
    return Error{std::move(msg)};
  }
  std::unique_ptr<CryptoEngine> e(new (std::nothrow) CryptoEngine(m, mode));
  if (e == nullptr) {
    free_mb_mgr(m);
    return Error{"crypto: out of memory for the engine"};
  }
  return e;
}

CryptoEngine::CryptoEngine(IMB_MGR* mgr, GcmBurstMode mode) noexcept
    : mgr_(mgr), mode_(mode), arch_name_(name_of(mgr)) {
  std::memset(scratch_tags_, 0, sizeof scratch_tags_);
  std::memset(empty_, 0, sizeof empty_);
}

CryptoEngine::~CryptoEngine() { free_mb_mgr(mgr_); }

const char* CryptoEngine::library_version() noexcept { return imb_get_version_str(); }

void CryptoEngine::expand_key(const uint8_t key[kGcmKeyLen], GcmKey* out) const noexcept {
  IMB_AES256_GCM_PRE(mgr_, key, &out->data);
}

void CryptoEngine::seal(const GcmKey& key, const uint8_t iv[kGcmIvLen], const uint8_t* aad,
                        size_t aad_len, const uint8_t* in, uint8_t* out, size_t len,
                        uint8_t tag[kGcmTagLen]) noexcept {
  alignas(64) gcm_context_data ctx;
  IMB_AES256_GCM_ENC(mgr_, &key.data, &ctx, len != 0 ? out : empty_, len != 0 ? in : empty_, len,
                     iv, aad_len != 0 ? aad : kNoAad, aad_len, tag, kGcmTagLen);
}

bool CryptoEngine::open(const GcmKey& key, const uint8_t iv[kGcmIvLen], const uint8_t* aad,
                        size_t aad_len, const uint8_t* in, uint8_t* out, size_t len,
                        const uint8_t tag[kGcmTagLen]) noexcept {
  alignas(64) gcm_context_data ctx;
  alignas(16) uint8_t computed[kGcmTagLen];
  IMB_AES256_GCM_DEC(mgr_, &key.data, &ctx, len != 0 ? out : empty_, len != 0 ? in : empty_, len,
                     iv, aad_len != 0 ? aad : kNoAad, aad_len, computed, kGcmTagLen);
  if (tags_equal(computed, tag)) [[likely]] return true;
  if (len != 0) std::memset(out, 0, len);
  return false;
}

uint32_t CryptoEngine::seal_burst(GcmOp* ops, uint32_t n) noexcept {
  switch (mode_) {
    case GcmBurstMode::kJobs: return job_burst<true>(ops, n);
    case GcmBurstMode::kBurst: return imb_burst<true>(ops, n);
    case GcmBurstMode::kDirect: break;
  }
  return direct_burst<true>(ops, n);
}

uint32_t CryptoEngine::open_burst(GcmOp* ops, uint32_t n) noexcept {
  switch (mode_) {
    case GcmBurstMode::kJobs: return job_burst<false>(ops, n);
    case GcmBurstMode::kBurst: return imb_burst<false>(ops, n);
    case GcmBurstMode::kDirect: break;
  }
  return direct_burst<false>(ops, n);
}

template <bool kSeal>
uint32_t CryptoEngine::direct_burst(GcmOp* ops, uint32_t n) noexcept {
  uint32_t ok = 0;
  // One context for the burst, and the library called right here rather than through seal().
  alignas(64) gcm_context_data ctx;
  for (uint32_t i = 0; i < n; ++i) {
    GcmOp& op = ops[i];
    if (ablated(kAblateCipher)) [[unlikely]] {
      op.ok = true;
      ++ok;
      continue;
    }
    if constexpr (kSeal) {
      IMB_AES256_GCM_ENC(mgr_, &op.key->data, &ctx, op.len != 0 ? op.data : empty_, op.len != 0 ? op.data : empty_,
                         op.len, op.iv, op.aad_len != 0 ? op.aad : kNoAad, op.aad_len, op.tag, kGcmTagLen);
      op.ok = true;
    } else {
      op.ok = open(*op.key, op.iv, op.aad, op.aad_len, op.data, op.data, op.len, op.tag);
    }
    ok += op.ok;
  }
  return ok;
}

template <bool kSeal>
void CryptoEngine::fill_job(IMB_JOB* job, GcmOp* op) noexcept {
  job->cipher_mode = IMB_CIPHER_GCM;
  job->hash_alg = IMB_AUTH_AES_GMAC;
  job->cipher_direction = kSeal ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
  job->chain_order = kSeal ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
  job->enc_keys = &op->key->data;
  job->dec_keys = &op->key->data;
  job->key_len_in_bytes = IMB_KEY_256_BYTES;
  uint8_t* data = op->len != 0 ? op->data : empty_;
  job->src = data;
  job->dst = data;
  job->cipher_start_src_offset_in_bytes = 0;
  job->msg_len_to_cipher_in_bytes = op->len;
  job->hash_start_src_offset_in_bytes = 0;
  job->msg_len_to_hash_in_bytes = op->len;
  job->iv = op->iv;
  job->iv_len_in_bytes = kGcmIvLen;
  job->u.GCM.aad = op->aad_len != 0 ? op->aad : kNoAad;
  job->u.GCM.aad_len_in_bytes = op->aad_len;
  job->u.GCM.ctx = nullptr;
  // A job's slot in the manager's ring stays its own until it completes, so the slot
  // number indexes the scratch tag of an open without any bookkeeping of ours.
  job->auth_tag_output = kSeal ? op->tag : scratch_tags_[job - mgr_->jobs];
  job->auth_tag_output_len_in_bytes = kGcmTagLen;
  job->user_data = op;
}

template <bool kSeal>
void CryptoEngine::fail_op(GcmOp* op) noexcept {
  op->ok = false;
  if (!kSeal && op->len != 0) std::memset(op->data, 0, op->len);
}

template <bool kSeal>
bool CryptoEngine::finish_job(const IMB_JOB* job) noexcept {
  auto* op = static_cast<GcmOp*>(job->user_data);
  bool ok = job->status == IMB_STATUS_COMPLETED;
  if constexpr (!kSeal) ok = ok && tags_equal(job->auth_tag_output, op->tag);
  if (!ok) [[unlikely]] {
    fail_op<kSeal>(op);
    return false;
  }
  op->ok = true;
  return true;
}

template <bool kSeal>
uint32_t CryptoEngine::job_burst(GcmOp* ops, uint32_t n) noexcept {
  uint32_t ok = 0;
  for (uint32_t i = 0; i < n; ++i) {
    fill_job<kSeal>(IMB_GET_NEXT_JOB(mgr_), &ops[i]);
    for (IMB_JOB* done = IMB_SUBMIT_JOB(mgr_); done != nullptr; done = IMB_GET_COMPLETED_JOB(mgr_))
      ok += finish_job<kSeal>(done);
  }
  for (IMB_JOB* done = IMB_FLUSH_JOB(mgr_); done != nullptr; done = IMB_FLUSH_JOB(mgr_))
    ok += finish_job<kSeal>(done);
  return ok;
}

template <bool kSeal>
uint32_t CryptoEngine::imb_burst(GcmOp* ops, uint32_t n) noexcept {
  IMB_JOB* jobs[IMB_MAX_BURST_SIZE];
  uint32_t ok = 0;
  for (uint32_t base = 0; base < n;) {
    const uint32_t want = n - base < IMB_MAX_BURST_SIZE ? n - base : IMB_MAX_BURST_SIZE;
    uint32_t got = IMB_GET_NEXT_BURST(mgr_, want, jobs);
    if (got < want) {
      // The ring holds unfinished jobs (never after a call of ours returned): finish them.
      const uint32_t flushed = IMB_FLUSH_BURST(mgr_, IMB_MAX_BURST_SIZE, jobs);
      for (uint32_t j = 0; j < flushed; ++j) ok += finish_job<kSeal>(jobs[j]);
      got = IMB_GET_NEXT_BURST(mgr_, want, jobs);
      if (got == 0) [[unlikely]] {
        for (uint32_t j = base; j < n; ++j) fail_op<kSeal>(&ops[j]);
        break;
      }
    }
    for (uint32_t j = 0; j < got; ++j) fill_job<kSeal>(jobs[j], &ops[base + j]);
    const uint32_t completed = IMB_SUBMIT_BURST(mgr_, got, jobs);
    if (completed == 0 && imb_get_errno(mgr_) != 0) [[unlikely]] {
      // The checked burst validates every job before submitting any: on an invalid one
      // nothing was queued, so the whole chunk fails and the ring stays empty.
      for (uint32_t j = 0; j < got; ++j) fail_op<kSeal>(&ops[base + j]);
    } else {
      for (uint32_t j = 0; j < completed; ++j) ok += finish_job<kSeal>(jobs[j]);
      if (completed < got) {
        const uint32_t flushed = IMB_FLUSH_BURST(mgr_, got - completed, jobs);
        for (uint32_t j = 0; j < flushed; ++j) ok += finish_job<kSeal>(jobs[j]);
      }
    }
    base += got;
  }
  return ok;
}

}  // namespace sdwan::dp
