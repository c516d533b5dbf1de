#include "host/metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>

namespace ferry::host {
namespace {

void atomic_add_double(std::atomic<uint64_t>& bits, double v) {
  uint64_t old = bits.load(std::memory_order_relaxed);
  while (!bits.compare_exchange_weak(old, std::bit_cast<uint64_t>(std::bit_cast<double>(old) + v),
                                     std::memory_order_relaxed)) {
  }
}

std::string format_double(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shorter form when it round-trips (integers print as such).
  char shorter[64];
  std::snprintf(shorter, sizeof(shorter), "%.15g", v);
  if (std::strtod(shorter, nullptr) == v) return shorter;
  return buf;
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// `k1="v1",k2="v2"` in the given order (no braces).
std::string label_text(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k + "=\"" + escape_label_value(v) + "\"";
  }
  return out;
}

std::string with_braces(const std::string& inner) { return inner.empty() ? "" : "{" + inner + "}"; }

const char* kind_name(MetricKind k) {
  switch (k) {
    case MetricKind::kCounter: return "counter";
    case MetricKind::kGauge: return "gauge";
    case MetricKind::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

const std::vector<double>& default_latency_buckets() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,   0.5,   1,      2.5,   5,    10,    30,    60};
  return kBuckets;
}

MetricSeries::MetricSeries(MetricKind kind, std::vector<double> buckets) : kind_(kind), buckets_(std::move(buckets)) {
  bucket_counts_ = std::make_unique<std::atomic<uint64_t>[]>(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) bucket_counts_[i].store(0);
}

void MetricSeries::add(double v) {
  if (kind_ == MetricKind::kHistogram) return observe(v);
  if (kind_ == MetricKind::kCounter && !(v >= 0)) return;  // counters never go down
  atomic_add_double(value_bits_, v);
}

void MetricSeries::set(double v) {
  if (kind_ != MetricKind::kGauge) return;
  value_bits_.store(std::bit_cast<uint64_t>(v), std::memory_order_relaxed);
}

void MetricSeries::observe(double v) {
  if (kind_ != MetricKind::kHistogram) return add(v);
  auto it = std::lower_bound(buckets_.begin(), buckets_.end(), v);  // first bound >= v: le is inclusive
  if (it != buckets_.end()) bucket_counts_[it - buckets_.begin()].fetch_add(1, std::memory_order_relaxed);
  atomic_add_double(value_bits_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

double MetricSeries::value() const { return std::bit_cast<double>(value_bits_.load(std::memory_order_relaxed)); }
double MetricSeries::sum() const { return value(); }

bool MetricsRegistry::valid_metric_name(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool MetricsRegistry::valid_label_name(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

Result<MetricSeries*> MetricsRegistry::create_series(MetricKind kind, const std::string& name,
                                                     const std::string& help, const Labels& labels,
                                                     std::vector<double> buckets) {
  if (!valid_metric_name(name)) return Status::InvalidArgument("invalid metric name '" + name + "'");
  for (const auto& [k, v] : labels) {
    if (!valid_label_name(k) || k == "le") return Status::InvalidArgument("invalid label name '" + k + "' on " + name);
  }
  if (kind == MetricKind::kHistogram) {
    if (buckets.empty()) buckets = default_latency_buckets();
    if (!std::is_sorted(buckets.begin(), buckets.end()) ||
        std::adjacent_find(buckets.begin(), buckets.end()) != buckets.end()) {
      return Status::InvalidArgument("histogram buckets of " + name + " must increase strictly");
    }
    while (!buckets.empty() && std::isinf(buckets.back())) buckets.pop_back();  // +Inf is implicit
  } else {
    buckets.clear();
  }
  std::string key = label_text(labels);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  Family& f = it->second;
  if (inserted) {
    f.kind = kind;
    f.help = help;
    f.buckets = buckets;
  } else if (f.kind != kind || f.help != help || f.buckets != buckets) {
    return Status::InvalidArgument("metric " + name + " is already registered with another kind, help or buckets");
  }
  auto [sit, sinserted] = f.series.try_emplace(key);
  if (sinserted) sit->second.series = std::make_unique<MetricSeries>(kind, std::move(buckets));
  ++sit->second.refs;
  return sit->second.series.get();
}

void MetricsRegistry::destroy_series(MetricSeries* series) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto fit = families_.begin(); fit != families_.end(); ++fit) {
    auto& s = fit->second.series;
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (it->second.series.get() == series) {
        if (--it->second.refs > 0) return;
        s.erase(it);
        if (s.empty()) families_.erase(fit);
        return;
      }
    }
  }
}

std::string MetricsRegistry::render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + kind_name(f.kind) + "\n";
    for (const auto& [labels, entry] : f.series) {
      const MetricSeries* s = entry.series.get();
      if (f.kind != MetricKind::kHistogram) {
        out += name + with_braces(labels) + " " + format_double(s->value()) + "\n";
        continue;
      }
      std::string prefix = labels.empty() ? "" : labels + ",";
      // Read count first: buckets may then sum to at most count, never more.
      uint64_t count = s->count();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s->buckets().size(); ++i) {
        cumulative += s->bucket_count(i);
        out += name + "_bucket{" + prefix + "le=\"" + format_double(s->buckets()[i]) + "\"} " +
               std::to_string(std::min(cumulative, count)) + "\n";
      }
      out += name + "_bucket{" + prefix + "le=\"+Inf\"} " + std::to_string(count) + "\n";
      out += name + "_sum" + with_braces(labels) + " " + format_double(s->sum()) + "\n";
      out += name + "_count" + with_braces(labels) + " " + std::to_string(count) + "\n";
    }
  }
  return out;
}

}  // namespace ferry::host
