// control/drill: the failover drill's bookkeeping, with an injected clock and hand-made
// observations (the lab test drives the real thing).
#include "control/drill/drill.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace sdwan::cp {
namespace {

using nlohmann::json;
constexpr uint64_t kMs = 1000000;

// Two uplinks to one hub; classes voice (best, SLA 1 % loss) and bulk (balance, no SLA).
struct World {
  DrillManager dm{{{0, "isp1:hub", "isp1", "hub"}, {1, "isp2:hub", "isp2", "hub"}},
                  {{"voice", 1.0, true}, {"bulk", std::nullopt, false}}};
  std::vector<uint8_t> up{1, 1};
  std::vector<dp::ClassPaths> cps{2};
  std::vector<uint8_t> sla{1, 1};
  std::vector<uint64_t> pkts{0, 0}, lost{0, 0}, rx{0, 0};
  uint64_t now = 1000 * kMs;
  World() {
    cps[0].primary = 0;
    cps[1].mode = dp::ClassMode::kBalance;
    cps[1].lut = {0, 1, 0, 1, 1};
  }
  DrillObservation obs() {
    DrillObservation o;
    o.now_ns = now;
    o.path_up = up;
    o.class_paths = cps;
    o.class_sla_met = sla;
    o.n_peers = 1;
    o.class_pkts = pkts;
    o.class_lost = lost;
    o.class_rx_dropped = rx;
    return o;
  }
  DrillRequest blackout(const std::string& uplink, uint64_t ms = 30000) {
    DrillRequest r;
    r.name = uplink;
    r.duration_ms = ms;
    return r;
  }
};

TEST(Drill, BlackoutReportsDetectionRerouteLossAndSla) {
  World w;
  w.pkts = {100, 50};
  auto id = w.dm.start(w.blackout("isp1"), w.obs(), 1700000000000);
  ASSERT_TRUE(id) << id.error().msg;
  EXPECT_EQ(w.dm.drop_ppm(0), 1000000u);
  EXPECT_EQ(w.dm.drop_ppm(1), 0u);
  // 300 ms: the path is seen down; 310 ms the policy moved voice and bulk.
  w.now += 300 * kMs;
  w.up[0] = 0;
  w.pkts = {400, 350};
  w.lost = {30, 12};
  EXPECT_FALSE(w.dm.tick(w.obs(), 0));
  w.now += 10 * kMs;
  w.cps[0].primary = 1;
  w.cps[1].lut = {1, 1, 1, 1, 1};
  EXPECT_FALSE(w.dm.tick(w.obs(), 0));
  w.now += 30000 * kMs;
  w.pkts = {3100, 3050};
  EXPECT_TRUE(w.dm.tick(w.obs(), 1700000030310)) << "the drill ends when its time is up";
  EXPECT_FALSE(w.dm.running());
  EXPECT_EQ(w.dm.drop_ppm(0), 0u) << "the failure is removed at the end";
  ASSERT_EQ(w.dm.history().size(), 1u);
  const json& r = w.dm.history()[0];
  EXPECT_EQ(r["state"], "completed");
  EXPECT_EQ(r["paths"], json::array({"isp1:hub"}));
  EXPECT_DOUBLE_EQ(r["detection_ms"].get<double>(), 300.0);
  EXPECT_EQ(r["lost"], 42u);
  EXPECT_EQ(r["started"], "2023-11-14T22:13:20.000Z");
  const json& voice = r["classes"][0];
  EXPECT_TRUE(voice["affected"].get<bool>());
  EXPECT_DOUBLE_EQ(voice["rerouted_ms"].get<double>(), 310.0);
  EXPECT_EQ(voice["sent"], 3000u);
  EXPECT_EQ(voice["lost"], 30u);
  EXPECT_EQ(voice["sla_held"], true) << voice.dump() << ": 1 % of 3000 lost, SLA 1 %";
  const json& bulk = r["classes"][1];
  EXPECT_EQ(bulk["sla_held"], nullptr) << "no SLA, no verdict";
  EXPECT_EQ(bulk["lost"], 12u);
}

TEST(Drill, LossOverTheSlaIsAMissedSla) {
  World w;
  ASSERT_TRUE(w.dm.start(w.blackout("isp1", 1000), w.obs(), 0));
  w.now += 50 * kMs;
  w.cps[0].primary = 1;
  w.pkts = {1000, 0};
  w.lost = {20, 0};
  w.now += 1000 * kMs;
  EXPECT_TRUE(w.dm.tick(w.obs(), 0));
  const json& voice = w.dm.history()[0]["classes"][0];
  EXPECT_EQ(voice["sla_held"], false);
  EXPECT_NE(voice["why"].get<std::string>().find("lost 2 %"), std::string::npos) << voice["why"];
  EXPECT_EQ(w.dm.history()[0]["detection_ms"], nullptr) << "never seen down";
}

TEST(Drill, RefusesTheLastUsablePathUnlessForced) {
  World w;
  w.up = {1, 0};  // isp2 already down
  auto r = w.dm.start(w.blackout("isp1"), w.obs(), 0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().msg.find("leaves no usable path to peer hub"), std::string::npos) << r.error().msg;
  EXPECT_NE(r.error().msg.find("--force"), std::string::npos);
  EXPECT_EQ(w.dm.drop_ppm(0), 0u);
  DrillRequest loss = w.blackout("isp1");
  loss.drop_ppm = 200000;
  EXPECT_TRUE(w.dm.start(loss, w.obs(), 0)) << "a partial loss never takes the last path";
  EXPECT_TRUE(w.dm.abort(w.now, 0));
  DrillRequest forced = w.blackout("isp1");
  forced.force = true;
  EXPECT_TRUE(w.dm.start(forced, w.obs(), 0));
  EXPECT_EQ(w.dm.history()[0]["state"], "aborted");
}

TEST(Drill, OneAtATimeUnknownTargetsAndAbort) {
  World w;
  auto bad = w.dm.start(w.blackout("isp9"), w.obs(), 0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().msg, "no uplink named \"isp9\" (known: isp1, isp2)");
  DrillRequest peer = w.blackout("hub");
  peer.target = DrillRequest::Target::kPeer;
  peer.force = true;
  ASSERT_TRUE(w.dm.start(peer, w.obs(), 0));
  EXPECT_EQ(w.dm.drilled().size(), 2u) << "a peer drill takes every path to it";
  auto second = w.dm.start(w.blackout("isp2"), w.obs(), 0);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().msg.find("sdwanctl drill abort"), std::string::npos);
  EXPECT_EQ(w.dm.current(w.now)["state"], "running");
  EXPECT_TRUE(w.dm.abort(w.now + kMs, 0));
  EXPECT_FALSE(w.dm.abort(w.now, 0));
  EXPECT_EQ(w.dm.drop_ppm(0) + w.dm.drop_ppm(1), 0u);
  const json& voice = w.dm.history()[0]["classes"][0];
  EXPECT_EQ(voice["sla_held"], false) << "never rerouted: nothing else went to the hub";
}

TEST(Drill, RequestsAreValidatedWithClearErrors) {
  auto ok = DrillRequest::from_json({{"target", "uplink"}, {"name", "isp1"}, {"loss_pct", 20}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->drop_ppm, 200000u);
  EXPECT_EQ(ok->duration_ms, 30000u);
  auto both = DrillRequest::from_json({{"target", "uplink"}, {"name", "isp1"}, {"loss_pct", 20}, {"blackout_ms", 10}});
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().msg.find("exactly one of"), std::string::npos);
  EXPECT_FALSE(DrillRequest::from_json({{"target", "site"}, {"name", "x"}, {"blackout_ms", 1000}}));
  auto pct = DrillRequest::from_json({{"target", "uplink"}, {"name", "isp1"}, {"loss_pct", 120}});
  ASSERT_FALSE(pct);
  EXPECT_NE(pct.error().msg.find("at most 100"), std::string::npos);
  auto dur = DrillRequest::from_json({{"target", "peer"}, {"name", "hub"}, {"blackout_ms", 5}});
  ASSERT_FALSE(dur);
  EXPECT_NE(dur.error().msg.find("between 100 ms and 24 h"), std::string::npos);
  EXPECT_FALSE(DrillRequest::from_json({{"target", "peer"}, {"name", "hub"}, {"blackout_ms", "soon"}}));
}

TEST(Drill, HistoryKeepsTheLastReportsAndRestoresIds) {
  DrillManager dm{{{0, "isp1:hub", "isp1", "hub"}}, {}, 2};
  dm.restore({json{{"id", 7}}, json{{"id", 8}}, json{{"id", 9}}, json("junk")});
  EXPECT_EQ(dm.history().size(), 2u);
  EXPECT_EQ(dm.next_id(), 10u);
}

}  // namespace
}  // namespace sdwan::cp
