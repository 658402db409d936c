#include "control/policy/rates.hpp"

namespace sdwan::cp {

bool ClassRateMeter::update(std::span<const uint64_t> bytes, uint64_t now_ns) {
  if (!started_ || bytes.size() != base_.size()) {
    started_ = true;
    since_ns_ = now_ns;
    base_.assign(bytes.begin(), bytes.end());
    bps_.assign(bytes.size(), 0);
    return false;
  }
  if (now_ns - since_ns_ < window_ns_) return false;
  const auto span_ns = static_cast<unsigned __int128>(now_ns - since_ns_);
  for (size_t c = 0; c < bytes.size(); ++c) {
    // Counters only grow; a smaller value (a worker restarted) counts as nothing sent.
    const uint64_t sent = bytes[c] >= base_[c] ? bytes[c] - base_[c] : 0;
    bps_[c] = static_cast<uint64_t>(static_cast<unsigned __int128>(sent) * 8 * 1'000'000'000 / span_ns);
    base_[c] = bytes[c];
  }
  since_ns_ = now_ns;
  return true;
}

}  // namespace sdwan::cp
