#include "backend/llm/engine/step_layout.h"

#include <algorithm>
#include <string>

namespace ferry::llm {

Status validate_batch(const ForwardBatch& b, const ModelConfig& c, int64_t block_size, int64_t num_blocks) {
  const int64_t num_tokens = static_cast<int64_t>(b.token_ids.size());
  if (static_cast<int64_t>(b.positions.size()) != num_tokens) {
    return Status::InvalidArgument("batch: positions and token_ids differ in length");
  }
  if (b.sequences.empty()) return Status::InvalidArgument("batch: no sequences");
  int64_t next = 0;
  for (size_t s = 0; s < b.sequences.size(); ++s) {
    const SequenceInput& q = b.sequences[s];
    // Built only on an error path: a valid batch allocates nothing here.
    auto where = [s] { return "batch: sequence " + std::to_string(s) + ": "; };
    if (q.query_start != next || q.query_len < 1 || q.query_start + q.query_len > num_tokens) {
      return Status::InvalidArgument(where() + "query tokens must be a non-empty run right after the previous sequence's");
    }
    if (q.context_len < q.query_len || q.context_len > c.max_position_embeddings) {
      return Status::InvalidArgument(where() + "context_len " + std::to_string(q.context_len) +
                                     " must be in [query_len, max_position_embeddings]");
    }
    if (q.num_draft_tokens < 0 || q.num_draft_tokens >= q.query_len || (q.num_draft_tokens > 0 && b.all_logits)) {
      return Status::InvalidArgument(where() + "num_draft_tokens must be in [0, query_len) and without all_logits");
    }
    if (static_cast<int64_t>(q.block_table.size()) * block_size < q.context_len) {
      return Status::InvalidArgument(where() + "block table too short for context_len " + std::to_string(q.context_len));
    }
    const int64_t used_blocks = (q.context_len + block_size - 1) / block_size;
    for (int64_t i = 0; i < used_blocks; ++i) {
      if (q.block_table[i] < 0 || q.block_table[i] >= num_blocks) {
        return Status::InvalidArgument(where() + "block " + std::to_string(q.block_table[i]) + " is outside the cache");
      }
    }
    for (int32_t i = 0; i < q.query_len; ++i) {
      const int64_t t = q.query_start + i;
      if (b.positions[t] != q.context_len - q.query_len + i) {
        return Status::InvalidArgument(where() + "position of token " + std::to_string(t) +
                                       " must be context_len - query_len + its index");
      }
      if (b.token_ids[t] < 0 || b.token_ids[t] >= c.vocab_size) {
        return Status::InvalidArgument(where() + "token id " + std::to_string(b.token_ids[t]) + " out of range");
      }
    }
    next += q.query_len;
  }
  if (next != num_tokens) return Status::InvalidArgument("batch: tokens not covered by any sequence");
  return Status::Ok();
}

void StepLayout::build(const ForwardBatch& b, int64_t block_size) {
  const size_t num_seqs = b.sequences.size();
  max_blocks = 0;
  max_query_len = 0;
  max_context_len = 0;
  for (const auto& q : b.sequences) {
    max_blocks = std::max<int64_t>(max_blocks, (q.context_len + block_size - 1) / block_size);
    max_query_len = std::max(max_query_len, q.query_len);
    max_context_len = std::max(max_context_len, q.context_len);
  }
  query_start.assign(1, 0);
  context_lens.clear();
  block_tables.assign(num_seqs * static_cast<size_t>(max_blocks), 0);
  slots.clear();
  logit_rows.clear();
  for (size_t s = 0; s < num_seqs; ++s) {
    const SequenceInput& q = b.sequences[s];
    query_start.push_back(q.query_start + q.query_len);
    context_lens.push_back(q.context_len);
    const int64_t used_blocks = (q.context_len + block_size - 1) / block_size;
    std::copy(q.block_table.begin(), q.block_table.begin() + used_blocks, block_tables.begin() + s * max_blocks);
    for (int32_t i = 0; i < q.query_len; ++i) {
      const int64_t pos = q.context_len - q.query_len + i;
      slots.push_back(static_cast<int64_t>(q.block_table[pos / block_size]) * block_size + pos % block_size);
      if (b.all_logits) logit_rows.push_back(q.query_start + i);
    }
    if (!b.all_logits) {  // the last token's row, and the rows of the drafts' predecessors
      for (int32_t i = q.query_len - 1 - q.num_draft_tokens; i < q.query_len; ++i) logit_rows.push_back(q.query_start + i);
    }
  }
}

}  // namespace ferry::llm
