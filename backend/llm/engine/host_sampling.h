// Host sampling that every engine shares once a step's logits rows are in host memory: each
// sequence that asked gets one token (Sampler::sample) or, with speculative drafts, a verified run
// (Sampler::verify) written to StepOutput's samples and extra. CpuEngine samples every step this
// way; CudaEngine the sequences it cannot sample on the device (penalties, bias, masks, logprobs,
// drafts).
//
// Thread-safety: none; the engine's step thread.
#pragma once

#include <span>
#include <vector>

#include "backend/llm/engine/engine.h"
#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/sampling/sampler.h"
#include "common/status.h"

namespace ferry::llm {

// InvalidArgument when `sampling` does not fit the batch: not one entry per sequence, sampling
// with all_logits, or a sequence with drafts that does not sample. Empty `sampling` is fine.
Status validate_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling);

// logits: [num_rows, vocab] in StepLayout::logit_rows order (1 + num_draft_tokens rows per
// sequence). run: scratch the engine keeps (capacity reused). Fills out->samples, extra,
// extra_begin and num_extra for sampling.size() sequences.
void sample_on_host(Sampler& sampler, const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                    const float* logits, std::vector<SampleResult>* run, StepOutput* out);

// The same for some of the sequences: rows[s] points at sequence s's 1 + num_draft_tokens logits
// rows ([rows, vocab]), or is null for a sequence the caller samples itself (rows.size() ==
// sampling.size()). Sizes samples, extra, extra_begin and num_extra for every sequence, as above,
// and fills them for the sequences with rows and those that do not sample (token -1); a sequence
// the caller samples keeps num_extra 0 and whatever its samples entry held.
void sample_on_host(Sampler& sampler, const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                    std::span<const float* const> rows, std::vector<SampleResult>* run, StepOutput* out);

}  // namespace ferry::llm
