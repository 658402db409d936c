#include "control/app/appliance.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <tuple>
#include <set>
#include <filesystem>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

#include "control/app/log.hpp"
#include "control/app/service.hpp"
#include "control/apps/checker.hpp"
#include "control/drill/drill.hpp"
#include "control/config/reload.hpp"
#include "control/esp/derive.hpp"
#include "control/esp/epoch_store.hpp"
#include "control/esp/keylog.hpp"
#include "control/esp/keys.hpp"
#include "control/esp/sa_table.hpp"
#include "control/events/event_bus.hpp"
#include "control/host/host_stack.hpp"
#include "control/measure/measure.hpp"
#include "control/metrics/exchange.hpp"
#include "control/metrics/host.hpp"
#include "control/metrics/server.hpp"
#include "control/metrics/telemetry.hpp"
#include "control/mgmt/server.hpp"
#include "control/neighbor/neighbor.hpp"
#include "control/policy/compiler.hpp"
#include "control/policy/rates.hpp"
#include "control/publish/topology.hpp"
#include "dataplane/api/arp.hpp"
#include "dataplane/api/esp.hpp"
#include "dataplane/api/worker.hpp"
#include "drivers/api/placement.hpp"
#include "drivers/api/ports.hpp"

namespace sdwan::cp {

const char* version() { return "0.1.0"; }

namespace {

using json = nlohmann::json;
constexpr unsigned kRingSize = 1024;
constexpr unsigned kControlDrain = 64;
constexpr uint64_t kTickMs = 100;
constexpr uint64_t kLinkPollMs = 500;
// Probe reports: at 4,000 paths every 10 ms one worker could get 400 per ms; the control loop
// drains every ms, so 4096 leaves room for a slow iteration (a big `show` answer).
constexpr unsigned kProbeRingSize = 4096;
constexpr unsigned kProbeDrain = 64;
constexpr unsigned kProbeDrainMax = kProbeRingSize;  // per worker per loop: never starve the rest
// The workers' path counters feed the missed-probe and early-down checks, and the state
// machines' timers run with them: every fifth of the probe interval (20 ms at the default
// 100 ms, at most 1 ms apart), so the detection time (interval x multiplier + slack, slack at
// most interval / 2) stays under interval x (multiplier + 1) even with that lag.
constexpr uint64_t kCountersMinNs = 1'000'000, kCountersMaxNs = 20'000'000;
constexpr size_t kEventCapacity = 1000;
constexpr uint64_t kNsPerMs = 1'000'000;
// show flows: records each worker may dump (its buffer is kept for the next request), how
// long the control thread waits for every worker to finish, and the most flows one answer
// carries (a full table would be megabytes on the socket; the answer says it was cut).
constexpr uint32_t kFlowDumpPerWorker = 65536;
constexpr uint64_t kFlowDumpTimeoutNs = 1500 * kNsPerMs;
constexpr size_t kFlowAnswerMax = 10000;

uint64_t mono_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

uint64_t mono_ms() { return mono_ns() / kNsPerMs; }

// RFC 3339 UTC with milliseconds of a steady-clock time: the wall clock now minus how long ago
// it was (the steady clock has no calendar; a wall-clock step later does not move past events).
std::string rfc3339(uint64_t at_ns, uint64_t now_ns) {
  using namespace std::chrono;
  const auto ago = nanoseconds(now_ns >= at_ns ? now_ns - at_ns : 0);
  const auto wall = time_point_cast<milliseconds>(system_clock::now() - ago);
  const auto ms = wall.time_since_epoch().count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
}

// Metrics as JSON: null when unknown, else rounded to a microsecond (ms) or 0.001 % so that
// the answers stay short.
json metric(const std::optional<double>& v) {
  if (!v) return nullptr;
  return std::round(*v * 1000.0) / 1000.0;
}

// ms / percent -> the snapshot's us / ppm, saturating; unknown stays kNoMetric.
uint32_t scaled_metric(const std::optional<double>& v, double factor) {
  if (!v || !std::isfinite(*v)) return dp::PathInfo::kNoMetric;
  const double x = std::round(*v * factor);
  if (x <= 0) return 0;
  return x >= static_cast<double>(dp::PathInfo::kNoMetric - 1) ? dp::PathInfo::kNoMetric - 1 : static_cast<uint32_t>(x);
}

std::string rte_err() { return rte_strerror(rte_errno); }

// Hugepages the kernel has free, in MiB, over every page size.
uint64_t free_hugepage_mib() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t free_pages = 0, size_kb = 0;
  while (f >> key) {
    if (key == "HugePages_Free:") f >> free_pages;
    if (key == "Hugepagesize:") f >> size_kb;
  }
  return free_pages * size_kb / 1024;
}

int worker_main(void* arg);

// Creates the directory that holds path (and its missing parents) with mode 0700: the epoch
// store says which epochs were used, nobody else needs to read or change it.
Status make_parent_dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Ok{};
  const std::string dir = path.substr(0, slash);
  for (size_t at = 1; at != std::string::npos;) {
    at = dir.find('/', at + 1);
    const std::string part = dir.substr(0, at);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      return err(fmt::format("{}: cannot create the directory: {}", part, std::strerror(errno)));
  }
  return Ok{};
}

const char* dir_name(bool out) { return out ? "out" : "in"; }

// The wall-clock time of a steady-clock instant at_ns, seen from now_ns (see rfc3339).
std::chrono::system_clock::time_point wall_at(uint64_t at_ns, uint64_t now_ns) {
  return std::chrono::system_clock::now() - std::chrono::nanoseconds(now_ns >= at_ns ? now_ns - at_ns : 0);
}

// path_up / path_down / path_damped: named after the state the path entered.
std::string_view path_event_type(PathStatus to) {
  switch (to) {
    case PathStatus::kUp: return "path_up";
    case PathStatus::kDamped: return "path_damped";
    case PathStatus::kDown: return "path_down";
  }
  return "path_down";
}

const char* sa_state_name(SaRow::State s) {
  switch (s) {
    case SaRow::State::kActive: return "active";
    case SaRow::State::kStandby: return "standby";
    case SaRow::State::kDraining: return "draining";
  }
  return "standby";
}

struct WorkerSlot {
  std::unique_ptr<dp::Worker> worker;
  dp::WorkerChannels ch;
  unsigned lcore = 0;
  const std::atomic<bool>* stop = nullptr;
};

}  // namespace

struct Appliance::Impl {
  Config cfg;
  Topology topo;
  drv::CorePlan plan;
  std::vector<drv::OpenedPort> ports;
  std::vector<PortLive> live;
  rte_mempool* pool = nullptr;
  std::unique_ptr<dp::Rcu> rcu;
  std::unique_ptr<dp::Published<dp::Snapshot>> published;
  std::shared_ptr<const dp::RouteTable> routes;
  std::unique_ptr<NeighborManager> neighbors;
  std::vector<WorkerSlot> workers;
  std::unique_ptr<dp::HandoffRings> handoff;  // worker -> worker rings (none with one worker)
  std::atomic<bool> workers_stop{false};
  std::unique_ptr<MgmtServer> mgmt;
  bool eal_up = false;
  bool workers_launched = false;
  uint64_t generation = 0;
  uint64_t started_ms = mono_ms();
  uint64_t control_tx_dropped = 0;
  uint64_t arp_replies = 0, arp_requests = 0;

  // ESP (docs/keys.md): the master keys, the SA table that decides, and the SA runtimes the
  // snapshots point to. Control thread only.
  std::vector<MasterKey> master_keys;                         // one per distinct key file
  std::vector<size_t> peer_key;                               // peer index -> master_keys index
  std::optional<SaTable> sa_table;
  std::optional<EpochStore> epochs;
  std::optional<KeyLog> keylog;
  std::map<uint32_t, std::shared_ptr<dp::InboundSa>> in_sas;  // by SPI
  std::vector<std::shared_ptr<dp::OutboundSa>> out_sas;       // by path id; null: none
  std::vector<std::optional<SaAction>> out_pending;           // by path id: installs whose epoch is not on disk yet
  std::shared_ptr<const dp::InboundTable> inbound;
  std::map<uint32_t, uint32_t> in_epoch;                      // SPI -> epoch, for in_sas
  std::vector<std::shared_ptr<dp::InboundSa>> in_list;        // in_sas' SAs, for every snapshot
  // By path id: its inbound SAs, newest epoch first, to find the one the peer sends on.
  std::vector<std::vector<std::pair<uint32_t, std::shared_ptr<dp::InboundSa>>>> in_by_path;

  // Path measurement (control/measure, issue #5). Control thread only.
  PathMonitor monitor{kEventCapacity};
  std::vector<uint8_t> usable;                            // by path id: what on_link_path last said
  std::vector<std::shared_ptr<dp::InboundSa>> rev_sa;     // by path id: the inbound SA the peer sends on now
  std::vector<PathMeasured> measured;                     // by path id: what the next snapshot carries
  uint64_t probe_reports = 0;
  uint64_t publish_ns_last = 0, publish_ns_max = 0, metric_ns_last = 0, metric_ns_max = 0;

  // Traffic classes (control/policy, issue 6). Control thread only.
  std::optional<PolicyCompiler> compiler;
  std::vector<PathInput> policy_in;                       // one per topology path, refilled per compile
  std::vector<uint16_t> primary_seen;                     // [cls * n_peers + peer]: the last primary logged
  std::vector<std::vector<dp::FlowRecord>> flow_bufs;     // by worker: show flows' dump buffers
  ClassRateMeter class_rates;                             // each class's rate, for duplicate's overhead cap
  std::vector<uint64_t> class_bytes_now;                  // by class: its bytes over every worker, per compile

  ServiceNotifier service;                                // systemd: readiness, watchdog, status

  // Failover drills (control/drill, issue 7). Control thread only.
  std::optional<DrillManager> drills;
  std::string drill_log;                                  // JSON lines of finished reports
  using FlowTuple = std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>;
  std::set<FlowTuple> drill_flows;                        // flows on the drilled paths at its start
  std::vector<uint8_t> obs_up, obs_sla;                   // the drill's observation buffers
  std::vector<dp::ClassPaths> obs_paths;
  std::vector<uint64_t> obs_pkts, obs_lost, obs_rx;
  void drill_setup();
  DrillObservation drill_observe(uint64_t now_ns);
  void drill_tick(uint64_t now_ns);
  void drill_finish_flows();
  void drill_record();
  Result<json> drill(const json& req);
  Result<json> reload(const char* how);
  Status apply_peers(const std::vector<PeerConfig>& merged, uint64_t now_ns);
  SaPathSpec sa_spec(const Config& c, const Topology& t, const TopoPath& tp) const;
  PathSpec monitor_spec(const Config& c, const TopoPath& tp) const;
  std::vector<DrillClass> drill_classes() const;
  struct WorkerFlow {
    dp::FlowRecord f;
    uint16_t worker = 0;
  };
  Result<std::vector<WorkerFlow>> collect_flows();
  std::string service_status_last;
  std::string service_status() const;
  // Events and hooks (control/events, issue 7): made once EAL has pinned this thread to the
  // control lcore, so the hook runner and the hooks it starts inherit that core, never a
  // worker's. What each (class, peer) looked like at the last compile, for its events.
  std::unique_ptr<EventBus> event_bus;
  struct ClassSeen {
    bool known = false, sla_known = false, sla_met = false;
    std::vector<uint16_t> paths;  // the chosen ones, sorted
  };
  std::vector<ClassSeen> class_seen;  // [cls * n_peers + peer]
  void class_events();
  json path_names(const std::vector<uint16_t>& ids) const;
  // Metrics (control/metrics, issue 7): the HTTP and DPDK telemetry threads ask through the
  // exchange and this thread collects; the meters run once a second. Control thread only,
  // except the exchange.
  std::shared_ptr<MetricsExchange> metrics_ex = std::make_shared<MetricsExchange>();
  std::unique_ptr<MetricsHttp> metrics_http;
  RateMeter flow_rate;
  std::vector<RateMeter> busy_rate;                       // by worker: busy TSC cycles per second
  CpuMeter cpu_meter;
  std::vector<uint64_t> path_failures;                    // by path id: up -> down or damped
  uint64_t path_events_seen = 0;                          // monitor.events().total() last counted

  // The host port's kernel side (control/host) and the application checks (control/apps):
  // the checks run from the host stack, so through the host port and the overlay.
  std::optional<HostStackPlan> host_plan;                 // set once the kernel side is configured
  std::unique_ptr<AppChecker> apps;
  Status host_stack_start();
  json show_apps();

  Status bring_up();
  Status esp_prepare();
  Status esp_start(uint64_t now);
  bool esp_tick(uint64_t now);
  bool apply_sa_actions(const std::vector<SaAction>& acts);
  void install_outbound(const SaAction& a);
  template <class Sa, class Make>
  std::shared_ptr<Sa> make_sa(const SaAction& a, const char* dir, Make&& make);
  void rebuild_inbound();
  std::string down_reason(const TopoPath& tp) const;
  bool path_usable(const TopoPath& tp) const;
  Status measure_start(uint64_t now_ns);
  void drain_probes(uint64_t now_ns);
  void feed_counters(uint64_t now_ns);
  void refresh_usable(uint64_t now_ns);
  void refresh_rev_sa();
  bool measure_tick(uint64_t now_ns);
  void refresh_metrics(uint64_t now_ns);
  void compile_policy(uint64_t now_ns);
  void publish();
  void send_frame(uint8_t port, const uint8_t* frame, uint32_t len);
  void handle_exceptions(uint64_t now);
  void tick(uint64_t now);
  Result<json> handle(const json& req);
  json show_ports();
  json show_uplinks();
  json show_peers();
  json show_paths();
  json show_stats();
  json show_neighbors();
  json show_sas();
  std::optional<dp::EspSaStats> sa_stats(const SaRow& r) const;
  Result<json> show_events(const json& req);
  Result<json> show_classes();
  Result<json> show_flows(const json& req);
  Result<json> explain(const json& req);
  json show_drills();
  Result<uint8_t> find_class(const std::string& name) const;
  void count_path_failures();
  void metrics_second(uint64_t now_ns);
  MetricsData collect_metrics(uint64_t now_ns);
  void serve_metrics(uint64_t now_ns);
  void shutdown();
};

namespace {

int worker_main(void* arg) {
  auto* slot = static_cast<WorkerSlot*>(arg);
  return slot->worker->run(*slot->stop);
}

}  // namespace

Status Appliance::Impl::bring_up() {
  topo = make_topology(cfg);
  topo.probe_interval_ms = cfg.paths.probe_interval_ms;
  if (Status st = measure_start(mono_ns()); !st) return st;
  {
    std::vector<std::string> peer_names, path_names(topo.paths.size());
    for (const auto& p : cfg.peers) peer_names.push_back(p.name);
    for (const auto& tp : topo.paths) path_names[tp.id] = tp.name;
    compiler.emplace(cfg.classes, cfg.policy, std::move(peer_names), std::move(path_names));
    primary_seen.assign(cfg.classes.size() * cfg.peers.size(), dp::kNoPathId);
  }
  drill_setup();

  // The socket first: a second daemon on the same socket must fail before it touches EAL.
  auto m = MgmtServer::listen(cfg.mgmt.socket, cfg.mgmt.group, [this](const json& r) { return handle(r); });
  if (!m) return m.error();
  mgmt = std::move(*m);
  // The metrics port too: "address in use" is a start-up error, before EAL.
  if (cfg.metrics.on()) {
    auto h = MetricsHttp::start(cfg.metrics.address, cfg.metrics.port, metrics_ex);
    if (!h) return h.error();
    metrics_http = std::move(*h);
    log_info("metrics: {}", metrics_http->url());
  }

  if (Status st = esp_prepare(); !st) return st;

  std::vector<drv::PortRequest> reqs;
  std::vector<int> numa;
  for (size_t i = 0; i < topo.ports.size(); ++i) {
    auto spec = drv::PortSpec::parse(topo.ports[i].spec);
    if (!spec) return err(topo.ports[i].name + ": " + spec.error().msg);
    if (Status st = drv::preflight(*spec); !st) return err("port " + topo.ports[i].name + " (" + spec->str() + "): " + st.error().msg);
    numa.push_back(drv::numa_node(*spec));
    reqs.push_back({topo.ports[i].name, *spec, 1, 1, topo.ports[i].mtu, static_cast<uint16_t>(i)});
  }
  auto p = drv::plan_cores(cfg.lcores.control, cfg.lcores.workers, cfg.lcores.worker_count, numa);
  if (!p) return p.error();
  plan = *p;
  log_info("core plan: {}", plan.description);
  const auto nw = static_cast<uint16_t>(plan.workers.size());
  for (auto& r : reqs) r.rx_queues = r.tx_queues = nw;

  if (Status st = check_hooks(cfg.events); !st) return st;
  if (cfg.dpdk.hugepages && free_hugepage_mib() == 0)
    return err("no free hugepages: reserve some (scripts/setup does, HUGEPAGES=N) or set dpdk.hugepages: false");

  std::vector<std::string> args = {"sdwand"};
  std::string lcores = std::to_string(plan.control);
  for (unsigned w : plan.workers) lcores += "," + std::to_string(w);
  args.insert(args.end(), {"-l", lcores, "--main-lcore", std::to_string(plan.control), "--file-prefix",
                           cfg.dpdk.file_prefix.empty() ? cfg.name : cfg.dpdk.file_prefix});
  if (!cfg.dpdk.hugepages) args.push_back("--no-huge");
  if (cfg.dpdk.memory_mb) args.insert(args.end(), {"-m", std::to_string(cfg.dpdk.memory_mb)});
  args.push_back(cfg.log_level == "debug" ? "--log-level=info" : "--log-level=warning");
  for (auto& a : drv::eal_args(reqs)) args.push_back(a);
  for (auto& a : cfg.dpdk.extra_args) args.push_back(a);
  std::string joined;
  for (auto& a : args) joined += a + " ";
  log_info("EAL arguments: {}", joined);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0)
    return err("EAL initialisation failed: " + rte_err() +
               " (another process with file prefix '" + (cfg.dpdk.file_prefix.empty() ? cfg.name : cfg.dpdk.file_prefix) +
               "'? not enough memory?)");
  eal_up = true;
  event_bus = std::make_unique<EventBus>(cfg.events, cfg.name);
  if (Status st = telemetry_attach(metrics_ex); st)
    log_info("DPDK telemetry: /sdwan/paths, /sdwan/classes, /sdwan/stats (dpdk-telemetry.py -f {})",
             cfg.dpdk.file_prefix.empty() ? cfg.name : cfg.dpdk.file_prefix);
  else
    log_warn("{}", st.error().msg);

  // One pool for every port: RX rings, TX rings in flight, per-lcore caches and slack for
  // packets parked in the exception rings.
  // The hand-off rings between workers (duplicate and spray, docs/policy.md) hold packets too.
  const unsigned n_mbufs = static_cast<unsigned>(reqs.size()) * nw * 4096 + nw * 2048 + 8192 +
                           (nw > 1 ? nw * (nw - 1u) * dp::HandoffRings::kRingSize : 0u);
  unsigned pool_size = 1;
  while (pool_size - 1 < n_mbufs) pool_size <<= 1;
  const int socket = static_cast<int>(rte_socket_id()) == SOCKET_ID_ANY ? 0 : static_cast<int>(rte_socket_id());
  uint32_t room = RTE_MBUF_DEFAULT_BUF_SIZE;
  for (const auto& r : reqs) room = std::max(room, drv::rx_data_room(r));
  pool = rte_pktmbuf_pool_create("sdwan_mbufs", pool_size - 1, 256, 0, static_cast<uint16_t>(room), socket);
  if (pool == nullptr) return err("cannot create the packet pool of " + std::to_string(pool_size - 1) + " mbufs: " + rte_err());

  for (auto& r : reqs) {
    auto op = drv::open_port(r, pool);
    if (!op) return op.error();
    const auto ls = drv::link_state(op->port_id);
    log_info("port {} ({}): ethdev {} driver {} mac {} link {}{}", r.name, r.spec.str(), op->port_id, op->driver,
             op->mac.str(), ls.up ? "up" : "down", op->rss ? ", RSS" : "");
    live.push_back({op->port_id, op->mac, ls.up});
    ports.push_back(std::move(*op));
  }
  if (Status st = host_stack_start(); !st) return st;

  std::vector<NeighborPort> nps;
  for (size_t i = 0; i < topo.ports.size(); ++i) nps.push_back({static_cast<uint8_t>(i), live[i].mac, topo.ports[i].addr});
  neighbors = std::make_unique<NeighborManager>(std::move(nps));
  const uint64_t now = mono_ms();
  for (const auto& tp : topo.paths) neighbors->want(tp.port, tp.l2_target, true, now);
  // Every uplink's next hop too, even when all its endpoints are on-link: show uplinks
  // reports it, and an operator reads an unresolved gateway as a broken uplink.
  for (size_t i = 1; i <= cfg.uplinks.size(); ++i)
    neighbors->want(static_cast<uint8_t>(i), cfg.uplinks[static_cast<size_t>(topo.ports[i].uplink)].next_hop, true, now);

  auto rt = build_routes(cfg, socket);
  if (!rt) return rt.error();
  routes = *rt;

  if (Status st = esp_start(mono_ms()); !st) return st;

  rcu = std::make_unique<dp::Rcu>(nw);
  published = std::make_unique<dp::Published<dp::Snapshot>>(rcu->get());
  refresh_usable(mono_ns());  // nothing resolved yet: every path starts unusable
  publish();

  // Duplicate and spray packets meet at the worker that owns their stream (docs/policy.md).
  if (nw > 1 && (handoff = dp::HandoffRings::create(nw, socket)) == nullptr)
    return err("cannot create the rings between the " + std::to_string(nw) + " workers: " + rte_err());
  workers.resize(nw);
  for (uint16_t w = 0; w < nw; ++w) {
    auto& slot = workers[w];
    const std::string sfx = std::to_string(w);
    slot.ch.to_control_pkts = rte_ring_create(("sdwan_exc" + sfx).c_str(), kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    slot.ch.to_control_resolve =
        rte_ring_create_elem(("sdwan_res" + sfx).c_str(), sizeof(dp::ResolveRequest), kRingSize, socket,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    slot.ch.from_control_tx = rte_ring_create(("sdwan_ctx" + sfx).c_str(), kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    slot.ch.to_control_probes = rte_ring_create_elem(("sdwan_prb" + sfx).c_str(), sizeof(dp::ProbeReport),
                                                     kProbeRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!slot.ch.to_control_pkts || !slot.ch.to_control_resolve || !slot.ch.from_control_tx || !slot.ch.to_control_probes)
      return err("cannot create the rings of worker " + sfx + ": " + rte_err());
    if (handoff) handoff->attach(w, slot.ch);
    dp::WorkerConfig wc;
    wc.index = w;
    wc.count = nw;
    wc.pool = pool;
    for (size_t i = 0; i < ports.size(); ++i) wc.rx.push_back({static_cast<uint8_t>(i), w});
    wc.idle = cfg.idle;
    wc.snapshot = published.get();
    wc.qsbr = rcu->get();
    wc.channels = slot.ch;
    wc.flow_capacity = cfg.flow_capacity;
    slot.worker = std::make_unique<dp::Worker>(wc);
    slot.lcore = plan.workers[w];
    slot.stop = &workers_stop;
  }
  for (auto& slot : workers)
    if (rte_eal_remote_launch(worker_main, &slot, slot.lcore) != 0)
      return err("cannot launch a worker on lcore " + std::to_string(slot.lcore));
  workers_launched = true;
  if (!cfg.apps.empty()) apps = std::make_unique<AppChecker>(cfg.apps, event_bus.get());
  log_info("{} {} up: {} uplink(s), {} peer(s), {} path(s), {} worker(s), idle {}, probes every {} ms", role_name(cfg.role),
           cfg.name, cfg.uplinks.size(), cfg.peers.size(), topo.paths.size(), nw,
           cfg.idle == dp::IdlePolicy::kBusy ? "busy" : "adaptive", topo.probe_interval_ms);
  return Ok{};
}

// The host port's kernel side: the LAN address, routes to the LAN and every peer prefix through
// the tap (docs/host.md); the kernel's other ports (af_packet, af_xdp) kept from answering for it.
Status Appliance::Impl::host_stack_start() {
  if (!cfg.host.on()) return Ok{};
  const size_t h = topo.ports.size() - 1;  // make_topology puts it last
  for (size_t i = 0; i < h; ++i) {
    auto spec = drv::PortSpec::parse(topo.ports[i].spec);
    if (spec && (spec->kind == drv::PortKind::kAfPacket || spec->kind == drv::PortKind::kAfXdp))
      if (Status st = keep_kernel_off(spec->arg); !st) log_warn("host port: {}", st.error().msg);
  }
  HostStackPlan hp;
  hp.iface = cfg.host.iface();
  hp.addr = cfg.lan.address.addr;
  hp.mtu = cfg.lan.mtu;
  const uint32_t mask = ~uint32_t{0} << (32 - cfg.lan.address.len);
  hp.routes.push_back(Prefix4{Ipv4{cfg.lan.address.addr.v & mask}, cfg.lan.address.len});
  for (const auto& p : cfg.peers) hp.routes.insert(hp.routes.end(), p.prefixes.begin(), p.prefixes.end());
  auto macs = host_stack_up(hp);
  if (!macs) return err("host port " + cfg.host.port + ": " + macs.error().msg);
  live[h].host_mac = macs->kernel;
  live[h].mac = macs->gateway;  // the dataplane's side of the tap, as the kernel sees it
  host_plan = std::move(hp);
  log_info("host port {}: {}/32 on {} (mac {}), {} route(s) via {} (dataplane mac {})", cfg.host.port,
           cfg.lan.address.addr.str(), cfg.host.iface(), macs->kernel.str(), host_plan->routes.size(),
           kHostGateway.str(), macs->gateway.str());
  return Ok{};
}

json Appliance::Impl::show_apps() {
  json out = json::array();
  if (!apps) return out;
  for (const AppStatus& a : apps->status()) {
    const auto opt = [](const std::optional<double>& v) { return v ? json(std::round(*v * 1000.0) / 1000.0) : json(nullptr); };
    out.push_back({{"name", a.name},
                   {"type", a.type},
                   {"target", a.target},
                   {"state", a.state},
                   {"interval_ms", a.interval_ms},
                   {"timeout_ms", a.timeout_ms},
                   {"latency_ms", opt(a.latency_ms)},
                   {"last_ms", opt(a.last_ms)},
                   {"success_pct", opt(a.success_pct)},
                   {"window", a.window_checks},
                   {"checks", a.checks},
                   {"ok", a.ok},
                   {"failed", a.failed},
                   {"consecutive_failures", a.consecutive_failures},
                   {"last_error", a.last_error.empty() ? json(nullptr) : json(a.last_error)},
                   {"http_status", a.http_status ? json(*a.http_status) : json(nullptr)},
                   {"age_s", opt(a.age_s)}});
  }
  return out;
}

Status Appliance::Impl::esp_prepare() {
  auto arch = dp::esp_crypto_arch();
  if (!arch) return err("crypto: " + arch.error().msg);
  log_info("crypto: intel-ipsec-mb AES-256-GCM, arch {}", *arch);

  std::vector<std::string> files;
  for (const auto& p : cfg.peers) {
    auto it = std::find(files.begin(), files.end(), p.key_file);
    if (it == files.end()) {
      auto k = load_master_key(p.key_file);
      if (!k) return err(fmt::format("peer {}: {}", p.name, k.error().msg));
      master_keys.push_back(std::move(*k));
      files.push_back(p.key_file);
      it = files.end() - 1;
    }
    peer_key.push_back(static_cast<size_t>(it - files.begin()));
  }
  log_info("{} master key file(s) loaded for {} peer(s)", files.size(), cfg.peers.size());

  if (Status st = make_parent_dir(cfg.esp.epoch_store); !st) return err("epoch store: " + st.error().msg);
  auto es = EpochStore::open(cfg.esp.epoch_store);
  if (!es) return err("epoch store: " + es.error().msg);
  epochs.emplace(std::move(*es));
  if (!cfg.esp.keylog.empty()) {
    auto kl = KeyLog::open(cfg.esp.keylog);
    if (!kl) return kl.error();
    keylog.emplace(std::move(*kl));
    log_warn("ESP key log {} is on: every SA key is written there (debugging only)", cfg.esp.keylog);
  }
  auto t = SaTable::create(cfg.esp.lifetime);
  if (!t) return t.error();
  sa_table.emplace(std::move(*t));
  return Ok{};
}

Status Appliance::Impl::esp_start(uint64_t now) {
  out_sas.assign(topo.paths.size(), nullptr);
  out_pending.assign(topo.paths.size(), std::nullopt);
  std::vector<SaAction> all;
  for (const auto& tp : topo.paths) {
    if (tp.removed) continue;
    SaPathSpec spec = sa_spec(cfg, topo, tp);
    auto e = epochs->next_epoch(spec.local, spec.remote);
    if (!e) return err(fmt::format("path {}: {}", tp.name, e.error().msg));
    spec.start_epoch = *e;
    auto acts = sa_table->add_path(spec, now);
    if (!acts) return err(fmt::format("path {}: {}", tp.name, acts.error().msg));
    log_info("path {}: link {}, starting at epoch {}", tp.name, spec.link, spec.start_epoch);
    all.insert(all.end(), acts->begin(), acts->end());
  }
  apply_sa_actions(all);
  return Ok{};
}

SaPathSpec Appliance::Impl::sa_spec(const Config& c, const Topology& t, const TopoPath& tp) const {
  SaPathSpec spec;
  spec.path = tp.id;
  spec.link = path_link(c, static_cast<size_t>(t.ports[tp.port].uplink), tp.peer, tp.endpoint);
  spec.local = Endpoint{t.ports[tp.port].addr.addr, c.overlay_port};
  spec.remote = Endpoint{tp.remote, tp.remote_port};
  spec.esn = c.esp.esn;
  return spec;
}

PathSpec Appliance::Impl::monitor_spec(const Config& c, const TopoPath& tp) const {
  PathSpec spec;
  spec.id = tp.id;
  spec.name = tp.name;
  spec.port = tp.port;
  spec.state = c.paths.state;
  spec.window_ns = uint64_t{c.paths.window_s} * 1000 * kNsPerMs;
  return spec;
}

// Applies SaTable's actions in their order, then rebuilds the inbound table once. Returns
// true when any SA came or went (the caller publishes).
bool Appliance::Impl::apply_sa_actions(const std::vector<SaAction>& acts) {
  if (acts.empty()) return false;
  // The epoch must be on disk before any packet is sealed under it: after a crash, the next
  // start must not reuse it with sequence numbers from 1 again.
  bool committed = true;
  if (std::any_of(acts.begin(), acts.end(), [](const SaAction& a) { return a.kind == SaAction::Kind::kInstallOutbound; })) {
    if (Status st = epochs->commit(acts); !st) {
      log_error("epoch store: {}; outbound SAs are not installed (their paths stay unusable) until it can be written",
                st.error().msg);
      committed = false;
    }
  }
  bool in_changed = false;
  std::map<uint16_t, SaName> retired_out;  // path -> its outbound SA retired by this list: a rekey
  for (const SaAction& a : acts) {
    const TopoPath& tp = topo.paths[a.path];
    if (a.kind == SaAction::Kind::kInstallOutbound && event_bus)
      if (auto r = retired_out.find(a.path); r != retired_out.end())
        event_bus->emit("sa_rekey", {{"path", tp.name},
                                     {"direction", "out"},
                                     {"spi", fmt::format("0x{:08x}", a.sa.spi)},
                                     {"epoch", a.sa.epoch},
                                     {"previous_spi", fmt::format("0x{:08x}", r->second.spi)},
                                     {"previous_epoch", r->second.epoch},
                                     {"installed", committed}});
    switch (a.kind) {
      case SaAction::Kind::kInstallInbound: {
        auto sa = make_sa<dp::InboundSa>(a, "in", [](const dp::EspSaParams& p) { return dp::make_inbound_sa(p); });
        if (sa == nullptr) break;
        in_sas[a.sa.spi] = std::move(sa);
        in_epoch[a.sa.spi] = a.sa.epoch;
        in_changed = true;
        break;
      }
      case SaAction::Kind::kRetireInbound:
        if (in_sas.erase(a.sa.spi) != 0) in_changed = true;
        in_epoch.erase(a.sa.spi);
        log_info("SA retire path {} in spi 0x{:08x} epoch {}", tp.name, a.sa.spi, a.sa.epoch);
        break;
      case SaAction::Kind::kInstallOutbound:
        out_pending[a.path].reset();
        if (!committed) {
          out_pending[a.path] = a;
          break;
        }
        install_outbound(a);
        break;
      case SaAction::Kind::kRetireOutbound:
        retired_out[a.path] = a.sa;
        out_pending[a.path].reset();
        out_sas[a.path].reset();
        log_info("SA retire path {} out spi 0x{:08x} epoch {}", tp.name, a.sa.spi, a.sa.epoch);
        break;
    }
  }
  if (in_changed) {
    rebuild_inbound();
    refresh_rev_sa();
  }
  return true;
}

// Derives a's keys and makes its runtime with make(params); wipes every copy of the key and
// appends the SA to the key log. Null (logged) when derivation or memory fails.
template <class Sa, class Make>
std::shared_ptr<Sa> Appliance::Impl::make_sa(const SaAction& a, const char* dir, Make&& make) {
  const TopoPath& tp = topo.paths[a.path];
  auto keys = derive_sa(master_keys[peer_key[tp.peer]], a.sa);
  if (!keys) {
    log_error("path {}: {} SA 0x{:08x}: {}", tp.name, dir, a.sa.spi, keys.error().msg);
    return nullptr;
  }
  dp::EspSaParams p = esp_sa_params(a, *keys, cfg.esp.replay_window);
  std::shared_ptr<Sa> sa = make(p);
  OPENSSL_cleanse(p.key.data(), p.key.size());
  OPENSSL_cleanse(p.salt.data(), p.salt.size());
  if (sa == nullptr) {
    log_error("path {}: cannot make {} SA 0x{:08x} (out of memory?)", tp.name, dir, a.sa.spi);
    return nullptr;
  }
  if (keylog)
    if (Status st = keylog->append(a.sa, *keys); !st) log_warn("key log: {}", st.error().msg);
  log_info("SA install path {} {} spi 0x{:08x} epoch {}", tp.name, dir, a.sa.spi, a.sa.epoch);
  return sa;
}

void Appliance::Impl::install_outbound(const SaAction& a) {
  const TopoPath& tp = topo.paths[a.path];
  // The worker sends with the snapshot's outer headers (PathInfo::outer); these are what
  // they are now, for the SA's own record.
  const dp::EspPath path{live[tp.port].mac,
                         neighbors->lookup(tp.port, tp.l2_target).value_or(MacAddr{}),
                         topo.ports[tp.port].addr.addr,
                         tp.remote,
                         cfg.overlay_port,
                         tp.remote_port,
                         topo.ports[tp.port].mtu};
  auto sa = make_sa<dp::OutboundSa>(a, "out", [&](const dp::EspSaParams& p) { return dp::make_outbound_sa(p, path); });
  if (sa != nullptr) out_sas[a.path] = std::move(sa);
}

// A new table each time: workers may be reading the old one until the grace period passes.
void Appliance::Impl::rebuild_inbound() {
  // Kept here rather than built per snapshot: at 4,000 paths in_sas holds 16,000 SAs, and a
  // snapshot goes out every probe interval.
  in_list.clear();
  in_list.reserve(in_sas.size());
  in_by_path.assign(topo.paths.size(), {});
  for (const auto& [spi, sa] : in_sas) {
    in_list.push_back(sa);
    const uint16_t path = dp::esp_sa_stats(*sa).tag;
    if (path < in_by_path.size()) in_by_path[path].emplace_back(in_epoch.count(spi) ? in_epoch.at(spi) : 0, sa);
  }
  for (auto& v : in_by_path)
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (in_sas.empty()) {
    inbound.reset();
    return;
  }
  auto t = dp::make_inbound_table();
  if (t == nullptr) {
    log_error("cannot allocate a new inbound SA table; keeping the previous one");
    return;
  }
  for (const auto& [spi, sa] : in_sas)
    if (!dp::inbound_table_install(*t, sa.get()))
      log_error("bug: inbound SA 0x{:08x} found its table slot taken", spi);
  inbound = std::move(t);
}

bool Appliance::Impl::esp_tick(uint64_t now) {
  std::vector<SaUsage> usage;
  usage.reserve(out_sas.size() + in_sas.size());
  for (const auto& sa : out_sas) {
    if (sa == nullptr) continue;
    const auto st = dp::esp_sa_stats(*sa);
    usage.push_back({SaDir::kOutbound, st.spi, st.packets, st.bytes, st.seq});
  }
  // in_by_path holds every SA of in_sas. The same pass finds each path's newest inbound SA
  // that has carried a packet: the peer may have moved to a newer epoch (a rekey) with no SA
  // coming or going.
  for (size_t path = 0; path < in_by_path.size(); ++path) {
    std::shared_ptr<dp::InboundSa> newest_used;
    for (const auto& [epoch, sa] : in_by_path[path]) {
      const auto st = dp::esp_sa_stats(*sa);
      usage.push_back({SaDir::kInbound, st.spi, st.packets, st.bytes, st.seq});
      if (newest_used == nullptr && st.packets != 0) newest_used = sa;
    }
    rev_sa[path] = std::move(newest_used);
  }
  bool changed = apply_sa_actions(sa_table->tick(now, usage));
  // Outbound installs held back by a failed epoch commit: retry them every tick.
  std::vector<SaAction> pending;
  for (const auto& a : out_pending)
    if (a) pending.push_back(*a);
  if (!pending.empty() && epochs->commit(pending)) {
    for (const auto& a : pending) {
      out_pending[a.path].reset();
      install_outbound(a);
    }
    changed = true;
  }
  return changed;
}

// build_snapshot's test for PathInfo::usable, without the strings of down_reason.
bool Appliance::Impl::path_usable(const TopoPath& tp) const {
  return tp.port < live.size() && live[tp.port].link_up && tp.id < out_sas.size() && out_sas[tp.id] != nullptr &&
         neighbors->lookup(tp.port, tp.l2_target).has_value();
}

Status Appliance::Impl::measure_start(uint64_t now_ns) {
  usable.assign(topo.paths.size(), 1);  // a new state machine takes its link as up
  rev_sa.assign(topo.paths.size(), nullptr);
  measured.assign(topo.paths.size(), PathMeasured{false});
  for (const auto& tp : topo.paths)
    if (Status st = monitor.add_path(monitor_spec(cfg, tp), now_ns); !st) return st;
  return Ok{};
}

// Every report the workers queued since the last loop (bounded per worker and loop).
void Appliance::Impl::drain_probes(uint64_t now_ns) {
  for (auto& slot : workers) {
    dp::ProbeReport r[kProbeDrain];
    for (unsigned done = 0; done < kProbeDrainMax;) {
      const unsigned n = rte_ring_sc_dequeue_burst_elem(slot.ch.to_control_probes, r, sizeof(dp::ProbeReport),
                                                        kProbeDrain, nullptr);
      for (unsigned i = 0; i < n; ++i) {
        ProbeSample x;
        x.path = r[i].path;
        x.seq = r[i].seq;
        x.t1_ns = r[i].t1_ns;
        x.t2_ns = r[i].t2_ns;
        x.t3_ns = r[i].t3_ns;
        x.t4_ns = r[i].t4_ns;
        x.refl_probes_rx = r[i].refl_probes_rx;
        x.refl_data_rx = r[i].refl_esp_rx;
        x.refl_data_top = r[i].refl_esp_top;
        x.refl_spi = r[i].refl_spi;
        monitor.on_sample(x, now_ns);
      }
      probe_reports += n;
      done += n;
      if (n < kProbeDrain) break;
    }
  }
}

// The workers' per-path counters summed (tx_pkts and rx_pkts count data only; probes have
// their own counters) and our current inbound SA of each path.
void Appliance::Impl::feed_counters(uint64_t now_ns) {
  for (const auto& tp : topo.paths) {
    if (tp.removed) continue;
    uint64_t sent = 0, tx = 0, rx = 0;
    for (const auto& w : workers) {
      const auto& c = w.worker->path_counters()[tp.id];
      sent += c.probes_sent.load();
      tx += c.tx_pkts.load();
      rx += c.rx_pkts.load();
    }
    SaCounters rev;
    if (const auto& sa = rev_sa[tp.id]; sa != nullptr) {
      const auto st = dp::esp_sa_stats(*sa);
      rev = SaCounters{st.spi, st.packets, st.seq};
    }
    monitor.on_counters(tp.id, sent, tx, rx, rev, now_ns);
  }
}

// A path that cannot send (link down, next hop unresolved, no outbound SA) is down at once;
// one that can again starts probing (the monitor brings it up after hold_up good probes).
void Appliance::Impl::refresh_usable(uint64_t now_ns) {
  for (const auto& tp : topo.paths) {
    if (tp.removed) continue;
    const bool u = path_usable(tp);
    if (u == (usable[tp.id] != 0)) continue;
    usable[tp.id] = u;
    const std::string why = u ? std::string() : down_reason(tp);
    monitor.on_link_path(tp.id, u, now_ns, why);
    if (u)
      log_info("path {} usable: probing", tp.name);
    else
      log_info("path {} unusable: {}", tp.name, why);
  }
}

// Per path, the inbound SA of the newest epoch that the peer has sent under: its counters
// give the reverse data loss. Null until the peer's first packet.
void Appliance::Impl::refresh_rev_sa() {
  for (size_t path = 0; path < rev_sa.size(); ++path) {
    std::shared_ptr<dp::InboundSa> found;
    if (path < in_by_path.size())
      for (const auto& [epoch, sa] : in_by_path[path])
        // Reaching the current one means no newer SA has carried a packet yet.
        if (sa == rev_sa[path] || dp::esp_sa_stats(*sa).packets != 0) {
          found = sa;
          break;
        }
    rev_sa[path] = std::move(found);
  }
}

// Runs the path state machines; logs every change. True when a path changed state.
bool Appliance::Impl::measure_tick(uint64_t now_ns) {
  const auto events = monitor.tick(now_ns);
  for (const PathEvent& e : events) {
    const std::string& name = e.path < topo.paths.size() ? topo.paths[e.path].name : std::to_string(e.path);
    log_info("path {} {}: {}", name, path_status_name(e.to), e.reason);
    json d = {{"path", name}, {"from", path_status_name(e.from)}, {"to", path_status_name(e.to)}, {"reason", e.reason}};
    if (e.path < topo.paths.size()) {
      const TopoPath& tp = topo.paths[e.path];
      d["uplink"] = topo.ports[tp.port].name;
      d["peer"] = cfg.peers[tp.peer].name;
      d["endpoint"] = tp.remote.str() + ":" + std::to_string(tp.remote_port);
    }
    if (event_bus) event_bus->emit(path_event_type(e.to), std::move(d), wall_at(e.at_ns, now_ns));
  }
  for (const PathEvent& e : events)
    if (e.path < measured.size()) measured[e.path].up = monitor.state(e.path) == PathStatus::kUp;
  return !events.empty();
}

// The metrics the workers see (PathInfo::rtt_us...), refreshed once per probe interval.
void Appliance::Impl::refresh_metrics(uint64_t now_ns) {
  const uint64_t t0 = mono_ns();
  for (const auto& tp : topo.paths) {
    auto v = monitor.metrics(tp.id, now_ns);
    if (!v) continue;
    PathMeasured& m = measured[tp.id];
    m.up = v->state == PathStatus::kUp;
    m.rtt_us = scaled_metric(v->rtt_ms, 1e3);
    m.jitter_us = scaled_metric(v->jitter_ms, 1e3);
    m.loss_fwd_ppm = scaled_metric(v->loss_fwd_pct, 1e4);
    m.loss_rev_ppm = scaled_metric(v->loss_rev_pct, 1e4);
  }
  metric_ns_last = mono_ns() - t0;
  metric_ns_max = std::max(metric_ns_max, metric_ns_last);
}

std::string Appliance::Impl::down_reason(const TopoPath& tp) const {
  std::string why = path_down_reason(tp, live, *neighbors);
  if (why.empty() && (tp.id >= out_sas.size() || out_sas[tp.id] == nullptr)) why = "no SA";
  return why;
}

// Every path's state and metrics into the compiler; logs each class whose primary path moved.
void Appliance::Impl::compile_policy(uint64_t now_ns) {
  policy_in.clear();
  for (const auto& tp : topo.paths) {
    if (tp.removed) continue;
    PathInput in;
    in.id = tp.id;
    in.peer = tp.peer;
    const auto& u = cfg.uplinks[static_cast<size_t>(topo.ports[tp.port].uplink)];
    in.uplink = static_cast<uint8_t>(topo.ports[tp.port].uplink);
    in.metered = u.cost == CostTier::kMetered;
    in.bandwidth_bps = u.bandwidth_bps;
    if (auto m = monitor.metrics(tp.id, now_ns)) {
      in.up = m->state == PathStatus::kUp && path_usable(tp);
      in.rtt_ms = m->rtt_ms;
      in.jitter_ms = m->jitter_ms;
      in.loss_pct = m->loss_fwd_pct;
    }
    policy_in.push_back(std::move(in));
  }
  // Duplicate's overhead cap compares a class's rate with the copy uplink's bandwidth: the rate
  // over every peer, since the copies of all peers may leave by that one uplink.
  class_bytes_now.assign(cfg.classes.size(), 0);
  for (const auto& w : workers)
    for (size_t c = 0; c < class_bytes_now.size(); ++c) class_bytes_now[c] += w.worker->counters().class_bytes[c].load();
  if (class_rates.update(class_bytes_now, now_ns))
    for (uint8_t c = 0; c < cfg.classes.size(); ++c)
      for (uint16_t p = 0; p < compiler->n_peers(); ++p) compiler->set_class_rate(c, p, class_rates.bps(c));
  compiler->compile(policy_in, now_ns);
  const uint16_t np = compiler->n_peers();
  for (uint8_t c = 0; c < cfg.classes.size(); ++c)
    for (uint16_t p = 0; p < np; ++p) {
      const ClassDecision* d = compiler->decision(c, p);
      if (d == nullptr) continue;
      uint16_t& seen = primary_seen[size_t{c} * np + p];
      if (d->out.primary == seen) continue;
      log_info("class {} to {}: primary {} (was {}): {}", cfg.classes[c].name, compiler->peer_name(p),
               d->out.primary == dp::kNoPathId ? "none" : compiler->path_name(d->out.primary),
               seen == dp::kNoPathId ? "none" : compiler->path_name(seen), compiler->sla_text(*d));
      seen = d->out.primary;
    }
  class_events();
}

json Appliance::Impl::path_names(const std::vector<uint16_t>& ids) const {
  json out = json::array();
  for (uint16_t id : ids) out.push_back(compiler->path_name(id));
  return out;
}

// class_moved when the set of paths carrying a (class, peer) changes; sla_breached and
// sla_recovered when its SLA state flips. The first compile sets the baseline quietly (nothing
// is up yet); the SLA's baseline waits for a path of the peer to be up, and is an event only
// when the SLA is not met then.
void Appliance::Impl::class_events() {
  if (!event_bus) return;
  const uint16_t np = compiler->n_peers();
  class_seen.resize(cfg.classes.size() * np);
  std::vector<uint16_t> chosen;
  for (uint8_t c = 0; c < cfg.classes.size(); ++c)
    for (uint16_t p = 0; p < np; ++p) {
      const ClassDecision* d = compiler->decision(c, p);
      if (d == nullptr) continue;
      ClassSeen& seen = class_seen[size_t{c} * np + p];
      const ClassConfig& cc = cfg.classes[c];
      chosen.clear();
      bool any_up = false;
      const PathDecision* primary = nullptr;
      for (const PathDecision& pd : d->paths) {
        if (pd.verdict == Verdict::kChosen) chosen.push_back(pd.id);
        if (pd.verdict != Verdict::kDown) any_up = true;
        if (pd.id == d->out.primary) primary = &pd;
      }
      std::sort(chosen.begin(), chosen.end());
      const json primary_name = d->out.primary == dp::kNoPathId ? json(nullptr) : json(compiler->path_name(d->out.primary));
      if (!seen.known) {
        seen.known = true;
        seen.paths = chosen;
      } else if (chosen != seen.paths) {
        event_bus->emit("class_moved",
                        {{"class", cc.name},
                         {"peer", compiler->peer_name(p)},
                         {"mode", std::string(mode_name(cc.mode))},
                         {"from", path_names(seen.paths)},
                         {"to", path_names(chosen)},
                         {"primary", primary_name},
                         {"reason", compiler->sla_text(*d)}});
        seen.paths = chosen;
      }
      const bool flipped = seen.sla_known && d->sla_met != seen.sla_met;
      const bool first = !seen.sla_known && any_up;
      if (flipped || (first && !d->sla_met))
        event_bus->emit(d->sla_met ? "sla_recovered" : "sla_breached",
                        {{"class", cc.name},
                         {"peer", compiler->peer_name(p)},
                         {"sla",
                          {{"latency_ms", metric(cc.sla.latency_ms)},
                           {"jitter_ms", metric(cc.sla.jitter_ms)},
                           {"loss_pct", metric(cc.sla.loss_pct)}}},
                         {"paths", path_names(chosen)},
                         {"primary", primary_name},
                         {"rtt_ms", primary ? metric(primary->rtt_ms) : json(nullptr)},
                         {"jitter_ms", primary ? metric(primary->jitter_ms) : json(nullptr)},
                         {"loss_pct", primary ? metric(primary->loss_pct) : json(nullptr)},
                         {"fallback", d->fallback},
                         {"reason", compiler->sla_text(*d)}});
      if (flipped || first) {
        seen.sla_known = true;
        seen.sla_met = d->sla_met;
      }
    }
}

// Every snapshot carries a freshly compiled policy: once per probe interval with fresh metrics,
// and at once on any change of a path's state or usability (a class leaves a dead path now).
// compile() returns the previous policy when nothing changed, so snapshots share it.
void Appliance::Impl::publish() {
  SnapshotSas sas;
  sas.out = out_sas;
  sas.inbound = inbound;
  sas.in = in_list;
  const uint64_t t0 = mono_ns();
  // State changes made since the last tick (a reply brought a path up) go out as events
  // before the class moves they cause.
  measure_tick(t0);
  compile_policy(t0);
  for (const auto& tp : topo.paths) measured[tp.id].drill_drop_ppm = drills->drop_ppm(tp.id);
  auto snap = build_snapshot(topo, live, *neighbors, routes, ++generation, sas, measured);
  snap->policy = compiler->policy();
  published->publish(std::move(snap));
  publish_ns_last = mono_ns() - t0;
  publish_ns_max = std::max(publish_ns_max, publish_ns_last);
}

void Appliance::Impl::send_frame(uint8_t port, const uint8_t* frame, uint32_t len) {
  if (workers.empty()) return;
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) {
    ++control_tx_dropped;
    return;
  }
  auto* d = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
  if (d == nullptr) {
    rte_pktmbuf_free(m);
    ++control_tx_dropped;
    return;
  }
  std::memcpy(d, frame, len);
  m->port = port;
  // Worker 0 sends control's frames: ports need no queue of control's own.
  if (rte_ring_sp_enqueue(workers[0].ch.from_control_tx, m) != 0) {
    rte_pktmbuf_free(m);
    ++control_tx_dropped;
  }
}

void Appliance::Impl::handle_exceptions(uint64_t now) {
  for (auto& slot : workers) {
    rte_mbuf* ms[kControlDrain];
    const unsigned n = rte_ring_sc_dequeue_burst(slot.ch.to_control_pkts, reinterpret_cast<void**>(ms), kControlDrain, nullptr);
    for (unsigned i = 0; i < n; ++i) {
      rte_mbuf* m = ms[i];
      const uint8_t port = static_cast<uint8_t>(m->port);
      uint8_t out[64];
      const uint32_t olen = port < live.size()
                                ? handle_arp_frame(*neighbors, port, rte_pktmbuf_mtod(m, const uint8_t*),
                                                   rte_pktmbuf_data_len(m), live[port].mac, topo.ports[port].addr.addr,
                                                   now, out)
                                : 0;
      if (olen) {
        send_frame(port, out, olen);
        ++arp_replies;
      }
      rte_pktmbuf_free(m);
    }
    dp::ResolveRequest rr[kControlDrain];
    const unsigned k = rte_ring_sc_dequeue_burst_elem(slot.ch.to_control_resolve, rr, sizeof(dp::ResolveRequest),
                                                      kControlDrain, nullptr);
    for (unsigned i = 0; i < k; ++i) neighbors->want(rr[i].port, Ipv4{rr[i].ip}, false, now);
  }
}

void Appliance::Impl::tick(uint64_t now) {
  for (const auto& [port, ip] : neighbors->tick(now)) {
    uint8_t out[64];
    const uint32_t len = dp::build_arp_request(out, live[port].mac, topo.ports[port].addr.addr, ip);
    send_frame(port, out, len);
    ++arp_requests;
  }
}

int Appliance::run(const std::atomic<bool>& stop, std::atomic<bool>* reload) {
  Impl& a = *impl_;
  uint64_t next_tick = 0, next_link = 0, next_counters = 0, next_metrics = 0, next_second = 0;
  a.service_status_last = a.service_status();
  a.service.ready(a.service_status_last);
  while (!stop.load(std::memory_order_relaxed)) {
    a.mgmt->poll(1);
    if (reload != nullptr && reload->exchange(false)) (void)a.reload("SIGHUP");
    // A reload may change the probe interval.
    const uint64_t interval_ns = uint64_t{a.topo.probe_interval_ms} * kNsPerMs;
    const uint64_t counters_ns = std::clamp(interval_ns / 5, kCountersMinNs, kCountersMaxNs);
    const uint64_t now_ns = mono_ns();
    const uint64_t now = now_ns / kNsPerMs;
    a.handle_exceptions(now);
    a.drain_probes(now_ns);
    bool changed = false;
    if (now >= next_link) {
      next_link = now + kLinkPollMs;
      for (size_t i = 0; i < a.ports.size(); ++i) {
        const bool up = drv::link_state(a.ports[i].port_id).up;
        if (up != a.live[i].link_up) {
          log_warn("port {} link {}", a.topo.ports[i].name, up ? "up" : "down");
          a.live[i].link_up = up;
          // Down takes every path of the port down at once; up is left to refresh_usable,
          // which knows whether each path can also reach its next hop and has an SA.
          if (!up) a.monitor.on_link_port(static_cast<uint8_t>(i), false, now_ns);
          changed = true;
        }
      }
    }
    if (now >= next_tick) {
      next_tick = now + kTickMs;
      a.tick(now);
      if (a.esp_tick(now)) changed = true;
    }
    if (a.neighbors->take_changed() || changed) {
      changed = true;
      a.refresh_usable(now_ns);
    }
    // The state machines' timers run with the counters: at 4,000 paths a tick every loop (1 ms)
    // would cost more than everything else the loop does.
    if (now_ns >= next_counters) {
      next_counters = now_ns + counters_ns;
      a.feed_counters(now_ns);
      if (a.measure_tick(now_ns)) changed = true;
      if (a.drills->running()) {
        a.drill_tick(now_ns);
        if (!a.drills->running()) changed = true;  // ended: the next snapshot drops nothing
      }
    }
    // Metrics at least once per probe interval (the snapshot is never older than that), and
    // every change of usability or state at once.
    if (interval_ns != 0 && now_ns >= next_metrics) {
      next_metrics = now_ns + interval_ns;
      a.refresh_metrics(now_ns);
      changed = true;
    }
    if (changed) {
      a.publish();
      if (std::string st = a.service_status(); st != a.service_status_last) {
        a.service.status(st);
        a.service_status_last = std::move(st);
      }
    }
    a.published->reclaim();
    a.service.tick(now);
    if (now_ns >= next_second) {
      next_second = now_ns + 1000 * kNsPerMs;
      a.metrics_second(now_ns);
    }
    if (a.metrics_ex->wanted()) a.serve_metrics(now_ns);
  }
  a.service.stopping();
  log_info("stopping");
  return 0;
}

// systemctl status' line: how many paths carry traffic.
std::string Appliance::Impl::service_status() const {
  size_t up = 0;
  for (const auto& tp : topo.paths)
    if (tp.id < usable.size() && usable[tp.id] && monitor.state(tp.id) == PathStatus::kUp) ++up;
  return fmt::format("{} {}: {}/{} path(s) up", role_name(cfg.role), cfg.name, up, topo.paths.size());
}

Result<json> Appliance::Impl::handle(const json& req) {
  try {
    const std::string cmd = req.value("cmd", "");
    if (cmd == "explain") return explain(req);
    if (cmd == "drill") return drill(req);
    if (cmd == "reload") return reload("sdwanctl reload");
    if (cmd != "show") return err("unknown command \"" + cmd + "\" (expected: show, explain, drill, reload)");
    const std::string what = req.value("what", "");
    if (what == "ports") return show_ports();
    if (what == "uplinks") return show_uplinks();
    if (what == "peers") return show_peers();
    if (what == "paths") return show_paths();
    if (what == "stats") return show_stats();
    if (what == "neighbors") return show_neighbors();
    if (what == "sas") return show_sas();
    if (what == "events") return show_events(req);
    if (what == "hooks") return event_bus->hook_runs();
    if (what == "classes") return show_classes();
    if (what == "flows") return show_flows(req);
    if (what == "drills") return show_drills();
    if (what == "apps") return show_apps();
    if (what == "version") return json{{"name", cfg.name}, {"role", role_name(cfg.role)}, {"version", version()}};
    return err("cannot show \"" + what +
               "\" (expected: ports, uplinks, peers, paths, events, hooks, classes, flows, drills, apps, stats, neighbors, sas, "
               "version)");
  } catch (const std::exception& e) {
    return err(std::string("bad request: ") + e.what());
  }
}

json Appliance::Impl::show_ports() {
  json out = json::array();
  for (size_t i = 0; i < ports.size(); ++i) {
    rte_eth_stats st{};
    rte_eth_stats_get(ports[i].port_id, &st);
    const auto ls = drv::link_state(ports[i].port_id);
    out.push_back({{"name", topo.ports[i].name},
                   {"spec", topo.ports[i].spec},
                   {"driver", ports[i].driver},
                   {"port_id", ports[i].port_id},
                   {"mac", ports[i].mac.str()},
                   {"link", ls.up ? "up" : "down"},
                   {"speed_mbps", ls.speed_mbps},
                   {"mtu", topo.ports[i].mtu},
                   {"rx_pkts", st.ipackets},
                   {"rx_bytes", st.ibytes},
                   {"tx_pkts", st.opackets},
                   {"tx_bytes", st.obytes},
                   {"rx_missed", st.imissed},
                   {"rx_errors", st.ierrors},
                   {"tx_errors", st.oerrors}});
  }
  return out;
}

json Appliance::Impl::show_uplinks() {
  json out = json::array();
  for (size_t i = 1; i <= cfg.uplinks.size(); ++i) {
    const auto& u = cfg.uplinks[static_cast<size_t>(topo.ports[i].uplink)];
    const auto mac = neighbors->lookup(static_cast<uint8_t>(i), u.next_hop);
    const bool link = live[i].link_up;
    out.push_back({{"name", u.name},
                   {"port", u.port},
                   {"address", u.address.str()},
                   {"next_hop", u.next_hop.str()},
                   {"next_hop_mac", mac ? json(mac->str()) : json(nullptr)},
                   {"cost", cost_name(u.cost)},
                   {"bandwidth_bps", u.bandwidth_bps},
                   {"mtu", u.mtu},
                   {"link", link ? "up" : "down"},
                   {"state", !link ? "down" : mac ? "up" : "unresolved"}});
  }
  return out;
}

json Appliance::Impl::show_peers() {
  json out = json::array();
  const auto* s = published->current();
  for (size_t pi = 0; pi < cfg.peers.size(); ++pi) {
    const auto& p = cfg.peers[pi];
    if (p.removed) continue;
    json eps = json::array();
    for (const auto& e : p.endpoints)
      eps.push_back({{"address", e.address.str()}, {"port", e.port ? e.port : cfg.overlay_port}, {"uplinks", e.uplinks}});
    json pfx = json::array();
    for (const auto& x : p.prefixes) pfx.push_back(x.str());
    unsigned up = 0;
    for (uint16_t id : topo.peer_paths[pi]) up += s->paths[id].usable && s->paths[id].up ? 1 : 0;
    out.push_back({{"name", p.name},
                   {"endpoints", eps},
                   {"prefixes", pfx},
                   {"paths_up", up},
                   {"paths_total", topo.peer_paths[pi].size()}});
  }
  return out;
}

json Appliance::Impl::show_paths() {
  json out = json::array();
  const uint64_t now_ns = mono_ns();
  for (const auto& tp : topo.paths) {
    uint64_t txp = 0, txb = 0, rxp = 0, rxb = 0, reflected = 0, sent = 0;
    for (const auto& w : workers) {
      const auto& c = w.worker->path_counters()[tp.id];
      sent += c.probes_sent.load();
      txp += c.tx_pkts.load();
      txb += c.tx_bytes.load();
      rxp += c.rx_pkts.load();
      rxb += c.rx_bytes.load();
      reflected += c.probes_reflected.load();
    }
    const auto v = monitor.view(tp.id, now_ns);
    if (!v) continue;
    const bool can_send = path_usable(tp);
    // The monitor says "link down" for every unusable path; down_reason says which part.
    std::string why = v->state == PathStatus::kUp ? std::string() : can_send ? v->reason : down_reason(tp);
    if (v->state == PathStatus::kDamped) why = v->reason;
    out.push_back({{"name", tp.name},
                   {"uplink", topo.ports[tp.port].name},
                   {"peer", cfg.peers[tp.peer].name},
                   {"endpoint", tp.remote.str() + ":" + std::to_string(tp.remote_port)},
                   {"state", path_status_name(v->state)},
                   {"since", rfc3339(v->since_ns, now_ns)},
                   {"since_s", std::round(static_cast<double>(now_ns - std::min(now_ns, v->since_ns)) / 1e6) / 1e3},
                   {"rtt_ms", metric(v->rtt_ms)},
                   {"rtt_min_ms", metric(v->rtt_min_ms)},
                   {"rtt_p50_ms", metric(v->rtt_p50_ms)},
                   {"rtt_p95_ms", metric(v->rtt_p95_ms)},
                   {"rtt_p99_ms", metric(v->rtt_p99_ms)},
                   {"jitter_ms", metric(v->jitter_ms)},
                   {"jitter_fwd_ms", metric(v->jitter_fwd_ms)},
                   {"jitter_rev_ms", metric(v->jitter_rev_ms)},
                   {"loss_fwd_pct", metric(v->loss_fwd_pct)},
                   {"loss_rev_pct", metric(v->loss_rev_pct)},
                   {"loss_data_fwd_pct", metric(v->loss_data_fwd_pct)},
                   {"loss_data_rev_pct", metric(v->loss_data_rev_pct)},
                   // Read now, not the monitor's copy from its last counter feed: a reply
                   // drained since would otherwise outnumber its probes.
                   {"probes_sent", std::max(sent, v->probes_sent)},
                   {"probes_received", v->probes_received},
                   {"probes_reflected", reflected},
                   {"window_samples", v->window_samples},
                   {"usable", can_send},
                   {"reason", why},
                   {"tx_pkts", txp},
                   {"tx_bytes", txb},
                   {"rx_pkts", rxp},
                   {"rx_bytes", rxb}});
  }
  return out;
}

// The bus's ring, optionally only some types ("type": "path_down" or a list) and only events
// after a seq ("after": N, for `sdwanctl show events --follow`).
Result<json> Appliance::Impl::show_events(const json& req) {
  std::vector<std::string> types;
  if (auto it = req.find("type"); it != req.end() && !it->is_null()) {
    for (const json& t : it->is_array() ? *it : json::array({*it})) {
      const std::string name = t.get<std::string>();
      if (!known_event_type(name)) {
        std::string all;
        for (auto k : kEventTypes) all += (all.empty() ? "" : ", ") + std::string(k);
        return err(fmt::format("no event type \"{}\" (types: {})", name, all));
      }
      types.push_back(name);
    }
  }
  const uint64_t after = req.contains("after") ? req["after"].get<uint64_t>() : 0;
  return event_bus->events(types, after);
}

Result<uint8_t> Appliance::Impl::find_class(const std::string& name) const {
  if (auto id = compiler->class_id(name)) return *id;
  std::string names;
  for (const auto& c : cfg.classes) names += (names.empty() ? "" : ", ") + c.name;
  return err(fmt::format("no class \"{}\" (classes: {})", name, names));
}

// Per class and peer: what the last compile chose and why. packets / bytes, and dup_packets /
// dup_bytes (the copies: what duplication spends), are the class's counters over every worker
// and peer (the workers count by class only); rate_bps is what the overhead cap compares.
Result<json> Appliance::Impl::show_classes() {
  json out = json::array();
  const uint16_t np = compiler->n_peers();
  for (uint8_t c = 0; c < cfg.classes.size(); ++c) {
    const ClassConfig& cc = cfg.classes[c];
    uint64_t pkts = 0, bytes = 0, dup_pkts = 0, dup_bytes = 0;
    for (const auto& w : workers) {
      pkts += w.worker->counters().class_pkts[c].load();
      bytes += w.worker->counters().class_bytes[c].load();
      dup_pkts += w.worker->counters().class_dup_pkts[c].load();
      dup_bytes += w.worker->counters().class_dup_bytes[c].load();
    }
    const json sla = {{"latency_ms", metric(cc.sla.latency_ms)},
                      {"jitter_ms", metric(cc.sla.jitter_ms)},
                      {"loss_pct", metric(cc.sla.loss_pct)}};
    for (uint16_t p = 0; p < np; ++p) {
      const ClassDecision* d = compiler->decision(c, p);
      if (d == nullptr) continue;
      json paths = json::array();
      json reasons = json::array();
      for (const PathDecision& pd : d->paths) {
        if (pd.verdict == Verdict::kChosen) paths.push_back({{"name", compiler->path_name(pd.id)}, {"weight", pd.weight}});
        reasons.push_back({{"path", compiler->path_name(pd.id)}, {"reason", compiler->reason(*d, pd)}});
      }
      std::string why = compiler->held_text(*d, d->held_primary);
      if (const std::string h2 = compiler->held_text(*d, d->held_secondary); !h2.empty())
        why += (why.empty() ? "" : "; ") + h2;
      const auto name = [&](uint16_t id) { return id == dp::kNoPathId ? json(nullptr) : json(compiler->path_name(id)); };
      const bool dup = cc.mode == dp::ClassMode::kDuplicate;
      out.push_back({{"class", cc.name},
                     {"peer", compiler->peer_name(p)},
                     {"mode", std::string(mode_name(cc.mode))},
                     {"default", cc.is_default},
                     {"paths", paths},
                     {"primary", name(d->out.primary)},
                     {"secondary", dup ? name(d->out.secondary) : json(nullptr)},
                     {"duplicating", dup && d->out.duplicating && d->out.secondary != dp::kNoPathId},
                     {"duplicating_why", dup ? json(compiler->dup_text(*d)) : json(nullptr)},
                     {"reorder_hold_us", d->out.reorder_hold_us},
                     {"sla", sla},
                     {"sla_met", d->sla_met},
                     {"fallback", d->fallback},
                     {"state", compiler->sla_text(*d)},
                     {"why", why},
                     {"path_reasons", reasons},
                     {"packets", pkts},
                     {"bytes", bytes},
                     {"rate_bps", class_rates.bps(c)},
                     {"dup_packets", dup_pkts},
                     {"dup_bytes", dup_bytes}});
    }
  }
  return out;
}

// Asks every worker for its flow table, waits for all of them (polling every ms, at most
// kFlowDumpTimeoutNs), and answers at most kFlowAnswerMax flows. The buffers stay ours for
// the next request: a worker that did not answer in time may still be writing to its own.
// Every worker's flow cache, walked by the workers themselves (a few ms per 100,000 flows).
Result<std::vector<Appliance::Impl::WorkerFlow>> Appliance::Impl::collect_flows() {
  flow_bufs.resize(workers.size());
  const uint64_t deadline = mono_ns() + kFlowDumpTimeoutNs;
  const auto wait_done = [&](size_t w, uint32_t* n) {
    while (!workers[w].worker->flow_dump_done(n)) {
      if (mono_ns() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  for (size_t w = 0; w < workers.size(); ++w) {
    if (flow_bufs[w].empty()) flow_bufs[w].resize(kFlowDumpPerWorker);
    uint32_t n = 0;
    // A dump left running by a request that timed out: let it finish first.
    while (!workers[w].worker->request_flow_dump(flow_bufs[w].data(), kFlowDumpPerWorker))
      if (!wait_done(w, &n)) return err(fmt::format("worker {} did not answer the flow dump within {} ms", w,
                                                    kFlowDumpTimeoutNs / kNsPerMs));
  }
  std::vector<uint32_t> counts(workers.size(), 0);
  for (size_t w = 0; w < workers.size(); ++w)
    if (!wait_done(w, &counts[w]))
      return err(fmt::format("worker {} did not answer the flow dump within {} ms", w, kFlowDumpTimeoutNs / kNsPerMs));
  std::vector<WorkerFlow> out;
  for (size_t w = 0; w < workers.size(); ++w)
    for (uint32_t i = 0; i < counts[w] && i < flow_bufs[w].size(); ++i)
      out.push_back({flow_bufs[w][i], static_cast<uint16_t>(w)});
  return out;
}

Result<json> Appliance::Impl::show_flows(const json& req) {
  std::optional<uint8_t> only;
  if (auto it = req.find("class"); it != req.end() && !it->is_null()) {
    auto c = find_class(it->get<std::string>());
    if (!c) return c.error();
    only = *c;
  }
  auto recs = collect_flows();
  if (!recs) return recs.error();
  const uint64_t now_tsc = rte_rdtsc();
  const double hz = static_cast<double>(rte_get_tsc_hz());
  const auto secs = [&](uint64_t tsc) {
    return std::round(static_cast<double>(now_tsc >= tsc ? now_tsc - tsc : 0) / hz * 1000.0) / 1000.0;
  };
  const auto proto_name = [](uint8_t p) -> json {
    switch (p) {
      case 1: return "icmp";
      case 6: return "tcp";
      case 17: return "udp";
      default: return p;
    }
  };
  json flows = json::array();
  size_t total = 0;
  for (const WorkerFlow& wf : *recs) {
      const dp::FlowRecord& f = wf.f;
      if (only && f.cls != *only) continue;
      if (++total > kFlowAnswerMax) continue;
      const bool known_path = f.path < topo.paths.size();
      flows.push_back({{"src", Ipv4{f.src}.str()},
                       {"dst", Ipv4{f.dst}.str()},
                       {"sport", f.sport},
                       {"dport", f.dport},
                       {"proto", proto_name(f.proto)},
                       {"class", f.cls < cfg.classes.size() ? json(cfg.classes[f.cls].name) : json(f.cls)},
                       {"path", known_path ? json(topo.paths[f.path].name) : json(nullptr)},
                       {"uplink", known_path ? json(topo.ports[topo.paths[f.path].port].name) : json(nullptr)},
                       {"worker", wf.worker},
                       {"packets", f.pkts},
                       {"bytes", f.bytes},
                       {"age_s", secs(f.first_tsc)},
                       {"idle_s", secs(f.last_tsc)}});
    }
  if (total > kFlowAnswerMax)
    flows.push_back({{"truncated", true}, {"shown", kFlowAnswerMax}, {"total", total}});
  return flows;
}

// `sdwanctl explain CLASS`: the compiler's lines about the class's last decision.
Result<json> Appliance::Impl::explain(const json& req) {
  auto c = find_class(req.value("class", ""));
  if (!c) return c.error();
  json lines = json::array();
  for (const auto& l : compiler->explain(*c)) lines.push_back(l);
  return lines;
}

static uint64_t wall_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

std::vector<DrillClass> Appliance::Impl::drill_classes() const {
  std::vector<DrillClass> dcs;
  for (const auto& c : cfg.classes) dcs.push_back({c.name, c.sla.loss_pct, c.sla.any()});
  return dcs;
}

// Live reload (issue 7): the config file again, checked like at start; what plan_reload allows
// is applied in place, anything else refuses the whole reload and the running config stays.
Result<json> Appliance::Impl::reload(const char* how) {
  service.reloading();
  const auto refuse = [&](const std::string& why) -> Result<json> {
    log_error("reload ({}) refused, the running config stays: {}", how, why);
    if (event_bus) event_bus->emit("reload_failed", {{"file", cfg.file}, {"via", how}, {"error", why}});
    service.ready(service_status());
    return err("reload refused, the running config stays: " + why);
  };
  if (drills->running()) return refuse(fmt::format("drill {} is running: wait for its end or sdwanctl drill abort", drills->running_id()));
  auto next = load_config(cfg.file);
  if (!next) return refuse(next.error().msg);
  auto rp = plan_reload(cfg, *next);
  if (!rp) return refuse(rp.error().msg);
  if (rp->events)
    if (Status st = check_hooks(next->events); !st) return refuse(cfg.file + ": " + st.error().msg);
  // Peers first: the only part that can still fail (a key file, the epoch store, memory), and
  // it fails before it changes anything.
  if (rp->peers)
    if (Status st = apply_peers(merge_peers(cfg.peers, next->peers), mono_ns()); !st) return refuse(st.error().msg);
  json changes = json::array();
  for (const auto& c : rp->changes) changes.push_back(c);
  if (!rp->any()) {
    log_info("reload ({}): {} unchanged", how, cfg.file);
    service.ready(service_status());
    return json{{"applied", true}, {"file", cfg.file}, {"changes", changes}};
  }
  if (rp->paths) {
    for (const auto& tp : topo.paths)
      if (!tp.removed)
        if (Status st = monitor.reconfigure(tp.id, next->paths.state, uint64_t{next->paths.window_s} * 1000 * kNsPerMs); !st)
        return refuse(st.error().msg);  // parse_config checked the same: not expected
    topo.probe_interval_ms = next->paths.probe_interval_ms;
  }
  if (rp->classes || rp->policy) {
    // The snapshot publish() makes next carries generation + 1: flows decided before it are
    // classified again on their next packet.
    compiler->reconfigure(next->classes, next->policy,
                          rp->classes ? std::optional<uint32_t>(static_cast<uint32_t>(generation + 1)) : std::nullopt);
    primary_seen.assign(next->classes.size() * compiler->n_peers(), dp::kNoPathId);
  }
  if (rp->log_level) log_setup(log_level_from(next->log_level), next->name);
  if (rp->events && event_bus) event_bus->reconfigure(next->events);
  if (rp->apps) {
    // reconfigure, never a reset: it does not wait for a check in flight (up to its timeout).
    if (apps) apps->reconfigure(next->apps);
    else apps = std::make_unique<AppChecker>(next->apps, event_bus.get());
  }
  const std::string file = cfg.file;
  // The running list keeps the tombstones of removed peers: indexes and path ids stay stable.
  next->peers = merge_peers(cfg.peers, next->peers);
  cfg = std::move(*next);
  cfg.file = file;
  if (rp->classes) drills->set_classes(drill_classes());
  publish();
  log_info("reload ({}) applied {} change(s): {}", how, rp->changes.size(), changes.dump());
  if (event_bus) event_bus->emit("reload", {{"file", cfg.file}, {"via", how}, {"changes", changes}});
  service.ready(service_status());
  return json{{"applied", true}, {"file", cfg.file}, {"changes", changes}};
}

// Live reload of peers (docs/config.md "Reloading a changed config"): merged is the running
// list with tombstones for the removed peers and the new ones appended (merge_peers), so every
// kept peer and path keeps its index and id, and the workers' flows towards it stay where they
// are. Everything that can fail is done before anything changes.
Status Appliance::Impl::apply_peers(const std::vector<PeerConfig>& merged, uint64_t now_ns) {
  Config mc = cfg;
  mc.peers = merged;
  Topology nt = make_topology(mc);
  nt.probe_interval_ms = topo.probe_interval_ms;
  if (merged.size() > dp::kMaxPeers || nt.paths.size() > dp::kMaxPaths)
    return err(fmt::format("the running list of peers would hold {} peers and {} paths with the removed ones, more than "
                           "{} and {}: restart sdwand to apply this config",
                           merged.size(), nt.paths.size(), dp::kMaxPeers, dp::kMaxPaths));
  for (size_t i = 0; i < topo.paths.size(); ++i)
    if (i >= nt.paths.size() || nt.paths[i].port != topo.paths[i].port || nt.paths[i].peer != topo.paths[i].peer ||
        nt.paths[i].remote != topo.paths[i].remote || (topo.paths[i].removed && !nt.paths[i].removed))
      return err(fmt::format("bug: path {} ({}) would change its id", i, topo.paths[i].name));
  // The new peers' keys and the new paths' first epochs.
  std::vector<MasterKey> keys;
  for (size_t pi = cfg.peers.size(); pi < merged.size(); ++pi) {
    auto k = load_master_key(merged[pi].key_file);
    if (!k) return err(fmt::format("peer {}: {}", merged[pi].name, k.error().msg));
    keys.push_back(std::move(*k));
  }
  std::vector<SaPathSpec> specs;
  for (size_t i = topo.paths.size(); i < nt.paths.size(); ++i) {
    SaPathSpec spec = sa_spec(mc, nt, nt.paths[i]);
    auto e = epochs->next_epoch(spec.local, spec.remote);
    if (!e) return err(fmt::format("path {}: {}", nt.paths[i].name, e.error().msg));
    spec.start_epoch = *e;
    specs.push_back(spec);
  }
  const int socket = static_cast<int>(rte_socket_id()) == SOCKET_ID_ANY ? 0 : static_cast<int>(rte_socket_id());
  auto rt = build_routes(mc, socket);
  if (!rt) return rt.error();

  // From here on nothing fails. The removed peers' paths first: their SAs go, their
  // measurement stops (a later peer with the same endpoints starts again at a newer epoch).
  std::vector<SaAction> acts;
  for (const auto& tp : nt.paths)
    if (tp.removed && tp.id < topo.paths.size() && !topo.paths[tp.id].removed) {
      auto r = sa_table->remove_path(tp.id);
      acts.insert(acts.end(), r.begin(), r.end());
      monitor.remove_path(tp.id);
      log_info("path {}: removed with its peer", topo.paths[tp.id].name);
    }
  const size_t old_paths = topo.paths.size();
  const uint16_t op = compiler->n_peers();
  topo = std::move(nt);
  const size_t n = topo.paths.size();
  out_sas.resize(n);
  out_pending.resize(n);
  usable.resize(n, 1);  // a new state machine takes its link as up (refresh_usable says otherwise)
  rev_sa.resize(n);
  measured.resize(n, PathMeasured{false});
  path_failures.resize(std::max(path_failures.size(), n), 0);
  const uint64_t now_ms = now_ns / kNsPerMs;
  for (size_t i = old_paths; i < n; ++i) {
    const TopoPath& tp = topo.paths[i];
    PathSpec ms = monitor_spec(mc, tp);
    if (Status st = monitor.add_path(ms, now_ns); !st) log_error("path {}: {}", tp.name, st.error().msg);
    neighbors->want(tp.port, tp.l2_target, true, now_ms);
    auto a = sa_table->add_path(specs[i - old_paths], now_ms);
    if (!a) {
      log_error("path {}: {}", tp.name, a.error().msg);
      continue;
    }
    log_info("path {}: added, link {}, starting at epoch {}", tp.name, specs[i - old_paths].link,
             specs[i - old_paths].start_epoch);
    acts.insert(acts.end(), a->begin(), a->end());
  }
  for (auto& k : keys) {
    peer_key.push_back(master_keys.size());
    master_keys.push_back(std::move(k));
  }
  routes = std::move(*rt);
  if (host_plan) {  // the host stack's routes follow: the LAN subnet and every live peer's prefixes
    std::vector<Prefix4> hr(host_plan->routes.begin(), host_plan->routes.begin() + 1);
    for (const auto& p : merged)
      if (!p.removed) hr.insert(hr.end(), p.prefixes.begin(), p.prefixes.end());
    host_stack_reroute(*host_plan, hr);
  }
  apply_sa_actions(acts);
  rebuild_inbound();
  refresh_rev_sa();

  // The compiler and what the events remember per (class, peer): kept for the kept peers.
  std::vector<std::string> peer_names, path_names(n);
  std::vector<bool> removed;
  for (const auto& p : merged) {
    peer_names.push_back(p.name);
    removed.push_back(p.removed);
  }
  for (const auto& tp : topo.paths) path_names[tp.id] = tp.name;
  compiler->set_peers(std::move(peer_names), std::move(removed), std::move(path_names));
  const uint16_t np = compiler->n_peers();
  const size_t nc = cfg.classes.size();
  std::vector<uint16_t> ps(nc * np, dp::kNoPathId);
  std::vector<ClassSeen> cs(nc * np);
  for (size_t c = 0; c < nc; ++c)
    for (uint16_t p = 0; p < op && p < np; ++p) {
      if (merged[p].removed) continue;
      if (c * op + p < primary_seen.size()) ps[c * np + p] = primary_seen[c * op + p];
      if (c * op + p < class_seen.size()) cs[c * np + p] = class_seen[c * op + p];
    }
  primary_seen = std::move(ps);
  class_seen = std::move(cs);
  cfg.peers = merged;  // drill_setup and the logs below name peers by the running list
  drill_setup();
  refresh_usable(now_ns);
  log_info("peers: {} running ({} removed since start), {} path(s)",
           std::count_if(merged.begin(), merged.end(), [](const PeerConfig& p) { return !p.removed; }),
           std::count_if(merged.begin(), merged.end(), [](const PeerConfig& p) { return p.removed; }), n);
  return Ok{};
}

void Appliance::Impl::drill_setup() {
  std::vector<DrillPath> dps;
  for (const auto& tp : topo.paths)
    if (!tp.removed) dps.push_back({tp.id, tp.name, topo.ports[tp.port].name, cfg.peers[tp.peer].name});
  drills.emplace(std::move(dps), drill_classes());
  // Reports outlive the process: one JSON line each beside the epoch store (the state dir).
  const std::filesystem::path es(cfg.esp.epoch_store);
  drill_log = (es.parent_path() / (cfg.name + ".drills.jsonl")).string();
  std::ifstream in(drill_log);
  std::vector<json> old;
  std::string line;
  size_t bad = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ++bad;
      continue;
    }
    old.push_back(std::move(j));
  }
  if (bad != 0) log_warn("{}: {} unreadable line(s) skipped", drill_log, bad);
  drills->restore(std::move(old));
}

DrillObservation Appliance::Impl::drill_observe(uint64_t now_ns) {
  const size_t nc = cfg.classes.size();
  const uint16_t np = compiler->n_peers();
  obs_up.assign(topo.paths.size(), 0);
  for (const auto& tp : topo.paths)
    obs_up[tp.id] = !tp.removed && usable.size() > tp.id && usable[tp.id] && monitor.state(tp.id) == PathStatus::kUp;
  obs_paths.assign(nc * np, dp::ClassPaths{});
  obs_sla.assign(nc * np, 1);
  for (size_t c = 0; c < nc; ++c)
    for (uint16_t p = 0; p < np; ++p)
      if (const ClassDecision* d = compiler->decision(static_cast<uint8_t>(c), p)) {
        obs_paths[c * np + p] = d->out;
        obs_sla[c * np + p] = d->sla_met;
      }
  obs_pkts.assign(nc, 0);
  obs_lost.assign(nc, 0);
  obs_rx.assign(nc, 0);
  for (const auto& w : workers) {
    const dp::WorkerCounters& wc = w.worker->counters();
    for (size_t c = 0; c < nc && c < dp::kMaxClasses; ++c) {
      obs_pkts[c] += wc.class_pkts[c].load();
      obs_lost[c] += wc.drill_lost[c].load();
      obs_rx[c] += wc.drill_rx_class[c].load();
    }
  }
  DrillObservation o;
  o.now_ns = now_ns;
  o.path_up = obs_up;
  o.class_paths = obs_paths;
  o.class_sla_met = obs_sla;
  o.n_peers = np;
  o.class_pkts = obs_pkts;
  o.class_lost = obs_lost;
  o.class_rx_dropped = obs_rx;
  return o;
}

void Appliance::Impl::drill_finish_flows() {
  auto recs = collect_flows();
  if (!recs) {
    log_warn("drill: flows moved unknown: {}", recs.error().msg);
    return;
  }
  const auto& hit = drills->drilled();
  uint64_t moved = 0;
  for (const auto& wf : *recs) {
    if (!drill_flows.contains({wf.f.src, wf.f.dst, wf.f.sport, wf.f.dport, wf.f.proto})) continue;
    if (std::find(hit.begin(), hit.end(), wf.f.path) == hit.end()) ++moved;
  }
  drills->set_flows(drill_flows.size(), moved);
  drill_flows.clear();
}

void Appliance::Impl::drill_record() {
  const json* r = drills->last();
  if (r == nullptr) return;
  if (event_bus) event_bus->emit("drill_end", *r);
  log_info("drill {} {}: {} {} {}: detection {} ms, {} of {} packets lost", r->at("id").get<uint64_t>(),
           r->at("state").get<std::string>(), r->at("target").get<std::string>(), r->at("name").get<std::string>(),
           r->at("action").get<std::string>(), r->at("detection_ms").dump(), r->at("lost").get<uint64_t>(),
           r->at("sent").get<uint64_t>());
  std::ofstream out(drill_log, std::ios::app);
  out << r->dump() << "\n";
  out.flush();
  if (!out) log_warn("drill report not stored: cannot append to {}", drill_log);
}

void Appliance::Impl::drill_tick(uint64_t now_ns) {
  if (drills->due(now_ns)) drill_finish_flows();
  if (drills->tick(drill_observe(now_ns), wall_ms())) drill_record();
}

Result<json> Appliance::Impl::drill(const json& req) {
  const std::string action = req.value("action", "start");
  const uint64_t now_ns = mono_ns();
  if (action == "status") {
    const uint64_t id = req.value("id", uint64_t{0});
    if (drills->running() && (id == 0 || id == drills->running_id())) {
      drill_tick(now_ns);  // fresh figures; ends it (flows, record) if its time is up
      if (drills->running()) return drills->current(now_ns);
      publish();  // ended: the next snapshot drops nothing
    }
    for (auto it = drills->history().rbegin(); it != drills->history().rend(); ++it)
      if (id == 0 || it->value("id", uint64_t{0}) == id) return *it;
    return err(id == 0 ? std::string("no drill has run yet") : fmt::format("no drill {}", id));
  }
  if (action == "abort") {
    if (!drills->running()) return err("no drill is running");
    drill_finish_flows();
    // Its time may just be up: then it ends as completed, else as aborted; recorded either way.
    if (drills->tick(drill_observe(now_ns), wall_ms()) || drills->abort(now_ns, wall_ms())) drill_record();
    publish();
    return *drills->last();
  }
  if (action != "start") return err("unknown drill action \"" + action + "\" (expected: start, abort, status)");
  auto dr = DrillRequest::from_json(req);
  if (!dr) return dr.error();
  // The flows on the target before it fails, to count those that moved at the end.
  auto recs = collect_flows();
  auto id = drills->start(*dr, drill_observe(now_ns), wall_ms());
  if (!id) return id.error();
  drill_flows.clear();
  if (recs) {
    const auto& hit = drills->drilled();
    for (const auto& wf : *recs)
      if (std::find(hit.begin(), hit.end(), wf.f.path) != hit.end())
        drill_flows.insert({wf.f.src, wf.f.dst, wf.f.sport, wf.f.dport, wf.f.proto});
  }
  publish();  // the failure starts with this snapshot
  if (event_bus) event_bus->emit("drill_start", drills->current(mono_ns()));
  log_warn("drill {} started: {} {} {} for {} ms{}", *id, dr->target == DrillRequest::Target::kUplink ? "uplink" : "peer",
           dr->name, dr->drop_ppm >= 1000000 ? std::string("blackout") : fmt::format("loss {} %", dr->drop_ppm / 1e4),
           dr->duration_ms, dr->force ? " (forced)" : "");
  return drills->current(mono_ns());
}

json Appliance::Impl::show_drills() {
  json out = json::array();
  for (const auto& r : drills->history()) out.push_back(r);
  if (drills->running()) out.push_back(drills->current(mono_ns()));
  return out;
}

json Appliance::Impl::show_stats() {
  json ws = json::array();
  json drops = json::object();
  for (size_t d = 0; d < static_cast<size_t>(dp::Drop::kCount); ++d) drops[std::string(dp::drop_name(static_cast<dp::Drop>(d)))] = 0;
  uint64_t enc = 0, dec = 0, arp = 0, echo = 0, to_host = 0, icmp = 0, icmp_rl = 0, mss = 0, flows_new = 0, flow_full = 0, ctl = 0,
           parked = 0, released = 0, probe_alloc = 0, probe_lost = 0;
  // Duplicate and spray (issue 6): copies sent and de-duplicated, the receiver's reorder buffer.
  uint64_t dup_sent = 0, dup_bytes = 0, dup_no_mbuf = 0, dedup_no_window = 0, ro_held = 0, ro_late = 0,
           ro_timeouts = 0, ro_skipped = 0, ro_no_buffer = 0, handoff_out = 0, handoff_in = 0;
  for (const auto& slot : workers) {
    const auto& c = slot.worker->counters();
    uint64_t rx = 0, tx = 0;
    for (size_t i = 0; i < ports.size(); ++i) {
      rx += c.ports[i].rx_pkts.load();
      tx += c.ports[i].tx_pkts.load();
    }
    ws.push_back({{"index", slot.worker->index()},
                  {"lcore", slot.lcore},
                  {"polls", c.polls.load()},
                  {"busy_polls", c.busy_polls.load()},
                  {"rx_pkts", rx},
                  {"tx_pkts", tx},
                  {"flows", slot.worker->flow_count()}});
    for (size_t d = 0; d < static_cast<size_t>(dp::Drop::kCount); ++d) {
      auto& v = drops[std::string(dp::drop_name(static_cast<dp::Drop>(d)))];
      v = v.get<uint64_t>() + c.drops[d].load();
    }
    enc += c.encapsulated.load();
    dec += c.decapsulated.load();
    arp += c.arp_to_control.load();
    echo += c.icmp_echo_replied.load();
    to_host += c.to_host.load();
    icmp += c.icmp_errors_sent.load();
    icmp_rl += c.icmp_errors_ratelimited.load();
    mss += c.mss_clamped.load();
    flows_new += c.flows_created.load();
    flow_full += c.flow_cache_full.load();
    ctl += c.control_tx.load();
    parked += c.arp_parked.load();
    released += c.arp_released.load();
    probe_alloc += c.probe_alloc_failed.load();
    probe_lost += c.probe_reports_lost.load();
    dup_sent += c.dup_sent();
    dup_bytes += c.dup_bytes();
    dup_no_mbuf += c.dup_no_mbuf.load();
    dedup_no_window += c.dedup_no_window.load();
    ro_held += c.reorder_held.load();
    ro_late += c.reorder_late.load();
    ro_timeouts += c.reorder_timeouts.load();
    ro_skipped += c.reorder_skipped.load();
    ro_no_buffer += c.reorder_no_buffer.load();
    handoff_out += c.handoff_out.load();
    handoff_in += c.handoff_in.load();
  }
  uint64_t esp_enc = 0, esp_enc_b = 0, esp_dec = 0, esp_dec_b = 0;
  std::array<uint64_t, static_cast<size_t>(dp::EspDrop::kCount)> esp_drops{};
  for (const auto& slot : workers) {
    const auto& e = slot.worker->esp_counters();
    esp_enc += e.enc_pkts.load();
    esp_enc_b += e.enc_bytes.load();
    esp_dec += e.dec_pkts.load();
    esp_dec_b += e.dec_bytes.load();
    for (size_t d = 0; d < esp_drops.size(); ++d) esp_drops[d] += e.drops[d].load();
  }
  json esp_drop_obj = json::object();
  for (size_t d = 0; d < esp_drops.size(); ++d)
    esp_drop_obj[std::string(dp::esp_drop_name(static_cast<dp::EspDrop>(d)))] = esp_drops[d];
  const json esp = {{"encrypted_pkts", esp_enc},
                    {"encrypted_bytes", esp_enc_b},
                    {"decrypted_pkts", esp_dec},
                    {"decrypted_bytes", esp_dec_b},
                    {"sas_in", in_sas.size()},
                    {"sas_out", std::count_if(out_sas.begin(), out_sas.end(), [](const auto& s) { return s != nullptr; })},
                    {"drops", esp_drop_obj}};
  json counters = {{"encapsulated", enc},
                   {"decapsulated", dec},
                   {"arp_to_control", arp},
                   {"arp_replies_sent", arp_replies},
                   {"arp_requests_sent", arp_requests},
                   {"icmp_echo_replied", echo},
                   {"to_host", to_host},
                   {"icmp_errors_sent", icmp},
                   {"icmp_errors_ratelimited", icmp_rl},
                   {"mss_clamped", mss},
                   {"flows_created", flows_new},
                   {"flow_cache_full", flow_full},
                   {"control_tx", ctl},
                   {"arp_parked", parked},
                   {"arp_released", released},
                   {"control_tx_dropped", control_tx_dropped},
                   {"probe_reports", probe_reports},
                   {"probe_reports_lost", probe_lost},
                   {"probe_reports_unknown_path", monitor.unknown_samples()},
                   {"probe_alloc_failed", probe_alloc},
                   {"dup_sent", dup_sent},
                   {"dup_bytes", dup_bytes},
                   {"dup_no_mbuf", dup_no_mbuf},
                   {"dedup_no_window", dedup_no_window},
                   {"reorder_held", ro_held},
                   {"reorder_late", ro_late},
                   {"reorder_timeouts", ro_timeouts},
                   {"reorder_skipped", ro_skipped},
                   {"reorder_no_buffer", ro_no_buffer},
                   {"handoff_out", handoff_out},
                   {"handoff_in", handoff_in},
                   {"path_events", monitor.events().total()},
                   {"snapshot_generation", generation},
                   {"snapshot_build_us_last", publish_ns_last / 1000},
                   {"snapshot_build_us_max", publish_ns_max / 1000},
                   {"metrics_refresh_us_last", metric_ns_last / 1000},
                   {"metrics_refresh_us_max", metric_ns_max / 1000},
                   {"snapshots_awaiting_grace", published->retired()}};
  return {{"name", cfg.name},
          {"role", role_name(cfg.role)},
          {"version", version()},
          {"uptime_s", (mono_ms() - started_ms) / 1000},
          {"workers", ws},
          {"counters", counters},
          {"drops", drops},
          {"esp", esp},
          {"events", event_bus->stats()}};
}

json Appliance::Impl::show_neighbors() {
  json out = json::array();
  for (const auto& n : neighbors->dump()) {
    const char* st = n.state == NeighborManager::State::kReachable ? "reachable"
                     : n.state == NeighborManager::State::kProbing ? "probing"
                                                                   : "incomplete";
    out.push_back({{"port", topo.ports[n.port].name},
                   {"address", n.ip.str()},
                   {"mac", n.state == NeighborManager::State::kIncomplete ? json(nullptr) : json(n.mac.str())},
                   {"state", st},
                   {"permanent", n.permanent}});
  }
  return out;
}

// The workers' live counters of the SA a table row names; nullopt when its runtime is gone.
std::optional<dp::EspSaStats> Appliance::Impl::sa_stats(const SaRow& r) const {
  if (r.dir == SaDir::kOutbound) {
    if (r.path < out_sas.size() && out_sas[r.path] != nullptr) {
      auto s = dp::esp_sa_stats(*out_sas[r.path]);
      if (s.spi == r.spi) return s;
    }
    return std::nullopt;
  }
  if (auto it = in_sas.find(r.spi); it != in_sas.end()) return dp::esp_sa_stats(*it->second);
  return std::nullopt;
}

json Appliance::Impl::show_sas() {
  json out = json::array();
  if (!sa_table) return out;
  const uint64_t now = mono_ms();
  for (const SaRow& r : sa_table->rows(now)) {
    const bool is_out = r.dir == SaDir::kOutbound;
    const std::optional<dp::EspSaStats> st = sa_stats(r);
    // The workers' counters are newer than the table's copy from the last tick.
    const uint64_t pkts = st ? std::max(st->packets, r.packets) : r.packets;
    const uint64_t bytes = st ? std::max(st->bytes, r.bytes) : r.bytes;
    out.push_back({{"spi", fmt::format("0x{:08x}", r.spi)},
                   {"path", r.path < topo.paths.size() ? topo.paths[r.path].name : std::to_string(r.path)},
                   {"direction", dir_name(is_out)},
                   {"epoch", r.epoch},
                   {"state", sa_state_name(r.state)},
                   {"packets", pkts},
                   {"bytes", bytes},
                   {"seq", st ? json(st->seq) : json(nullptr)},
                   {"age_s", r.age_ms / 1000},
                   {"age_ms", r.age_ms},
                   {"soft_limit_reached", r.soft},
                   {"installed", st.has_value()},
                   {"replay", st ? st->replay : 0},
                   {"too_old", st ? st->too_old : 0},
                   {"icv_fail", st ? st->icv_fail : 0},
                   {"bad_trailer", st ? st->bad_trailer : 0}});
  }
  return out;
}

void Appliance::Impl::shutdown() {
  if (drills && drills->running() && workers_launched) {
    drills->abort(mono_ns(), wall_ms());
    drill_record();
  }
  // Socket first, so clients see the daemon go away before anything else does.
  mgmt.reset();
  // The checks emit events: they end before the bus does.
  apps.reset();
  // Then the hooks (ended, reaped) and the event log (written out).
  event_bus.reset();
  telemetry_detach();
  metrics_http.reset();
  metrics_ex->close();
  if (workers_launched) {
    workers_stop.store(true, std::memory_order_relaxed);
    rte_eal_mp_wait_lcore();
    workers_launched = false;
  }
  for (auto& slot : workers) {
    for (rte_ring* r : {slot.ch.to_control_pkts, slot.ch.from_control_tx}) {
      if (r == nullptr) continue;
      void* m = nullptr;
      while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      rte_ring_free(r);
    }
    rte_ring_free(slot.ch.to_control_resolve);
    rte_ring_free(slot.ch.to_control_probes);
  }
  workers.clear();
  handoff.reset();
  if (host_plan) host_stack_down(*host_plan);
  host_plan.reset();
  for (const auto& p : ports) drv::close_port(p.port_id);
  ports.clear();
  published.reset();
  routes.reset();
  rcu.reset();
  if (pool != nullptr) rte_mempool_free(pool);
  pool = nullptr;
  if (eal_up) rte_eal_cleanup();
  eal_up = false;
}

// Path failures from the monitor's event ring: every change since the last look (the ring
// keeps kEventCapacity, and this runs at least once a second).
void Appliance::Impl::count_path_failures() {
  if (path_failures.size() < topo.paths.size()) path_failures.resize(topo.paths.size(), 0);
  const EventRing& ev = monitor.events();
  if (ev.total() < path_events_seen) path_events_seen = 0;  // a new monitor: its ring starts again
  const uint64_t fresh = std::min<uint64_t>(ev.total() - path_events_seen, ev.size());
  for (size_t i = ev.size() - fresh; i < ev.size(); ++i) {
    const PathEvent& e = ev[i];
    if (e.from == PathStatus::kUp && e.to != PathStatus::kUp && e.path < path_failures.size()) ++path_failures[e.path];
  }
  path_events_seen = ev.total();
}

// The per-second figures: new flows, each worker's busy time, the host's CPU.
void Appliance::Impl::metrics_second(uint64_t now_ns) {
  count_path_failures();
  busy_rate.resize(workers.size());
  uint64_t created = 0;
  for (size_t w = 0; w < workers.size(); ++w) {
    const auto& c = workers[w].worker->counters();
    created += c.flows_created.load();
    busy_rate[w].sample(c.busy_tsc.load(), now_ns);
  }
  flow_rate.sample(created, now_ns);
  if (auto t = parse_proc_stat(read_text_file("/proc/stat"))) cpu_meter.sample(*t);
}

void Appliance::Impl::serve_metrics(uint64_t now_ns) {
  const uint64_t ticket = metrics_ex->begin();
  metrics_ex->put(ticket, std::make_shared<const MetricsData>(collect_metrics(now_ns)));
}

// Everything the metrics page and the telemetry commands show, read the way the show_*
// answers read it (docs/metrics.md names each figure's source).
MetricsData Appliance::Impl::collect_metrics(uint64_t now_ns) {
  const uint64_t t0 = mono_ns();
  count_path_failures();
  MetricsData d;
  d.name = cfg.name;
  d.role = std::string(role_name(cfg.role));
  d.version = version();
  d.uptime_s = static_cast<double>(mono_ms() - started_ms) / 1e3;
  d.snapshots = generation;
  const double hz = static_cast<double>(rte_get_tsc_hz());
  if (apps)
    for (const AppStatus& a : apps->status())
      d.apps.push_back({a.name, a.type, a.target, a.state != "unknown", a.state == "ok", a.latency_ms, a.success_pct,
                        a.ok, a.failed});

  for (const auto& tp : topo.paths) {
    const auto m = monitor.metrics(tp.id, now_ns);
    if (!m) continue;
    MetricsData::Path x;
    for (const auto& w : workers) {
      const auto& c = w.worker->path_counters()[tp.id];
      x.tx_pkts += c.tx_pkts.load();
      x.tx_bytes += c.tx_bytes.load();
      x.rx_pkts += c.rx_pkts.load();
      x.rx_bytes += c.rx_bytes.load();
      x.probes_sent += c.probes_sent.load();
      x.probes_received += c.probes_received.load();
    }
    x.name = tp.name;
    x.uplink = topo.ports[tp.port].name;
    x.peer = cfg.peers[tp.peer].name;
    x.endpoint = tp.remote.str() + ":" + std::to_string(tp.remote_port);
    x.state = std::string(path_status_name(m->state));
    x.usable = path_usable(tp);
    // The reason needs the full view (percentiles sorted): only for the paths that are not up.
    if (m->state != PathStatus::kUp) {
      const auto v = monitor.view(tp.id, now_ns);
      x.reason = !x.usable && m->state != PathStatus::kDamped ? down_reason(tp) : v ? v->reason : std::string();
    }
    x.rtt_ms = m->rtt_ms;
    x.jitter_ms = m->jitter_ms;
    x.loss_fwd_pct = m->loss_fwd_pct;
    x.loss_rev_pct = m->loss_rev_pct;
    x.failures = tp.id < path_failures.size() ? path_failures[tp.id] : 0;
    d.tunnel_failures += x.failures;
    d.paths.push_back(std::move(x));
  }

  for (size_t i = 0; i < ports.size(); ++i) {
    rte_eth_stats st{};
    rte_eth_stats_get(ports[i].port_id, &st);
    MetricsData::Port x;
    x.name = topo.ports[i].name;
    x.uplink = topo.ports[i].role == dp::PortRole::kUplink;
    x.link_up = live[i].link_up;
    x.rx_pkts = st.ipackets;
    x.rx_bytes = st.ibytes;
    x.tx_pkts = st.opackets;
    x.tx_bytes = st.obytes;
    x.rx_missed = st.imissed;
    x.rx_errors = st.ierrors;
    x.rx_nombuf = st.rx_nombuf;
    x.tx_errors = st.oerrors;
    d.ports.push_back(std::move(x));
  }
  for (size_t i = 1; i <= cfg.uplinks.size(); ++i) {
    const auto& u = cfg.uplinks[static_cast<size_t>(topo.ports[i].uplink)];
    MetricsData::Uplink x;
    x.name = u.name;
    x.link_up = live[i].link_up;
    x.next_hop_resolved = neighbors->lookup(static_cast<uint8_t>(i), u.next_hop).has_value();
    x.metered = u.cost == CostTier::kMetered;
    x.bandwidth_bps = u.bandwidth_bps;
    d.uplinks.push_back(std::move(x));
  }

  const uint16_t np = compiler->n_peers();
  for (uint8_t c = 0; c < cfg.classes.size(); ++c) {
    MetricsData::Class k;
    k.name = cfg.classes[c].name;
    k.mode = std::string(mode_name(cfg.classes[c].mode));
    for (const auto& w : workers) {
      k.packets += w.worker->counters().class_pkts[c].load();
      k.bytes += w.worker->counters().class_bytes[c].load();
    }
    for (uint16_t p = 0; p < np; ++p) {
      const ClassDecision* dec = compiler->decision(c, p);
      if (dec == nullptr) continue;
      MetricsData::ClassPeer x;
      x.cls = k.name;
      x.peer = compiler->peer_name(p);
      x.mode = k.mode;
      x.sla_met = dec->sla_met;
      x.fallback = dec->fallback;
      if (dec->out.primary != dp::kNoPathId) x.primary = compiler->path_name(dec->out.primary);
      if (cfg.classes[c].mode == dp::ClassMode::kDuplicate && dec->out.duplicating &&
          dec->out.secondary != dp::kNoPathId)
        x.secondary = compiler->path_name(dec->out.secondary);
      for (const PathDecision& pd : dec->paths)
        if (pd.verdict == Verdict::kChosen) x.paths.emplace_back(compiler->path_name(pd.id), pd.weight);
      d.class_peers.push_back(std::move(x));
    }
    d.classes.push_back(std::move(k));
  }

  if (sa_table) {
    for (const SaRow& r : sa_table->rows(mono_ms())) {
      const bool is_out = r.dir == SaDir::kOutbound;
      const std::optional<dp::EspSaStats> st = sa_stats(r);
      MetricsData::Sa x;
      x.spi = fmt::format("0x{:08x}", r.spi);
      x.path = r.path < topo.paths.size() ? topo.paths[r.path].name : std::to_string(r.path);
      x.direction = dir_name(is_out);
      x.state = sa_state_name(r.state);
      x.epoch = r.epoch;
      x.installed = st.has_value();
      x.packets = st ? std::max(st->packets, r.packets) : r.packets;
      x.bytes = st ? std::max(st->bytes, r.bytes) : r.bytes;
      if (st) {
        x.replay = st->replay;
        x.too_old = st->too_old;
        x.icv_fail = st->icv_fail;
        x.bad_trailer = st->bad_trailer;
      }
      x.age_s = static_cast<double>(r.age_ms) / 1e3;
      d.sas.push_back(std::move(x));
    }
  }
  d.sas_in = in_sas.size();
  d.sas_out = static_cast<uint64_t>(std::count_if(out_sas.begin(), out_sas.end(), [](const auto& s) { return s != nullptr; }));

  for (size_t r = 0; r < static_cast<size_t>(dp::Drop::kCount); ++r)
    d.drop_reasons.emplace_back(dp::drop_name(static_cast<dp::Drop>(r)));
  std::array<uint64_t, static_cast<size_t>(dp::EspDrop::kCount)> esp_drops{};
  for (size_t w = 0; w < workers.size(); ++w) {
    const auto& c = workers[w].worker->counters();
    const auto& e = workers[w].worker->esp_counters();
    MetricsData::Worker x;
    x.index = workers[w].worker->index();
    x.lcore = workers[w].lcore;
    x.polls = c.polls.load();
    x.busy_polls = c.busy_polls.load();
    x.handoff_out = c.handoff_out.load();
    x.handoff_in = c.handoff_in.load();
    x.busy_s = hz > 0 ? static_cast<double>(c.busy_tsc.load()) / hz : 0;
    if (w < busy_rate.size() && busy_rate[w].rate() && hz > 0) x.busy_ratio = std::min(1.0, *busy_rate[w].rate() / hz);
    x.flows = workers[w].worker->flow_count();
    for (size_t r = 0; r < static_cast<size_t>(dp::Drop::kCount); ++r) x.drops.push_back(c.drops[r].load());
    d.flows_active += x.flows;
    d.flows_created += c.flows_created.load();
    d.flow_cache_full += c.flow_cache_full.load();
    d.encapsulated += c.encapsulated.load();
    d.decapsulated += c.decapsulated.load();
    d.icmp_echo_replied += c.icmp_echo_replied.load();
    d.to_host += c.to_host.load();
    d.icmp_errors_sent += c.icmp_errors_sent.load();
    d.mss_clamped += c.mss_clamped.load();
    d.dup_sent += c.dup_sent();
    d.probe_reports_lost += c.probe_reports_lost.load();
    d.esp_out_pkts += e.enc_pkts.load();
    d.esp_out_bytes += e.enc_bytes.load();
    d.esp_in_pkts += e.dec_pkts.load();
    d.esp_in_bytes += e.dec_bytes.load();
    for (size_t r = 0; r < esp_drops.size(); ++r) esp_drops[r] += e.drops[r].load();
    d.workers.push_back(std::move(x));
  }
  for (size_t r = 0; r < esp_drops.size(); ++r)
    d.esp_drops.emplace_back(std::string(dp::esp_drop_name(static_cast<dp::EspDrop>(r))), esp_drops[r]);
  d.auth_failures = esp_drops[static_cast<size_t>(dp::EspDrop::kIcvFail)];
  d.flows_per_s = flow_rate.rate();
  d.control_tx_dropped = control_tx_dropped;
  if (pool != nullptr) d.mempools.push_back({pool->name, pool->size, rte_mempool_in_use_count(pool)});

  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  d.cpus = cpus > 0 ? static_cast<unsigned>(cpus) : 0;
  d.cpu_usage = cpu_meter.ratio();
  d.load = parse_loadavg(read_text_file("/proc/loadavg"));
  d.mem = parse_meminfo(read_text_file("/proc/meminfo"));
  // The root filesystem and the one that holds the epoch store: a full disk there stops SAs.
  std::vector<std::string> dirs = {"/"};
  if (const size_t slash = cfg.esp.epoch_store.rfind('/'); slash != std::string::npos && slash != 0)
    dirs.push_back(cfg.esp.epoch_store.substr(0, slash));
  for (const auto& dir : dirs)
    if (auto s = disk_space(dir)) d.disks.push_back({dir, s->size_bytes, s->avail_bytes});
  d.collect_s = static_cast<double>(mono_ns() - t0) / 1e9;
  return d;
}

Appliance::Appliance(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Appliance::~Appliance() {
  if (impl_) impl_->shutdown();
}

Result<std::unique_ptr<Appliance>> Appliance::start(const Config& cfg) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  auto st = impl->bring_up();
  if (!st) {
    impl->shutdown();
    return st.error();
  }
  return std::unique_ptr<Appliance>(new Appliance(std::move(impl)));
}

}  // namespace sdwan::cp
