#include "backend/llm/engine/cpu_engine.h"

#include <cmath>
#include <cstring>
#include <new>

namespace ferry::llm {

namespace k = ferry::kernels;

Result<std::unique_ptr<CpuEngine>> CpuEngine::create(const ModelConfig& config, const ModelWeights& weights,
                                                     CpuEngineOptions options) {
  if (options.backend == k::Backend::kCuda) return Status::InvalidArgument("CpuEngine cannot run the CUDA backend");
  std::unique_ptr<CpuEngine> e(new CpuEngine(config, options));
  e->weights_ = weights;
  const ModelConfig& c = config;
  try {
#define FERRY_LOAD(dst, expr)             \
  do {                                    \
    auto r_ = (expr);                     \
    if (!r_.ok()) return r_.status();     \
    dst = r_.value();                     \
  } while (0)
    FERRY_LOAD(e->embed_, e->load(weights, "model.embed_tokens.weight"));
    FERRY_LOAD(e->final_norm_, e->load(weights, "model.norm.weight"));
    if (c.tie_word_embeddings) {
      e->lm_head_ = e->embed_;
    } else {
      FERRY_LOAD(e->lm_head_, e->load(weights, "lm_head.weight"));
    }
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto n = [l](const char* suffix) { return layer_tensor_name(l, suffix); };
      LayerParams p{};
      FERRY_LOAD(p.input_norm, e->load(weights, n("input_layernorm.weight")));
      FERRY_LOAD(p.qkv, e->load_fused(weights, {n("self_attn.q_proj.weight"), n("self_attn.k_proj.weight"),
                                                n("self_attn.v_proj.weight")}));
      if (c.qkv_bias) {
        FERRY_LOAD(p.qkv_bias, e->load_fused(weights, {n("self_attn.q_proj.bias"), n("self_attn.k_proj.bias"),
                                                       n("self_attn.v_proj.bias")}));
      }
      FERRY_LOAD(p.o, e->load(weights, n("self_attn.o_proj.weight")));
      if (c.o_bias) FERRY_LOAD(p.o_bias, e->load(weights, n("self_attn.o_proj.bias")));
      if (c.qk_norm) {
        FERRY_LOAD(p.q_norm, e->load(weights, n("self_attn.q_norm.weight")));
        FERRY_LOAD(p.k_norm, e->load(weights, n("self_attn.k_norm.weight")));
      }
      FERRY_LOAD(p.post_norm, e->load(weights, n("post_attention_layernorm.weight")));
      FERRY_LOAD(p.gate_up, e->load_fused(weights, {n("mlp.gate_proj.weight"), n("mlp.up_proj.weight")}));
      FERRY_LOAD(p.down, e->load(weights, n("mlp.down_proj.weight")));
      e->layers_.push_back(p);
    }
#undef FERRY_LOAD
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("not enough memory for the fp32 weights of " + c.architecture_name);
  }
  e->inv_freq_.resize(static_cast<size_t>(c.head_dim / 2));
  k::rope_inv_freq(c.rope, c.head_dim, e->inv_freq_.data());
  return e;
}

Result<const float*> CpuEngine::load(const ModelWeights& w, const std::string& name) {
  const TensorView* view = w.view(name);
  if (view != nullptr && view->dtype == k::DType::kF32 &&
      reinterpret_cast<uintptr_t>(view->data) % alignof(float) == 0) {
    return static_cast<const float*>(view->data);  // zero copy from the mapping
  }
  const WeightSpec* spec = w.spec(name);
  if (spec == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
  owned_.emplace_back(new float[static_cast<size_t>(spec->numel())]);
  FERRY_RETURN_IF_ERROR(w.read_f32(name, owned_.back().get()));
  return static_cast<const float*>(owned_.back().get());
}

Result<const float*> CpuEngine::load_fused(const ModelWeights& w, const std::vector<std::string>& names) {
  int64_t total = 0;
  for (const auto& name : names) {
    const WeightSpec* spec = w.spec(name);
    if (spec == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
    total += spec->numel();
  }
  owned_.emplace_back(new float[static_cast<size_t>(total)]);
  float* dst = owned_.back().get();
  for (const auto& name : names) {  // row-major [rows, in]: concatenating rows is concatenating memory
    FERRY_RETURN_IF_ERROR(w.read_f32(name, dst));
    dst += w.spec(name)->numel();
  }
  return static_cast<const float*>(owned_.back().get());
}

KvCacheShape CpuEngine::kv_cache_shape(int64_t num_blocks, int64_t block_size, k::KvCacheDType dtype) const {
  KvCacheShape s;
  s.dtype = dtype;
  s.num_layers = config_.num_layers;
  s.num_blocks = num_blocks;
  s.block_size = block_size;
  s.num_kv_heads = config_.num_kv_heads;
  s.head_dim = config_.head_dim;
  return s;
}

Status CpuEngine::validate(const ForwardBatch& b, const KvCacheStorage& cache) const {
  const KvCacheShape& cs = cache.shape();
  const KvCacheShape want = kv_cache_shape(cs.num_blocks, cs.block_size);
  if (cs.num_layers != want.num_layers || cs.num_kv_heads != want.num_kv_heads || cs.head_dim != want.head_dim) {
    return Status::InvalidArgument("kv cache shape does not match the model");
  }
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
    if (q.context_len < q.query_len || q.context_len > config_.max_position_embeddings) {
      return Status::InvalidArgument(where() + "context_len " + std::to_string(q.context_len) +
                                     " must be in [query_len, max_position_embeddings]");
    }
    if (static_cast<int64_t>(q.block_table.size()) * cs.block_size < q.context_len) {
      return Status::InvalidArgument(where() + "block table too short for context_len " + std::to_string(q.context_len));
    }
    const int64_t used_blocks = (q.context_len + cs.block_size - 1) / cs.block_size;
    for (int64_t i = 0; i < used_blocks; ++i) {
      if (q.block_table[i] < 0 || q.block_table[i] >= cs.num_blocks) {
        return Status::InvalidArgument(where() + "block " + std::to_string(q.block_table[i]) + " is outside the cache");
      }
    }
    for (int32_t i = 0; i < q.query_len; ++i) {
      const int64_t t = q.query_start + i;
      if (b.positions[t] != q.context_len - q.query_len + i) {
        return Status::InvalidArgument(where() + "position of token " + std::to_string(t) +
                                       " must be context_len - query_len + its index");
      }
      if (b.token_ids[t] < 0 || b.token_ids[t] >= config_.vocab_size) {
        return Status::InvalidArgument(where() + "token id " + std::to_string(b.token_ids[t]) + " out of range");
      }
    }
    next += q.query_len;
  }
  if (next != num_tokens) return Status::InvalidArgument("batch: tokens not covered by any sequence");
  return Status::Ok();
}

void CpuEngine::prepare_metadata(const ForwardBatch& b, const KvCacheStorage& cache) {
  const int64_t block_size = cache.shape().block_size;
  const size_t num_seqs = b.sequences.size();
  max_blocks_ = 0;
  for (const auto& q : b.sequences) max_blocks_ = std::max<int64_t>(max_blocks_, (q.context_len + block_size - 1) / block_size);
  query_start_.assign(1, 0);
  context_lens_.clear();
  block_tables_.assign(num_seqs * static_cast<size_t>(max_blocks_), 0);
  slots_.clear();
  logit_rows_.clear();
  for (size_t s = 0; s < num_seqs; ++s) {
    const SequenceInput& q = b.sequences[s];
    query_start_.push_back(q.query_start + q.query_len);
    context_lens_.push_back(q.context_len);
    const int64_t used_blocks = (q.context_len + block_size - 1) / block_size;
    std::copy(q.block_table.begin(), q.block_table.begin() + used_blocks, block_tables_.begin() + s * max_blocks_);
    for (int32_t i = 0; i < q.query_len; ++i) {
      const int64_t pos = q.context_len - q.query_len + i;
      slots_.push_back(static_cast<int64_t>(q.block_table[pos / block_size]) * block_size + pos % block_size);
      if (b.all_logits) logit_rows_.push_back(q.query_start + i);
    }
    if (!b.all_logits) logit_rows_.push_back(q.query_start + q.query_len - 1);
  }
}

// h_ holds the normed input; leaves the o_proj output in delta_.
void CpuEngine::attention_block(int64_t layer, const int32_t* positions, int64_t num_tokens, KvCacheStorage& cache) {
  const ModelConfig& c = config_;
  const LayerParams& p = layers_[layer];
  const int64_t qkv_width = c.q_size() + 2 * c.kv_size();
  float* q = qkv_.data();
  float* kk = q + c.q_size();
  float* v = kk + c.kv_size();
  k::matmul(ctx_, qkv_.data(), h_.data(), p.qkv, k::DType::kF32, p.qkv_bias, num_tokens, qkv_width, c.hidden_size);
  if (c.qk_norm) {
    k::head_rms_norm(ctx_, q, p.q_norm, num_tokens, qkv_width, c.num_heads, c.head_dim, c.rms_norm_eps);
    k::head_rms_norm(ctx_, kk, p.k_norm, num_tokens, qkv_width, c.num_kv_heads, c.head_dim, c.rms_norm_eps);
  }
  // positions come from the batch, checked by validate() to equal the slots' positions.
  k::rope(ctx_, q, kk, positions, inv_freq_.data(), num_tokens, qkv_width, qkv_width, c.num_heads,
          c.num_kv_heads, c.head_dim);
  k::PagedAttentionArgs a;
  a.kv_dtype = cache.dtype();
  if (a.kv_dtype == k::KvCacheDType::kInt8) {
    k::kv_cache_write_int8(ctx_, cache.k_int8(layer), cache.v_int8(layer), cache.k_scales(layer),
                           cache.v_scales(layer), kk, v, slots_.data(), num_tokens, qkv_width, qkv_width,
                           c.num_kv_heads, c.head_dim);
    a.k_cache = cache.k_int8(layer);
    a.v_cache = cache.v_int8(layer);
    a.k_scales = cache.k_scales(layer);
    a.v_scales = cache.v_scales(layer);
  } else {
    k::kv_cache_write(ctx_, cache.k(layer), cache.v(layer), kk, v, slots_.data(), num_tokens, qkv_width,
                      qkv_width, c.num_kv_heads, c.head_dim);
    a.k_cache = cache.k(layer);
    a.v_cache = cache.v(layer);
  }
  a.out = attn_.data();
  a.q = q;
  a.query_start = query_start_.data();
  a.context_lens = context_lens_.data();
  a.block_tables = block_tables_.data();
  a.num_seqs = static_cast<int64_t>(context_lens_.size());
  a.num_tokens = num_tokens;
  a.max_blocks_per_seq = max_blocks_;
  a.q_stride = qkv_width;
  a.num_q_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.block_size = cache.shape().block_size;
  a.num_blocks = cache.shape().num_blocks;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  k::paged_attention(ctx_, a);
  k::matmul(ctx_, delta_.data(), attn_.data(), p.o, k::DType::kF32, p.o_bias, num_tokens, c.hidden_size, c.q_size());
}

// h_ holds the normed input; leaves the down_proj output in delta_.
void CpuEngine::mlp_block(int64_t layer, int64_t num_tokens) {
  const ModelConfig& c = config_;
  const LayerParams& p = layers_[layer];
  k::matmul(ctx_, gate_up_.data(), h_.data(), p.gate_up, k::DType::kF32, nullptr, num_tokens,
            2 * c.intermediate_size, c.hidden_size);
  k::silu_and_mul(ctx_, act_.data(), gate_up_.data(), num_tokens, c.intermediate_size);
  k::matmul(ctx_, delta_.data(), act_.data(), p.down, k::DType::kF32, nullptr, num_tokens, c.hidden_size,
            c.intermediate_size);
}

Status CpuEngine::forward(const ForwardBatch& batch, KvCacheStorage& cache, ForwardOutput* out) {
  FERRY_RETURN_IF_ERROR(validate(batch, cache));
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  const int64_t hidden = c.hidden_size;
  prepare_metadata(batch, cache);
  auto grow = [](std::vector<float>& buf, int64_t size) {
    if (static_cast<int64_t>(buf.size()) < size) buf.resize(static_cast<size_t>(size));
  };
  grow(x_, n * hidden);
  grow(h_, n * hidden);
  grow(delta_, n * hidden);
  grow(qkv_, n * (c.q_size() + 2 * c.kv_size()));
  grow(attn_, n * c.q_size());
  grow(gate_up_, n * 2 * c.intermediate_size);
  grow(act_, n * c.intermediate_size);

  k::embedding(ctx_, x_.data(), embed_, k::DType::kF32, c.vocab_size, hidden, batch.token_ids.data(), n);
  k::rms_norm(ctx_, h_.data(), x_.data(), layers_[0].input_norm, n, hidden, c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    attention_block(l, batch.positions.data(), n, cache);
    k::add_rms_norm(ctx_, h_.data(), x_.data(), delta_.data(), layers_[l].post_norm, n, hidden, c.rms_norm_eps);
    mlp_block(l, n);
    const float* next_norm = l + 1 < c.num_layers ? layers_[l + 1].input_norm : final_norm_;
    k::add_rms_norm(ctx_, h_.data(), x_.data(), delta_.data(), next_norm, n, hidden, c.rms_norm_eps);
  }
  // h_ now holds the final-normed hidden states; project only the rows whose logits are wanted.
  const int64_t rows = static_cast<int64_t>(logit_rows_.size());
  grow(last_, rows * hidden);
  k::gather_rows(ctx_, last_.data(), h_.data(), logit_rows_.data(), rows, hidden);
  out->num_rows = rows;
  out->vocab = c.vocab_size;
  out->logits.resize(static_cast<size_t>(rows * c.vocab_size));
  k::matmul(ctx_, out->logits.data(), last_.data(), lm_head_, k::DType::kF32, nullptr, rows, c.vocab_size, hidden);
  return Status::Ok();
}

}  // namespace ferry::llm
