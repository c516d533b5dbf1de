// sampler_bench: the CPU cost of Sampler::sample for one sequence, per vocabulary size, for the
// choices a server sees most: plain greedy (the arg max taken from the logits as given), greedy
// through the full path (a zero logit bias forces the copy into the scratch row; it picks the same
// token), greedy under a constrained-decoding mask (dense and sparse), and sampling with top_k / top_p.
//
//   build/perf/sampler_bench [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "backend/llm/sampling/sampler.h"

namespace {

using ferry::llm::SampleResult;
using ferry::llm::Sampler;
using ferry::llm::SamplingParams;
using ferry::llm::SamplingRng;
using ferry::llm::SamplingSequence;

std::vector<float> random_logits(int32_t vocab) {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = dist(gen);
  return v;
}

enum Case { kPlainGreedy, kFullPathGreedy, kMaskedGreedy, kTopK50, kTopP09, kSparseMaskGreedy };

void BM_Sample(benchmark::State& state) {
  const auto vocab = static_cast<int32_t>(state.range(0));
  const auto which = static_cast<Case>(state.range(1));
  const std::vector<float> logits = random_logits(vocab);
  // kMaskedGreedy: every other token allowed (every word mixed, the worst case); kSparseMaskGreedy:
  // a mask as between JSON values, nearly all words refused and one word in 64 partly allowed.
  std::vector<uint32_t> mask((static_cast<size_t>(vocab) + 31) / 32, 0x55555555u);
  if (which == kSparseMaskGreedy) {
    for (size_t w = 0; w < mask.size(); ++w) mask[w] = w % 64 == 0 ? 0x0000f00fu : 0u;
  }
  SamplingParams p;
  p.temperature = 0;
  if (which == kFullPathGreedy) p.logit_bias = {{0, 0.0f}};
  if (which == kTopK50) p.temperature = 0.8f, p.top_k = 50;
  if (which == kTopP09) p.temperature = 0.8f, p.top_p = 0.9f;
  Sampler sampler(vocab);
  SamplingRng rng(1);
  const bool masked = which == kMaskedGreedy || which == kSparseMaskGreedy;
  SamplingSequence seq{&p, {}, {}, &rng, masked ? std::span<const uint32_t>(mask) : std::span<const uint32_t>()};
  SampleResult out;
  for (auto _ : state) {
    sampler.sample(logits, seq, out);
    benchmark::DoNotOptimize(out.token);
  }
  static const char* names[] = {"plain greedy", "greedy, full path", "greedy, masked", "top_k 50", "top_p 0.9",
                                 "greedy, sparse mask"};
  state.SetLabel(names[which]);
}

BENCHMARK(BM_Sample)->ArgsProduct(
    {{32000, 128256}, {kPlainGreedy, kFullPathGreedy, kMaskedGreedy, kTopK50, kTopP09, kSparseMaskGreedy}});

}  // namespace

BENCHMARK_MAIN();
