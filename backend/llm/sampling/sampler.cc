#include "backend/llm/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common/status.h"

namespace ferry::llm {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// top_p without top_k: the most likely tokens searched for the nucleus before the whole vocabulary.
constexpr size_t kNucleusProbe = 256;

// The largest value, NaNs skipped (-inf for an empty or all-NaN row), in one SIMD pass: ~10x faster
// than std::max_element's scalar compare-and-branch over a 128k vocabulary.
float max_value(std::span<const float> v) {
  const size_t n = v.size();
  const float* p = v.data();
  size_t i = 0;
  float best = kNegInf;
#if defined(__SSE2__)
  __m128 a = _mm_set1_ps(kNegInf), b = a, c = a, d = a;
  // _mm_max_ps(x, m) returns m when x is NaN, so NaNs are skipped.
  for (; i + 16 <= n; i += 16) {
    a = _mm_max_ps(_mm_loadu_ps(p + i), a);
    b = _mm_max_ps(_mm_loadu_ps(p + i + 4), b);
    c = _mm_max_ps(_mm_loadu_ps(p + i + 8), c);
    d = _mm_max_ps(_mm_loadu_ps(p + i + 12), d);
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(a, b), _mm_max_ps(c, d)));
  for (float x : lanes) best = x > best ? x : best;
#endif
  for (; i < n; ++i) best = p[i] > best ? p[i] : best;
  return best;
}

// exp(x) for x <= 0, as a degree-7 Taylor polynomial of the remainder after taking out powers of
// two (x = n ln2 + r, |r| <= ln2 / 2: the next term is below 6e-9 of the result, under float
// rounding): 0 exactly for x < -87 (-inf, masked tokens, included), where exp would be subnormal.
// Plain and SSE2 forms compute the same operations in the same order.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 split so that n * kLn2Hi is exact for |n| < 128
constexpr float kLn2Lo = 1.428606765330187e-06f;
constexpr float kExpUnderflow = -87.0f;
constexpr float kTaylor[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};

float exp_nonpositive(float x) {
  if (!(x >= kExpUnderflow)) return 0.0f;
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float y = kTaylor[0];
  for (size_t k = 1; k < std::size(kTaylor); ++k) y = y * r + kTaylor[k];
  return std::ldexp(y, static_cast<int>(n));
}

// out[i] = exp(in[i] - shift) for in[i] <= shift; returns the sum (in double, as the sampler adds).
double exp_shifted(const float* in, float shift, float* out, size_t n) {
  double total = 0.0;
  size_t i = 0;
#if defined(__SSE2__)
  const __m128 vshift = _mm_set1_ps(shift), floor = _mm_set1_ps(kExpUnderflow);
  __m128d sum_lo = _mm_setzero_pd(), sum_hi = _mm_setzero_pd();  // two chains of double sums
  for (; i + 4 <= n; i += 4) {
    const __m128 x = _mm_sub_ps(_mm_loadu_ps(in + i), vshift);
    const __m128 live = _mm_cmpge_ps(x, floor);  // false for -inf, NaN and underflow
    const __m128 xc = _mm_max_ps(x, floor);
    const __m128i ni = _mm_cvtps_epi32(_mm_mul_ps(xc, _mm_set1_ps(kLog2e)));  // round to nearest
    const __m128 nf = _mm_cvtepi32_ps(ni);
    const __m128 r = _mm_sub_ps(_mm_sub_ps(xc, _mm_mul_ps(nf, _mm_set1_ps(kLn2Hi))), _mm_mul_ps(nf, _mm_set1_ps(kLn2Lo)));
    __m128 y = _mm_set1_ps(kTaylor[0]);
    for (size_t k = 1; k < std::size(kTaylor); ++k) y = _mm_add_ps(_mm_mul_ps(y, r), _mm_set1_ps(kTaylor[k]));
    // y * 2^n: n in [-126, 0] here, so 2^n is a normal float built from its exponent bits.
    const __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, _mm_set1_epi32(127)), 23));
    const __m128 e = _mm_and_ps(_mm_mul_ps(y, scale), live);
    _mm_storeu_ps(out + i, e);
    sum_lo = _mm_add_pd(sum_lo, _mm_cvtps_pd(e));
    sum_hi = _mm_add_pd(sum_hi, _mm_cvtps_pd(_mm_movehl_ps(e, e)));
  }
  alignas(16) double lanes[2];
  _mm_store_pd(lanes, _mm_add_pd(sum_lo, sum_hi));
  total = lanes[0] + lanes[1];
#endif
  for (; i < n; ++i) total += out[i] = exp_nonpositive(in[i] - shift);
  return total;
}

// The first index of the largest value, NaNs never winning (an all-NaN or empty row gives 0): the
// arg max of a logits row in two SIMD passes (the largest value, then where it first is).
int32_t first_argmax(std::span<const float> v) {
  const size_t n = v.size();
  const float* p = v.data();
  const float best = max_value(v);
  size_t i = 0;
#if defined(__SSE2__)
  const __m128 target = _mm_set1_ps(best);
  for (; i + 4 <= n; i += 4) {
    const int hits = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(p + i), target));
    if (hits != 0) return static_cast<int32_t>(i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(hits))));
  }
#endif
  for (; i < n; ++i) {
    if (p[i] == best) return static_cast<int32_t>(i);
  }
  return 0;
}

}  // namespace

Sampler::Sampler(int32_t vocab_size)
    : vocab_size_(vocab_size),
      work_(static_cast<size_t>(vocab_size)),
      order_(static_cast<size_t>(vocab_size)),
      probs_(static_cast<size_t>(vocab_size)),
      counts_(static_cast<size_t>(vocab_size), 0),
      seen_(static_cast<size_t>(vocab_size), 0) {
  FERRY_CHECK(vocab_size > 0);
}

void Sampler::apply_penalties(const SamplingSequence& seq) {
  const SamplingParams& p = *seq.params;
  const bool rep = p.repetition_penalty != 1.0f;
  const bool freq_or_presence = p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  if (!rep && !freq_or_presence) return;
  touched_.clear();
  auto touch = [&](int32_t t) {
    FERRY_CHECK(t >= 0 && t < vocab_size_);
    if (!seen_[static_cast<size_t>(t)]) {
      seen_[static_cast<size_t>(t)] = 1;
      touched_.push_back(t);
    }
  };
  for (int32_t t : seq.output_ids) {
    touch(t);
    ++counts_[static_cast<size_t>(t)];
  }
  if (rep) {
    for (int32_t t : seq.prompt_ids) touch(t);
  }
  for (int32_t t : touched_) {
    float& l = work_[static_cast<size_t>(t)];
    if (rep) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    uint32_t c = counts_[static_cast<size_t>(t)];
    if (c > 0) l -= p.frequency_penalty * static_cast<float>(c) + p.presence_penalty;
  }
  for (int32_t t : touched_) {
    seen_[static_cast<size_t>(t)] = 0;
    counts_[static_cast<size_t>(t)] = 0;
  }
}

int32_t Sampler::argmax() const { return first_argmax(work_); }

// Draws from softmax(work_) restricted by min_p / top_k / top_p. work_ already holds logits / T.
int32_t Sampler::draw(const SamplingParams& p, SamplingRng& rng) {
  const size_t vocab = work_.size();
  const float max_logit = max_value(work_);
  if (max_logit == kNegInf) return argmax();  // everything masked: nothing to draw from
  double total = 0.0;
  bool all_ids = false, sorted = true;
  const size_t num_candidates = select_candidates(p, max_logit, &total, &all_ids, &sorted);
  if (all_ids) {
    double u = rng.uniform() * total;
    int32_t last_live = 0;
    for (size_t i = 0; i < vocab; ++i) {
      if (probs_[i] == 0.0f) continue;
      last_live = static_cast<int32_t>(i);
      u -= probs_[i];
      if (u < 0.0) return static_cast<int32_t>(i);
    }
    return last_live;  // rounding left a sliver of mass
  }
  auto prob = [this](int32_t t) { return probs_[static_cast<size_t>(t)]; };
  double u = rng.uniform() * total;
  if (!sorted) {
    // A nucleus from select_nucleus is not sorted: the same mass-tracking quickselect finds the
    // first token, in descending order, whose cumulative mass exceeds u.
    double kept = 0.0;
    bool reached = false;
    const size_t end = select_nucleus(num_candidates, u, /*strict=*/true, &kept, &reached);
    if (reached) return order_[end - 1];
  } else {
    for (size_t i = 0; i < num_candidates; ++i) {
      u -= prob(order_[i]);
      if (u < 0.0) return order_[i];
    }
  }
  // Rounding left a sliver of mass: take the last candidate that is not masked.
  for (size_t i = num_candidates; i-- > 0;) {
    if (prob(order_[i]) > 0.0f) return order_[i];
  }
  return order_[0];
}

// The candidates of a draw from work_ (logits / T whose largest value, max_logit, is finite):
// applies min_p to work_, leaves the unnormalized probabilities of the candidates in probs_, and
// returns either vocab with *all_ids (no top_k / top_p: every id, those of probability 0 included,
// probs_ filled for all) or n with the candidates in order_[0, n) (probs_ is meaningful for them
// only), in descending order (see select_nucleus) unless *sorted is false: a nucleus found by
// select_nucleus, whose order a draw establishes itself. *total: their mass.
size_t Sampler::select_candidates(const SamplingParams& p, float max_logit, double* total, bool* all_ids,
                                  bool* sorted) {
  const size_t vocab = work_.size();
  if (p.min_p > 0.0f) {
    const float threshold = max_logit + std::log(p.min_p);
    for (float& l : work_) {
      if (l < threshold) l = kNegInf;
    }
  }
  const bool use_top_k = p.top_k > 0 && static_cast<size_t>(p.top_k) < vocab;
  const bool use_top_p = p.top_p < 1.0f;
  *all_ids = !use_top_k && !use_top_p;
  *total = 0.0;
  auto prob = [this](int32_t t) { return probs_[static_cast<size_t>(t)]; };
  size_t num_candidates = vocab;
  if (use_top_k) {
    // The k largest logits are the k most likely tokens: only their probabilities are computed.
    num_candidates = static_cast<size_t>(p.top_k);
    select_top_k(num_candidates);
    for (size_t i = 0; i < num_candidates; ++i) {
      const auto t = static_cast<size_t>(order_[i]);
      probs_[t] = exp_nonpositive(work_[t] - max_logit);
      *total += probs_[t];
    }
  } else {
    // One exp pass: probs_ holds the unnormalized probabilities that every later step reuses.
    *total = exp_shifted(work_.data(), max_logit, probs_.data(), vocab);
  }
  if (!use_top_p) return num_candidates;
  const double target = static_cast<double>(p.top_p) * *total;
  // A language model's nucleus is usually small: without top_k, look for it among the most likely
  // tokens first (found with comparisons only), and partition the whole vocabulary only when their
  // mass falls short.
  if (!use_top_k) {
    num_candidates = std::min<size_t>(vocab, kNucleusProbe);
    select_top_k(num_candidates);
  }
  // The candidates are sorted: the shortest prefix that reaches top_p of the mass.
  double cum = 0.0;
  size_t keep = 0;
  while (keep < num_candidates && cum < target) cum += prob(order_[keep++]);
  if (use_top_k || cum >= target) {
    *total = cum;
    return std::max<size_t>(keep, 1);
  }
  std::iota(order_.begin(), order_.end(), 0);
  *sorted = false;
  bool reached = false;
  return std::max<size_t>(select_nucleus(vocab, target, /*strict=*/false, total, &reached), 1);
}

// Puts the ids of the k largest logits of work_ (ties: lower id first) into order_[0, k), largest
// first: the k most likely tokens. Small k: one scan with a min-heap of size k; most tokens fail
// against its smallest and are skipped four at a time with one SIMD compare. Large k: nth_element.
void Sampler::select_top_k(size_t k) {
  auto logit = [this](int32_t t) { return work_[static_cast<size_t>(t)]; };
  auto by_logit_desc = [&](int32_t a, int32_t b) { return logit(a) > logit(b) || (logit(a) == logit(b) && a < b); };
  const size_t vocab = work_.size();
  if (k > 4096) {
    std::iota(order_.begin(), order_.end(), 0);
    auto kth = order_.begin() + static_cast<std::ptrdiff_t>(k);
    std::nth_element(order_.begin(), kth - 1, order_.end(), by_logit_desc);
    std::sort(order_.begin(), kth, by_logit_desc);
    return;
  }
  // order_[0, k) is a heap whose front is the smallest kept logit.
  auto heap_begin = order_.begin();
  auto heap_end = order_.begin() + static_cast<std::ptrdiff_t>(k);
  std::iota(heap_begin, heap_end, 0);
  std::make_heap(heap_begin, heap_end, by_logit_desc);
  const float* w = work_.data();
  // Scanning by increasing id, an equal logit never beats the kept one: only a larger one enters.
  auto offer = [&](size_t i) {
    if (w[i] <= logit(*heap_begin)) return;
    std::pop_heap(heap_begin, heap_end, by_logit_desc);
    *(heap_end - 1) = static_cast<int32_t>(i);
    std::push_heap(heap_begin, heap_end, by_logit_desc);
  };
  size_t i = k;
#if defined(__SSE2__)
  for (; i + 4 <= vocab; i += 4) {
    const __m128 floor = _mm_set1_ps(logit(*heap_begin));
    if (_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(w + i), floor)) == 0) continue;  // none enters
    for (size_t j = i; j < i + 4; ++j) offer(j);
  }
#endif
  for (; i < vocab; ++i) offer(i);
  std::sort(heap_begin, heap_end, by_logit_desc);
}

// Moves the nucleus of order_[0, n) (the fewest most-likely tokens whose mass reaches `target`,
// or exceeds it when `strict`) to the front of order_ and returns its size, without sorting: a
// quickselect that partitions by probability and keeps track of the mass on each side, expected
// O(n). The descending order is by probability, ties by larger logit (distinct logits can round to
// one probability), then lower id: the order of select_top_k, so that the CUDA sampler
// (kernels/cuda/sampling.cuh) can follow it. The nucleus's last token, order_[size - 1], is the one
// at which the running mass reaches the target (*reached; false only when rounding left order_[0, n)
// short, and then all n are returned); *kept_mass is the nucleus's mass. probs_ holds the
// unnormalized probabilities.
size_t Sampler::select_nucleus(size_t n, double target, bool strict, double* kept_mass, bool* reached) {
  auto prob = [this](int32_t t) { return probs_[static_cast<size_t>(t)]; };
  auto mass = [&](size_t a, size_t b) {
    double m = 0.0;
    for (size_t i = a; i < b; ++i) m += prob(order_[i]);
    return m;
  };
  auto logit = [this](int32_t t) { return work_[static_cast<size_t>(t)]; };
  auto by_prob_desc = [&](int32_t a, int32_t b) {
    if (prob(a) != prob(b)) return prob(a) > prob(b);
    return logit(a) > logit(b) || (logit(a) == logit(b) && a < b);
  };
  // Whether a running mass m has reached the target.
  auto reaches = [&](double m, double goal) { return strict ? m > goal : m >= goal; };
  size_t lo = 0, hi = n;  // [0, lo) kept for sure; the boundary lies in [lo, hi)
  double need = target, kept = 0.0;
  auto take_sorted_prefix = [&](size_t a, size_t b) {
    std::sort(order_.begin() + static_cast<std::ptrdiff_t>(a), order_.begin() + static_cast<std::ptrdiff_t>(b),
              by_prob_desc);
    size_t i = a;
    while (i < b && !reaches(0.0, need)) {
      need -= prob(order_[i]);
      kept += prob(order_[i]);
      ++i;
    }
    return i;
  };
  while (hi - lo > 64) {
    const float pivot = std::max(std::min(prob(order_[lo]), prob(order_[hi - 1])),
                                 std::min(std::max(prob(order_[lo]), prob(order_[hi - 1])), prob(order_[(lo + hi) / 2])));
    auto first = order_.begin() + static_cast<std::ptrdiff_t>(lo);
    auto last = order_.begin() + static_cast<std::ptrdiff_t>(hi);
    auto greater_end = std::partition(first, last, [&](int32_t t) { return prob(t) > pivot; });
    auto equal_end = std::partition(greater_end, last, [&](int32_t t) { return prob(t) == pivot; });
    const size_t g = static_cast<size_t>(greater_end - order_.begin());
    const size_t e = static_cast<size_t>(equal_end - order_.begin());
    const double mass_greater = mass(lo, g);
    if (reaches(mass_greater, need)) {
      hi = g;  // the boundary is among the greater ones
      continue;
    }
    const double mass_equal = mass(g, e);
    if (reaches(mass_greater + mass_equal, need)) {
      need -= mass_greater;
      kept += mass_greater;
      const size_t end = take_sorted_prefix(g, e);  // ties: larger logits, then lower ids first
      *kept_mass = kept;
      *reached = reaches(0.0, need);
      return end;
    }
    need -= mass_greater + mass_equal;
    kept += mass_greater + mass_equal;
    lo = e;
  }
  const size_t end = take_sorted_prefix(lo, hi);
  *kept_mass = kept;
  *reached = reaches(0.0, need);
  return end;
}

void Sampler::fill_logprobs(std::span<const float> raw, int32_t num_logprobs, SampleResult& out) {
  out.top_logprobs.clear();
  if (num_logprobs < 0) return;
  const float max_logit = *std::max_element(raw.begin(), raw.end());
  double total = 0.0;
  for (float l : raw) total += std::exp(static_cast<double>(l - max_logit));
  const double log_z = static_cast<double>(max_logit) + std::log(total);
  const float chosen = raw[static_cast<size_t>(out.token)];
  out.logprob = static_cast<float>(static_cast<double>(chosen) - log_z);
  int32_t rank = 1;
  for (float l : raw) rank += l > chosen ? 1 : 0;
  out.rank = rank;
  if (num_logprobs == 0) return;
  const size_t n = std::min(static_cast<size_t>(num_logprobs), raw.size());
  std::iota(order_.begin(), order_.end(), 0);
  auto by_raw_desc = [&raw](int32_t a, int32_t b) {
    float la = raw[static_cast<size_t>(a)], lb = raw[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(n), order_.end(), by_raw_desc);
  for (size_t i = 0; i < n; ++i) {
    int32_t t = order_[i];
    out.top_logprobs.push_back({t, static_cast<float>(static_cast<double>(raw[static_cast<size_t>(t)]) - log_z)});
  }
}

std::span<const float> Sampler::process_logits(std::span<const float> logits, const SamplingSequence& seq) {
  FERRY_CHECK(logits.size() == work_.size());
  FERRY_CHECK(seq.params != nullptr);
  std::copy(logits.begin(), logits.end(), work_.begin());
  for (const auto& [token, bias] : seq.params->logit_bias) {
    if (token >= 0 && token < vocab_size_) work_[static_cast<size_t>(token)] += bias;
  }
  // min_tokens: nothing that would stop the sequence may be chosen before it has that many tokens.
  if (std::cmp_less(seq.output_ids.size(), seq.params->min_tokens)) {
    for (int32_t token : seq.params->min_tokens_masked_ids) {
      if (token >= 0 && token < vocab_size_) work_[static_cast<size_t>(token)] = -std::numeric_limits<float>::infinity();
    }
  }
  apply_penalties(seq);
  if (!seq.allowed_tokens.empty()) apply_mask(seq.allowed_tokens);
  return work_;
}

void Sampler::apply_mask(std::span<const uint32_t> allowed) {
  FERRY_CHECK(allowed.size() * 32 >= work_.size());
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  const size_t n = work_.size();
  const size_t full_words = n / 32;
  for (size_t w = 0; w < full_words; ++w) {
    const uint32_t bits = allowed[w];
    if (bits == 0xffffffffu) continue;  // inside a JSON string most words are all allowed
    float* row = work_.data() + w * 32;
    if (bits == 0) {  // between values most are all refused
      std::fill(row, row + 32, kMasked);
      continue;
    }
    for (uint32_t j = 0; j < 32; ++j) {
      if (((bits >> j) & 1u) == 0) row[j] = kMasked;
    }
  }
  for (size_t t = full_words * 32; t < n; ++t) {
    if (((allowed[full_words] >> (t - full_words * 32)) & 1u) == 0) work_[t] = kMasked;
  }
}

// Whether process_logits would leave the logits as they are (no bias, penalty, min_tokens block or
// mask applies now).
bool Sampler::leaves_logits_unchanged(const SamplingSequence& seq) {
  const SamplingParams& p = *seq.params;
  return p.logit_bias.empty() && !p.has_penalties() && seq.allowed_tokens.empty() &&
         !(std::cmp_less(seq.output_ids.size(), p.min_tokens) && !p.min_tokens_masked_ids.empty());
}

void Sampler::sample(std::span<const float> logits, const SamplingSequence& seq, SampleResult& out) {
  FERRY_CHECK(seq.params != nullptr);
  const SamplingParams& p = *seq.params;
  if (p.is_greedy() && leaves_logits_unchanged(seq)) {
    // Plain greedy: the arg max of the logits as given (first one on ties, as argmax()), without
    // copying the vocabulary into the scratch row.
    FERRY_CHECK(logits.size() == work_.size());
    out.token = first_argmax(logits);
  } else if (p.is_greedy()) {
    process_logits(logits, seq);
    out.token = argmax();
  } else {
    process_logits(logits, seq);
    FERRY_CHECK(seq.rng != nullptr);
    const float inv_t = 1.0f / p.temperature;
    for (float& l : work_) l *= inv_t;
    out.token = draw(p, *seq.rng);
  }
  out.logprob = 0.0f;
  out.rank = 0;
  fill_logprobs(logits, p.num_logprobs, out);
}

void Sampler::sample_batch(std::span<const float> logits, std::span<const SamplingSequence> seqs,
                           std::span<SampleResult> results) {
  FERRY_CHECK(results.size() == seqs.size());
  FERRY_CHECK(logits.size() == seqs.size() * work_.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    sample(logits.subspan(i * work_.size(), work_.size()), seqs[i], results[i]);
  }
}

void Sampler::distribution(std::span<const float> logits, const SamplingSequence& seq, std::span<float> probs) {
  FERRY_CHECK(probs.size() == work_.size());
  const SamplingParams& p = *seq.params;
  process_logits(logits, seq);
  std::fill(probs.begin(), probs.end(), 0.0f);
  if (p.is_greedy()) {
    probs[static_cast<size_t>(argmax())] = 1.0f;
    return;
  }
  const float inv_t = 1.0f / p.temperature;
  for (float& l : work_) l *= inv_t;
  const float max_logit = max_value(work_);
  if (max_logit == kNegInf) {  // everything masked: draw() would take the arg max
    probs[static_cast<size_t>(argmax())] = 1.0f;
    return;
  }
  double total = 0.0;
  bool all_ids = false, sorted = true;
  const size_t n = select_candidates(p, max_logit, &total, &all_ids, &sorted);
  const double inv_total = 1.0 / total;
  if (all_ids) {
    for (size_t i = 0; i < probs.size(); ++i) probs[i] = static_cast<float>(probs_[i] * inv_total);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const auto t = static_cast<size_t>(order_[i]);
    probs[t] = static_cast<float>(probs_[t] * inv_total);
  }
}

int32_t Sampler::draw_from(std::span<const float> probs, SamplingRng& rng) {
  double total = 0.0;
  for (float x : probs) total += x > 0.0f ? x : 0.0f;
  double u = rng.uniform() * total;
  int32_t last_live = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (!(probs[i] > 0.0f)) continue;
    last_live = static_cast<int32_t>(i);
    u -= probs[i];
    if (u < 0.0) return last_live;
  }
  return last_live;  // rounding left a sliver of mass
}

bool Sampler::accept_from_draft(std::span<const float> row, const SamplingSequence& seq, std::span<const float> q,
                                int32_t draft, SampleResult& out) {
  FERRY_CHECK(draft >= 0 && draft < vocab_size_);
  target_probs_.resize(work_.size());
  distribution(row, seq, target_probs_);
  const auto d = static_cast<size_t>(draft);
  // Accept with probability min(1, p(d) / q(d)): u < p / q, written without the division.
  const double u = seq.rng->uniform();
  if (u * static_cast<double>(q[d]) < static_cast<double>(target_probs_[d])) {
    out.token = draft;
    return true;
  }
  // Rejected: the residual max(0, p - q), normalized by draw_from.
  double residual = 0.0;
  for (size_t t = 0; t < target_probs_.size(); ++t) {
    target_probs_[t] = std::max(0.0f, target_probs_[t] - q[t]);
    residual += target_probs_[t];
  }
  if (residual <= 0.0) {
    // p <= q everywhere means p == q (both sum to 1), where acceptance is certain: only rounding
    // rejected d.
    out.token = draft;
    return true;
  }
  out.token = draw_from(target_probs_, *seq.rng);
  return false;
}

int32_t Sampler::verify(std::span<const float> logits, std::span<const int32_t> drafts, const SamplingSequence& seq,
                        std::span<SampleResult> out) {
  const size_t vocab = work_.size();
  const size_t k = drafts.size();
  FERRY_CHECK(logits.size() == (k + 1) * vocab);
  FERRY_CHECK(out.size() >= k + 1);
  FERRY_CHECK(seq.params != nullptr);
  const SamplingParams& p = *seq.params;
  // A draft model's proposals of a sampled request: the general rule with the full q.
  const bool full_q = !seq.draft_probs.empty() && !p.is_greedy();
  if (full_q) FERRY_CHECK(seq.draft_probs.size() >= k * vocab && seq.rng != nullptr);
  // Penalties and min_tokens see the accepted drafts as generated tokens; without them the history
  // is unused.
  const bool penalized = p.has_penalties() || p.min_tokens > 0;
  SamplingSequence row_seq = seq;
  if (penalized) history_.assign(seq.output_ids.begin(), seq.output_ids.end());
  for (size_t j = 0; j <= k; ++j) {
    if (penalized) row_seq.output_ids = history_;
    const std::span<const float> row = logits.subspan(j * vocab, vocab);
    if (j < k && full_q) {
      const bool accepted = accept_from_draft(row, row_seq, seq.draft_probs.subspan(j * vocab, vocab), drafts[j], out[j]);
      out[j].logprob = 0.0f;
      out[j].rank = 0;
      fill_logprobs(row, p.num_logprobs, out[j]);
      if (!accepted) return static_cast<int32_t>(j + 1);
    } else {
      sample(row, row_seq, out[j]);
      if (j == k || out[j].token != drafts[j]) return static_cast<int32_t>(j + 1);
    }
    if (penalized) history_.push_back(drafts[j]);
  }
  return static_cast<int32_t>(k + 1);  // not reached
}

}  // namespace ferry::llm
