// Paged attention for decode steps (one query token per sequence) on the GPU, split along the
// sequence for long contexts: the CUDA twin of kernels::paged_attention (kernels/kernels.h) when
// every query_len is 1.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda {

// Positions per split: each (sequence, q head) is cut into ceil(context_len / this) partitions
// computed by separate blocks, then merged by a reduce kernel (skipped when one partition suffices).
inline constexpr int64_t kDecodePartitionTokens = 512;

// Bytes of the scratch paged_attention_decode needs for these sizes (0 when max_context_len fits one
// partition). Allocate it once at load for the largest batch and context; it is reused every step.
size_t paged_attention_decode_workspace_bytes(int64_t num_seqs, int64_t num_q_heads, int64_t head_dim,
                                              int64_t max_context_len);

// Computes kernels::paged_attention(args) for a batch whose sequences all have query_len 1
// (query_start[s + 1] - query_start[s] == 1); a sequence with 0 queries is skipped, one with more
// gets a NaN row. Same cache dtypes, GQA rule and limits as paged_attention_prefill.
// max_context_len must be >= every context_lens[s] (a longer sequence gets NaN). `workspace` is
// device memory of at least paged_attention_decode_workspace_bytes(...) bytes (may be null when that
// is 0). Returns InvalidArgument / Internal; allocates nothing, never syncs.
Status paged_attention_decode(const PagedAttentionArgs& args, int64_t max_context_len, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
