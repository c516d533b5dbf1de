// The load drivers: each owns its client connections (made once, kept across the warm-up and the
// timed phase) and runs a phase of N requests at concurrency C on plain threads, one WorkerTally per
// thread. Also the pieces both drivers share: the pre-serialized request with its id spliced in, and
// the check of an infer response against what was sent.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "perf/loadgen/latency_summary.h"
#include "perf/loadgen/load_options.h"

namespace ferry::loadgen {

class Driver {
 public:
  virtual ~Driver() = default;
  // Creates the clients (and, for ZeroMQ, connects them). Called once before any phase.
  virtual Status connect() = 0;
  // Client threads a phase uses; `tallies` passed to run_phase has this many entries.
  virtual int num_threads() const = 0;
  // Sends `num_requests` requests, keeping C in flight, and returns when all are answered or have
  // failed. Threads start and are joined inside; tallies[i] belongs to thread i meanwhile.
  virtual void run_phase(uint64_t num_requests, std::vector<WorkerTally>& tallies, Progress& progress) = 0;
};

std::unique_ptr<Driver> make_http_driver(const LoadOptions& options);
std::unique_ptr<Driver> make_zmq_driver(const LoadOptions& options);

// A request serialized once as head + id + tail, so the timed loop only splices in the id.
struct RequestTemplate {
  std::string head;
  std::string tail;
  // Writes head + id + tail into `out`, reusing its capacity.
  void render(std::string_view id, std::string& out) const;
};
// Splits `message` (whose "id" member is set to a placeholder here) into a template.
RequestTemplate make_request_template(Json::Value message);
// The KServe inputs array: one BYTES tensor of shape [1] holding `payload_bytes` of 'x'.
Json::Value echo_inputs(const LoadOptions& options);

// Writes "<prefix><a>-<b>" into `out` (reusing its capacity): a request id unique within the run.
void format_id(std::string_view prefix, uint64_t a, uint64_t b, std::string& out);

// The string member `key` of an object, viewed without a copy; "" when absent or not a string.
std::string_view string_member(const Json::Value& object, const char* key);

// Checks an infer response's outputs against the request: the output named options.input_name holds
// the payload back. Returns the problem, or "" when they are right.
// With --prompt (an LLM prompt) nothing is echoed and every response passes.
std::string_view check_echo_outputs(const Json::Value& response, const LoadOptions& options);
// The number of token ids in the response's "output_ids" output (0 when it has none).
int64_t count_output_ids(const Json::Value& response);

}  // namespace ferry::loadgen
