// LlmInstance: one serving instance of an LLM model -- its own engine, paged KV cache and
// scheduler -- in three parts, as vLLM v1 splits them:
//   - the loop (this class, its thread): submit / cancel / stats, the scheduler under mu_, the
//     engine's lifecycle (idle unload, cold start) and the step loop;
//   - the ModelRunner (model_runner.h), called by the loop: scheduler output -> ForwardBatch and
//     sampling inputs -> Engine::step -> per-sequence tokens, with the stop-token and max_tokens
//     checks the scheduler needs at once to free blocks;
//   - the OutputProcessor (output_processor.h), its own thread: detokenizing, stop strings,
//     logprob texts, response encoding and the host's respond call.
//
// Each step: the scheduler plans which requests compute how many tokens (decodes, prefill chunks,
// admissions by policy, preemption by recompute when blocks run out); the runner runs them in one
// engine step; the scheduler takes the results back and frees the blocks of requests that ended;
// the step's new tokens and ended requests go to the output processor as one batch. Cancelled and
// timed-out requests end at the next step with their blocks freed. A stop string found by the
// output processor ends its request the same way (request_stop -> the scheduler's cancel; the
// request then counts as cancelled in stats, and its FINAL says "stop").
//
// With idle_unload_seconds, an instance idle that long frees its engine and KV cache; the next
// request reloads them (a cold start, logged and counted).
//
// KV consistency: the scheduler's full check (O(blocks + requests)) runs on the loop thread once
// the instance has been idle for kIdleCheckDelay, and after every step in builds without NDEBUG;
// stats() reports the last result ("consistent") and the step count it saw
// ("consistency_checked_at_step": equal to "steps" once the check covered the last step) without
// running it.
//
// Thread-safety: submit, cancel, load_tokens, stats and wait_idle are safe from any thread. The
// scheduler is used under mu_ (its calls are serialized); the loop thread alone runs the engine.
// The spans a step reads (tokens, block tables of scheduled requests) are changed only by
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

#include "backend/llm/draft_proposer.h"
#include "backend/llm/engine/engine.h"
#include "backend/llm/llm_context.h"
#include "backend/llm/llm_request.h"
#include "backend/llm/model_runner.h"
#include "backend/llm/output_processor.h"
#include "backend/llm/scheduler/scheduler.h"
#include "backend/llm/speculative/speculation_cost.h"
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

  // Loads the engine and the KV cache and starts the loop and output threads.
  Status start();
  // Queues a request. InvalidArgument (too long for the context or the pool), ResourceExhausted
  // (its priority level's queue is full), Unavailable (stopping). On OK its FINAL will come.
  Status submit(const SubmitInfo& info, LlmRequest&& request);
  bool cancel(uint64_t id);
  // Queued plus running tokens, for least-loaded routing.
  int64_t load_tokens() const { return load_tokens_.load(std::memory_order_relaxed); }
  // Counters and gauges under mu_; O(1) (no consistency check, see above).
  Json::Value stats() const;
  // Waits until no request is left and their responses are sent (e.g. the KV warm-up prompts);
  // false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  using Clock = std::chrono::steady_clock;

  // The loop's state of one request beside the scheduler's (which holds the tokens).
  struct Sequence {
    Sequence(SamplingParams params, std::span<const int32_t> eos_ids) : runner(std::move(params), eos_ids) {}
    RunnerRequest runner;
    std::unique_ptr<OutputRequest> output;  // until the request's first event hands it over
    int64_t load = 0;                       // prompt + max_tokens, counted in load_tokens_
    Clock::time_point started{};            // first scheduled
    bool prompt_only = false;               // max_tokens 0: its one sampled token is not output
  };

  Result<std::unique_ptr<Scheduler>> make_scheduler() const;
  Status load_engine();  // the engine and the KV cache memory (loop thread, or start())
  void run();
  bool reload_engine(std::unique_lock<std::mutex>& lock);   // cold start; false: retry later
  bool unload_if_idle(std::unique_lock<std::mutex>& lock);  // true: unloaded (or retrying)
  // Runs one planned step. REQUIRES: mu_ held on entry and on return (released around the
  // engine step).
  void run_step(const SchedulerOutput& out, std::unique_lock<std::mutex>& lock);
  // Speculative decoding, after the step's results went back to the scheduler: records each
  // verified run in the metrics and the sequences' gates, and proposes drafts for the next step
  // (n-gram: at once; draft model: lists the sequences in draft_jobs_).
  // REQUIRES: mu_ held; before the step's finished requests are ended.
  void record_speculation();
  void propose_drafts_locked();
  // The draft model's round for draft_jobs_, then their drafts to the scheduler. REQUIRES: mu_
  // held on entry and on return (released around the draft's engine steps).
  void propose_with_draft_model(std::unique_lock<std::mutex>& lock);
  void release_draft(uint64_t id);  // the request's draft state, if any (loop thread)
  // Queues the request's final event and forgets it. REQUIRES: mu_ held; loop thread.
  void end_locked(uint64_t id, RequestFinishReason reason, Status status);
  // Hands batch_ to the output processor. Loop thread; mu_ NOT held.
  void flush_outputs();
  // Asked by the output processor (its thread) when a stop string ends request `id`.
  void request_stop(uint64_t id);
  // REQUIRES: mu_ held.
  void check_consistency_locked();
  void update_gauges();  // REQUIRES: mu_ held
  void create_metrics();

  const LlmModelContext& ctx_;
  const int index_;

  // Loop thread only.
  std::unique_ptr<Engine> engine_;  // owns the KV cache memory; shares the model's weights
  ModelRunner runner_;
  std::vector<RunnerRequest*> step_requests_;  // parallel to the step's scheduled sequences
  std::vector<Sequence*> step_seqs_;           // parallel to the step's scheduled sequences
  std::vector<uint64_t> step_ids_;             // parallel to the step's scheduled sequences
  OutputBatch batch_;                          // this step's events for the output processor
  std::vector<int32_t> drafts_;                // scratch of propose_drafts_locked
  std::unique_ptr<DraftProposer> draft_;       // speculative method draft; with the engine
  std::vector<DraftJob> draft_jobs_;           // the next draft round (propose_drafts_locked)
  // The measured break-even rate: written by the loop thread under mu_ (end of run_step), read by
  // it or under mu_ (stats).
  SpeculationCost spec_cost_{SpeculativeConfig::kPriorRate};
  double draft_round_seconds_ = 0.0;  // the last draft round's, for the step verifying its drafts
  int64_t reported_preemptions_ = 0, reported_evictions_ = 0;    // REQUIRES: mu_ held
  int64_t reported_query_tokens_ = 0, reported_hit_tokens_ = 0;  // REQUIRES: mu_ held
  bool checked_since_busy_ = false;  // the idle consistency check ran since the last step

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;  // seqs_ became empty
  bool stopping_ = false;                                          // guarded by mu_
  std::unique_ptr<Scheduler> scheduler_;                           // guarded by mu_
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> seqs_;   // guarded by mu_ (contents: loop thread)
  Clock::time_point last_active_;                                  // guarded by mu_
  std::atomic<int64_t> load_tokens_{0};
  std::atomic<bool> engine_loaded_{false};
  std::atomic<bool> consistent_{true};  // the last consistency check's result
  int64_t checked_at_step_ = 0;         // guarded by mu_: the scheduler's num_steps at that check
  static constexpr std::chrono::milliseconds kIdleCheckDelay{50};
  std::atomic<int64_t> draft_blocks_used_{0};  // draft_'s, for stats()
  std::atomic<int64_t> draft_sequences_{0};

  ferry_metric* m_running_ = nullptr;
  ferry_metric* m_waiting_ = nullptr;
  ferry_metric* m_blocks_used_ = nullptr;
  ferry_metric* m_blocks_total_ = nullptr;
  // Declared after what request_stop() uses, started in start(), stopped in the destructor after
  // the loop (which sends it every request's final event).
  std::unique_ptr<OutputProcessor> output_;
  std::thread worker_;
};

}  // namespace ferry::llm
