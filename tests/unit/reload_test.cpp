// control/config/reload: what a reload may apply live, and the messages of what it may not.
#include "control/config/reload.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace sdwan::cp {
namespace {

constexpr const char* kBase =
    "name: branch1\n"
    "role: edge\n"
    "lan: {port: af_packet:lan0, address: 192.168.10.1/24}\n"
    "uplinks:\n"
    "  - {name: isp1, port: af_packet:wan1, address: 10.1.0.2/24, next_hop: 10.1.0.1}\n"
    "  - {name: isp2, port: af_packet:wan2, address: 10.2.0.2/24, next_hop: 10.2.0.1}\n"
    "peers:\n"
    "  - name: hub\n"
    "    key_file: /etc/sdwan/master.key\n"
    "    endpoints: [{address: 10.1.1.2}]\n"
    "    prefixes: [192.168.20.0/24]\n"
    "classes:\n"
    "  - {name: voice, match: [{proto: udp, dport: 5004}], sla: {latency_ms: 150}, mode: best}\n"
    "  - {name: bulk, default: true, mode: balance}\n";

Config parse(const std::string& text) {
  auto c = parse_config(text, "edge.yaml");
  if (!c) throw std::runtime_error(c.error().msg);
  return *c;
}

std::string edit(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("not found: " + from);
  return text.replace(at, from.size(), to);
}

bool has(const ReloadPlan& p, const std::string& line) {
  return std::find(p.changes.begin(), p.changes.end(), line) != p.changes.end();
}

TEST(Reload, SameConfigChangesNothing) {
  auto p = plan_reload(parse(kBase), parse(kBase));
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->any());
}

TEST(Reload, ClassesPolicyCostsTimersAndLogLevelApplyLive) {
  std::string t = edit(kBase, "latency_ms: 150", "latency_ms: 120");
  t = edit(t, "  - {name: bulk,", "  - {name: video, match: [{proto: udp, dport: 5006}], mode: spray}\n  - {name: bulk,");
  t = edit(t, "next_hop: 10.2.0.1}", "next_hop: 10.2.0.1, cost: metered, bandwidth: 50Mbit}");
  t += "policy: {switch_margin_pct: 20}\npaths: {probe_interval: 50}\nlog_level: debug\n";
  auto p = plan_reload(parse(kBase), parse(t));
  ASSERT_TRUE(p) << p.error().msg;
  EXPECT_TRUE(p->classes && p->policy && p->uplinks && p->paths && p->log_level);
  EXPECT_TRUE(has(*p, "class voice: changed"));
  EXPECT_TRUE(has(*p, "class video: added"));
  EXPECT_TRUE(has(*p, "uplink isp2: cost normal -> metered"));
  EXPECT_TRUE(has(*p, "uplink isp2: bandwidth 0 -> 50000000 bit/s"));
  EXPECT_TRUE(has(*p, "log_level: info -> debug"));
  auto back = plan_reload(parse(t), parse(kBase));
  ASSERT_TRUE(back);
  EXPECT_TRUE(has(*back, "class video: removed"));
}

TEST(Reload, ReorderedClassesAreAChange) {
  const std::string two = edit(kBase, "  - {name: bulk,", "  - {name: video, match: [{proto: udp, dport: 5006}], mode: spray}\n  - {name: bulk,");
  std::string swapped = edit(two, "  - {name: voice, match: [{proto: udp, dport: 5004}], sla: {latency_ms: 150}, mode: best}\n", "");
  swapped = edit(swapped, "  - {name: bulk,", "  - {name: voice, match: [{proto: udp, dport: 5004}], sla: {latency_ms: 150}, mode: best}\n  - {name: bulk,");
  auto p = plan_reload(parse(two), parse(swapped));
  ASSERT_TRUE(p) << p.error().msg;
  ASSERT_EQ(p->changes.size(), 1u);
  EXPECT_EQ(p->changes[0], "classes: order voice, video, bulk -> video, voice, bulk");
}

TEST(Reload, WhatNeedsARestartIsRefusedByName) {
  const struct {
    std::string from, to, msg;
  } cases[] = {
      {"address: 192.168.10.1/24", "address: 192.168.11.1/24", "lan: needs a restart"},
      {"port: af_packet:wan1", "port: af_packet:wan9", "uplinks[0] (isp1): port, address, next_hop or mtu: needs a restart"},
      {"name: branch1", "name: branch2", "name: branch1 -> branch2: needs a restart"},
  };
  for (const auto& c : cases) {
    auto p = plan_reload(parse(kBase), parse(edit(kBase, c.from, c.to)));
    ASSERT_FALSE(p) << c.from;
    EXPECT_NE(p.error().msg.find(c.msg), std::string::npos) << p.error().msg;
    EXPECT_NE(p.error().msg.find("a reload applies classes, policy"), std::string::npos) << p.error().msg;
  }
  auto lc = plan_reload(parse(kBase), parse(std::string(kBase) + "lcores: {control: 0, workers: [1]}\n"));
  ASSERT_FALSE(lc);
  EXPECT_NE(lc.error().msg.find("lcores: needs a restart"), std::string::npos);
}

constexpr const char* kHub2 =
    "  - name: hub2\n"
    "    key_file: /etc/sdwan/master.key\n"
    "    endpoints: [{address: 10.2.1.2}]\n"
    "    prefixes: [192.168.30.0/24]\n";

TEST(Reload, PeersAddedRemovedAndChangedApplyLive) {
  const std::string two = edit(kBase, "classes:\n", std::string(kHub2) + "classes:\n");
  auto add = plan_reload(parse(kBase), parse(two));
  ASSERT_TRUE(add) << add.error().msg;
  EXPECT_TRUE(add->peers);
  EXPECT_EQ(add->peers_added, std::vector<std::string>{"hub2"});
  EXPECT_TRUE(add->peers_removed.empty());
  EXPECT_TRUE(has(*add, "peer hub2: added"));

  auto rm = plan_reload(parse(two), parse(kBase));
  ASSERT_TRUE(rm) << rm.error().msg;
  EXPECT_EQ(rm->peers_removed, std::vector<std::string>{"hub2"});
  EXPECT_TRUE(has(*rm, "peer hub2: removed"));

  auto ch = plan_reload(parse(two), parse(edit(two, "endpoints: [{address: 10.1.1.2}]", "endpoints: [{address: 10.1.1.3}]")));
  ASSERT_TRUE(ch) << ch.error().msg;
  EXPECT_EQ(ch->peers_removed, std::vector<std::string>{"hub"});
  EXPECT_EQ(ch->peers_added, std::vector<std::string>{"hub"});
  EXPECT_TRUE(has(*ch, "peer hub: changed (its paths start again with new SAs)"));

  // The same peers in another order are no change: indexes stay as they are.
  const std::string swapped = edit(kBase, "peers:\n", std::string("peers:\n") + kHub2);
  auto same = plan_reload(parse(two), parse(swapped));
  ASSERT_TRUE(same) << same.error().msg;
  EXPECT_FALSE(same->any());
}

TEST(Reload, MergedPeersKeepIndexesWithTombstones) {
  const Config one = parse(kBase);
  const std::string two_text = edit(kBase, "classes:\n", std::string(kHub2) + "classes:\n");
  const Config two = parse(two_text);
  // hub2 added: appended.
  auto m = merge_peers(one.peers, two.peers);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "hub");
  EXPECT_EQ(m[1].name, "hub2");
  // hub removed: its tombstone keeps index 0, hub2 stays at 1.
  const Config only2 = parse(edit(edit(two_text, "  - name: hub\n    key_file: /etc/sdwan/master.key\n    endpoints: [{address: 10.1.1.2}]\n"
                                                "    prefixes: [192.168.20.0/24]\n", ""), "", ""));
  auto m2 = merge_peers(m, only2.peers);
  ASSERT_EQ(m2.size(), 2u);
  EXPECT_TRUE(m2[0].removed);
  EXPECT_EQ(m2[0].name, "hub (removed)");
  EXPECT_TRUE(m2[0].prefixes.empty());
  EXPECT_FALSE(m2[1].removed);
  EXPECT_EQ(m2[1].name, "hub2");
  EXPECT_EQ(live_peers(m2).size(), 1u);
  // hub back, changed: a new index after the tombstone; merging again changes nothing.
  const Config back = parse(edit(two_text, "endpoints: [{address: 10.1.1.2}]", "endpoints: [{address: 10.1.1.9}]"));
  auto m3 = merge_peers(m2, back.peers);
  ASSERT_EQ(m3.size(), 3u);
  EXPECT_TRUE(m3[0].removed);
  EXPECT_EQ(m3[1].name, "hub2");
  EXPECT_EQ(m3[2].name, "hub");
  EXPECT_EQ(m3[2].endpoints[0].address.str(), "10.1.1.9");
  EXPECT_EQ(merge_peers(m3, back.peers), m3);
  // A plan against the running list with a tombstone sees only the live peers.
  Config running = back;
  running.peers = m3;
  auto p = plan_reload(running, back);
  ASSERT_TRUE(p) << p.error().msg;
  EXPECT_FALSE(p->any());
}

TEST(Reload, AppsApplyLiveTheHostPortNeedsARestart) {
  const std::string host = std::string(kBase) + "host: {port: tap:sdwan0}\n";
  const std::string one = host + "apps: [{name: web, type: tcp, target: 192.168.20.2:80}]\n";
  auto p = plan_reload(parse(host), parse(one));
  ASSERT_TRUE(p) << p.error().msg;
  EXPECT_TRUE(p->apps);
  EXPECT_TRUE(has(*p, "apps: 0 check(s) -> 1"));
  auto same = plan_reload(parse(one), parse(one));
  ASSERT_TRUE(same);
  EXPECT_FALSE(same->any());
  auto h = plan_reload(parse(kBase), parse(host));
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().msg.find("host: needs a restart"), std::string::npos) << h.error().msg;
}

}  // namespace
}  // namespace sdwan::cp
