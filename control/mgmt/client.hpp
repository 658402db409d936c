// One management request from a tool (sdwanctl, tests, scripts' helpers) to a running sdwand.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "dataplane/api/result.hpp"

namespace sdwan::cp {

/// Default place of the daemon's management socket (config key mgmt.socket).
inline constexpr const char* kMgmtDefaultSocket = "/run/sdwan/sdwand.sock";

/// Sends req to the daemon at socket_path and waits up to timeout_ms in all (< 0 = no limit)
/// for its answer. Returns the answer's "data" on ok:true, an Error with the daemon's message
/// on ok:false, or a one-line Error naming the socket when it cannot connect, times out or gets
/// a malformed answer. Blocking; any thread; opens and closes its own connection.
Result<nlohmann::json> mgmt_request(const std::string& socket_path, const nlohmann::json& req,
                                    int timeout_ms);

}  // namespace sdwan::cp
