// ferry-bench: a serving benchmark for any OpenAI-compatible server. It sends --num-prompts streamed
// completions (random word prompts of a given token length, or a prompts file), arriving as a
// Poisson process at --request-rate or all at once, at most --max-concurrency in flight, and reports
// request and token throughput, TTFT, TPOT, ITL and end-to-end latency as vLLM's benchmark_serving
// defines them (see bench_metrics.h), with a progress bar on stderr and an optional JSON result.
//
// One thread per request in flight, each with its own keep-alive connection (HttpClient): without
// --max-concurrency at most kMaxWorkers (512) are in flight, which the report states.
//
// Not for: correctness of the generated text (only that tokens arrive), or servers that need an API
// key. Compare numbers as ratios within one run on one machine; see perf/RESULTS.md.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "perf/bench/bench_metrics.h"
#include "perf/bench/bench_options.h"
#include "perf/bench/openai_stream.h"
#include "perf/bench/workload.h"

namespace ferry::bench {
namespace {

struct Progress {
  std::atomic<uint64_t> num_done{0};
  std::atomic<uint64_t> num_failed{0};
  std::atomic<uint64_t> num_output_tokens{0};
  std::atomic<int> num_in_flight{0};
  std::atomic<int> max_in_flight{0};
};

void draw_progress(const Progress& p, uint64_t total, double elapsed_s) {
  constexpr int kWidth = 30;
  uint64_t done = p.num_done.load(std::memory_order_relaxed);
  int filled = static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * kWidth);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = '\0';
  double s = elapsed_s > 0 ? elapsed_s : 1e-9;
  std::fprintf(stderr, "\r[%s] %llu/%llu  %.0fs  %.2f req/s  %.1f tok/s  in flight %d  failed %llu   ", bar,
               static_cast<unsigned long long>(done), static_cast<unsigned long long>(total), elapsed_s,
               static_cast<double>(done) / s,
               static_cast<double>(p.num_output_tokens.load(std::memory_order_relaxed)) / s,
               p.num_in_flight.load(std::memory_order_relaxed),
               static_cast<unsigned long long>(p.num_failed.load(std::memory_order_relaxed)));
}

std::string rate_text(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g/s", rate);
  return buf;
}

// Sends every request, request i not before start + offsets[i]; fills outcomes (same order).
double run_timed(const BenchOptions& o, const Json::Value& extra_body, const std::vector<BenchRequest>& requests,
                 const std::vector<double>& offsets, std::vector<RequestOutcome>& outcomes, Progress& progress) {
  const uint64_t n = requests.size();
  const int limit = o.max_concurrency > 0 ? o.max_concurrency : kMaxWorkers;
  const int num_workers = static_cast<int>(std::min<uint64_t>(n, static_cast<uint64_t>(limit)));
  std::atomic<uint64_t> next{0};
  std::atomic<int> num_running{num_workers};
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  workers.reserve(num_workers);
  for (int w = 0; w < num_workers; ++w) {
    workers.emplace_back([&] {
      OpenAiStreamer streamer(o, extra_body);
      for (;;) {
        uint64_t i = next.fetch_add(1);
        if (i >= n) break;
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(offsets[i])));
        int in_flight = progress.num_in_flight.fetch_add(1) + 1;
        int seen = progress.max_in_flight.load();
        while (in_flight > seen && !progress.max_in_flight.compare_exchange_weak(seen, in_flight)) {
        }
        outcomes[i] = streamer.send(requests[i]);
        progress.num_in_flight.fetch_sub(1);
        if (!outcomes[i].ok) progress.num_failed.fetch_add(1, std::memory_order_relaxed);
        progress.num_output_tokens.fetch_add(static_cast<uint64_t>(outcomes[i].output_tokens),
                                             std::memory_order_relaxed);
        progress.num_done.fetch_add(1, std::memory_order_relaxed);
      }
      num_running.fetch_sub(1);
    });
  }
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  while (num_running.load() > 0) {
    for (int i = 0; i < 25 && num_running.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (o.progress) draw_progress(progress, n, elapsed());
  }
  for (auto& t : workers) t.join();
  const double duration_s = elapsed();
  if (o.progress) {
    draw_progress(progress, n, duration_s);
    std::fputc('\n', stderr);
  }
  return duration_s;
}

int run(int argc, char** argv) {
  BenchOptions o;
  Status parsed = parse_options(argc, argv, &o);
  if (parsed.code() == StatusCode::kCancelled) return 0;
  if (!parsed.ok()) {
    std::fprintf(stderr, "ferry-bench: %s\n", parsed.message().c_str());
    return 1;
  }
  auto extra_body = parse_extra_body(o.extra_body);
  if (!extra_body.ok()) {
    std::fprintf(stderr, "ferry-bench: %s\n", extra_body.status().message().c_str());
    return 1;
  }
  auto requests = build_workload(o);
  if (!requests.ok()) {
    std::fprintf(stderr, "ferry-bench: %s\n", requests.status().message().c_str());
    return 1;
  }
  {
    OpenAiStreamer streamer(o, *extra_body);
    for (int i = 0; i < o.num_warmup; ++i) {
      RequestOutcome out = streamer.send((*requests)[static_cast<size_t>(i) % requests->size()]);
      if (!out.ok) {
        std::fprintf(stderr, "ferry-bench: warm-up request to %s%s failed (%s): %s\n", o.base_url.c_str(),
                     o.endpoint.c_str(), out.error_kind.c_str(), out.error.c_str());
        return 1;
      }
    }
  }
  std::fprintf(stderr, "ferry-bench: %s: %zu requests to %s%s, rate %s, max concurrency %s\n", o.label.c_str(),
               requests->size(), o.base_url.c_str(), o.endpoint.c_str(),
               o.request_rate > 0 ? rate_text(o.request_rate).c_str() : "inf",
               o.max_concurrency > 0 ? std::to_string(o.max_concurrency).c_str() : "none");
  const std::vector<double> offsets = arrival_offsets_s(requests->size(), o.request_rate, o.seed);
  std::vector<RequestOutcome> outcomes(requests->size());
  Progress progress;
  const double duration_s = run_timed(o, *extra_body, *requests, offsets, outcomes, progress);
  BenchResult result = summarize(o, *requests, outcomes, duration_s, progress.max_in_flight.load());
  std::fputs(result_text(o, result).c_str(), stdout);
  if (!o.result_json.empty()) {
    std::ofstream f(o.result_json);
    Json::StreamWriterBuilder w;
    w["indentation"] = "  ";
    f << Json::writeString(w, result_json(o, result, *requests, outcomes)) << '\n';
    if (!f) {
      std::fprintf(stderr, "ferry-bench: cannot write %s\n", o.result_json.c_str());
      return 1;
    }
  }
  return result.failed == 0 ? 0 : 2;
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::run(argc, argv); }
