// sdwand: the appliance daemon. `sdwand -c FILE` runs it in the foreground;
// `sdwand --check-config FILE` validates a config without starting anything.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "control/app/appliance.hpp"
#include "control/app/log.hpp"
#include "control/config/config.hpp"
#include "control/esp/epoch_store.hpp"
#include "control/esp/keys.hpp"
#include "control/events/event_bus.hpp"
#include "dataplane/api/ablation.hpp"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};

void on_signal(int sig) {
  g_signal.store(sig, std::memory_order_relaxed);
  g_stop.store(true, std::memory_order_relaxed);
}

std::atomic<bool> g_reload{false};

void on_hup(int) { g_reload.store(true, std::memory_order_relaxed); }

}  // namespace

int main(int argc, char** argv) {
  using namespace sdwan::cp;
  CLI::App app{"sdwand: SD-WAN path selector appliance (edge or hub)", "sdwand"};
  std::string config_file, check_file, log_level;
  app.add_option("-c,--config", config_file, "configuration file (YAML) to run with")->check(CLI::ExistingFile);
  app.add_option("--check-config", check_file, "validate this configuration file and exit");
  app.add_option("--log-level", log_level, "error, warning, info or debug (overrides the config)")
      ->check(CLI::IsMember({"error", "warning", "info", "debug"}));
  app.set_version_flag("--version", std::string("sdwand ") + version());
  CLI11_PARSE(app, argc, argv);
  if constexpr (sdwan::dp::kAblationBuild) {
    std::fprintf(stderr, "sdwand: this is a bench_ablation build (meson -Dbench_ablation=true), which can send "
                         "plaintext; it never carries traffic. Build without that option.\n");
    return 1;
  }

  if (!check_file.empty()) {
    auto cfg = load_config(check_file);
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.error().msg.c_str());
      return 1;
    }
    // The keys as the daemon will load them (permissions, format), and the epoch store; only
    // the loaders' messages are printed, never a key byte.
    std::vector<std::string> key_files;
    bool keys_ok = true;
    for (const auto& p : cfg->peers) {
      if (std::find(key_files.begin(), key_files.end(), p.key_file) != key_files.end()) continue;
      key_files.push_back(p.key_file);
      if (auto k = load_master_key(p.key_file); !k) {
        std::fprintf(stderr, "%s: peer %s: %s\n", check_file.c_str(), p.name.c_str(), k.error().msg.c_str());
        keys_ok = false;
      }
    }
    if (auto es = EpochStore::open(cfg->esp.epoch_store); !es) {
      std::fprintf(stderr, "%s: esp.epoch_store: %s\n", check_file.c_str(), es.error().msg.c_str());
      keys_ok = false;
    }
    if (auto h = check_hooks(cfg->events); !h) {
      std::fprintf(stderr, "%s: %s\n", check_file.c_str(), h.error().msg.c_str());
      keys_ok = false;
    }
    if (!keys_ok) return 1;
    size_t paths = 0;
    for (const auto& p : cfg->peers)
      for (const auto& e : p.endpoints) paths += e.uplinks.empty() ? cfg->uplinks.size() : e.uplinks.size();
    std::printf("%s: OK (%s %s: %zu uplink(s), %zu peer(s), %zu path(s), %zu key file(s))\n", check_file.c_str(),
                std::string(role_name(cfg->role)).c_str(), cfg->name.c_str(), cfg->uplinks.size(), cfg->peers.size(),
                paths, key_files.size());
    return 0;
  }
  if (config_file.empty()) {
    std::fprintf(stderr, "sdwand: give a configuration file with -c FILE (or --check-config FILE)\n");
    return 2;
  }
  auto cfg = load_config(config_file);
  if (!cfg) {
    std::fprintf(stderr, "sdwand: %s\n", cfg.error().msg.c_str());
    return 1;
  }
  log_setup(log_level_from(log_level.empty() ? cfg->log_level : log_level), cfg->name);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto appliance = Appliance::start(*cfg);
  if (!appliance) {
    log_error("{}", appliance.error().msg);
    return 1;
  }
  log_info("ready: sdwanctl --socket {} show paths", cfg->mgmt.socket);
  const int rc = (*appliance)->run(g_stop, &g_reload);
  appliance->reset();
  log_info("stopped (signal {})", g_signal.load());
  return rc;
}
