// LlmConfig: the llm backend's keys in a model's serving config.json (docs/model-config.md).
// Parsed strictly: an unknown key or a bad value is an error naming the key.
//
//   "load_format"       "auto" (safetensors in the version folder) | "dummy" (random weights of the
//                       HF config's shape from "seed"; no weight files)         default "auto"
//   "seed"              seed of the dummy weights                               default 0
//   "max_num_seqs"      sequences decoded together in one step, >= 1            default 16
//   "max_model_len"     context limit in tokens (prompt + generated)            default: the model's
//                                                                               max_position_embeddings
//   "kv_cache_block_size"   tokens per KV block                                 default 16
//   "kv_cache_num_blocks"   KV blocks in the pool (0: sized from kv_cache_memory_bytes)   default 0
//   "kv_cache_memory_bytes" KV pool budget on CPU                               default 268435456
//   "num_threads"       CPU threads for the matmuls (0: all cores)              default 0
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace ferry::llm {

struct LlmConfig {
  bool dummy_weights = false;
  uint64_t seed = 0;
  int32_t max_num_seqs = 16;
  int64_t max_model_len = 0;  // 0: the model's max_position_embeddings
  int32_t kv_cache_block_size = 16;
  int64_t kv_cache_num_blocks = 0;
  int64_t kv_cache_memory_bytes = int64_t{256} << 20;
  int32_t num_threads = 0;

  static Result<LlmConfig> parse(const std::string& json);
};

}  // namespace ferry::llm
