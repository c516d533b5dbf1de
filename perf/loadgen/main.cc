// ferry-loadgen: a closed-loop load generator for a running ferry-server. It sends N requests with C
// in flight over HTTP (KServe v2 infer, or a bare GET such as /v2/health/live as the floor of what
// the HTTP stack costs) or over ZeroMQ (infer), checks every answer (status, FINAL flag, id, the
// echoed payload), and reports requests/s and latency percentiles. A warm-up phase at the same
// concurrency opens the connections first and is not counted.
//
// With --stream (ZeroMQ) it also counts the token ids of an LLM's streamed responses (the token path).
// Not for: open-loop (fixed arrival rate) load or HTTP streaming (perf/bench/ferry-bench); the numbers are meant to be
// compared as ratios within one run (see perf/run_host_bench.sh), not across machines.
//
// Exit status: 0 all requests succeeded, 1 bad flags or no connection, 2 some requests failed.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "perf/loadgen/driver.h"
#include "perf/loadgen/latency_summary.h"
#include "perf/loadgen/load_options.h"

namespace ferry::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// Runs one phase on its own thread while this one redraws the progress line (4 times a second).
double run_with_progress(Driver& driver, const LoadOptions& o, const char* phase, uint64_t num_requests,
                         std::vector<WorkerTally>& tallies) {
  Progress progress;
  std::atomic<bool> done{false};
  const auto start = Clock::now();
  std::thread runner([&] {
    driver.run_phase(num_requests, tallies, progress);
    done.store(true);
  });
  auto draw = [&] {
    double s = std::chrono::duration<double>(Clock::now() - start).count();
    uint64_t n = progress.num_done.load(std::memory_order_relaxed);
    std::fprintf(stderr, "\r%s %s: %llu/%llu  %.0f req/s  errors %llu   ", o.label.c_str(), phase,
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(num_requests),
                 s > 0 ? static_cast<double>(n) / s : 0.0,
                 static_cast<unsigned long long>(progress.num_errors.load(std::memory_order_relaxed)));
  };
  for (;;) {
    for (int i = 0; i < 25 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (done.load()) break;
    if (o.progress) draw();
  }
  runner.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (o.progress) {
    draw();
    std::fputc('\n', stderr);
  }
  return wall_s;
}

int run(int argc, char** argv) {
  LoadOptions o;
  Status parsed = parse_options(argc, argv, &o);
  if (parsed.code() == StatusCode::kCancelled) return 0;
  if (!parsed.ok()) {
    std::fprintf(stderr, "ferry-loadgen: %s\n", parsed.message().c_str());
    return 1;
  }
  auto driver = o.protocol == Protocol::kHttp ? make_http_driver(o) : make_zmq_driver(o);
  if (Status s = driver->connect(); !s.ok()) {
    std::fprintf(stderr, "ferry-loadgen: %s\n", s.message().c_str());
    return 1;
  }
  std::vector<WorkerTally> tallies(static_cast<size_t>(driver->num_threads()));

  if (o.num_warmup > 0) {
    run_with_progress(*driver, o, "warm-up", o.num_warmup, tallies);
    uint64_t failed = 0;
    for (const auto& t : tallies) {
      for (uint64_t n : t.num_errors) failed += n;
    }
    if (failed > 0) {
      for (const auto& t : tallies) {
        if (t.first_error.empty()) continue;
        std::fprintf(stderr, "ferry-loadgen: %llu warm-up requests failed, e.g. %s\n",
                     static_cast<unsigned long long>(failed), t.first_error.c_str());
        break;
      }
    }
  }
  // Room for each thread's latencies (twice its fair share), so the timed loop does not grow vectors.
  const size_t share = static_cast<size_t>(o.num_requests / tallies.size()) * 2 + 1024;
  for (auto& t : tallies) {
    t.clear();
    t.latencies_ns.reserve(share);
  }

  const double cpu_start = process_cpu_s();
  const double wall_s = run_with_progress(*driver, o, "timed", o.num_requests, tallies);
  const double cpu_s = process_cpu_s() - cpu_start;

  Summary s = summarize(o, driver->num_threads(), tallies, wall_s, cpu_s);
  std::fputs(summary_text(s).c_str(), stdout);
  std::fflush(stdout);
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    Json::StreamWriterBuilder w;
    w["indentation"] = "  ";
    out << Json::writeString(w, summary_json(s)) << "\n";
    if (!out) {
      std::fprintf(stderr, "ferry-loadgen: cannot write %s\n", o.json_out.c_str());
      return 1;
    }
  }
  return s.num_errors > 0 || s.num_ok < o.num_requests ? 2 : 0;
}

}  // namespace
}  // namespace ferry::loadgen

int main(int argc, char** argv) { return ferry::loadgen::run(argc, argv); }
