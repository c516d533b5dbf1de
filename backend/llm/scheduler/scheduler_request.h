// SchedulerRequest: the scheduler's state of one generation request -- its tokens, how many of
// them are computed (have K/V in the cache), its priority, timing and status.
//
// Tokens are one array, prompt then outputs, so that a request preempted by recompute resumes by
// computing tokens()[0, num_tokens()) again: its outputs so far simply become part of what is
// recomputed, and the client sees nothing but latency.
//
// Owned by the Scheduler; callers get const pointers that stay valid while the request is known to
// the scheduler (and, once finished, until the next schedule() or update_from_output() call).
// Thread-safety: none (the scheduler's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ferry::llm {

using SchedulerClock = std::chrono::steady_clock;
using SchedulerTime = SchedulerClock::time_point;

enum class RequestStatus {
  kWaiting,    // queued, never run
  kRunning,    // admitted: owns KV blocks, scheduled every step (budget permitting)
  kPreempted,  // was running, blocks taken back; queued again to recompute its tokens
  kFinished,
};

enum class RequestFinishReason {
  kNone,
  kStop,       // a stop token or string (decided by the caller's stop checker)
  kLength,     // max_tokens reached, or max_model_len
  kCancelled,  // cancel()
  kError,      // the step failed for this request
  kTimeout,    // waited past its timeout (action reject): DEADLINE_EXCEEDED
  kRejected,   // refused before running (reserved; add_request refuses synchronously today)
};

std::string_view request_status_name(RequestStatus status);
std::string_view request_finish_reason_name(RequestFinishReason reason);  // "stop", "length", "cancelled", ...

struct SchedulerRequest {
  uint64_t id = 0;
  std::vector<int32_t> tokens;    // prompt, then generated tokens
  int32_t num_prompt_tokens = 0;
  int32_t num_computed_tokens = 0;  // tokens[0, this) have K/V in the cache
  int32_t max_tokens = 0;           // generated tokens at most
  int32_t level = 0;                // priority level, 0 = highest
  uint64_t arrival_seq = 0;         // order of add_request (ties and victims)
  SchedulerTime arrival_time{};
  bool has_deadline = false;
  SchedulerTime deadline{};         // when has_deadline: latest time to start running
  bool delayed = false;             // timed out with action keep_waiting
  RequestStatus status = RequestStatus::kWaiting;
  RequestFinishReason finish_reason = RequestFinishReason::kNone;
  bool cancel_requested = false;
  int32_t num_preemptions = 0;
  bool started = false;             // has been scheduled at least once
  SchedulerTime first_scheduled_time{};
  bool skip_prefix_cache = false;   // NewRequest::skip_prefix_cache
  int32_t step_index = -1;          // scheduler-internal: its slot in the current step's output, or -1
  // Speculative decoding: tokens proposed to follow `tokens` (Scheduler::set_draft_tokens), verified
  // at its next decode step if the budget allows. Cleared when scheduled, preempted or finished.
  std::vector<int32_t> draft_tokens;

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  std::span<const int32_t> prompt() const { return {tokens.data(), static_cast<size_t>(num_prompt_tokens)}; }
  std::span<const int32_t> output() const {
    return std::span<const int32_t>(tokens).subspan(static_cast<size_t>(num_prompt_tokens));
  }
  bool finished() const { return status == RequestStatus::kFinished; }
};

}  // namespace ferry::llm
