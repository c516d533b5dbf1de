// What the frontends share: the model registry, the metrics registry and the server's limits.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "host/metrics.h"
#include "host/model_registry.h"

namespace ferry::host {

struct ServerContext {
  ModelRegistry* registry = nullptr;
  MetricsRegistry* metrics = nullptr;
  uint64_t max_body_bytes = 64ull << 20;
  std::string server_version;
};

// The HTTP status for a StatusCode (400, 404, 503, 429, 408, 499, 500, 501, 413).
int http_status_for(StatusCode code);

}  // namespace ferry::host
