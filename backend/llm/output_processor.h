// OutputProcessor: the part of an LLM instance that turns generated token ids into what the
// client receives, on its own thread so that the step loop never waits on detokenizing, stop
// strings, JSON or the host's respond call.
//
// Per request it detokenizes incrementally (never half a UTF-8 character), checks stop strings
// across token boundaries (StopChecker), keeps the logprobs asked for, and answers through the
// host's respond: one response per batch with the new text for streaming requests, only the FINAL
// for the others. The response format (text_output, output_ids, parameters JSON with
// finish_reason / usage / logprobs / prompt_text / prompt_ids) is the host frontends' contract.
//
// Feeding: the instance's loop fills one OutputBatch per step with that step's events, in order
// (per request: its tokens, then at most one final event after its last token) and hands it over
// with push(): one lock and at most one wake-up per step. When this thread falls behind, it takes
// every batch pushed meanwhile in one go, still answering once per step, so a stream's client sees
// one event per step; only when more than config.coalesce_after_steps steps are waiting does a
// streaming request get one response with the text of all of them (in order), so a processor that
// fell far behind catches up instead of answering every token.
//
// Stop strings: when one is found, the request's text ends before it (StopChecker rules), tokens
// that arrive after it are dropped, and config.request_stop(id) asks the instance to end the
// request (the scheduler frees its blocks at its next step). The FINAL goes out when the loop's
// final event for the request arrives (a cancel, or whatever ended it first) and says
// finish_reason "stop" with OK status: the text the client has is complete.
//
// Exactly one FINAL per request, after all its text: the loop sends a final event for every
// request it ended (stop token, length, cancel, error, timeout, unload), and a request still
// known when the processor stops gets a CANCELLED FINAL.
//
// Thread-safety: push() and wait_drained() from any thread (the loop pushes); everything else runs
// on the processor's thread, which alone touches OutputRequest state once it is handed over.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <span>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_params.h"
#include "backend/llm/sampling/stop_checker.h"
#include "backend/llm/scheduler/scheduler_request.h"
#include "backend/llm/tokenizer/incremental_detokenizer.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::llm {

using OutputClock = std::chrono::steady_clock;

// One request's output state. Built at submit; owned by the instance until the request's first
// event carries it to the processor, whose thread alone uses it from then on.
struct OutputRequest {
  OutputRequest(uint64_t request_id, ferry_responder* request_responder, bool streaming, const Tokenizer& tokenizer,
                bool skip_special_tokens, const SamplingParams& params, std::span<const int32_t> eos_token_ids,
                int64_t prompt_tokens, std::vector<int32_t> echo_prompt);

  uint64_t id;
  ferry_responder* responder;  // null for internal requests (KV warm-up): nothing is sent
  bool stream;
  int32_t num_logprobs;        // -1: none
  int64_t num_prompt_tokens;
  IncrementalDetokenizer detokenizer;
  StopChecker stop;            // stop strings (and, in step with the runner, stop tokens and length)
  std::vector<int32_t> prompt_for_echo;  // non-empty until the first response carries it
  // max_tokens 0: the one token the scheduler runs the request with is dropped, and it ends
  // with finish "length" and no text.
  bool prompt_only = false;
  // Prompt logprobs (num_prompt_logprobs >= 0; set by the instance): the prompt's ids, and the
  // scored prompt tokens' results as they arrive (prompt token i + 1 at index i), sent once, with
  // the first response after the last of them.
  int32_t num_prompt_logprobs = -1;
  std::vector<int32_t> prompt_ids;
  std::vector<SampleResult> prompt_logprobs;
  bool prompt_logprobs_sent = false;
  OutputClock::time_point submitted = OutputClock::now();
  OutputClock::time_point last_token{};

  // Produced but not yet sent.
  std::string pending_text;
  std::vector<int32_t> pending_ids;
  std::vector<SampleResult> pending_logprobs;
  int32_t num_generated = 0;  // tokens taken (those after a stop are not)
  FinishReason text_finish = FinishReason::kNone;  // the StopChecker's verdict, once it finished
  bool touched = false;       // in this batch's list of requests to answer
  // The final event arrived: what the loop said (used when the StopChecker did not finish).
  bool final = false;
  RequestFinishReason final_reason = RequestFinishReason::kNone;
  Status final_status;
  OutputClock::time_point started{};  // first scheduled (for queue_ns); zero: never ran
};

// One event of a step. Token events come before the final event of the same request.
struct OutputEvent {
  uint64_t request_id = 0;
  std::unique_ptr<OutputRequest> start;  // the request's state, on its first event only
  int32_t token = -1;                    // a generated token; -1 on a final event
  int32_t logprobs_index = -1;           // into the batch's logprobs, when the request wants them
  // > 0: a prompt logprobs event (no token): this many scored prompt tokens from logprobs_index.
  int32_t num_prompt_logprobs = 0;
  OutputClock::time_point time{};        // token: when it was sampled; final: when the request started
  bool final = false;
  RequestFinishReason reason = RequestFinishReason::kNone;  // final: what ended it
  Status status;                         // final: OK for stop / length, else why it failed
};

// The events of one step (or, on the processor's side, of several). Reuses its storage: clear()
// keeps every slot, so a warm batch allocates nothing (SampleResults keep their top_logprobs).
class OutputBatch {
 public:
  // `start`: the request's state if it was not handed over yet (moved from; null afterwards).
  void add_token(uint64_t id, const SampleResult& sample, bool with_logprobs, OutputClock::time_point time,
                 std::unique_ptr<OutputRequest>* start);
  void add_final(uint64_t id, RequestFinishReason reason, Status status, OutputClock::time_point started,
                 std::unique_ptr<OutputRequest>* start);
  // Scored prompt tokens of a request (ModelRunner::prompt_logprobs), before its tokens of the step.
  void add_prompt_logprobs(uint64_t id, std::span<const SampleResult> rows, std::unique_ptr<OutputRequest>* start);
  // Ends the current step: the events added since the last end_step() are one step's.
  void end_step();
  // Moves other's events (and step ends) after this batch's; other is left empty.
  void append(OutputBatch& other);

  bool empty() const { return num_events_ == 0; }
  size_t size() const { return num_events_; }
  size_t num_steps() const { return num_steps_; }
  // One past the last event of step i.
  size_t step_end(size_t i) const { return step_ends_[i]; }
  void clear();

  OutputEvent& event(size_t i) { return events_[i]; }
  const SampleResult& logprobs(int32_t i) const { return logprobs_[static_cast<size_t>(i)]; }

 private:
  OutputEvent& next_event(uint64_t id, std::unique_ptr<OutputRequest>* start);

  std::vector<OutputEvent> events_;  // [0, num_events_) in use; the rest are spare slots
  size_t num_events_ = 0;
  std::vector<SampleResult> logprobs_;  // [0, num_logprobs_) in use
  size_t num_logprobs_ = 0;
  std::vector<size_t> step_ends_;  // [0, num_steps_) in use, increasing
  size_t num_steps_ = 0;
};

struct OutputProcessorConfig {
  const ferry_host_api* host = nullptr;  // respond, log and metric calls
  const Tokenizer* tokenizer = nullptr;  // logprob token texts and the echoed prompt
  int32_t anchor_token = -1;             // a plain token that decodes to anchor_text (token texts)
  std::string anchor_text;
  std::string model_name;                // for log lines
  ferry_metric* ttft = nullptr;          // histograms (seconds); null: not recorded
  ferry_metric* itl = nullptr;
  ferry_metric* e2e = nullptr;
  // Called on the processor's thread when a stop string ends request `id`; must not block on the
  // processor (the instance cancels the request in its scheduler).
  std::function<void(uint64_t id)> request_stop;
  // Steps waiting at once above which streaming responses are coalesced (see above). 64: a stream
  // keeps one event per token unless the processor is far behind (~64 engine steps).
  size_t coalesce_after_steps = 64;
  // A streamed request gets its first token at once, then a response when this many tokens (or the
  // text of this many) are pending, and its last with the FINAL (the model's stream_interval).
  int32_t stream_interval = 1;
};

class OutputProcessor {
 public:
  explicit OutputProcessor(OutputProcessorConfig config);
  // Processes everything pushed, sends a CANCELLED FINAL to any request still without one, joins.
  ~OutputProcessor();
  OutputProcessor(const OutputProcessor&) = delete;
  OutputProcessor& operator=(const OutputProcessor&) = delete;

  // Hands the batch over as one step (it is left empty, with spare storage). One lock; wakes the
  // thread only when it is idle. Thread-safe.
  void push(OutputBatch& batch);
  // Waits until every batch pushed before the call is processed (responses sent); false on timeout.
  bool wait_drained(std::chrono::milliseconds timeout);

 private:
  void run();
  void process(OutputBatch& batch);
  void take_token(OutputRequest& r, const OutputEvent& e, const OutputBatch& batch);
  void answer_touched();
  void answer(OutputRequest& r);
  void send(OutputRequest& r, bool final, const char* finish_reason, const Status& error);
  void write_parameters(OutputRequest& r, bool final, const char* finish_reason);
  void write_token_fields(std::string& out, int32_t token, const std::string& text) const;
  void write_logprob_fields(std::string& out, int32_t token, const std::string& text, double logprob) const;
  void write_logprob_entry(std::string& out, const SampleResult& lp, const std::string& text) const;
  void write_prompt_logprobs(std::string& out, const OutputRequest& r) const;
  std::string logprob_piece(int32_t token) const;

  const OutputProcessorConfig config_;

  std::mutex mu_;
  std::condition_variable cv_;        // work arrived, or stopping
  std::condition_variable drained_cv_;
  OutputBatch incoming_;              // guarded by mu_
  uint64_t num_pushed_ = 0;           // guarded by mu_: batches pushed
  uint64_t num_processed_ = 0;        // guarded by mu_: batches whose responses are sent
  bool busy_ = false;                 // guarded by mu_: the thread is processing (no wake-up needed)
  bool stopping_ = false;             // guarded by mu_

  // Processor thread only.
  OutputBatch working_;
  std::unordered_map<uint64_t, std::unique_ptr<OutputRequest>> requests_;
  std::vector<OutputRequest*> touched_;  // requests with news in the batch being processed
  std::string text_bytes_;               // send(): the text output's BYTES payload
  std::string params_;                   // send(): the parameters JSON ("" when there are none)
  std::thread thread_;                   // last: starts after everything above exists
};

}  // namespace ferry::llm
