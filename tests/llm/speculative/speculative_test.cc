// The n-gram (prompt lookup) proposer and the per-sequence adaptive gate of speculative decoding.
#include <gtest/gtest.h>

#include <vector>

#include "backend/llm/speculative/ngram_proposer.h"
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
  SpeculationGate g(0.3);
  EXPECT_TRUE(g.should_propose());
  g.record(4, 4);
  EXPECT_FALSE(g.paused());
  g.record(4, 0);  // average 0.5
  EXPECT_FALSE(g.paused());
  g.record(4, 0);  // 0.25 < 0.3: pause
  ASSERT_TRUE(g.paused());
  int skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, SpeculationGate::kFirstPause);
  g.record(4, 0);  // the retry fails: twice as long
  skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, 2 * SpeculationGate::kFirstPause);
  g.record(4, 3);  // the retry succeeds: speculation resumes, the next pause is short again
  EXPECT_FALSE(g.paused());
  EXPECT_TRUE(g.should_propose());
  g.record(4, 0);
  g.record(4, 0);
  skipped = 0;
  while (!g.should_propose()) ++skipped;
  EXPECT_EQ(skipped, SpeculationGate::kFirstPause);
}

TEST(SpeculationGate, PauseIsCappedAndStepsWithoutDraftsChangeNothing) {
  SpeculationGate g(0.5);
  g.record(0, 0);  // nothing proposed: ignored
  EXPECT_FALSE(g.paused());
  g.record(2, 0);  // average 0.5: not below
  EXPECT_FALSE(g.paused());
  g.record(2, 0);  // 0.25
  EXPECT_TRUE(g.paused());
  int last = 0;
  for (int round = 0; round < 10; ++round) {
    last = 0;
    while (!g.should_propose()) ++last;
    g.record(2, 0);
  }
  EXPECT_EQ(last, SpeculationGate::kMaxPause);
}

}  // namespace
}  // namespace ferry::llm
