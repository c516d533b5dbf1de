#include "host/host_api.h"

#include <cstdio>

#include "host/log.h"

// The host context behind ferry_host_api::host.
struct ferry_host {
  ferry::host::MetricsRegistry* metrics;
};

namespace ferry::host {
namespace {

void api_log(ferry_host*, ferry_log_level level, const char* file, int line, const char* message) {
  int l = static_cast<int>(level);
  if (l < 0) l = 0;
  if (l > 3) l = 3;
  log_line(static_cast<LogLevel>(l), file, line, message ? message : "");
}

ferry_metric* api_metric_create(ferry_host* host, ferry_metric_kind kind, const char* name, const char* help,
                                const ferry_label* labels, uint32_t num_labels, const double* buckets,
                                uint32_t num_buckets, ferry_error* error) {
  auto fail = [&](const std::string& m) -> ferry_metric* {
    if (error != nullptr) {
      error->code = FERRY_ERROR_CODE_INVALID_ARGUMENT;
      std::snprintf(error->message, sizeof(error->message), "%s", m.c_str());
    }
    return nullptr;
  };
  if (name == nullptr) return fail("metric name is NULL");
  MetricKind k;
  switch (kind) {
    case FERRY_METRIC_KIND_COUNTER: k = MetricKind::kCounter; break;
    case FERRY_METRIC_KIND_GAUGE: k = MetricKind::kGauge; break;
    case FERRY_METRIC_KIND_HISTOGRAM: k = MetricKind::kHistogram; break;
    default: return fail("unknown metric kind");
  }
  Labels l;
  for (uint32_t i = 0; i < num_labels; ++i) {
    if (labels[i].key == nullptr || labels[i].value == nullptr) return fail("label key or value is NULL");
    l.emplace_back(labels[i].key, labels[i].value);
  }
  std::vector<double> b;
  if (buckets != nullptr) b.assign(buckets, buckets + num_buckets);
  auto series = host->metrics->create_series(k, name, help ? help : "", l, std::move(b));
  if (!series.ok()) return fail(series.status().message());
  return reinterpret_cast<ferry_metric*>(series.value());
}

void api_metric_destroy(ferry_host* host, ferry_metric* metric) {
  host->metrics->destroy_series(reinterpret_cast<MetricSeries*>(metric));
}
void api_metric_add(ferry_metric* m, double v) { reinterpret_cast<MetricSeries*>(m)->add(v); }
void api_metric_set(ferry_metric* m, double v) { reinterpret_cast<MetricSeries*>(m)->set(v); }
void api_metric_observe(ferry_metric* m, double v) { reinterpret_cast<MetricSeries*>(m)->observe(v); }

}  // namespace

HostApi::HostApi(MetricsRegistry* metrics) {
  static_assert(sizeof(ferry_host*) == sizeof(void*));
  api_.struct_size = sizeof(api_);
  api_.abi_major = FERRY_ABI_VERSION_MAJOR;
  api_.abi_minor = FERRY_ABI_VERSION_MINOR;
  api_.host = new ferry_host{metrics};  // lives as long as the process: backends may log until exit
  api_.log = api_log;
  api_.metric_create = api_metric_create;
  api_.metric_destroy = api_metric_destroy;
  api_.metric_add = api_metric_add;
  api_.metric_set = api_metric_set;
  api_.metric_observe = api_metric_observe;
  api_.respond = host_respond;
  api_.load_progress = host_load_progress;
}

}  // namespace ferry::host
