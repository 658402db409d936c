#include "control/metrics/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

namespace sdwan::cp {
namespace {

using json = nlohmann::json;

struct Label {
  std::string_view name;
  std::string_view value;
};

// The text format's writer: a family is its HELP and TYPE lines, then its samples. Every
// family is written once, even without samples, so a scraper sees the same set every time.
class Page {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    // HELP text escapes only backslash and newline.
    for (char c : help) {
      if (c == '\\') out_ += "\\\\";
      else if (c == '\n') out_ += "\\n";
      else out_ += c;
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::initializer_list<Label> labels, uint64_t v) { sample_head(labels) += fmt::format("{}\n", v); }

  void sample(std::initializer_list<Label> labels, double v) {
    std::string& o = sample_head(labels);
    if (std::isnan(v)) o += "NaN\n";
    else if (std::isinf(v)) o += v > 0 ? "+Inf\n" : "-Inf\n";
    else o += fmt::format("{}\n", v);
  }

  void sample(std::initializer_list<Label> labels, bool v) { sample(labels, uint64_t{v ? 1u : 0u}); }

  // Unknown figures (no RTT yet) have no sample: absent, not zero.
  void sample(std::initializer_list<Label> labels, const std::optional<double>& v) {
    if (v) sample(labels, *v);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string& sample_head(std::initializer_list<Label> labels) {
    out_ += name_;
    if (labels.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const Label& l : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += l.name;
        out_ += "=\"";
        for (char c : l.value) {
          if (c == '\\') out_ += "\\\\";
          else if (c == '"') out_ += "\\\"";
          else if (c == '\n') out_ += "\\n";
          else out_ += c;
        }
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    return out_;
  }

  std::string out_;
  std::string_view name_;
};

constexpr double kMs = 1e-3;

std::optional<double> scaled(const std::optional<double>& v, double f) {
  if (!v) return std::nullopt;
  return *v * f;
}

void render_paths(Page& p, const MetricsData& d) {
  p.family("sdwan_paths", "gauge", "Paths configured (uplink x peer endpoint).");
  p.sample({}, uint64_t{d.paths.size()});
  uint64_t up = 0;
  for (const auto& x : d.paths) up += x.state == "up" ? 1 : 0;
  p.family("sdwan_paths_up", "gauge", "Paths whose state is up.");
  p.sample({}, up);

  p.family("sdwan_path_up", "gauge", "1 when the path's state is up (probes answered, not damped), else 0.");
  for (const auto& x : d.paths) p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}}, x.state == "up");
  p.family("sdwan_path_state", "gauge", "1 for the path's current state (up, down or damped), 0 for the others.");
  for (const auto& x : d.paths)
    for (std::string_view s : {"up", "down", "damped"})
      p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}, {"state", s}}, x.state == s);
  p.family("sdwan_path_usable", "gauge",
           "1 when the path can send: link up, next hop resolved, outbound SA installed.");
  for (const auto& x : d.paths) p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}}, x.usable);
  p.family("sdwan_path_rtt_seconds", "gauge", "Smoothed round-trip time of the path's probes (absent until measured).");
  for (const auto& x : d.paths)
    p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}}, scaled(x.rtt_ms, kMs));
  p.family("sdwan_path_jitter_seconds", "gauge", "Round-trip time jitter of the path's probes (absent until measured).");
  for (const auto& x : d.paths)
    p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}}, scaled(x.jitter_ms, kMs));
  p.family("sdwan_path_loss_ratio", "gauge",
           "Probe loss over the statistics window, 0..1; direction forward is towards the peer.");
  for (const auto& x : d.paths) {
    p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}, {"direction", "forward"}},
             scaled(x.loss_fwd_pct, 0.01));
    p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}, {"direction", "reverse"}},
             scaled(x.loss_rev_pct, 0.01));
  }
  struct Counter {
    const char* name;
    const char* help;
    uint64_t MetricsData::Path::*field;
  };
  static constexpr Counter kCounters[] = {
      {"sdwan_path_tx_packets_total", "Data packets sent on the path (probes not included).",
       &MetricsData::Path::tx_pkts},
      {"sdwan_path_tx_bytes_total", "Inner bytes of the data packets sent on the path.", &MetricsData::Path::tx_bytes},
      {"sdwan_path_rx_packets_total", "Data packets received on the path (probes not included).",
       &MetricsData::Path::rx_pkts},
      {"sdwan_path_rx_bytes_total", "Inner bytes of the data packets received on the path.",
       &MetricsData::Path::rx_bytes},
      {"sdwan_path_probes_sent_total", "Probes sent on the path.", &MetricsData::Path::probes_sent},
      {"sdwan_path_probes_received_total", "Probe reflections received back on the path.",
       &MetricsData::Path::probes_received},
      {"sdwan_path_failures_total", "Times the path went from up to down or damped.", &MetricsData::Path::failures},
  };
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    for (const auto& x : d.paths) p.sample({{"path", x.name}, {"uplink", x.uplink}, {"peer", x.peer}}, x.*c.field);
  }
}

void render_ports(Page& p, const MetricsData& d) {
  struct Counter {
    const char* name;
    const char* help;
    uint64_t MetricsData::Port::*field;
  };
  static constexpr Counter kCounters[] = {
      {"sdwan_port_rx_packets_total", "Packets the port's driver received.", &MetricsData::Port::rx_pkts},
      {"sdwan_port_rx_bytes_total", "Bytes the port's driver received.", &MetricsData::Port::rx_bytes},
      {"sdwan_port_tx_packets_total", "Packets the port's driver sent.", &MetricsData::Port::tx_pkts},
      {"sdwan_port_tx_bytes_total", "Bytes the port's driver sent.", &MetricsData::Port::tx_bytes},
  };
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    for (const auto& x : d.ports) p.sample({{"port", x.name}}, x.*c.field);
  }
  p.family("sdwan_port_drops_total", "counter",
           "Packets the port's driver lost, by reason: rx_missed (RX ring full), rx_errors, rx_nombuf (no mbuf), "
           "tx_errors.");
  for (const auto& x : d.ports) {
    p.sample({{"port", x.name}, {"reason", "rx_missed"}}, x.rx_missed);
    p.sample({{"port", x.name}, {"reason", "rx_errors"}}, x.rx_errors);
    p.sample({{"port", x.name}, {"reason", "rx_nombuf"}}, x.rx_nombuf);
    p.sample({{"port", x.name}, {"reason", "tx_errors"}}, x.tx_errors);
  }
  p.family("sdwan_port_link_up", "gauge", "1 when the port's link is up.");
  for (const auto& x : d.ports) p.sample({{"port", x.name}}, x.link_up);

  p.family("sdwan_uplink_up", "gauge", "1 when the uplink's link is up and its next hop is resolved.");
  for (const auto& u : d.uplinks) p.sample({{"uplink", u.name}}, u.link_up && u.next_hop_resolved);
  p.family("sdwan_uplink_link_up", "gauge", "1 when the uplink's port has link.");
  for (const auto& u : d.uplinks) p.sample({{"uplink", u.name}}, u.link_up);
  p.family("sdwan_uplink_next_hop_resolved", "gauge", "1 when the uplink's next hop answered ARP.");
  for (const auto& u : d.uplinks) p.sample({{"uplink", u.name}}, u.next_hop_resolved);
  p.family("sdwan_uplink_metered", "gauge", "1 when the uplink is billed per byte (cost: metered).");
  for (const auto& u : d.uplinks) p.sample({{"uplink", u.name}}, u.metered);
  p.family("sdwan_uplink_bandwidth_bytes_per_second", "gauge",
           "The uplink's configured bandwidth (absent when not configured).");
  for (const auto& u : d.uplinks)
    if (u.bandwidth_bps != 0) p.sample({{"uplink", u.name}}, static_cast<double>(u.bandwidth_bps) / 8.0);
}

void render_workers(Page& p, const MetricsData& d) {
  p.family("sdwan_drops_total", "counter",
           "Packets a worker dropped, by reason (docs/metrics.md lists them); summed over ports.");
  for (const auto& w : d.workers) {
    const std::string wi = std::to_string(w.index);
    for (size_t r = 0; r < w.drops.size() && r < d.drop_reasons.size(); ++r)
      p.sample({{"worker", wi}, {"reason", d.drop_reasons[r]}}, w.drops[r]);
  }
  p.family("sdwan_worker_busy_ratio", "gauge",
           "Share of the last second the worker spent in polls that moved packets, 0..1.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, w.busy_ratio);
  p.family("sdwan_worker_busy_seconds_total", "counter", "Time the worker spent in polls that moved packets.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, w.busy_s);
  p.family("sdwan_worker_polls_total", "counter", "Iterations of the worker's loop.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, w.polls);
  p.family("sdwan_worker_busy_polls_total", "counter", "Iterations of the worker's loop that moved at least one packet.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, w.busy_polls);
  p.family("sdwan_worker_handoff_packets_total", "counter",
           "Duplicate and spray packets handed to the worker that owns their stream (out), or taken from another worker (in).");
  for (const auto& w : d.workers) {
    p.sample({{"worker", std::to_string(w.index)}, {"direction", "out"}}, w.handoff_out);
    p.sample({{"worker", std::to_string(w.index)}, {"direction", "in"}}, w.handoff_in);
  }
  p.family("sdwan_worker_flows", "gauge", "Flows in the worker's flow cache.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, w.flows);
  p.family("sdwan_worker_lcore", "gauge", "The DPDK lcore (CPU) the worker runs on.");
  for (const auto& w : d.workers) p.sample({{"worker", std::to_string(w.index)}}, uint64_t{w.lcore});

  p.family("sdwan_mempool_mbufs", "gauge", "Capacity of the packet buffer pool.");
  for (const auto& m : d.mempools) p.sample({{"pool", m.name}}, m.size);
  p.family("sdwan_mempool_mbufs_in_use", "gauge",
           "Packet buffers in use: in rings, in flight, or cached per lcore.");
  for (const auto& m : d.mempools) p.sample({{"pool", m.name}}, m.in_use);
  p.family("sdwan_mempool_use_ratio", "gauge", "Packet buffers in use over capacity, 0..1.");
  for (const auto& m : d.mempools)
    if (m.size != 0) p.sample({{"pool", m.name}}, static_cast<double>(m.in_use) / static_cast<double>(m.size));
}

void render_classes(Page& p, const MetricsData& d) {
  p.family("sdwan_class_packets_total", "counter", "LAN packets of the class sent to a peer.");
  for (const auto& c : d.classes) p.sample({{"class", c.name}}, c.packets);
  p.family("sdwan_class_bytes_total", "counter", "Inner bytes of the class's LAN packets sent to a peer.");
  for (const auto& c : d.classes) p.sample({{"class", c.name}}, c.bytes);
  p.family("sdwan_class_paths", "gauge", "Paths the class currently uses towards the peer.");
  for (const auto& c : d.class_peers) p.sample({{"class", c.cls}, {"peer", c.peer}}, uint64_t{c.paths.size()});
  p.family("sdwan_class_path_share_ratio", "gauge",
           "Each path the class currently uses towards the peer, with its share of the class's flows (balance) or "
           "packets (spray), 0..1; best and duplicate: 1 for each path chosen (each carries all it is chosen for).");
  for (const auto& c : d.class_peers) {
    uint64_t sum = 0;
    for (const auto& pw : c.paths) sum += pw.second;
    for (const auto& [path, w] : c.paths)
      p.sample({{"class", c.cls}, {"peer", c.peer}, {"path", path}},
               sum == 0 ? 1.0 : static_cast<double>(w) / static_cast<double>(sum));
  }
  p.family("sdwan_class_primary_path", "gauge", "1 for the class's primary path towards the peer (absent: none).");
  for (const auto& c : d.class_peers)
    if (!c.primary.empty()) p.sample({{"class", c.cls}, {"peer", c.peer}, {"path", c.primary}}, uint64_t{1});
  p.family("sdwan_class_sla_met", "gauge", "1 when the paths the class uses towards the peer meet its SLA.");
  for (const auto& c : d.class_peers) p.sample({{"class", c.cls}, {"peer", c.peer}}, c.sla_met);
  p.family("sdwan_class_fallback", "gauge",
           "1 when no path meets the class's SLA towards the peer and its fallback carries it.");
  for (const auto& c : d.class_peers) p.sample({{"class", c.cls}, {"peer", c.peer}}, c.fallback);
}

void render_esp(Page& p, const MetricsData& d) {
  p.family("sdwan_esp_packets_total", "counter", "ESP packets encrypted (direction out) or decrypted and verified (in).");
  p.sample({{"direction", "out"}}, d.esp_out_pkts);
  p.sample({{"direction", "in"}}, d.esp_in_pkts);
  p.family("sdwan_esp_bytes_total", "counter", "Inner bytes of those ESP packets.");
  p.sample({{"direction", "out"}}, d.esp_out_bytes);
  p.sample({{"direction", "in"}}, d.esp_in_bytes);
  p.family("sdwan_esp_drops_total", "counter", "Packets the ESP transform refused, by reason.");
  for (const auto& [reason, n] : d.esp_drops) p.sample({{"reason", reason}}, n);
  p.family("sdwan_sas", "gauge", "Security associations installed in the dataplane.");
  p.sample({{"direction", "out"}}, d.sas_out);
  p.sample({{"direction", "in"}}, d.sas_in);

  const auto sa_labels = [](const MetricsData::Sa& s) {
    return std::array<Label, 3>{Label{"path", s.path}, Label{"direction", s.direction}, Label{"spi", s.spi}};
  };
  struct Counter {
    const char* name;
    const char* help;
    uint64_t MetricsData::Sa::*field;
  };
  static constexpr Counter kCounters[] = {
      {"sdwan_sa_packets_total", "Packets the SA encrypted or decrypted.", &MetricsData::Sa::packets},
      {"sdwan_sa_bytes_total", "Inner bytes the SA encrypted or decrypted.", &MetricsData::Sa::bytes},
  };
  for (const Counter& c : kCounters) {
    p.family(c.name, "counter", c.help);
    for (const auto& s : d.sas) {
      const auto l = sa_labels(s);
      p.sample({l[0], l[1], l[2]}, s.*c.field);
    }
  }
  p.family("sdwan_sa_drops_total", "counter",
           "Inbound packets the SA refused, by reason: replay, too_old, icv_fail, bad_trailer.");
  for (const auto& s : d.sas) {
    if (s.direction != "in") continue;
    const auto l = sa_labels(s);
    p.sample({l[0], l[1], l[2], {"reason", "replay"}}, s.replay);
    p.sample({l[0], l[1], l[2], {"reason", "too_old"}}, s.too_old);
    p.sample({l[0], l[1], l[2], {"reason", "icv_fail"}}, s.icv_fail);
    p.sample({l[0], l[1], l[2], {"reason", "bad_trailer"}}, s.bad_trailer);
  }
  p.family("sdwan_sa_state", "gauge", "1 for the SA's current state (active, standby or draining), 0 for the others.");
  for (const auto& s : d.sas) {
    const auto l = sa_labels(s);
    for (std::string_view st : {"active", "standby", "draining"}) p.sample({l[0], l[1], l[2], {"state", st}}, s.state == st);
  }
  p.family("sdwan_sa_installed", "gauge", "1 when the SA is in the dataplane (0: decided but not installed yet).");
  for (const auto& s : d.sas) {
    const auto l = sa_labels(s);
    p.sample({l[0], l[1], l[2]}, s.installed);
  }
  p.family("sdwan_sa_epoch", "gauge", "The SA's key epoch (docs/keys.md).");
  for (const auto& s : d.sas) {
    const auto l = sa_labels(s);
    p.sample({l[0], l[1], l[2]}, uint64_t{s.epoch});
  }
  p.family("sdwan_sa_age_seconds", "gauge", "Time since the SA was installed.");
  for (const auto& s : d.sas) {
    const auto l = sa_labels(s);
    p.sample({l[0], l[1], l[2]}, s.age_s);
  }
}

void render_sessions(Page& p, const MetricsData& d) {
  p.family("sdwan_flows_active", "gauge", "Flows in every worker's flow cache.");
  p.sample({}, d.flows_active);
  p.family("sdwan_flows_created_total", "counter", "Flows created (a first packet classified).");
  p.sample({}, d.flows_created);
  p.family("sdwan_flows_new_per_second", "gauge", "Flows created per second over the last second.");
  p.sample({}, d.flows_per_s);
  p.family("sdwan_flow_cache_full_total", "counter", "Flows not cached because the cache was full (packets still sent).");
  p.sample({}, d.flow_cache_full);
  p.family("sdwan_tunnel_failures_total", "counter", "Times a path went from up to down or damped, over every path.");
  p.sample({}, d.tunnel_failures);
  p.family("sdwan_auth_failures_total", "counter",
           "ESP packets whose integrity check (ICV) failed: wrong key, tampering or corruption.");
  p.sample({}, d.auth_failures);

  struct Counter {
    const char* name;
    const char* help;
    uint64_t value;
  };
  const Counter counters[] = {
      {"sdwan_encapsulated_packets_total", "LAN packets sent into the overlay.", d.encapsulated},
      {"sdwan_decapsulated_packets_total", "Overlay packets delivered to the LAN.", d.decapsulated},
      {"sdwan_icmp_echo_replied_total", "ICMP echo requests to the appliance answered.", d.icmp_echo_replied},
      {"sdwan_host_port_delivered_packets_total",
       "Packets for the LAN address handed to the host stack through the host port.", d.to_host},
      {"sdwan_icmp_errors_sent_total", "ICMP errors the appliance sent (time exceeded, unreachable, too big).",
       d.icmp_errors_sent},
      {"sdwan_mss_clamped_total", "TCP SYNs whose MSS was lowered to fit the tunnel.", d.mss_clamped},
      {"sdwan_duplicates_sent_total", "Second copies sent for duplicate-mode classes.", d.dup_sent},
      {"sdwan_probe_reports_lost_total", "Probe results the control thread's ring had no room for.",
       d.probe_reports_lost},
      {"sdwan_control_tx_dropped_total", "Frames of the control thread (ARP) not sent: no mbuf or ring full.",
       d.control_tx_dropped},
      {"sdwan_snapshots_published_total", "Snapshots the control thread published to the workers.", d.snapshots},
  };
  for (const Counter& c : counters) {
    p.family(c.name, "counter", c.help);
    p.sample({}, c.value);
  }
}

void render_apps(Page& p, const MetricsData& d) {
  p.family("sdwan_app_up", "gauge", "1 when the application check's last run succeeded (no sample before the first).");
  for (const auto& a : d.apps)
    if (a.known) p.sample({{"app", a.name}, {"type", a.type}}, a.up);
  p.family("sdwan_app_check_latency_seconds", "gauge",
           "The last successful check's duration: the TCP connect, or the whole HTTP GET.");
  for (const auto& a : d.apps) p.sample({{"app", a.name}, {"type", a.type}}, scaled(a.latency_ms, 1e-3));
  p.family("sdwan_app_success_ratio", "gauge", "Share of the last 20 checks that succeeded, 0..1.");
  for (const auto& a : d.apps)
    p.sample({{"app", a.name}, {"type", a.type}},
             a.success_pct ? std::optional<double>(*a.success_pct / 100.0) : std::nullopt);
  p.family("sdwan_app_checks_total", "counter", "Application checks run, by result.");
  for (const auto& a : d.apps) {
    p.sample({{"app", a.name}, {"type", a.type}, {"result", "ok"}}, a.ok);
    p.sample({{"app", a.name}, {"type", a.type}, {"result", "failed"}}, a.failed);
  }
}

void render_host(Page& p, const MetricsData& d) {
  p.family("sdwan_host_cpus", "gauge", "CPUs of the host.");
  p.sample({}, uint64_t{d.cpus});
  p.family("sdwan_host_cpu_usage_ratio", "gauge", "Share of all CPUs' time busy over the last second, 0..1.");
  p.sample({}, d.cpu_usage);
  p.family("sdwan_host_load1", "gauge", "Load average over 1 minute.");
  if (d.load) p.sample({}, d.load->m1);
  p.family("sdwan_host_load5", "gauge", "Load average over 5 minutes.");
  if (d.load) p.sample({}, d.load->m5);
  p.family("sdwan_host_load15", "gauge", "Load average over 15 minutes.");
  if (d.load) p.sample({}, d.load->m15);
  p.family("sdwan_host_memory_size_bytes", "gauge", "The host's memory (MemTotal).");
  p.sample({}, d.mem.total_bytes);
  p.family("sdwan_host_memory_available_bytes", "gauge", "Memory available to new work (MemAvailable).");
  p.sample({}, d.mem.available_bytes);
  p.family("sdwan_host_hugepages", "gauge", "Hugepages reserved on the host (default size).");
  p.sample({}, d.mem.hugepages_total);
  p.family("sdwan_host_hugepages_free", "gauge", "Hugepages nobody has taken yet.");
  p.sample({}, d.mem.hugepages_free);
  p.family("sdwan_host_hugepage_size_bytes", "gauge", "Size of one default hugepage.");
  p.sample({}, d.mem.hugepage_size_bytes);
  p.family("sdwan_host_disk_size_bytes", "gauge", "Size of the filesystem holding dir.");
  for (const auto& k : d.disks) p.sample({{"dir", k.dir}}, k.size_bytes);
  p.family("sdwan_host_disk_available_bytes", "gauge", "Space left on the filesystem holding dir.");
  for (const auto& k : d.disks) p.sample({{"dir", k.dir}}, k.avail_bytes);
}

// Telemetry has integers only: figures in micro-units, unknown ones left out.
void put_scaled(json& o, const char* key, const std::optional<double>& v, double f) {
  if (v && std::isfinite(*v) && *v >= 0) o[key] = static_cast<uint64_t>(std::llround(*v * f));
}

// Adds entries while the answer stays under budget bytes of JSON (DPDK telemetry cuts an answer
// at 16 KiB without a word); the rest is named under "truncated".
template <class Items, class Make>
json keyed(const Items& items, size_t budget, Make&& make) {
  json out = json::object();
  size_t used = 2, shown = 0, total = 0;
  for (const auto& it : items) {
    std::optional<json> o = make(it);
    if (!o) continue;
    ++total;
    if (used > budget) continue;
    const std::string key = std::to_string(total - 1);
    // The telemetry library writes `"key": value, `: a few bytes more than compact JSON.
    const size_t size = o->dump().size() + key.size() + 8 + 2 * o->size();
    if (used + size > budget) {
      used = budget + 1;
      continue;
    }
    used += size;
    out[key] = std::move(*o);
    ++shown;
  }
  if (shown < total) out["truncated"] = {{"shown", shown}, {"total", total}};
  return out;
}

}  // namespace

std::string render_prometheus(const MetricsData& d) {
  Page p;
  p.family("sdwan_info", "gauge", "Always 1; the labels name the appliance, its role and sdwand's version.");
  p.sample({{"name", d.name}, {"role", d.role}, {"version", d.version}}, uint64_t{1});
  p.family("sdwan_uptime_seconds", "gauge", "Time since sdwand started.");
  p.sample({}, d.uptime_s);
  p.family("sdwan_metrics_collect_seconds", "gauge", "How long the control thread took to gather this page's figures.");
  p.sample({}, d.collect_s);
  render_paths(p, d);
  render_ports(p, d);
  render_classes(p, d);
  render_esp(p, d);
  render_workers(p, d);
  render_sessions(p, d);
  render_apps(p, d);
  render_host(p, d);
  return p.take();
}

Result<json> telemetry_paths(const MetricsData& d, std::string_view param, size_t budget) {
  if (!param.empty() && std::none_of(d.paths.begin(), d.paths.end(), [&](const auto& x) { return x.name == param; })) {
    std::string names;
    for (const auto& x : d.paths) names += (names.empty() ? "" : ", ") + x.name;
    return err(fmt::format("no path \"{}\" (paths: {})", param, names));
  }
  return keyed(d.paths, budget, [&](const MetricsData::Path& x) -> std::optional<json> {
    if (!param.empty() && x.name != param) return std::nullopt;
    json o = {{"name", x.name},         {"uplink", x.uplink},         {"peer", x.peer},
              {"endpoint", x.endpoint}, {"state", x.state},           {"usable", x.usable ? 1 : 0},
              {"reason", x.reason},     {"tx_pkts", x.tx_pkts},       {"tx_bytes", x.tx_bytes},
              {"rx_pkts", x.rx_pkts},   {"rx_bytes", x.rx_bytes},     {"probes_sent", x.probes_sent},
              {"probes_received", x.probes_received},                 {"failures", x.failures}};
    put_scaled(o, "rtt_us", x.rtt_ms, 1e3);
    put_scaled(o, "jitter_us", x.jitter_ms, 1e3);
    put_scaled(o, "loss_fwd_ppm", x.loss_fwd_pct, 1e4);
    put_scaled(o, "loss_rev_ppm", x.loss_rev_pct, 1e4);
    return o;
  });
}

Result<json> telemetry_classes(const MetricsData& d, std::string_view param, size_t budget) {
  if (!param.empty() && std::none_of(d.classes.begin(), d.classes.end(), [&](const auto& c) { return c.name == param; })) {
    std::string names;
    for (const auto& c : d.classes) names += (names.empty() ? "" : ", ") + c.name;
    return err(fmt::format("no class \"{}\" (classes: {})", param, names));
  }
  return keyed(d.class_peers, budget, [&](const MetricsData::ClassPeer& c) -> std::optional<json> {
    if (!param.empty() && c.cls != param) return std::nullopt;
    json paths = json::array();
    for (const auto& [name, w] : c.paths) paths.push_back(name);
    json o = {{"class", c.cls},     {"peer", c.peer},         {"mode", c.mode},
              {"paths", paths},     {"primary", c.primary},   {"secondary", c.secondary},
              {"sla_met", c.sla_met ? 1 : 0},                 {"fallback", c.fallback ? 1 : 0}};
    for (const auto& k : d.classes)
      if (k.name == c.cls) {
        o["packets"] = k.packets;
        o["bytes"] = k.bytes;
      }
    return o;
  });
}

json telemetry_stats(const MetricsData& d) {
  json drops = json::object();
  for (size_t r = 0; r < d.drop_reasons.size(); ++r) {
    uint64_t n = 0;
    for (const auto& w : d.workers) n += r < w.drops.size() ? w.drops[r] : 0;
    drops[d.drop_reasons[r]] = n;
  }
  json esp_drops = json::object();
  for (const auto& [reason, n] : d.esp_drops) esp_drops[reason] = n;
  json workers = json::object();
  for (const auto& w : d.workers) {
    json o = {{"lcore", w.lcore}, {"polls", w.polls}, {"busy_polls", w.busy_polls}, {"flows", w.flows}};
    put_scaled(o, "busy_permille", w.busy_ratio, 1e3);
    workers[std::to_string(w.index)] = std::move(o);
  }
  json pools = json::object();
  for (const auto& m : d.mempools) pools[m.name] = {{"size", m.size}, {"in_use", m.in_use}};
  uint64_t up = 0;
  for (const auto& x : d.paths) up += x.state == "up" ? 1 : 0;
  json host = {{"cpus", d.cpus},
               {"memory_bytes", d.mem.total_bytes},
               {"memory_available_bytes", d.mem.available_bytes},
               {"hugepages", d.mem.hugepages_total},
               {"hugepages_free", d.mem.hugepages_free}};
  put_scaled(host, "cpu_usage_permille", d.cpu_usage, 1e3);
  json out = {{"name", d.name},
              {"role", d.role},
              {"version", d.version},
              {"uptime_s", static_cast<uint64_t>(d.uptime_s)},
              {"paths", d.paths.size()},
              {"paths_up", up},
              {"flows_active", d.flows_active},
              {"flows_created", d.flows_created},
              {"flow_cache_full", d.flow_cache_full},
              {"tunnel_failures", d.tunnel_failures},
              {"auth_failures", d.auth_failures},
              {"encapsulated", d.encapsulated},
              {"decapsulated", d.decapsulated},
              {"esp_out_pkts", d.esp_out_pkts},
              {"esp_out_bytes", d.esp_out_bytes},
              {"esp_in_pkts", d.esp_in_pkts},
              {"esp_in_bytes", d.esp_in_bytes},
              {"sas_in", d.sas_in},
              {"sas_out", d.sas_out},
              {"drops", drops},
              {"esp_drops", esp_drops},
              {"workers", workers},
              {"mempools", pools},
              {"host", host}};
  put_scaled(out, "flows_new_per_s", d.flows_per_s, 1.0);
  return out;
}

}  // namespace sdwan::cp
