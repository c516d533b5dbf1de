#include "backend/llm/engine/kv_cache_storage.h"

#include <new>
#include <string>

namespace ferry::llm {

Result<KvCacheStorage> KvCacheStorage::create(const KvCacheShape& shape) {
  if (shape.num_layers <= 0 || shape.num_blocks <= 0 || shape.block_size <= 0 || shape.num_kv_heads <= 0 ||
      shape.head_dim <= 0) {
    return Status::InvalidArgument("kv cache: every dimension must be positive");
  }
  KvCacheStorage s;
  s.shape_ = shape;
  const size_t n = static_cast<size_t>(shape.num_blocks * shape.elements_per_block());
  const size_t num_scales = static_cast<size_t>(shape.num_blocks * shape.block_size * shape.num_kv_heads);
  try {
    s.layers_.resize(static_cast<size_t>(shape.num_layers));
    for (Layer& l : s.layers_) {
      switch (shape.dtype) {
        case kernels::KvCacheDType::kF32:
          l.k.assign(n, 0.0f);
          l.v.assign(n, 0.0f);
          break;
        case kernels::KvCacheDType::kBF16:  // bf16 0x0000 is +0.0
          l.k16.assign(n, 0);
          l.v16.assign(n, 0);
          break;
        case kernels::KvCacheDType::kInt8:
          l.k8.assign(n, 0);
          l.v8.assign(n, 0);
          l.k_scales.assign(num_scales, 0.0f);
          l.v_scales.assign(num_scales, 0.0f);
          break;
      }
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("kv cache: cannot allocate " + std::to_string(shape.num_blocks) + " " +
                                     kernels::kv_cache_dtype_name(shape.dtype) + " blocks of " +
                                     std::to_string(shape.bytes_per_block()) + " bytes");
  }
  return s;
}

KvCacheStorage::Layer& KvCacheStorage::layer(int64_t l, kernels::KvCacheDType want) {
  FERRY_CHECK(shape_.dtype == want && l >= 0 && l < shape_.num_layers);
  return layers_[static_cast<size_t>(l)];
}

float* KvCacheStorage::k(int64_t l) { return layer(l, kernels::KvCacheDType::kF32).k.data(); }
float* KvCacheStorage::v(int64_t l) { return layer(l, kernels::KvCacheDType::kF32).v.data(); }
uint16_t* KvCacheStorage::k_bf16(int64_t l) { return layer(l, kernels::KvCacheDType::kBF16).k16.data(); }
uint16_t* KvCacheStorage::v_bf16(int64_t l) { return layer(l, kernels::KvCacheDType::kBF16).v16.data(); }
int8_t* KvCacheStorage::k_int8(int64_t l) { return layer(l, kernels::KvCacheDType::kInt8).k8.data(); }
int8_t* KvCacheStorage::v_int8(int64_t l) { return layer(l, kernels::KvCacheDType::kInt8).v8.data(); }
float* KvCacheStorage::k_scales(int64_t l) { return layer(l, kernels::KvCacheDType::kInt8).k_scales.data(); }
float* KvCacheStorage::v_scales(int64_t l) { return layer(l, kernels::KvCacheDType::kInt8).v_scales.data(); }

SimpleBlockAllocator::SimpleBlockAllocator(int64_t num_blocks) {
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

bool SimpleBlockAllocator::ensure_capacity(std::vector<int32_t>* table, int64_t num_tokens, int64_t block_size) {
  const int64_t needed = (num_tokens + block_size - 1) / block_size - static_cast<int64_t>(table->size());
  if (needed <= 0) return true;
  if (needed > num_free()) return false;
  for (int64_t i = 0; i < needed; ++i) {
    table->push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void SimpleBlockAllocator::release(std::vector<int32_t>* table) {
  for (int32_t b : *table) free_.push_back(b);
  table->clear();
}

}  // namespace ferry::llm
