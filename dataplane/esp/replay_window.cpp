// ReplayWindow set-up and copies; the per-packet functions are inline in the header.
#include "dataplane/esp/replay_window.hpp"

#include <bit>
#include <cstring>
#include <new>

namespace sdwan::dp {
namespace {

uint32_t clamp_size(uint32_t size) {
  if (size <= ReplayWindow::kMinSize) return ReplayWindow::kMinSize;
  if (size >= ReplayWindow::kMaxSize) return ReplayWindow::kMaxSize;
  return std::bit_ceil(size);
}

}  // namespace

ReplayWindow::ReplayWindow(uint32_t size, bool esn)
    : size_(clamp_size(size)), word_mask_(size_ / 64 - 1), esn_(esn) {
  if (size_ > kInlineSize) heap_.reset(new (std::nothrow) uint64_t[size_ / 64]());
}

ReplayWindow::ReplayWindow(const ReplayWindow& o)
    : top_(o.top_), size_(o.size_), word_mask_(o.word_mask_), esn_(o.esn_) {
  if (size_ <= kInlineSize) {
    std::memcpy(inline_, o.inline_, sizeof inline_);
  } else if (o.heap_ != nullptr) {
    heap_.reset(new (std::nothrow) uint64_t[size_ / 64]);
    if (heap_ != nullptr) std::memcpy(heap_.get(), o.heap_.get(), size_ / 8);
  }
}

ReplayWindow& ReplayWindow::operator=(const ReplayWindow& o) {
  if (this != &o) {
    ReplayWindow copy(o);
    *this = std::move(copy);
  }
  return *this;
}

}  // namespace sdwan::dp
