// plan_cores on the machine the tests run on: its real topology and this process's affinity.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "drivers/api/placement.hpp"

namespace sdwan::drv {
namespace {

std::vector<unsigned> allowed_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<unsigned> out;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

std::string first_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

// "0-3,8" -> {0,1,2,3,8}: the kernel's CPU list form.
std::vector<unsigned> parse_cpu_list(const std::string& s) {
  std::vector<unsigned> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t end = s.find(',', i);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(i, end - i);
    const size_t dash = item.find('-');
    const unsigned lo = static_cast<unsigned>(std::stoul(item.substr(0, dash)));
    const unsigned hi = dash == std::string::npos ? lo : static_cast<unsigned>(std::stoul(item.substr(dash + 1)));
    for (unsigned c = lo; c <= hi; ++c) out.push_back(c);
    i = end + 1;
  }
  return out;
}

// Restricts this thread's affinity for one test and puts the old mask back in every case.
class AffinityGuard {
 public:
  explicit AffinityGuard(const std::vector<unsigned>& cores) {
    CPU_ZERO(&saved_);
    sched_getaffinity(0, sizeof(saved_), &saved_);
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned c : cores) CPU_SET(c, &set);
    ok_ = sched_setaffinity(0, sizeof(set), &set) == 0;
  }
  ~AffinityGuard() { sched_setaffinity(0, sizeof(saved_), &saved_); }
  AffinityGuard(const AffinityGuard&) = delete;
  AffinityGuard& operator=(const AffinityGuard&) = delete;
  bool ok() const { return ok_; }

 private:
  cpu_set_t saved_;
  bool ok_ = false;
};

class PlanCores : public ::testing::Test {
 protected:
  void SetUp() override {
    cores_ = allowed_cores();
    // Every case below needs a control core and at least one other.
    ASSERT_GE(cores_.size(), 2u) << "these tests need a machine with two usable cores";
  }
  std::vector<unsigned> cores_;
};

TEST_F(PlanCores, ExplicitWorkersAreAccepted) {
  auto plan = plan_cores(cores_[0], {cores_[1]}, 1, {-1});
  ASSERT_TRUE(plan.ok()) << plan.error().msg;
  EXPECT_EQ(plan->control, cores_[0]);
  EXPECT_EQ(plan->workers, std::vector<unsigned>{cores_[1]});
  const std::string& d = plan->description;
  EXPECT_EQ(d.rfind("control on core " + std::to_string(cores_[0]) + "; workers on " + std::to_string(cores_[1]) + " (NUMA ", 0), 0u) << d;
  EXPECT_NE(d.find("as configured"), std::string::npos) << d;
  EXPECT_NE(d.find("ports' NUMA node unknown"), std::string::npos) << d;
  EXPECT_EQ(d.find('\n'), std::string::npos);
}

TEST_F(PlanCores, NonexistentWorkerNamesTheMachinesCores) {
  auto plan = plan_cores(cores_[0], {4096}, 1, {});
  ASSERT_FALSE(plan.ok());
  // hwloc sees the online CPUs; the kernel prints them in the same range form.
  EXPECT_EQ(plan.error().msg, "lcores.workers: core 4096 does not exist (this machine has cores " +
                                  first_line("/sys/devices/system/cpu/online") + ")");
}

TEST_F(PlanCores, NonexistentControlIsRefused) {
  auto plan = plan_cores(4096, {cores_[1]}, 1, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().msg.rfind("lcores.control: core 4096 does not exist", 0), 0u) << plan.error().msg;
}

TEST_F(PlanCores, DuplicateWorkerIsRefused) {
  auto plan = plan_cores(cores_[0], {cores_[1], cores_[1]}, 2, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().msg, "lcores.workers: core " + std::to_string(cores_[1]) + " is listed twice");
}

TEST_F(PlanCores, ControlCoreAmongWorkersIsRefused) {
  auto plan = plan_cores(cores_[0], {cores_[1], cores_[0]}, 2, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().msg,
            "lcores.workers: core " + std::to_string(cores_[0]) + " is the control core (lcores.control)");
}

TEST_F(PlanCores, CoreOutsideTheAffinityIsRefused) {
  AffinityGuard only_first({cores_[0]});
  ASSERT_TRUE(only_first.ok());
  auto plan = plan_cores(cores_[0], {cores_[1]}, 1, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().msg, "lcores.workers: core " + std::to_string(cores_[1]) +
                                  " is not allowed to this process (its CPU affinity allows " +
                                  std::to_string(cores_[0]) + ")");
}

TEST_F(PlanCores, AutoAvoidsControlAndItsSiblings) {
  auto plan = plan_cores(cores_[0], {}, 1, {});
  ASSERT_TRUE(plan.ok()) << plan.error().msg;
  ASSERT_EQ(plan->workers.size(), 1u);
  const unsigned w = plan->workers[0];
  EXPECT_NE(w, cores_[0]);
  EXPECT_NE(std::find(cores_.begin(), cores_.end(), w), cores_.end()) << "worker " << w << " is not allowed";
  // The kernel's own list of control's SMT siblings; with more cores than siblings, none is used.
  const std::string siblings =
      first_line("/sys/devices/system/cpu/cpu" + std::to_string(cores_[0]) + "/topology/thread_siblings_list");
  const auto sib = parse_cpu_list(siblings);
  ASSERT_LT(sib.size(), cores_.size()) << "every allowed core is an SMT sibling of control";
  EXPECT_EQ(std::find(sib.begin(), sib.end(), w), sib.end()) << "worker " << w << " shares a core with control (" << siblings << ")";
  EXPECT_NE(plan->description.find("chosen automatically"), std::string::npos) << plan->description;
  EXPECT_EQ(plan->description.find("shares its core"), std::string::npos) << plan->description;
}

TEST_F(PlanCores, AutoUsesEveryCoreOnlyWhenAskedTo) {
  const auto n = static_cast<unsigned>(cores_.size());
  auto plan = plan_cores(cores_[0], {}, n, {});
  ASSERT_TRUE(plan.ok()) << plan.error().msg;
  EXPECT_EQ(plan->workers, cores_);
  EXPECT_NE(plan->description.find("worker " + std::to_string(cores_[0]) + " shares its core with control"),
            std::string::npos)
      << plan->description;

  auto too_many = plan_cores(cores_[0], {}, n + 1, {});
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.error().msg.find("this process may use only " + std::to_string(n)), std::string::npos)
      << too_many.error().msg;

  auto none = plan_cores(cores_[0], {}, 0, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().msg, "lcores.workers: at least one worker is needed");
}

TEST_F(PlanCores, DescriptionCountsPortsOnTheChosenNode) {
  const int node = static_cast<int>(parse_cpu_list(first_line("/sys/devices/system/node/online")).at(0));
  auto plan = plan_cores(cores_[0], {}, 1, {node, -1, node});
  ASSERT_TRUE(plan.ok()) << plan.error().msg;
  EXPECT_NE(plan->description.find("2 of 3 ports on NUMA " + std::to_string(node)), std::string::npos)
      << plan->description;
  // A node the machine does not have counts as unknown rather than steering the choice.
  auto bogus = plan_cores(cores_[0], {}, 1, {4000});
  ASSERT_TRUE(bogus.ok()) << bogus.error().msg;
  EXPECT_NE(bogus->description.find("ports' NUMA node unknown"), std::string::npos) << bogus->description;
}

}  // namespace
}  // namespace sdwan::drv
