// Events and hooks (control/events, issue 7): the bus, its log file and the hook runner, with
// real files, real processes (/bin/sh) and real signals. Timeouts are short but every wait
// is bounded by a generous deadline, so a loaded machine slows the tests, never fails them.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/app/log.hpp"
#include "control/events/event_bus.hpp"
#include "control/events/event_log.hpp"
#include "control/events/hook_runner.hpp"

namespace sdwan::cp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kWaitMs = 20000;  // only ever reached when something is broken

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "sdwan-events-XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::vector<std::string> lines_of(const std::string& file) {
  std::ifstream f(file);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

std::string slurp(const std::string& file) {
  std::ifstream f(file);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Everything log_line writes to stderr while it lives, for tests of what is logged.
class StderrCapture {
 public:
  explicit StderrCapture(const std::string& file) : file_(file) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    return slurp(file_);
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::string file_;
  int saved_ = -1;
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Direct children of this process (from /proc): none may be left, zombie or not, once the
// runner is idle.
std::vector<std::string> children() {
  std::vector<std::string> out;
  const std::string self = std::to_string(::getpid());
  for (const auto& d : fs::directory_iterator("/proc")) {
    const std::string name = d.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(d.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == self) out.push_back(name + " " + stat.substr(0, close + 1) + " " + state);
  }
  return out;
}

bool group_gone(pid_t pgid) { return ::kill(-pgid, 0) != 0 && errno == ESRCH; }

std::vector<std::string> sh_argv(const std::string& script) { return {"/bin/sh", "-c", script, "hook"}; }

// "2025-03-14T09:26:53.589Z" (by hand: std::regex trips GCC 12's uninitialised-use warning
// under the sanitizers).
bool is_rfc3339_ms(const std::string& t) {
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (t.size() != kShape.size()) return false;
  for (size_t i = 0; i < t.size(); ++i)
    if (kShape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(t[i])) : t[i] != kShape[i]) return false;
  return true;
}

class Quiet : public ::testing::Test {
 protected:
  // The runner logs every run; the tests read what they need from its records.
  void SetUp() override { log_setup(LogLevel::kError, "test"); }
  void TearDown() override { log_setup(LogLevel::kInfo, "sdwand"); }
};

// --- the bus ---------------------------------------------------------------------------

using EventBusTest = Quiet;

TEST_F(EventBusTest, EmitAddsTimeSeqTypeAndNameToTheDetail) {
  EventsConfig cfg;
  EventBus bus(cfg, "branch1");
  bus.emit("path_down", {{"path", "isp1:hub"}, {"from", "up"}, {"to", "down"}, {"reason", "missed 3 probes"}});
  bus.emit("sa_rekey", {{"path", "isp2:hub"}, {"seq", 99}, {"type", "forged"}, {"name", "x"}, {"time", "y"}});
  bus.emit("reload", json(42));
  bus.emit("reload_failed", json());
  const json ev = bus.events();
  ASSERT_EQ(ev.size(), 4u);
  for (size_t i = 0; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i]["seq"], i + 1);
    EXPECT_EQ(ev[i]["name"], "branch1");
    EXPECT_TRUE(is_rfc3339_ms(ev[i]["time"].get<std::string>())) << ev[i];
  }
  EXPECT_EQ(ev[0]["type"], "path_down");
  EXPECT_EQ(ev[0]["path"], "isp1:hub");
  EXPECT_EQ(ev[0]["reason"], "missed 3 probes");
  // The bus's fields win over a detail's fields of the same name.
  EXPECT_EQ(ev[1]["type"], "sa_rekey");
  EXPECT_EQ(ev[1]["seq"], 2);
  EXPECT_EQ(ev[1]["name"], "branch1");
  EXPECT_NE(ev[1]["time"], "y");
  EXPECT_EQ(ev[2]["detail"], 42);
  EXPECT_EQ(ev[3].size(), 4u) << ev[3];
  EXPECT_EQ(bus.last_seq(), 4u);
  EXPECT_EQ(bus.stats()["emitted"], 4);
}

TEST_F(EventBusTest, EmitTakesTheTimeTheEventHappened) {
  EventsConfig cfg;
  EventBus bus(cfg, "edge");
  const auto at = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  bus.emit("path_up", {{"path", "p"}}, at);
  EXPECT_EQ(bus.events()[0]["time"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(rfc3339_utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(5))), "1970-01-01T00:00:00.005Z");
}

TEST_F(EventBusTest, RingKeepsTheLastNAndFiltersByTypeAndSeq) {
  EventsConfig cfg;
  cfg.ring = 10;
  EventBus bus(cfg, "edge");
  for (int i = 0; i < 25; ++i) bus.emit(i % 2 ? "path_up" : "path_down", {{"i", i}});
  const json all = bus.events();
  ASSERT_EQ(all.size(), 10u);
  EXPECT_EQ(all.front()["seq"], 16);
  EXPECT_EQ(all.back()["seq"], 25);
  const json ups = bus.events({"path_up"});
  ASSERT_EQ(ups.size(), 5u);
  for (const auto& e : ups) EXPECT_EQ(e["type"], "path_up");
  const json after = bus.events({}, 22);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0]["seq"], 23);
  EXPECT_EQ(bus.events({"path_down", "path_up"}, 20).size(), 5u);
  EXPECT_EQ(bus.events({"app_ok"}).size(), 0u);
}

TEST_F(EventBusTest, LogHasOneJsonLinePerEventTimeSeqTypeNameFirst) {
  TempDir dir;
  EventsConfig cfg;
  cfg.log = dir / "sub/dir/edge.events.jsonl";  // the directories are made
  {
    EventBus bus(cfg, "edge");
    bus.emit("path_down", {{"path", "isp1:hub"}, {"reason", "line\nbreak \"quoted\" \xff"}});
    bus.emit("class_moved", {{"class", "voice"}, {"from", {"isp1:hub"}}, {"to", json::array()}});
    ASSERT_TRUE(bus.wait_idle(kWaitMs));
    EXPECT_EQ(bus.stats()["log_written"], 2);
    EXPECT_EQ(bus.stats()["log_healthy"], true);
  }
  const auto lines = lines_of(cfg.log);
  ASSERT_EQ(lines.size(), 2u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind(R"({"time":")", 0), 0u) << lines[i];
    const json j = json::parse(lines[i]);
    EXPECT_EQ(j["seq"], i + 1);
    EXPECT_EQ(j["name"], "edge");
    const auto seq_at = lines[i].find(R"("seq":)"), type_at = lines[i].find(R"("type":)"),
               name_at = lines[i].find(R"("name":)");
    EXPECT_TRUE(seq_at < type_at && type_at < name_at && name_at < lines[i].find(R"("path":)") + 0) << lines[i];
  }
  EXPECT_EQ(json::parse(lines[0])["reason"], "line\nbreak \"quoted\" \xef\xbf\xbd");  // bad UTF-8 replaced
  EXPECT_EQ(json::parse(lines[1])["to"], json::array());
  struct stat st {};
  ASSERT_EQ(::stat(cfg.log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(EventBusTest, SequenceGoesOnFromTheLogAfterARestart) {
  TempDir dir;
  EventsConfig cfg;
  cfg.log = dir / "events.jsonl";
  {
    EventBus bus(cfg, "edge");
    for (int i = 0; i < 7; ++i) bus.emit("path_up", {{"i", i}});
    ASSERT_TRUE(bus.wait_idle(kWaitMs));
  }
  // A cut last line (a crash mid-write elsewhere) is not a line.
  { std::ofstream(cfg.log, std::ios::app) << R"({"time":"x","seq":1000,"ty)"; }
  EXPECT_EQ(EventLog::last_seq(cfg.log), 7u);
  std::ofstream(cfg.log, std::ios::app) << "\n";
  EventBus again(cfg, "edge");
  again.emit("path_down", {});
  EXPECT_EQ(again.events()[0]["seq"], 8);
  EXPECT_EQ(EventLog::last_seq(dir / "none.jsonl"), std::nullopt);
}

TEST_F(EventBusTest, LogIsReopenedWhenRotatedAway) {
  TempDir dir;
  const std::string path = dir / "events.jsonl";
  EventLog log({path, false, 100});
  log.append(R"({"seq":1})");
  ASSERT_TRUE(log.flush(kWaitMs));
  fs::rename(path, dir / "events.jsonl.1");  // logrotate's default: move, the writer reopens
  log.append(R"({"seq":2})");
  ASSERT_TRUE(log.flush(kWaitMs));
  fs::remove(path);  // deleted by hand: a new file again
  log.append(R"({"seq":3})");
  ASSERT_TRUE(log.flush(kWaitMs));
  EXPECT_EQ(lines_of(dir / "events.jsonl.1"), std::vector<std::string>{R"({"seq":1})"});
  EXPECT_EQ(lines_of(path), std::vector<std::string>{R"({"seq":3})"});
  EXPECT_EQ(log.stats().written, 3u);
  EXPECT_EQ(log.stats().failed, 0u);
}

TEST_F(EventBusTest, FullDiskIsCountedAndLoggedOnceNeverBlocks) {
  TempDir dir;
  StderrCapture cap(dir / "stderr");
  log_setup(LogLevel::kInfo, "test");
  {
    EventLog log({"/dev/full", true, 10000});  // every write: ENOSPC
    const auto t0 = Clock::now();
    for (int i = 0; i < 2000; ++i) log.append(R"({"seq":1})");
    EXPECT_LT(Clock::now() - t0, milliseconds(500));
    ASSERT_TRUE(log.flush(kWaitMs));
    EXPECT_EQ(log.stats().failed, 2000u);
    EXPECT_EQ(log.stats().written, 0u);
    EXPECT_FALSE(log.stats().healthy);
  }
  const std::string text = cap.text();
  EXPECT_EQ(count(text, "event log /dev/full: cannot write to it: No space left on device"), 1u) << text;
}

TEST_F(EventBusTest, UnwritableLogIsCountedAndLoggedOnceThenRecovers) {
  TempDir dir;
  const std::string blocker = dir / "notadir";
  std::ofstream(blocker) << "a file where the log's directory should be\n";
  StderrCapture cap(dir / "stderr");
  log_setup(LogLevel::kInfo, "test");
  {
    EventsConfig cfg;
    cfg.log = blocker + "/events.jsonl";
    EventBus bus(cfg, "edge");
    for (int i = 0; i < 5; ++i) {
      bus.emit("path_up", {});
      ASSERT_TRUE(bus.wait_idle(kWaitMs));
    }
    EXPECT_EQ(bus.stats()["log_failed"], 5);
    EXPECT_EQ(bus.stats()["log_healthy"], false);
    EXPECT_EQ(bus.events().size(), 5u);  // show events still has them
    fs::remove(blocker);                   // the operator fixes it
    bus.emit("path_down", {});
    ASSERT_TRUE(bus.wait_idle(kWaitMs));
    EXPECT_EQ(bus.stats()["log_written"], 1);
    EXPECT_EQ(bus.stats()["log_healthy"], true);
    EXPECT_EQ(json::parse(lines_of(cfg.log).at(0))["seq"], 6);
  }
  const std::string text = cap.text();
  EXPECT_EQ(count(text, "cannot open it: Not a directory"), 1u) << text;
  EXPECT_EQ(count(text, "writing again (5 line(s) lost meanwhile)"), 1u) << text;
}

TEST_F(EventBusTest, ReconfigureTakesNewHooksLogAndRingAtOnce) {
  TempDir dir;
  EventsConfig cfg;
  cfg.ring = 100;
  EventBus bus(cfg, "edge");
  for (int i = 0; i < 20; ++i) bus.emit("path_up", {});

  EventsConfig next = cfg;
  next.ring = 10;
  next.log = dir / "a.jsonl";
  next.hooks["path_down"] = {sh_argv("cat >> " + dir / "hooked")};
  next.hook_timeout_ms = 250;
  bus.reconfigure(next);
  EXPECT_EQ(bus.events().size(), 10u);  // the ring shrank, newest kept
  EXPECT_EQ(bus.events().front()["seq"], 11);
  bus.emit("path_down", {{"n", 1}});
  bus.emit("path_up", {{"n", 2}});
  ASSERT_TRUE(bus.wait_idle(kWaitMs));
  EXPECT_EQ(lines_of(dir / "a.jsonl").size(), 2u);
  ASSERT_EQ(lines_of(dir / "hooked").size(), 1u);
  EXPECT_EQ(json::parse(lines_of(dir / "hooked")[0])["seq"], 21);
  EXPECT_EQ(bus.config().hook_timeout_ms, 250u);

  // The new timeout holds for new runs; another log file takes the next lines; no hooks: none run.
  next.hooks["path_down"] = {sh_argv("sleep 1000")};
  bus.reconfigure(next);
  bus.emit("path_down", {});
  ASSERT_TRUE(bus.wait_idle(kWaitMs));
  const json runs = bus.hook_runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1]["result"], "timeout");
  EXPECT_LT(runs[1]["duration_ms"].get<uint64_t>(), 5000u);
  next.log = dir / "b.jsonl";
  next.hooks.clear();
  bus.reconfigure(next);
  bus.emit("path_down", {});
  ASSERT_TRUE(bus.wait_idle(kWaitMs));
  EXPECT_EQ(lines_of(dir / "a.jsonl").size(), 3u);
  ASSERT_EQ(lines_of(dir / "b.jsonl").size(), 1u);
  EXPECT_EQ(json::parse(lines_of(dir / "b.jsonl")[0])["seq"], 24);
  EXPECT_EQ(bus.hook_runs().size(), 2u);
}

// --- the hook runner ---------------------------------------------------------------------

using HookRunnerTest = Quiet;

HookRunner::Options fast(uint32_t timeout_ms = 5000) {
  HookRunner::Options o;
  o.timeout_ms = timeout_ms;
  o.kill_grace_ms = 300;
  return o;
}

std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script, "hook"}; }

TEST_F(HookRunnerTest, HookGetsTheEventOnStdinAndItsEnvironment) {
  TempDir dir;
  const std::string out = dir / "got";
  {
    EventsConfig cfg;
    cfg.hooks["path_down"] = {sh("cat > " + out + "; echo \"$SDWAN_EVENT_TYPE $SDWAN_EVENT_SEQ $SDWAN_APPLIANCE $(pwd -P)\" > " +
                                 out + ".env; ls /proc/self/fd > " + out + ".fds")};
    cfg.hooks["path_up"] = {sh("echo wrong > " + dir / "wrong")};
    EventBus bus(cfg, "branch1");
    bus.emit("path_down", {{"path", "isp1:hub"}});
    ASSERT_TRUE(bus.wait_idle(kWaitMs));
    const json runs = bus.hook_runs();
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0]["result"], "ok") << runs;
    EXPECT_EQ(runs[0]["type"], "path_down");
    EXPECT_EQ(runs[0]["seq"], 1);
    EXPECT_EQ(runs[0]["hook"], "/bin/sh");
  }
  const std::string got = slurp(out);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');
  const json j = json::parse(got);
  EXPECT_EQ(j["path"], "isp1:hub");
  EXPECT_EQ(j["type"], "path_down");
  EXPECT_EQ(slurp(out + ".env"), "path_down 1 branch1 /\n");
  // stdin, stdout, stderr and ls's own directory handle: nothing of the daemon's leaks in.
  EXPECT_EQ(lines_of(out + ".fds").size(), 4u) << slurp(out + ".fds");
  EXPECT_FALSE(fs::exists(dir / "wrong"));
}

TEST_F(HookRunnerTest, StarHooksRunForEveryTypeOncePerEvent) {
  TempDir dir;
  {
    EventsConfig cfg;
    const auto h = sh("cat >> " + dir / "all");
    cfg.hooks["*"] = {h};
    cfg.hooks["sa_rekey"] = {h};  // the same hook under both: it runs once
    EventBus bus(cfg, "edge");
    bus.emit("sa_rekey", {});
    bus.emit("app_ok", {});
    ASSERT_TRUE(bus.wait_idle(kWaitMs));
    EXPECT_EQ(bus.stats()["hooks_run"], 2);
  }
  EXPECT_EQ(lines_of(dir / "all").size(), 2u);
}

TEST_F(HookRunnerTest, TimeoutKillsTheWholeProcessGroupAndReapsIt) {
  HookRunner r(fast(300));
  TempDir dir;
  // The shell starts sleep as a child (not exec: another command follows) and records the
  // group; SIGTERM to the group ends both.
  ASSERT_TRUE(r.submit(sh("echo $$ > " + dir / "pgid" + "; sleep 1000; echo never"), "", {}, 1, "path_down"));
  const auto t0 = Clock::now();
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  const auto took = Clock::now() - t0;
  const auto runs = r.recent();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_TRUE(runs[0].timed_out);
  EXPECT_EQ(runs[0].result, "timeout");
  EXPECT_EQ(runs[0].signal, SIGTERM);
  EXPECT_GE(runs[0].duration_ms, 300u);
  EXPECT_LT(took, milliseconds(3000));
  const pid_t pgid = std::stoi(slurp(dir / "pgid"));
  EXPECT_TRUE(group_gone(pgid)) << "something of the hook's group survived";
  EXPECT_TRUE(children().empty()) << children().front();
  EXPECT_EQ(r.stats().timed_out, 1u);
  EXPECT_EQ(r.stats().failed, 0u);
}

TEST_F(HookRunnerTest, HookIgnoringSigtermGetsSigkillAfterTheGrace) {
  HookRunner r(fast(200));
  ASSERT_TRUE(r.submit(sh("trap '' TERM; while :; do sleep 0.05; done"), "", {}, 1, "app_failing"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  const auto runs = r.recent();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_TRUE(runs[0].timed_out);
  EXPECT_EQ(runs[0].signal, SIGKILL);
  EXPECT_GE(runs[0].duration_ms, 200u + 300u);
  EXPECT_TRUE(children().empty()) << children().front();
}

TEST_F(HookRunnerTest, WhatAHookLeavesBehindIsKilledAtItsTimeoutAndReaped) {
  HookRunner r(fast(400));
  TempDir dir;
  // The hook exits at once, leaving a sleeper in its group (its child, then ours: the runner
  // is a subreaper).
  ASSERT_TRUE(r.submit(sh("(sleep 1000; echo late) & echo $! > " + dir / "pid" + "; echo started"), "", {}, 1, "reload"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  const auto runs = r.recent();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].result, "ok");
  EXPECT_EQ(runs[0].output, "started\n");
  EXPECT_LT(runs[0].duration_ms, 400u);  // the run ends with its leader
  const pid_t left = std::stoi(slurp(dir / "pid"));
  EXPECT_NE(::kill(left, 0), 0) << "the process left behind still runs after the timeout";
  EXPECT_TRUE(children().empty()) << children().front();
}

TEST_F(HookRunnerTest, RunsInParallelUpToTheLimit) {
  TempDir dir;
  // Each run waits (up to 4 s) until all four have started: only four at once can all succeed.
  const std::string d = dir.path().string();
  const std::string barrier = "touch " + d + "/$1; n=0; while [ $(ls " + d + " | wc -l) -lt 4 ]; do n=$((n+1)); "
                              "[ $n -gt 400 ] && exit 7; sleep 0.01; done";
  {
    HookRunner::Options o = fast(10000);
    o.max_concurrent = 4;
    HookRunner r(o);
    for (int i = 0; i < 4; ++i)
      ASSERT_TRUE(r.submit({"/bin/sh", "-c", barrier, "hook", "run" + std::to_string(i)}, "", {}, 1, "drill_start"));
    ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
    for (const auto& run : r.recent()) EXPECT_EQ(run.result, "ok") << run.output;
    EXPECT_EQ(r.stats().ok, 4u);
  }
  // With a limit of 2, never more than two at once: each run counts who runs beside it.
  TempDir live;
  const std::string l = live.path().string();
  const std::string counter = "touch " + l + "/$1; ls " + l + " | wc -l >> " + l + ".max; sleep 0.2; rm " + l + "/$1";
  HookRunner::Options o = fast(10000);
  o.max_concurrent = 2;
  HookRunner r(o);
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(r.submit({"/bin/sh", "-c", counter, "hook", "run" + std::to_string(i)}, "", {}, 1, "drill_end"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  EXPECT_EQ(r.stats().ok, 6u);
  int most = 0;
  for (const auto& n : lines_of(l + ".max")) most = std::max(most, std::stoi(n));
  EXPECT_EQ(most, 2) << "at most two hooks at once, and two did run together";
  fs::remove(l + ".max");
}

TEST_F(HookRunnerTest, OutputIsCapturedBoundedAndCounted) {
  HookRunner::Options o = fast();
  o.output_max = 100;
  HookRunner r(o);
  // 20,000 bytes on stdout and a line on stderr: kept 100, counted all, never blocked.
  ASSERT_TRUE(r.submit(sh("echo to-stderr >&2; head -c 20000 /dev/zero | tr '\\0' x"), "", {}, 1, "app_ok"));
  ASSERT_TRUE(r.submit(sh("printf 'two\\nlines'"), "", {}, 2, "app_ok"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  const auto runs = r.recent();
  ASSERT_EQ(runs.size(), 2u);
  const auto& big = runs[0].seq == 1 ? runs[0] : runs[1];
  const auto& small = runs[0].seq == 1 ? runs[1] : runs[0];
  EXPECT_EQ(big.output.size(), 100u);
  EXPECT_EQ(big.output.substr(0, 10), "to-stderr\n");
  EXPECT_EQ(big.output_bytes, 20010u);
  EXPECT_EQ(small.output, "two\nlines");
}

TEST_F(HookRunnerTest, FailingHooksAreRecordedWithTheirStatus) {
  TempDir dir;
  const std::string plain = dir / "plain";  // a file without execute bits
  std::ofstream(plain) << "#!/bin/sh\n";
  fs::permissions(plain, fs::perms(0644));
  HookRunner r(fast());
  ASSERT_TRUE(r.submit(sh("echo broken; exit 3"), "", {}, 1, "path_up"));
  ASSERT_TRUE(r.submit(sh("kill -SEGV $$"), "", {}, 2, "path_up"));
  ASSERT_TRUE(r.submit({"/nonexistent/hook"}, "", {}, 3, "path_up"));
  ASSERT_TRUE(r.submit({plain}, "", {}, 4, "path_up"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  std::map<uint64_t, HookRun> by_seq;
  for (auto& run : r.recent()) by_seq[run.seq] = run;
  ASSERT_EQ(by_seq.size(), 4u);
  EXPECT_EQ(by_seq[1].result, "exit 3");
  EXPECT_EQ(by_seq[1].exit_code, 3);
  EXPECT_EQ(by_seq[1].output, "broken\n");
  EXPECT_EQ(by_seq[2].result, "killed by SIGSEGV");
  EXPECT_EQ(by_seq[2].signal, SIGSEGV);
  EXPECT_EQ(by_seq[3].result, "spawn failed: No such file or directory");
  EXPECT_EQ(by_seq[4].result, "spawn failed: Permission denied");
  EXPECT_EQ(r.stats().failed, 4u);
  EXPECT_EQ(r.stats().ok, 0u);
  EXPECT_TRUE(children().empty()) << children().front();
}

TEST_F(HookRunnerTest, HookThatNeverReadsItsInputDoesNotHangTheRunner) {
  HookRunner r(fast());
  const std::string big(1 << 20, 'e');  // far more than a pipe holds
  ASSERT_TRUE(r.submit(sh("exit 0"), big, {}, 1, "reload"));
  ASSERT_TRUE(r.submit(sh("wc -c"), big, {}, 2, "reload"));
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  std::map<uint64_t, HookRun> by_seq;
  for (auto& run : r.recent()) by_seq[run.seq] = run;
  EXPECT_EQ(by_seq[1].result, "ok");
  EXPECT_EQ(by_seq[2].result, "ok");
  EXPECT_EQ(by_seq[2].output, "1048576\n");
}

TEST_F(HookRunnerTest, FullQueueDropsAndCounts) {
  HookRunner::Options o = fast();
  o.max_concurrent = 1;
  o.queue = 2;
  HookRunner r(o);
  int accepted = 0;
  for (int i = 0; i < 10; ++i) accepted += r.submit(sh("sleep 0.2"), "", {}, static_cast<uint64_t>(i), "path_down");
  const HookStats st = r.stats();
  EXPECT_EQ(st.submitted + st.dropped, 10u);
  EXPECT_GE(st.dropped, 7u);  // one may already run, two wait
  EXPECT_EQ(static_cast<uint64_t>(accepted), st.submitted);
  ASSERT_TRUE(r.wait_idle(milliseconds(kWaitMs)));
  EXPECT_EQ(r.stats().ok, st.submitted);
  // Room again: accepted.
  EXPECT_TRUE(r.submit(sh("true"), "", {}, 11, "path_up"));
}

TEST_F(HookRunnerTest, EmitNeverWaitsForAStuckHook) {
  TempDir dir;
  EventsConfig cfg;
  cfg.log = dir / "events.jsonl";
  cfg.hooks["*"] = {sh("sleep 1000")};
  cfg.hook_timeout_ms = 60000;
  cfg.hook_max_concurrent = 1;
  cfg.hook_queue = 5;
  cfg.hook_kill_grace_ms = 200;
  const auto t0 = Clock::now();
  {
    EventBus bus(cfg, "edge");
    const auto e0 = Clock::now();
    for (int i = 0; i < 1000; ++i) bus.emit("path_down", {{"i", i}});
    EXPECT_LT(Clock::now() - e0, milliseconds(1000)) << "1000 emits with a hook stuck";
    const json st = bus.stats();
    EXPECT_GE(st["hooks_dropped"].get<int>(), 994);
    EXPECT_EQ(bus.events().size(), 1000u);
    // The log does not wait for hooks either.
    std::vector<std::string> lines;
    for (const auto until = Clock::now() + milliseconds(kWaitMs); Clock::now() < until;) {
      lines = lines_of(cfg.log);
      if (lines.size() == 1000) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_EQ(lines.size(), 1000u);
  }
  // Shutting down ends the stuck hook: SIGTERM, then SIGKILL within a second.
  EXPECT_LT(Clock::now() - t0, milliseconds(10000));
  EXPECT_TRUE(children().empty()) << children().front();
}

TEST_F(HookRunnerTest, CheckHooksNamesTheKeyAndWhy) {
  EventsConfig cfg;
  cfg.hooks["path_down"] = {{"/bin/sh"}, {"/nonexistent/alert"}};
  auto st = check_hooks(cfg);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().msg, "events.hooks.path_down[1]: /nonexistent/alert: No such file or directory");
  TempDir dir;
  const std::string plain = dir / "plain";
  std::ofstream(plain) << "#!/bin/sh\n";
  fs::permissions(plain, fs::perms(0644));
  cfg.hooks["path_down"] = {{plain}};
  st = check_hooks(cfg);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().msg, "events.hooks.path_down[0]: " + plain + ": not executable (Permission denied)");
  cfg.hooks["path_down"] = {{"/etc"}};
  EXPECT_EQ(check_hooks(cfg).error().msg, "events.hooks.path_down[0]: /etc: not a regular file");
  cfg.hooks["path_down"] = {{"/bin/sh", "-c", "true"}};
  EXPECT_TRUE(check_hooks(cfg).ok());
}

TEST(EventTypes, EveryDocumentedTypeIsKnown) {
  for (auto t : kEventTypes) EXPECT_TRUE(known_event_type(t)) << t;
  EXPECT_FALSE(known_event_type("*"));
  EXPECT_FALSE(known_event_type("path_flap"));
  // docs/events.md has a section per type.
  const std::string doc = slurp(SDWAN_SOURCE_ROOT "/docs/events.md");
  for (auto t : kEventTypes) EXPECT_NE(doc.find("### `" + std::string(t) + "`"), std::string::npos) << t;
}

}  // namespace
}  // namespace sdwan::cp
