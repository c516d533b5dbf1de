// Scheduler: iteration-level (continuous) batching for one model instance. Each step it decides
// which requests compute how many tokens, under a token budget and a sequence limit, with chunked
// prefill, priority queues, queue timeouts, and preemption by recompute when KV blocks run out.
//
// It knows nothing of the engine: it hands out "request R computes tokens [c, c+n) this step" and
// takes back, per scheduled request, the sampled token (or a finish). It owns the instance's
// KvCacheManager (which owns the BlockPool), so block tables come from here too.
//
// One step, on the instance's loop thread:
//   1. add_request(...) / cancel(id) for whatever arrived since the last step.
//   2. const SchedulerOutput& out = schedule(now);
//      - end out.finished (cancelled, timed out) with their status; forget out.preempted's
//        per-step state if any (they resume by themselves, see below);
//      - if out.scheduled is empty: sleep until new work or out.wake_at;
//      - else build ONE forward batch, in out.scheduled order: sequence i has
//          token_ids   = s.new_tokens()  (= request->tokens[s.num_computed_tokens, +s.num_new_tokens))
//          positions   = s.num_computed_tokens + j, j in [0, s.num_new_tokens)
//          query_len   = s.num_new_tokens;   context_len = s.num_computed_tokens + s.num_new_tokens
//          block_table = s.block_table
//        and sample from the last-token logits of every sequence with s.samples (a sequence
//        without it is a prompt chunk that does not reach the end: its logits are discarded).
//   3. const auto& done = update_from_output(results);  results[i] answers out.scheduled[i].
//      The sampled token is appended, computed counts advance, full blocks enter the prefix
//      cache, and requests that finish (stop / length / error) free their blocks and are listed.
// update_from_output must follow every schedule() whose output has scheduled sequences, before
// the next schedule() (checked).
//
// Preemption: when a running request cannot get a block, the running request with the lowest
// priority and latest arrival (possibly itself) loses its blocks and goes back to the waiting queue
// with num_computed_tokens = 0, keeping its outputs. When admitted again it recomputes prompt +
// outputs (largely from the prefix cache when its blocks were not evicted) and then samples the
// next token as if nothing happened. Requests already scheduled this step that get preempted are
// removed from the output before it is returned.
//
// Thread-safety: none. A Scheduler is owned and used by one thread, the instance's loop thread;
// requests arriving from other threads are handed to that thread first.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/llm/kv_cache/kv_cache_manager.h"
#include "backend/llm/scheduler/scheduler_config.h"
#include "backend/llm/scheduler/scheduler_request.h"
#include "backend/llm/scheduler/waiting_queue.h"
#include "common/status.h"

namespace ferry::llm {

struct NewRequest {
  uint64_t id = 0;                 // unique among the scheduler's unfinished requests
  std::vector<int32_t> prompt;     // >= 1 token
  int32_t max_tokens = 1;          // >= 1
  uint32_t priority = 0;           // ABI convention: 0 default, 1 highest (see SchedulerConfig)
  uint64_t timeout_us = 0;         // 0: the level's queue timeout; else the longest wait before running
  SchedulerTime arrival_time{};    // when it was submitted (queue timeouts count from here)
  // true: its prompt is computed whole, never taken from the prefix cache (a request that wants the
  // prompt's logprobs needs every position's logits); its blocks are still offered to the cache.
  bool skip_prefix_cache = false;
};

// One sequence of the step, in batch order.
struct ScheduledSequence {
  uint64_t request_id = 0;
  const SchedulerRequest* request = nullptr;
  int32_t num_computed_tokens = 0;  // before this step; the first new token's position
  int32_t num_new_tokens = 0;       // >= 1: the query length
  bool samples = false;             // reaches the request's last token: sample a next token
  // Speculative decoding: the last num_draft_tokens of the num_new_tokens are the request's
  // proposed tokens (draft_tokens()), to verify in this step; 0 otherwise. Only on decodes.
  int32_t num_draft_tokens = 0;
  std::span<const int32_t> block_table;  // covers num_computed_tokens + num_new_tokens positions

  // The known tokens computed this step (num_new_tokens - num_draft_tokens of them); the query is
  // these, then draft_tokens().
  std::span<const int32_t> new_tokens() const {
    return std::span<const int32_t>(request->tokens)
        .subspan(static_cast<size_t>(num_computed_tokens), static_cast<size_t>(num_new_tokens - num_draft_tokens));
  }
  std::span<const int32_t> draft_tokens() const {
    return std::span<const int32_t>(request->draft_tokens).first(static_cast<size_t>(num_draft_tokens));
  }
};

// A request that left the scheduler. `request` stays valid until the next schedule() or
// update_from_output() call.
struct FinishedRequest {
  uint64_t request_id = 0;
  RequestFinishReason reason = RequestFinishReason::kNone;
  Status status;  // OK for stop/length; CANCELLED, DEADLINE_EXCEEDED or INTERNAL otherwise
  const SchedulerRequest* request = nullptr;
};

struct SchedulerOutput {
  std::vector<ScheduledSequence> scheduled;  // decodes, then prefill chunks of running, then admissions
  int32_t num_scheduled_tokens = 0;          // sum of num_new_tokens (<= max_num_batched_tokens)
  std::vector<FinishedRequest> finished;     // cancelled and timed-out requests, ended this call
  std::vector<uint64_t> preempted;           // preempted this call (they are waiting again)
  bool has_wake_at = false;                  // when nothing is scheduled: call schedule() again by
  SchedulerTime wake_at{};                   // wake_at even if nothing arrives (batching window, timeouts)
};

// What the step did for out.scheduled[i].
struct SequenceResult {
  static constexpr int32_t kNoToken = -1;
  int32_t token = kNoToken;  // the sampled token when samples; ignored otherwise
  // kNone, or kStop / kLength (the caller's stop checker; the token, if any, is appended first), or
  // kError (the step failed for this request: nothing is appended). A sequence that samples has a
  // token unless it finishes (kStop without a token: its grammar allowed none).
  RequestFinishReason finish = RequestFinishReason::kNone;
  // Speculative decoding: tokens emitted after `token` in the same step (accepted drafts and the
  // token after them), at most num_draft_tokens. Appended after `token`; the K/V of the positions
  // they follow are kept, the slots of the rejected drafts are freed or overwritten later.
  std::span<const int32_t> extra_tokens;
};

struct SchedulerStats {
  int64_t num_waiting = 0;
  int64_t num_running = 0;
  int64_t num_waiting_tokens = 0;   // tokens to compute of queued requests
  int64_t num_running_tokens = 0;   // known tokens of running requests
  int64_t num_preemptions = 0;
  int64_t num_rejected_queue_full = 0;
  int64_t num_timed_out = 0;        // rejected on timeout
  int64_t num_delayed = 0;          // timed out with keep_waiting
  int64_t num_cancelled = 0;
  int64_t num_finished = 0;         // stop, length or error
  int64_t num_steps = 0;            // schedule() calls that scheduled something
  int64_t num_draft_tokens = 0;     // speculative tokens scheduled for verification
  int64_t num_accepted_tokens = 0;  // of those, accepted
  KvCacheStats kv;
  // The instance's load for least-loaded routing: queued plus running tokens.
  int64_t load_tokens() const { return num_waiting_tokens + num_running_tokens; }
};

class Scheduler {
 public:
  // Both configs must validate; InvalidArgument naming the key otherwise.
  static Result<std::unique_ptr<Scheduler>> create(const SchedulerConfig& config, const KvCacheConfig& kv_config);

  // Queues a request. InvalidArgument: empty prompt, max_tokens < 1, duplicate id, prompt +
  // max_tokens over max_model_len or over what the whole KV pool holds (it could never finish).
  // ResourceExhausted: its level's queue is full. Nothing is queued on error.
  Status add_request(NewRequest request);

  // Speculative decoding: proposes `drafts` to follow a running request's known tokens; its next
  // decode step computes them too (budgeted like any query token, from what the step's decodes,
  // prefill chunks and admissions leave; cut to what the budget, the KV pool, max_tokens and
  // max_model_len allow) and the step's result says how many were accepted. Replaces any
  // earlier proposal; ignored for an unknown, waiting or prefilling request. Empty: no proposal.
  void set_draft_tokens(uint64_t request_id, std::span<const int32_t> drafts);

  // Marks a request cancelled; it leaves (blocks freed, listed in finished with CANCELLED) at the
  // next schedule(). False when the id is unknown or already finished / cancelled.
  bool cancel(uint64_t request_id);

  // Plans one step (see the header comment). The output is valid until the next schedule().
  const SchedulerOutput& schedule(SchedulerTime now);

  // Applies the step's results; results.size() must equal the last output's scheduled.size().
  // Returns the requests that finished (stop, length, error), valid until the next call.
  const std::vector<FinishedRequest>& update_from_output(std::span<const SequenceResult> results);

  // The request, or null when unknown (finished ones are forgotten).
  const SchedulerRequest* find(uint64_t request_id) const;
  bool has_unfinished() const { return !requests_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return config_; }
  const KvCacheManager& kv_cache() const { return kv_; }

  // Every invariant: KV accounting (KvCacheManager::check_consistency), and each running request
  // owns exactly the blocks its computed (plus in-flight) tokens need, waiting ones own none, queue
  // counts match. OK or Internal naming the first violation. O(blocks + requests).
  Status check_consistency() const;

 private:
  Scheduler(const SchedulerConfig& config, const KvCacheConfig& kv_config);

  // schedule() steps.
  void begin_call();
  void remove_cancelled();
  void expire_waiting(SchedulerTime now);
  bool hold_for_batching_window(SchedulerTime now);
  void schedule_running(bool decodes, int32_t* budget);
  void admit_waiting(SchedulerTime now, int32_t* budget);
  void finish_output();

  int32_t chunk_size(const SchedulerRequest& r, int32_t budget) const;
  int32_t num_drafts_to_verify(const SchedulerRequest& r, int32_t spare_budget) const;
  void add_drafts(int32_t* budget);
  bool allocate_or_preempt(SchedulerRequest* r, int32_t num_new, int32_t* budget);
  SchedulerRequest* pick_victim() const;
  void preempt(SchedulerRequest* victim, int32_t* budget);
  void add_scheduled(SchedulerRequest* r, int32_t num_new);
  void remove_from_running(SchedulerRequest* r);
  void retire(SchedulerRequest* r, RequestFinishReason reason, Status status, std::vector<FinishedRequest>* out);
  RequestFinishReason length_finish(const SchedulerRequest& r) const;

  const SchedulerConfig config_;
  KvCacheManager kv_;
  std::unordered_map<uint64_t, std::unique_ptr<SchedulerRequest>> requests_;  // every unfinished one
  WaitingQueue waiting_;
  std::vector<SchedulerRequest*> running_;  // admission order
  std::vector<uint64_t> pending_cancels_;
  std::vector<std::unique_ptr<SchedulerRequest>> retired_;  // finished, kept alive for one call
  std::vector<SchedulerRequest*> step_requests_;  // parallel to out_.scheduled
  SchedulerOutput out_;
  std::vector<FinishedRequest> update_finished_;
  std::vector<SchedulerRequest*> scratch_;
  bool awaiting_update_ = false;
  bool preempted_this_step_ = false;
  uint64_t next_arrival_seq_ = 0;
  int64_t num_running_tokens_ = 0;
  SchedulerStats counters_;  // the monotonic counters only
};

}  // namespace ferry::llm
