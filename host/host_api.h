// The function table the host hands to every backend (ferry_host_api): logging into the host's
// log, metrics into the host's MetricsRegistry, response delivery into InflightRequest, and
// loading progress into ModelVersion.
#pragma once

#include <memory>

#include "ferry/ferry.h"
#include "host/metrics.h"

namespace ferry::host {

// Owns a ferry_host_api whose functions write to `metrics`; both must outlive every backend.
class HostApi {
 public:
  explicit HostApi(MetricsRegistry* metrics);
  const ferry_host_api* get() const { return &api_; }

 private:
  ferry_host_api api_{};
};

// ferry_host_api::respond (defined with InflightRequest).
ferry_error_code host_respond(ferry_responder* responder, const ferry_response* response);
// ferry_host_api::load_progress (defined with ModelVersion).
void host_load_progress(ferry_load_reporter* reporter, const ferry_load_progress* progress);

}  // namespace ferry::host
