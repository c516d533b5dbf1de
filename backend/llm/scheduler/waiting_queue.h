// WaitingQueue: the requests that wait to be admitted (new and preempted), in the order the
// policy admits them, plus an index of their start deadlines.
//
// Order (smallest first; ties by arrival_seq, i.e. add_request order):
//   fcfs:                  (delayed, arrival)
//   priority:              (level, delayed, arrival)
//   shortest_prompt_first: (delayed, num_tokens to compute, arrival)
// "delayed" is set on a request that timed out with action keep_waiting: it goes behind the
// requests of its level that have not timed out. A preempted request keeps its arrival_seq, so it
// goes back ahead of the requests that arrived after it.
//
// Holds non-owning pointers (the Scheduler owns requests); a request's key fields (level, delayed,
// tokens, arrival_seq) must not change while it is queued. Thread-safety: none.
#pragma once

#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "backend/llm/scheduler/scheduler_config.h"
#include "backend/llm/scheduler/scheduler_request.h"

namespace ferry::llm {

class WaitingQueue {
 public:
  WaitingQueue(SchedulingPolicy policy, int32_t num_levels);

  bool empty() const { return order_.empty(); }
  size_t size() const { return order_.size(); }
  // Requests of a level counted against its max_queue_size (preempted ones excluded).
  int32_t num_new_at_level(int32_t level) const { return new_per_level_[static_cast<size_t>(level)]; }
  // Sum of num_tokens() over queued requests.
  int64_t num_tokens() const { return num_tokens_; }

  void push(SchedulerRequest* r);
  void remove(SchedulerRequest* r);  // r must be queued
  SchedulerRequest* front() const { return order_.empty() ? nullptr : order_.begin()->request; }

  // Moves queued requests whose deadline is <= now (and not yet delayed) into *out, earliest first,
  // leaving them queued: the caller removes them (reject) or re-queues them delayed.
  void take_expired(SchedulerTime now, std::vector<SchedulerRequest*>* out);
  // The earliest pending deadline, if any.
  bool next_deadline(SchedulerTime* out) const;
  // The earliest arrival_time among queued requests; O(size). Requires !empty().
  SchedulerTime oldest_arrival() const;

  template <typename F>
  void for_each(F&& f) const {
    for (const Entry& e : order_) f(*e.request);
  }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, uint64_t>;
  struct Entry {
    Key key;
    SchedulerRequest* request;
    bool operator<(const Entry& o) const { return key < o.key; }
  };
  using DeadlineKey = std::pair<SchedulerTime, uint64_t>;  // (deadline, arrival_seq)

  Key key_of(const SchedulerRequest& r) const;
  bool has_pending_deadline(const SchedulerRequest& r) const {
    return r.has_deadline && !r.delayed && r.status == RequestStatus::kWaiting;
  }

  const SchedulingPolicy policy_;
  std::set<Entry> order_;
  std::set<std::pair<DeadlineKey, SchedulerRequest*>> deadlines_;
  std::vector<int32_t> new_per_level_;
  int64_t num_tokens_ = 0;
};

}  // namespace ferry::llm
