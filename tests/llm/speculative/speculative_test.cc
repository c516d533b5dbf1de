// The n-gram (prompt lookup) proposer, the per-sequence adaptive gate and the measured cost of
// drafts of speculative decoding.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/llm/speculative/ngram_proposer.h"
#include "backend/llm/speculative/speculation_cost.h"
#include "backend/llm/speculative/speculation_gate.h"

namespace ferry::llm {
namespace {

std::vector<int32_t> propose(const std::vector<int32_t>& tokens, int32_t min_n, int32_t max_n, int32_t k) {
  std::vector<int32_t> drafts = {99};  // cleared by every call
  ngram_propose(tokens, min_n, max_n, k, &drafts);
  return drafts;
}

TEST(NgramProposer, CopiesWhatFollowedTheLastOccurrenceOfTheSuffix) {
  // Suffix [7, 8] occurred at 1..2, followed by 9, 10, 11.
  const std::vector<int32_t> t = {1, 7, 8, 9, 10, 11, 3, 7, 8};
  EXPECT_EQ(propose(t, 2, 4, 3), (std::vector<int32_t>{9, 10, 11}));
  EXPECT_EQ(propose(t, 2, 4, 2), (std::vector<int32_t>{9, 10}));
  EXPECT_EQ(propose(t, 2, 4, 10), (std::vector<int32_t>{9, 10, 11, 3, 7, 8})) << "up to the sequence's end";
}

TEST(NgramProposer, PrefersTheLongestMatchThenTheMostRecent) {
  // [5, 8] occurs at 3..4 (followed by 40) and, longer, [4, 5, 8] at 0..2 (followed by 30).
  const std::vector<int32_t> t = {4, 5, 8, 30, 5, 8, 40, 0, 4, 5, 8};
  EXPECT_EQ(propose(t, 1, 3, 1), (std::vector<int32_t>{30}));
  EXPECT_EQ(propose(t, 1, 2, 1), (std::vector<int32_t>{40})) << "max_n 2: the most recent 2-gram";
  // Two equal 2-gram matches: the most recent wins.
  const std::vector<int32_t> u = {6, 6, 1, 2, 6, 6, 3, 4, 6, 6};
  EXPECT_EQ(propose(u, 2, 2, 2), (std::vector<int32_t>{3, 4}));
}

TEST(NgramProposer, NothingWhenNoSuffixOfAtLeastMinNRepeats) {
  EXPECT_TRUE(propose({1, 2, 3, 4, 5}, 1, 3, 4).empty());
  EXPECT_TRUE(propose({1, 2, 3, 1, 9}, 1, 3, 4).empty()) << "9 never occurred before";
  EXPECT_TRUE(propose({1, 2, 5, 2}, 2, 3, 4).empty()) << "only a 1-gram repeats";
  EXPECT_EQ(propose({1, 2, 5, 2}, 1, 3, 4), (std::vector<int32_t>{5, 2}));
  EXPECT_TRUE(propose({}, 1, 3, 4).empty());
  EXPECT_TRUE(propose({3}, 1, 3, 4).empty());
}

TEST(SpeculationGate, PausesOnLowAcceptanceAndBacksOffExponentially) {
  SpeculationGate g;
  const auto record = [&](int32_t proposed, int32_t accepted) { g.record(proposed, accepted, 0.3); };
  EXPECT_TRUE(g.should_propose());
  record(4, 4);
  EXPECT_FALSE(g.paused());
  record(4, 0);  // average 0.5
  EXPECT_FALSE(g.paused());
  record(4, 0);  // 0.25 < 0.3: pause
  ASSERT_TRUE(g.paused());
  int skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, SpeculationGate::kFirstPause);
  record(4, 0);  // the retry fails: twice as long
  skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, 2 * SpeculationGate::kFirstPause);
  record(4, 3);  // the retry succeeds: speculation resumes, the next pause is short again
  EXPECT_FALSE(g.paused());
  EXPECT_TRUE(g.should_propose());
  record(4, 0);
  record(4, 0);
  skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, SpeculationGate::kFirstPause);
}

TEST(SpeculationGate, PauseIsCappedAndStepsWithoutDraftsChangeNothing) {
  SpeculationGate g;
  const auto record = [&](int32_t proposed, int32_t accepted) { g.record(proposed, accepted, 0.5); };
  record(0, 0);  // nothing proposed: ignored
  EXPECT_FALSE(g.paused());
  record(2, 0);  // average 0.5: not below
  EXPECT_FALSE(g.paused());
  record(2, 0);  // 0.25
  EXPECT_TRUE(g.paused());
  int last = 0;
  for (int round = 0; round < 10; ++round) {
    last = 0;
    while (!g.should_propose()) ++last;
    record(2, 0);
  }
  EXPECT_EQ(last, SpeculationGate::kMaxPause);
}

}  // namespace
}  // namespace ferry::llm

namespace ferry::llm {
namespace {

TEST(SpeculationGate, TheThresholdOfEachResultDecides) {
  // 1 of 4 accepted, step after step: pays where a draft costs 10 % of a step, not where 30 %.
  SpeculationGate cheap, dear;
  for (int i = 0; i < 8; ++i) {
    cheap.record(4, 1, 0.1);
    dear.record(4, 1, 0.3);
  }
  EXPECT_FALSE(cheap.paused());
  EXPECT_TRUE(dear.paused());
  // Threshold 0: never pauses, even on nothing accepted; above 1: pauses whatever is accepted.
  SpeculationGate never, always;
  for (int i = 0; i < 8; ++i) never.record(4, 0, 0.0);
  EXPECT_FALSE(never.paused());
  always.record(4, 4, 1.5);
  EXPECT_TRUE(always.paused());
}

TEST(SpeculationCost, ThePriorUntilBothKindsOfStepsAreMeasured) {
  SpeculationCost c(0.3);
  EXPECT_EQ(c.break_even_rate(1), 0.3);
  c.record_step(1, 4, 0.013);  // drafts before any plain step: nothing to compare with
  EXPECT_EQ(c.break_even_rate(1), 0.3);
  c.record_step(1, 0, 0.010);
  EXPECT_EQ(c.break_even_rate(1), 0.3);
  EXPECT_DOUBLE_EQ(c.plain_seconds(1), 0.010);
  c.record_step(1, 4, 0.013);  // 4 drafts cost 30 % of a plain step: 7.5 % each
  EXPECT_NEAR(c.draft_cost(1), 0.075, 1e-12);
  EXPECT_NEAR(c.break_even_rate(1), 0.075, 1e-12);
  EXPECT_EQ(c.break_even_rate(2), 0.3);  // another batch size: measured on its own
}

TEST(SpeculationCost, BreakEvenScalesWithTheBatchAndFollowsTheAverages) {
  SpeculationCost c(0.3);
  // Batch 8, compute-bound: 8 x 4 drafts double the step (g = 1/32): an accepted draft must save
  // as much as a token of the batch costs, so break-even at g * 8 = 0.25.
  c.record_step(8, 0, 0.008);
  c.record_step(8, 32, 0.016);
  EXPECT_NEAR(c.break_even_rate(8), 0.25, 1e-12);
  // Each new step moves the averages by kWeight of the difference.
  c.record_step(8, 0, 0.009);
  EXPECT_NEAR(c.plain_seconds(8), 0.008 + SpeculationCost::kWeight * 0.001, 1e-15);
  const double before = c.draft_cost(8);
  c.record_step(8, 32, 0.018);
  const double g = (0.018 / c.plain_seconds(8) - 1.0) / 32;
  EXPECT_NEAR(c.draft_cost(8), before + SpeculationCost::kWeight * (g - before), 1e-15);
  // A step slower than a plain one by 2 plain steps per draft or more counts as 2 (a stall of the
  // machine moves the average by a bounded amount); one faster than a plain step as 0.
  SpeculationCost s(0.3);
  s.record_step(1, 0, 0.010);
  s.record_step(1, 1, 10.0);
  EXPECT_EQ(s.draft_cost(1), 2.0);
  EXPECT_EQ(s.break_even_rate(1), 2.0);
  SpeculationCost f(0.3);
  f.record_step(1, 0, 0.010);
  f.record_step(1, 4, 0.009);
  EXPECT_EQ(f.break_even_rate(1), 0.0);
  // Batches past kMaxBatch share its slot; nonsense is ignored.
  c.record_step(SpeculationCost::kMaxBatch + 10, 0, 0.5);
  EXPECT_EQ(c.plain_seconds(SpeculationCost::kMaxBatch), 0.5);
  c.record_step(0, 0, 1.0);
  c.record_step(3, 0, -1.0);
  c.record_step(3, 0, std::nan(""));
  EXPECT_EQ(c.plain_seconds(3), 0.0);
}

}  // namespace
}  // namespace ferry::llm
