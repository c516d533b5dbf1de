#include "perf/loadgen/latency_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ferry::loadgen {
namespace {

// Nearest-rank percentile of sorted values, in ms.
double percentile_ms(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) * 1e-6;
}

}  // namespace

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kTransport: return "transport";
    case ErrorKind::kHttpStatus: return "http_status";
    case ErrorKind::kBadBody: return "bad_body";
    case ErrorKind::kErrorResponse: return "error_response";
    case ErrorKind::kNotFinal: return "not_final";
    case ErrorKind::kIdMismatch: return "id_mismatch";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kCount: break;
  }
  return "unknown";
}

void WorkerTally::clear() {
  latencies_ns.clear();
  num_errors.fill(0);
  first_error.clear();
  num_output_tokens = 0;
}

void WorkerTally::fail(ErrorKind kind, std::string_view message) {
  ++num_errors[static_cast<size_t>(kind)];
  if (first_error.empty()) first_error = std::string(error_kind_name(kind)) + ": " + std::string(message);
}

Summary summarize(const LoadOptions& o, int num_threads, std::vector<WorkerTally>& tallies, double wall_s,
                  double client_cpu_s) {
  Summary s;
  s.label = o.label;
  s.protocol = protocol_name(o.protocol);
  s.target = o.path.empty() ? "infer " + o.model : "GET " + o.path;
  s.concurrency = o.concurrency;
  s.num_threads = num_threads;
  s.payload_bytes = o.path.empty() ? o.payload_bytes : 0;
  s.num_requests = o.num_requests;
  s.wall_s = wall_s;
  s.client_cpu_s = client_cpu_s;

  std::vector<int64_t> all;
  size_t total = 0;
  for (const auto& t : tallies) total += t.latencies_ns.size();
  all.reserve(total);
  for (const auto& t : tallies) {
    all.insert(all.end(), t.latencies_ns.begin(), t.latencies_ns.end());
    for (size_t k = 0; k < kNumErrorKinds; ++k) s.errors_by_kind[k] += t.num_errors[k];
    if (s.first_error.empty()) s.first_error = t.first_error;
    s.num_output_tokens += t.num_output_tokens;
  }
  std::sort(all.begin(), all.end());
  s.num_ok = all.size();
  for (uint64_t n : s.errors_by_kind) s.num_errors += n;
  s.requests_per_s = wall_s > 0 ? static_cast<double>(s.num_ok) / wall_s : 0;
  s.output_tokens_per_s = wall_s > 0 ? static_cast<double>(s.num_output_tokens) / wall_s : 0;
  if (!all.empty()) {
    double sum = 0;
    for (int64_t v : all) sum += static_cast<double>(v);
    s.mean_ms = sum / static_cast<double>(all.size()) * 1e-6;
    s.p50_ms = percentile_ms(all, 0.50);
    s.p90_ms = percentile_ms(all, 0.90);
    s.p99_ms = percentile_ms(all, 0.99);
    s.max_ms = static_cast<double>(all.back()) * 1e-6;
  }
  return s;
}

std::string summary_text(const Summary& s) {
  char buf[512];
  std::string out;
  std::snprintf(buf, sizeof(buf), "%s: %s %s, concurrency %d (%d client threads), payload %zu B\n", s.label.c_str(),
                s.protocol.c_str(), s.target.c_str(), s.concurrency, s.num_threads, s.payload_bytes);
  out += buf;
  std::snprintf(buf, sizeof(buf),
                "  requests %llu  ok %llu  errors %llu  wall %.3f s  %.1f req/s  client CPU %.2f s (%.1f us/req)\n",
                static_cast<unsigned long long>(s.num_requests), static_cast<unsigned long long>(s.num_ok),
                static_cast<unsigned long long>(s.num_errors), s.wall_s, s.requests_per_s, s.client_cpu_s,
                s.num_ok + s.num_errors > 0 ? s.client_cpu_s * 1e6 / static_cast<double>(s.num_ok + s.num_errors)
                                            : 0.0);
  out += buf;
  std::snprintf(buf, sizeof(buf), "  latency ms: mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", s.mean_ms,
                s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms);
  out += buf;
  if (s.num_output_tokens > 0) {
    std::snprintf(buf, sizeof(buf), "  output tokens %llu  %.1f tokens/s\n",
                  static_cast<unsigned long long>(s.num_output_tokens), s.output_tokens_per_s);
    out += buf;
  }
  if (s.num_errors > 0) {
    out += "  errors by kind:";
    for (size_t k = 0; k < kNumErrorKinds; ++k) {
      if (s.errors_by_kind[k] == 0) continue;
      out += ' ';
      out += error_kind_name(static_cast<ErrorKind>(k));
      out += '=';
      out += std::to_string(s.errors_by_kind[k]);
    }
    out += "\n  first error: " + s.first_error + "\n";
  }
  return out;
}

Json::Value summary_json(const Summary& s) {
  Json::Value j;
  j["label"] = s.label;
  j["protocol"] = s.protocol;
  j["target"] = s.target;
  j["concurrency"] = s.concurrency;
  j["client_threads"] = s.num_threads;
  j["payload_bytes"] = Json::UInt64(s.payload_bytes);
  j["requests"] = Json::UInt64(s.num_requests);
  j["ok"] = Json::UInt64(s.num_ok);
  j["errors"] = Json::UInt64(s.num_errors);
  Json::Value kinds(Json::objectValue);
  for (size_t k = 0; k < kNumErrorKinds; ++k) {
    kinds[error_kind_name(static_cast<ErrorKind>(k))] = Json::UInt64(s.errors_by_kind[k]);
  }
  j["errors_by_kind"] = kinds;
  if (!s.first_error.empty()) j["first_error"] = s.first_error;
  j["wall_s"] = s.wall_s;
  j["requests_per_s"] = s.requests_per_s;
  j["latency_ms"]["mean"] = s.mean_ms;
  j["latency_ms"]["p50"] = s.p50_ms;
  j["latency_ms"]["p90"] = s.p90_ms;
  j["latency_ms"]["p99"] = s.p99_ms;
  j["latency_ms"]["max"] = s.max_ms;
  j["client_cpu_s"] = s.client_cpu_s;
  j["output_tokens"] = Json::UInt64(s.num_output_tokens);
  j["output_tokens_per_s"] = s.output_tokens_per_s;
  return j;
}

}  // namespace ferry::loadgen
