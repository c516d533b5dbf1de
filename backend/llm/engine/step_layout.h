// StepLayout: what every engine derives on the host from a ForwardBatch before it runs a step --
// the batch's validation against the model and the KV cache, and the attention metadata the
// kernels read (cache slot of each token, query starts, context lengths, padded block tables, the
// rows whose logits are wanted). CpuEngine hands these arrays to the kernels as they are;
// CudaEngine copies them to device memory first. Both engines accept and refuse the same batches.
//
// Ownership: a StepLayout owns its arrays and keeps their capacity between steps (a warm step
// allocates nothing). Thread-safety: none; one per engine.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/llm/engine/forward_batch.h"
#include "backend/llm/model/model_config.h"
#include "common/status.h"

namespace ferry::llm {

// InvalidArgument (naming the sequence and the field) for a batch the engines must not run: token
// ids outside the vocabulary, positions that are not context_len - query_len + i, a context beyond
// max_position_embeddings, a block table too short or naming a block outside [0, num_blocks),
// num_draft_tokens outside [0, query_len) or together with all_logits.
Status validate_batch(const ForwardBatch& batch, const ModelConfig& config, int64_t block_size, int64_t num_blocks);

struct StepLayout {
  std::vector<int32_t> query_start;   // [num_seqs + 1]
  std::vector<int32_t> context_lens;  // [num_seqs]
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks]; rows padded with block 0
  int64_t max_blocks = 0;             // blocks of the longest context
  std::vector<int64_t> slots;         // [num_tokens]: block_table[pos / block_size] * block_size + pos % block_size
  std::vector<int32_t> logit_rows;    // [num_rows]: each sequence's last 1 + num_draft_tokens tokens, or every token (all_logits)
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;

  // Rebuilds every array from a batch that passed validate_batch.
  void build(const ForwardBatch& batch, int64_t block_size);
};

}  // namespace ferry::llm
