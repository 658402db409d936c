#include "control/metrics/server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <atomic>
#include <exception>
#include <thread>

namespace sdwan::cp {
namespace {

// Scrapes are rare and short: two threads serve them, and a slow client is cut after 5 s.
constexpr size_t kHttpThreads = 2;
constexpr time_t kIoTimeoutS = 5;

}  // namespace

struct MetricsHttp::Impl {
  httplib::Server server;
  std::shared_ptr<MetricsExchange> ex;
  std::thread thread;
  std::atomic<bool> listen_done{false};
  std::string url;
};

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::start(Ipv4 address, uint16_t port,
                                                        std::shared_ptr<MetricsExchange> ex) {
  auto impl = std::make_unique<Impl>();
  impl->ex = std::move(ex);
  const std::string host = address.str();
  httplib::Server& s = impl->server;
  s.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // httplib's default sets SO_REUSEPORT, which would let a second daemon share the port
  // silently; SO_REUSEADDR alone still allows a restart while old connections linger.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.set_read_timeout(kIoTimeoutS);
  s.set_write_timeout(kIoTimeoutS);
  s.set_payload_max_length(64 * 1024);
  s.set_keep_alive_max_count(100);
  MetricsExchange* exp = impl->ex.get();
  s.Get("/metrics", [exp](const httplib::Request&, httplib::Response& res) {
    auto d = exp->fetch(kScrapeWait);
    if (d == nullptr) {
      res.status = 503;
      res.set_content(fmt::format("sdwand: the control thread did not answer within {} ms (busy or stopping)\n",
                                  kScrapeWait.count()),
                      "text/plain; charset=utf-8");
      return;
    }
    res.set_content(render_prometheus(*d), std::string(kPrometheusContentType));
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("sdwand: the Prometheus metrics are at /metrics (docs/metrics.md)\n", "text/plain; charset=utf-8");
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content("sdwand: " + what + "\n", "text/plain; charset=utf-8");
  });
  errno = 0;
  // Port 0 (tests only: the config switches the endpoint off with it) takes a free port.
  const int bound = port != 0 ? (s.bind_to_port(host, port) ? port : -1) : s.bind_to_any_port(host);
  if (bound <= 0) {
    const int e = errno;
    return err(fmt::format("metrics: cannot listen on {}:{}: {} (another sdwand or exporter there? set metrics.port, "
                           "or metrics.enabled: false)",
                           host, port, e != 0 ? std::strerror(e) : "bind failed"));
  }
  impl->url = fmt::format("http://{}:{}/metrics", host, bound);
  Impl* ip = impl.get();
  impl->thread = std::thread([ip] {
    ip->server.listen_after_bind();
    ip->listen_done.store(true);
  });
  return std::unique_ptr<MetricsHttp>(new MetricsHttp(std::move(impl)));
}

MetricsHttp::MetricsHttp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttp::~MetricsHttp() {
  // Waiting scrapes end at once when the exchange closes; stop() then joins the pool.
  impl_->ex->close();
  // stop() does nothing before listen_after_bind() has marked the server running.
  while (!impl_->server.is_running() && !impl_->listen_done.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

const std::string& MetricsHttp::url() const noexcept { return impl_->url; }

}  // namespace sdwan::cp
