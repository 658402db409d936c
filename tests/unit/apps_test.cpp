// control/apps: one check against real sockets on the loopback (a listener, a closed port, an
// HTTP server), and the checker's state and events with a short interval.
#include "control/apps/checker.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "control/events/event_bus.hpp"

namespace sdwan::cp {
namespace {

// A TCP listener on 127.0.0.1 at want, or a port the kernel picks; closed by close().
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  explicit Listener(uint16_t want = 0) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(want);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ~Listener() { close(); }
};

AppCheckConfig tcp(uint16_t port) {
  AppCheckConfig c;
  c.name = "t";
  c.kind = AppCheckConfig::Kind::kTcp;
  c.address = Ipv4{0x7f000001};
  c.port = port;
  c.target = "127.0.0.1:" + std::to_string(port);
  c.interval_ms = 500;
  c.timeout_ms = 300;
  return c;
}

TEST(AppCheck, TcpConnectSucceedsOnAListenerAndIsRefusedOnceItCloses) {
  Listener l;
  const AppResult ok = run_app_check(tcp(l.port));
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_GT(ok.ms, 0.0);
  EXPECT_LT(ok.ms, 300.0);
  const uint16_t port = l.port;
  l.close();
  const AppResult bad = run_app_check(tcp(port));
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.error, "connect: Connection refused");
}

TEST(AppCheck, HttpGetJudgesTheStatus) {
  httplib::Server srv;
  srv.Get("/ok", [](const httplib::Request&, httplib::Response& r) { r.set_content("fine", "text/plain"); });
  srv.Get("/down", [](const httplib::Request&, httplib::Response& r) { r.status = 503; });
  const int port = srv.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread th([&] { srv.listen_after_bind(); });
  while (!srv.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  AppCheckConfig c = tcp(static_cast<uint16_t>(port));
  c.kind = AppCheckConfig::Kind::kHttp;
  c.path = "/ok";
  const AppResult ok = run_app_check(c);
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.http_status, 200);
  c.expect_status = 204;
  const AppResult wrong = run_app_check(c);
  EXPECT_FALSE(wrong.ok);
  EXPECT_EQ(wrong.error, "http: status 200 (expected 204)");
  c.expect_status.reset();
  c.path = "/down";
  const AppResult down = run_app_check(c);
  EXPECT_FALSE(down.ok);
  EXPECT_EQ(down.error, "http: status 503 (expected 2xx or 3xx)");
  srv.stop();
  th.join();
}

// The checker against a listener that closes and comes back: failing on the first failed check
// (app_failing), ok on the first good one (app_ok); unknown -> ok raises nothing.
TEST(AppChecker, FailingOnTheFirstFailureOkOnTheFirstSuccessWithEvents) {
  EventBus bus(EventsConfig{}, "edge");
  auto l = std::make_unique<Listener>();
  const uint16_t port = l->port;
  AppChecker ch({tcp(port)}, &bus);
  const auto wait_state = [&](const std::string& want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ch.status().at(0).state == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  EXPECT_EQ(ch.status().at(0).state, "unknown");
  ASSERT_TRUE(wait_state("ok"));
  EXPECT_TRUE(bus.events({"app_failing", "app_ok"}).empty());
  l.reset();
  ASSERT_TRUE(wait_state("failing"));
  const AppStatus f = ch.status().at(0);
  EXPECT_EQ(f.consecutive_failures, 1u);
  EXPECT_EQ(f.last_error, "connect: Connection refused");
  auto ev = bus.events({"app_failing"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["app"], "t");
  EXPECT_EQ(ev[0]["from"], "ok");
  Listener again(port);  // the service is back
  ASSERT_EQ(again.port, port);
  ASSERT_TRUE(wait_state("ok"));
  EXPECT_EQ(bus.events({"app_ok"}).size(), 1u);
  const AppStatus a = ch.status().at(0);
  EXPECT_GE(a.window_checks, 3u);
  EXPECT_LT(*a.success_pct, 100.0);
}

}  // namespace
}  // namespace sdwan::cp
