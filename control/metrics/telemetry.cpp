#include "control/metrics/telemetry.hpp"

#include <fmt/format.h>
#include <rte_telemetry.h>

#include <climits>
#include <mutex>
#include <string>

namespace sdwan::cp {
namespace {

using json = nlohmann::json;

// DPDK's callbacks carry no user pointer, and DPDK keeps calling them after the appliance is
// gone: the exchange is reached through this process-wide slot, emptied at shutdown.
std::mutex g_mu;
std::shared_ptr<MetricsExchange> g_ex;
bool g_registered = false;

// Fills an rte_tel_data dict from a JSON object: strings, integers and booleans as they are,
// objects as nested dicts, arrays of strings as string arrays. Our keys are telemetry-safe
// (letters, digits, '_'); anything DPDK still refuses is left out.
void fill_dict(rte_tel_data* d, const json& o) {
  rte_tel_data_start_dict(d);
  for (const auto& [k, v] : o.items()) {
    const char* key = k.c_str();
    if (v.is_string()) {
      rte_tel_data_add_dict_string(d, key, v.get_ref<const std::string&>().c_str());
    } else if (v.is_boolean()) {
      rte_tel_data_add_dict_int(d, key, v.get<bool>() ? 1 : 0);
    } else if (v.is_number_unsigned()) {
      rte_tel_data_add_dict_u64(d, key, v.get<uint64_t>());
    } else if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      if (x >= INT_MIN && x <= INT_MAX) rte_tel_data_add_dict_int(d, key, static_cast<int>(x));
    } else if (v.is_object()) {
      rte_tel_data* c = rte_tel_data_alloc();
      if (c == nullptr) continue;
      fill_dict(c, v);
      if (rte_tel_data_add_dict_container(d, key, c, 0) != 0) rte_tel_data_free(c);
    } else if (v.is_array()) {
      rte_tel_data* c = rte_tel_data_alloc();
      if (c == nullptr) continue;
      rte_tel_data_start_array(c, RTE_TEL_STRING_VAL);
      for (const auto& e : v)
        if (e.is_string()) rte_tel_data_add_array_string(c, e.get_ref<const std::string&>().c_str());
      if (rte_tel_data_add_dict_container(d, key, c, 0) != 0) rte_tel_data_free(c);
    }
  }
}

std::shared_ptr<const MetricsData> fetch(std::string* why) {
  std::shared_ptr<MetricsExchange> ex;
  {
    std::lock_guard lock(g_mu);
    ex = g_ex;
  }
  if (ex == nullptr) {
    *why = "sdwand is stopping";
    return nullptr;
  }
  auto d = ex->fetch(kTelemetryWait);
  if (d == nullptr)
    *why = fmt::format("the control thread did not answer within {} ms (busy or stopping)", kTelemetryWait.count());
  return d;
}

// Errors are a plain string answer, {"/sdwan/paths": "no path ..."}: a null (what a negative
// return gives) would not say why.
int answer(rte_tel_data* info, const Result<json>& r) {
  if (!r) {
    rte_tel_data_string(info, r.error().msg.c_str());
    return 0;
  }
  fill_dict(info, *r);
  return 0;
}

std::string_view param_of(const char* params) { return params == nullptr ? std::string_view() : std::string_view(params); }

int cmd_paths(const char*, const char* params, rte_tel_data* info) {
  std::string why;
  auto d = fetch(&why);
  if (d == nullptr) return answer(info, err(why));
  return answer(info, telemetry_paths(*d, param_of(params), kTelemetryBudget));
}

int cmd_classes(const char*, const char* params, rte_tel_data* info) {
  std::string why;
  auto d = fetch(&why);
  if (d == nullptr) return answer(info, err(why));
  return answer(info, telemetry_classes(*d, param_of(params), kTelemetryBudget));
}

int cmd_stats(const char*, const char*, rte_tel_data* info) {
  std::string why;
  auto d = fetch(&why);
  if (d == nullptr) return answer(info, err(why));
  return answer(info, telemetry_stats(*d));
}

}  // namespace

Status telemetry_attach(std::shared_ptr<MetricsExchange> ex) {
  std::lock_guard lock(g_mu);
  if (!g_registered) {
    struct Cmd {
      const char* name;
      telemetry_cb fn;
      const char* help;
    };
    const Cmd cmds[] = {
        {"/sdwan/paths", cmd_paths, "Every path's state, RTT, jitter, loss and counters. Parameters: a path name"},
        {"/sdwan/classes", cmd_classes, "Every class's mode, chosen paths and SLA state per peer. Parameters: a class name"},
        {"/sdwan/stats", cmd_stats, "sdwand's counters, drops by reason, workers, mempools and host. Takes no parameters"},
    };
    for (const Cmd& c : cmds)
      if (int rc = rte_telemetry_register_cmd(c.name, c.fn, c.help); rc != 0)
        return err(fmt::format("DPDK telemetry refused the command {}: error {}", c.name, rc));
    g_registered = true;
  }
  g_ex = std::move(ex);
  return Ok{};
}

void telemetry_detach() {
  std::lock_guard lock(g_mu);
  g_ex.reset();
}

}  // namespace sdwan::cp
