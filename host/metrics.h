// The host's metrics registry and its Prometheus text exposition (format 0.0.4).
//
// A family is a metric name with one kind, help text and (for histograms) one bucket layout. A
// series is one label set of a family. Series handles stay valid until destroy_series(); updates
// are lock-free (atomics), so they are cheap on hot paths. Registration, removal and render()
// take a mutex. Thread-safe throughout.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ferry::host {

enum class MetricKind { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

// Default latency buckets, seconds.
const std::vector<double>& default_latency_buckets();

// One series. Counters: add(v >= 0). Gauges: add/set. Histograms: observe.
class MetricSeries {
 public:
  MetricSeries(MetricKind kind, std::vector<double> buckets);
  void add(double v);
  void set(double v);
  void observe(double v);

  MetricKind kind() const { return kind_; }
  double value() const;  // counters and gauges
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }  // histograms
  double sum() const;                                                          // histograms
  const std::vector<double>& buckets() const { return buckets_; }
  uint64_t bucket_count(size_t i) const { return bucket_counts_[i].load(std::memory_order_relaxed); }

 private:
  MetricKind kind_;
  std::atomic<uint64_t> value_bits_{0};  // double, bit-cast, for counters/gauges; sum for histograms
  std::atomic<uint64_t> count_{0};
  std::vector<double> buckets_;
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;  // [buckets_.size()], not cumulative
};

class MetricsRegistry {
 public:
  // Creates a series, or returns the existing one with the same name and labels (shared: each
  // create needs its own destroy_series; the series goes with the last). Sharing is what lets a
  // reloaded model version take over its predecessor's series while both exist. Fails on a bad
  // metric or label name, or a family registered with another kind, help or buckets. `buckets`
  // empty means the default latency buckets (histograms only).
  Result<MetricSeries*> create_series(MetricKind kind, const std::string& name, const std::string& help,
                                      const Labels& labels, std::vector<double> buckets = {});
  // Releases one reference; the last one removes the series and invalidates the pointer. Unknown
  // pointers are ignored.
  void destroy_series(MetricSeries* series);
  // All families in Prometheus text format, families sorted by name, series by labels.
  std::string render() const;

  static bool valid_metric_name(const std::string& name);
  static bool valid_label_name(const std::string& name);

 private:
  struct Family {
    MetricKind kind;
    std::string help;
    std::vector<double> buckets;
    struct Entry {
      std::unique_ptr<MetricSeries> series;
      int refs = 0;
    };
    std::map<std::string, Entry> series;  // by rendered label text
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;  // guarded by mu_
};

}  // namespace ferry::host
