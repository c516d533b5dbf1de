// KvCacheStorage: the memory of the paged KV cache, one K and one V tensor per layer, and nothing
// else. Which blocks belong to which sequence is bookkeeping kept elsewhere (SimpleBlockAllocator
// here; the kv_cache/ manager with prefix caching later); the engine only reads block tables.
//
// Layout per layer (fp32):
//   float k[num_blocks, block_size, num_kv_heads, head_dim]
//   float v[num_blocks, block_size, num_kv_heads, head_dim]
// Ownership: owns its buffers. Thread-safety: none; one engine step at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 16;  // tokens per block
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;

  int64_t elements_per_block() const { return block_size * num_kv_heads * head_dim; }
  // K and V of one block over all layers.
  int64_t bytes_per_block() const { return 2 * num_layers * elements_per_block() * static_cast<int64_t>(sizeof(float)); }
};

class KvCacheStorage {
 public:
  // Allocates (zero-filled) storage; ResourceExhausted when the allocation fails.
  static Result<KvCacheStorage> create(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  float* k(int64_t layer) { return k_[layer].data(); }  // [num_blocks, block_size, num_kv_heads, head_dim]
  float* v(int64_t layer) { return v_[layer].data(); }  // same

 private:
  KvCacheShape shape_;
  std::vector<std::vector<float>> k_, v_;  // [num_layers][...]
};

// A minimal free list of block ids for tests and benchmarks. Not thread-safe.
class SimpleBlockAllocator {
 public:
  explicit SimpleBlockAllocator(int64_t num_blocks);
  // Appends enough blocks to `table` to hold `num_tokens` positions; false (table unchanged) when
  // the pool is short.
  bool ensure_capacity(std::vector<int32_t>* table, int64_t num_tokens, int64_t block_size);
  void release(std::vector<int32_t>* table);
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }

 private:
  std::vector<int32_t> free_;
};

}  // namespace ferry::llm
