// Sampler::verify, speculative decoding's verification: greedy runs accept exactly the prefix that
// equals the target's arg max; seeded sampled runs emit the very tokens sequential sampling emits;
// and, over many seeds on a 5-token vocabulary, the joint law of two emitted tokens is the
// target's (chi-square), whether the point-mass draft is likely, unlikely or impossible.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/llm/sampling/sampler.h"

namespace ferry::llm {
namespace {

constexpr int32_t kVocab = 5;

std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> v;
  for (double p : probs) v.push_back(p > 0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return v;
}

// A row per position: rows[j] as one [k + 1, vocab] buffer.
std::vector<float> stack(const std::vector<std::vector<float>>& rows) {
  std::vector<float> all;
  for (const auto& r : rows) all.insert(all.end(), r.begin(), r.end());
  return all;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(SpeculativeVerify, GreedyAcceptsTheLongestPrefixEqualToTheArgmax) {
  const std::vector<std::vector<float>> rows = {
      {0.1f, 2.0f, 0.3f, 0.0f, -1.0f},  // argmax 1
      {0.0f, 0.1f, 0.2f, 3.0f, 0.0f},   // argmax 3
      {5.0f, 0.1f, 0.2f, 0.0f, 0.0f},   // argmax 0
      {0.0f, 0.0f, 4.0f, 0.0f, 0.0f},   // argmax 2
  };
  const std::vector<float> logits = stack(rows);
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(kVocab);
  SamplingSequence seq{&p, {}, {}, nullptr, {}};
  std::vector<SampleResult> out(4);
  struct Case {
    std::vector<int32_t> drafts;
    std::vector<int32_t> emitted;
  };
  for (const Case& c : std::vector<Case>{{{1, 3, 0}, {1, 3, 0, 2}},  // all accepted: + bonus
                                         {{1, 3, 4}, {1, 3, 0}},     // third rejected: corrected
                                         {{2, 3, 0}, {1}},           // first rejected
                                         {{1, 4, 0}, {1, 3}}}) {
    const int32_t m = sampler.verify(std::span<const float>(logits).first(kVocab * (c.drafts.size() + 1)), c.drafts,
                                     seq, out);
    ASSERT_EQ(m, static_cast<int32_t>(c.emitted.size()));
    for (int32_t j = 0; j < m; ++j) {
      EXPECT_EQ(out[j].token, c.emitted[j]) << j;
      EXPECT_EQ(out[j].token, argmax(rows[j])) << "every emitted token is that row's arg max";
    }
  }
}

TEST(SpeculativeVerify, PenaltiesSeeTheAcceptedDraftsAsGenerated) {
  // Row 1's arg max is token 1 only if the accepted draft (token 1) is not penalized; with a
  // repetition penalty it must drop below token 2, as sequential decoding would have it.
  const std::vector<float> logits = stack({{0.0f, 3.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 2.0f, 1.5f, 0.0f, 0.0f}});
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  Sampler sampler(kVocab);
  std::vector<SampleResult> out(2);
  const std::vector<int32_t> drafts = {1};
  ASSERT_EQ(sampler.verify(logits, drafts, {&p, {}, {}, nullptr, {}}, out), 2);
  EXPECT_EQ(out[0].token, 1);
  EXPECT_EQ(out[1].token, 2);
  // The sequential path: sample row 1 with token 1 already generated.
  const std::vector<int32_t> generated = {1};
  SampleResult seq_out;
  sampler.sample(std::span<const float>(logits).subspan(kVocab, kVocab), {&p, {}, generated, nullptr, {}}, seq_out);
  EXPECT_EQ(seq_out.token, out[1].token);
}

TEST(SpeculativeVerify, SeededSampledRunsEmitWhatSequentialSamplingEmits) {
  // The same rows sampled one by one with the same seed: identical tokens, whichever drafts.
  const std::vector<std::vector<float>> rows = {
      logits_for({0.5, 0.2, 0.1, 0.1, 0.1}), logits_for({0.1, 0.6, 0.1, 0.1, 0.1}),
      logits_for({0.3, 0.3, 0.2, 0.1, 0.1}), logits_for({0.2, 0.2, 0.2, 0.2, 0.2})};
  const std::vector<float> logits = stack(rows);
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 4;
  p.seed = 1;
  Sampler sampler(kVocab);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<int32_t> drafts = {static_cast<int32_t>(seed % 2), 1, static_cast<int32_t>(seed % 3)};
    SamplingRng spec_rng(seed), seq_rng(seed);
    std::vector<SampleResult> out(4);
    const int32_t m = sampler.verify(logits, drafts, {&p, {}, {}, &spec_rng, {}}, out);
    for (int32_t j = 0; j < m; ++j) {
      SampleResult one;
      sampler.sample(rows[j], {&p, {}, {}, &seq_rng, {}}, one);
      ASSERT_EQ(out[j].token, one.token) << "seed " << seed << " position " << j;
    }
    EXPECT_EQ(spec_rng.next_u64(), seq_rng.next_u64()) << "one draw per emitted token";
  }
}

// The target: p1 for the first token, p2(. | x1) for the second. The n-gram draft proposes d1, d2
// (a point mass). Each trial verifies [d1, d2] against rows [p1, p2(.|d1), anything]; when the
// first draft is rejected, the second token comes from the next (non-speculative) step, sampled
// from p2(. | x1) with the same RNG. The joint law of (x1, x2) must be p1(x1) p2(x2 | x1).
double chi_square_of_two_tokens(int32_t d1, int32_t d2, const SamplingParams& p, int n) {
  const std::vector<double> p1 = {0.35, 0.25, 0.2, 0.15, 0.05};
  auto p2 = [](int32_t x) {
    std::vector<double> r(kVocab, 0.0);
    for (int32_t y = 0; y < kVocab; ++y) r[y] = 1.0 + ((x + 2 * y) % kVocab);
    double sum = 0;
    for (double v : r) sum += v;
    for (double& v : r) v /= sum;
    return r;
  };
  Sampler sampler(kVocab);
  std::vector<int> counts(kVocab * kVocab, 0);
  const std::vector<int32_t> drafts = {d1, d2};
  const std::vector<float> rows = stack({logits_for(p1), logits_for(p2(d1)), logits_for(p1)});
  std::vector<SampleResult> out(3);
  for (int t = 0; t < n; ++t) {
    SamplingRng rng(static_cast<uint64_t>(t) * 7919 + 17);
    const SamplingSequence seq{&p, {}, {}, &rng, {}};
    const int32_t m = sampler.verify(rows, drafts, seq, out);
    const int32_t x1 = out[0].token;
    int32_t x2 = m >= 2 ? out[1].token : -1;
    if (m < 2) {
      SampleResult next;
      const std::vector<float> row = logits_for(p2(x1));
      sampler.sample(row, seq, next);
      x2 = next.token;
    }
    ++counts[x1 * kVocab + x2];
  }
  double chi2 = 0;
  for (int32_t x = 0; x < kVocab; ++x) {
    const std::vector<double> q = p2(x);
    for (int32_t y = 0; y < kVocab; ++y) {
      const double expected = n * p1[x] * q[y];
      const double diff = counts[x * kVocab + y] - expected;
      chi2 += diff * diff / expected;
    }
  }
  return chi2;
}

TEST(SpeculativeVerify, SampledDistributionIsTheTargetsChiSquare) {
  // 25 cells, 24 degrees of freedom: P(chi2 > 51.18) = 0.001 under the target's law. The seeds are
  // fixed, so the test is deterministic. A wrong rule moves chi2 far past that: always accepting
  // the draft d1 = 0 would put all 50000 first tokens on 0 (chi2 of the first token alone ~93000).
  SamplingParams p;
  p.temperature = 1.0f;
  const int n = 50000;
  for (auto [d1, d2] : std::vector<std::pair<int32_t, int32_t>>{{0, 1}, {4, 4}, {2, 0}}) {
    const double chi2 = chi_square_of_two_tokens(d1, d2, p, n);
    EXPECT_LT(chi2, 51.18) << "drafts " << d1 << ", " << d2;
  }
}

}  // namespace
}  // namespace ferry::llm
