// control/metrics: the Prometheus renderer, the telemetry JSON, the host parsers and meters,
// the exchange between the control thread and its readers, and the HTTP endpoint.
// GCC 12 with the sanitizers reports -Wmaybe-uninitialized inside libstdc++'s own std::regex
// (a false positive of its own code); the regexes below only check the page's text format.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "control/metrics/exchange.hpp"
#include "control/metrics/host.hpp"
#include "control/metrics/metrics.hpp"
#include "control/metrics/server.hpp"

namespace sdwan::cp {
namespace {

using json = nlohmann::json;

MetricsData sample_data() {
  MetricsData d;
  d.name = "edge";
  d.role = "edge";
  d.version = "0.1.0";
  d.uptime_s = 12.5;
  d.snapshots = 7;
  d.apps.push_back({"web-b", "http", "http://192.168.20.2:8080/", true, true, 1.5, 95.0, 19, 1});
  d.apps.push_back({"db", "tcp", "192.168.20.5:5432", false, false, std::nullopt, std::nullopt, 0, 0});
  MetricsData::Path a;
  a.name = "isp1:hub";
  a.uplink = "isp1";
  a.peer = "hub";
  a.endpoint = "10.1.1.2:4500";
  a.state = "up";
  a.usable = true;
  a.rtt_ms = 12.5;
  a.jitter_ms = 0.25;
  a.loss_fwd_pct = 2.0;
  a.loss_rev_pct = 0.0;
  a.tx_pkts = 10;
  a.tx_bytes = 1000;
  a.rx_pkts = std::numeric_limits<uint64_t>::max();
  a.probes_sent = 50;
  a.probes_received = 49;
  a.failures = 1;
  MetricsData::Path b;
  b.name = "isp2:hub";
  b.uplink = "isp2";
  b.peer = "hub";
  b.endpoint = "10.2.1.2:4500";
  b.state = "down";
  b.reason = "no SA";
  d.paths = {a, b};
  d.tunnel_failures = 1;
  MetricsData::Port lan;
  lan.name = "lan";
  lan.link_up = true;
  lan.rx_pkts = 5;
  lan.rx_missed = 3;
  MetricsData::Port up1;
  up1.name = "isp1";
  up1.uplink = true;
  d.ports = {lan, up1};
  d.uplinks = {{"isp1", true, true, false, 100'000'000}, {"isp2", true, false, true, 0}};
  d.classes = {{"voice", "best", 4, 400}, {"bulk", "balance", 6, 600}};
  MetricsData::ClassPeer voice;
  voice.cls = "voice";
  voice.peer = "hub";
  voice.mode = "best";
  voice.sla_met = true;
  voice.primary = "isp1:hub";
  voice.paths = {{"isp1:hub", 0}};
  MetricsData::ClassPeer bulk;
  bulk.cls = "bulk";
  bulk.peer = "hub";
  bulk.mode = "balance";
  bulk.primary = "isp1:hub";
  bulk.paths = {{"isp1:hub", 750}, {"isp2:hub", 250}};
  d.class_peers = {voice, bulk};
  MetricsData::Sa in;
  in.spi = "0x00000101";
  in.path = "isp1:hub";
  in.direction = "in";
  in.state = "active";
  in.installed = true;
  in.packets = 9;
  in.icv_fail = 2;
  in.age_s = 3.5;
  MetricsData::Sa out = in;
  out.spi = "0x00000100";
  out.direction = "out";
  d.sas = {in, out};
  d.drop_reasons = {"runt", "no_path"};
  MetricsData::Worker w;
  w.index = 0;
  w.lcore = 1;
  w.polls = 1000;
  w.busy_polls = 250;
  w.busy_s = 0.5;
  w.busy_ratio = 0.25;
  w.flows = 3;
  w.handoff_out = 7;
  w.handoff_in = 5;
  w.drops = {1, 2};
  d.workers = {w};
  d.mempools = {{"sdwan_mbufs", 1000, 250}};
  d.esp_drops = {{"icv_fail", 2}, {"replay", 0}};
  d.auth_failures = 2;
  d.flows_active = 3;
  d.flows_created = 8;
  d.flows_per_s = 1.5;
  d.cpus = 2;
  d.cpu_usage = 0.5;
  d.load = LoadAvg{0.5, 0.25, 0.125};
  d.mem = MemInfo{1 << 30, 1 << 29, 512, 256, 2 << 20};
  d.disks = {{"/", 100, 40}};
  return d;
}

// The page, checked against the text format's rules (what Prometheus' own parser insists on)
// and our naming conventions; returns every sample line by its series (name{labels}).
std::map<std::string, std::string> check_page(const std::string& page) {
  static const std::regex kName("^sdwan_[a-z0-9_]+$");
  static const std::regex kSample(R"(^([a-z_][a-z0-9_]*)(\{([^}]*)\})? (\S+)$)");
  static const std::regex kLabel(R"re(([a-z_][a-z0-9_]*)="((?:[^"\\]|\\.)*)")re");
  static const std::set<std::string> kLabels = {"path", "uplink", "peer", "class", "worker", "port", "reason",
                                                "direction", "state", "spi", "pool", "dir", "name", "role",
                                                "version", "app", "type", "result"};
  std::map<std::string, std::string> series;
  std::set<std::string> families;
  std::string help, type, family;
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "empty line in the page";
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      help = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(std::regex_match(help, kName)) << line;
      EXPECT_TRUE(families.insert(help).second) << "family declared twice: " << help;
      EXPECT_GT(rest.size(), help.size() + 1) << "HELP without text: " << line;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      t >> family >> type;
      EXPECT_EQ(family, help) << "TYPE must follow the HELP of the same family: " << line;
      EXPECT_TRUE(type == "counter" || type == "gauge") << line;
      if (type == "counter") EXPECT_TRUE(family.ends_with("_total")) << "counter without _total: " << family;
      else EXPECT_FALSE(family.ends_with("_total")) << "gauge named like a counter: " << family;
      continue;
    }
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, kSample)) << "not a sample line: " << line;
    if (m.empty()) continue;
    EXPECT_EQ(m[1].str(), family) << "sample outside its family: " << line;
    const std::string labels = m[3].str();
    std::string rebuilt;
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), kLabel); it != std::sregex_iterator(); ++it) {
      EXPECT_TRUE(kLabels.count((*it)[1].str())) << "unexpected label " << (*it)[1] << " in " << line;
      rebuilt += (rebuilt.empty() ? "" : ",") + (*it)[0].str();
    }
    EXPECT_EQ(rebuilt, labels) << "malformed labels: " << line;
    const std::string value = m[4].str();
    EXPECT_TRUE(value == "NaN" || value == "+Inf" || value == "-Inf" ||
                std::regex_match(value, std::regex(R"(^-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?$)")))
        << line;
    const std::string key = m[1].str() + "{" + labels + "}";
    EXPECT_TRUE(series.emplace(key, value).second) << "series twice: " << key;
  }
  return series;
}

TEST(MetricsRender, FollowsTheTextFormatAndNamingRules) {
  const std::string page = render_prometheus(sample_data());
  const auto s = check_page(page);
  EXPECT_GT(s.size(), 80u);
  EXPECT_EQ(page.back(), '\n');
  // Every documented area is on the page.
  for (const char* family :
       {"sdwan_path_rtt_seconds", "sdwan_port_drops_total", "sdwan_class_bytes_total", "sdwan_sa_packets_total",
        "sdwan_worker_busy_ratio", "sdwan_mempool_use_ratio", "sdwan_host_cpu_usage_ratio",
        "sdwan_host_memory_available_bytes", "sdwan_host_disk_available_bytes", "sdwan_flows_active",
        "sdwan_flows_new_per_second", "sdwan_tunnel_failures_total", "sdwan_auth_failures_total"})
    EXPECT_NE(page.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
}

TEST(MetricsRender, WritesEachFigureInBaseUnitsWithItsLabels) {
  const auto s = check_page(render_prometheus(sample_data()));
  const auto at = [&](const std::string& k) {
    auto it = s.find(k);
    return it == s.end() ? std::string("(absent)") : it->second;
  };
  const std::string p1 = "path=\"isp1:hub\",uplink=\"isp1\",peer=\"hub\"";
  const std::string p2 = "path=\"isp2:hub\",uplink=\"isp2\",peer=\"hub\"";
  EXPECT_EQ(at("sdwan_path_rtt_seconds{" + p1 + "}"), "0.0125");
  EXPECT_EQ(at("sdwan_path_jitter_seconds{" + p1 + "}"), "0.00025");
  EXPECT_EQ(at("sdwan_path_loss_ratio{" + p1 + ",direction=\"forward\"}"), "0.02");
  EXPECT_EQ(at("sdwan_path_loss_ratio{" + p1 + ",direction=\"reverse\"}"), "0");
  // Unknown figures are absent, not 0: a path never measured has no RTT.
  EXPECT_EQ(at("sdwan_path_rtt_seconds{" + p2 + "}"), "(absent)");
  EXPECT_EQ(at("sdwan_path_up{" + p1 + "}"), "1");
  EXPECT_EQ(at("sdwan_path_up{" + p2 + "}"), "0");
  EXPECT_EQ(at("sdwan_path_state{" + p2 + ",state=\"down\"}"), "1");
  EXPECT_EQ(at("sdwan_path_state{" + p2 + ",state=\"up\"}"), "0");
  EXPECT_EQ(at("sdwan_path_rx_packets_total{" + p1 + "}"), "18446744073709551615");
  EXPECT_EQ(at("sdwan_path_failures_total{" + p1 + "}"), "1");
  EXPECT_EQ(at("sdwan_paths_up{}"), "1");
  EXPECT_EQ(at("sdwan_port_drops_total{port=\"lan\",reason=\"rx_missed\"}"), "3");
  EXPECT_EQ(at("sdwan_uplink_bandwidth_bytes_per_second{uplink=\"isp1\"}"), "12500000");
  EXPECT_EQ(at("sdwan_uplink_bandwidth_bytes_per_second{uplink=\"isp2\"}"), "(absent)");
  EXPECT_EQ(at("sdwan_uplink_up{uplink=\"isp2\"}"), "0");
  EXPECT_EQ(at("sdwan_class_bytes_total{class=\"bulk\"}"), "600");
  EXPECT_EQ(at("sdwan_class_paths{class=\"bulk\",peer=\"hub\"}"), "2");
  EXPECT_EQ(at("sdwan_class_path_share_ratio{class=\"bulk\",peer=\"hub\",path=\"isp1:hub\"}"), "0.75");
  EXPECT_EQ(at("sdwan_class_path_share_ratio{class=\"voice\",peer=\"hub\",path=\"isp1:hub\"}"), "1");
  EXPECT_EQ(at("sdwan_class_primary_path{class=\"voice\",peer=\"hub\",path=\"isp1:hub\"}"), "1");
  EXPECT_EQ(at("sdwan_sa_drops_total{path=\"isp1:hub\",direction=\"in\",spi=\"0x00000101\",reason=\"icv_fail\"}"),
            "2");
  // Outbound SAs refuse nothing on their own: no drop series for them.
  EXPECT_EQ(at("sdwan_sa_drops_total{path=\"isp1:hub\",direction=\"out\",spi=\"0x00000100\",reason=\"icv_fail\"}"),
            "(absent)");
  EXPECT_EQ(at("sdwan_drops_total{worker=\"0\",reason=\"no_path\"}"), "2");
  EXPECT_EQ(at("sdwan_worker_busy_ratio{worker=\"0\"}"), "0.25");
  EXPECT_EQ(at("sdwan_worker_handoff_packets_total{worker=\"0\",direction=\"out\"}"), "7");
  EXPECT_EQ(at("sdwan_worker_handoff_packets_total{worker=\"0\",direction=\"in\"}"), "5");
  EXPECT_EQ(at("sdwan_mempool_use_ratio{pool=\"sdwan_mbufs\"}"), "0.25");
  EXPECT_EQ(at("sdwan_flows_new_per_second{}"), "1.5");
  EXPECT_EQ(at("sdwan_auth_failures_total{}"), "2");
  EXPECT_EQ(at("sdwan_host_memory_size_bytes{}"), "1073741824");
  EXPECT_EQ(at("sdwan_host_disk_available_bytes{dir=\"/\"}"), "40");
}

TEST(MetricsRender, EscapesLabelValuesAndKeepsEmptyFamilies) {
  MetricsData d;
  d.name = "a\"b\\c\nd";
  const std::string page = render_prometheus(d);
  EXPECT_NE(page.find(R"(sdwan_info{name="a\"b\\c\nd",role="",version=""} 1)"), std::string::npos) << page;
  // No paths at all: the families are still declared, with no samples, and no RTT.
  EXPECT_NE(page.find("# TYPE sdwan_path_rtt_seconds gauge\n# HELP"), std::string::npos);
  EXPECT_EQ(page.find("\nsdwan_flows_new_per_second "), std::string::npos);  // unknown before a second sample
  check_page(page);
}

TEST(MetricsRender, AppChecksInPrometheusUnits) {
  const std::string page = render_prometheus(sample_data());
  EXPECT_NE(page.find("sdwan_app_up{app=\"web-b\",type=\"http\"} 1\n"), std::string::npos) << page;
  EXPECT_EQ(page.find("sdwan_app_up{app=\"db\""), std::string::npos) << "no sample before the first check";
  EXPECT_NE(page.find("sdwan_app_check_latency_seconds{app=\"web-b\",type=\"http\"} 0.0015\n"), std::string::npos) << page;
  EXPECT_NE(page.find("sdwan_app_success_ratio{app=\"web-b\",type=\"http\"} 0.95\n"), std::string::npos) << page;
  EXPECT_NE(page.find("sdwan_app_checks_total{app=\"web-b\",type=\"http\",result=\"failed\"} 1\n"), std::string::npos)
      << page;
}

// docs/metrics.md lists every family the page has, with its type and labels, and nothing else.
TEST(MetricsRender, EveryFamilyIsDocumentedWithItsTypeAndLabels) {
  std::ifstream f(SDWAN_SOURCE_ROOT "/docs/metrics.md");
  ASSERT_TRUE(f) << "cannot read docs/metrics.md";
  static const std::regex kRow(R"(^\| `(sdwan_[a-z0-9_]+)` \| (counter|gauge) \|([a-z, ]*)\|)");
  std::map<std::string, std::pair<std::string, std::set<std::string>>> doc;
  std::string line;
  while (std::getline(f, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, kRow)) continue;
    std::set<std::string> labels;
    std::istringstream ls(m[3].str());
    for (std::string l; std::getline(ls, l, ',');) {
      l.erase(0, l.find_first_not_of(' '));
      l.erase(l.find_last_not_of(' ') + 1);
      if (!l.empty()) labels.insert(l);
    }
    EXPECT_TRUE(doc.emplace(m[1].str(), std::make_pair(m[2].str(), labels)).second) << "listed twice: " << m[1];
  }
  const std::string page = render_prometheus(sample_data());
  std::map<std::string, std::pair<std::string, std::set<std::string>>> got;
  std::istringstream in(page);
  static const std::regex kLabelName(R"re(([a-z_]+)=")re");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, std::regex(R"(^# TYPE (\S+) (\S+)$)"))) {
      got[m[1].str()].first = m[2].str();
      continue;
    }
    if (line[0] == '#') continue;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    const std::string labels = line.find('{') == std::string::npos ? "" : line.substr(line.find('{'));
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), kLabelName); it != std::sregex_iterator(); ++it)
      got[name].second.insert((*it)[1].str());
  }
  for (const auto& [name, tl] : got) {
    auto it = doc.find(name);
    if (it == doc.end()) {
      ADD_FAILURE() << name << " is not in docs/metrics.md";
      continue;
    }
    EXPECT_EQ(it->second.first, tl.first) << name << ": documented type";
    EXPECT_EQ(it->second.second, tl.second) << name << ": documented labels";
  }
  for (const auto& [name, tl] : doc) EXPECT_TRUE(got.count(name)) << name << " is documented but not on the page";
}

TEST(MetricsTelemetry, PathsAreKeyedByPositionWithIntegersOnly) {
  const auto d = sample_data();
  auto all = telemetry_paths(d, "", 12 * 1024);
  ASSERT_TRUE(all.ok()) << all.error().msg;
  ASSERT_EQ(all->size(), 2u);
  const json& p = (*all)["0"];
  EXPECT_EQ(p["name"], "isp1:hub");
  EXPECT_EQ(p["uplink"], "isp1");
  EXPECT_EQ(p["state"], "up");
  EXPECT_EQ(p["rtt_us"], 12500);
  EXPECT_EQ(p["jitter_us"], 250);
  EXPECT_EQ(p["loss_fwd_ppm"], 20000);
  EXPECT_EQ(p["usable"], 1);
  EXPECT_FALSE((*all)["1"].contains("rtt_us"));  // unknown: left out
  EXPECT_EQ((*all)["1"]["reason"], "no SA");
  // DPDK's dict keys: letters, digits, '_' and '/' only.
  for (const auto& [k, v] : all->items()) {
    EXPECT_TRUE(std::regex_match(k, std::regex("^[A-Za-z0-9_/]+$"))) << k;
    for (const auto& [k2, v2] : v.items()) {
      EXPECT_TRUE(std::regex_match(k2, std::regex("^[A-Za-z0-9_/]+$"))) << k2;
      EXPECT_FALSE(v2.is_number_float()) << k2 << " is a float; telemetry has none";
    }
  }

  auto one = telemetry_paths(d, "isp2:hub", 12 * 1024);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)["0"]["name"], "isp2:hub");
  auto none = telemetry_paths(d, "isp9:hub", 12 * 1024);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().msg, "no path \"isp9:hub\" (paths: isp1:hub, isp2:hub)");
}

TEST(MetricsTelemetry, StopsBeforeTheBudgetAndSaysSo) {
  MetricsData d = sample_data();
  const auto base = d.paths;
  for (int i = 0; i < 200; ++i) d.paths.push_back(base[static_cast<size_t>(i % 2)]);
  auto r = telemetry_paths(d, "", 12 * 1024);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->contains("truncated"));
  const size_t shown = (*r)["truncated"]["shown"];
  EXPECT_EQ((*r)["truncated"]["total"], 202u);
  EXPECT_GT(shown, 10u);
  EXPECT_EQ(r->size(), shown + 1);
  EXPECT_LT(r->dump().size(), 12u * 1024);
}

TEST(MetricsTelemetry, ClassesAndStats) {
  const auto d = sample_data();
  auto c = telemetry_classes(d, "bulk", 12 * 1024);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)["0"]["paths"], json::array({"isp1:hub", "isp2:hub"}));
  EXPECT_EQ((*c)["0"]["bytes"], 600u);
  EXPECT_FALSE(telemetry_classes(d, "nope", 12 * 1024).ok());
  const json s = telemetry_stats(d);
  EXPECT_EQ(s["drops"]["no_path"], 2u);
  EXPECT_EQ(s["esp_drops"]["icv_fail"], 2u);
  EXPECT_EQ(s["workers"]["0"]["busy_permille"], 250u);
  EXPECT_EQ(s["paths_up"], 1u);
  EXPECT_EQ(s["auth_failures"], 2u);
}

TEST(MetricsHost, ParsesProcFiles) {
  const auto t = parse_proc_stat(
      "cpu  100 5 50 800 20 3 2 1 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 12345\n");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->busy, 100u + 5 + 50 + 3 + 2 + 1);
  EXPECT_EQ(t->total, t->busy + 800 + 20);
  EXPECT_FALSE(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n"));
  EXPECT_FALSE(parse_proc_stat("cpu  1 2 x 4 5 6 7 8\n"));
  EXPECT_FALSE(parse_proc_stat(""));

  const auto m = parse_meminfo(
      "MemTotal:       16384000 kB\nMemFree:  1 kB\nMemAvailable:    8192000 kB\nHugePages_Total:    1024\n"
      "HugePages_Free:      512\nHugepagesize:       2048 kB\n");
  EXPECT_EQ(m.total_bytes, 16384000ull * 1024);
  EXPECT_EQ(m.available_bytes, 8192000ull * 1024);
  EXPECT_EQ(m.hugepages_total, 1024u);
  EXPECT_EQ(m.hugepages_free, 512u);
  EXPECT_EQ(m.hugepage_size_bytes, 2048u * 1024);

  const auto l = parse_loadavg("0.50 1.25 2.00 3/456 7890\n");
  ASSERT_TRUE(l);
  EXPECT_DOUBLE_EQ(l->m5, 1.25);
  EXPECT_FALSE(parse_loadavg("garbage\n"));

  EXPECT_TRUE(disk_space("/"));
  EXPECT_FALSE(disk_space("/nonexistent/dir"));
  EXPECT_EQ(read_text_file("/nonexistent/file"), "");
}

TEST(MetricsHost, MetersGiveRatesBetweenTwoSamples) {
  RateMeter r;
  EXPECT_FALSE(r.rate());
  r.sample(100, 1'000'000'000);
  EXPECT_FALSE(r.rate());
  r.sample(350, 1'500'000'000);
  ASSERT_TRUE(r.rate());
  EXPECT_DOUBLE_EQ(*r.rate(), 500.0);
  r.sample(10, 2'500'000'000);  // went backwards (a restart): unknown until the next sample
  EXPECT_FALSE(r.rate());
  r.sample(20, 3'500'000'000);
  EXPECT_DOUBLE_EQ(*r.rate(), 10.0);

  CpuMeter c;
  c.sample({100, 1000});
  EXPECT_FALSE(c.ratio());
  c.sample({400, 2000});
  ASSERT_TRUE(c.ratio());
  EXPECT_DOUBLE_EQ(*c.ratio(), 0.3);
}

// The control thread's side, as Appliance::run plays it: serve whoever waits.
void serve_once(MetricsExchange& ex, double uptime) {
  while (!ex.wanted()) std::this_thread::yield();
  const uint64_t ticket = ex.begin();
  auto d = std::make_shared<MetricsData>();
  d->uptime_s = uptime;
  ex.put(ticket, std::move(d));
}

TEST(MetricsExchange, EveryReaderGetsACollectionMadeAfterItAsked) {
  MetricsExchange ex;
  EXPECT_FALSE(ex.wanted());
  // Something served before anyone asked is not what the next reader gets.
  ex.put(ex.begin(), std::make_shared<MetricsData>());
  std::shared_ptr<const MetricsData> got;
  std::thread reader([&] { got = ex.fetch(std::chrono::seconds(10)); });
  serve_once(ex, 42);
  reader.join();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->uptime_s, 42);
  EXPECT_FALSE(ex.wanted());
}

TEST(MetricsExchange, TimesOutWhenNobodyServesAndAnswersAtOnceWhenClosed) {
  MetricsExchange ex;
  EXPECT_EQ(ex.fetch(std::chrono::milliseconds(20)), nullptr);
  EXPECT_TRUE(ex.wanted());  // the control loop still owes it one: it collects once, harmlessly
  std::shared_ptr<const MetricsData> got = std::make_shared<MetricsData>();
  std::thread reader([&] { got = ex.fetch(std::chrono::seconds(60)); });
  while (ex.begin() < 2) std::this_thread::yield();
  ex.close();
  reader.join();
  EXPECT_EQ(got, nullptr);
  EXPECT_EQ(ex.fetch(std::chrono::seconds(60)), nullptr);
}

TEST(MetricsHttp, ServesThePageAndRefusesAPortInUse) {
  auto ex = std::make_shared<MetricsExchange>();
  auto srv = MetricsHttp::start(Ipv4{0x7f000001}, 0, ex);
  ASSERT_TRUE(srv.ok()) << srv.error().msg;
  const std::string url = (*srv)->url();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(url, m, std::regex(R"(^http://127\.0\.0\.1:(\d+)/metrics$)"))) << url;
  const int port = std::stoi(m[1].str());

  std::atomic<bool> stop{false};
  std::thread control([&] {
    while (!stop.load()) {
      if (!ex->wanted()) {
        std::this_thread::yield();
        continue;
      }
      const uint64_t ticket = ex->begin();
      auto d = std::make_shared<MetricsData>(sample_data());
      ex->put(ticket, std::move(d));
    }
  });
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), std::string(kPrometheusContentType));
  EXPECT_NE(res->body.find("sdwan_path_rtt_seconds{path=\"isp1:hub\",uplink=\"isp1\",peer=\"hub\"} 0.0125\n"),
            std::string::npos);
  check_page(res->body);
  auto missing = cli.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // A second listener on the same port: refused, with the reason, not shared.
  auto second = MetricsHttp::start(Ipv4{0x7f000001}, static_cast<uint16_t>(port), ex);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().msg,
            "metrics: cannot listen on 127.0.0.1:" + std::to_string(port) +
                ": Address already in use (another sdwand or exporter there? set metrics.port, or metrics.enabled: "
                "false)");

  stop.store(true);
  control.join();
  // Nobody serves any more: the scrape gets 503 once the wait is over, not a hang.
  cli.set_read_timeout(std::chrono::seconds(10));
  auto late = cli.Get("/metrics");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->status, 503);
  EXPECT_NE(late->body.find("did not answer within 2000 ms"), std::string::npos) << late->body;
  srv->reset();
}

}  // namespace
}  // namespace sdwan::cp
