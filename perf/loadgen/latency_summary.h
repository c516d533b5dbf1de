// What a load run measured: per-thread tallies filled in the timed loop, and the summary made from
// them afterwards (requests/s, latency percentiles, errors by kind), as text and as JSON.
#pragma once

#include <json/json.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "perf/loadgen/load_options.h"

namespace ferry::loadgen {

enum class ErrorKind : int {
  kTransport,      // no HTTP answer / ZeroMQ send failed
  kHttpStatus,     // an HTTP status other than 200
  kBadBody,        // unparseable JSON, or outputs that are not the echoed input
  kErrorResponse,  // the server answered with an "error" object
  kNotFinal,       // a non-streaming request got a response without "final": true
  kIdMismatch,     // a response whose id is not the request's (or no request's)
  kTimeout,        // no answer within --timeout-ms
  kCount
};
constexpr size_t kNumErrorKinds = static_cast<size_t>(ErrorKind::kCount);
const char* error_kind_name(ErrorKind kind);

// What one worker thread measured. Written only by that thread during a phase, read after join.
struct WorkerTally {
  std::vector<int64_t> latencies_ns;  // one per successful request; reserved before the timed phase
  std::array<uint64_t, kNumErrorKinds> num_errors{};
  std::string first_error;  // one example message for the report; the only allocation on error
  uint64_t num_output_tokens = 0;  // --stream: token ids received in "output_ids" outputs

  void clear();
  void fail(ErrorKind kind, std::string_view message);
};

// Counters the progress line reads while workers run (relaxed atomics; one increment per request).
struct Progress {
  std::atomic<uint64_t> num_done{0};
  std::atomic<uint64_t> num_errors{0};
};

struct Summary {
  std::string label;
  std::string protocol;
  std::string target;  // "infer <model>" or "GET <path>"
  int concurrency = 0;
  int num_threads = 0;  // client threads (HTTP: = C; ZeroMQ: sockets)
  size_t payload_bytes = 0;
  uint64_t num_requests = 0;
  uint64_t num_ok = 0;
  uint64_t num_errors = 0;
  std::array<uint64_t, kNumErrorKinds> errors_by_kind{};
  std::string first_error;
  double wall_s = 0;
  double requests_per_s = 0;  // successful requests per second of wall time
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  double client_cpu_s = 0;  // user + system CPU of this process during the timed phase
  uint64_t num_output_tokens = 0;  // --stream only
  double output_tokens_per_s = 0;
};

// Merges the tallies (sorting their latencies in place) into a summary.
Summary summarize(const LoadOptions& options, int num_threads, std::vector<WorkerTally>& tallies, double wall_s,
                  double client_cpu_s);
std::string summary_text(const Summary& s);
Json::Value summary_json(const Summary& s);

}  // namespace ferry::loadgen
