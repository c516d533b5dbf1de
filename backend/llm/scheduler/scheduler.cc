#include "backend/llm/scheduler/scheduler.h"

#include <algorithm>
#include <string>

namespace ferry::llm {

Result<std::unique_ptr<Scheduler>> Scheduler::create(const SchedulerConfig& config, const KvCacheConfig& kv_config) {
  FERRY_RETURN_IF_ERROR(config.validate());
  FERRY_RETURN_IF_ERROR(kv_config.validate());
  return std::unique_ptr<Scheduler>(new Scheduler(config, kv_config));
}

Scheduler::Scheduler(const SchedulerConfig& config, const KvCacheConfig& kv_config)
    : config_(config), kv_(kv_config), waiting_(config.policy, config.num_priority_levels) {
  running_.reserve(static_cast<size_t>(config.max_num_seqs));
  out_.scheduled.reserve(static_cast<size_t>(config.max_num_seqs));
  step_requests_.reserve(static_cast<size_t>(config.max_num_seqs));
}

Status Scheduler::add_request(NewRequest request) {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt == 0) return Status::InvalidArgument("the prompt is empty");
  if (request.max_tokens < 1) return Status::InvalidArgument("max_tokens must be >= 1");
  if (requests_.count(request.id) != 0) {
    return Status::InvalidArgument("request id " + std::to_string(request.id) + " is already scheduled");
  }
  const int64_t total = prompt + request.max_tokens;
  if (config_.max_model_len > 0 && total > config_.max_model_len) {
    return Status::InvalidArgument("prompt (" + std::to_string(prompt) + " tokens) plus max_tokens (" +
                                   std::to_string(request.max_tokens) + ") exceeds max_model_len " +
                                   std::to_string(config_.max_model_len));
  }
  if (kv_.blocks_for(total) > kv_.num_blocks()) {
    return Status::InvalidArgument("prompt plus max_tokens (" + std::to_string(total) + " tokens) needs more KV blocks (" +
                                   std::to_string(kv_.blocks_for(total)) + ") than the pool holds (" +
                                   std::to_string(kv_.num_blocks()) + ")");
  }
  const int32_t level = config_.level_of(request.priority);
  const PriorityLevelConfig level_config = config_.level_config(level);
  if (level_config.max_queue_size > 0 && waiting_.num_new_at_level(level) >= level_config.max_queue_size) {
    ++counters_.num_rejected_queue_full;
    return Status::ResourceExhausted("the queue of priority level " + std::to_string(level + 1) + " is full (" +
                                     std::to_string(level_config.max_queue_size) + " requests)");
  }
  auto r = std::make_unique<SchedulerRequest>();
  r->id = request.id;
  r->tokens = std::move(request.prompt);
  r->num_prompt_tokens = static_cast<int32_t>(prompt);
  r->max_tokens = request.max_tokens;
  r->level = level;
  r->arrival_seq = next_arrival_seq_++;
  r->arrival_time = request.arrival_time;
  r->skip_prefix_cache = request.skip_prefix_cache;
  if (request.timeout_us > 0) {
    r->has_deadline = true;
    r->deadline = request.arrival_time + std::chrono::microseconds(request.timeout_us);
  } else if (level_config.queue_timeout_ms > 0) {
    r->has_deadline = true;
    r->deadline = request.arrival_time + std::chrono::milliseconds(level_config.queue_timeout_ms);
  }
  waiting_.push(r.get());
  requests_.emplace(r->id, std::move(r));
  return Status::Ok();
}

void Scheduler::set_draft_tokens(uint64_t request_id, std::span<const int32_t> drafts) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  SchedulerRequest* r = it->second.get();
  if (r->status != RequestStatus::kRunning || r->num_tokens() - r->num_computed_tokens != 1) return;
  r->draft_tokens.assign(drafts.begin(), drafts.end());
}

bool Scheduler::cancel(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end() || it->second->cancel_requested) return false;
  it->second->cancel_requested = true;
  pending_cancels_.push_back(request_id);
  return true;
}

const SchedulerRequest* Scheduler::find(uint64_t request_id) const {
  auto it = requests_.find(request_id);
  return it == requests_.end() ? nullptr : it->second.get();
}

// ---- schedule() -------------------------------------------------------------------------------

const SchedulerOutput& Scheduler::schedule(SchedulerTime now) {
  FERRY_CHECK(!awaiting_update_);  // update_from_output must follow a step that scheduled work
  begin_call();
  remove_cancelled();
  expire_waiting(now);
  if (!hold_for_batching_window(now)) {
    int32_t budget = config_.max_num_batched_tokens;
    schedule_running(/*decodes=*/true, &budget);
    schedule_running(/*decodes=*/false, &budget);
    admit_waiting(now, &budget);
    add_drafts(&budget);
  }
  finish_output();
  return out_;
}

void Scheduler::begin_call() {
  retired_.clear();
  update_finished_.clear();
  out_.scheduled.clear();
  out_.finished.clear();
  out_.preempted.clear();
  out_.num_scheduled_tokens = 0;
  out_.has_wake_at = false;
  step_requests_.clear();
  preempted_this_step_ = false;
}

void Scheduler::remove_cancelled() {
  for (uint64_t id : pending_cancels_) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // finished in the meantime
    SchedulerRequest* r = it->second.get();
    if (r->status == RequestStatus::kRunning) {
      kv_.free(r->id);
      remove_from_running(r);
    } else {
      waiting_.remove(r);
    }
    ++counters_.num_cancelled;
    retire(r, RequestFinishReason::kCancelled, Status::Cancelled("request cancelled"), &out_.finished);
  }
  pending_cancels_.clear();
}

void Scheduler::expire_waiting(SchedulerTime now) {
  scratch_.clear();
  waiting_.take_expired(now, &scratch_);
  for (SchedulerRequest* r : scratch_) {
    waiting_.remove(r);
    if (config_.level_config(r->level).timeout_action == TimeoutAction::kReject) {
      ++counters_.num_timed_out;
      retire(r, RequestFinishReason::kTimeout,
             Status::DeadlineExceeded("request timed out after waiting in the queue"), &out_.finished);
    } else {
      ++counters_.num_delayed;
      r->delayed = true;
      waiting_.push(r);
    }
  }
}

bool Scheduler::hold_for_batching_window(SchedulerTime now) {
  if (config_.max_queue_delay_ms <= 0 || !running_.empty() || waiting_.empty()) return false;
  // A batch that is already full gains nothing from waiting.
  if (static_cast<int64_t>(waiting_.size()) >= config_.max_num_seqs ||
      waiting_.num_tokens() >= config_.max_num_batched_tokens) {
    return false;
  }
  const SchedulerTime end = waiting_.oldest_arrival() + std::chrono::milliseconds(config_.max_queue_delay_ms);
  if (now >= end) return false;
  out_.has_wake_at = true;
  out_.wake_at = end;
  return true;
}

int32_t Scheduler::chunk_size(const SchedulerRequest& r, int32_t budget) const {
  const int32_t remaining = r.num_tokens() - r.num_computed_tokens;
  int32_t n = std::min(remaining, budget);
  if (remaining > 1 && config_.long_prefill_token_threshold > 0) n = std::min(n, config_.long_prefill_token_threshold);
  return n;
}

// How many of r's proposed tokens its decode verifies this step: no more than the spare budget, and
// never so many that accepting all of them (plus the bonus token) passes max_tokens or max_model_len.
int32_t Scheduler::num_drafts_to_verify(const SchedulerRequest& r, int32_t spare_budget) const {
  int32_t k = std::min(static_cast<int32_t>(r.draft_tokens.size()), spare_budget);
  k = std::min(k, r.max_tokens - r.num_output_tokens() - 1);
  if (config_.max_model_len > 0) k = std::min(k, config_.max_model_len - r.num_tokens() - 1);
  return std::max(k, 0);
}

// Speculative decoding, last in the step: the decodes scheduled with one token take on their
// proposed tokens with the budget that decodes, prefill chunks and admissions left over, so
// speculation never delays another request. A run that does not get its blocks is dropped rather
// than preempting anyone.
void Scheduler::add_drafts(int32_t* budget) {
  for (size_t i = 0; i < out_.scheduled.size() && *budget > 0; ++i) {
    ScheduledSequence& s = out_.scheduled[i];
    SchedulerRequest* r = step_requests_[i];
    if (!s.samples || s.num_new_tokens != 1 || r->draft_tokens.empty()) continue;
    const int32_t k = num_drafts_to_verify(*r, *budget);
    if (k == 0 || !kv_.allocate_slots(r->id, r->num_computed_tokens, 1 + k)) continue;
    s.num_new_tokens += k;
    s.num_draft_tokens = k;
    *budget -= k;
  }
}

// One pass over the running requests: decodes (one token left to compute) or prefill chunks.
void Scheduler::schedule_running(bool decodes, int32_t* budget) {
  for (size_t i = 0; i < running_.size() && *budget > 0;) {
    SchedulerRequest* r = running_[i];
    const int32_t remaining = r->num_tokens() - r->num_computed_tokens;
    if (r->step_index >= 0 || (remaining == 1) != decodes) {
      ++i;
      continue;
    }
    const int32_t n = chunk_size(*r, *budget);
    const int64_t preemptions_before = counters_.num_preemptions;
    const bool ok = allocate_or_preempt(r, n, budget);
    if (ok) {
      add_scheduled(r, n);
      *budget -= n;
    }
    // A preemption reshuffles running_: rescan (scheduled requests are skipped).
    i = counters_.num_preemptions != preemptions_before ? 0 : i + 1;
  }
}

bool Scheduler::allocate_or_preempt(SchedulerRequest* r, int32_t num_new, int32_t* budget) {
  while (!kv_.allocate_slots(r->id, r->num_computed_tokens, num_new)) {
    SchedulerRequest* victim = pick_victim();
    FERRY_CHECK(victim != nullptr);
    preempt(victim, budget);
    if (victim == r) return false;
  }
  return true;
}

// Lowest priority (largest level), then latest arrival.
SchedulerRequest* Scheduler::pick_victim() const {
  SchedulerRequest* victim = nullptr;
  for (SchedulerRequest* r : running_) {
    if (victim == nullptr || r->level > victim->level ||
        (r->level == victim->level && r->arrival_seq > victim->arrival_seq)) {
      victim = r;
    }
  }
  return victim;
}

void Scheduler::preempt(SchedulerRequest* victim, int32_t* budget) {
  if (victim->step_index >= 0) {  // already in this step: take it out again
    const size_t at = static_cast<size_t>(victim->step_index);
    *budget += out_.scheduled[at].num_new_tokens;
    out_.scheduled.erase(out_.scheduled.begin() + static_cast<ptrdiff_t>(at));
    step_requests_.erase(step_requests_.begin() + static_cast<ptrdiff_t>(at));
    for (size_t j = at; j < step_requests_.size(); ++j) step_requests_[j]->step_index = static_cast<int32_t>(j);
    victim->step_index = -1;
  }
  kv_.free(victim->id);
  remove_from_running(victim);
  victim->num_computed_tokens = 0;
  victim->draft_tokens.clear();
  victim->status = RequestStatus::kPreempted;
  ++victim->num_preemptions;
  waiting_.push(victim);
  out_.preempted.push_back(victim->id);
  ++counters_.num_preemptions;
  preempted_this_step_ = true;
}

// Admits waiting requests in policy order while the budget, max_num_seqs and the KV pool allow.
// Strictly in order: a head that does not fit blocks the others (no starvation of big requests).
// Skipped in a step that preempted: the pool is short already.
void Scheduler::admit_waiting(SchedulerTime now, int32_t* budget) {
  if (preempted_this_step_) return;
  while (*budget > 0 && static_cast<int32_t>(running_.size()) < config_.max_num_seqs && !waiting_.empty()) {
    SchedulerRequest* r = waiting_.front();
    const ComputedPrefix prefix = r->skip_prefix_cache ? ComputedPrefix{} : kv_.get_computed_blocks(r->tokens);
    r->num_computed_tokens = prefix.num_tokens;
    const int32_t n = chunk_size(*r, *budget);
    if (!kv_.allocate_slots(r->id, prefix.num_tokens, n, prefix)) {
      r->num_computed_tokens = 0;
      break;
    }
    waiting_.remove(r);
    r->status = RequestStatus::kRunning;
    if (!r->started) {
      r->started = true;
      r->first_scheduled_time = now;
    }
    running_.push_back(r);
    num_running_tokens_ += r->num_tokens();
    add_scheduled(r, n);
    *budget -= n;
  }
}

void Scheduler::add_scheduled(SchedulerRequest* r, int32_t num_new) {
  ScheduledSequence s;
  s.request_id = r->id;
  s.request = r;
  s.num_computed_tokens = r->num_computed_tokens;
  s.num_new_tokens = num_new;
  s.samples = r->num_computed_tokens + num_new == r->num_tokens();
  r->step_index = static_cast<int32_t>(out_.scheduled.size());
  out_.scheduled.push_back(s);
  step_requests_.push_back(r);
}

void Scheduler::finish_output() {
  for (ScheduledSequence& s : out_.scheduled) {
    s.block_table = kv_.block_table(s.request_id);  // after every allocation of the step
    out_.num_scheduled_tokens += s.num_new_tokens;
  }
  FERRY_CHECK(out_.num_scheduled_tokens <= config_.max_num_batched_tokens);
  awaiting_update_ = !out_.scheduled.empty();
  if (awaiting_update_) {
    ++counters_.num_steps;
    return;
  }
  SchedulerTime deadline;
  if (waiting_.next_deadline(&deadline) && (!out_.has_wake_at || deadline < out_.wake_at)) {
    out_.has_wake_at = true;
    out_.wake_at = deadline;
  }
}

// ---- update_from_output() -----------------------------------------------------------------------

const std::vector<FinishedRequest>& Scheduler::update_from_output(std::span<const SequenceResult> results) {
  FERRY_CHECK(results.size() == out_.scheduled.size());
  retired_.clear();
  update_finished_.clear();
  bool any_finished = false;
  for (size_t i = 0; i < results.size(); ++i) {
    SchedulerRequest* r = step_requests_[i];
    const ScheduledSequence& s = out_.scheduled[i];
    const SequenceResult& res = results[i];
    r->step_index = -1;
    r->draft_tokens.clear();  // proposed for the tokens before this step
    RequestFinishReason reason = res.finish;
    if (reason != RequestFinishReason::kError) {
      r->num_computed_tokens += s.num_new_tokens - s.num_draft_tokens;
      if (s.samples && res.token >= 0) {
        FERRY_CHECK(res.extra_tokens.size() <= static_cast<size_t>(s.num_draft_tokens));
        r->tokens.push_back(res.token);
        // Each extra token follows an accepted draft, whose K/V this step wrote at the right position.
        r->tokens.insert(r->tokens.end(), res.extra_tokens.begin(), res.extra_tokens.end());
        const int32_t num_extra = static_cast<int32_t>(res.extra_tokens.size());
        r->num_computed_tokens += num_extra;
        num_running_tokens_ += 1 + num_extra;
        counters_.num_draft_tokens += s.num_draft_tokens;
        counters_.num_accepted_tokens += num_extra;
      } else if (s.samples) {
        FERRY_CHECK(reason != RequestFinishReason::kNone);  // ends without a token (a grammar with no way on)
      }
      // The slots of rejected drafts: blocks past the computed tokens go back to the pool.
      if (s.num_draft_tokens > 0) kv_.free_tail(r->id, r->num_computed_tokens);
      // Finished requests' blocks are cached too: the next turn of a conversation reuses them.
      kv_.cache_full_blocks(r->id, r->tokens, r->num_computed_tokens);
      if (reason == RequestFinishReason::kNone && s.samples) reason = length_finish(*r);
    }
    if (reason == RequestFinishReason::kNone) continue;
    kv_.free(r->id);
    num_running_tokens_ -= r->num_tokens();
    ++counters_.num_finished;
    any_finished = true;
    Status status = reason == RequestFinishReason::kError ? Status::Internal("the engine step failed for this request")
                                                          : Status::Ok();
    retire(r, reason, std::move(status), &update_finished_);
  }
  if (any_finished) {
    std::erase_if(running_, [](const SchedulerRequest* r) { return r->status == RequestStatus::kFinished; });
  }
  out_.scheduled.clear();
  step_requests_.clear();
  awaiting_update_ = false;
  return update_finished_;
}

RequestFinishReason Scheduler::length_finish(const SchedulerRequest& r) const {
  if (r.num_output_tokens() >= r.max_tokens) return RequestFinishReason::kLength;
  if (config_.max_model_len > 0 && r.num_tokens() >= config_.max_model_len) return RequestFinishReason::kLength;
  return RequestFinishReason::kNone;
}

// ---- bookkeeping --------------------------------------------------------------------------------

void Scheduler::remove_from_running(SchedulerRequest* r) {
  auto it = std::find(running_.begin(), running_.end(), r);
  FERRY_CHECK(it != running_.end());
  running_.erase(it);
  num_running_tokens_ -= r->num_tokens();
}

void Scheduler::retire(SchedulerRequest* r, RequestFinishReason reason, Status status,
                       std::vector<FinishedRequest>* out) {
  r->status = RequestStatus::kFinished;
  r->finish_reason = reason;
  auto it = requests_.find(r->id);
  FERRY_CHECK(it != requests_.end());
  retired_.push_back(std::move(it->second));
  requests_.erase(it);
  out->push_back(FinishedRequest{r->id, reason, std::move(status), r});
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = counters_;
  s.num_waiting = static_cast<int64_t>(waiting_.size());
  s.num_running = static_cast<int64_t>(running_.size());
  s.num_waiting_tokens = waiting_.num_tokens();
  s.num_running_tokens = num_running_tokens_;
  s.kv = kv_.stats();
  return s;
}

Status Scheduler::check_consistency() const {
  FERRY_RETURN_IF_ERROR(kv_.check_consistency());
  auto fail = [](const std::string& what) { return Status::Internal("scheduler: " + what); };
  if (running_.size() > static_cast<size_t>(config_.max_num_seqs)) return fail("more running than max_num_seqs");
  if (kv_.num_requests() != running_.size()) return fail("KV tables exist for requests that do not run");
  if (requests_.size() != running_.size() + waiting_.size()) return fail("requests neither running nor waiting");
  int64_t running_tokens = 0;
  for (const SchedulerRequest* r : running_) {
    const std::string who = "request " + std::to_string(r->id);
    if (r->status != RequestStatus::kRunning) return fail(who + " in the running list is " + std::string(request_status_name(r->status)));
    int32_t covered = r->num_computed_tokens, drafts = 0;
    if (r->step_index >= 0) {
      covered += out_.scheduled[static_cast<size_t>(r->step_index)].num_new_tokens;
      drafts = out_.scheduled[static_cast<size_t>(r->step_index)].num_draft_tokens;
    }
    if (covered - drafts > r->num_tokens() || (r->step_index < 0 && covered >= r->num_tokens())) {
      return fail(who + " has " + std::to_string(covered) + " computed of " + std::to_string(r->num_tokens()) + " tokens");
    }
    if (kv_.block_table(r->id).size() != static_cast<size_t>(kv_.blocks_for(covered))) {
      return fail(who + " owns " + std::to_string(kv_.block_table(r->id).size()) + " blocks for " +
                  std::to_string(covered) + " tokens");
    }
    running_tokens += r->num_tokens();
  }
  if (running_tokens != num_running_tokens_) return fail("running token count drifted");
  Status waiting_ok;
  waiting_.for_each([&](const SchedulerRequest& r) {
    if (!waiting_ok.ok()) return;
    if (r.num_computed_tokens != 0 || kv_.has_request(r.id) ||
        (r.status != RequestStatus::kWaiting && r.status != RequestStatus::kPreempted)) {
      waiting_ok = fail("waiting request " + std::to_string(r.id) + " holds computed tokens or blocks");
    }
  });
  return waiting_ok;
}

}  // namespace ferry::llm
