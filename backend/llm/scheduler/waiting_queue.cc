#include "backend/llm/scheduler/waiting_queue.h"

#include "common/status.h"

namespace ferry::llm {

WaitingQueue::WaitingQueue(SchedulingPolicy policy, int32_t num_levels)
    : policy_(policy), new_per_level_(static_cast<size_t>(num_levels), 0) {}

WaitingQueue::Key WaitingQueue::key_of(const SchedulerRequest& r) const {
  const int64_t delayed = r.delayed ? 1 : 0;
  switch (policy_) {
    case SchedulingPolicy::kFcfs: return {delayed, 0, 0, r.arrival_seq};
    case SchedulingPolicy::kPriority: return {r.level, delayed, 0, r.arrival_seq};
    case SchedulingPolicy::kShortestPromptFirst: return {delayed, r.num_tokens(), 0, r.arrival_seq};
  }
  return {0, 0, 0, r.arrival_seq};
}

void WaitingQueue::push(SchedulerRequest* r) {
  const bool inserted = order_.insert(Entry{key_of(*r), r}).second;
  FERRY_CHECK(inserted);
  if (has_pending_deadline(*r)) deadlines_.insert({{r->deadline, r->arrival_seq}, r});
  if (r->status == RequestStatus::kWaiting) ++new_per_level_[static_cast<size_t>(r->level)];
  num_tokens_ += r->num_tokens();
}

void WaitingQueue::remove(SchedulerRequest* r) {
  const size_t erased = order_.erase(Entry{key_of(*r), r});
  FERRY_CHECK(erased == 1);
  if (has_pending_deadline(*r)) deadlines_.erase({{r->deadline, r->arrival_seq}, r});
  if (r->status == RequestStatus::kWaiting) --new_per_level_[static_cast<size_t>(r->level)];
  num_tokens_ -= r->num_tokens();
}

void WaitingQueue::take_expired(SchedulerTime now, std::vector<SchedulerRequest*>* out) {
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first.first <= now;) {
    out->push_back(it->second);
    it = deadlines_.erase(it);
  }
}

bool WaitingQueue::next_deadline(SchedulerTime* out) const {
  if (deadlines_.empty()) return false;
  *out = deadlines_.begin()->first.first;
  return true;
}

SchedulerTime WaitingQueue::oldest_arrival() const {
  FERRY_CHECK(!order_.empty());
  SchedulerTime oldest = SchedulerTime::max();
  for (const Entry& e : order_) oldest = std::min(oldest, e.request->arrival_time);
  return oldest;
}

}  // namespace ferry::llm
