// KvCacheStorage: the memory of the paged KV cache, one K and one V tensor per layer, and nothing
// else. Which blocks belong to which sequence is bookkeeping kept elsewhere (the scheduler's
// kv_cache/ manager with prefix caching when serving; SimpleBlockAllocator below in tests and
// benchmarks); the engine only reads block tables. CpuEngine owns one, sized by allocate_kv_cache.
//
// Layout per layer, by dtype (kernels.h, "Paged KV cache", has the quantization recipe):
//   kF32:  float  k[num_blocks, block_size, num_kv_heads, head_dim], v the same
//   kBF16: uint16_t k[num_blocks, block_size, num_kv_heads, head_dim] (bf16 bits), v the same
//   kInt8: int8_t k[num_blocks, block_size, num_kv_heads, head_dim], v the same, plus
//          float  k_scales[num_blocks, block_size, num_kv_heads], v_scales the same
// int8 keeps one symmetric scale per (slot, kv head): 4 bytes beside every head_dim int8 values, so
// a block takes (head_dim + 4) / (4 * head_dim) of its fp32 size -- 3.76x more blocks in the same
// memory at head_dim 64, 3.88x at 128, 2.67x at head_dim 8 (stories260K). Measured accuracy cost on
// stories260K: see tests/llm/engine/cpu_engine_test.cc (Int8KvCache*).
// Ownership: owns its buffers. Thread-safety: none; one engine step at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 16;  // tokens per block
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  kernels::KvCacheDType dtype = kernels::KvCacheDType::kF32;

  int64_t elements_per_block() const { return block_size * num_kv_heads * head_dim; }
  // K and V of one block over all layers, int8 scales included: what the pool is sized by.
  int64_t bytes_per_block() const {
    return 2 * num_layers * block_size * num_kv_heads * kernels::kv_cache_bytes_per_head(dtype, head_dim);
  }
};

class KvCacheStorage {
 public:
  // Allocates (zero-filled) storage; InvalidArgument for a non-positive dimension, ResourceExhausted
  // when the allocation fails.
  static Result<KvCacheStorage> create(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  kernels::KvCacheDType dtype() const { return shape_.dtype; }
  // kF32 only (asserted): [num_blocks, block_size, num_kv_heads, head_dim].
  float* k(int64_t layer);
  float* v(int64_t layer);
  // kBF16 only (asserted): bf16 bit patterns [num_blocks, block_size, num_kv_heads, head_dim].
  uint16_t* k_bf16(int64_t layer);
  uint16_t* v_bf16(int64_t layer);
  // kInt8 only (asserted): values [num_blocks, block_size, num_kv_heads, head_dim] and scales
  // [num_blocks, block_size, num_kv_heads].
  int8_t* k_int8(int64_t layer);
  int8_t* v_int8(int64_t layer);
  float* k_scales(int64_t layer);
  float* v_scales(int64_t layer);

 private:
  struct Layer {
    std::vector<float> k, v;                // kF32
    std::vector<uint16_t> k16, v16;         // kBF16
    std::vector<int8_t> k8, v8;             // kInt8
    std::vector<float> k_scales, v_scales;  // kInt8
  };
  Layer& layer(int64_t l, kernels::KvCacheDType want);

  KvCacheShape shape_;
  std::vector<Layer> layers_;  // [num_layers]
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
