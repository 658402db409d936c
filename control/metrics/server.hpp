// The Prometheus endpoint: cpp-httplib serving GET /metrics on its own threads. Every scrape
// asks the control thread for fresh figures through a MetricsExchange and renders them on the
// HTTP thread; nothing here reads the control thread's state.
#pragma once

#include <chrono>
#include <memory>

#include "control/metrics/exchange.hpp"
#include "dataplane/api/result.hpp"
#include "dataplane/api/types.hpp"

namespace sdwan::cp {

/// How long a scrape waits for the control thread before it answers 503.
inline constexpr std::chrono::milliseconds kScrapeWait{2000};

/// An HTTP server on address:port with GET /metrics (and / pointing to it). Owns its threads.
class MetricsHttp {
 public:
  /// Binds (no SO_REUSEPORT: a second daemon on the same port fails here, with the reason)
  /// and starts serving in a thread of its own; port 0 takes a free port (see url()).
  /// Control thread, at start-up.
  static Result<std::unique_ptr<MetricsHttp>> start(Ipv4 address, uint16_t port, std::shared_ptr<MetricsExchange> ex);

  /// Stops accepting, finishes the requests in flight (they end when the exchange is closed,
  /// at the latest after kScrapeWait), joins the threads.
  ~MetricsHttp();

  /// The URL it serves, "http://127.0.0.1:9469/metrics", with the port actually bound.
  const std::string& url() const noexcept;

  struct Impl;

 private:
  explicit MetricsHttp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdwan::cp
