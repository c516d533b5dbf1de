// Token sampling on the GPU: temperature, min_p, top_k, top_p and one seeded Philox draw per row,
// over fp32 logits. The GPU counterpart of the draw in backend/llm/sampling/sampler.h (same order of
// filters: temperature, min_p, top_k, top_p), minus logit_bias, penalties and logprobs, which stay on
// the host for now (docs/cuda.md).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ferry::kernels::cuda {

// One row's sampling parameters (device memory, one per row).
struct SamplingRowParams {
  float temperature = 1.0f;  // < 1e-5: greedy (the arg max, lowest id on ties), no draw
  int32_t top_k = 0;         // <= 0 or >= vocab: off
  float top_p = 1.0f;        // outside (0, 1): off
  float min_p = 0.0f;        // <= 0: off; drops tokens with p < min_p * p_max
  uint64_t seed = 0;         // the request's seed (Philox key)
  uint64_t offset = 0;       // the request's draw counter (Philox counter): advance by one per draw
};

// For each row r: z = logits[r, :] / temperature; p = exp(z - max z) (so p_max = 1); every filter
// is a threshold on p, and the kept set is {j : p_j >= tau}, tau the largest of
//   min_p;  the k-th largest p (top_k);  the largest t with sum_{p_j >= t} p_j >= top_p * (mass kept
//   by min_p and top_k) (top_p);
// found by bisection on the fp32 bit pattern (ties at tau are all kept, so top_k may keep more than
// k tokens when probabilities tie exactly). Then u = sampling_uniform(seed, offset) in (0, 1] and
// out[r] = the first j in id order whose running kept mass reaches u * (kept mass).
// Deterministic for given logits and params. Device pointers; vocab < 2^24.
// Returns InvalidArgument / Internal; never syncs.
Status sample(int32_t* out,                     // [num_rows]
              const float* logits,              // [num_rows, vocab]
              const SamplingRowParams* params,  // [num_rows]
              int64_t num_rows, int64_t vocab, cudaStream_t stream);

// The uniform draw in (0, 1] the kernel uses for (seed, offset): Philox4x32-10 (Salmon et al., SC'11)
// with key = seed, counter = (offset, 0), first output word w, u = ((w >> 8) + 1) / 2^24.
// Host function, bit-identical to the device path (for tests and a CPU fallback).
float sampling_uniform(uint64_t seed, uint64_t offset);

}  // namespace ferry::kernels::cuda
