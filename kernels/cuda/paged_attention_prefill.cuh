// Paged attention for prefill (and mixed prefill + decode batches) on the GPU: the CUDA twin of
// kernels::paged_attention (kernels/kernels.h), for any query lengths.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda {

// Computes kernels::paged_attention(args) on `stream`: causal, variable query and context lengths,
// GQA, fp32 or int8 cache (dequantized on the fly), fp32 softmax with online rescaling over tiles
// of 32 cached positions. Every pointer in `args` is device memory; args.num_blocks bounds the block
// ids (an out-of-range id gives NaN, never an out-of-bounds read). head_dim <= 256, num_seqs and
// num_q_heads <= 65535. max_query_len must be >= every sequence's query length (the host knows the
// batch it built; the grid is sized by it, so a sequence with more queries is silently truncated).
// Sequences with context_len < query_len (a caller bug) get NaN rows.
// Returns InvalidArgument / Internal; allocates nothing, never syncs.
Status paged_attention_prefill(const PagedAttentionArgs& args, int64_t max_query_len, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
