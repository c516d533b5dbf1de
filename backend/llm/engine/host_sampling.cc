#include "backend/llm/engine/host_sampling.h"

#include <algorithm>
#include <string>
#include <utility>

namespace ferry::llm {

Status validate_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling) {
  if (!sampling.empty() && (sampling.size() != batch.sequences.size() || batch.all_logits)) {
    return Status::InvalidArgument("sampling: one entry per sequence, and only with last-token logits");
  }
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    if (batch.sequences[s].num_draft_tokens > 0 && (sampling.empty() || sampling[s].params == nullptr)) {
      return Status::InvalidArgument("batch: sequence " + std::to_string(s) + " has drafts but does not sample");
    }
  }
  return Status::Ok();
}

namespace {

// rows_of(s), called once per sequence in order: sequence s's logits rows, or null when the caller
// samples it.
template <typename RowsOf>
void sample_sequences(Sampler& sampler, const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                      RowsOf rows_of, std::vector<SampleResult>* run, StepOutput* out) {
  const size_t vocab = static_cast<size_t>(sampler.vocab_size());
  const size_t num_seqs = sampling.size();
  out->samples.resize(num_seqs);
  out->extra_begin.resize(num_seqs);
  out->num_extra.assign(num_seqs, 0);
  int32_t num_drafts = 0;
  for (size_t s = 0; s < num_seqs; ++s) {
    out->extra_begin[s] = num_drafts;
    num_drafts += batch.sequences[s].num_draft_tokens;
  }
  if (out->extra.size() < static_cast<size_t>(num_drafts)) out->extra.resize(static_cast<size_t>(num_drafts));
  for (size_t s = 0; s < num_seqs; ++s) {
    const SequenceInput& q = batch.sequences[s];
    const size_t k = static_cast<size_t>(q.num_draft_tokens);
    const float* rows = rows_of(s);  // called for every sequence, in order
    if (sampling[s].params == nullptr) {
      out->samples[s].token = -1;
      continue;
    }
    if (rows == nullptr) continue;
    if (k == 0) {
      sampler.sample(std::span<const float>(rows, vocab), sampling[s], out->samples[s]);
      continue;
    }
    // verify() writes one contiguous run: the first result and the extras, swapped in and out so
    // every SampleResult keeps its top_logprobs capacity.
    if (run->size() < k + 1) run->resize(k + 1);
    auto extra = out->extra.begin() + out->extra_begin[s];
    auto swap_run = [&] {
      std::swap((*run)[0], out->samples[s]);
      for (size_t j = 0; j < k; ++j) std::swap((*run)[j + 1], extra[static_cast<std::ptrdiff_t>(j)]);
    };
    swap_run();
    auto drafts = batch.token_ids.subspan(static_cast<size_t>(q.query_start + q.query_len) - k, k);
    const int32_t m = sampler.verify(std::span<const float>(rows, (k + 1) * vocab), drafts, sampling[s],
                                     std::span<SampleResult>(run->data(), k + 1));
    swap_run();
    out->num_extra[s] = m - 1;
  }
}

}  // namespace

void sample_on_host(Sampler& sampler, const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                    const float* logits, std::vector<SampleResult>* run, StepOutput* out) {
  const size_t vocab = static_cast<size_t>(sampler.vocab_size());
  size_t next_row = 0;  // sequences are visited in order: s's rows follow those of 0 .. s - 1
  auto rows_of = [&](size_t s) {
    const float* rows = logits + next_row * vocab;
    next_row += 1 + static_cast<size_t>(batch.sequences[s].num_draft_tokens);
    return rows;
  };
  sample_sequences(sampler, batch, sampling, rows_of, run, out);
}

void sample_on_host(Sampler& sampler, const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                    std::span<const float* const> rows, std::vector<SampleResult>* run, StepOutput* out) {
  FERRY_CHECK(rows.size() == sampling.size());
  sample_sequences(sampler, batch, sampling, [&](size_t s) { return rows[s]; }, run, out);
}

}  // namespace ferry::llm
