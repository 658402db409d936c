#include "control/host/host_stack.hpp"

#include <algorithm>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <cstring>
#include <fstream>

#include "control/app/log.hpp"

extern char** environ;

namespace sdwan::cp {

namespace {

// Runs `ip ARGS...` (posix_spawn: the daemon has threads by now, fork would copy them all),
// its output collected. Ok when it exits 0.
Status ip(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"ip"};
  full.insert(full.end(), args.begin(), args.end());
  std::string line;
  for (const auto& a : full) line += (line.empty() ? "" : " ") + a;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return err(fmt::format("{}: pipe: {}", line, std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "ip", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  std::string out;
  if (rc == 0) {
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (rc != 0) return err(fmt::format("{}: cannot run ip (iproute2): {}", line, std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return err(fmt::format("{}: {}", line, out.empty() ? "failed" : out));
  return Ok{};
}

Status write_sysctl(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  if (!f || !(f << value << '\n') || !f.flush()) return err(fmt::format("{}: cannot write {}", path, value));
  return Ok{};
}

std::optional<MacAddr> parse_mac(const std::string& s) {
  unsigned b[6];
  char tail = 0;
  if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return std::nullopt;
  MacAddr m;
  for (size_t i = 0; i < 6; ++i) m.b[i] = static_cast<uint8_t>(b[i]);
  return m;
}

}  // namespace

Result<HostMacs> host_stack_up(const HostStackPlan& p) {
  std::ifstream f("/sys/class/net/" + p.iface + "/address");
  std::string mac_s;
  if (!(f >> mac_s)) return err(fmt::format("{}: no such interface (cannot read its MAC from /sys/class/net)", p.iface));
  const auto kernel = parse_mac(mac_s);
  if (!kernel) return err(fmt::format("{}: unreadable MAC {}", p.iface, mac_s));
  HostMacs macs{*kernel, *kernel};
  macs.gateway.b[0] = 0x02;  // locally administered, unicast
  macs.gateway.b[5] ^= 0x01;
  // No IPv6 on the tap: the dataplane forwards IPv4 only; router solicitations would be drops.
  (void)write_sysctl("/proc/sys/net/ipv6/conf/" + p.iface + "/disable_ipv6", "1");
  if (Status st = ip({"link", "set", "dev", p.iface, "mtu", std::to_string(p.mtu), "up"}); !st) return st.error();
  if (Status st = ip({"addr", "replace", p.addr.str() + "/32", "dev", p.iface}); !st) return st.error();
  if (Status st = ip({"neigh", "replace", kHostGateway.str(), "lladdr", macs.gateway.str(), "dev", p.iface, "nud",
                      "permanent"});
      !st)
    return st.error();
  for (const Prefix4& r : p.routes)
    if (Status st = ip({"route", "replace", r.str(), "via", kHostGateway.str(), "dev", p.iface, "onlink", "src",
                        p.addr.str()});
        !st)
      return st.error();
  return macs;
}

void host_stack_reroute(HostStackPlan& p, const std::vector<Prefix4>& routes) {
  const auto has = [](const std::vector<Prefix4>& v, const Prefix4& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  for (const Prefix4& r : p.routes)
    if (!has(routes, r))
      if (Status st = ip({"route", "del", r.str(), "via", kHostGateway.str(), "dev", p.iface}); !st)
        log_warn("host port: {}", st.error().msg);
  for (const Prefix4& r : routes)
    if (!has(p.routes, r))
      if (Status st = ip({"route", "replace", r.str(), "via", kHostGateway.str(), "dev", p.iface, "onlink", "src",
                          p.addr.str()});
          !st)
        log_warn("host port: {}", st.error().msg);
  p.routes = routes;
}

void host_stack_down(const HostStackPlan& p) {
  for (const Prefix4& r : p.routes)
    if (Status st = ip({"route", "del", r.str(), "via", kHostGateway.str(), "dev", p.iface}); !st)
      log_warn("host port: {}", st.error().msg);
  if (Status st = ip({"neigh", "del", kHostGateway.str(), "dev", p.iface}); !st) log_warn("host port: {}", st.error().msg);
  if (Status st = ip({"addr", "del", p.addr.str() + "/32", "dev", p.iface}); !st) log_warn("host port: {}", st.error().msg);
}

Status keep_kernel_off(const std::string& iface) {
  const std::string base = "/proc/sys/net/ipv4/conf/" + iface + "/";
  if (Status st = write_sysctl(base + "arp_ignore", "8"); !st) return st;
  return write_sysctl(base + "rp_filter", "1");
}

}  // namespace sdwan::cp
