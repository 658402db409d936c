// sdwanctl: the operator's view of a running sdwand, over its management socket
// (docs/mgmt-api.md). Tables for people; --json prints the daemon's data untouched for tools.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/mgmt/client.hpp"

namespace {

using nlohmann::json;

constexpr int kDefaultTimeoutMs = 5000;
constexpr std::string_view kMissing = "-";

// How a value is turned into a cell. Numbers stay raw except where a unit makes them easier
// to read; the JSON output keeps them raw everywhere.
enum class Kind { kText, kCount, kBytes, kBitsPerSec, kSpeedMbps, kNextHopMac, kList, kMs, kPct, kAge };

struct Column {
  std::string_view header;
  std::string_view key;
  Kind kind;
};

const json* field(const json& row, std::string_view key) {
  if (!row.is_object()) return nullptr;
  auto it = row.find(key);
  return it == row.end() ? nullptr : &*it;
}

std::string text(const json* v) {
  if (v == nullptr || v->is_null()) return std::string(kMissing);
  if (v->is_string()) return v->get<std::string>();
  if (v->is_boolean()) return v->get<bool>() ? "yes" : "no";
  if (v->is_array()) {
    std::string s;
    for (const json& e : *v) {
      if (!s.empty()) s += ',';
      s += text(&e);
    }
    return s.empty() ? std::string(kMissing) : s;
  }
  return v->dump(-1, ' ', false, json::error_handler_t::replace);
}

// 1536 -> "1.5", 2048 -> "2": one decimal, none when it is zero.
std::string one_decimal(double x) {
  std::string s = fmt::format("{:.1f}", x);
  if (s.size() > 2 && s.ends_with(".0")) s.resize(s.size() - 2);
  return s;
}

std::string scaled(double x, double base, std::string_view suffix) {
  static constexpr std::string_view kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  std::size_t u = 0;
  while (std::fabs(x) >= base && u + 1 < std::size(kUnits)) {
    x /= base;
    ++u;
  }
  // Rounding can carry to the base ("1024.0K"): step up once more.
  if (u + 1 < std::size(kUnits) && std::fabs(std::round(x * 10) / 10) >= base) {
    x /= base;
    ++u;
  }
  return fmt::format("{}{}{}", one_decimal(x), kUnits[u], suffix);
}

std::string cell(const json* v, Kind kind) {
  if (v == nullptr) return std::string(kMissing);
  switch (kind) {
    case Kind::kNextHopMac:
      return v->is_null() ? "unresolved" : text(v);
    case Kind::kBytes:
      if (!v->is_number()) return text(v);
      if (std::fabs(v->get<double>()) < 1024) return text(v);
      return scaled(v->get<double>(), 1024, "");
    case Kind::kBitsPerSec:
      // 0 is how the config says "unknown".
      if (!v->is_number() || v->get<double>() == 0) return text(v->is_number() ? nullptr : v);
      return scaled(v->get<double>(), 1000, "bps");
    case Kind::kSpeedMbps:
      // DPDK reports 0 Mb/s for a link that is down or of unknown speed.
      if (!v->is_number() || v->get<double>() == 0) return text(v->is_number() ? nullptr : v);
      return scaled(v->get<double>() * 1e6, 1000, "bps");
    case Kind::kMs:
      // Two decimals: 10 us, the order of the probes' own error.
      return v->is_number() ? fmt::format("{:.2f}", v->get<double>()) : text(v);
    case Kind::kPct:
      return v->is_number() ? fmt::format("{:.2f}", v->get<double>()) : text(v);
    case Kind::kAge: {
      // Seconds since a change: "850ms", "42s", "3m05s", "2h07m", "3d04h".
      if (!v->is_number()) return text(v);
      const double x = v->get<double>();
      if (x < 1) return fmt::format("{}ms", static_cast<long long>(x * 1000));
      const auto t = static_cast<long long>(x);
      if (t < 60) return fmt::format("{}s", t);
      if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
      if (t < 86400) return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
      return fmt::format("{}d{:02}h", t / 86400, t % 86400 / 3600);
    }
    case Kind::kText:
    case Kind::kCount:
    case Kind::kList:
      return text(v);
  }
  return text(v);
}

class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::vector<bool> right)
      : headers_(std::move(headers)), right_(std::move(right)) {}

  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  void print(std::FILE* out) const {
    std::vector<std::size_t> width(headers_.size());
    for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
    for (const auto& r : rows_)
      for (std::size_t c = 0; c < r.size() && c < width.size(); ++c)
        width[c] = std::max(width[c], r[c].size());
    print_row(out, headers_, width);
    for (const auto& r : rows_) print_row(out, r, width);
  }

 private:
  void print_row(std::FILE* out, const std::vector<std::string>& r,
                 const std::vector<std::size_t>& width) const {
    std::string line;
    for (std::size_t c = 0; c < width.size(); ++c) {
      const std::string& v = c < r.size() ? r[c] : std::string(kMissing);
      if (c > 0) line += "  ";
      const bool last = c + 1 == width.size();
      if (right_[c])
        line += fmt::format("{:>{}}", v, width[c]);
      else
        line += last ? v : fmt::format("{:<{}}", v, width[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    fmt::print(out, "{}\n", line);
  }

  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

bool right_aligned(Kind k) {
  return k == Kind::kCount || k == Kind::kBytes || k == Kind::kBitsPerSec || k == Kind::kSpeedMbps ||
         k == Kind::kMs || k == Kind::kPct || k == Kind::kAge;
}

const json& expect_list(const json& data, std::string_view what) {
  if (!data.is_array())
    throw std::runtime_error(fmt::format("unexpected answer from sdwand: {} is not a list", what));
  return data;
}

void print_rows(const json& rows, const std::vector<Column>& cols) {
  std::vector<std::string> headers;
  std::vector<bool> right;
  for (const Column& c : cols) {
    headers.emplace_back(c.header);
    right.push_back(right_aligned(c.kind));
  }
  Table t(std::move(headers), std::move(right));
  for (const json& row : rows) {
    std::vector<std::string> cells;
    for (const Column& c : cols) cells.push_back(cell(field(row, c.key), c.kind));
    t.add(std::move(cells));
  }
  t.print(stdout);
}

void show_ports(const json& data) {
  print_rows(expect_list(data, "ports"), {
      {"NAME", "name", Kind::kText},
      {"SPEC", "spec", Kind::kText},
      {"DRIVER", "driver", Kind::kText},
      {"PORT", "port_id", Kind::kCount},
      {"MAC", "mac", Kind::kText},
      {"LINK", "link", Kind::kText},
      {"SPEED", "speed_mbps", Kind::kSpeedMbps},
      {"MTU", "mtu", Kind::kCount},
      {"RX_PKTS", "rx_pkts", Kind::kCount},
      {"RX_BYTES", "rx_bytes", Kind::kBytes},
      {"TX_PKTS", "tx_pkts", Kind::kCount},
      {"TX_BYTES", "tx_bytes", Kind::kBytes},
      {"RX_MISSED", "rx_missed", Kind::kCount},
      {"RX_ERRORS", "rx_errors", Kind::kCount},
      {"TX_ERRORS", "tx_errors", Kind::kCount},
  });
}

void show_uplinks(const json& data) {
  print_rows(expect_list(data, "uplinks"), {
      {"NAME", "name", Kind::kText},
      {"PORT", "port", Kind::kText},
      {"ADDRESS", "address", Kind::kText},
      {"NEXT_HOP", "next_hop", Kind::kText},
      {"NEXT_HOP_MAC", "next_hop_mac", Kind::kNextHopMac},
      {"COST", "cost", Kind::kText},
      {"BANDWIDTH", "bandwidth_bps", Kind::kBitsPerSec},
      {"MTU", "mtu", Kind::kCount},
      {"LINK", "link", Kind::kText},
      {"STATE", "state", Kind::kText},
  });
}

// "203.0.113.1:4500 via isp1,isp2; 198.51.100.7:4500"
std::string endpoints_cell(const json* eps) {
  if (eps == nullptr || !eps->is_array() || eps->empty()) return text(eps);
  std::string s;
  for (const json& ep : *eps) {
    if (!s.empty()) s += "; ";
    s += text(field(ep, "address"));
    if (const json* port = field(ep, "port"); port != nullptr && !port->is_null())
      s += ":" + text(port);
    if (const json* ups = field(ep, "uplinks"); ups != nullptr && ups->is_array() && !ups->empty())
      s += " via " + text(ups);
  }
  return s;
}

void show_peers(const json& data) {
  Table t({"NAME", "ENDPOINTS", "PREFIXES", "PATHS"}, {false, false, false, true});
  for (const json& row : expect_list(data, "peers")) {
    const json* up = field(row, "paths_up");
    const json* total = field(row, "paths_total");
    t.add({text(field(row, "name")), endpoints_cell(field(row, "endpoints")),
           text(field(row, "prefixes")), text(up) + "/" + text(total) + " up"});
  }
  t.print(stdout);
}

// Times in ms, losses in percent, each over the daemon's window (rtt_ms and jitter_ms are
// smoothed); SINCE is the time since the last state change; REASON last, as it is free text.
void show_paths(const json& data) {
  print_rows(expect_list(data, "paths"), {
      {"NAME", "name", Kind::kText},
      {"UPLINK", "uplink", Kind::kText},
      {"PEER", "peer", Kind::kText},
      {"ENDPOINT", "endpoint", Kind::kText},
      {"STATE", "state", Kind::kText},
      {"SINCE", "since_s", Kind::kAge},
      {"RTT_MS", "rtt_ms", Kind::kMs},
      {"P95_MS", "rtt_p95_ms", Kind::kMs},
      {"JITTER_MS", "jitter_ms", Kind::kMs},
      {"LOSS_FWD%", "loss_fwd_pct", Kind::kPct},
      {"LOSS_REV%", "loss_rev_pct", Kind::kPct},
      {"PROBES_TX", "probes_sent", Kind::kCount},
      {"PROBES_RX", "probes_received", Kind::kCount},
      {"TX_PKTS", "tx_pkts", Kind::kCount},
      {"RX_PKTS", "rx_pkts", Kind::kCount},
      {"REASON", "reason", Kind::kText},
  });
}

// One event as TIME, TYPE, SUBJECT (its path, class, app...: what it is about) and DETAIL
// in words: "FROM -> TO", the other plain fields as key=value, then ": REASON". Nested objects
// (an SLA's limits) are left to --json.
struct EventCells {
  std::string time, type, subject, detail;
};

std::string event_value(const json& v) {
  if (v.is_array() && v.empty()) return "none";
  return text(&v);
}

EventCells event_cells(const json& e) {
  static constexpr std::string_view kSubjects[] = {"path", "class", "app", "drill", "uplink", "peer"};
  EventCells c{text(field(e, "time")), text(field(e, "type")), std::string(kMissing), ""};
  std::string_view subject;
  for (std::string_view k : kSubjects)
    if (const json* v = field(e, k); v != nullptr) {
      subject = k;
      c.subject = event_value(*v);
      break;
    }
  // A path's name says its uplink and peer already.
  const auto hidden = [&](std::string_view k) {
    return k == "time" || k == "seq" || k == "type" || k == "name" || k == "from" || k == "to" || k == "reason" ||
           k == subject || (subject == "path" && (k == "uplink" || k == "peer" || k == "endpoint"));
  };
  std::vector<std::string> parts;
  const json* from = field(e, "from");
  const json* to = field(e, "to");
  if (from != nullptr && to != nullptr) parts.push_back(event_value(*from) + " -> " + event_value(*to));
  if (e.is_object())
    for (const auto& [k, v] : e.items())
      if (!hidden(k) && !v.is_object()) parts.push_back(k + "=" + event_value(v));
  for (const auto& p : parts) c.detail += (c.detail.empty() ? "" : " ") + p;
  if (const json* r = field(e, "reason"); r != nullptr && r->is_string() && !r->get<std::string>().empty())
    c.detail += (c.detail.empty() ? "" : ": ") + r->get<std::string>();
  if (c.detail.empty()) c.detail = std::string(kMissing);
  return c;
}

void show_events(const json& data) {
  Table t({"TIME", "TYPE", "SUBJECT", "DETAIL"}, {false, false, false, false});
  for (const json& e : expect_list(data, "events")) {
    EventCells c = event_cells(e);
    t.add({c.time, c.type, c.subject, c.detail});
  }
  t.print(stdout);
}

// The hook runs the daemon remembers (the last 100), oldest first.
void show_hooks(const json& data) {
  Table t({"STARTED", "EVENT", "HOOK", "RESULT", "MS", "OUTPUT"}, {false, false, false, false, true, false});
  for (const json& r : expect_list(data, "hooks")) {
    std::string out = text(field(r, "output"));
    for (char& ch : out)
      if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
    while (!out.empty() && out.back() == ' ') out.pop_back();
    if (out.size() > 60) out = out.substr(0, 57) + "...";
    t.add({text(field(r, "started")), text(field(r, "type")) + " #" + text(field(r, "seq")), text(field(r, "hook")),
           text(field(r, "result")), text(field(r, "duration_ms")), out.empty() ? std::string(kMissing) : out});
  }
  t.print(stdout);
}

void show_neighbors(const json& data) {
  print_rows(expect_list(data, "neighbors"), {
      {"PORT", "port", Kind::kText},
      {"ADDRESS", "address", Kind::kText},
      {"MAC", "mac", Kind::kText},
      {"STATE", "state", Kind::kText},
      {"PERMANENT", "permanent", Kind::kText},
  });
}

void show_sas(const json& data) {
  print_rows(expect_list(data, "sas"), {
      {"PATH", "path", Kind::kText},
      {"DIR", "direction", Kind::kText},
      {"SPI", "spi", Kind::kText},
      {"EPOCH", "epoch", Kind::kCount},
      {"STATE", "state", Kind::kText},
      {"PKTS", "packets", Kind::kCount},
      {"BYTES", "bytes", Kind::kBytes},
      {"AGE_S", "age_s", Kind::kCount},
      {"SOFT", "soft_limit_reached", Kind::kText},
      {"REPLAY", "replay", Kind::kCount},
      {"TOO_OLD", "too_old", Kind::kCount},
      {"ICV_FAIL", "icv_fail", Kind::kCount},
      {"BAD_TRAILER", "bad_trailer", Kind::kCount},
  });
}

// One row per class and peer. PATHS: the chosen paths ("isp1:hub*500" with a weight in
// balance / spray); COPIES: a duplicate class's overhead, the bytes of its second copies;
// STATE: the SLA in words; WHY: what hysteresis held, if anything.
void show_classes(const json& data) {
  Table t({"CLASS", "PEER", "MODE", "PATHS", "PRIMARY", "SECONDARY", "SLA_MET", "PKTS", "BYTES", "COPIES", "STATE",
           "WHY"},
          {false, false, false, false, false, false, false, true, true, true, false, false});
  for (const json& row : expect_list(data, "classes")) {
    std::string paths;
    if (const json* ps = field(row, "paths"); ps != nullptr && ps->is_array())
      for (const json& p : *ps) {
        if (!paths.empty()) paths += ',';
        paths += text(field(p, "name"));
        if (const json* w = field(p, "weight"); w != nullptr && w->is_number() && w->get<double>() != 0)
          paths += "*" + text(w);
      }
    std::string secondary = text(field(row, "secondary"));
    if (const json* d = field(row, "duplicating"); secondary != kMissing && d != nullptr && d->is_boolean() &&
                                                     !d->get<bool>())
      secondary += " (idle)";
    std::string why = text(field(row, "why"));
    if (why.empty()) why = std::string(kMissing);
    t.add({text(field(row, "class")), text(field(row, "peer")), text(field(row, "mode")),
           paths.empty() ? std::string(kMissing) : paths, text(field(row, "primary")), secondary,
           text(field(row, "sla_met")), cell(field(row, "packets"), Kind::kCount),
           cell(field(row, "bytes"), Kind::kBytes),
           text(field(row, "mode")) == "duplicate" ? cell(field(row, "dup_bytes"), Kind::kBytes) : std::string(kMissing),
           text(field(row, "state")), why});
  }
  t.print(stdout);
}

// One row per flow; a last element {"truncated": true, "shown", "total"} when the daemon cut
// the answer becomes a note under the table.
void show_flows(const json& data) {
  json rows = json::array();
  const json* cut = nullptr;
  for (const json& row : expect_list(data, "flows")) {
    if (const json* tr = field(row, "truncated"); tr != nullptr) {
      cut = &row;
      continue;
    }
    rows.push_back(row);
  }
  print_rows(rows, {
      {"SRC", "src", Kind::kText},
      {"SPORT", "sport", Kind::kCount},
      {"DST", "dst", Kind::kText},
      {"DPORT", "dport", Kind::kCount},
      {"PROTO", "proto", Kind::kText},
      {"CLASS", "class", Kind::kText},
      {"PATH", "path", Kind::kText},
      {"UPLINK", "uplink", Kind::kText},
      {"PKTS", "packets", Kind::kCount},
      {"BYTES", "bytes", Kind::kBytes},
      {"AGE", "age_s", Kind::kAge},
      {"IDLE", "idle_s", Kind::kAge},
  });
  if (cut != nullptr)
    fmt::print("(truncated: {} of {} flows shown)\n", text(field(*cut, "shown")), text(field(*cut, "total")));
}

std::string uptime_cell(const json* v) {
  if (v == nullptr || !v->is_number()) return text(v);
  const auto s = static_cast<long long>(v->get<double>());
  const long long d = s / 86400;
  const std::string hms = fmt::format("{:02}:{:02}:{:02}", s % 86400 / 3600, s % 3600 / 60, s % 60);
  return d > 0 ? fmt::format("{}d {}", d, hms) : hms;
}

void print_pairs(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::size_t w = 0;
  for (const auto& [k, v] : pairs) w = std::max(w, k.size());
  for (const auto& [k, v] : pairs) fmt::print("{:<{}}  {}\n", k, w, v);
}

// A {name: number} object as a two-column table, in the daemon's order of keys.
void print_map(const json* m, std::string_view key_header, std::string_view value_header) {
  Table t({std::string(key_header), std::string(value_header)}, {false, true});
  if (m != nullptr && m->is_object())
    for (const auto& [k, v] : m->items()) t.add({k, text(&v)});
  t.print(stdout);
}

void show_stats(const json& data) {
  if (!data.is_object())
    throw std::runtime_error("unexpected answer from sdwand: stats is not an object");
  print_pairs({{"name", text(field(data, "name"))},
               {"role", text(field(data, "role"))},
               {"version", text(field(data, "version"))},
               {"uptime", uptime_cell(field(data, "uptime_s"))}});
  fmt::print("\n");
  const json* workers = field(data, "workers");
  print_rows(workers != nullptr && workers->is_array() ? *workers : json::array(), {
      {"WORKER", "index", Kind::kCount},
      {"LCORE", "lcore", Kind::kCount},
      {"POLLS", "polls", Kind::kCount},
      {"BUSY_POLLS", "busy_polls", Kind::kCount},
      {"RX_PKTS", "rx_pkts", Kind::kCount},
      {"TX_PKTS", "tx_pkts", Kind::kCount},
      {"FLOWS", "flows", Kind::kCount},
  });
  fmt::print("\n");
  print_map(field(data, "counters"), "COUNTER", "VALUE");
  fmt::print("\n");
  print_map(field(data, "drops"), "DROP", "COUNT");
  if (const json* esp = field(data, "esp"); esp != nullptr && esp->is_object()) {
    fmt::print("\n");
    Table t({"ESP", "PKTS", "BYTES"}, {false, true, true});
    t.add({"encrypted", text(field(*esp, "encrypted_pkts")), cell(field(*esp, "encrypted_bytes"), Kind::kBytes)});
    t.add({"decrypted", text(field(*esp, "decrypted_pkts")), cell(field(*esp, "decrypted_bytes"), Kind::kBytes)});
    t.print(stdout);
    fmt::print("\n");
    print_map(field(*esp, "drops"), "ESP_DROP", "COUNT");
  }
  if (const json* ev = field(data, "events"); ev != nullptr && ev->is_object()) {
    fmt::print("\n");
    print_map(ev, "EVENTS", "VALUE");
  }
}

void show_version(const json& data) {
  if (!data.is_object())
    throw std::runtime_error("unexpected answer from sdwand: version is not an object");
  print_pairs({{"name", text(field(data, "name"))},
               {"role", text(field(data, "role"))},
               {"version", text(field(data, "version"))},
               {"sdwanctl", SDWAN_VERSION}});
}

// The daemon's messages are meant to be one line; make sure a stray newline cannot break
// "one line on stderr" for scripts that read it.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// A drill report (docs/drills.md): a summary, then one row per class.
void print_drill(const json& r) {
  const auto num = [&](const char* k) { return cell(field(r, k), Kind::kText); };
  const std::string action = r.value("action", "") == "loss" ? fmt::format("loss {} %", num("loss_pct")) : "blackout";
  fmt::print("drill {}: {} {} {} for {} ms ({}) - {}\n", num("id"), num("target"), num("name"), action, num("duration_ms"),
             cell(field(r, "paths"), Kind::kList), num("state"));
  fmt::print("started {}{}{}\n", num("started"), r.contains("ended") ? ", ended " : "",
             r.contains("ended") ? num("ended") : std::string());
  fmt::print("detection: {} ms   flows moved: {} of {}   lost: {} of {} packets sent to peers\n\n", num("detection_ms"),
             num("flows_moved"), num("flows_on_target"), num("lost"), num("sent"));
  print_rows(expect_list(r.value("classes", json::array()), "classes"), {
      {"CLASS", "class", Kind::kText},
      {"AFFECTED", "affected", Kind::kText},
      {"REROUTED_MS", "rerouted_ms", Kind::kText},
      {"SENT", "sent", Kind::kCount},
      {"LOST", "lost", Kind::kCount},
      {"LOST%", "lost_pct", Kind::kText},
      {"RX_DROPPED", "rx_dropped", Kind::kCount},
      {"SLA_HELD", "sla_held", Kind::kText},
      {"WHY", "why", Kind::kText},
  });
}

void show_drills(const json& data) {
  print_rows(expect_list(data, "drills"), {
      {"ID", "id", Kind::kText},
      {"STATE", "state", Kind::kText},
      {"TARGET", "target", Kind::kText},
      {"NAME", "name", Kind::kText},
      {"ACTION", "action", Kind::kText},
      {"LOSS%", "loss_pct", Kind::kText},
      {"DURATION_MS", "duration_ms", Kind::kText},
      {"STARTED", "started", Kind::kText},
      {"DETECTION_MS", "detection_ms", Kind::kText},
      {"SENT", "sent", Kind::kCount},
      {"LOST", "lost", Kind::kCount},
      {"FLOWS_MOVED", "flows_moved", Kind::kText},
  });
}

void show_apps(const json& data) {
  print_rows(expect_list(data, "apps"), {
      {"APP", "name", Kind::kText},
      {"TYPE", "type", Kind::kText},
      {"TARGET", "target", Kind::kText},
      {"STATE", "state", Kind::kText},
      {"LATENCY_MS", "latency_ms", Kind::kMs},
      {"SUCCESS%", "success_pct", Kind::kPct},
      {"OF", "window", Kind::kText},
      {"CHECKS", "checks", Kind::kCount},
      {"FAILED", "failed", Kind::kCount},
      {"FAILS_IN_ROW", "consecutive_failures", Kind::kText},
      {"LAST", "age_s", Kind::kAge},
      {"ERROR", "last_error", Kind::kText},
  });
}

struct Thing {
  const char* name;
  const char* help;
  void (*render)(const json&);
};

constexpr Thing kThings[] = {
    {"ports", "DPDK ports: link, speed, packet and error counters", show_ports},
    {"uplinks", "WAN uplinks: address, next hop and its MAC, cost, state", show_uplinks},
    {"peers", "remote appliances: endpoints, prefixes, paths up", show_peers},
    {"paths", "(uplink, peer endpoint) paths: state, RTT, jitter, loss, probes, reason, traffic", show_paths},
    {"events", "events (path up/down, SLA, class moves, SA rekeys...), oldest first; docs/events.md", show_events},
    {"hooks", "the last hook runs: event, hook, result, duration, output", show_hooks},
    {"classes", "traffic classes per peer: mode, chosen paths, SLA met, why, traffic", show_classes},
    {"flows", "the workers' flows: 5-tuple, class, path, uplink, traffic, age (at most 10,000)", show_flows},
    {"drills", "failover drill reports, oldest first (sdwanctl drill), the running one last", show_drills},
    {"apps", "application checks (TCP connect, HTTP GET through the overlay): state, latency, success rate", show_apps},
    {"neighbors", "ARP entries: address, MAC, state (next hops are permanent)", show_neighbors},
    {"sas", "ESP SAs: path, direction, SPI, epoch, state, traffic, drops (never keys)", show_sas},
    {"stats", "daemon, worker, counter, drop and ESP statistics", show_stats},
    {"version", "the daemon's name, role and version", show_version},
};

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) { g_interrupted.store(true); }

// `watch paths`: the table again every interval, in place on a terminal (cursor home, clear
// to the end of the screen, so nothing flickers), one table after another otherwise. Ends
// after count tables (0: never) or at Ctrl-C / SIGTERM, with status 0; status 1 when the
// daemon stops answering.
int watch(const std::string& socket, int timeout_ms, const Thing& thing, double interval_s, long count) {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const bool tty = isatty(STDOUT_FILENO) == 1;
  const auto step = std::chrono::duration<double>(interval_s);
  for (long shown = 0; count == 0 || shown < count; ++shown) {
    if (shown > 0) {
      // Sleep in short steps so Ctrl-C ends the wait at once.
      const auto until = std::chrono::steady_clock::now() + step;
      while (!g_interrupted.load() && std::chrono::steady_clock::now() < until) {
        const timespec ts{0, 20'000'000};
        nanosleep(&ts, nullptr);
      }
    }
    if (g_interrupted.load()) break;
    const json req = {{"cmd", "show"}, {"what", thing.name}};
    auto data = sdwan::cp::mgmt_request(socket, req, timeout_ms);
    if (!data) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(data.error().msg));
      return 1;
    }
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    if (tty) fmt::print("\x1b[H\x1b[2J");
    fmt::print("every {}s: sdwanctl show {}   {:02}:{:02}:{:02}\n\n", interval_s, thing.name, tm.tm_hour, tm.tm_min,
               tm.tm_sec);
    thing.render(*data);
    if (!tty) fmt::print("\n");
    std::fflush(stdout);
    if (std::ferror(stdout)) return 1;
  }
  return 0;
}

// "30s", "500ms", "2m", "1h"; a bare number is seconds.
std::optional<uint64_t> duration_ms(std::string_view s) {
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(std::string(s), &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string_view unit = s.substr(used);
  double mult = 0;
  if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "ms") mult = 1;
  else if (unit == "m" || unit == "min") mult = 60000;
  else if (unit == "h") mult = 3600000;
  if (mult == 0 || !(v > 0) || !std::isfinite(v)) return std::nullopt;
  return static_cast<uint64_t>(std::llround(v * mult));
}

// "20%" or "20".
std::optional<double> percent(std::string_view s) {
  if (s.ends_with('%')) s.remove_suffix(1);
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(std::string(s), &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Starts a drill and follows it to its end (Ctrl-C aborts it), then prints the report.
int run_drill(const std::string& socket, int timeout_ms, json req, bool as_json, bool detach) {
  auto started = sdwan::cp::mgmt_request(socket, req, timeout_ms);
  if (!started) {
    fmt::print(stderr, "sdwanctl: {}\n", one_line(started.error().msg));
    return 1;
  }
  const uint64_t id = started->value("id", uint64_t{0});
  if (detach) {
    if (as_json) fmt::print("{}\n", started->dump(2));
    else fmt::print("drill {} started; sdwanctl show drills follows it, sdwanctl drill abort stops it\n", id);
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const bool tty = isatty(STDERR_FILENO) == 1;
  json last = *started;
  while (last.value("state", "") == "running") {
    const timespec ts{0, 200'000'000};
    nanosleep(&ts, nullptr);
    if (g_interrupted.load()) {
      auto ab = sdwan::cp::mgmt_request(socket, {{"cmd", "drill"}, {"action", "abort"}}, timeout_ms);
      if (!ab) {
        fmt::print(stderr, "sdwanctl: abort failed: {}\n", one_line(ab.error().msg));
        return 1;
      }
      last = *ab;
      break;
    }
    auto st = sdwan::cp::mgmt_request(socket, {{"cmd", "drill"}, {"action", "status"}, {"id", id}}, timeout_ms);
    if (!st) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(st.error().msg));
      return 1;
    }
    last = *st;
    if (tty && last.value("state", "") == "running")
      fmt::print(stderr, "\rdrill {}: {:.1f} of {:.1f} s, detection {} ms, lost {}   ", id,
                 last.value("elapsed_ms", 0.0) / 1000.0, last.value("duration_ms", 0.0) / 1000.0,
                 cell(field(last, "detection_ms"), Kind::kText), cell(field(last, "lost"), Kind::kCount));
  }
  if (tty) fmt::print(stderr, "\n");
  if (as_json) fmt::print("{}\n", last.dump(2, ' ', false, json::error_handler_t::replace));
  else print_drill(last);
  std::fflush(stdout);
  return std::ferror(stdout) ? 1 : 0;
}

// `show events --follow`: the kept events, then every new one as it comes (asked for every
// half second with "after": the last seq seen), until Ctrl-C / SIGTERM (status 0) or the
// daemon stops answering (status 1). A table with fixed columns, or one JSON object per line.
int follow_events(const std::string& socket, int timeout_ms, const std::vector<std::string>& types, bool as_json) {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  uint64_t after = 0;
  if (!as_json) fmt::print("{:<24}  {:<13}  {:<16}  {}\n", "TIME", "TYPE", "SUBJECT", "DETAIL");
  for (bool first = true; !g_interrupted.load(); first = false) {
    if (!first) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      while (!g_interrupted.load() && std::chrono::steady_clock::now() < until) {
        const timespec ts{0, 20'000'000};
        nanosleep(&ts, nullptr);
      }
      if (g_interrupted.load()) break;
    }
    json req = {{"cmd", "show"}, {"what", "events"}, {"after", after}};
    if (!types.empty()) req["type"] = types;
    auto data = sdwan::cp::mgmt_request(socket, req, timeout_ms);
    if (!data) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(data.error().msg));
      return 1;
    }
    for (const json& e : expect_list(*data, "events")) {
      if (const json* seq = field(e, "seq"); seq != nullptr && seq->is_number_unsigned())
        after = std::max(after, seq->get<uint64_t>());
      if (as_json) {
        fmt::print("{}\n", e.dump(-1, ' ', false, json::error_handler_t::replace));
      } else {
        const EventCells c = event_cells(e);
        fmt::print("{:<24}  {:<13}  {:<16}  {}\n", c.time, c.type, c.subject, c.detail);
      }
    }
    std::fflush(stdout);
    if (std::ferror(stdout)) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Inspect a running sdwand through its management socket.", "sdwanctl"};
  std::string socket = sdwan::cp::kMgmtDefaultSocket;
  int timeout_ms = kDefaultTimeoutMs;
  app.add_option("--socket", socket, "sdwand's management socket")
      ->envname("SDWAN_SOCKET")
      ->capture_default_str();
  app.add_option("--timeout", timeout_ms, "milliseconds to wait for the answer")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600 * 1000));
  app.set_version_flag("--version", SDWAN_VERSION);
  app.require_subcommand(1);

  CLI::App* show = app.add_subcommand("show", "show the daemon's state");
  show->require_subcommand(1);
  show->fallthrough();
  bool as_json = false;
  const Thing* chosen = nullptr;
  std::string flow_class;
  std::vector<std::string> event_types;
  bool follow = false;
  for (const Thing& t : kThings) {
    CLI::App* sub = show->add_subcommand(t.name, t.help);
    sub->add_flag("--json", as_json, "print the daemon's data as JSON, exactly as received");
    if (std::string_view(t.name) == "flows") sub->add_option("--class", flow_class, "only the flows of this class");
    if (std::string_view(t.name) == "events") {
      sub->add_option("--type", event_types, "only events of this type (repeat it, or TYPE,TYPE)")->delimiter(',');
      sub->add_flag("--follow,-f", follow,
                    "keep printing new events as they come, until Ctrl-C (with --json: one object per line)");
    }
    sub->fallthrough();
    sub->callback([&chosen, &t] { chosen = &t; });
  }

  CLI::App* explain_cmd = app.add_subcommand("explain", "why a class uses its paths: one line per peer and path");
  std::string explain_class;
  explain_cmd->add_option("CLASS", explain_class, "the class's name")->required();
  explain_cmd->add_flag("--json", as_json, "print the lines as a JSON array");

  CLI::App* drill_cmd = app.add_subcommand("drill", "inject a failure inside the dataplane for a while and report what happened");
  drill_cmd->require_subcommand(1);
  std::string drill_name, blackout_str, loss_str, duration_str = "30s";
  bool drill_force = false, drill_detach = false;
  std::string drill_target;
  for (const char* target : {"uplink", "peer"}) {
    CLI::App* sub = drill_cmd->add_subcommand(target, std::string("fail every path of one ") + target);
    sub->add_option("NAME", drill_name, std::string("the ") + target + "'s name")->required();
    sub->add_option("--blackout", blackout_str, "drop everything for DURATION (30s, 500ms, 2m; default 30s)")
        ->expected(0, 1);
    sub->add_option("--loss", loss_str, "drop this share of packets at random (20%)");
    sub->add_option("--duration", duration_str, "how long --loss lasts")->capture_default_str();
    sub->add_flag("--force", drill_force, "also black out the last usable path to a peer");
    sub->add_flag("--detach", drill_detach, "start it and return; sdwanctl show drills follows it");
    sub->add_flag("--json", as_json, "print the report as JSON");
    sub->callback([&drill_target, target] { drill_target = target; });
  }
  CLI::App* drill_abort = drill_cmd->add_subcommand("abort", "stop the running drill now; its report says aborted");
  drill_abort->add_flag("--json", as_json, "print the report as JSON");

  CLI::App* reload_cmd = app.add_subcommand("reload", "apply the changed config file without restarting (as SIGHUP); a bad one is refused");
  reload_cmd->add_flag("--json", as_json, "print the answer as JSON");

  CLI::App* watch_cmd = app.add_subcommand("watch", "show a table again every interval, in place on a terminal");
  watch_cmd->require_subcommand(1);
  watch_cmd->fallthrough();
  double interval_s = 1.0;
  long count = 0;
  const Thing* watched = nullptr;
  for (const Thing& t : kThings) {
    if (std::string_view(t.name) != "paths") continue;
    CLI::App* sub = watch_cmd->add_subcommand(t.name, t.help);
    sub->add_option("--interval", interval_s, "seconds between tables")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
    sub->add_option("--count", count, "stop after this many tables (0: until Ctrl-C)")->capture_default_str()->check(CLI::NonNegativeNumber);
    sub->callback([&watched, &t] { watched = &t; });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here with 0; every usage error is 2, like other Unix tools.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (watched != nullptr) {
    try {
      return watch(socket, timeout_ms, *watched, interval_s, count);
    } catch (const std::exception& e) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
      return 1;
    }
  }
  if (reload_cmd->parsed()) {
    try {
      auto r = sdwan::cp::mgmt_request(socket, {{"cmd", "reload"}}, timeout_ms);
      if (!r) {
        fmt::print(stderr, "sdwanctl: {}\n", one_line(r.error().msg));
        return 1;
      }
      if (as_json) {
        fmt::print("{}\n", r->dump(2, ' ', false, json::error_handler_t::replace));
      } else {
        const json& ch = r->value("changes", json::array());
        if (ch.empty()) fmt::print("{}: no change\n", r->value("file", std::string("config")));
        else fmt::print("{}: {} change(s) applied\n", r->value("file", std::string("config")), ch.size());
        for (const json& c : ch) fmt::print("  {}\n", text(&c));
      }
      return 0;
    } catch (const std::exception& e) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
      return 1;
    }
  }
  if (drill_cmd->parsed()) {
    try {
      if (drill_abort->parsed()) {
        auto r = sdwan::cp::mgmt_request(socket, {{"cmd", "drill"}, {"action", "abort"}}, timeout_ms);
        if (!r) {
          fmt::print(stderr, "sdwanctl: {}\n", one_line(r.error().msg));
          return 1;
        }
        if (as_json) fmt::print("{}\n", r->dump(2));
        else print_drill(*r);
        return 0;
      }
      CLI::App* sub = drill_cmd->get_subcommand(drill_target);
      const bool blackout = sub->count("--blackout") > 0, loss = sub->count("--loss") > 0;
      if (blackout == loss) {
        fmt::print(stderr, "sdwanctl: drill {}: give --blackout [DURATION] or --loss PCT\n", drill_target);
        return 2;
      }
      json req = {{"cmd", "drill"}, {"action", "start"}, {"target", drill_target}, {"name", drill_name}, {"force", drill_force}};
      if (blackout) {
        const auto ms = duration_ms(blackout_str.empty() ? "30s" : blackout_str);
        if (!ms) {
          fmt::print(stderr, "sdwanctl: --blackout: \"{}\" is not a duration (30s, 500ms, 2m)\n", blackout_str);
          return 2;
        }
        req["blackout_ms"] = *ms;
      } else {
        const auto pct = percent(loss_str);
        const auto ms = duration_ms(duration_str);
        if (!pct) {
          fmt::print(stderr, "sdwanctl: --loss: \"{}\" is not a percentage (20%)\n", loss_str);
          return 2;
        }
        if (!ms) {
          fmt::print(stderr, "sdwanctl: --duration: \"{}\" is not a duration (30s, 500ms, 2m)\n", duration_str);
          return 2;
        }
        req["loss_pct"] = *pct;
        req["duration_ms"] = *ms;
      }
      return run_drill(socket, timeout_ms, std::move(req), as_json, drill_detach);
    } catch (const std::exception& e) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
      return 1;
    }
  }
  if (explain_cmd->parsed()) {
    try {
      const json req = {{"cmd", "explain"}, {"class", explain_class}};
      auto data = sdwan::cp::mgmt_request(socket, req, timeout_ms);
      if (!data) {
        fmt::print(stderr, "sdwanctl: {}\n", one_line(data.error().msg));
        return 1;
      }
      if (as_json)
        fmt::print("{}\n", data->dump(2, ' ', false, json::error_handler_t::replace));
      else
        for (const json& line : expect_list(*data, "explain")) fmt::print("{}\n", text(&line));
      std::fflush(stdout);
      if (std::ferror(stdout)) {
        fmt::print(stderr, "sdwanctl: cannot write to standard output\n");
        return 1;
      }
    } catch (const std::exception& e) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
      return 1;
    }
    return 0;
  }
  if (chosen == nullptr) return 2;
  if (follow) {
    try {
      return follow_events(socket, timeout_ms, event_types, as_json);
    } catch (const std::exception& e) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
      return 1;
    }
  }

  try {
    json req = {{"cmd", "show"}, {"what", chosen->name}};
    if (!flow_class.empty()) req["class"] = flow_class;
    if (!event_types.empty()) req["type"] = event_types;
    auto data = sdwan::cp::mgmt_request(socket, req, timeout_ms);
    if (!data) {
      fmt::print(stderr, "sdwanctl: {}\n", one_line(data.error().msg));
      return 1;
    }
    if (as_json)
      fmt::print("{}\n", data->dump(2, ' ', false, json::error_handler_t::replace));
    else
      chosen->render(*data);
    std::fflush(stdout);
    if (std::ferror(stdout)) {
      fmt::print(stderr, "sdwanctl: cannot write to standard output\n");
      return 1;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "sdwanctl: {}\n", one_line(e.what()));
    return 1;
  }
  return 0;
}
