// ModelRunner against a real Scheduler and a fake Engine that records what it is given and
// "samples" the last query token + 1: the batch layout, which sequences sample, the step-thread
// stops (stop token ids, EOS, max_tokens), engine failure, and no allocation per warm step. With
// speculative drafts the fake verifies like an engine: row j's token is the query token before it
// + 1, and the run stops at the first draft that differs.
// GCC flags the replaced operator new/delete pair (malloc/free) as mismatched once inlined.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <unordered_map>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "backend/llm/model_runner.h"

// Counts heap allocations while g_count_allocs is set (the warm-step test).
static std::atomic<bool> g_count_allocs{false};
static std::atomic<int64_t> g_num_allocs{0};

void* operator new(std::size_t n) {
  if (g_count_allocs.load(std::memory_order_relaxed)) g_num_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace ferry::llm {
namespace {

constexpr int32_t kVocab = 100;

class FakeEngine : public Engine {
 public:
  struct Seen {
    std::vector<int32_t> token_ids, positions;
    std::vector<SequenceInput> seqs;
    std::vector<std::vector<int32_t>> block_tables;
    std::vector<bool> samples;
    std::vector<size_t> num_outputs;
  };

  const ModelConfig& config() const override { return config_; }
  int64_t kv_block_bytes(int64_t, kernels::KvCacheDType) const override { return 1; }
  Result<int64_t> allocate_kv_cache(const KvCacheOptions& o) override { return o.num_blocks; }
  int64_t num_kv_blocks() const override { return 0; }

  Status step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool, StepOutput* out) override {
    if (record) {
      Seen s;
      s.token_ids.assign(batch.token_ids.begin(), batch.token_ids.end());
      s.positions.assign(batch.positions.begin(), batch.positions.end());
      s.seqs.assign(batch.sequences.begin(), batch.sequences.end());
      for (const SequenceInput& in : batch.sequences) {
        s.block_tables.emplace_back(in.block_table.begin(), in.block_table.end());
      }
      for (const SamplingSequence& ss : sampling) {
        s.samples.push_back(ss.params != nullptr);
        s.num_outputs.push_back(ss.output_ids.size());
      }
      seen.push_back(std::move(s));
    }
    if (fail) return Status::Internal("fake failure");
    const size_t n = batch.sequences.size();
    out->samples.resize(n);
    out->extra_begin.assign(n, 0);
    out->num_extra.assign(n, 0);
    out->extra.clear();
    for (size_t i = 0; i < n; ++i) {
      const SequenceInput& in = batch.sequences[i];
      const int32_t k = in.num_draft_tokens;
      const int32_t first = in.query_start + in.query_len - 1 - k;  // the last known token
      SampleResult& r = out->samples[i];
      r.token = sampling[i].params != nullptr ? (batch.token_ids[first] + 1) % kVocab : -1;
      // A constrained sequence gets the lowest id its mask allows (as a sampler that honours it).
      std::span<const uint32_t> mask = sampling[i].allowed_tokens;
      if (!mask.empty()) {
        r.token = -1;
        for (int32_t t = 0; t < kVocab && r.token < 0; ++t) {
          if ((mask[static_cast<size_t>(t) / 32] >> (t % 32)) & 1u) r.token = t;
        }
        if (r.token < 0) r.token = 0;  // nothing allowed: a sampler picks something anyway
      }
      out->extra_begin[i] = static_cast<int32_t>(out->extra.size());
      for (int32_t j = 0; j < k; ++j) {  // draft j accepted iff it equals the token sampled before it
        const int32_t prev = j == 0 ? r.token : out->extra.back().token;
        if (batch.token_ids[first + 1 + j] != prev) break;
        SampleResult e;
        e.token = (prev + 1) % kVocab;
        out->extra.push_back(e);
        ++out->num_extra[i];
      }
    }
    return Status::Ok();
  }

  bool record = true;
  bool fail = false;
  std::vector<Seen> seen;

 private:
  ModelConfig config_;
};

class ModelRunnerTest : public ::testing::Test {
 protected:
  void make_scheduler(int32_t max_batched_tokens) {
    SchedulerConfig sc;
    sc.max_num_seqs = 8;
    sc.max_num_batched_tokens = max_batched_tokens;
    KvCacheConfig kv;
    kv.num_blocks = 64;
    kv.block_size = 4;
    auto s = Scheduler::create(sc, kv);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    scheduler_ = std::move(s).value();
  }
  void add(uint64_t id, std::vector<int32_t> prompt, SamplingParams params, std::vector<int32_t> eos = {}) {
    params.temperature = 0;
    NewRequest nr;
    nr.id = id;
    nr.prompt = std::move(prompt);
    nr.max_tokens = params.max_tokens;
    Status st = scheduler_->add_request(std::move(nr));
    ASSERT_TRUE(st.ok()) << st.to_string();
    requests_.emplace(id, std::make_unique<RunnerRequest>(params, eos));
  }
  // One step: schedule, prepare, execute, update. Returns the scheduler's finished list.
  std::vector<FinishedRequest> step() {
    const SchedulerOutput& out = scheduler_->schedule(SchedulerClock::now());
    ptrs_.clear();
    for (const ScheduledSequence& s : out.scheduled) ptrs_.push_back(requests_.at(s.request_id).get());
    scheduled_.assign(out.scheduled.begin(), out.scheduled.end());
    runner_.prepare(out, ptrs_);
    last_status_ = runner_.execute(engine_);
    return scheduler_->update_from_output(runner_.results());
  }

  FakeEngine engine_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unordered_map<uint64_t, std::unique_ptr<RunnerRequest>> requests_;
  std::vector<RunnerRequest*> ptrs_;
  std::vector<ScheduledSequence> scheduled_;
  ModelRunner runner_;
  Status last_status_;
};

TEST_F(ModelRunnerTest, BatchFollowsTheSchedulerAndOnlyPromptEndsSample) {
  make_scheduler(8);
  SamplingParams p;
  p.max_tokens = 5;
  std::vector<int32_t> long_prompt;
  for (int32_t i = 0; i < 10; ++i) long_prompt.push_back(10 + i);
  add(1, {1, 2, 3}, p);
  add(2, long_prompt, p);  // 10 tokens with 5 left in the budget: a chunk that does not sample
  step();
  ASSERT_TRUE(last_status_.ok());
  ASSERT_EQ(engine_.seen.size(), 1u);
  const auto& s = engine_.seen[0];
  ASSERT_EQ(s.seqs.size(), 2u);
  EXPECT_EQ(s.token_ids, (std::vector<int32_t>{1, 2, 3, 10, 11, 12, 13, 14}));
  EXPECT_EQ(s.positions, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 3, 4}));
  EXPECT_EQ(s.seqs[0].query_start, 0);
  EXPECT_EQ(s.seqs[0].query_len, 3);
  EXPECT_EQ(s.seqs[0].context_len, 3);
  EXPECT_EQ(s.seqs[1].query_start, 3);
  EXPECT_EQ(s.seqs[1].query_len, 5);
  EXPECT_EQ(s.seqs[1].context_len, 5);
  EXPECT_EQ(s.block_tables[0].size(), 1u);  // 3 tokens in blocks of 4
  EXPECT_EQ(s.block_tables[1].size(), 2u);  // 5 tokens
  EXPECT_EQ(s.samples, (std::vector<bool>{true, false}));
  auto results = runner_.results();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].token, 4);
  EXPECT_EQ(results[0].finish, RequestFinishReason::kNone);
  EXPECT_EQ(results[1].token, SequenceResult::kNoToken);
  EXPECT_EQ(runner_.num_sampled(), 1);

  // Next step: request 1 decodes its sampled token at position 3; request 2's last chunk samples.
  step();
  const auto& t = engine_.seen[1];
  ASSERT_EQ(t.seqs.size(), 2u);
  EXPECT_EQ(t.token_ids, (std::vector<int32_t>{4, 15, 16, 17, 18, 19}));
  EXPECT_EQ(t.positions, (std::vector<int32_t>{3, 5, 6, 7, 8, 9}));
  EXPECT_EQ(t.num_outputs, (std::vector<size_t>{1, 0}));  // the sampler sees the history
  EXPECT_EQ(t.samples, (std::vector<bool>{true, true}));
  EXPECT_EQ(runner_.results()[1].token, 20);
}

TEST_F(ModelRunnerTest, StopTokenEosAndMaxTokensFinishOnTheStepThread) {
  make_scheduler(64);
  SamplingParams stop_id;
  stop_id.max_tokens = 10;
  stop_id.stop_token_ids = {6};  // the fake samples 5 then 6
  add(1, {3, 4}, stop_id);
  SamplingParams eos;
  eos.max_tokens = 10;
  add(2, {40}, eos, {41});  // EOS 41 is sampled first
  SamplingParams ignore = eos;
  ignore.ignore_eos = true;
  add(3, {40}, ignore, {41});
  SamplingParams len;
  len.max_tokens = 2;
  add(4, {60}, len);

  auto done = step();  // samples 5, 41, 41, 61
  std::vector<RequestFinishReason> f;
  for (const auto& r : runner_.results()) f.push_back(r.finish);
  EXPECT_EQ(f, (std::vector<RequestFinishReason>{RequestFinishReason::kNone, RequestFinishReason::kStop,
                                                 RequestFinishReason::kNone, RequestFinishReason::kNone}));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].request_id, 2u);

  step();  // samples 6 (stop id), 42, 62 (second token: length)
  f.clear();
  for (const auto& r : runner_.results()) f.push_back(r.finish);
  ASSERT_EQ(scheduled_.size(), 3u);
  EXPECT_EQ(scheduled_[0].request_id, 1u);
  EXPECT_EQ(f, (std::vector<RequestFinishReason>{RequestFinishReason::kStop, RequestFinishReason::kNone,
                                                 RequestFinishReason::kLength}));
}

TEST_F(ModelRunnerTest, EngineFailureFailsEverySequenceOfTheStep) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 4;
  add(1, {1}, p);
  add(2, {2, 3}, p);
  engine_.fail = true;
  auto done = step();
  EXPECT_FALSE(last_status_.ok());
  for (const auto& r : runner_.results()) EXPECT_EQ(r.finish, RequestFinishReason::kError);
  EXPECT_EQ(runner_.num_sampled(), 0);
  EXPECT_EQ(done.size(), 2u);
}

TEST_F(ModelRunnerTest, WarmStepsAllocateNothing) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 40;  // outlives the 23 steps below; 4 x 43 tokens fit the 256-token pool
  for (uint64_t id = 1; id <= 4; ++id) add(id, {static_cast<int32_t>(id), 7, 8}, p);
  engine_.record = false;
  for (int i = 0; i < 3; ++i) step();  // warm: the buffers reach their size
  // The counter sees allocations (else the check below would pass on anything).
  g_num_allocs = 0;
  g_count_allocs = true;
  auto probe = std::make_unique<std::vector<int32_t>>(16);
  g_count_allocs = false;
  ASSERT_GE(g_num_allocs.load(), 1);
  int64_t allocs = 0;
  for (int i = 0; i < 20; ++i) {
    const SchedulerOutput& out = scheduler_->schedule(SchedulerClock::now());
    ptrs_.clear();
    for (const ScheduledSequence& s : out.scheduled) ptrs_.push_back(requests_.at(s.request_id).get());
    g_num_allocs = 0;
    g_count_allocs = true;
    runner_.prepare(out, ptrs_);
    Status st = runner_.execute(engine_);
    g_count_allocs = false;
    allocs += g_num_allocs;
    ASSERT_TRUE(st.ok());
    scheduler_->update_from_output(runner_.results());
  }
  EXPECT_EQ(allocs, 0);
}

TEST_F(ModelRunnerTest, DraftsAreQueriedAfterTheLastTokenAndTheRunIsCutAtStopsAndMaxTokens) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 20;
  add(1, {10}, p);  // emits 11, 12, ...
  SamplingParams stop = p;
  stop.stop_token_ids = {33};
  add(2, {30}, stop);  // emits 31, 32, then the stop token 33
  SamplingParams len = p;
  len.max_tokens = 3;
  add(3, {50}, len);  // 51, 52, 53: three tokens at most
  step();  // prefills: 11, 31, 51
  // Request 1: drafts 12, 13, 99 (the third wrong); request 2: 32, 33, 34; request 3: 52, 53, 54
  // (the scheduler cuts them to 1: max_tokens leaves room for two more tokens).
  scheduler_->set_draft_tokens(1, std::vector<int32_t>{12, 13, 99});
  scheduler_->set_draft_tokens(2, std::vector<int32_t>{32, 33, 34});
  scheduler_->set_draft_tokens(3, std::vector<int32_t>{52, 53, 54});
  auto done = step();
  const auto& seen = engine_.seen.back();
  EXPECT_EQ(seen.token_ids, (std::vector<int32_t>{11, 12, 13, 99, 31, 32, 33, 34, 51, 52}));
  EXPECT_EQ(seen.positions, (std::vector<int32_t>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2}));
  ASSERT_EQ(seen.seqs.size(), 3u);
  EXPECT_EQ(seen.seqs[0].num_draft_tokens, 3);
  EXPECT_EQ(seen.seqs[2].num_draft_tokens, 1);
  EXPECT_EQ(seen.seqs[2].context_len, 3);
  auto results = runner_.results();
  // 1: 12 and 13 accepted, 99 rejected: 12, 13 and the correction 14.
  EXPECT_EQ(results[0].token, 12);
  EXPECT_EQ(std::vector<int32_t>(results[0].extra_tokens.begin(), results[0].extra_tokens.end()),
            (std::vector<int32_t>{13, 14}));
  EXPECT_EQ(runner_.num_emitted(0), 3);
  EXPECT_EQ(runner_.num_drafts(0), 3);
  EXPECT_EQ(runner_.num_accepted(0), 2);
  EXPECT_EQ(runner_.sample(0, 2).token, 14);
  // 2: all drafts accepted (32, 33, 34 and the bonus 35), but 33 is a stop token: cut after it.
  EXPECT_EQ(results[1].token, 32);
  EXPECT_EQ(std::vector<int32_t>(results[1].extra_tokens.begin(), results[1].extra_tokens.end()),
            (std::vector<int32_t>{33}));
  EXPECT_EQ(results[1].finish, RequestFinishReason::kStop);
  EXPECT_EQ(runner_.num_accepted(1), 3);
  // 3: 52 accepted, 53 the bonus: three tokens in all, finished by length.
  EXPECT_EQ(results[2].token, 52);
  EXPECT_EQ(std::vector<int32_t>(results[2].extra_tokens.begin(), results[2].extra_tokens.end()),
            (std::vector<int32_t>{53}));
  EXPECT_EQ(results[2].finish, RequestFinishReason::kLength);
  EXPECT_EQ(runner_.num_sampled(), 3 + 2 + 2);
  ASSERT_EQ(done.size(), 2u);
  const SchedulerRequest* r1 = scheduler_->find(1);
  ASSERT_NE(r1, nullptr);
  EXPECT_EQ(std::vector<int32_t>(r1->output().begin(), r1->output().end()), (std::vector<int32_t>{11, 12, 13, 14}));
  EXPECT_EQ(r1->num_computed_tokens, 4) << "the accepted positions: 10, 11, 12, 13";
  EXPECT_TRUE(scheduler_->check_consistency().ok()) << scheduler_->check_consistency().to_string();
}

}  // namespace
}  // namespace ferry::llm

namespace ferry::llm {
namespace {

// Tokens 0..25 are "a".."z", 26 is "ab", 99 is the end id; the rest have no bytes.
std::shared_ptr<const grammar::TokenVocabulary> letter_vocab() {
  std::vector<std::string> bytes(kVocab);
  for (int32_t i = 0; i < 26; ++i) bytes[static_cast<size_t>(i)] = std::string(1, static_cast<char>('a' + i));
  bytes[26] = "ab";
  return grammar::TokenVocabulary::build(std::move(bytes), {99});
}

std::unique_ptr<grammar::Matcher> matcher_for(const char* gbnf) {
  auto g = grammar::compile_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  if (!g.ok()) return nullptr;
  return std::make_unique<grammar::Matcher>(g.value(), letter_vocab());
}

TEST_F(ModelRunnerTest, GrammarMaskDecidesTheTokenAndACompleteValueStops) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 10;
  add(1, {3, 4}, p, {99});
  requests_.at(1)->matcher = matcher_for("root ::= \"abc\"");
  add(2, {50}, p);  // unconstrained beside it: the fake's usual last token + 1
  std::vector<int32_t> tokens;
  RequestFinishReason finish = RequestFinishReason::kNone;
  for (int i = 0; i < 5 && finish == RequestFinishReason::kNone; ++i) {
    step();
    ASSERT_TRUE(last_status_.ok());
    ASSERT_EQ(scheduled_[0].request_id, 1u);
    tokens.push_back(runner_.results()[0].token);
    finish = runner_.results()[0].finish;
    EXPECT_EQ(engine_.seen.back().samples.size(), 2u);
    EXPECT_EQ(runner_.results()[1].token, 51 + i);  // the mask is per sequence
  }
  // The lowest allowed id each step: "a" (0, below "ab" 26), "b", "c"; then the value is complete.
  EXPECT_EQ(tokens, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(finish, RequestFinishReason::kStop);
}

TEST_F(ModelRunnerTest, GrammarThatAllowsNoTokenEndsWithoutAToken) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 10;
  add(1, {3, 4}, p, {99});
  requests_.at(1)->matcher = matcher_for("root ::= \"0\"");  // no token has the byte '0'
  auto done = step();
  ASSERT_TRUE(last_status_.ok());
  EXPECT_EQ(runner_.results()[0].token, SequenceResult::kNoToken);
  EXPECT_EQ(runner_.results()[0].finish, RequestFinishReason::kStop);
  EXPECT_EQ(runner_.num_sampled(), 0);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].reason, RequestFinishReason::kStop);
}

TEST_F(ModelRunnerTest, GrammarThatCanEndButGoOnRunsToMaxTokensWithLength) {
  make_scheduler(64);
  SamplingParams p;
  p.max_tokens = 10;
  p.ignore_eos = true;  // so the end id reaches the matcher instead of the stop-token check
  add(1, {3, 4}, p, {99});
  // One or more "a"s: after the first the value could end (id 99 allowed), but more "a" may follow,
  // so the runner must not stop it; the fake takes the lowest id, "a" (0), until max_tokens.
  requests_.at(1)->matcher = matcher_for("root ::= \"a\"+");
  std::vector<int32_t> tokens;
  RequestFinishReason finish = RequestFinishReason::kNone;
  while (finish == RequestFinishReason::kNone && tokens.size() < 20) {
    step();
    tokens.push_back(runner_.results()[0].token);
    finish = runner_.results()[0].finish;
  }
  EXPECT_EQ(tokens, std::vector<int32_t>(10, 0));
  EXPECT_EQ(finish, RequestFinishReason::kLength);
}

}  // namespace
}  // namespace ferry::llm
