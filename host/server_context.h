// What the frontends share: the model registry, the metrics registry, the server's limits and its
// API key.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "host/metrics.h"
#include "host/model_registry.h"

namespace ferry::host {

struct ServerContext {
  ModelRegistry* registry = nullptr;
  MetricsRegistry* metrics = nullptr;
  uint64_t max_body_bytes = 64ull << 20;  // HTTP bodies and ZeroMQ messages
  std::string server_version;
  std::string api_key;               // "" = no authentication
  bool auth_health_metrics = false;  // health endpoints and /metrics need the key too
  bool web_ui = true;                // serve the chat page at "/" (host/http/web_ui.h)
};

// The HTTP status for a StatusCode (400, 404, 503, 429, 408, 499, 500, 501, 413).
int http_status_for(StatusCode code);

// Whether `presented` equals `expected` (non-empty), in time that depends only on the length of
// `presented`, so that a client timing failed attempts learns nothing about the key. Defined in
// server.cc.
bool api_key_matches(std::string_view presented, std::string_view expected);

}  // namespace ferry::host
