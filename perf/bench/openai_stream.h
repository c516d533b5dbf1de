// One streamed OpenAI-compatible request, timed: builds the JSON body (completions or chat), posts
// it with stream=true and stream_options.include_usage, and turns the server-sent events into the
// times vLLM's benchmark_serving measures. The chunk parser is separate so that tests can feed it
// events without a server.
//
// Threading: a StreamParser or an OpenAiStreamer belongs to one thread (OpenAiStreamer holds an
// HttpClient, which keeps its connection alive across calls).
#pragma once

#include <json/json.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client/http_client.h"
#include "perf/bench/bench_options.h"
#include "perf/bench/workload.h"

namespace ferry::bench {

using Clock = std::chrono::steady_clock;

// What one request gave. Times in seconds from the moment the request was sent.
struct RequestOutcome {
  bool ok = false;
  std::string error;             // first failure; "" when ok
  std::string error_kind;        // "transport", "http_<status>", "error_event", "no_done", "no_tokens", "bad_chunk"
  double ttft_s = 0;             // first chunk that carries generated text
  double e2e_s = 0;              // until the stream ended
  std::vector<double> itl_s;     // gap before each later content chunk
  int output_tokens = 0;         // usage.completion_tokens, else the number of content chunks
  int prompt_tokens = 0;         // usage.prompt_tokens, else the workload's estimate
  bool usage_seen = false;
  std::string generated_text;
};

// Feeds SSE "data:" payloads in arrival order. A content chunk is a choice with non-empty text
// (completions: choices[0].text, chat: choices[0].delta.content); the chat role delta, the
// finish_reason-only chunk and the usage chunk (empty choices) are not. Each content chunk counts as
// one token unless the usage says otherwise.
class StreamParser {
 public:
  // false: stop reading (the payload was an error object, or not JSON).
  bool on_event(const std::string& data, double t_s);
  // Completes the outcome after the stream ended at t_s; `status` is the HTTP status (0: none).
  RequestOutcome finish(long status, const std::string& transport_error, double t_s);

  bool done_seen() const { return done_seen_; }

 private:
  void fail(const char* kind, std::string message);

  RequestOutcome out_;
  bool done_seen_ = false;
  bool first_seen_ = false;
  int num_content_chunks_ = 0;
  double last_content_s_ = 0;
  Json::CharReaderBuilder builder_;
  std::unique_ptr<Json::CharReader> reader_{builder_.newCharReader()};
};

// The request body for one BenchRequest, with options' fields (model, ignore_eos, temperature,
// extra_body) applied. extra_body must already be a parsed object (see parse_extra_body).
std::string make_request_body(const BenchOptions& options, const Json::Value& extra_body, const BenchRequest& request);

// Parses options.extra_body ("" gives an empty object); InvalidArgument when it is not an object.
Result<Json::Value> parse_extra_body(const std::string& text);

class OpenAiStreamer {
 public:
  OpenAiStreamer(const BenchOptions& options, const Json::Value& extra_body)
      : options_(options), extra_body_(extra_body), http_(options.base_url) {}

  // Sends one request and blocks until its stream ends. Never throws; failures are in the outcome.
  RequestOutcome send(const BenchRequest& request);

 private:
  const BenchOptions& options_;
  const Json::Value& extra_body_;
  client::HttpClient http_;
};

}  // namespace ferry::bench
