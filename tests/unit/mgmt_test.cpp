// Management socket: real Unix sockets in a temp dir, the server polled from its own thread
// the way the daemon's control loop polls it, and the real sdwanctl binary against it.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/mgmt/client.hpp"
#include "control/mgmt/server.hpp"

extern char** environ;

namespace sdwan::cp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kWaitMs = 5000;

// Answers the commands the tests need. "show" serves whatever the test put in shows.
struct TestHandler {
  std::shared_ptr<json> shows = std::make_shared<json>(json::object());

  Result<json> operator()(const json& req) const {
    const std::string cmd = req.value("cmd", "");
    if (cmd == "echo") return json{{"echo", req}};
    if (cmd == "throw") throw std::runtime_error("no such thing: " + req.value("what", ""));
    if (cmd == "error") return err("refused by handler");
    if (cmd == "big") return json(std::string(req.value("size", std::size_t{0}), 'x'));
    if (cmd == "show") {
      const std::string what = req.value("what", "");
      if (!shows->contains(what)) throw std::runtime_error("cannot show " + what);
      const json& v = (*shows)[what];
      if (v.is_object() && v.contains("$error")) return err(v["$error"].get<std::string>());
      return v;
    }
    throw std::runtime_error("unknown command " + cmd);
  }
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/sdwan-mgmt-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The server on a thread of its own, polled in a loop like the daemon's control thread does.
class Running {
 public:
  explicit Running(std::unique_ptr<MgmtServer> s) : server_(std::move(s)) {
    thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) server_->poll(10);
    });
  }
  ~Running() { stop(); }
  void stop() {
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
  }
  std::unique_ptr<MgmtServer>& server() { return server_; }

 private:
  std::unique_ptr<MgmtServer> server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int connect_raw(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), a.sun_path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t w = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (w <= 0) throw std::runtime_error("send failed");
    s.remove_prefix(static_cast<std::size_t>(w));
  }
}

// Reads from fd until one full line is in buf, the peer closes, or the wait runs out.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  std::optional<std::string> line(int wait_ms = kWaitMs) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      if (closed_ || !wait_readable(deadline)) return std::nullopt;
      char tmp[65536];
      const ssize_t r = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (r <= 0) {
        closed_ = true;
        continue;
      }
      buf_.append(tmp, static_cast<std::size_t>(r));
    }
  }

  // True once the peer closed (EOF or reset) within the wait; complete lines read meanwhile
  // are counted in lines_seen.
  bool closed(int wait_ms = kWaitMs) {
    while (line(wait_ms)) ++lines_seen;
    return closed_;
  }

  std::size_t lines_seen = 0;

 private:
  bool wait_readable(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(left)) > 0;
  }

  int fd_;
  std::string buf_;
  bool closed_ = false;
};

class MgmtTest : public ::testing::Test {
 protected:
  std::string sock() const { return dir_.path() + "/run/sdwan/sdwand.sock"; }

  std::unique_ptr<Running> start(const std::string& group = "") {
    auto s = MgmtServer::listen(sock(), group, handler_);
    if (!s) throw std::runtime_error(s.error().msg);
    return std::make_unique<Running>(std::move(s).value());
  }

  TempDir dir_;
  TestHandler handler_;
};

TEST_F(MgmtTest, RoundTripReturnsTheHandlersData) {
  auto r = start();
  const json req = {{"cmd", "echo"}, {"n", 42}, {"s", "x y"}};
  auto data = mgmt_request(sock(), req, kWaitMs);
  ASSERT_TRUE(data.ok()) << data.error().msg;
  EXPECT_EQ(*data, (json{{"echo", req}}));
}

TEST_F(MgmtTest, CreatesParentDirectoriesAndMakesTheSocketRootOnly) {
  ASSERT_FALSE(fs::exists(dir_.path() + "/run"));
  const mode_t old = ::umask(077);
  auto r = start();
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat((dir_.path() + "/run/sdwan").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "umask must not narrow the directory";
  ASSERT_EQ(::stat(sock().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(MgmtTest, GroupMakesTheSocketGroupReadableAndOwned) {
  const struct group* g = ::getgrgid(::getegid());
  ASSERT_NE(g, nullptr);
  auto r = start(g->gr_name);
  struct stat st {};
  ASSERT_EQ(::stat(sock().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, ::getegid());
  EXPECT_TRUE(mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs).ok());
}

TEST_F(MgmtTest, UnknownGroupIsRefusedAndLeavesNoSocket) {
  auto s = MgmtServer::listen(sock(), "no-such-group-sdwan", handler_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().msg, "management socket group no-such-group-sdwan does not exist");
  EXPECT_FALSE(fs::exists(sock()));
}

TEST_F(MgmtTest, TooLongPathIsRefused) {
  const std::string path = dir_.path() + "/" + std::string(120, 'a');
  auto s = MgmtServer::listen(path, "", handler_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().msg, "management socket path " + path + " is too long (at most 107 bytes)");
}

TEST_F(MgmtTest, MalformedJsonGetsAnErrorAndTheConnectionKeepsWorking) {
  auto r = start();
  const int fd = connect_raw(sock());
  ASSERT_GE(fd, 0);
  LineReader rd(fd);

  send_all(fd, "{bad json\n");
  auto l = rd.line();
  ASSERT_TRUE(l);
  json resp = json::parse(*l);
  EXPECT_EQ(resp["ok"], false);
  EXPECT_EQ(resp["error"].get<std::string>().rfind("malformed request: parse error at line 1", 0),
            0u)
      << resp.dump();

  send_all(fd, "[1,2]\n");
  l = rd.line();
  ASSERT_TRUE(l);
  EXPECT_EQ(json::parse(*l),
            (json{{"ok", false}, {"error", "malformed request: expected a JSON object"}}));

  // Blank lines are ignored; two requests in one write and one split over two writes are
  // answered in order.
  send_all(fd, "\r\n{\"cmd\":\"echo\",\"i\":1}\n{\"cmd\":\"echo\",\"i\":2}\r\n{\"cmd\":\"ec");
  send_all(fd, "ho\",\"i\":3}\n");
  for (int i = 1; i <= 3; ++i) {
    l = rd.line();
    ASSERT_TRUE(l) << i;
    resp = json::parse(*l);
    EXPECT_EQ(resp["ok"], true);
    EXPECT_EQ(resp["data"]["echo"]["i"], i);
  }
  ::close(fd);
}

TEST_F(MgmtTest, HandlerFailuresBecomeOkFalse) {
  auto r = start();
  auto thrown = mgmt_request(sock(), {{"cmd", "throw"}, {"what", "x"}}, kWaitMs);
  ASSERT_FALSE(thrown.ok());
  EXPECT_EQ(thrown.error().msg, "no such thing: x");
  auto returned = mgmt_request(sock(), {{"cmd", "error"}}, kWaitMs);
  ASSERT_FALSE(returned.ok());
  EXPECT_EQ(returned.error().msg, "refused by handler");

  const int fd = connect_raw(sock());
  ASSERT_GE(fd, 0);
  LineReader rd(fd);
  send_all(fd, "{\"cmd\":\"throw\",\"what\":\"y\"}\n");
  auto l = rd.line();
  ASSERT_TRUE(l);
  EXPECT_EQ(*l, R"({"error":"no such thing: y","ok":false})");
  ::close(fd);
}

TEST_F(MgmtTest, StaleSocketFileIsReplaced) {
  fs::create_directories(dir_.path() + "/run/sdwan");
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string p = sock();
    std::copy(p.begin(), p.end(), a.sun_path);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::close(fd);
  }
  ASSERT_TRUE(fs::is_socket(sock()));
  auto stale = mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().msg,
            "cannot connect to sdwand at " + sock() + ": Connection refused (is sdwand running?)");

  auto r = start();
  EXPECT_TRUE(mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs).ok());
}

TEST_F(MgmtTest, SecondServerOnALiveSocketIsRefused) {
  auto r = start();
  auto second = MgmtServer::listen(sock(), "", handler_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().msg, "socket " + sock() + " is in use by a running sdwand");
  EXPECT_TRUE(mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs).ok()) << "first one still serves";
}

TEST_F(MgmtTest, RefusesToReplaceSomethingThatIsNotASocket) {
  fs::create_directories(dir_.path() + "/run/sdwan");
  std::ofstream(sock()) << "precious\n";
  auto s = MgmtServer::listen(sock(), "", handler_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().msg, sock() + " exists and is not a socket; refusing to replace it");
  std::ifstream in(sock());
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "precious");
}

TEST_F(MgmtTest, DestructorRemovesTheSocketFile) {
  auto r = start();
  ASSERT_TRUE(fs::exists(sock()));
  r->stop();
  r->server().reset();
  EXPECT_FALSE(fs::exists(sock()));
}

TEST_F(MgmtTest, ClientErrorWhenNobodyListens) {
  auto r = mgmt_request(sock(), {{"cmd", "show"}, {"what", "ports"}}, kWaitMs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg, "cannot connect to sdwand at " + sock() +
                               ": No such file or directory (is sdwand running?)");
}

TEST_F(MgmtTest, ClientTimesOutWhenTheDaemonDoesNotAnswer) {
  // Listening but never polled: the connection is queued, nothing ever answers.
  auto s = MgmtServer::listen(sock(), "", handler_);
  ASSERT_TRUE(s.ok()) << s.error().msg;
  const auto t0 = Clock::now();
  auto r = mgmt_request(sock(), {{"cmd", "echo"}}, 200);
  const auto took = Clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg, "no answer from sdwand at " + sock() + " within 200 ms");
  EXPECT_GE(took, std::chrono::milliseconds(190));
  EXPECT_LT(took, std::chrono::milliseconds(3000));
}

TEST_F(MgmtTest, LineOfExactlyTheLimitIsServedOneByteMoreClosesTheConnection) {
  auto r = start();
  // {"cmd":"echo","p":"xxx..."} padded to exactly kMgmtMaxLine bytes.
  const std::string head = R"({"cmd":"echo","p":")";
  const std::string tail = R"("})";
  const std::string at_limit =
      head + std::string(kMgmtMaxLine - head.size() - tail.size(), 'x') + tail;
  ASSERT_EQ(at_limit.size(), kMgmtMaxLine);
  {
    const int fd = connect_raw(sock());
    ASSERT_GE(fd, 0);
    LineReader rd(fd);
    send_all(fd, at_limit + "\n");
    auto l = rd.line();
    ASSERT_TRUE(l);
    EXPECT_EQ(json::parse(*l)["ok"], true);
    ::close(fd);
  }
  const int fd = connect_raw(sock());
  ASSERT_GE(fd, 0);
  LineReader rd(fd);
  send_all(fd, std::string(kMgmtMaxLine + 1, 'a'));
  auto l = rd.line();
  ASSERT_TRUE(l) << "the client is told why";
  EXPECT_EQ(json::parse(*l),
            (json{{"ok", false}, {"error", "request line longer than 65536 bytes; closing"}}));
  EXPECT_TRUE(rd.closed());
  EXPECT_EQ(rd.lines_seen, 0u);
  ::close(fd);
  EXPECT_TRUE(mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs).ok());
}

TEST_F(MgmtTest, AtMost32ClientsAndASlotFreesWhenOneLeaves) {
  auto r = start();
  std::vector<int> fds;
  for (std::size_t i = 0; i < kMgmtMaxClients; ++i) {
    const int fd = connect_raw(sock());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    // An answer proves the server accepted it before the next one arrives.
    send_all(fd, R"({"cmd":"echo"})"
                 "\n");
    LineReader rd(fd);
    auto l = rd.line();
    ASSERT_TRUE(l) << "client " << i;
    EXPECT_EQ(json::parse(*l)["ok"], true);
  }
  {
    const int extra = connect_raw(sock());
    ASSERT_GE(extra, 0);
    LineReader rd(extra);
    auto l = rd.line();
    ASSERT_TRUE(l);
    EXPECT_EQ(json::parse(*l),
              (json{{"ok", false},
                    {"error", "too many management clients (at most 32); try again later"}}));
    EXPECT_TRUE(rd.closed());
    ::close(extra);
  }
  ::close(fds.back());
  fds.pop_back();
  auto again = mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs);
  EXPECT_TRUE(again.ok()) << again.error().msg;
  for (int fd : fds) ::close(fd);
}

TEST_F(MgmtTest, ManyConcurrentClients) {
  auto r = start();
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto d = mgmt_request(sock(), {{"cmd", "echo"}, {"t", t}, {"i", i}}, kWaitMs);
        if (d.ok() && (*d)["echo"]["t"] == t && (*d)["echo"]["i"] == i) ++good;
      }
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(good.load(), kThreads * kEach);
}

TEST_F(MgmtTest, ClientThatDoesNotReadIsDroppedAndOthersAreStillServed) {
  auto r = start();
  const int fd = connect_raw(sock());
  ASSERT_GE(fd, 0);
  // 40 answers of 256 KiB is 10 MiB: far over the 4 MiB a non-reader may leave queued.
  std::string burst;
  for (int i = 0; i < 40; ++i) burst += R"({"cmd":"big","size":262144})" "\n";
  send_all(fd, burst);
  // The daemon keeps serving while that client sits on its answers.
  auto d = mgmt_request(sock(), {{"cmd", "echo"}}, kWaitMs);
  EXPECT_TRUE(d.ok()) << d.error().msg;
  LineReader rd(fd);
  EXPECT_TRUE(rd.closed());
  EXPECT_LT(rd.lines_seen, 40u);
  ::close(fd);
}

TEST_F(MgmtTest, LastRequestWithoutNewlineIsAnsweredAfterHalfClose) {
  auto r = start();
  const int fd = connect_raw(sock());
  ASSERT_GE(fd, 0);
  send_all(fd, R"({"cmd":"echo","last":true})");
  ::shutdown(fd, SHUT_WR);
  LineReader rd(fd);
  auto l = rd.line();
  ASSERT_TRUE(l);
  EXPECT_EQ(json::parse(*l)["data"]["echo"]["last"], true);
  EXPECT_TRUE(rd.closed());
  ::close(fd);
}

TEST(MgmtPeer, RootOwnUserAndGroupMembersOnly) {
  constexpr uid_t kDaemon = 990;
  constexpr gid_t kGroup = 977;
  struct Case {
    const char* name;
    PeerCred peer;
    std::optional<gid_t> group;
    bool allowed;
  };
  const Case cases[] = {
      {"root", {0, 0, {}}, std::nullopt, true},
      {"daemon's own user", {kDaemon, 5, {}}, std::nullopt, true},
      {"other user, no group configured", {1000, kGroup, {kGroup}}, std::nullopt, false},
      {"other user, not a member", {1000, 1000, {1000, 24}}, kGroup, false},
      {"primary group", {1000, kGroup, {}}, kGroup, true},
      {"supplementary group", {1000, 1000, {24, kGroup}}, kGroup, true},
  };
  for (const Case& c : cases)
    EXPECT_EQ(mgmt_peer_allowed(c.peer, kDaemon, c.group), c.allowed) << c.name;
}

// sdwanctl, the built binary, against a server with canned answers.

std::string sdwanctl_path() {
  if (const char* p = std::getenv("SDWANCTL")) return p;
  // unit_tests lives in <build>/tests/unit; meson mirrors the source tree.
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  return (exe.parent_path().parent_path().parent_path() / "control/cli/sdwanctl").string();
}

struct CtlRun {
  int status = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CtlRun run_sdwanctl(const std::string& tmp, std::vector<std::string> args,
                 std::vector<std::string> env = {}) {
  const std::string bin = sdwanctl_path();
  if (!fs::exists(bin)) throw std::runtime_error(bin + " not built (ninja control/cli/sdwanctl)");
  const std::string out = tmp + "/out", errf = tmp + "/err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, errf.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> argv{const_cast<char*>(bin.c_str())};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).rfind("SDWAN_SOCKET=", 0) != 0) envs.emplace_back(*e);
  for (auto& e : env) envs.push_back(e);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn failed");
  int st = 0;
  ::waitpid(pid, &st, 0);
  CtlRun r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = slurp(out);
  r.err = slurp(errf);
  return r;
}

class SdwanctlTest : public MgmtTest {
 protected:
  void SetUp() override {
    json& s = *handler_.shows;
    s["ports"] = json::array({
        {{"name", "lan"}, {"spec", "af_packet:lan0"}, {"driver", "net_af_packet"},
         {"port_id", 0}, {"mac", "02:00:00:00:00:01"}, {"link", "up"}, {"speed_mbps", 10000},
         {"mtu", 1500}, {"rx_pkts", 12}, {"rx_bytes", 1536}, {"tx_pkts", 3},
         {"tx_bytes", 5368709120ull}, {"rx_missed", 0}, {"rx_errors", 0}, {"tx_errors", 1}},
        // A port the daemon knows little about yet: every missing field prints "-".
        {{"name", "isp1"}, {"link", "down"}, {"speed_mbps", 0}},
    });
    s["uplinks"] = json::array({
        {{"name", "isp1"}, {"port", "af_packet:wan1"}, {"address", "192.0.2.2/24"},
         {"next_hop", "192.0.2.1"}, {"next_hop_mac", nullptr}, {"cost", "metered"},
         {"bandwidth_bps", 100000000}, {"mtu", 1500}, {"link", "up"}, {"state", "resolving"}},
    });
    s["peers"] = json::array({
        {{"name", "hub"},
         {"endpoints", json::array({{{"address", "203.0.113.1"}, {"port", 4500},
                                     {"uplinks", json::array({"isp1", "isp2"})}},
                                    {{"address", "198.51.100.7"}, {"port", 4500},
                                     {"uplinks", json::array()}}})},
         {"prefixes", json::array({"10.2.0.0/16", "10.3.0.0/16"})},
         {"paths_up", 1},
         {"paths_total", 3}},
    });
    s["paths"] = {{"$error", "paths are not measured yet"}};
    s["stats"] = {{"name", "edge1"}, {"role", "edge"}, {"version", "0.1.0"}, {"uptime_s", 93784},
                  {"workers", json::array({{{"index", 0}, {"lcore", 2}, {"polls", 1000},
                                            {"busy_polls", 10}, {"rx_pkts", 5},
                                            {"tx_pkts", 4}, {"flows", 1}}})},
                  {"counters", {{"arp_replies", 2}}},
                  {"drops", {{"no_route", 7}}}};
    s["version"] = {{"name", "edge1"}, {"role", "edge"}, {"version", "0.1.0"}};
    server_ = start();
  }

  CtlRun ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", sock()});
    return run_sdwanctl(dir_.path(), std::move(args));
  }

  std::unique_ptr<Running> server_;
};

TEST_F(SdwanctlTest, JsonIsTheDaemonsDataUntouched) {
  for (const char* what : {"ports", "uplinks", "peers", "stats", "version"}) {
    CtlRun r = ctl({"show", what, "--json"});
    EXPECT_EQ(r.status, 0) << what << ": " << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(json::parse(r.out), (*handler_.shows)[what]) << what;
    EXPECT_EQ(r.out, (*handler_.shows)[what].dump(2) + "\n") << what;
  }
}

TEST_F(SdwanctlTest, PortsTableHasTheContractColumnsHumanBytesAndDashes) {
  CtlRun r = ctl({"show", "ports"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream in(r.out);
  std::string header, lan, isp1, extra;
  std::getline(in, header);
  std::getline(in, lan);
  std::getline(in, isp1);
  EXPECT_FALSE(std::getline(in, extra));
  std::istringstream hs(header);
  std::vector<std::string> cols{std::istream_iterator<std::string>(hs), {}};
  EXPECT_EQ(cols, (std::vector<std::string>{"NAME", "SPEC", "DRIVER", "PORT", "MAC", "LINK",
                                            "SPEED", "MTU", "RX_PKTS", "RX_BYTES", "TX_PKTS",
                                            "TX_BYTES", "RX_MISSED", "RX_ERRORS", "TX_ERRORS"}));
  std::istringstream ls(lan);
  std::vector<std::string> cells{std::istream_iterator<std::string>(ls), {}};
  EXPECT_EQ(cells, (std::vector<std::string>{"lan", "af_packet:lan0", "net_af_packet", "0",
                                             "02:00:00:00:00:01", "up", "10Gbps", "1500", "12",
                                             "1.5K", "3", "5G", "0", "0", "1"}));
  std::istringstream is(isp1);
  cells = {std::istream_iterator<std::string>(is), {}};
  EXPECT_EQ(cells, (std::vector<std::string>{"isp1", "-", "-", "-", "-", "down", "-", "-", "-",
                                             "-", "-", "-", "-", "-", "-"}));
  // Aligned: every line is as wide as the widest cell in each column, so the numeric last
  // column ends at the same place on every line.
  EXPECT_EQ(header.size(), lan.size());
  EXPECT_EQ(header.size(), isp1.size());
}

TEST_F(SdwanctlTest, UplinksShowsAnUnresolvedNextHop) {
  CtlRun r = ctl({"show", "uplinks"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("NAME  PORT            ADDRESS       NEXT_HOP   NEXT_HOP_MAC  COST     "
                       "BANDWIDTH   MTU  LINK  STATE\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("isp1  af_packet:wan1  192.0.2.2/24  192.0.2.1  unresolved    metered  "
                       "  100Mbps  1500  up    resolving\n"),
            std::string::npos)
      << r.out;
}

TEST_F(SdwanctlTest, PeersJoinEndpointsAndCountPaths) {
  CtlRun r = ctl({"show", "peers"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("hub   203.0.113.1:4500 via isp1,isp2; 198.51.100.7:4500  "
                       "10.2.0.0/16,10.3.0.0/16  1/3 up\n"),
            std::string::npos)
      << r.out;
}

TEST_F(SdwanctlTest, StatsAndVersion) {
  CtlRun r = ctl({"show", "stats"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("uptime   1d 02:03:04\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("WORKER  LCORE  POLLS  BUSY_POLLS  RX_PKTS  TX_PKTS  FLOWS\n"
                       "     0      2   1000          10        5        4      1\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("arp_replies      2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no_route      7\n"), std::string::npos) << r.out;

  r = ctl({"show", "version"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "name      edge1\nrole      edge\nversion   0.1.0\nsdwanctl  0.1.0\n");
}

TEST_F(SdwanctlTest, DaemonErrorIsOneLineAndStatus1) {
  CtlRun r = ctl({"show", "paths"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "sdwanctl: paths are not measured yet\n");
}

TEST_F(SdwanctlTest, SocketFromEnvironmentAndUsageErrors) {
  CtlRun r = run_sdwanctl(dir_.path(), {"show", "version", "--json"}, {"SDWAN_SOCKET=" + sock()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["name"], "edge1");

  r = ctl({"show"});
  EXPECT_EQ(r.status, 2);
  r = ctl({"show", "ports", "--bogus"});
  EXPECT_EQ(r.status, 2);
}

}  // namespace
}  // namespace sdwan::cp
