// GPU sampling against the CPU Sampler (backend/llm/sampling/sampler.h) itself: for random logits
// (odd vocabularies, ties, -inf) and every combination of temperature / top_k / top_p / min_p, on
// and off, the kernel given u = SamplingRng::uniform() must pick the very token Sampler::sample
// picks with an RNG in the same state. The only allowed difference is rounding at a boundary (see
// sampling.cuh): a draw whose u x mass, or whose top_p x mass, lies within 1e-6 (relative, computed
// here in double) of a boundary of the running mass is skipped and counted, and the skips must be
// a small fraction. Greedy rows (and top_k = 1) are never skipped.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_rng.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/sampling.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::random_floats;

// The CPU's probabilities are fp32 (its own exp, within ~1e-7 of exp here), summed in double: a
// boundary of this double model is within ~1e-7 x mass of the CPU's, so 1e-6 covers it.
constexpr double kMargin = 1e-6;

// Random logits with what a sampler must get right: exact ties (copies of other entries) and -inf.
std::vector<float> tricky_logits(int64_t rows, int64_t vocab, uint32_t seed, float spread) {
  std::vector<float> logits = random_floats(static_cast<size_t>(rows * vocab), seed, -spread, spread);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits.data() + r * vocab;
    const int64_t top = std::max_element(row, row + vocab) - row;
    for (int64_t i = 0; i < vocab / 8; ++i) row[pick(gen)] = row[pick(gen)];  // ties anywhere
    row[pick(gen)] = row[top];                                                // a tie at the top
    for (int64_t i = 0; i < vocab / 16; ++i) row[pick(gen)] = -std::numeric_limits<float>::infinity();
  }
  return logits;
}

// Whether rounding could make the kernel and the CPU disagree on this draw: some boundary of the
// running mass (the top_p cut's, or the draw's) lies within kMargin x mass of its goal. A plain
// double model of the sampler: z desc, ties lower id (or id order for the plain draw).
bool near_a_boundary(const float* logits, int64_t vocab, const llm::SamplingParams& p, double u) {
  const float inv_t = 1.0f / p.temperature;
  std::vector<float> z(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) z[j] = logits[j] * inv_t;
  const float max_z = *std::max_element(z.begin(), z.end());
  const float min_z = p.min_p > 0.0f ? max_z + std::log(p.min_p) : -INFINITY;
  std::vector<int32_t> ids;
  for (int32_t j = 0; j < vocab; ++j) {
    if (z[j] > -INFINITY && z[j] >= min_z) ids.push_back(j);
  }
  const bool top_k = p.top_k > 0 && p.top_k < vocab, top_p = p.top_p < 1.0f;
  if (top_k || top_p) {
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  }
  if (top_k && ids.size() > static_cast<size_t>(p.top_k)) ids.resize(static_cast<size_t>(p.top_k));
  auto prob = [&](int32_t j) { return std::exp(static_cast<double>(z[j]) - max_z); };
  // Whether `goal` is within the margin of a boundary; sets *end to the first position that reaches.
  auto near = [&](double goal, double mass, size_t* end) {
    double run = 0.0;
    bool close = false;
    *end = ids.size();
    for (size_t i = 0; i < ids.size(); ++i) {
      run += prob(ids[i]);
      close = close || std::fabs(run - goal) <= kMargin * mass;
      if (*end == ids.size() && run > goal) *end = i + 1;
    }
    return close;
  };
  double mass = 0.0;
  for (int32_t j : ids) mass += prob(j);
  size_t end = 0;
  if (top_p) {
    if (near(p.top_p * mass, mass, &end)) return true;
    ids.resize(std::max<size_t>(end, 1));
    mass = 0.0;
    for (int32_t j : ids) mass += prob(j);
  }
  return near(u * mass, mass, &end);
}

struct Draw {
  llm::SamplingParams params;
  uint64_t seed = 0;
};

// Runs every draw on the device (one entry per draw, row d % rows of logits) and on the CPU
// Sampler; returns how many draws were skipped as too close to a boundary.
int64_t expect_same_tokens(const std::vector<float>& logits, int64_t rows, int64_t vocab, const std::vector<Draw>& draws,
                           cudaStream_t stream) {
  llm::Sampler sampler(static_cast<int32_t>(vocab));
  std::vector<SamplingRowParams> entries;
  std::vector<int32_t> want;
  std::vector<bool> skip;
  for (size_t d = 0; d < draws.size(); ++d) {
    const llm::SamplingParams& p = draws[d].params;
    const int64_t r = static_cast<int64_t>(d) % rows;
    const float* row = logits.data() + r * vocab;
    llm::SamplingRng device_rng(draws[d].seed), host_rng(draws[d].seed);
    SamplingRowParams e;
    e.row = static_cast<int32_t>(r);
    e.temperature = p.temperature;
    e.top_k = p.top_k;
    e.top_p = p.top_p;
    e.min_p = p.min_p;
    e.u = p.is_greedy() ? 0.0 : device_rng.uniform();  // as Sampler::sample draws: once, when not greedy
    entries.push_back(e);
    llm::SamplingSequence seq;
    seq.params = &p;
    seq.rng = &host_rng;
    llm::SampleResult result;
    sampler.sample(std::span<const float>(row, static_cast<size_t>(vocab)), seq, result);
    want.push_back(result.token);
    EXPECT_EQ(host_rng.next_u64(), device_rng.next_u64()) << "draw " << d << ": the CPU drew more than once";
    skip.push_back(!p.is_greedy() && p.top_k != 1 && near_a_boundary(row, vocab, p, e.u));
  }
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<SamplingRowParams> d_entries(entries);
  DeviceBuffer<int32_t> d_out(entries.size());
  const Status s = sample(d_out.get(), d_logits.get(), d_entries.get(), static_cast<int64_t>(entries.size()), vocab,
                          stream);
  EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<int32_t> got = d_out.download();
  int64_t skipped = 0;
  for (size_t d = 0; d < draws.size(); ++d) {
    if (skip[d]) {
      ++skipped;
      continue;
    }
    const llm::SamplingParams& p = draws[d].params;
    EXPECT_EQ(got[d], want[d]) << "draw " << d << " vocab " << vocab << " T " << p.temperature << " top_k "
                               << p.top_k << " top_p " << p.top_p << " min_p " << p.min_p << " seed "
                               << draws[d].seed;
  }
  return skipped;
}

llm::SamplingParams params_of(float temperature, int32_t top_k, float top_p, float min_p) {
  llm::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

using CudaSampling = CudaTest;

TEST_F(CudaSampling, EveryFilterCombinationPicksTheCpuSamplersToken) {
#if defined(FERRY_CUDA_EMULATION)
  const int64_t vocabs[] = {37, 301, 1031};
  const int kSeedsPerCase = 2;
#else
  const int64_t vocabs[] = {37, 301, 5125, 32003};
  const int kSeedsPerCase = 16;
#endif
  int64_t total = 0, skipped = 0;
  for (int64_t vocab : vocabs) {
    const int32_t top_ks[] = {0, 1, 5, static_cast<int32_t>(vocab)};  // vocab: off
    std::vector<Draw> draws;
    uint64_t seed = 100;
    for (float t : {0.0f, 0.7f, 1.3f})
      for (int32_t k : top_ks)
        for (float top_p : {1.0f, 0.9f, 0.3f})
          for (float min_p : {0.0f, 0.05f})
            for (int i = 0; i < kSeedsPerCase; ++i) draws.push_back({params_of(t, k, top_p, min_p), seed++});
    const int64_t rows = 7;
    const std::vector<float> logits = tricky_logits(rows, vocab, static_cast<uint32_t>(vocab), 4.0f);
    skipped += expect_same_tokens(logits, rows, vocab, draws, stream_);
    total += static_cast<int64_t>(draws.size());
  }
  EXPECT_LE(skipped * 50, total) << skipped << " of " << total << " draws near a boundary";
}

// A flat distribution: the CPU's top_p nucleus is larger than its 256-token probe, so it is found
// by the mass-tracking quickselect (and drawn from in the same descending order).
TEST_F(CudaSampling, LargeNucleusPicksTheCpuSamplersToken) {
#if defined(FERRY_CUDA_EMULATION)
  const int64_t vocab = 1031, rows = 3;
  const int kSeeds = 32;
#else
  const int64_t vocab = 50021, rows = 8;
  const int kSeeds = 256;
#endif
  const std::vector<float> logits = tricky_logits(rows, vocab, 7, 1.0f);
  std::vector<Draw> draws;
  for (int i = 0; i < kSeeds; ++i) {
    draws.push_back({params_of(1.5f, 0, 0.95f, 0.0f), 1000u + i});
    draws.push_back({params_of(1.0f, 0, 0.8f, 0.2f), 2000u + i});
    draws.push_back({params_of(0.9f, 700, 0.99f, 0.0f), 3000u + i});
  }
  const int64_t skipped = expect_same_tokens(logits, rows, vocab, draws, stream_);
  EXPECT_LE(skipped * 50, static_cast<int64_t>(draws.size()));
}

TEST_F(CudaSampling, GreedyIsTheFirstArgmaxAndEntriesGatherTheirRows) {
  const int64_t rows = 4, vocab = 517;
  std::vector<float> logits = random_floats(rows * vocab, 20, -5.0f, 5.0f);
  float* tie = logits.data() + 1 * vocab;  // row 1: the largest value twice, first at 40
  tie[40] = tie[300] = 9.0f;
  std::fill(logits.begin() + 2 * vocab, logits.begin() + 3 * vocab, -INFINITY);  // row 2: all -inf
  logits[2 * vocab + 3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> want(rows);
  ref::argmax(want.data(), logits.data(), rows, vocab);
  want[2] = 0;  // the first -inf (the CPU's first_argmax), NaN never winning
  // Entries in another order than the rows, some twice; greedy, and sampled with top_k = 1.
  const int32_t order[] = {3, 1, 0, 2, 1, 3};
  std::vector<SamplingRowParams> entries;
  for (int32_t i = 0; i < 6; ++i) {
    SamplingRowParams e;
    e.row = order[i];
    if (i % 2 == 0) e.temperature = 0.0f; else e.top_k = 1, e.u = 0.75;
    entries.push_back(e);
  }
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<SamplingRowParams> d_entries(entries);
  DeviceBuffer<int32_t> d_out(entries.size());
  FERRY_ASSERT_OK(sample(d_out.get(), d_logits.get(), d_entries.get(), 6, vocab, stream_));
  sync();
  const std::vector<int32_t> got = d_out.download();
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(got[i], want[order[i]]) << "entry " << i;
  EXPECT_EQ(got[1], 40);
}

TEST_F(CudaSampling, NoEntriesLaunchNothingAndBadSizesAreRejected) {
  FERRY_ASSERT_OK(sample(nullptr, nullptr, nullptr, 0, 100, stream_));
  EXPECT_FALSE(sample(nullptr, nullptr, nullptr, 1, 100, stream_).ok());
  EXPECT_FALSE(sample(nullptr, nullptr, nullptr, 0, 0, stream_).ok());
}

}  // namespace
}  // namespace ferry::kernels::cuda
