// Paged KV cache writes and paged attention (prefill and split-K decode) against the references,
// for the fp32, bf16 and int8 caches, GQA, odd context lengths and shuffled block tables, sliding
// windows and logit soft-capping.
// Tolerances:
//   cache writes: exact (fp32 copy; bf16 rounded to nearest even as f32_to_bf16; int8 bytes and
//     scales use the reference's fp32 operations);
//   attention: 2e-5 + 1e-4 |want| for every cache dtype (both sides widen the same bf16 / int8 values;
//   the GPU sums in fp32 with exp2f, the reference in double).
#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/kv_cache_write.cuh"
#include "kernels/cuda/paged_attention_decode.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/kernels.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace ferry::kernels::cuda {
namespace {

using testing::CudaTest;
using testing::DeviceBuffer;
using testing::expect_close;
using testing::random_floats;

template <typename T>
std::vector<T> poisoned(size_t n) {
  std::vector<T> v(n);
  std::memset(v.data(), 0xFF, n * sizeof(T));
  return v;
}

struct Shape {
  int64_t head_dim, num_q_heads, num_kv_heads, block_size;
};

// A batch: per sequence its query length and context length (context >= query).
struct Batch {
  std::vector<int32_t> query_lens, context_lens;
};

// Everything one attention call needs, on the host and the device.
class AttentionCase {
 public:
  AttentionCase(const Shape& shape, const Batch& batch, KvCacheDType dtype, uint32_t seed)
      : shape_(shape), batch_(batch), dtype_(dtype) {
    const int64_t num_seqs = static_cast<int64_t>(batch.query_lens.size());
    query_start_.push_back(0);
    for (int32_t len : batch.query_lens) query_start_.push_back(query_start_.back() + len);
    num_tokens_ = query_start_.back();
    for (int32_t c : batch.context_lens) max_blocks_ = std::max<int64_t>(max_blocks_, (c + shape.block_size - 1) / shape.block_size);
    num_blocks_ = num_seqs * max_blocks_ + 3;
    // Shuffled physical blocks: sequence s's logical block b -> perm[s * max_blocks + b].
    std::vector<int32_t> perm(num_blocks_);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    tables_.assign(perm.begin(), perm.begin() + num_seqs * max_blocks_);

    // Fill every sequence's context through the reference cache write.
    const int64_t row = shape.num_kv_heads * shape.head_dim;
    const int64_t num_slots = num_blocks_ * shape.block_size;
    f32_k_ = poisoned<float>(num_slots * row), f32_v_ = poisoned<float>(num_slots * row);
    i8_k_ = poisoned<int8_t>(num_slots * row), i8_v_ = poisoned<int8_t>(num_slots * row);
    b16_k_ = poisoned<uint16_t>(num_slots * row), b16_v_ = poisoned<uint16_t>(num_slots * row);
    k_scales_ = poisoned<float>(num_slots * shape.num_kv_heads), v_scales_ = k_scales_;
    for (int64_t s = 0; s < num_seqs; ++s) {
      const int64_t n = batch.context_lens[s];
      const std::vector<float> k = random_floats(n * row, seed + 100 + s), v = random_floats(n * row, seed + 200 + s);
      std::vector<int64_t> slots(n);
      for (int64_t p = 0; p < n; ++p)
        slots[p] = static_cast<int64_t>(tables_[s * max_blocks_ + p / shape.block_size]) * shape.block_size +
                   p % shape.block_size;
      ref::kv_cache_write(f32_k_.data(), f32_v_.data(), k.data(), v.data(), slots.data(), n, row, row,
                          shape.num_kv_heads, shape.head_dim);
      ref::kv_cache_write_int8(i8_k_.data(), i8_v_.data(), k_scales_.data(), v_scales_.data(), k.data(), v.data(),
                               slots.data(), n, row, row, shape.num_kv_heads, shape.head_dim);
      ref::kv_cache_write_bf16(b16_k_.data(), b16_v_.data(), k.data(), v.data(), slots.data(), n, row, row,
                               shape.num_kv_heads, shape.head_dim);
    }
    q_stride_ = shape.num_q_heads * shape.head_dim + 7;
    q_ = random_floats(num_tokens_ * q_stride_, seed + 1, -2.0f, 2.0f);
  }

  PagedAttentionArgs host_args(float* out) {
    return args(out, q_.data(), pick(f32_k_.data(), b16_k_.data(), i8_k_.data()),
                pick(f32_v_.data(), b16_v_.data(), i8_v_.data()), k_scales_.data(), v_scales_.data(),
                query_start_.data(), batch_.context_lens.data(), tables_.data());
  }

  std::vector<float> reference() {
    std::vector<float> out(num_tokens_ * shape_.num_q_heads * shape_.head_dim);
    ref::paged_attention(host_args(out.data()));
    return out;
  }

  // Device copies; `out` poisoned.
  struct Device {
    DeviceBuffer<float> out, q, k_f32, v_f32, k_scales, v_scales;
    DeviceBuffer<int8_t> k_i8, v_i8;
    DeviceBuffer<uint16_t> k_b16, v_b16;
    DeviceBuffer<int32_t> query_start, context_lens, tables;
  };
  std::unique_ptr<Device> upload() {
    return std::unique_ptr<Device>(new Device{
        DeviceBuffer<float>(num_tokens_ * shape_.num_q_heads * shape_.head_dim), DeviceBuffer<float>(q_),
        DeviceBuffer<float>(f32_k_), DeviceBuffer<float>(f32_v_), DeviceBuffer<float>(k_scales_),
        DeviceBuffer<float>(v_scales_), DeviceBuffer<int8_t>(i8_k_), DeviceBuffer<int8_t>(i8_v_),
        DeviceBuffer<uint16_t>(b16_k_), DeviceBuffer<uint16_t>(b16_v_), DeviceBuffer<int32_t>(query_start_), DeviceBuffer<int32_t>(batch_.context_lens),
        DeviceBuffer<int32_t>(tables_)});
  }
  PagedAttentionArgs device_args(Device& d) {
    return args(d.out.get(), d.q.get(), pick(d.k_f32.get(), d.k_b16.get(), d.k_i8.get()),
                pick(d.v_f32.get(), d.v_b16.get(), d.v_i8.get()), d.k_scales.get(), d.v_scales.get(),
                d.query_start.get(), d.context_lens.get(), d.tables.get());
  }
  // kernels.h's optional variations, for every call after this one.
  void set_window_and_softcap(int64_t window, float softcap) { window_ = window, softcap_ = softcap; }
  int64_t max_query_len() const { return *std::max_element(batch_.query_lens.begin(), batch_.query_lens.end()); }
  int64_t max_context_len() const {
    return *std::max_element(batch_.context_lens.begin(), batch_.context_lens.end());
  }

 private:
  // The cache of this case's dtype.
  const void* pick(const float* f32, const uint16_t* b16, const int8_t* i8) const {
    if (dtype_ == KvCacheDType::kBF16) return b16;
    return dtype_ == KvCacheDType::kInt8 ? static_cast<const void*>(i8) : f32;
  }
  PagedAttentionArgs args(float* out, const float* q, const void* k, const void* v, const float* ks, const float* vs,
                          const int32_t* qs, const int32_t* cl, const int32_t* bt) const {
    PagedAttentionArgs a{};
    a.out = out, a.q = q, a.k_cache = k, a.v_cache = v, a.k_scales = ks, a.v_scales = vs, a.kv_dtype = dtype_;
    a.query_start = qs, a.context_lens = cl, a.block_tables = bt;
    a.num_seqs = static_cast<int64_t>(batch_.query_lens.size()), a.num_tokens = num_tokens_;
    a.max_blocks_per_seq = max_blocks_, a.q_stride = q_stride_, a.num_q_heads = shape_.num_q_heads;
    a.num_kv_heads = shape_.num_kv_heads, a.head_dim = shape_.head_dim, a.block_size = shape_.block_size;
    a.num_blocks = num_blocks_, a.scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
    a.sliding_window = window_, a.logit_softcap = softcap_;
    return a;
  }

  Shape shape_;
  Batch batch_;
  KvCacheDType dtype_;
  std::vector<int32_t> query_start_, tables_;
  int64_t num_tokens_ = 0, max_blocks_ = 1, num_blocks_ = 0, q_stride_ = 0, window_ = 0;
  float softcap_ = 0.0f;
  std::vector<float> f32_k_, f32_v_, k_scales_, v_scales_, q_;
  std::vector<int8_t> i8_k_, i8_v_;
  std::vector<uint16_t> b16_k_, b16_v_;
};

const Shape kShapes[] = {{64, 8, 2, 16}, {128, 4, 4, 32}, {128, 12, 3, 16}};

using CudaPagedAttention = CudaTest;
TEST_F(CudaPagedAttention, PrefillVariableLengthsGqaEveryCacheDtype) {
  // Mixed batch: a decode (1 query), a fresh prefill, a chunked prefill with cached context, odd lengths.
  const Batch batch{{1, 17, 40, 5}, {29, 17, 73, 300}};
  for (const Shape& shape : kShapes) {
    for (KvCacheDType dtype : {KvCacheDType::kF32, KvCacheDType::kBF16, KvCacheDType::kInt8}) {
      AttentionCase c(shape, batch, dtype, 42);
      const std::vector<float> want = c.reference();
      auto d = c.upload();
      FERRY_ASSERT_OK(paged_attention_prefill(c.device_args(*d), c.max_query_len(), stream_));
      sync();
      expect_close(d->out.download(), want, 2e-5f, 1e-4f, kv_cache_dtype_name(dtype));
    }
  }
}

TEST_F(CudaPagedAttention, DecodeSplitsLongContexts) {
#if defined(FERRY_CUDA_EMULATION)
  const Batch batch{{1, 1, 1, 1, 1}, {1, 31, 512, 513, 1100}};  // 1 to 3 partitions: the emulator is slow
#else
  const Batch batch{{1, 1, 1, 1, 1}, {1, 31, 512, 513, 2049}};  // 1 to 5 partitions of 512
#endif
  const Batch short_batch{{1, 1, 1}, {3, 100, 511}};             // one partition: no workspace, no reduce
  for (const Batch* b : {&batch, &short_batch}) {
    for (const Shape& shape : kShapes) {
      for (KvCacheDType dtype : {KvCacheDType::kF32, KvCacheDType::kBF16, KvCacheDType::kInt8}) {
        AttentionCase c(shape, *b, dtype, 7);
        const std::vector<float> want = c.reference();
        auto d = c.upload();
        const PagedAttentionArgs args = c.device_args(*d);
        const size_t bytes = paged_attention_decode_workspace_bytes(args.num_seqs, args.num_q_heads, args.head_dim,
                                                                     c.max_context_len());
        EXPECT_EQ(bytes == 0, b == &short_batch);
        DeviceBuffer<uint8_t> workspace(bytes);
        FERRY_ASSERT_OK(paged_attention_decode(args, c.max_context_len(), workspace.get(), bytes, stream_));
        sync();
        expect_close(d->out.download(), want, 2e-5f, 1e-4f, kv_cache_dtype_name(dtype));
      }
    }
  }
}

// Sliding windows (1 key; shorter than, equal to and longer than the contexts; starting mid-block
// and mid-tile) and logit soft-capping, against the reference (tests/kernels/attention_window_test.cc
// checks the reference against a dense definition).
TEST_F(CudaPagedAttention, PrefillSlidingWindowAndSoftcap) {
  const Batch batch{{1, 17, 40, 5}, {29, 17, 73, 300}};
  for (const Shape& shape : {kShapes[0], kShapes[2]}) {
    for (auto [window, cap] : {std::pair<int64_t, float>{1, 0.0f}, {7, 0.0f}, {33, 5.0f}, {300, 0.0f}, {0, 2.5f}}) {
      for (KvCacheDType dtype : {KvCacheDType::kF32, KvCacheDType::kInt8}) {
        AttentionCase c(shape, batch, dtype, 43);
        c.set_window_and_softcap(window, cap);
        const std::vector<float> want = c.reference();
        auto d = c.upload();
        FERRY_ASSERT_OK(paged_attention_prefill(c.device_args(*d), c.max_query_len(), stream_));
        sync();
        expect_close(d->out.download(), want, 2e-5f, 1e-4f,
                     ("window " + std::to_string(window) + " cap " + std::to_string(cap)).c_str());
      }
    }
  }
}

// Decode with windows that leave whole partitions of 512 keys out (the reduce must skip them), that
// start inside one, that cover everything, and a soft-cap.
TEST_F(CudaPagedAttention, DecodeSlidingWindowSkipsPartitionsAndSoftcap) {
  const Batch batch{{1, 1, 1}, {31, 513, 1100}};
  for (auto [window, cap] :
       {std::pair<int64_t, float>{1, 0.0f}, {100, 0.0f}, {512, 0.0f}, {600, 5.0f}, {2000, 0.0f}, {0, 2.5f}}) {
    AttentionCase c(kShapes[0], batch, KvCacheDType::kF32, 8);
    c.set_window_and_softcap(window, cap);
    const std::vector<float> want = c.reference();
    auto d = c.upload();
    const PagedAttentionArgs args = c.device_args(*d);
    const size_t bytes =
        paged_attention_decode_workspace_bytes(args.num_seqs, args.num_q_heads, args.head_dim, c.max_context_len());
    DeviceBuffer<uint8_t> workspace(bytes);
    FERRY_ASSERT_OK(paged_attention_decode(args, c.max_context_len(), workspace.get(), bytes, stream_));
    sync();
    expect_close(d->out.download(), want, 2e-5f, 1e-4f,
                 ("window " + std::to_string(window) + " cap " + std::to_string(cap)).c_str());
  }
}

TEST_F(CudaPagedAttention, RejectsBadArguments) {
  PagedAttentionArgs a{};
  a.num_seqs = 1, a.num_tokens = 1, a.num_q_heads = 6, a.num_kv_heads = 4, a.head_dim = 64;  // 6 % 4 != 0
  a.q_stride = 6 * 64, a.block_size = 16, a.num_blocks = 1, a.max_blocks_per_seq = 1;
  EXPECT_EQ(paged_attention_prefill(a, 1, stream_).code(), StatusCode::kInvalidArgument);
  a.num_q_heads = 4, a.q_stride = 4 * 512, a.head_dim = 512;  // over the 256 limit
  EXPECT_EQ(paged_attention_decode(a, 1, nullptr, 0, stream_).code(), StatusCode::kInvalidArgument);
}

using CudaKvCacheWrite = CudaTest;
TEST_F(CudaKvCacheWrite, Fp32Bf16AndInt8MatchReferenceBitForBit) {
  for (int64_t head_dim : {64, 128}) {
    const int64_t tokens = 23, nkv = 3, block_size = 16, num_blocks = 5, num_slots = num_blocks * block_size;
    const int64_t row = nkv * head_dim, k_stride = row + 9, v_stride = row + 2;
    const std::vector<float> k = random_floats(tokens * k_stride, 12, -3.0f, 3.0f);
    const std::vector<float> v = random_floats(tokens * v_stride, 13, -3.0f, 3.0f);
    std::vector<int64_t> slots(tokens);
    for (int64_t t = 0; t < tokens; ++t) slots[t] = (t * 37 + 11) % num_slots;  // distinct: 37 is coprime to 80
    slots[4] = -1;                                                              // padding
    DeviceBuffer<float> d_k(k), d_v(v);
    DeviceBuffer<int64_t> d_slots(slots);

    std::vector<float> kc = poisoned<float>(num_slots * row), vc = kc;
    ref::kv_cache_write(kc.data(), vc.data(), k.data(), v.data(), slots.data(), tokens, k_stride, v_stride, nkv,
                        head_dim);
    DeviceBuffer<float> d_kc(num_slots * row), d_vc(num_slots * row);
    FERRY_ASSERT_OK(kv_cache_write(d_kc.get(), d_vc.get(), d_k.get(), d_v.get(), d_slots.get(), tokens, num_slots,
                                   k_stride, v_stride, nkv, head_dim, stream_));

    std::vector<int8_t> kq = poisoned<int8_t>(num_slots * row), vq = kq;
    std::vector<float> ks = poisoned<float>(num_slots * nkv), vs = ks;
    ref::kv_cache_write_int8(kq.data(), vq.data(), ks.data(), vs.data(), k.data(), v.data(), slots.data(), tokens,
                             k_stride, v_stride, nkv, head_dim);
    DeviceBuffer<int8_t> d_kq(num_slots * row), d_vq(num_slots * row);
    DeviceBuffer<float> d_ks(num_slots * nkv), d_vs(num_slots * nkv);
    FERRY_ASSERT_OK(kv_cache_write_int8(d_kq.get(), d_vq.get(), d_ks.get(), d_vs.get(), d_k.get(), d_v.get(),
                                        d_slots.get(), tokens, num_slots, k_stride, v_stride, nkv, head_dim,
                                        stream_));
    std::vector<uint16_t> kb = poisoned<uint16_t>(num_slots * row), vb = kb;
    ref::kv_cache_write_bf16(kb.data(), vb.data(), k.data(), v.data(), slots.data(), tokens, k_stride, v_stride, nkv,
                             head_dim);
    DeviceBuffer<uint16_t> d_kb(num_slots * row), d_vb(num_slots * row);
    FERRY_ASSERT_OK(kv_cache_write_bf16(d_kb.get(), d_vb.get(), d_k.get(), d_v.get(), d_slots.get(), tokens,
                                        num_slots, k_stride, v_stride, nkv, head_dim, stream_));
    sync();
    // Byte comparisons: untouched slots stay 0xFF on both sides (NaN != NaN as floats).
    auto same_bytes = [](const auto& a, const auto& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
    };
    EXPECT_TRUE(same_bytes(d_kc.download(), kc));
    EXPECT_TRUE(same_bytes(d_vc.download(), vc));
    EXPECT_TRUE(same_bytes(d_kq.download(), kq));
    EXPECT_TRUE(same_bytes(d_vq.download(), vq));
    EXPECT_TRUE(same_bytes(d_ks.download(), ks));
    EXPECT_TRUE(same_bytes(d_vs.download(), vs));
    EXPECT_TRUE(same_bytes(d_kb.download(), kb));
    EXPECT_TRUE(same_bytes(d_vb.download(), vb));
  }
}

}  // namespace
}  // namespace ferry::kernels::cuda
