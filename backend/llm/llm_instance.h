// LlmInstance: one serving instance of an LLM model -- its own CPU engine, paged KV cache and
// scheduler -- and the loop thread that runs its steps.
//
// Each step: the scheduler plans which requests compute how many tokens (decodes, prefill chunks,
// admissions by policy, preemption by recompute when blocks run out); the engine runs them in one
// forward pass; sequences that reached their last token sample, detokenize, check stops and stream
// their new text; the scheduler takes the results back. Cancelled and timed-out requests end at the
// next step with their blocks freed.
//
// With idle_unload_seconds, an instance idle that long frees its engine (fp32 weights) and KV
// cache; the next request reloads them (a cold start, logged and counted).
//
// Thread-safety: submit, cancel, load_tokens and stats are safe from any thread. The scheduler is
// used under mu_ (its calls are serialized); the loop thread alone runs the engine and sends
// responses. The spans a step reads (tokens, block tables of scheduled requests) are changed only by
// schedule() and update_from_output(), both on the loop thread, so the forward pass runs unlocked.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <json/json.h>

#include "backend/llm/engine/engine.h"
#include "backend/llm/llm_context.h"
#include "backend/llm/llm_request.h"
#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_rng.h"
#include "backend/llm/sampling/stop_checker.h"
#include "backend/llm/scheduler/scheduler.h"
#include "backend/llm/tokenizer/incremental_detokenizer.h"
#include "common/status.h"

namespace ferry::llm {

struct SubmitInfo {
  uint64_t id = 0;
  ferry_responder* responder = nullptr;  // null for internal requests (KV warm-up): no responses
  bool stream = false;
  uint32_t priority = 0;
  uint64_t timeout_us = 0;
};

class LlmInstance {
 public:
  LlmInstance(const LlmModelContext& ctx, int index);
  ~LlmInstance();  // every request still here ends with a CANCELLED FINAL
  LlmInstance(const LlmInstance&) = delete;
  LlmInstance& operator=(const LlmInstance&) = delete;

  // Loads the engine and the KV cache and starts the loop thread.
  Status start();
  // Queues a request. InvalidArgument (too long for the context or the pool), ResourceExhausted
  // (its priority level's queue is full), Unavailable (stopping). On OK its FINAL will come.
  Status submit(const SubmitInfo& info, LlmRequest&& request);
  bool cancel(uint64_t id);
  // Queued plus running tokens, for least-loaded routing.
  int64_t load_tokens() const { return load_tokens_.load(std::memory_order_relaxed); }
  Json::Value stats() const;
  // Waits until no request is left (e.g. the KV warm-up prompts); false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  using Clock = std::chrono::steady_clock;

  // Per-request state beside the scheduler's (which holds the tokens).
  struct Sequence {
    SubmitInfo info;
    SamplingParams params;
    SamplingRng rng{0};
    std::unique_ptr<IncrementalDetokenizer> detokenizer;
    std::unique_ptr<StopChecker> stop;
    std::string pending_text;          // text not yet sent
    std::vector<int32_t> pending_ids;  // ids not yet sent
    std::vector<SampleResult> pending_logprobs;
    std::vector<int32_t> prompt_for_echo;  // set when the first response must carry the prompt
    int64_t load = 0;                  // prompt + max_tokens, counted in load_tokens_
    Clock::time_point submitted, started, last_token;  // started: first scheduled
    int32_t num_generated = 0;
  };

  Result<std::unique_ptr<Scheduler>> make_scheduler() const;
  Status load_engine();  // the engine and the KV cache memory (loop thread, or start())
  void run();
  // Runs one planned step (mu_ held on entry and on return, released around the forward pass).
  void run_step(const SchedulerOutput& out, std::unique_lock<std::mutex>& lock);
  void check_sampled(Sequence& seq, const SampleResult& sample, SequenceResult* result);
  void end_sequence(uint64_t id, const char* finish_reason, const Status& status);
  void send(Sequence& seq, bool final, const char* finish_reason, const Status& error);
  Json::Value logprob_json(const SampleResult& r) const;
  void update_gauges();
  void create_metrics();

  const LlmModelContext& ctx_;
  const int index_;

  // Loop thread only.
  std::unique_ptr<Engine> engine_;  // owns the KV cache memory; shares the model's weights
  std::vector<int32_t> token_ids_, positions_;
  std::vector<SequenceInput> inputs_;
  std::vector<SamplingSequence> sampling_;  // parallel to inputs_; params null: no token this step
  std::vector<SequenceResult> results_;
  std::vector<Sequence*> step_seqs_;  // parallel to the step's scheduled sequences
  StepOutput step_out_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;  // seqs_ became empty
  bool stopping_ = false;                                          // guarded by mu_
  std::unique_ptr<Scheduler> scheduler_;                           // guarded by mu_
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> seqs_;   // guarded by mu_ (contents: loop thread)
  Clock::time_point last_active_;                                  // guarded by mu_
  std::atomic<int64_t> load_tokens_{0};
  std::atomic<bool> engine_loaded_{false};
  int64_t reported_preemptions_ = 0, reported_evictions_ = 0;      // loop thread
  int64_t reported_query_tokens_ = 0, reported_hit_tokens_ = 0;    // loop thread

  ferry_metric* m_running_ = nullptr;
  ferry_metric* m_waiting_ = nullptr;
  ferry_metric* m_blocks_used_ = nullptr;
  ferry_metric* m_blocks_total_ = nullptr;
  std::thread worker_;
};

}  // namespace ferry::llm
