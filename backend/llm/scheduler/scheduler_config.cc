#include "backend/llm/scheduler/scheduler_config.h"

#include <algorithm>
#include <string>

namespace ferry::llm {

Status SchedulerConfig::validate() const {
  auto bad = [](const char* key, const std::string& why) {
    return Status::InvalidArgument(std::string("scheduler key '") + key + "' " + why);
  };
  if (max_num_seqs < 1) return bad("max_num_seqs", "must be >= 1, got " + std::to_string(max_num_seqs));
  if (max_num_batched_tokens < 1) {
    return bad("max_num_batched_tokens", "must be >= 1, got " + std::to_string(max_num_batched_tokens));
  }
  if (max_num_batched_tokens < max_num_seqs) {
    // Otherwise decodes late in the running list could be starved of budget forever.
    return bad("max_num_batched_tokens", "must be >= max_num_seqs (" + std::to_string(max_num_seqs) + "), got " +
                                             std::to_string(max_num_batched_tokens));
  }
  if (long_prefill_token_threshold < 0) {
    return bad("long_prefill_token_threshold", "must be >= 0, got " + std::to_string(long_prefill_token_threshold));
  }
  if (max_model_len < 0) return bad("max_model_len", "must be >= 0, got " + std::to_string(max_model_len));
  if (num_priority_levels < 1 || num_priority_levels > 64) {
    return bad("num_priority_levels", "must be in 1..64, got " + std::to_string(num_priority_levels));
  }
  if (default_priority > static_cast<uint32_t>(num_priority_levels)) {
    return bad("default_priority", "must be in 0.." + std::to_string(num_priority_levels) + ", got " +
                                       std::to_string(default_priority));
  }
  if (!levels.empty() && static_cast<int32_t>(levels.size()) != num_priority_levels) {
    return bad("priority_levels", "must list " + std::to_string(num_priority_levels) + " levels, got " +
                                      std::to_string(levels.size()));
  }
  for (const PriorityLevelConfig& l : levels) {
    if (l.queue_timeout_ms < 0) return bad("queue_timeout_ms", "must be >= 0, got " + std::to_string(l.queue_timeout_ms));
    if (l.max_queue_size < 0) return bad("max_queue_size", "must be >= 0, got " + std::to_string(l.max_queue_size));
  }
  if (max_queue_delay_ms < 0) return bad("max_queue_delay_ms", "must be >= 0, got " + std::to_string(max_queue_delay_ms));
  return Status::Ok();
}

int32_t SchedulerConfig::level_of(uint32_t priority) const {
  if (priority == 0) {
    priority = default_priority != 0 ? default_priority : static_cast<uint32_t>(num_priority_levels + 1) / 2;
  }
  return static_cast<int32_t>(std::min<uint32_t>(priority, static_cast<uint32_t>(num_priority_levels))) - 1;
}

PriorityLevelConfig SchedulerConfig::level_config(int32_t level) const {
  return levels.empty() ? PriorityLevelConfig{} : levels[static_cast<size_t>(level)];
}

std::string_view scheduling_policy_name(SchedulingPolicy policy) {
  switch (policy) {
    case SchedulingPolicy::kFcfs: return "fcfs";
    case SchedulingPolicy::kPriority: return "priority";
    case SchedulingPolicy::kShortestPromptFirst: return "shortest_prompt_first";
  }
  return "?";
}

std::string_view timeout_action_name(TimeoutAction action) {
  return action == TimeoutAction::kReject ? "reject" : "keep_waiting";
}

}  // namespace ferry::llm
