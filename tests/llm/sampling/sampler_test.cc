#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>

namespace ferry::llm {
namespace {

std::vector<float> random_logits(int32_t vocab, uint32_t seed, float scale = 3.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = dist(gen);
  return v;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> v;
  for (double p : probs) v.push_back(static_cast<float>(std::log(p)));
  return v;
}

struct Draws {
  std::map<int32_t, int> counts;
  int n = 0;
  double freq(int32_t t) const {
    auto it = counts.find(t);
    return it == counts.end() ? 0.0 : static_cast<double>(it->second) / n;
  }
};

Draws draw_many(const std::vector<float>& logits, const SamplingParams& p, int n, uint64_t seed = 1) {
  Sampler sampler(static_cast<int32_t>(logits.size()));
  SamplingRng rng(seed);
  SamplingSequence seq{&p, {}, {}, &rng, {}};
  SampleResult r;
  Draws d;
  for (int i = 0; i < n; ++i) {
    sampler.sample(logits, seq, r);
    ++d.counts[r.token];
  }
  d.n = n;
  return d;
}

// Binomial tolerance: 5 standard deviations.
double tol(double p, int n) { return 5.0 * std::sqrt(p * (1.0 - p) / n) + 1e-9; }

// Unseeded requests draw distinct streams from one random base: no two of 1000 seeds or first
// draws repeat, two streams share no word in their first 64 draws, and a given seed still
// reproduces its stream.
TEST(SamplingRngTest, UnseededStreamsAreDistinct) {
  std::set<uint64_t> seeds, first_draws;
  for (int i = 0; i < 1000; ++i) {
    seeds.insert(SamplingRng::fresh_seed());
    first_draws.insert(SamplingRng::from_seed(std::nullopt).next_u64());
  }
  EXPECT_EQ(seeds.size(), 1000u);
  EXPECT_EQ(first_draws.size(), 1000u);
  SamplingRng a = SamplingRng::from_seed(std::nullopt), b = SamplingRng::from_seed(std::nullopt);
  std::set<uint64_t> words;
  for (int i = 0; i < 64; ++i) words.insert(a.next_u64()), words.insert(b.next_u64());
  EXPECT_EQ(words.size(), 128u);
  SamplingRng c = SamplingRng::from_seed(uint64_t{42}), d(42);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(c.next_u64(), d.next_u64());
}

TEST(Sampler, GreedyPicksArgmaxWithoutTouchingRng) {
  std::vector<float> logits = random_logits(1000, 7);
  int32_t expected = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(1000);
  SamplingRng rng(3), untouched(3);
  SampleResult r;
  sampler.sample(logits, {&p, {}, {}, &rng}, r);
  EXPECT_EQ(r.token, expected);
  EXPECT_EQ(rng.next_u64(), untouched.next_u64());
}

TEST(Sampler, TopKOneEqualsGreedy) {
  for (uint32_t s = 0; s < 20; ++s) {
    std::vector<float> logits = random_logits(5000, s);
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    SamplingParams top1;
    top1.temperature = 1.3f;
    top1.top_k = 1;
    Sampler sampler(5000);
    SamplingRng rng(s);
    SampleResult a, b;
    sampler.sample(logits, {&greedy, {}, {}, &rng}, a);
    sampler.sample(logits, {&top1, {}, {}, &rng}, b);
    EXPECT_EQ(a.token, b.token);
  }
}

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  SamplingParams p;
  const int n = 40000;
  Draws d = draw_many(logits_for(probs), p, n);
  for (int32_t t = 0; t < 4; ++t) EXPECT_NEAR(d.freq(t), probs[static_cast<size_t>(t)], tol(probs[static_cast<size_t>(t)], n)) << t;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  // p ∝ exp(l / T): with T = 0.5 the probabilities square (then renormalize).
  std::vector<double> probs = {0.25, 0.75};
  SamplingParams p;
  p.temperature = 0.5f;
  const int n = 40000;
  Draws d = draw_many(logits_for(probs), p, n);
  const double expect1 = 0.75 * 0.75 / (0.75 * 0.75 + 0.25 * 0.25);  // 0.9
  EXPECT_NEAR(d.freq(1), expect1, tol(expect1, n));
  p.temperature = 100.0f;
  d = draw_many(logits_for(probs), p, n);
  EXPECT_NEAR(d.freq(1), 0.5, 0.02);
}

TEST(Sampler, TopKKeepsOnlyKLargest) {
  std::vector<float> logits = random_logits(3000, 11, 1.0f);
  std::vector<int32_t> ids(3000);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
  std::set<int32_t> top5(ids.begin(), ids.begin() + 5);
  SamplingParams p;
  p.top_k = 5;
  Draws d = draw_many(logits, p, 5000);
  for (const auto& [t, c] : d.counts) EXPECT_TRUE(top5.count(t)) << "token " << t << " outside the top 5";
  EXPECT_EQ(d.counts.size(), 5u);  // all five are reachable
}

TEST(Sampler, LargeTopKKeepsOnlyKLargest) {
  // k > 4096 takes the nth_element path instead of the heap.
  const int32_t vocab = 8000, k = 5000;
  std::vector<float> logits = random_logits(vocab, 12, 0.2f);  // nearly flat: many tokens get drawn
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
  std::set<int32_t> top(ids.begin(), ids.begin() + k);
  SamplingParams p;
  p.top_k = k;
  Draws d = draw_many(logits, p, 20000);
  for (const auto& [t, c] : d.counts) EXPECT_TRUE(top.count(t)) << "token " << t << " outside the top " << k;
  EXPECT_GT(d.counts.size(), 3000u) << "the draws spread over the kept tokens";
}

TEST(Sampler, TopPExcludesLowMassTokensAndRenormalizes) {
  std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  SamplingParams p;
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.8: keeps tokens 0 and 1
  const int n = 40000;
  Draws d = draw_many(logits_for(probs), p, n);
  EXPECT_EQ(d.freq(2), 0.0);
  EXPECT_EQ(d.freq(3), 0.0);
  EXPECT_NEAR(d.freq(0), 0.625, tol(0.625, n));
  EXPECT_NEAR(d.freq(1), 0.375, tol(0.375, n));
}

TEST(Sampler, TopPOnLargeFlatVocabMatchesBruteForceNucleus) {
  // 128k vocabulary whose nucleus (top_p = 0.9) spans thousands of tokens: exercises the growing
  // partial sort.
  const int32_t vocab = 131072;
  std::vector<float> logits = random_logits(vocab, 5, 0.5f);
  for (int32_t i = 0; i < 4000; ++i) logits[static_cast<size_t>(i) * 31] += 4.0f;
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  double z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  std::set<int32_t> nucleus;
  double cum = 0.0;
  for (int32_t t : ids) {
    nucleus.insert(t);
    cum += std::exp(static_cast<double>(logits[static_cast<size_t>(t)])) / z;
    if (cum >= 0.9) break;
  }
  ASSERT_GT(nucleus.size(), 1000u);
  SamplingParams p;
  p.top_p = 0.9f;
  Draws d = draw_many(logits, p, 500);
  for (const auto& [t, c] : d.counts) EXPECT_TRUE(nucleus.count(t)) << "token " << t << " outside the nucleus";
}

TEST(Sampler, TopPOnLargePeakedVocabSamplesTheNucleusByItsMass) {
  // A language model's usual case: 128k tokens, a nucleus of a few dozen (the sampler looks for it
  // among the most likely tokens before it partitions the vocabulary). The draws must stay in the
  // nucleus and follow its renormalized probabilities.
  const int32_t vocab = 128256;
  std::vector<float> logits = random_logits(vocab, 11, 0.5f);
  for (int32_t i = 0; i < 30; ++i) logits[static_cast<size_t>(i) * 4001 + 7] = 14.0f - 0.25f * static_cast<float>(i);
  std::vector<double> p_of(static_cast<size_t>(vocab));
  double z = 0.0;
  for (size_t t = 0; t < p_of.size(); ++t) z += p_of[t] = std::exp(static_cast<double>(logits[t]));
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] || (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  double cum = 0.0, kept = 0.0;
  std::set<int32_t> nucleus;
  for (int32_t t : ids) {
    nucleus.insert(t);
    kept += p_of[static_cast<size_t>(t)];
    if ((cum += p_of[static_cast<size_t>(t)] / z) >= 0.8) break;
  }
  ASSERT_GT(nucleus.size(), 5u);
  ASSERT_LT(nucleus.size(), 100u);
  SamplingParams p;
  p.top_p = 0.8f;
  const int n = 4000;
  Draws d = draw_many(logits, p, n);
  for (const auto& [t, c] : d.counts) EXPECT_TRUE(nucleus.count(t)) << "token " << t << " outside the nucleus";
  for (int32_t t : {ids[0], ids[1], ids[4]}) {
    const double want = p_of[static_cast<size_t>(t)] / kept;
    EXPECT_NEAR(d.freq(t), want, tol(want, n)) << "token " << t;
  }
}

// The draw's order (sampler.h, step 3): the first candidate whose running mass exceeds u x mass,
// over ids in id order without top_k / top_p, else from the most likely down (ties: lower id) --
// also when the nucleus outgrows the 256-token probe and is found by the quickselect, which does
// not sort it. A plain double model of that rule picks the same token for the same u, except where
// u x mass falls within 1e-6 (relative) of a boundary (the sampler's fp32 exp), counted.
TEST(Sampler, DrawFollowsIdOrderOrDescendingProbability) {
  const int32_t vocab = 4099;
  std::vector<float> logits = random_logits(vocab, 3, 0.4f);
  for (int32_t i = 0; i < 200; ++i) logits[static_cast<size_t>(i) * 13] = logits[static_cast<size_t>(i) * 17];  // ties
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<int32_t> by_prob(static_cast<size_t>(vocab)), by_id(static_cast<size_t>(vocab));
  std::iota(by_id.begin(), by_id.end(), 0);
  by_prob = by_id;
  std::stable_sort(by_prob.begin(), by_prob.end(),
                   [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
  auto prob = [&](int32_t t) { return std::exp(static_cast<double>(logits[static_cast<size_t>(t)]) - max_logit); };
  struct Case {
    int32_t top_k;
    float top_p;
    const std::vector<int32_t>* order;
  };
  int skipped = 0, checked = 0;
  for (const Case& c : {Case{0, 1.0f, &by_id}, Case{0, 0.9f, &by_prob}, Case{600, 0.95f, &by_prob}}) {
    std::vector<int32_t> candidates(c.order->begin(), c.order->begin() + (c.top_k > 0 ? c.top_k : vocab));
    double mass = 0.0;
    for (int32_t t : candidates) mass += prob(t);
    if (c.top_p < 1.0f) {
      double cum = 0.0;
      size_t keep = 0;
      while (keep < candidates.size() && cum < c.top_p * mass) cum += prob(candidates[keep++]);
      candidates.resize(keep);
      mass = cum;
    }
    if (c.top_p == 0.9f) {
      ASSERT_GT(candidates.size(), 256u);  // beyond the probe
    }
    SamplingParams p;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    Sampler sampler(vocab);
    for (uint64_t seed = 0; seed < 100; ++seed) {
      SamplingRng rng(seed), copy(seed);
      const double target = copy.uniform() * mass;
      double cum = 0.0;
      int32_t want = -1;
      bool near = false;
      for (int32_t t : candidates) {
        cum += prob(t);
        near = near || std::fabs(cum - target) <= 1e-6 * mass;
        if (want < 0 && cum > target) want = t;
      }
      if (near) {
        ++skipped;
        continue;
      }
      SampleResult r;
      sampler.sample(logits, SamplingSequence{&p, {}, {}, &rng}, r);
      EXPECT_EQ(r.token, want) << "top_k " << c.top_k << " top_p " << c.top_p << " seed " << seed;
      ++checked;
    }
  }
  EXPECT_LE(skipped * 50, checked);
}

TEST(Sampler, TopKThenTopPRenormalizesOverTopK) {
  std::vector<double> probs = {0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1};
  SamplingParams p;
  p.top_k = 2;     // {0.3, 0.2} -> renormalized {0.6, 0.4}
  p.top_p = 0.5f;  // 0.6 >= 0.5: only token 0 remains
  Draws d = draw_many(logits_for(probs), p, 2000);
  EXPECT_EQ(d.freq(0), 1.0);
}

TEST(Sampler, MinPDropsTokensBelowFractionOfMax) {
  std::vector<double> probs = {0.6, 0.3, 0.1};
  SamplingParams p;
  p.min_p = 0.2f;  // threshold 0.12: token 2 goes
  const int n = 30000;
  Draws d = draw_many(logits_for(probs), p, n);
  EXPECT_EQ(d.freq(2), 0.0);
  EXPECT_NEAR(d.freq(0), 2.0 / 3.0, tol(2.0 / 3.0, n));
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  std::vector<float> logits = random_logits(32000, 9, 1.0f);
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.top_p = 0.95f;
    p.seed = seed;
    Sampler sampler(32000);
    SamplingRng rng = SamplingRng::from_seed(p.seed);
    SamplingSequence seq{&p, {}, {}, &rng, {}};
    SampleResult r;
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      sampler.sample(logits, seq, r);
      out.push_back(r.token);
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
  // No seed: two random streams almost surely differ.
  SamplingRng a = SamplingRng::from_seed(std::nullopt), b = SamplingRng::from_seed(std::nullopt);
  EXPECT_NE(a.next_u64(), b.next_u64());
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<int32_t> prompt = {0, 0, 1};
  std::vector<int32_t> output = {2};
  Sampler sampler(5);
  std::span<const float> w = sampler.process_logits(logits, {&p, prompt, output, nullptr});
  EXPECT_FLOAT_EQ(w[0], 1.0f);   // prompt, positive: divided (once, despite two occurrences)
  EXPECT_FLOAT_EQ(w[1], -4.0f);  // prompt, negative: multiplied
  EXPECT_FLOAT_EQ(w[2], 0.5f);   // generated
  EXPECT_FLOAT_EQ(w[3], 0.5f);   // untouched
  EXPECT_FLOAT_EQ(w[4], 3.0f);
}

TEST(Sampler, FrequencyAndPresencePenaltiesUseGeneratedTokensOnly) {
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  SamplingParams p;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 1.0f;
  std::vector<int32_t> prompt = {0};
  std::vector<int32_t> output = {2, 2, 2, 3};
  Sampler sampler(4);
  std::span<const float> w = sampler.process_logits(logits, {&p, prompt, output, nullptr});
  EXPECT_FLOAT_EQ(w[0], 1.0f);                // prompt only: not penalized
  EXPECT_FLOAT_EQ(w[1], 1.0f);
  EXPECT_FLOAT_EQ(w[2], 1.0f - 1.5f - 1.0f);  // 3 x 0.5 + 1
  EXPECT_FLOAT_EQ(w[3], 1.0f - 0.5f - 1.0f);
  // The scratch counters were reset: a call with no history leaves logits alone.
  w = sampler.process_logits(logits, {&p, {}, {}, nullptr});
  EXPECT_FLOAT_EQ(w[2], 1.0f);
}

TEST(Sampler, LogitBiasSteersGreedy) {
  std::vector<float> logits = {5.0f, 1.0f, 0.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.logit_bias = {{3, 10.0f}};
  Sampler sampler(4);
  SampleResult r;
  sampler.sample(logits, {&p, {}, {}, nullptr}, r);
  EXPECT_EQ(r.token, 3);
}

TEST(Sampler, LogprobsAreRawLogSoftmax) {
  const int32_t vocab = 50;
  std::vector<float> logits = random_logits(vocab, 3);
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 3;
  p.repetition_penalty = 1.5f;
  p.num_logprobs = vocab;
  Sampler sampler(vocab);
  SamplingRng rng(5);
  std::vector<int32_t> out_ids = {1, 2};
  SampleResult r;
  sampler.sample(logits, {&p, {}, out_ids, &rng}, r);
  ASSERT_EQ(r.top_logprobs.size(), static_cast<size_t>(vocab));
  double total = 0.0, z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  for (size_t i = 0; i < r.top_logprobs.size(); ++i) {
    total += std::exp(static_cast<double>(r.top_logprobs[i].logprob));
    if (i > 0) {
      EXPECT_GE(r.top_logprobs[i - 1].logprob, r.top_logprobs[i].logprob);
    }
    const int32_t t = r.top_logprobs[i].token;
    EXPECT_NEAR(r.top_logprobs[i].logprob, std::log(std::exp(static_cast<double>(logits[static_cast<size_t>(t)])) / z), 1e-5);
  }
  EXPECT_NEAR(total, 1.0, 1e-5);
  EXPECT_NEAR(r.logprob, std::log(std::exp(static_cast<double>(logits[static_cast<size_t>(r.token)])) / z), 1e-5);
  EXPECT_EQ(r.top_logprobs[static_cast<size_t>(r.rank - 1)].token, r.token);

  p.num_logprobs = 2;
  sampler.sample(logits, {&p, {}, out_ids, &rng}, r);
  EXPECT_EQ(r.top_logprobs.size(), 2u);
  p.num_logprobs = -1;
  sampler.sample(logits, {&p, {}, out_ids, &rng}, r);
  EXPECT_TRUE(r.top_logprobs.empty());
}

TEST(Sampler, BatchEqualsPerSequenceCalls) {
  const int32_t vocab = 1000;
  std::vector<float> logits = random_logits(vocab * 3, 21);
  SamplingParams a, b, c;
  a.temperature = 0.0f;
  b.top_k = 10;
  b.seed = 1;
  c.top_p = 0.8f;
  c.presence_penalty = 0.5f;
  c.seed = 2;
  std::vector<int32_t> hist = {1, 2, 3};
  SamplingRng ra(0), rb(1), rc(2), rb2(1), rc2(2);
  std::vector<SamplingSequence> seqs = {{&a, hist, {}, &ra, {}}, {&b, {}, hist, &rb, {}}, {&c, hist, hist, &rc, {}}};
  std::vector<SampleResult> batch(3);
  Sampler sampler(vocab);
  sampler.sample_batch(logits, seqs, batch);
  Sampler single(vocab);
  SamplingRng* rngs[3] = {&ra, &rb2, &rc2};
  for (size_t i = 0; i < 3; ++i) {
    SamplingSequence s = seqs[i];
    s.rng = rngs[i];
    SampleResult r;
    single.sample(std::span<const float>(logits).subspan(i * vocab, vocab), s, r);
    EXPECT_EQ(r.token, batch[i].token) << i;
  }
}

TEST(SamplingParams, ValidateNamesTheField) {
  SamplingParams p;
  EXPECT_TRUE(p.validate(100).ok());
  p.top_p = 0.0f;
  EXPECT_NE(p.validate(100).message().find("top_p"), std::string::npos);
  p = SamplingParams();
  p.logit_bias = {{100, 1.0f}};
  EXPECT_NE(p.validate(100).message().find("logit_bias"), std::string::npos);
  p = SamplingParams();
  p.max_tokens = 0;
  EXPECT_NE(p.validate(100).message().find("max_tokens"), std::string::npos);
}


// Constrained decoding: only tokens whose bit is set may be chosen, greedy or sampled, and the
// logprobs stay those of the raw distribution.
TEST(Sampler, AllowedTokensMaskRestrictsTheChoice) {
  const int32_t vocab = 100;
  std::vector<float> logits = random_logits(vocab, 21);
  std::vector<uint32_t> mask((vocab + 31) / 32, 0u);
  const std::vector<int32_t> allowed = {3, 31, 32, 64, 99};  // word edges included
  for (int32_t t : allowed) mask[static_cast<size_t>(t / 32)] |= 1u << (t % 32);
  int32_t best = allowed[0];
  for (int32_t t : allowed) {
    if (logits[static_cast<size_t>(t)] > logits[static_cast<size_t>(best)]) best = t;
  }
  Sampler sampler(vocab);
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.num_logprobs = 0;
  SamplingRng rng(5);
  SampleResult r;
  sampler.sample(logits, SamplingSequence{&greedy, {}, {}, &rng, mask}, r);
  EXPECT_EQ(r.token, best);
  // Raw logprob of the chosen token: log_softmax over all 100 logits, mask or not.
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  EXPECT_NEAR(r.logprob, logits[static_cast<size_t>(best)] - std::log(z), 1e-4);

  SamplingParams sampled;
  sampled.temperature = 1.5f;
  sampled.top_p = 0.9f;
  std::set<int32_t> seen;
  for (int i = 0; i < 2000; ++i) {
    sampler.sample(logits, SamplingSequence{&sampled, {}, {}, &rng, mask}, r);
    seen.insert(r.token);
  }
  for (int32_t t : seen) EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), t) != allowed.end()) << t;
  EXPECT_GE(seen.size(), 2u);  // it samples among the allowed, not only the best
}

TEST(Sampler, MinTokensMasksStopIdsUntilEnoughAreGenerated) {
  std::vector<float> logits = {0.0f, 5.0f, 4.0f, 1.0f};  // greedy: 1, then 2 when 1 is masked
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 2;
  p.min_tokens_masked_ids = {1};
  Sampler sampler(4);
  SampleResult r;
  std::vector<int32_t> output;
  SamplingSequence seq{&p, {}, output, nullptr, {}};
  sampler.sample(logits, seq, r);
  EXPECT_EQ(r.token, 2) << "0 tokens generated < min_tokens: id 1 is masked";
  output = {2};
  seq.output_ids = output;
  sampler.sample(logits, seq, r);
  EXPECT_EQ(r.token, 2) << "1 token generated < min_tokens";
  output = {2, 2};
  seq.output_ids = output;
  sampler.sample(logits, seq, r);
  EXPECT_EQ(r.token, 1) << "min_tokens reached: id 1 may be chosen";

  // Sampled (not greedy): the masked id is never drawn.
  p.temperature = 1.0f;
  output.clear();
  seq.output_ids = output;
  SamplingRng rng(3);
  seq.rng = &rng;
  for (int i = 0; i < 200; ++i) {
    sampler.sample(logits, seq, r);
    ASSERT_NE(r.token, 1);
  }
}

// Speculative verification counts the accepted drafts toward min_tokens, as plain decoding would.
TEST(Sampler, VerifyCountsDraftsTowardMinTokens) {
  const std::vector<float> row = {0.0f, 5.0f, 4.0f, 1.0f};  // greedy: 1 unless it is masked, then 2
  std::vector<float> logits;
  for (int j = 0; j < 3; ++j) logits.insert(logits.end(), row.begin(), row.end());
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = 10;
  p.min_tokens = 2;
  p.min_tokens_masked_ids = {1};
  Sampler sampler(4);
  const std::vector<int32_t> output = {2};  // one token generated: the next one is still masked
  const std::vector<int32_t> drafts = {2, 2};
  std::vector<SampleResult> out(3);
  const int32_t n = sampler.verify(logits, drafts, SamplingSequence{&p, {}, output, nullptr, {}}, out);
  ASSERT_EQ(n, 2) << "row 0 takes draft 2 (1 is masked); row 1 has 2 tokens before it, so 1 is allowed";
  EXPECT_EQ(out[0].token, 2);
  EXPECT_EQ(out[1].token, 1);
}

// Plain greedy takes the arg max straight from the logits; it must pick exactly what the full
// path (copy, bias, penalties, mask) picks when those change nothing: forced here by a zero bias,
// with ties (the lowest id wins) and -inf entries in the logits.
TEST(Sampler, PlainGreedyFastPathAgreesWithTheFullPath) {
  const int32_t vocab = 300;
  Sampler sampler(vocab);
  SamplingRng rng(1);
  for (uint32_t seed = 0; seed < 200; ++seed) {
    std::vector<float> logits = random_logits(vocab, seed);
    std::mt19937 gen(seed);
    for (int i = 0; i < 5; ++i) logits[gen() % vocab] = logits[gen() % vocab];  // ties
    if (seed % 3 == 0) logits[gen() % vocab] = -std::numeric_limits<float>::infinity();
    if (seed % 7 == 0) {  // a tie at the maximum itself
      const size_t best = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      logits[(best + 1 + gen() % (vocab - 1)) % vocab] = logits[best];
    }
    SamplingParams plain;
    plain.temperature = 0;
    SamplingParams forced = plain;
    forced.logit_bias = {{0, 0.0f}};
    SampleResult fast, full;
    sampler.sample(logits, SamplingSequence{&plain, {}, {}, &rng, {}}, fast);
    sampler.sample(logits, SamplingSequence{&forced, {}, {}, &rng, {}}, full);
    ASSERT_EQ(fast.token, full.token) << "seed " << seed;
    EXPECT_EQ(fast.token, static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
  }
}

// Greedy's arg max at every row length around the SIMD widths (16 per pass, 4 per compare): the
// first index of the largest logit, the maximum placed at the head, the tail and everywhere between.
TEST(Sampler, GreedyArgmaxAtEveryPositionAndLength) {
  for (int32_t vocab = 1; vocab <= 41; ++vocab) {
    Sampler sampler(vocab);
    SamplingRng rng(1);
    SamplingParams p;
    p.temperature = 0;
    for (int32_t at = 0; at < vocab; ++at) {
      std::vector<float> logits(static_cast<size_t>(vocab), -1.0f);
      logits[static_cast<size_t>(at)] = 2.0f;
      if (at + 3 < vocab) logits[static_cast<size_t>(at + 3)] = 2.0f;  // a later tie loses
      SampleResult r;
      sampler.sample(logits, SamplingSequence{&p, {}, {}, &rng, {}}, r);
      ASSERT_EQ(r.token, at) << "vocab " << vocab;
    }
  }
}

// The mask's word shapes each take their own path: all allowed (skipped), all refused (filled),
// mixed (a per-bit select), and the tail past the last full word.
TEST(Sampler, MaskWordsAllAllowedAllRefusedMixedAndTail) {
  const int32_t vocab = 200;  // 6 full words and a tail of 8
  std::vector<uint32_t> mask(7, 0u);
  mask[1] = 0xffffffffu;              // 32..63 all allowed
  mask[0] = 1u << 5;                  // 5 alone in a mixed word
  mask[6] = 1u << (199 - 192);        // 199 in the tail
  std::vector<int32_t> allowed = {5, 199};
  for (int32_t t = 32; t < 64; ++t) allowed.push_back(t);
  Sampler sampler(vocab);
  SamplingRng rng(3);
  SamplingParams sampled;
  sampled.temperature = 1.0f;
  for (uint32_t seed = 0; seed < 50; ++seed) {
    std::vector<float> logits = random_logits(vocab, 100 + seed);
    logits[100] = 50.0f;  // the best token overall sits in a refused word
    SamplingParams greedy;
    greedy.temperature = 0;
    SampleResult r;
    sampler.sample(logits, SamplingSequence{&greedy, {}, {}, &rng, mask}, r);
    int32_t best = allowed[0];
    for (int32_t t : allowed) {
      if (logits[static_cast<size_t>(t)] > logits[static_cast<size_t>(best)] ||
          (logits[static_cast<size_t>(t)] == logits[static_cast<size_t>(best)] && t < best)) {
        best = t;
      }
    }
    EXPECT_EQ(r.token, best) << "seed " << seed;
    sampler.sample(logits, SamplingSequence{&sampled, {}, {}, &rng, mask}, r);
    EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), r.token) != allowed.end()) << r.token;
  }
}

}  // namespace
}  // namespace ferry::llm
