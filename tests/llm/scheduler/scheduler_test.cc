#include "backend/llm/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tests/llm/scheduler/fake_executor.h"

namespace ferry::llm {
namespace {

using testing::drive;
using testing::DriveResult;
using testing::FakeExecutor;
using testing::reference_output;

constexpr int32_t kBs = 16;

struct Fixture {
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<FakeExecutor> exec;
  SchedulerTime now = SchedulerTime{} + std::chrono::hours(1);

  Fixture(const SchedulerConfig& config, int32_t num_blocks, bool prefix_caching = true) {
    KvCacheConfig kv{num_blocks, kBs, prefix_caching, kv_cache_salt("fake", 1)};
    auto s = Scheduler::create(config, kv);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    sched = std::move(s.value());
    exec = std::make_unique<FakeExecutor>(num_blocks, kBs);
  }
  Status add(uint64_t id, std::vector<int32_t> prompt, int32_t max_tokens, uint32_t priority = 0,
             uint64_t timeout_us = 0) {
    NewRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.priority = priority;
    r.timeout_us = timeout_us;
    r.arrival_time = now;
    return sched->add_request(std::move(r));
  }
  DriveResult run(int64_t max_steps = 100000) {
    DriveResult r;
    drive(*sched, *exec, now, &r, max_steps);
    return r;
  }
  void expect_drained() const {
    EXPECT_FALSE(sched->has_unfinished());
    EXPECT_EQ(sched->stats().kv.num_blocks_used, 0);
    EXPECT_TRUE(sched->check_consistency().ok());
  }
};

std::vector<int32_t> random_prompt(std::mt19937& rng, int32_t len) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  for (int32_t& t : p) t = static_cast<int32_t>(rng() % testing::kVocab);
  return p;
}

// A random prompt whose greedy continuation does not stop before max_tokens: a request that
// surely runs max_tokens steps.
std::vector<int32_t> long_running_prompt(std::mt19937& rng, int32_t len, int32_t max_tokens) {
  for (;;) {
    std::vector<int32_t> p = random_prompt(rng, len);
    if (static_cast<int32_t>(reference_output(p, max_tokens).size()) == max_tokens) return p;
  }
}

SchedulerConfig base_config() {
  SchedulerConfig c;
  c.max_num_seqs = 16;
  c.max_num_batched_tokens = 64;
  return c;
}

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> max_tokens;
};

Workload make_workload(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  Workload w;
  for (int i = 0; i < n; ++i) {
    w.prompts.push_back(random_prompt(rng, 5 + static_cast<int32_t>(rng() % 90)));
    w.max_tokens.push_back(5 + static_cast<int32_t>(rng() % 40));
  }
  return w;
}

class PolicyTest : public ::testing::TestWithParam<SchedulingPolicy> {};

TEST_P(PolicyTest, ConcurrentRequestsMatchEachRunAlone) {
  const Workload w = make_workload(32, 1);
  SchedulerConfig config = base_config();
  config.policy = GetParam();
  Fixture f(config, 512);
  for (size_t i = 0; i < w.prompts.size(); ++i) ASSERT_TRUE(f.add(i, w.prompts[i], w.max_tokens[i]).ok());
  const DriveResult all = f.run();
  f.expect_drained();
  ASSERT_EQ(all.outputs.size(), w.prompts.size());
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    Fixture alone(config, 512);
    ASSERT_TRUE(alone.add(i, w.prompts[i], w.max_tokens[i]).ok());
    const DriveResult one = alone.run();
    alone.expect_drained();
    EXPECT_EQ(all.outputs.at(i), one.outputs.at(i)) << "request " << i;
    EXPECT_EQ(all.outputs.at(i), reference_output(w.prompts[i], w.max_tokens[i])) << "request " << i;
    EXPECT_EQ(all.reasons.at(i), one.reasons.at(i));
  }
  // Batching happened: far fewer steps than running them one after another.
  EXPECT_LT(all.num_steps, 32 * 5);
}

INSTANTIATE_TEST_SUITE_P(Policies, PolicyTest,
                         ::testing::Values(SchedulingPolicy::kFcfs, SchedulingPolicy::kPriority,
                                           SchedulingPolicy::kShortestPromptFirst),
                         [](const auto& info) { return std::string(scheduling_policy_name(info.param)); });

TEST(Scheduler, StepsRespectTokenBudgetAndChunkLongPrompts) {
  SchedulerConfig config = base_config();
  config.max_num_batched_tokens = 32;
  Fixture f(config, 256);
  std::mt19937 rng(3);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(f.add(i, random_prompt(rng, 8), 30).ok());
  ASSERT_TRUE(f.add(99, random_prompt(rng, 300), 5).ok());
  DriveResult r;
  int64_t chunks_of_long = 0;
  while (f.sched->has_unfinished()) {
    const SchedulerOutput& out = f.sched->schedule(f.now);
    EXPECT_LE(out.num_scheduled_tokens, 32);
    int32_t decodes = 0;
    for (const ScheduledSequence& s : out.scheduled) {
      if (s.request_id == 99 && !s.samples) ++chunks_of_long;
      if (s.num_new_tokens == 1 && s.request_id != 99) ++decodes;
    }
    // Once the short requests decode, they decode in every step, long prefill or not.
    if (f.sched->find(0) != nullptr && f.sched->find(0)->num_output_tokens() > 0) {
      EXPECT_EQ(static_cast<size_t>(decodes), f.sched->num_running() - (f.sched->find(99) ? 1 : 0));
    }
    for (const FinishedRequest& fin : f.sched->update_from_output(f.exec->run(out))) {
      r.outputs[fin.request_id] = std::vector<int32_t>(fin.request->output().begin(), fin.request->output().end());
    }
    ASSERT_TRUE(f.sched->check_consistency().ok()) << f.sched->check_consistency().to_string();
  }
  EXPECT_GE(chunks_of_long, 300 / 32);
  f.expect_drained();
}

TEST(Scheduler, LongPrefillThresholdCapsChunks) {
  SchedulerConfig config = base_config();
  config.max_num_batched_tokens = 100;
  config.long_prefill_token_threshold = 20;
  Fixture f(config, 64);
  std::mt19937 rng(4);
  ASSERT_TRUE(f.add(1, random_prompt(rng, 50), 3).ok());
  const SchedulerOutput& out = f.sched->schedule(f.now);
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_new_tokens, 20);
  EXPECT_FALSE(out.scheduled[0].samples);
  (void)f.sched->update_from_output(f.exec->run(out));
  f.run();
  f.expect_drained();
}

TEST(Scheduler, PrefixCacheHitComputesFewerTokensWithSameOutput) {
  std::mt19937 rng(5);
  const std::vector<int32_t> system = random_prompt(rng, 100);
  std::vector<int32_t> a = system, b = system;
  for (int i = 0; i < 7; ++i) a.push_back(1 + i), b.push_back(500 + i);
  int64_t computed[2] = {0, 0};
  for (bool caching : {false, true}) {
    Fixture f(base_config(), 128, caching);
    ASSERT_TRUE(f.add(1, a, 10).ok());
    DriveResult ra = f.run();
    const int64_t after_a = f.exec->num_computed_tokens();
    ASSERT_TRUE(f.add(2, b, 10).ok());
    DriveResult rb = f.run();
    computed[caching] = f.exec->num_computed_tokens() - after_a;
    EXPECT_EQ(ra.outputs.at(1), reference_output(a, 10));
    EXPECT_EQ(rb.outputs.at(2), reference_output(b, 10));
    if (caching) {
      EXPECT_EQ(f.sched->stats().kv.num_hit_tokens, 96);  // 6 full blocks of the shared 100 tokens
      EXPECT_GT(f.sched->stats().kv.prefix_hit_rate(), 0.4);
    }
    f.expect_drained();
  }
  EXPECT_EQ(computed[0] - computed[1], 96);
}

TEST(Scheduler, ConversationTurnReusesGeneratedTokens) {
  std::mt19937 rng(6);
  Fixture f(base_config(), 128);
  const std::vector<int32_t> turn1 = random_prompt(rng, 40);
  ASSERT_TRUE(f.add(1, turn1, 30).ok());
  DriveResult r1 = f.run();
  std::vector<int32_t> turn2 = turn1;
  turn2.insert(turn2.end(), r1.outputs.at(1).begin(), r1.outputs.at(1).end());
  for (int i = 0; i < 5; ++i) turn2.push_back(7);
  const int64_t hits_before = f.sched->stats().kv.num_hit_tokens;
  ASSERT_TRUE(f.add(2, turn2, 10).ok());
  DriveResult r2 = f.run();
  EXPECT_EQ(r2.outputs.at(2), reference_output(turn2, 10));
  // The new turn reuses the full blocks of prompt + answer (the answer's last token has no K/V).
  const int64_t reusable = (static_cast<int64_t>(turn1.size() + r1.outputs.at(1).size()) - 1) / kBs * kBs;
  EXPECT_EQ(f.sched->stats().kv.num_hit_tokens - hits_before, reusable);
  f.expect_drained();
}

TEST(Scheduler, SmallPoolPreemptsAndEveryRequestStillCompletesCorrectly) {
  const Workload w = make_workload(32, 2);
  for (bool caching : {true, false}) {
    SchedulerConfig config = base_config();
    Fixture f(config, 16, caching);  // 256 token slots for 32 requests of up to ~135 tokens
    for (size_t i = 0; i < w.prompts.size(); ++i) ASSERT_TRUE(f.add(i, w.prompts[i], w.max_tokens[i]).ok());
    const DriveResult r = f.run();
    f.expect_drained();
    EXPECT_GT(r.num_preempted, 0);
    EXPECT_EQ(f.sched->stats().num_preemptions, r.num_preempted);
    ASSERT_EQ(r.outputs.size(), w.prompts.size());
    for (size_t i = 0; i < w.prompts.size(); ++i) {
      EXPECT_EQ(r.outputs.at(i), reference_output(w.prompts[i], w.max_tokens[i])) << "request " << i;
    }
  }
}

TEST(Scheduler, PreemptsLowestPriorityLatestArrival) {
  SchedulerConfig config = base_config();
  Fixture f(config, 8);  // 128 slots
  std::mt19937 rng(8);
  ASSERT_TRUE(f.add(1, long_running_prompt(rng, 30, 60), 60, 3).ok());  // low, early
  ASSERT_TRUE(f.add(2, long_running_prompt(rng, 30, 60), 60, 3).ok());  // low, late: the victim
  ASSERT_TRUE(f.add(3, long_running_prompt(rng, 30, 60), 60, 1).ok());  // high
  uint64_t first_victim = 0;
  while (f.sched->has_unfinished() && first_victim == 0) {
    const SchedulerOutput& out = f.sched->schedule(f.now);
    if (!out.preempted.empty()) first_victim = out.preempted[0];
    (void)f.sched->update_from_output(f.exec->run(out));
  }
  EXPECT_EQ(first_victim, 2u);
  const SchedulerRequest* victim = f.sched->find(2);
  ASSERT_NE(victim, nullptr);
  EXPECT_EQ(victim->status, RequestStatus::kPreempted);
  EXPECT_EQ(victim->num_computed_tokens, 0);
  EXPECT_GT(victim->num_output_tokens(), 0);  // outputs kept for the resume
  f.run();
  f.expect_drained();
}

// Under saturation, high-priority requests get their first token before low ones queued earlier.
TEST(Scheduler, HighPriorityFirstUnderSaturation) {
  for (SchedulingPolicy policy : {SchedulingPolicy::kPriority, SchedulingPolicy::kFcfs}) {
    SchedulerConfig config = base_config();
    config.policy = policy;
    config.max_num_seqs = 2;
    Fixture f(config, 128);
    std::mt19937 rng(9);
    for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(f.add(i, long_running_prompt(rng, 10, 20), 20, 3).ok());
    DriveResult r;
    drive(*f.sched, *f.exec, f.now, &r, 1);  // the first two low ones start
    for (uint64_t i = 100; i < 103; ++i) ASSERT_TRUE(f.add(i, random_prompt(rng, 10), 20, 1).ok());
    drive(*f.sched, *f.exec, f.now, &r);
    f.expect_drained();
    ASSERT_EQ(r.first_token_order.size(), 9u);
    const std::vector<uint64_t> after_first_two(r.first_token_order.begin() + 2, r.first_token_order.end());
    if (policy == SchedulingPolicy::kPriority) {
      EXPECT_EQ(after_first_two, (std::vector<uint64_t>{100, 101, 102, 2, 3, 4, 5}));
    } else {
      EXPECT_EQ(after_first_two, (std::vector<uint64_t>{2, 3, 4, 5, 100, 101, 102}));
    }
  }
}

TEST(Scheduler, ShortestPromptFirstOrdersByLength) {
  SchedulerConfig config = base_config();
  config.policy = SchedulingPolicy::kShortestPromptFirst;
  config.max_num_seqs = 1;
  Fixture f(config, 128);
  std::mt19937 rng(10);
  ASSERT_TRUE(f.add(1, random_prompt(rng, 50), 3).ok());
  ASSERT_TRUE(f.add(2, random_prompt(rng, 40), 3).ok());
  ASSERT_TRUE(f.add(3, random_prompt(rng, 5), 3).ok());
  ASSERT_TRUE(f.add(4, random_prompt(rng, 20), 3).ok());
  DriveResult r = f.run();
  EXPECT_EQ(r.first_token_order, (std::vector<uint64_t>{3, 4, 2, 1}));
  f.expect_drained();
}

TEST(Scheduler, FullLevelQueueRejectsWithResourceExhausted) {
  SchedulerConfig config = base_config();
  config.max_num_seqs = 1;
  config.levels.resize(3);
  config.levels[1].max_queue_size = 2;
  Fixture f(config, 64);
  std::mt19937 rng(11);
  ASSERT_TRUE(f.add(1, random_prompt(rng, 5), 3).ok());
  ASSERT_TRUE(f.add(2, random_prompt(rng, 5), 3, 2).ok());
  const Status full = f.add(3, random_prompt(rng, 5), 3);
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("full"), std::string::npos);
  EXPECT_TRUE(f.add(4, random_prompt(rng, 5), 3, 1).ok());  // another level has room
  EXPECT_EQ(f.sched->stats().num_rejected_queue_full, 1);
  EXPECT_EQ(f.sched->find(3), nullptr);
  // Request 4 (level 0) runs first; the level stays full until request 1 leaves the queue.
  f.run(1);
  EXPECT_EQ(f.add(5, random_prompt(rng, 5), 3).code(), StatusCode::kResourceExhausted);
  while (f.sched->find(1)->status != RequestStatus::kRunning) f.run(1);
  EXPECT_TRUE(f.add(5, random_prompt(rng, 5), 3).ok());
  f.run();
  f.expect_drained();
}

TEST(Scheduler, QueueTimeoutRejectsWithDeadlineExceeded) {
  SchedulerConfig config = base_config();
  config.max_num_seqs = 1;
  config.levels.resize(3);
  config.levels[1].queue_timeout_ms = 10;
  Fixture f(config, 64);
  std::mt19937 rng(12);
  ASSERT_TRUE(f.add(1, long_running_prompt(rng, 5, 40), 40).ok());  // runs for 40 steps of 1 ms
  DriveResult r;
  drive(*f.sched, *f.exec, f.now, &r, 1);
  ASSERT_TRUE(f.add(2, random_prompt(rng, 5), 3).ok());             // level timeout 10 ms
  ASSERT_TRUE(f.add(3, random_prompt(rng, 5), 3, 1, 25'000).ok());  // own timeout 25 ms
  ASSERT_TRUE(f.add(4, random_prompt(rng, 5), 3, 1).ok());          // no timeout
  drive(*f.sched, *f.exec, f.now, &r);
  f.expect_drained();
  EXPECT_EQ(r.codes.at(2), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.reasons.at(2), RequestFinishReason::kTimeout);
  EXPECT_EQ(r.codes.at(3), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.codes.at(4), StatusCode::kOk);
  EXPECT_EQ(r.codes.at(1), StatusCode::kOk);
  EXPECT_TRUE(r.outputs.at(2).empty());
  EXPECT_EQ(f.sched->stats().num_timed_out, 2);
}

TEST(Scheduler, TimeoutKeepWaitingDelaysBehindItsLevel) {
  SchedulerConfig config = base_config();
  config.max_num_seqs = 1;
  config.levels.resize(3);
  config.levels[1].queue_timeout_ms = 5;
  config.levels[1].timeout_action = TimeoutAction::kKeepWaiting;
  Fixture f(config, 64);
  std::mt19937 rng(13);
  ASSERT_TRUE(f.add(1, long_running_prompt(rng, 5, 20), 20).ok());
  ASSERT_TRUE(f.add(2, random_prompt(rng, 5), 3).ok());  // times out while 1 runs
  DriveResult r;
  drive(*f.sched, *f.exec, f.now, &r, 10);
  ASSERT_TRUE(f.add(3, random_prompt(rng, 5), 3, 0, 1'000'000).ok());  // arrives later, not timed out
  drive(*f.sched, *f.exec, f.now, &r);
  f.expect_drained();
  EXPECT_EQ(r.first_token_order, (std::vector<uint64_t>{1, 3, 2}));
  EXPECT_EQ(r.codes.at(2), StatusCode::kOk);
  EXPECT_EQ(f.sched->stats().num_delayed, 1);
}

TEST(Scheduler, CancellationFreesBlocksAtNextSchedule) {
  SchedulerConfig config = base_config();
  config.max_num_seqs = 2;
  Fixture f(config, 64);
  std::mt19937 rng(14);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(f.add(i, long_running_prompt(rng, 40, 30), 30).ok());
  DriveResult r;
  drive(*f.sched, *f.exec, f.now, &r, 3);
  const int32_t used = f.sched->stats().kv.num_blocks_used;
  EXPECT_GT(used, 0);
  EXPECT_TRUE(f.sched->cancel(1));   // running
  EXPECT_TRUE(f.sched->cancel(3));   // waiting
  EXPECT_FALSE(f.sched->cancel(3));  // already cancelled
  EXPECT_FALSE(f.sched->cancel(42));
  EXPECT_EQ(f.sched->stats().kv.num_blocks_used, used);  // nothing happens until the next step
  const SchedulerOutput& out = f.sched->schedule(f.now);
  ASSERT_EQ(out.finished.size(), 2u);
  for (const FinishedRequest& fin : out.finished) {
    EXPECT_EQ(fin.status.code(), StatusCode::kCancelled);
    EXPECT_EQ(fin.reason, RequestFinishReason::kCancelled);
  }
  EXPECT_EQ(f.sched->find(1), nullptr);
  EXPECT_LT(f.sched->stats().kv.num_blocks_used - (f.sched->kv_cache().block_table(2).size()), static_cast<size_t>(used));
  ASSERT_TRUE(f.sched->check_consistency().ok());
  (void)f.sched->update_from_output(f.exec->run(out));
  drive(*f.sched, *f.exec, f.now, &r);
  f.expect_drained();
  EXPECT_EQ(f.sched->stats().num_cancelled, 2);
}

TEST(Scheduler, EngineErrorEndsTheRequestWithInternal) {
  Fixture f(base_config(), 64);
  std::mt19937 rng(15);
  ASSERT_TRUE(f.add(1, random_prompt(rng, 20), 10).ok());
  ASSERT_TRUE(f.add(2, random_prompt(rng, 20), 10).ok());
  const SchedulerOutput& out = f.sched->schedule(f.now);
  std::vector<SequenceResult> results = f.exec->run(out);
  results[0] = SequenceResult{SequenceResult::kNoToken, RequestFinishReason::kError, {}};
  const auto& done = f.sched->update_from_output(results);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status.code(), StatusCode::kInternal);
  ASSERT_TRUE(f.sched->check_consistency().ok()) << f.sched->check_consistency().to_string();
  f.run();
  f.expect_drained();
}

TEST(Scheduler, BatchingWindowOnlyWhenIdle) {
  SchedulerConfig config = base_config();
  config.max_queue_delay_ms = 5;
  config.max_num_seqs = 3;
  Fixture f(config, 64);
  std::mt19937 rng(16);
  ASSERT_TRUE(f.add(1, random_prompt(rng, 5), 20).ok());
  const SchedulerOutput& held = f.sched->schedule(f.now);
  EXPECT_TRUE(held.scheduled.empty());
  ASSERT_TRUE(held.has_wake_at);
  EXPECT_EQ(held.wake_at, f.now + std::chrono::milliseconds(5));
  f.now += std::chrono::milliseconds(2);
  ASSERT_TRUE(f.add(2, random_prompt(rng, 5), 20).ok());
  EXPECT_TRUE(f.sched->schedule(f.now).scheduled.empty());
  f.now += std::chrono::milliseconds(3);
  const SchedulerOutput& out = f.sched->schedule(f.now);
  EXPECT_EQ(out.scheduled.size(), 2u);  // both together
  (void)f.sched->update_from_output(f.exec->run(out));
  // While something runs, a newcomer joins at once.
  ASSERT_TRUE(f.add(3, random_prompt(rng, 5), 20).ok());
  const SchedulerOutput& next = f.sched->schedule(f.now);
  EXPECT_EQ(next.scheduled.size(), 3u);
  (void)f.sched->update_from_output(f.exec->run(next));
  f.run();
  f.expect_drained();
  // A full batch does not wait either.
  for (uint64_t i = 10; i < 13; ++i) ASSERT_TRUE(f.add(i, random_prompt(rng, 5), 2).ok());
  const SchedulerOutput& full = f.sched->schedule(f.now);
  EXPECT_EQ(full.scheduled.size(), 3u);
  (void)f.sched->update_from_output(f.exec->run(full));
  f.run();
  f.expect_drained();
}

TEST(Scheduler, AddRequestValidates) {
  SchedulerConfig config = base_config();
  config.max_model_len = 100;
  Fixture f(config, 4);  // 64 slots
  EXPECT_EQ(f.add(1, {}, 5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.add(1, {1, 2}, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.add(1, std::vector<int32_t>(90, 1), 20).code(), StatusCode::kInvalidArgument);  // > max_model_len
  EXPECT_EQ(f.add(1, std::vector<int32_t>(60, 1), 10).code(), StatusCode::kInvalidArgument);  // > the KV pool
  ASSERT_TRUE(f.add(1, {1, 2}, 5).ok());
  EXPECT_EQ(f.add(1, {1, 2}, 5).code(), StatusCode::kInvalidArgument);  // duplicate id
  f.run();
  f.expect_drained();
}

TEST(Scheduler, MaxModelLenEndsWithLength) {
  SchedulerConfig config = base_config();
  config.max_model_len = 30;
  Fixture f(config, 64);
  ASSERT_TRUE(f.add(1, std::vector<int32_t>(20, 3), 10).ok());
  DriveResult r = f.run();
  EXPECT_LE(r.outputs.at(1).size(), 10u);
  f.expect_drained();
}

TEST(SchedulerConfig, ValidatesAndMapsPriorities) {
  SchedulerConfig c;
  EXPECT_TRUE(c.validate().ok());
  EXPECT_EQ(c.level_of(0), 1);  // default: the middle of 3
  EXPECT_EQ(c.level_of(1), 0);
  EXPECT_EQ(c.level_of(2), 1);
  EXPECT_EQ(c.level_of(3), 2);
  EXPECT_EQ(c.level_of(99), 2);
  c.default_priority = 3;
  EXPECT_EQ(c.level_of(0), 2);
  c.num_priority_levels = 1;
  c.default_priority = 0;
  EXPECT_EQ(c.level_of(0), 0);
  EXPECT_EQ(c.level_of(7), 0);
  c.num_priority_levels = 4;
  EXPECT_EQ(c.level_of(0), 1);
  auto key_of_error = [](SchedulerConfig bad) { return bad.validate().message(); };
  SchedulerConfig bad;
  bad.max_num_seqs = 0;
  EXPECT_NE(key_of_error(bad).find("'max_num_seqs'"), std::string::npos);
  bad = {};
  bad.max_num_batched_tokens = 0;
  EXPECT_NE(key_of_error(bad).find("'max_num_batched_tokens'"), std::string::npos);
  bad = {};
  bad.max_num_seqs = 64;
  bad.max_num_batched_tokens = 32;
  EXPECT_NE(key_of_error(bad).find("'max_num_batched_tokens'"), std::string::npos);
  bad = {};
  bad.num_priority_levels = 0;
  EXPECT_NE(key_of_error(bad).find("'num_priority_levels'"), std::string::npos);
  bad = {};
  bad.levels.resize(2);
  EXPECT_NE(key_of_error(bad).find("'priority_levels'"), std::string::npos);
  bad = {};
  bad.levels.resize(3);
  bad.levels[2].queue_timeout_ms = -1;
  EXPECT_NE(key_of_error(bad).find("'queue_timeout_ms'"), std::string::npos);
  bad = {};
  bad.default_priority = 4;
  EXPECT_NE(key_of_error(bad).find("'default_priority'"), std::string::npos);
  KvCacheConfig kv;
  EXPECT_EQ(Scheduler::create(SchedulerConfig{}, kv).status().code(), StatusCode::kInvalidArgument);
}

TEST(Scheduler, RandomArrivalsCancelsAndPriorities) {
  std::mt19937 rng(17);
  SchedulerConfig config = base_config();
  config.max_num_seqs = 8;
  config.max_num_batched_tokens = 48;
  Fixture f(config, 24);
  std::map<uint64_t, std::pair<std::vector<int32_t>, int32_t>> submitted;
  DriveResult r;
  uint64_t next = 0;
  for (int round = 0; round < 200; ++round) {
    for (int k = static_cast<int>(rng() % 3); k > 0; --k) {
      // Shared prefixes so prefix hits and evictions happen.
      std::vector<int32_t> p(static_cast<size_t>(16 * (rng() % 3)), static_cast<int32_t>(rng() % 2));
      for (int32_t& t : random_prompt(rng, 1 + static_cast<int32_t>(rng() % 40))) p.push_back(t);
      const int32_t max_tokens = 1 + static_cast<int32_t>(rng() % 30);
      if (f.add(next, p, max_tokens, static_cast<uint32_t>(rng() % 4)).ok()) submitted[next] = {p, max_tokens};
      ++next;
    }
    if (rng() % 5 == 0 && next > 0) f.sched->cancel(rng() % next);
    drive(*f.sched, *f.exec, f.now, &r, 1);
  }
  drive(*f.sched, *f.exec, f.now, &r);
  f.expect_drained();
  int checked = 0;
  for (const auto& [id, req] : submitted) {
    ASSERT_TRUE(r.reasons.count(id)) << id;
    if (r.reasons.at(id) == RequestFinishReason::kCancelled) continue;
    EXPECT_EQ(r.outputs.at(id), reference_output(req.first, req.second)) << "request " << id;
    ++checked;
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(f.sched->stats().kv.num_hit_tokens, 0);
  EXPECT_GT(f.sched->stats().num_preemptions, 0);
}

}  // namespace
}  // namespace ferry::llm

// ---- speculative decoding -----------------------------------------------------------------------

namespace ferry::llm {
namespace {

// Proposes the request's true next k tokens (the fake model is deterministic), with one of them
// wrong in most steps, so runs are accepted whole, in part, or not at all.
testing::DraftProposer oracle_proposer(int32_t k) {
  auto step = std::make_shared<int64_t>(0);
  return [k, step](const SchedulerRequest& r) {
    std::vector<int32_t> context = r.tokens, drafts;
    for (int32_t j = 0; j < k; ++j) {
      drafts.push_back(testing::next_token(context));
      context.push_back(drafts.back());
    }
    const int64_t wrong = (*step)++ % (k + 2);  // k or k + 1: all right
    if (wrong < k) drafts[static_cast<size_t>(wrong)] = (drafts[static_cast<size_t>(wrong)] + 1) % testing::kVocab;
    return drafts;
  };
}

TEST(SchedulerSpeculative, OutputsEqualPlainDecodingWithPreemptionAndPrefixCaching) {
  const Workload w = make_workload(32, 2);
  for (bool caching : {true, false}) {
    Fixture f(base_config(), 16, caching);  // small pool: preemptions
    for (size_t i = 0; i < w.prompts.size(); ++i) ASSERT_TRUE(f.add(i, w.prompts[i], w.max_tokens[i]).ok());
    DriveResult r;
    drive(*f.sched, *f.exec, f.now, &r, 100000, 1, oracle_proposer(4));
    f.expect_drained();  // blocks back to zero, every invariant
    EXPECT_GT(r.num_preempted, 0);
    EXPECT_GT(f.exec->num_drafts(), 0);
    EXPECT_GT(f.exec->num_accepted(), 0);
    EXPECT_LT(f.exec->num_accepted(), f.exec->num_drafts()) << "some drafts were rejected";
    EXPECT_EQ(f.sched->stats().num_draft_tokens, f.exec->num_drafts());
    ASSERT_EQ(r.outputs.size(), w.prompts.size());
    for (size_t i = 0; i < w.prompts.size(); ++i) {
      EXPECT_EQ(r.outputs.at(i), reference_output(w.prompts[i], w.max_tokens[i])) << "request " << i;
    }
  }
}

TEST(SchedulerSpeculative, FewerStepsThanPlainDecodingWhenDraftsAreRight) {
  std::mt19937 rng(11);
  const std::vector<int32_t> prompt = long_running_prompt(rng, 20, 40);
  int64_t steps[2] = {0, 0};
  for (bool speculate : {false, true}) {
    Fixture f(base_config(), 64);
    ASSERT_TRUE(f.add(1, prompt, 40).ok());
    DriveResult r;
    drive(*f.sched, *f.exec, f.now, &r, 100000, 1, speculate ? oracle_proposer(3) : nullptr);
    EXPECT_EQ(r.outputs.at(1), reference_output(prompt, 40));
    steps[speculate] = r.num_steps;
    f.expect_drained();
  }
  EXPECT_LT(steps[1], steps[0]);
}

TEST(SchedulerSpeculative, DraftsAreBudgetedAndNeverCrowdOutAnotherDecode) {
  SchedulerConfig config = base_config();
  config.max_num_seqs = 4;
  config.max_num_batched_tokens = 7;  // 4 decodes + 3 spare tokens
  Fixture f(config, 64);
  std::mt19937 rng(12);
  for (uint64_t id = 0; id < 4; ++id) ASSERT_TRUE(f.add(id, long_running_prompt(rng, 5, 30), 30).ok());
  int checked = 0;
  for (int step = 0; step < 20 && f.sched->has_unfinished(); ++step) {
    int32_t decoding = 0;
    for (uint64_t id = 0; id < 4; ++id) {
      const SchedulerRequest* q = f.sched->find(id);
      if (q == nullptr || q->status != RequestStatus::kRunning || q->num_tokens() - q->num_computed_tokens != 1) continue;
      ++decoding;
      f.sched->set_draft_tokens(id, std::vector<int32_t>{1, 2, 3, 4});
    }
    const SchedulerOutput& out = f.sched->schedule(f.now);
    int32_t decodes = 0, drafts = 0;
    for (const ScheduledSequence& s : out.scheduled) {
      decodes += s.samples;
      drafts += s.num_draft_tokens;
      EXPECT_EQ(s.num_new_tokens, static_cast<int32_t>(s.new_tokens().size() + s.draft_tokens().size()));
    }
    EXPECT_LE(out.num_scheduled_tokens, 7);
    if (decoding == 4) {
      EXPECT_EQ(decodes, 4) << "every running decode gets its token";
      EXPECT_EQ(drafts, 3) << "the spare budget goes to drafts";
      ++checked;
    }
    ASSERT_TRUE(f.sched->check_consistency().ok()) << f.sched->check_consistency().to_string();
    (void)f.sched->update_from_output(f.exec->run(out));
    ASSERT_TRUE(f.sched->check_consistency().ok()) << f.sched->check_consistency().to_string();
  }
  EXPECT_GT(checked, 0);
}

TEST(SchedulerSpeculative, MaxTokensCapsTheDraftsAndRejectedSlotsAreFreed) {
  Fixture f(base_config(), 64);
  std::mt19937 rng(13);
  const std::vector<int32_t> prompt = long_running_prompt(rng, kBs - 1, 3);  // the first decode ends block 0
  ASSERT_TRUE(f.add(1, prompt, 3).ok());
  DriveResult r;
  drive(*f.sched, *f.exec, f.now, &r, 1);  // prefill: 1 output token
  const SchedulerRequest* q = f.sched->find(1);
  ASSERT_NE(q, nullptr);
  ASSERT_EQ(q->num_output_tokens(), 1);
  // 2 more tokens allowed: at most 1 draft (+ the bonus token).
  f.sched->set_draft_tokens(1, std::vector<int32_t>{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7});
  const SchedulerOutput& out = f.sched->schedule(f.now);
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_draft_tokens, 1);
  EXPECT_EQ(f.sched->kv_cache().block_table(1).size(), 2u) << "positions 15 and 16: two blocks";
  (void)f.sched->update_from_output(f.exec->run(out));  // draft 7 is (almost surely) wrong
  q = f.sched->find(1);
  if (q != nullptr && q->num_output_tokens() == 2) {
    EXPECT_EQ(f.sched->kv_cache().block_table(1).size(), 1u) << "the rejected slot's block went back";
    EXPECT_TRUE(f.sched->check_consistency().ok());
  }
  drive(*f.sched, *f.exec, f.now, &r, 100, 1, oracle_proposer(8));
  EXPECT_EQ(r.outputs.at(1), reference_output(prompt, 3));
  f.expect_drained();
}

}  // namespace
}  // namespace ferry::llm
