// Token sampling on the GPU with the CPU Sampler's semantics and random stream: for the uniform u
// the host drew from the sequence's own SamplingRng (backend/llm/sampling/sampling_rng.h), the
// kernel picks the token backend/llm/sampling/sampler.h's Sampler::sample picks for the same logits
// and the same draw, so a seeded request gives the same tokens on either side. Temperature, min_p,
// top_k and top_p only: logit_bias, penalties, masks and logprobs stay on the host (docs/cuda.md).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// One row's sampling parameters (device memory, one per output token). The "off" values are
// SamplingParams' (backend/llm/sampling/sampling_params.h).
struct SamplingRowParams {
  int32_t row = 0;           // the row of `logits` this entry samples
  float temperature = 1.0f;  // < 1e-5 (or NaN): greedy, the arg max of the row, lowest id on ties
  int32_t top_k = 0;         // <= 0 or >= vocab: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
  double u = 0.0;            // the draw in [0, 1): SamplingRng::uniform() (unused when greedy)
};

// For each entry i, with z = logits[params[i].row, :] / temperature (fp32, as the CPU divides):
//   min_p drops ids with z < max z + log(min_p); top_k keeps the k largest z (ties: lower id); top_p
//   keeps the shortest prefix, in descending order, whose mass reaches top_p x the mass left; then
//   out[i] = the first kept id whose running mass exceeds u x (kept mass), over ids in id order
//   when neither top_k nor top_p is on, else in descending order: z descending, ties lower id
//   first (the CPU's order: probability, ties by larger z, then lower id).
// Probabilities are exp(z - max z) computed with the CPU sampler's own exp (bit for bit), summed in
// double as the CPU sums. What can still differ is the order of the double sums (the GPU adds in a
// tree, the CPU in sequence), about 1e-16 of the mass: a token differs only when u x mass or
// top_p x mass falls that close to a boundary of the running mass, and on a real GPU min_p's
// log(min_p) (CUDA's logf, within 1 ulp of the host's) can move the min_p cut by an ulp of z.
// A row whose z are all -inf or NaN gives the first -inf id, as the CPU (which then draws nothing:
// the caller's u goes unused). Rows with NaN or infinite z are otherwise undefined.
// Device pointers; vocab < 2^31. Returns InvalidArgument / Internal; never syncs.
Status sample(int32_t* out,                     // [num_entries]
              const float* logits,              // [> max row, vocab]
              const SamplingRowParams* params,  // [num_entries]
              int64_t num_entries, int64_t vocab, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
