// ferry::llm::Sampler: picks the next token of each sequence from its fp32 logits, on the CPU.
//
// For one sequence, in this order (vLLM's order):
//   1. logit_bias added; while fewer than min_tokens tokens are generated, min_tokens_masked_ids
//      set to -inf;
//   2. repetition penalty over prompt + generated tokens (positive logits divided, negative
//      multiplied), then frequency (x count) and presence penalties over generated tokens (OpenAI);
//   2b. tokens outside the sequence's allowed_tokens mask (constrained decoding) set to -inf;
//   3. greedy (temperature < 1e-5): the arg max of the penalized logits (lowest id on ties), no RNG
//      draw; when nothing of 1-2b applies, taken from the logits as given, with no copy. Otherwise: logits / temperature; min_p drops tokens with p < min_p * p_max; top_k keeps
//      the k largest; top_p keeps the smallest high-to-low prefix whose mass (renormalized after
//      top_k) reaches top_p; one draw u = rng.uniform() picks among the rest: the first candidate
//      whose running mass exceeds u x (their mass), over ids in id order when neither top_k nor
//      top_p is on, else in descending order (probability, ties by larger logit / T, then lower id).
//      kernels/cuda/sampling.cuh follows the same rules on the GPU for a u drawn here.
// Logprobs are those of the RAW model distribution (log_softmax of the logits as given, before
// bias, penalties, temperature and truncation) — vLLM's default ("raw_logprobs"). `rank` is the
// chosen token's 1-based rank in that distribution.
//
// Cost per sequence: O(vocab) passes; top_k scans once with a size-k heap (nth_element for k >
// 4096) and sorts only the k kept;
// top_p without top_k finds the nucleus by a mass-tracking quickselect, expected O(vocab), with no
// full sort. Scratch
// buffers live in the Sampler and are reused, so steady-state sampling allocates nothing (the
// top_logprobs vectors of reused SampleResults keep their capacity).
//
// Thread-safety: a Sampler is not synchronized; use one per thread (or per engine loop).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/llm/sampling/sampling_params.h"
#include "backend/llm/sampling/sampling_rng.h"

namespace ferry::llm {

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // raw log-softmax of the chosen token (when num_logprobs >= 0)
  int32_t rank = 0;      // 1 = most likely under the raw distribution (when num_logprobs >= 0)
  std::vector<TokenLogprob> top_logprobs;  // num_logprobs entries, most likely first
};

// One sequence of a batch. Pointers are borrowed for the duration of the call.
struct SamplingSequence {
  const SamplingParams* params = nullptr;
  std::span<const int32_t> prompt_ids;
  std::span<const int32_t> output_ids;  // generated so far
  SamplingRng* rng = nullptr;           // the sequence's own stream; advanced by non-greedy draws
  // Constrained decoding: empty, or a bitmask of the tokens that may be chosen (bit id % 32 of word
  // id / 32; at least (vocab_size + 31) / 32 words). Masked-out tokens get -inf after penalties.
  std::span<const uint32_t> allowed_tokens{};
  // Speculative decoding with a draft model (verify()): empty, or the draft's distributions q of
  // the drafts, [num_drafts, vocab_size] row-major (row j: the law drafts[j] was drawn from).
  // Empty means each draft is a point mass (n-gram proposals, or any proposal to a greedy request).
  std::span<const float> draft_probs{};
};

class Sampler {
 public:
  explicit Sampler(int32_t vocab_size);

  int32_t vocab_size() const { return vocab_size_; }

  // Samples one token. logits: [vocab_size]. Token ids in the histories must be in range
  // (FERRY_CHECK); params should have passed SamplingParams::validate.
  void sample(std::span<const float> logits, const SamplingSequence& seq, SampleResult& out);

  // Whether steps 1-2b change nothing for seq now (no bias, penalty, min_tokens block or mask):
  // greedy is then the arg max of the logits as given (what an engine may compute on its device).
  static bool leaves_logits_unchanged(const SamplingSequence& seq);

  // Steps 1-2b only (bias, penalties, mask): the logits greedy decoding would take the arg max of.
  // Returns a view of internal scratch, valid until the next call on this Sampler.
  std::span<const float> process_logits(std::span<const float> logits, const SamplingSequence& seq);

  // A batch: logits [num_seqs, vocab_size] row-major, one result per sequence (results.size() ==
  // seqs.size()). Each sequence uses its own params and RNG.
  void sample_batch(std::span<const float> logits, std::span<const SamplingSequence> seqs,
                    std::span<SampleResult> results);

  // The law sample() draws this position's token from, as probabilities (probs: [vocab_size], sum
  // 1): for a greedy request a point mass on the arg max of the processed logits (steps 1-2b);
  // otherwise softmax(processed logits / temperature) restricted by min_p, top_k and top_p and
  // renormalized. Draws nothing; O(vocab) on top of what sample() costs.
  void distribution(std::span<const float> logits, const SamplingSequence& seq, std::span<float> probs);
  // One draw from `probs` (non-negative, summing to ~1): the inverse CDF over ids in order, with
  // one rng.uniform(). Rounding that leaves a sliver of mass picks the last token with mass.
  static int32_t draw_from(std::span<const float> probs, SamplingRng& rng);

  // Speculative decoding: verifies k proposed tokens `drafts` against the target model's logits at
  // the k + 1 positions that end with them. logits: [k + 1, vocab_size]; row j scores the token
  // that follows seq's history plus drafts[0, j). out: k + 1 results. Returns m in [1, k + 1]:
  // out[0, m) are the tokens to emit, in order; out[j].token == drafts[j] for j < m - 1 (accepted),
  // and out[m - 1] is the target's own token (the correction of a rejected draft, or the bonus
  // token after k accepted ones).
  //
  // Row j is sampled exactly as sample() samples that position (penalties over the history plus
  // the drafts accepted before it; one draw from seq.rng when not greedy), and the run stops at the
  // first row whose token differs from its draft. For a greedy request that is "accept the longest
  // prefix equal to the target's arg max". For a sampled one it is the standard rejection rule for
  // a proposal q that is a point mass on the draft d (n-gram proposals): accept with
  // min(1, p(d) / q(d)) = p(d), and on rejection draw from max(0, p - q) normalized, which is p
  // without d -- exactly the law of "draw t ~ p, accept iff t == d, else emit t". Since every
  // emitted token costs one RNG draw, as in sample(), a seeded request emits the same tokens with
  // speculation as without. Logprobs (num_logprobs >= 0) are those of each emitted token's row.
  //
  // With seq.draft_probs (a draft model's proposals, each drafts[j] drawn from its row q_j) and a
  // sampled request, row j uses the general rule instead: with p_j = distribution(row j), accept
  // drafts[j] with probability min(1, p_j(d) / q_j(d)) (one draw), else emit a token drawn from
  // max(0, p_j - q_j) normalized (a second draw) and stop; after k accepted drafts the bonus token
  // is sampled from row k as sample() would. Every emitted token then follows the target's law
  // whatever q is; the draws come from seq.rng in a fixed order, so a seeded request is
  // reproducible (its tokens differ from plain decoding's, which draws differently). Greedy
  // requests ignore draft_probs: the arg max rule above is exact for them.
  int32_t verify(std::span<const float> logits, std::span<const int32_t> drafts, const SamplingSequence& seq,
                 std::span<SampleResult> out);

 private:
  void apply_penalties(const SamplingSequence& seq);
  void apply_mask(std::span<const uint32_t> allowed);
  int32_t argmax() const;
  int32_t draw(const SamplingParams& p, SamplingRng& rng);
  void select_top_k(size_t k);
  size_t select_nucleus(size_t n, double target, bool strict, double* kept_mass, bool* reached);
  void fill_logprobs(std::span<const float> raw, int32_t num_logprobs, SampleResult& out);
  size_t select_candidates(const SamplingParams& p, float max_logit, double* total, bool* all_ids, bool* sorted);
  // verify()'s general rule for row j (see verify): true when drafts[j] is accepted, else
  // out.token is the token drawn from the residual.
  bool accept_from_draft(std::span<const float> row, const SamplingSequence& seq, std::span<const float> q,
                         int32_t draft, SampleResult& out);

  int32_t vocab_size_;
  std::vector<float> work_;          // [vocab] processed logits
  std::vector<int32_t> order_;       // [vocab] candidate ids
  std::vector<float> probs_;         // [vocab] exp(logit - max): unnormalized probabilities
  std::vector<uint32_t> counts_;     // [vocab] generated-token counts; zero between calls
  std::vector<uint8_t> seen_;        // [vocab] prompt-or-generated flags; zero between calls
  std::vector<int32_t> touched_;     // ids whose counts_/seen_ are non-zero during a call
  std::vector<int32_t> history_;     // verify(): generated tokens plus the drafts accepted so far
  std::vector<float> target_probs_;  // [vocab] verify() with draft_probs: p of the current row
};

}  // namespace ferry::llm
