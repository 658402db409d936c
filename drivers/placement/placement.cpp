#include <hwloc.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "drivers/api/placement.hpp"

namespace sdwan::drv {
namespace {

// What plan_cores needs to know about one logical CPU (an lcore is a Linux CPU number).
struct Pu {
  unsigned os = 0;
  int numa = -1;
  unsigned core = 0;      // index of its physical core: PUs with the same value are SMT siblings
  unsigned smt_rank = 0;  // 0 for the first PU of its core, 1 for the next...
  bool allowed = false;
};

struct Machine {
  std::map<unsigned, Pu> pus;  // by os index, so iteration is in CPU-number order
  std::set<int> numa_nodes;
};

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const noexcept { hwloc_topology_destroy(t); }
};

// The kernel's mask is the truth for this process: cgroups, taskset and isolcpus all end up
// in it. Grown until it fits the kernel's nr_cpu_ids.
Result<std::set<unsigned>> allowed_cpus() {
  for (size_t ncpu = 1024; ncpu <= (1u << 20); ncpu *= 2) {
    cpu_set_t* set = CPU_ALLOC(ncpu);
    if (set == nullptr) return err("lcores: out of memory reading the CPU affinity");
    const size_t size = CPU_ALLOC_SIZE(ncpu);
    CPU_ZERO_S(size, set);
    if (sched_getaffinity(0, size, set) == 0) {
      std::set<unsigned> out;
      for (size_t c = 0; c < ncpu; ++c)
        if (CPU_ISSET_S(c, size, set)) out.insert(static_cast<unsigned>(c));
      CPU_FREE(set);
      return out;
    }
    const int e = errno;
    CPU_FREE(set);
    if (e != EINVAL) return err("lcores: sched_getaffinity failed (errno " + std::to_string(e) + ")");
  }
  return err("lcores: sched_getaffinity: CPU mask too large");
}

Result<Machine> read_machine() {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) return err("lcores: hwloc_topology_init failed");
  std::unique_ptr<hwloc_topology, TopologyDeleter> topo(raw);
  // Without this hwloc hides the CPUs we may not use, and "does not exist" and "not allowed"
  // would read the same to the operator.
  if (hwloc_topology_set_flags(topo.get(), HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED) != 0 ||
      hwloc_topology_load(topo.get()) != 0)
    return err("lcores: hwloc could not read this machine's topology");
  auto allowed = allowed_cpus();
  if (!allowed) return allowed.error();

  Machine m;
  const int nnodes = hwloc_get_nbobjs_by_type(topo.get(), HWLOC_OBJ_NUMANODE);
  std::vector<hwloc_obj_t> nodes;
  for (int i = 0; i < nnodes; ++i) {
    hwloc_obj_t n = hwloc_get_obj_by_type(topo.get(), HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    nodes.push_back(n);
    m.numa_nodes.insert(static_cast<int>(n->os_index));
  }
  std::map<hwloc_obj_t, unsigned> core_index;
  std::map<unsigned, unsigned> core_seen;
  const int npus = hwloc_get_nbobjs_by_type(topo.get(), HWLOC_OBJ_PU);
  for (int i = 0; i < npus; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(topo.get(), HWLOC_OBJ_PU, static_cast<unsigned>(i));
    Pu p;
    p.os = pu->os_index;
    p.allowed = allowed->count(p.os) != 0;
    for (hwloc_obj_t n : nodes)
      if (hwloc_bitmap_isset(n->cpuset, p.os)) p.numa = static_cast<int>(n->os_index);
    // A topology without Core objects (some VMs) makes every PU its own core.
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo.get(), HWLOC_OBJ_CORE, pu);
    hwloc_obj_t key = core != nullptr ? core : pu;
    p.core = core_index.emplace(key, static_cast<unsigned>(core_index.size())).first->second;
    p.smt_rank = core_seen[p.core]++;
    m.pus[p.os] = p;
  }
  if (m.pus.empty()) return err("lcores: hwloc found no CPUs");
  return m;
}

// "0-3,8-11": the form lscpu and taskset use.
std::string ranges(const std::vector<unsigned>& sorted) {
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(sorted[i]);
    if (j > i) out += '-' + std::to_string(sorted[j]);
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

std::string list(const std::vector<unsigned>& v) {
  std::string out;
  for (unsigned c : v) out += (out.empty() ? "" : ",") + std::to_string(c);
  return out;
}

Status check_core(const Machine& m, std::string_view key, unsigned core) {
  std::vector<unsigned> all, ok;
  for (const auto& [os, p] : m.pus) {
    all.push_back(os);
    if (p.allowed) ok.push_back(os);
  }
  const std::string where = std::string(key) + ": core " + std::to_string(core);
  const auto it = m.pus.find(core);
  if (it == m.pus.end()) return err(where + " does not exist (this machine has cores " + ranges(all) + ")");
  if (!it->second.allowed)
    return err(where + " is not allowed to this process (its CPU affinity allows " + ranges(ok) + ")");
  return Ok{};
}

// The node most ports with a known node sit on (lowest on a tie); -1 when none is known.
int preferred_node(const Machine& m, const std::vector<int>& port_numa) {
  std::map<int, unsigned> votes;
  for (int n : port_numa)
    if (n >= 0 && m.numa_nodes.count(n) != 0) ++votes[n];
  int best = -1;
  unsigned best_votes = 0;
  for (const auto& [n, v] : votes)
    if (v > best_votes) best = n, best_votes = v;
  return best;
}

std::string ports_clause(const Machine& m, const std::vector<int>& port_numa, int node) {
  unsigned known = 0, on_node = 0;
  for (int n : port_numa) {
    if (n < 0 || m.numa_nodes.count(n) == 0) continue;
    ++known;
    if (n == node) ++on_node;
  }
  if (port_numa.empty()) return "no ports";
  if (known == 0) return "ports' NUMA node unknown";
  return std::to_string(on_node) + " of " + std::to_string(port_numa.size()) + " ports on NUMA " +
         std::to_string(node);
}

// "control on core 0; workers on 1 (NUMA 0); ..."
std::string describe(const Machine& m, unsigned control, const std::vector<unsigned>& workers,
                     const std::vector<int>& port_numa, bool automatic) {
  std::map<int, std::vector<unsigned>> by_node;
  for (unsigned w : workers) by_node[m.pus.at(w).numa].push_back(w);
  std::string d = "control on core " + std::to_string(control) + "; workers on ";
  bool first = true;
  for (const auto& [node, cores] : by_node) {
    d += (first ? "" : ", ") + list(cores) + " (NUMA " + (node < 0 ? "?" : std::to_string(node)) + ")";
    first = false;
  }
  const int node = preferred_node(m, port_numa);
  d += "; " + ports_clause(m, port_numa, node);
  d += automatic ? "; chosen automatically" : "; as configured";
  const Pu& c = m.pus.at(control);
  for (unsigned w : workers) {
    const Pu& p = m.pus.at(w);
    if (w == control)
      d += "; worker " + std::to_string(w) + " shares its core with control (too few allowed cores)";
    else if (p.core == c.core)
      d += "; worker " + std::to_string(w) + " is an SMT sibling of the control core";
  }
  if (node >= 0) {
    std::vector<unsigned> remote;
    for (unsigned w : workers)
      if (m.pus.at(w).numa != node) remote.push_back(w);
    if (!remote.empty())
      d += "; workers " + list(remote) + " are off the ports' NUMA node " + std::to_string(node);
  }
  return d;
}

}  // namespace

Result<CorePlan> plan_cores(unsigned control, const std::vector<unsigned>& requested_workers,
                            unsigned worker_count, const std::vector<int>& port_numa) {
  auto machine = read_machine();
  if (!machine) return machine.error();
  const Machine& m = *machine;
  if (auto s = check_core(m, "lcores.control", control); !s) return s.error();

  CorePlan plan;
  plan.control = control;
  if (!requested_workers.empty()) {
    std::set<unsigned> seen;
    for (unsigned w : requested_workers) {
      if (auto s = check_core(m, "lcores.workers", w); !s) return s.error();
      if (w == control)
        return err("lcores.workers: core " + std::to_string(w) + " is the control core (lcores.control)");
      if (!seen.insert(w).second) return err("lcores.workers: core " + std::to_string(w) + " is listed twice");
    }
    plan.workers = requested_workers;
    plan.description = describe(m, control, plan.workers, port_numa, false);
    return plan;
  }

  if (worker_count == 0) return err("lcores.workers: at least one worker is needed");
  std::vector<unsigned> allowed;
  for (const auto& [os, p] : m.pus)
    if (p.allowed) allowed.push_back(os);
  if (worker_count > allowed.size())
    return err("lcores.workers: " + std::to_string(worker_count) + " workers need as many cores, but this process may use only " +
               std::to_string(allowed.size()) + " (" + ranges(allowed) + ")");

  const int node = preferred_node(m, port_numa);
  const Pu& c = m.pus.at(control);
  // Local memory for the packet buffers matters most, then keeping the control core's
  // pipeline to itself, then one worker per physical core before doubling up on SMT threads.
  auto rank = [&](const Pu& p) {
    return std::make_tuple(p.os == control, node >= 0 && p.numa != node, p.core == c.core, p.smt_rank, p.os);
  };
  std::vector<const Pu*> candidates;
  for (unsigned os : allowed) candidates.push_back(&m.pus.at(os));
  std::sort(candidates.begin(), candidates.end(), [&](const Pu* a, const Pu* b) { return rank(*a) < rank(*b); });
  for (unsigned i = 0; i < worker_count; ++i) plan.workers.push_back(candidates[i]->os);
  std::sort(plan.workers.begin(), plan.workers.end());
  plan.description = describe(m, control, plan.workers, port_numa, true);
  return plan;
}

}  // namespace sdwan::drv
