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

TEST(SpeculationGate, ProposesTheDraftsWhoseChanceExceedsTheirCost) {
  SpeculationGate g;
  EXPECT_DOUBLE_EQ(g.acceptance(), 1.0);  // optimistic start: the full k
  EXPECT_EQ(g.num_drafts(4, 0.5), 4);
  g.record(4, 0);  // p = 0.7 / (0.7 + 0.3)
  EXPECT_NEAR(g.acceptance(), 0.7, 1e-12);
  EXPECT_EQ(g.num_drafts(4, 0.5), 1);  // 0.7 > 0.5 but 0.49 is not
  EXPECT_EQ(g.num_drafts(4, 0.3), 3);  // 0.7, 0.49, 0.343 > 0.3; 0.24 is not
  EXPECT_EQ(g.num_drafts(2, 0.3), 2);  // never more than asked
  EXPECT_EQ(g.num_drafts(4, 0.0), 4);  // free drafts: all of them, whatever p
  EXPECT_EQ(g.num_drafts(0, 0.0), 0);
  // All accepted counts no rejection: p rises back toward 1.
  g.record(3, 3);
  EXPECT_NEAR(g.acceptance(), (0.7 * 0.7 + 0.3 * 3) / (0.7 * 0.7 + 0.3 * 3 + 0.7 * 0.3), 1e-12);
  EXPECT_FALSE(g.paused());
}

TEST(SpeculationGate, PausesWhenNoDraftPaysAndProbesWithOneDraftAtDoublingIntervals) {
  SpeculationGate g;
  for (int i = 0; i < 6; ++i) g.record(4, 0);  // p = 0.7^6 / (0.7^6 + 1 - 0.7^6) ~ 0.12
  EXPECT_LT(g.acceptance(), 0.2);
  // Each pause: zeros, then a probe of one draft; the pauses double up to kMaxPause.
  std::vector<int> gaps;
  for (int round = 0; round < 7; ++round) {
    int zeros = 0;
    int32_t k = 0;
    while ((k = g.num_drafts(4, 0.5)) == 0) ++zeros;
    EXPECT_EQ(k, 1) << "round " << round;
    gaps.push_back(zeros);
    g.record(1, 0);  // the probe fails
  }
  EXPECT_EQ(gaps, (std::vector<int>{SpeculationGate::kFirstPause, 8, 16, 32, SpeculationGate::kMaxPause,
                                    SpeculationGate::kMaxPause, SpeculationGate::kMaxPause}));
  // One lucky probe does not resume a sequence far below the cost ...
  int zeros = 0;
  while (g.num_drafts(4, 0.5) == 0) ++zeros;
  g.record(1, 1);
  EXPECT_LT(g.acceptance(), 0.5);
  EXPECT_EQ(g.num_drafts(4, 0.5), 0);
  EXPECT_TRUE(g.paused());
  // ... a run of them does, and the next pause is short again.
  for (int i = 0; i < 6; ++i) {
    while (g.num_drafts(4, 0.5) == 0) {
    }
    g.record(1, 1);
  }
  EXPECT_GT(g.acceptance(), 0.5);
  EXPECT_GE(g.num_drafts(4, 0.5), 1);
  for (int i = 0; i < 8; ++i) g.record(4, 0);
  zeros = 0;
  while (g.num_drafts(4, 0.5) == 0) ++zeros;
  EXPECT_EQ(zeros, SpeculationGate::kFirstPause);
}

TEST(SpeculationGate, StepsWithoutDraftsChangeNothingAndZeroCostNeverPauses) {
  SpeculationGate g;
  g.record(0, 0);
  EXPECT_DOUBLE_EQ(g.acceptance(), 1.0);
  for (int i = 0; i < 20; ++i) g.record(4, 0);
  EXPECT_EQ(g.num_drafts(4, 0.0), 4);  // min_acceptance_rate 0: never pauses
  EXPECT_FALSE(g.paused());
  // A cost of 1 or more: no chance exceeds it, even p = 1.
  SpeculationGate sure;
  EXPECT_EQ(sure.num_drafts(4, 1.0), 0);
  EXPECT_TRUE(sure.paused());
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
