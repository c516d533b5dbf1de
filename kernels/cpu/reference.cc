// Plain-loop reference implementations of kernels.h: the oracle every faster implementation is
// tested against. Written for obviousness, not speed: one element at a time, double accumulators,
// block tables resolved position by position.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/cpu_kernels.h"

namespace ferry::kernels::ref {

namespace {

float load(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(base)[i];
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  }
  return 0.0f;
}

void normalize_row(float* out, const float* in, const float* weight, int64_t dim, float eps) {
  double sum_sq = 0.0;
  for (int64_t j = 0; j < dim; ++j) sum_sq += static_cast<double>(in[j]) * in[j];
  const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps);
  for (int64_t j = 0; j < dim; ++j) out[j] = static_cast<float>(in[j] * inv_rms * weight[j]);
}

void rotate_head(float* x, int32_t position, const float* inv_freq, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  for (int64_t j = 0; j < half; ++j) {
    const double angle = static_cast<double>(position) * inv_freq[j];
    const double c = std::cos(angle), s = std::sin(angle);
    const double a = x[j], b = x[j + half];
    x[j] = static_cast<float>(a * c - b * s);
    x[j + half] = static_cast<float>(b * c + a * s);
  }
}

// Quantizes one row x[n] as kernels.h specifies: q = round_half_even(x * (127 / amax)), scale =
// amax / 127, all in fp32.
void quantize_row_int8(int8_t* q, float* scale, const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t d = 0; d < n; ++d) amax = std::max(amax, std::fabs(x[d]));
  if (amax == 0.0f) {
    for (int64_t d = 0; d < n; ++d) q[d] = 0;
    *scale = 0.0f;
    return;
  }
  const float inv = 127.0f / amax;
  for (int64_t d = 0; d < n; ++d) {
    const float r = std::nearbyint(x[d] * inv);  // default rounding mode: half to even
    q[d] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, r)));
  }
  *scale = amax / 127.0f;
}

// Element d of head `kvh` at `slot` of a K or V cache of any dtype, as a real number.
double cache_value(const void* cache, const float* scales, KvCacheDType dtype, int64_t slot, int64_t kvh,
                   int64_t num_kv_heads, int64_t head_dim, int64_t d) {
  const int64_t i = (slot * num_kv_heads + kvh) * head_dim + d;
  switch (dtype) {
    case KvCacheDType::kF32: return static_cast<const float*>(cache)[i];
    case KvCacheDType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(cache)[i]);
    case KvCacheDType::kInt8:
      return static_cast<double>(static_cast<const int8_t*>(cache)[i]) * scales[slot * num_kv_heads + kvh];
  }
  FERRY_CHECK(false && "unknown KvCacheDType");
  return 0.0;
}

}  // namespace

void embedding(float* out, const void* table, DType table_dtype, int64_t vocab_size, int64_t hidden,
               const int32_t* token_ids, int64_t num_tokens) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    FERRY_CHECK(token_ids[t] >= 0 && token_ids[t] < vocab_size);
    for (int64_t j = 0; j < hidden; ++j) out[t * hidden + j] = load(table, table_dtype, token_ids[t] * hidden + j);
  }
}

void rms_norm(float* out, const float* in, const float* weight, int64_t num_rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < num_rows; ++r) normalize_row(out + r * dim, in + r * dim, weight, dim, eps);
}

void add_rms_norm(float* out, float* residual, const float* delta, const float* weight, int64_t num_rows,
                  int64_t dim, float eps) {
  for (int64_t i = 0; i < num_rows * dim; ++i) residual[i] += delta[i];
  rms_norm(out, residual, weight, num_rows, dim, eps);
}

void head_rms_norm(float* x, const float* weight, int64_t num_tokens, int64_t token_stride, int64_t num_heads,
                   int64_t head_dim, float eps) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      float* row = x + t * token_stride + h * head_dim;
      normalize_row(row, row, weight, head_dim, eps);
    }
  }
}

void rope(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t num_tokens,
          int64_t q_stride, int64_t k_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t h = 0; h < num_q_heads; ++h) rotate_head(q + t * q_stride + h * head_dim, positions[t], inv_freq, head_dim);
    for (int64_t h = 0; h < num_kv_heads; ++h) rotate_head(k + t * k_stride + h * head_dim, positions[t], inv_freq, head_dim);
  }
}

void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int64_t* slot_mapping,
                    int64_t num_tokens, int64_t k_stride, int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t row = num_kv_heads * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    // [num_blocks, block_size, num_kv_heads, head_dim] is a flat [num_slots, row] array.
    for (int64_t j = 0; j < row; ++j) {
      k_cache[slot * row + j] = k[t * k_stride + j];
      v_cache[slot * row + j] = v[t * v_stride + j];
    }
  }
}

void kv_cache_write_bf16(uint16_t* k_cache, uint16_t* v_cache, const float* k, const float* v,
                         const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride, int64_t v_stride,
                         int64_t num_kv_heads, int64_t head_dim) {
  const int64_t row = num_kv_heads * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    for (int64_t j = 0; j < row; ++j) {
      k_cache[slot * row + j] = f32_to_bf16(k[t * k_stride + j]);
      v_cache[slot * row + j] = f32_to_bf16(v[t * v_stride + j]);
    }
  }
}

void kv_cache_write_int8(int8_t* k_cache, int8_t* v_cache, float* k_scales, float* v_scales, const float* k,
                         const float* v, const int64_t* slot_mapping, int64_t num_tokens, int64_t k_stride,
                         int64_t v_stride, int64_t num_kv_heads, int64_t head_dim) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      const int64_t row = slot * num_kv_heads + h;  // [num_slots, num_kv_heads] rows of head_dim
      quantize_row_int8(k_cache + row * head_dim, k_scales + row, k + t * k_stride + h * head_dim, head_dim);
      quantize_row_int8(v_cache + row * head_dim, v_scales + row, v + t * v_stride + h * head_dim, head_dim);
    }
  }
}

void paged_attention(const PagedAttentionArgs& a) {
  const int64_t group = a.num_q_heads / a.num_kv_heads;
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t q_begin = a.query_start[s];
    const int64_t query_len = a.query_start[s + 1] - q_begin;
    const int64_t context_len = a.context_lens[s];
    FERRY_CHECK(query_len >= 0 && context_len >= query_len);
    const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;
    for (int64_t i = 0; i < query_len; ++i) {
      const int64_t position = context_len - query_len + i;
      // The first key this query sees: 0, or the start of its window (position - window, position].
      const int64_t first = a.sliding_window > 0 ? std::max<int64_t>(0, position - a.sliding_window + 1) : 0;
      for (int64_t h = 0; h < a.num_q_heads; ++h) {
        const float* q = a.q + (q_begin + i) * a.q_stride + h * a.head_dim;
        const int64_t kvh = h / group;
        std::vector<double> scores(position + 1);
        double max_score = -std::numeric_limits<double>::infinity();
        for (int64_t p = first; p <= position; ++p) {
          const int64_t block = table[p / a.block_size];
          FERRY_CHECK(block >= 0 && block < a.num_blocks);
          const int64_t slot = block * a.block_size + p % a.block_size;
          double dot = 0.0;
          for (int64_t d = 0; d < a.head_dim; ++d)
            dot += q[d] * cache_value(a.k_cache, a.k_scales, a.kv_dtype, slot, kvh, a.num_kv_heads, a.head_dim, d);
          scores[p] = dot * a.scale;
          if (a.logit_softcap > 0.0f) scores[p] = a.logit_softcap * std::tanh(scores[p] / a.logit_softcap);
          if (scores[p] > max_score) max_score = scores[p];
        }
        double denom = 0.0;
        for (int64_t p = first; p <= position; ++p) {
          scores[p] = std::exp(scores[p] - max_score);
          denom += scores[p];
        }
        float* out = a.out + (q_begin + i) * a.num_q_heads * a.head_dim + h * a.head_dim;
        for (int64_t d = 0; d < a.head_dim; ++d) {
          double acc = 0.0;
          for (int64_t p = first; p <= position; ++p) {
            const int64_t slot = table[p / a.block_size] * a.block_size + p % a.block_size;
            acc += scores[p] * cache_value(a.v_cache, a.v_scales, a.kv_dtype, slot, kvh, a.num_kv_heads, a.head_dim, d);
          }
          out[d] = static_cast<float>(acc / denom);
        }
      }
    }
  }
}

void silu_and_mul(float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  for (int64_t r = 0; r < num_rows; ++r) {
    for (int64_t j = 0; j < inter; ++j) {
      const double g = gate_up[r * 2 * inter + j];
      const double u = gate_up[r * 2 * inter + inter + j];
      out[r * inter + j] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
    }
  }
}

void gelu_tanh_and_mul(float* out, const float* gate_up, int64_t num_rows, int64_t inter) {
  const double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
  for (int64_t r = 0; r < num_rows; ++r) {
    for (int64_t j = 0; j < inter; ++j) {
      const double g = gate_up[r * 2 * inter + j];
      const double u = gate_up[r * 2 * inter + inter + j];
      const double gelu = 0.5 * g * (1.0 + std::tanh(kSqrt2OverPi * (g + 0.044715 * g * g * g)));
      out[r * inter + j] = static_cast<float>(gelu * u);
    }
  }
}

void matmul(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t m, int64_t n,
            int64_t k) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t l = 0; l < k; ++l) acc += static_cast<double>(x[i * k + l]) * load(w, w_dtype, j * k + l);
      out[i * n + j] = static_cast<float>(acc);
    }
  }
}

void gather_rows(float* out, const float* in, const int32_t* rows, int64_t num_rows, int64_t dim) {
  for (int64_t r = 0; r < num_rows; ++r)
    for (int64_t j = 0; j < dim; ++j) out[r * dim + j] = in[static_cast<int64_t>(rows[r]) * dim + j];
}

void argmax(int32_t* out, const float* logits, int64_t num_rows, int64_t vocab) {
  for (int64_t r = 0; r < num_rows; ++r) {
    int64_t best = 0;
    for (int64_t j = 1; j < vocab; ++j)
      if (logits[r * vocab + j] > logits[r * vocab + best]) best = j;
    out[r] = static_cast<int32_t>(best);
  }
}

void log_softmax(float* x, int64_t num_rows, int64_t vocab) {
  for (int64_t r = 0; r < num_rows; ++r) {
    float* row = x + r * vocab;
    double max_v = row[0];
    for (int64_t j = 1; j < vocab; ++j) max_v = std::max<double>(max_v, row[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - max_v);
    const double lse = max_v + std::log(sum);
    for (int64_t j = 0; j < vocab; ++j) row[j] = static_cast<float>(row[j] - lse);
  }
}

}  // namespace ferry::kernels::ref
