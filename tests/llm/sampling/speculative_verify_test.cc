// Sampler::verify, speculative decoding's verification: greedy runs accept exactly the prefix that
// equals the target's arg max; seeded sampled runs emit the very tokens sequential sampling emits;
// and, over many seeds on a 5-token vocabulary, the joint law of two emitted tokens is the
// target's (chi-square), whether the point-mass draft is likely, unlikely or impossible. With a
// draft model's full q (draft_probs): Sampler::distribution is the law sample() draws from, the
// joint law of two emitted tokens is again the target's (chi-square) for drafts drawn from a q far
// from p, q == p accepts every draft, seeded runs are reproducible, and greedy requests ignore q.
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

// --- A draft model's proposals: the general rule with the full q ---------------------------------

double chi_square(const std::vector<int>& counts, const std::vector<double>& expected_probs, int n) {
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = n * expected_probs[i];
    if (expected == 0) {
      if (counts[i] > 0) return INFINITY;  // a token the law cannot produce
      continue;
    }
    const double diff = counts[i] - expected;
    chi2 += diff * diff / expected;
  }
  return chi2;
}

std::vector<double> distribution_of(Sampler& sampler, const std::vector<float>& logits, const SamplingSequence& seq) {
  std::vector<float> probs(kVocab);
  sampler.distribution(logits, seq, probs);
  return std::vector<double>(probs.begin(), probs.end());
}

TEST(SpeculativeVerifyDraftModel, DistributionIsWhatSampleDraws) {
  // 5 tokens, 4 degrees of freedom: P(chi2 > 18.47) = 0.001. Each setting truncates differently.
  const std::vector<float> logits = logits_for({0.4, 0.25, 0.2, 0.1, 0.05});
  Sampler sampler(kVocab);
  SamplingParams settings[4];
  settings[0].temperature = 1.0f;
  settings[1].temperature = 0.7f;
  settings[1].top_k = 3;
  settings[2].temperature = 1.3f;
  settings[2].top_p = 0.7f;
  settings[3].temperature = 1.0f;
  settings[3].min_p = 0.3f;
  settings[3].logit_bias = {{4, 2.0f}};
  for (const SamplingParams& p : settings) {
    SamplingRng rng(5);
    const SamplingSequence seq{&p, {}, {}, &rng, {}, {}};
    const std::vector<double> law = distribution_of(sampler, logits, seq);
    double sum = 0;
    for (double x : law) sum += x;
    EXPECT_NEAR(sum, 1.0, 1e-6);
    const int n = 20000;
    std::vector<int> counts(kVocab, 0);
    for (int t = 0; t < n; ++t) {
      SampleResult r;
      sampler.sample(logits, seq, r);
      ++counts[r.token];
    }
    EXPECT_LT(chi_square(counts, law, n), 18.47) << "temperature " << p.temperature << " top_k " << p.top_k;
  }
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  EXPECT_EQ(distribution_of(sampler, logits, {&greedy, {}, {}, nullptr, {}, {}}), (std::vector<double>{1, 0, 0, 0, 0}));
}

// The target: p1, then p2(. | x1) (rows of `target_rows`, processed by p). The draft: q1, then
// q2(. | d1), far from the target's; each trial draws d1 ~ q1 and d2 ~ q2(. | d1) from the draft's
// own RNG and verifies them with the full q. When only d1 is kept, x2 is the correction drawn in
// the same step; when d1 is rejected, x2 comes from the next, plain step. The joint law of
// (x1, x2) must be p1(x1) p2(x2 | x1), whatever q.
double chi_square_with_full_q(const SamplingParams& p, int n) {
  auto row = [](int32_t x, int32_t shift) {
    std::vector<double> r(kVocab, 0.0);
    double sum = 0;
    for (int32_t y = 0; y < kVocab; ++y) sum += r[y] = 1.0 + ((x + shift * y) % kVocab);
    for (double& v : r) v /= sum;
    return logits_for(r);
  };
  const std::vector<float> p1 = logits_for({0.35, 0.25, 0.2, 0.15, 0.05});
  const std::vector<float> q1 = logits_for({0.05, 0.1, 0.15, 0.3, 0.4});
  Sampler sampler(kVocab), draft_sampler(kVocab);
  std::vector<int> counts(kVocab * kVocab, 0);
  std::vector<SampleResult> out(3);
  std::vector<float> q(2 * kVocab);
  for (int t = 0; t < n; ++t) {
    SamplingRng rng(static_cast<uint64_t>(t) * 7919 + 17), draft_rng(static_cast<uint64_t>(t) * 104729 + 3);
    const SamplingSequence plain{&p, {}, {}, &draft_rng, {}, {}};
    draft_sampler.distribution(q1, plain, std::span<float>(q).first(kVocab));
    const int32_t d1 = Sampler::draw_from(std::span<const float>(q).first(kVocab), draft_rng);
    draft_sampler.distribution(row(d1, 3), plain, std::span<float>(q).subspan(kVocab));
    const int32_t d2 = Sampler::draw_from(std::span<const float>(q).subspan(kVocab), draft_rng);
    const std::vector<int32_t> drafts = {d1, d2};
    const std::vector<float> rows = stack({p1, row(d1, 2), row(d2, 2)});
    const SamplingSequence seq{&p, {}, {}, &rng, {}, q};
    const int32_t m = sampler.verify(rows, drafts, seq, out);
    const int32_t x1 = out[0].token;
    int32_t x2 = m >= 2 ? out[1].token : -1;
    if (m < 2) {
      SampleResult next;
      sampler.sample(row(x1, 2), seq, next);
      x2 = next.token;
    }
    ++counts[x1 * kVocab + x2];
  }
  std::vector<double> joint(kVocab * kVocab);
  const SamplingSequence law_seq{&p, {}, {}, nullptr, {}, {}};
  const std::vector<double> law1 = distribution_of(sampler, p1, law_seq);
  for (int32_t x = 0; x < kVocab; ++x) {
    const std::vector<double> law2 = distribution_of(sampler, row(x, 2), law_seq);
    for (int32_t y = 0; y < kVocab; ++y) joint[x * kVocab + y] = law1[x] * law2[y];
  }
  return chi_square(counts, joint, n);
}

TEST(SpeculativeVerifyDraftModel, SampledDistributionIsTheTargetsChiSquare) {
  // 25 cells, 24 degrees of freedom: P(chi2 > 51.18) = 0.001 (fewer cells with top_k: fewer degrees
  // of freedom, so the bound is looser there). Accepting d1 whenever q1(d1) >= p1(d1), or drawing the
  // correction from p instead of max(0, p - q), moves chi2 into the thousands.
  const int n = 50000;
  SamplingParams plain;
  plain.temperature = 1.0f;
  EXPECT_LT(chi_square_with_full_q(plain, n), 51.18) << "temperature 1";
  SamplingParams truncated;
  truncated.temperature = 0.8f;
  truncated.top_k = 3;
  EXPECT_LT(chi_square_with_full_q(truncated, n), 51.18) << "temperature 0.8, top_k 3";
}

TEST(SpeculativeVerifyDraftModel, QEqualToPAcceptsEveryDraftAndSeedsReproduce) {
  const std::vector<std::vector<float>> rows = {logits_for({0.5, 0.2, 0.1, 0.1, 0.1}),
                                                logits_for({0.1, 0.6, 0.1, 0.1, 0.1}),
                                                logits_for({0.2, 0.2, 0.2, 0.2, 0.2})};
  const std::vector<float> logits = stack(rows);
  SamplingParams p;
  p.temperature = 1.0f;
  Sampler sampler(kVocab);
  std::vector<float> q(2 * kVocab);
  for (int j = 0; j < 2; ++j) {
    sampler.distribution(rows[j], {&p, {}, {}, nullptr, {}, {}}, std::span<float>(q).subspan(j * kVocab, kVocab));
  }
  std::vector<SampleResult> out(3), again(3);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<int32_t> drafts = {static_cast<int32_t>(seed % kVocab), static_cast<int32_t>((seed / 5) % kVocab)};
    SamplingRng rng(seed), rng_again(seed);
    const int32_t m = sampler.verify(logits, drafts, {&p, {}, {}, &rng, {}, q}, out);
    ASSERT_EQ(m, 3) << "q == p: min(1, p/q) = 1 for every draft (seed " << seed << ")";
    EXPECT_EQ(out[0].token, drafts[0]);
    EXPECT_EQ(out[1].token, drafts[1]);
    ASSERT_EQ(sampler.verify(logits, drafts, {&p, {}, {}, &rng_again, {}, q}, again), m);
    for (int j = 0; j < m; ++j) EXPECT_EQ(again[j].token, out[j].token) << "same seed, same tokens";
  }
  // Greedy ignores q: a draft that is not the arg max is rejected however likely q made it.
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const std::vector<int32_t> drafts = {3, 1};
  ASSERT_EQ(sampler.verify(logits, drafts, {&greedy, {}, {}, nullptr, {}, q}, out), 1);
  EXPECT_EQ(out[0].token, 0);
}

}  // namespace
}  // namespace ferry::llm
