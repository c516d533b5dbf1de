// Prompt logprobs (vLLM's prompt_logprobs), from the row scoring up to the scheduler: score_prompt_row
// against a full sort, the batch checks, and stories260K served through Scheduler + ModelRunner +
// CpuEngine -- a prompt prefilled in several chunks, one that shares a cached prefix with an earlier
// request, and one preempted mid-prefill -- against log_softmax of the logits of one plain forward
// pass over the whole prompt on the reference kernels (an independent path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <memory>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/engine/prompt_logprobs.h"
#include "backend/llm/model_runner.h"
#include "backend/llm/scheduler/scheduler.h"
#include "tests/llm/engine/testdata.h"

namespace ferry::llm {
namespace {

// The reference of one row: log_softmax by a plain sum, rank and top-k from a full sort.
struct RowRef {
  std::vector<double> logprobs;
  std::vector<int32_t> order;  // by logit descending, ids ascending on ties
};
RowRef reference_row(const float* logits, size_t vocab) {
  RowRef r;
  double max = logits[0];
  for (size_t i = 0; i < vocab; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  for (size_t i = 0; i < vocab; ++i) r.logprobs.push_back(static_cast<double>(logits[i]) - max - std::log(sum));
  r.order.resize(vocab);
  std::iota(r.order.begin(), r.order.end(), 0);
  std::stable_sort(r.order.begin(), r.order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return r;
}

TEST(ScorePromptRow, MatchesFullSortWithTies) {
  // Ties (ids 1, 4 and 7 share the top logit; 2 and 5 the next) must come out lowest id first.
  const std::vector<float> logits = {0.5f, 3.0f, 2.0f, -1.0f, 3.0f, 2.0f, 0.0f, 3.0f, -4.0f, 1.5f};
  const RowRef ref = reference_row(logits.data(), logits.size());
  for (int32_t target : {0, 3, 4, 8}) {
    for (int32_t k : {0, 1, 3, 5, 10}) {
      SampleResult out;
      score_prompt_row(logits, target, k, &out);
      EXPECT_EQ(out.token, target);
      EXPECT_NEAR(out.logprob, ref.logprobs[target], 1e-6);
      int32_t larger = 0;
      for (float l : logits) larger += l > logits[target] ? 1 : 0;
      EXPECT_EQ(out.rank, 1 + larger);
      ASSERT_EQ(out.top_logprobs.size(), static_cast<size_t>(k));
      for (int32_t j = 0; j < k; ++j) {
        EXPECT_EQ(out.top_logprobs[j].token, ref.order[j]) << "target " << target << " k " << k << " j " << j;
        EXPECT_NEAR(out.top_logprobs[j].logprob, ref.logprobs[ref.order[j]], 1e-6);
      }
    }
  }
}

TEST(ScorePromptRow, ClampsMinusInfinity) {
  const std::vector<float> logits = {0.0f, -std::numeric_limits<float>::infinity(), 1.0f};
  SampleResult out;
  score_prompt_row(logits, 1, 3, &out);
  EXPECT_EQ(out.logprob, kMinLogprob);
  EXPECT_EQ(out.rank, 3);
  EXPECT_EQ(out.top_logprobs.back().logprob, kMinLogprob);
}

TEST(ValidatePromptLogprobs, RefusesWhatDoesNotFit) {
  const std::vector<int32_t> ids = {1, 2, 3, 4}, pos = {0, 1, 2, 3};
  std::vector<SequenceInput> seqs(1);
  seqs[0].query_len = 4;
  seqs[0].context_len = 4;
  const std::vector<int32_t> targets = {5, 6, 7};
  auto check = [&](PromptLogprobsInput p, bool all_logits = false) {
    ForwardBatch b{ids, pos, seqs, all_logits, std::span<const PromptLogprobsInput>(&p, 1)};
    return validate_prompt_logprobs(b, 10);
  };
  PromptLogprobsInput ok{0, 1, targets, 2};
  EXPECT_TRUE(check(ok).ok());
  EXPECT_FALSE(check(ok, true).ok());
  PromptLogprobsInput p = ok;
  p.sequence = 1;
  EXPECT_FALSE(check(p).ok());
  p = ok;
  p.first = 2;  // 2 + 3 > 4
  EXPECT_FALSE(check(p).ok());
  p = ok;
  p.num_top = kMaxPromptLogprobs + 1;
  EXPECT_FALSE(check(p).ok());
  const std::vector<int32_t> bad_targets = {5, 10, 7};
  p = ok;
  p.targets = bad_targets;
  EXPECT_FALSE(check(p).ok());
  seqs[0].num_draft_tokens = 1;  // drafts are not prompt tokens
  EXPECT_FALSE(check(ok).ok());
}

// ---- stories260K through the serving path -------------------------------------------------------

constexpr int32_t kBlockSize = 4;
constexpr int32_t kNumBlocks = 64;

// Scheduler + ModelRunner + CpuEngine as LlmInstance drives them, collecting each request's prompt
// logprobs by prompt token index.
class Serving {
 public:
  Serving(const LoadedModel& m, int32_t max_batched_tokens, int32_t num_blocks = kNumBlocks) {
    auto e = CpuEngine::create(m.config, m.weights);
    FERRY_CHECK(e.ok());
    engine_ = std::move(e).value();
    KvCacheOptions kv;
    kv.num_blocks = num_blocks;
    kv.block_size = kBlockSize;
    FERRY_CHECK(engine_->allocate_kv_cache(kv).ok());
    SchedulerConfig sc;
    sc.max_num_seqs = 4;
    sc.max_num_batched_tokens = max_batched_tokens;
    KvCacheConfig kc;
    kc.num_blocks = num_blocks;
    kc.block_size = kBlockSize;
    auto s = Scheduler::create(sc, kc);
    FERRY_CHECK(s.ok());
    scheduler_ = std::move(s).value();
  }

  void add(uint64_t id, std::vector<int32_t> prompt, int32_t max_tokens, int32_t num_prompt_logprobs) {
    SamplingParams p;
    p.temperature = 0;
    p.ignore_eos = true;
    p.max_tokens = max_tokens;
    p.num_prompt_logprobs = num_prompt_logprobs;
    requests_[id] = std::make_unique<RunnerRequest>(p, std::span<const int32_t>());
    scored_[id].assign(prompt.size(), SampleResult{});
    num_scored_[id].assign(prompt.size(), 0);
    NewRequest nr;
    nr.id = id;
    nr.prompt = std::move(prompt);
    nr.max_tokens = max_tokens;
    nr.skip_prefix_cache = num_prompt_logprobs >= 0;  // as LlmInstance::submit sets it
    FERRY_CHECK(scheduler_->add_request(std::move(nr)).ok());
  }

  // Runs steps until every request finished; `between` runs before each step (e.g. to add work).
  void run(const std::function<void(int step)>& between = {}) {
    for (int step = 0; scheduler_->has_unfinished(); ++step) {
      ASSERT_LT(step, 1000);
      if (between) between(step);
      const SchedulerOutput& out = scheduler_->schedule(SchedulerClock::now());
      if (out.scheduled.empty()) continue;
      std::vector<RunnerRequest*> rs;
      for (const ScheduledSequence& s : out.scheduled) rs.push_back(requests_.at(s.request_id).get());
      runner_.prepare(out, rs);
      ASSERT_TRUE(runner_.execute(*engine_).ok());
      for (size_t i = 0; i < out.scheduled.size(); ++i) {
        const uint64_t id = out.scheduled[i].request_id;
        auto rows = runner_.prompt_logprobs(i);
        const int32_t first = runner_.first_prompt_logprob(i);
        for (size_t j = 0; j < rows.size(); ++j) {
          scored_[id][first + j] = rows[j];
          ++num_scored_[id][first + j];
        }
      }
      scheduler_->update_from_output(runner_.results());
    }
  }

  Scheduler& scheduler() { return *scheduler_; }
  // Prompt token i's result (i >= 1) and how many times it was delivered.
  const SampleResult& scored(uint64_t id, size_t i) { return scored_[id][i]; }
  int num_scored(uint64_t id, size_t i) { return num_scored_[id][i]; }

 private:
  std::unique_ptr<CpuEngine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
  ModelRunner runner_;
  std::unordered_map<uint64_t, std::unique_ptr<RunnerRequest>> requests_;
  std::unordered_map<uint64_t, std::vector<SampleResult>> scored_;
  std::unordered_map<uint64_t, std::vector<int>> num_scored_;
};

// Logits of every prompt position from one forward pass of the whole prompt on the reference
// kernels: [prompt.size(), vocab].
ForwardOutput reference_logits(const LoadedModel& m, const std::vector<int32_t>& prompt) {
  auto e = CpuEngine::create(m.config, m.weights, {kernels::Backend::kReference});
  FERRY_CHECK(e.ok());
  KvCacheOptions kv;
  kv.num_blocks = kNumBlocks;
  kv.block_size = kBlockSize;
  FERRY_CHECK((*e)->allocate_kv_cache(kv).ok());
  std::vector<int32_t> pos(prompt.size()), table(kNumBlocks);
  std::iota(pos.begin(), pos.end(), 0);
  std::iota(table.begin(), table.end(), 0);
  SequenceInput in;
  in.query_len = static_cast<int32_t>(prompt.size());
  in.context_len = in.query_len;
  in.block_table = table;
  ForwardOutput out;
  FERRY_CHECK((*e)->forward(ForwardBatch{prompt, pos, std::span<const SequenceInput>(&in, 1), true}, &out).ok());
  return out;
}

// Tolerance on logprobs: the served path runs the optimized kernels over chunks, the reference
// plain loops over the whole prompt; both are fp32 (summation order differs by a few ulps of the
// logits, ~1e-5 on this model's logits of magnitude ~10).
constexpr double kTol = 2e-4;

void expect_matches_reference(Serving& s, uint64_t id, const std::vector<int32_t>& prompt, int32_t k,
                              const ForwardOutput& ref) {
  const auto vocab = static_cast<size_t>(ref.vocab);
  for (size_t i = 1; i < prompt.size(); ++i) {
    SCOPED_TRACE("prompt token " + std::to_string(i));
    ASSERT_EQ(s.num_scored(id, i), 1);
    const SampleResult& got = s.scored(id, i);
    const RowRef r = reference_row(ref.row(static_cast<int64_t>(i - 1)), vocab);
    EXPECT_EQ(got.token, prompt[i]);
    EXPECT_NEAR(got.logprob, r.logprobs[prompt[i]], kTol);
    // Rank: 1 + the tokens with a larger logit. Tokens within kTol of the prompt token's (the
    // untrained tail of this vocabulary has many equal logits) may count either way.
    int64_t surely_larger = 0, maybe_larger = 0;
    for (double l : r.logprobs) {
      surely_larger += l > r.logprobs[prompt[i]] + kTol ? 1 : 0;
      maybe_larger += l > r.logprobs[prompt[i]] - kTol ? 1 : 0;
    }
    EXPECT_GE(got.rank - 1, surely_larger);
    EXPECT_LE(got.rank - 1, maybe_larger);
    ASSERT_EQ(got.top_logprobs.size(), static_cast<size_t>(k));
    for (int32_t j = 0; j < k; ++j) {
      // The j-th most likely: the reference's j-th, or a token as likely within kTol.
      EXPECT_NEAR(got.top_logprobs[j].logprob, r.logprobs[r.order[j]], kTol);
      EXPECT_NEAR(r.logprobs[got.top_logprobs[j].token], r.logprobs[r.order[j]], kTol);
    }
  }
  EXPECT_EQ(s.num_scored(id, 0), 0);  // the first prompt token has no logprob
}

std::vector<int32_t> test_prompt(size_t n, int32_t salt) {
  std::vector<int32_t> p = {1};  // BOS
  for (size_t i = 1; i < n; ++i) p.push_back(static_cast<int32_t>((37 * i + 11 * salt) % 500 + 5));
  return p;
}

TEST(PromptLogprobsStories, ChunkedPrefillMatchesFullForward) {
  std::string why;
  auto m = load_stories(&why);
  if (!m) GTEST_SKIP() << why;
  const std::vector<int32_t> prompt = test_prompt(23, 1);
  Serving s(*m, /*max_batched_tokens=*/7);  // 23 tokens in 4 chunks (7, 7, 7, 2)
  s.add(1, prompt, 2, 5);
  s.run();
  expect_matches_reference(s, 1, prompt, 5, reference_logits(*m, prompt));
  EXPECT_EQ(s.scheduler().stats().kv.num_blocks_used, 0);
}

TEST(PromptLogprobsStories, CachedPrefixIsRecomputed) {
  std::string why;
  auto m = load_stories(&why);
  if (!m) GTEST_SKIP() << why;
  const std::vector<int32_t> first = test_prompt(21, 2);
  std::vector<int32_t> second(first.begin(), first.begin() + 16);  // 4 full blocks in common
  for (int32_t t : {7, 8, 9, 10, 11}) second.push_back(t);
  Serving s(*m, 64);
  s.add(1, first, 1, -1);
  s.run();
  const int64_t hits_before = s.scheduler().stats().kv.num_hit_tokens;
  s.add(2, second, 1, 3);
  s.run();
  // Its prefix was cached, yet it was computed whole: no hit, and every position scored.
  EXPECT_EQ(s.scheduler().stats().kv.num_hit_tokens, hits_before);
  expect_matches_reference(s, 2, second, 3, reference_logits(*m, second));
  // The same prompt without prompt logprobs does take the cached prefix (so the check above can fail).
  s.add(3, second, 1, -1);
  s.run();
  EXPECT_GT(s.scheduler().stats().kv.num_hit_tokens, hits_before);
  EXPECT_EQ(s.scheduler().stats().kv.num_blocks_used, 0);
}

TEST(PromptLogprobsStories, PreemptedPrefillScoresEachTokenOnce) {
  std::string why;
  auto m = load_stories(&why);
  if (!m) GTEST_SKIP() << why;
  // A pool of 8 blocks (32 tokens). Request 2 (5-token prompt, 14 generated) arrives first;
  // request 1 (24-token prompt) prefills beside it, 5 tokens a step, until both need 9 blocks
  // (step 5): the scheduler preempts the latest arrival, request 1, mid-prefill. It recomputes its
  // prompt from the start later; the tokens scored before must not be delivered twice.
  const std::vector<int32_t> long_prompt = test_prompt(24, 3);
  Serving s(*m, 6, /*num_blocks=*/8);
  s.add(2, test_prompt(5, 4), 14, -1);
  s.add(1, long_prompt, 1, 2);
  s.run();
  EXPECT_GT(s.scheduler().stats().num_preemptions, 0);
  expect_matches_reference(s, 1, long_prompt, 2, reference_logits(*m, long_prompt));
  EXPECT_EQ(s.scheduler().stats().kv.num_blocks_used, 0);
}

}  // namespace
}  // namespace ferry::llm
