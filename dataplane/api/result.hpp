// Result<T>: the one way control and drivers return an error (STYLE.md "Errors").
// The dataplane does not use it on the per-packet path (it counts instead).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace sdwan {

/// A human-readable error, already phrased for the operator (one line, no trailing period).
struct Error {
  std::string msg;
};

/// Either a value or an Error. Any thread; owns its value.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}                 // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}             // NOLINT
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Result for operations that return nothing.
struct Ok {};
using Status = Result<Ok>;

/// Builds an Error from a message.
inline Error err(std::string msg) { return Error{std::move(msg)}; }

}  // namespace sdwan
