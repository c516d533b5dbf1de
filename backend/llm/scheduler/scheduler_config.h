// SchedulerConfig: the knobs of one instance's scheduler, and how a request's ABI priority maps to
// a priority level.
//
// Priority levels: level 0 is the highest. The ABI's ferry_request::priority is 1-based (1 is the
// highest, larger is lower) with 0 meaning "the model's default"; priority p >= 1 maps to level
// min(p, num_priority_levels) - 1, and 0 maps to the level of `default_priority`, which itself
// defaults (0) to the middle level, ABI priority (num_priority_levels + 1) / 2: with the default 3
// levels, priority 0 and 2 are the same level, 1 is above them and 3 (or more) below.
//
// Plain value type; thread-safe to read.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

enum class SchedulingPolicy {
  kFcfs,                // arrival order, whatever the priority
  kPriority,            // priority level first, then arrival order
  kShortestPromptFirst  // fewest tokens to compute first, then arrival order, whatever the priority
};

// What happens to a request that has waited longer than its timeout without running.
enum class TimeoutAction {
  kReject,      // it finishes with DEADLINE_EXCEEDED
  kKeepWaiting  // it stays queued, behind every request of its level that has not timed out
};

struct PriorityLevelConfig {
  int64_t queue_timeout_ms = 0;  // >= 0; 0: no timeout (a request's own timeout still applies)
  TimeoutAction timeout_action = TimeoutAction::kReject;
  int32_t max_queue_size = 0;  // >= 0; 0: unlimited. Waiting requests of this level, preempted ones excluded
};

struct SchedulerConfig {
  int32_t max_num_seqs = 16;                 // 1..: sequences in one step
  int32_t max_num_batched_tokens = 2048;     // >= max_num_seqs: tokens computed in one step (decodes count 1)
  int32_t long_prefill_token_threshold = 0;  // >= 0; > 0: at most this many prompt tokens per request per step
  int32_t max_model_len = 0;                 // >= 0; > 0: prompt + max_tokens limit (and a length stop)
  SchedulingPolicy policy = SchedulingPolicy::kPriority;  // all at one level, kPriority is fcfs
  int32_t num_priority_levels = 3;           // 1..64
  uint32_t default_priority = 0;             // ABI priority for requests that give 0; 0: the middle level
  std::vector<PriorityLevelConfig> levels;   // empty (all defaults) or num_priority_levels entries, highest first
  int64_t max_queue_delay_ms = 0;            // >= 0; batching window when nothing runs (0: none)

  // OK, or InvalidArgument naming the offending key.
  Status validate() const;
  // The level (0 = highest) of a request with this ABI priority. Requires a valid config.
  int32_t level_of(uint32_t priority) const;
  // The settings of a level; defaults when `levels` is empty.
  PriorityLevelConfig level_config(int32_t level) const;
};

std::string_view scheduling_policy_name(SchedulingPolicy policy);  // "fcfs", "priority", "shortest_prompt_first"
std::string_view timeout_action_name(TimeoutAction action);         // "reject", "keep_waiting"

}  // namespace ferry::llm
