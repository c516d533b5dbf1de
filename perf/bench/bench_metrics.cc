#include "perf/bench/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <numeric>

namespace ferry::bench {

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Distribution summarize_distribution(std::vector<double>& values_s) {
  Distribution d;
  d.count = values_s.size();
  if (values_s.empty()) return d;
  std::sort(values_s.begin(), values_s.end());
  d.mean_ms = std::accumulate(values_s.begin(), values_s.end(), 0.0) / static_cast<double>(values_s.size()) * 1e3;
  d.median_ms = percentile_sorted(values_s, 50) * 1e3;
  d.p99_ms = percentile_sorted(values_s, 99) * 1e3;
  return d;
}

BenchResult summarize(const BenchOptions& o, const std::vector<BenchRequest>& requests,
                      const std::vector<RequestOutcome>& outcomes, double duration_s, int max_in_flight) {
  BenchResult r;
  r.duration_s = duration_s;
  r.max_in_flight = max_in_flight;
  std::vector<double> ttft, tpot, itl, e2e;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const RequestOutcome& out = outcomes[i];
    if (!out.ok) {
      ++r.failed;
      ++r.failures_by_kind[out.error_kind];
      if (r.first_error.empty()) r.first_error = out.error;
      continue;
    }
    ++r.completed;
    r.total_input_tokens += static_cast<uint64_t>(out.prompt_tokens);
    r.total_output_tokens += static_cast<uint64_t>(out.output_tokens);
    if (o.ignore_eos && out.output_tokens != requests[i].output_len_tokens) ++r.output_len_mismatches;
    ttft.push_back(out.ttft_s);
    e2e.push_back(out.e2e_s);
    if (out.output_tokens > 1) tpot.push_back((out.e2e_s - out.ttft_s) / (out.output_tokens - 1));
    itl.insert(itl.end(), out.itl_s.begin(), out.itl_s.end());
  }
  if (duration_s > 0) {
    r.request_throughput = static_cast<double>(r.completed) / duration_s;
    r.output_throughput = static_cast<double>(r.total_output_tokens) / duration_s;
    r.total_token_throughput = static_cast<double>(r.total_input_tokens + r.total_output_tokens) / duration_s;
  }
  r.ttft = summarize_distribution(ttft);
  r.tpot = summarize_distribution(tpot);
  r.itl = summarize_distribution(itl);
  r.e2e = summarize_distribution(e2e);
  return r;
}

std::string result_text(const BenchOptions& o, const BenchResult& r) {
  std::string s;
  char line[256];
  auto add = [&](const char* name, const char* fmt, auto value) {
    std::snprintf(line, sizeof line, "%-34s", name);
    s += line;
    std::snprintf(line, sizeof line, fmt, value);
    s += line;
    s += '\n';
  };
  s += "============ Serving Benchmark Result: " + o.label + " ============\n";
  add("Successful requests:", "%llu", static_cast<unsigned long long>(r.completed));
  add("Failed requests:", "%llu", static_cast<unsigned long long>(r.failed));
  for (const auto& [kind, n] : r.failures_by_kind) {
    add(("  " + kind + ":").c_str(), "%llu", static_cast<unsigned long long>(n));
  }
  if (!r.first_error.empty()) s += "  first error: " + r.first_error + "\n";
  if (o.ignore_eos) add("Output length != max_tokens:", "%llu", static_cast<unsigned long long>(r.output_len_mismatches));
  add("Max requests in flight:", "%d", r.max_in_flight);
  add("Benchmark duration (s):", "%.2f", r.duration_s);
  add("Total input tokens:", "%llu", static_cast<unsigned long long>(r.total_input_tokens));
  add("Total generated tokens:", "%llu", static_cast<unsigned long long>(r.total_output_tokens));
  add("Request throughput (req/s):", "%.2f", r.request_throughput);
  add("Output token throughput (tok/s):", "%.2f", r.output_throughput);
  add("Total token throughput (tok/s):", "%.2f", r.total_token_throughput);
  auto dist = [&](const char* title, const char* key, const Distribution& d) {
    s += std::string("---------------") + title + "---------------\n";
    add((std::string("Mean ") + key + " (ms):").c_str(), "%.2f", d.mean_ms);
    add((std::string("Median ") + key + " (ms):").c_str(), "%.2f", d.median_ms);
    add((std::string("P99 ") + key + " (ms):").c_str(), "%.2f", d.p99_ms);
  };
  dist("Time to First Token", "TTFT", r.ttft);
  dist("Time per Output Token (excl. 1st token)", "TPOT", r.tpot);
  dist("Inter-token Latency", "ITL", r.itl);
  dist("End-to-end Latency", "E2EL", r.e2e);
  s += "==================================================\n";
  return s;
}

Json::Value result_json(const BenchOptions& o, const BenchResult& r, const std::vector<BenchRequest>& requests,
                        const std::vector<RequestOutcome>& outcomes) {
  Json::Value j(Json::objectValue);
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y%m%d-%H%M%S", std::localtime(&now));
  j["date"] = date;
  j["label"] = o.label;
  j["base_url"] = o.base_url;
  j["endpoint"] = o.endpoint;
  j["model"] = o.model;
  j["num_prompts"] = Json::UInt64(o.num_prompts);
  j["input_len"] = o.prompts_file.empty() ? Json::Value(o.input_len_tokens) : Json::Value();
  j["output_len"] = o.output_len_tokens;
  j["range_ratio"] = o.range_ratio;
  j["prefix_len"] = o.prefix_len_tokens;
  j["prompts_file"] = o.prompts_file;
  j["tokenizer"] = o.tokenizer_dir;
  j["seed"] = Json::UInt64(o.seed);
  j["request_rate"] = o.request_rate > 0 ? Json::Value(o.request_rate) : Json::Value("inf");
  j["max_concurrency"] = o.max_concurrency > 0 ? Json::Value(o.max_concurrency) : Json::Value();
  j["ignore_eos"] = o.ignore_eos;
  j["max_in_flight"] = r.max_in_flight;
  j["duration"] = r.duration_s;
  j["completed"] = Json::UInt64(r.completed);
  j["failed"] = Json::UInt64(r.failed);
  Json::Value kinds(Json::objectValue);
  for (const auto& [kind, n] : r.failures_by_kind) kinds[kind] = Json::UInt64(n);
  j["failures_by_kind"] = kinds;
  j["first_error"] = r.first_error;
  j["output_len_mismatches"] = Json::UInt64(r.output_len_mismatches);
  j["total_input_tokens"] = Json::UInt64(r.total_input_tokens);
  j["total_output_tokens"] = Json::UInt64(r.total_output_tokens);
  j["request_throughput"] = r.request_throughput;
  j["output_throughput"] = r.output_throughput;
  j["total_token_throughput"] = r.total_token_throughput;
  auto dist = [&](const char* key, const Distribution& d) {
    j[std::string("mean_") + key + "_ms"] = d.mean_ms;
    j[std::string("median_") + key + "_ms"] = d.median_ms;
    j[std::string("p99_") + key + "_ms"] = d.p99_ms;
  };
  dist("ttft", r.ttft);
  dist("tpot", r.tpot);
  dist("itl", r.itl);
  dist("e2el", r.e2e);
  if (o.save_detailed) {
    Json::Value input_lens(Json::arrayValue), output_lens(Json::arrayValue), ttfts(Json::arrayValue),
        e2els(Json::arrayValue), itls(Json::arrayValue), errors(Json::arrayValue), max_tokens(Json::arrayValue);
    for (size_t i = 0; i < outcomes.size(); ++i) {
      const RequestOutcome& out = outcomes[i];
      input_lens.append(out.prompt_tokens);
      output_lens.append(out.output_tokens);
      max_tokens.append(requests[i].output_len_tokens);
      ttfts.append(out.ttft_s);
      e2els.append(out.e2e_s);
      Json::Value gaps(Json::arrayValue);
      for (double g : out.itl_s) gaps.append(g);
      itls.append(gaps);
      errors.append(out.error);
    }
    j["input_lens"] = input_lens;
    j["output_lens"] = output_lens;
    j["max_tokens"] = max_tokens;
    j["ttfts"] = ttfts;
    j["e2els"] = e2els;
    j["itls"] = itls;
    j["errors"] = errors;
  }
  return j;
}

}  // namespace ferry::bench
