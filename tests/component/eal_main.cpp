// main() for component tests: one EAL per process, no hugepages, no PCI, a private
// file prefix so several test processes (and a running lab) never share state.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string prefix = "--file-prefix=sdwan-ct-" + std::to_string(getpid());
  std::vector<std::string> args = {"component_tests", "--no-huge", "--no-pci", "-m", "512", "-l", "0",
                                   "--log-level=lib.eal:error", prefix, "--no-telemetry"};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    fprintf(stderr, "component_tests: rte_eal_init failed\n");
    return 1;
  }
  const int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  // --in-memory would leave nothing behind but is refused with --no-huge; so tidy up by hand.
  std::error_code ec;
  std::filesystem::remove_all("/var/run/dpdk/sdwan-ct-" + std::to_string(getpid()), ec);
  return rc;
}
