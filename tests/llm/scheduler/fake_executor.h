// FakeExecutor: a stand-in for the engine in scheduler tests. It builds the step's ForwardBatch
// from a SchedulerOutput exactly as the generation loop must, then "runs" it against a fake paged
// KV cache that stores token ids instead of K/V: each query token is written to its slot
// (block_table[pos / block_size] * block_size + pos % block_size), and a sequence that samples
// reads its whole context back through its block table and returns next_token(context). A wrong
// block table, a reused block that was overwritten, or a wrong position therefore changes the
// output, which the tests compare with next_token applied to the true token sequence.
// Speculative decoding: a sequence with drafts is verified greedily as an engine would -- the
// token after each query position is next_token of the context read back from the cache, and
// the run stops at the first one that differs from its draft (or is a stop token).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <vector>

#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/scheduler/scheduler.h"

namespace ferry::llm::testing {

constexpr int32_t kVocab = 1000;

// Deterministic "model": a hash of the whole context.
inline int32_t next_token(std::span<const int32_t> context) {
  uint64_t h = 1469598103934665603ULL;
  for (int32_t t : context) h = (h ^ static_cast<uint32_t>(t)) * 1099511628211ULL;
  h ^= h >> 29;
  return static_cast<int32_t>(h % kVocab);
}

// Stop rule of the fake stop checker.
inline bool is_stop(int32_t token) { return token % 50 == 0; }

// What the request generates when run alone: the oracle.
inline std::vector<int32_t> reference_output(std::vector<int32_t> tokens, int32_t max_tokens) {
  std::vector<int32_t> out;
  while (static_cast<int32_t>(out.size()) < max_tokens) {
    const int32_t t = next_token(tokens);
    tokens.push_back(t);
    out.push_back(t);
    if (is_stop(t)) break;
  }
  return out;
}

class FakeExecutor {
 public:
  FakeExecutor(int32_t num_blocks, int32_t block_size)
      : block_size_(block_size), kv_(static_cast<size_t>(num_blocks) * block_size, -1) {}

  // One step; results[i] answers out.scheduled[i].
  std::vector<SequenceResult> run(const SchedulerOutput& out) {
    // Build the batch as the generation loop does.
    token_ids_.clear();
    positions_.clear();
    inputs_.clear();
    for (const ScheduledSequence& s : out.scheduled) {
      SequenceInput in;
      in.query_start = static_cast<int32_t>(token_ids_.size());
      in.query_len = s.num_new_tokens;
      in.context_len = s.num_computed_tokens + s.num_new_tokens;
      in.block_table = s.block_table;
      in.num_draft_tokens = s.num_draft_tokens;
      for (int32_t t : s.new_tokens()) token_ids_.push_back(t);
      for (int32_t t : s.draft_tokens()) token_ids_.push_back(t);
      for (int32_t j = 0; j < s.num_new_tokens; ++j) positions_.push_back(s.num_computed_tokens + j);
      EXPECT_EQ(token_ids_.size(), positions_.size());
      inputs_.push_back(in);
    }
    const ForwardBatch batch{token_ids_, positions_, inputs_, false};
    std::vector<SequenceResult> results(out.scheduled.size());
    extras_.assign(out.scheduled.size(), {});
    for (size_t i = 0; i < batch.sequences.size(); ++i) {
      const SequenceInput& in = batch.sequences[i];
      EXPECT_GE(in.query_len, 1);
      EXPECT_GE(static_cast<int64_t>(in.block_table.size()) * block_size_, in.context_len);
      for (int32_t j = 0; j < in.query_len; ++j) {
        const size_t t = static_cast<size_t>(in.query_start + j);
        EXPECT_EQ(batch.positions[t], in.context_len - in.query_len + j);
        kv_[slot(in.block_table, batch.positions[t])] = batch.token_ids[t];
      }
      num_computed_tokens_ += in.query_len;
      if (!out.scheduled[i].samples) continue;
      const int32_t k = in.num_draft_tokens;
      for (int32_t j = 0; j <= k; ++j) {
        context_.clear();
        for (int32_t p = 0; p < in.context_len - k + j; ++p) context_.push_back(kv_[slot(in.block_table, p)]);
        const int32_t t = next_token(context_);
        if (j == 0) results[i].token = t;
        else extras_[i].push_back(t);
        if (is_stop(t)) {
          results[i].finish = RequestFinishReason::kStop;
          break;
        }
        if (j < k && t != batch.token_ids[static_cast<size_t>(in.query_start + in.query_len - k + j)]) break;
      }
      results[i].extra_tokens = extras_[i];
      num_drafts_ += k;
      num_accepted_ += static_cast<int64_t>(extras_[i].size());
    }
    return results;
  }

  int64_t num_drafts() const { return num_drafts_; }
  int64_t num_accepted() const { return num_accepted_; }

  int64_t num_computed_tokens() const { return num_computed_tokens_; }

 private:
  size_t slot(std::span<const int32_t> table, int32_t pos) const {
    return static_cast<size_t>(table[static_cast<size_t>(pos / block_size_)]) * block_size_ + pos % block_size_;
  }

  int32_t block_size_;
  std::vector<int32_t> kv_;  // [num_blocks, block_size]: the token id whose "K/V" is in each slot
  std::vector<int32_t> token_ids_, positions_, context_;
  std::vector<SequenceInput> inputs_;
  std::vector<std::vector<int32_t>> extras_;  // [num_seqs] tokens after the first (SequenceResult views them)
  int64_t num_computed_tokens_ = 0;
  int64_t num_drafts_ = 0, num_accepted_ = 0;
};

// Proposes drafts for a request about to decode (speculative decoding); empty: none.
using DraftProposer = std::function<std::vector<int32_t>(const SchedulerRequest&)>;

// What a drive of the scheduler produced.
struct DriveResult {
  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::map<uint64_t, RequestFinishReason> reasons;
  std::map<uint64_t, StatusCode> codes;
  std::vector<uint64_t> first_token_order;
  int64_t num_steps = 0;
  int64_t num_preempted = 0;
};

// Runs steps until nothing is unfinished (or max_steps), checking consistency after every
// schedule() and update; `now` advances by step_ms per step.
inline void drive(Scheduler& s, FakeExecutor& ex, SchedulerTime& now, DriveResult* r, int64_t max_steps = 100000,
                  int64_t step_ms = 1, const DraftProposer& proposer = nullptr) {
  auto record = [r](const FinishedRequest& f) {
    r->reasons[f.request_id] = f.reason;
    r->codes[f.request_id] = f.status.code();
    r->outputs[f.request_id] = std::vector<int32_t>(f.request->output().begin(), f.request->output().end());
  };
  for (int64_t step = 0; step < max_steps && s.has_unfinished(); ++step) {
    const SchedulerOutput& out = s.schedule(now);
    ASSERT_TRUE(s.check_consistency().ok()) << s.check_consistency().to_string();
    for (const FinishedRequest& f : out.finished) record(f);
    r->num_preempted += static_cast<int64_t>(out.preempted.size());
    std::vector<SequenceResult> results = ex.run(out);
    for (size_t i = 0; i < out.scheduled.size(); ++i) {
      if (out.scheduled[i].samples && out.scheduled[i].request->num_output_tokens() == 0) {
        r->first_token_order.push_back(out.scheduled[i].request_id);
      }
    }
    if (!out.scheduled.empty()) ++r->num_steps;
    std::vector<uint64_t> ids;
    for (const ScheduledSequence& q : out.scheduled) ids.push_back(q.request_id);
    for (const FinishedRequest& f : s.update_from_output(results)) record(f);
    ASSERT_TRUE(s.check_consistency().ok()) << s.check_consistency().to_string();
    for (uint64_t id : ids) {
      const SchedulerRequest* q = proposer ? s.find(id) : nullptr;
      if (q != nullptr) s.set_draft_tokens(id, proposer(*q));
    }
    now += std::chrono::milliseconds(step_ms);
  }
}

}  // namespace ferry::llm::testing
