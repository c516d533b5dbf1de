// Phi-3 and Phi-3.5 (Phi3ForCausalLM; also Phi-4-mini, which adds partial_rotary_factor).
//
// The Llama layer (pre-norm RMSNorm, SwiGLU, GQA, RoPE) with two checkpoint differences and one
// RoPE variant:
//   self_attn.qkv_proj.weight  [q_size + 2 * kv_size, hidden]: q, k, v rows back to back, which is
//                              exactly the [tokens, q | k | v] buffer layout, so it is one matrix and
//                              one linear call (read in place for bf16 checkpoints);
//   mlp.gate_up_proj.weight    [2 * inter, hidden]: gate rows then up rows (HF chunks the output in
//                              two: gate first), the layout silu_and_mul reads, again one matrix;
//   rope_scaling "longrope" (alias "su", the 128k models): inv_freq[j] = 1 / (ext[j] *
//                              theta^(2j / rotary_dim)) with ext the short_factor or long_factor
//                              list, and cos/sin multiplied by an attention factor
//                              a = sqrt(1 + ln(s) / ln(original_max)), s = max_position_embeddings /
//                              original_max_position_embeddings (or rope_scaling.attention_factor).
//                              Scaling cos and sin by a scales the rotated part of both q and k by
//                              a, so that part of q.k by a^2. With full rotary the attention scale
//                              carries a^2 (no extra pass); with partial rotary (Phi-4-mini) only the
//                              rotated dims may scale, so q's rotated dims are multiplied by a^2
//                              after RoPE (scale_head_prefix, a CPU loop until kernels.h has one).
//
// Short or long factors: HF switches per forward call (the long list once the sequence exceeds
// original_max_position_embeddings, re-rotating only the new tokens, so a sequence that crosses the
// threshold keeps keys rotated both ways in its cache). ferry chooses once per model: the long list
// when max_position_embeddings > original_max_position_embeddings (every 128k checkpoint), the short
// one otherwise. Every position then has one rotation whatever the batching, chunking or prefix
// cache; the cost is that a 128k model differs from HF's output on sequences of at most
// original_max_position_embeddings tokens (where HF uses the short list). Checked against the numpy
// reference (tests/llm/model/numpy_forward.py) in both regimes.
//
// sliding_window (Phi-3-mini-4k: 2047) applies to every layer: a query at p sees keys (p - w, p].
#include <cmath>

#include "backend/llm/model/architecture.h"
#include "backend/llm/model/architectures/architectures.h"

namespace ferry::llm {
namespace {

namespace k = ferry::kernels;

Status configure(const Json::Value& root, ModelConfig* c) {
  const std::string act = c->hidden_act.empty() ? "silu" : c->hidden_act;
  if (act != "silu") return Status::Unimplemented("config.json: hidden_act '" + act + "' is not supported (only silu)");
  const Json::Value& ab = root.get("attention_bias", false);
  if (!ab.isBool() || ab.asBool()) {
    return Status::Unimplemented("config.json: attention_bias must be false for Phi3ForCausalLM");
  }
  if (c->sliding_window && *c->sliding_window > 0) {
    c->layer_windows.assign(static_cast<size_t>(c->num_layers), *c->sliding_window);
  }
  return Status::Ok();
}

std::vector<WeightSpec> plan(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  std::vector<WeightSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto add = [&](const std::string& suffix, std::vector<int64_t> shape) {
      specs.push_back({layer_tensor_name(l, suffix), std::move(shape)});
    };
    add("input_layernorm.weight", {h});
    add("self_attn.qkv_proj.weight", {c.q_size() + 2 * c.kv_size(), h});
    add("self_attn.o_proj.weight", {h, c.q_size()});
    add("post_attention_layernorm.weight", {h});
    add("mlp.gate_up_proj.weight", {2 * c.intermediate_size, h});
    add("mlp.down_proj.weight", {h, c.intermediate_size});
  }
  specs.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}});
  return specs;
}

// Fills inv_freq[rotary_dim / 2] and returns the factor q.k is multiplied by (a^2 above; 1 without
// longrope).
float phi3_rope(const ModelConfig& c, float* inv_freq) {
  if (!c.longrope) {
    k::rope_inv_freq(c.rope, c.rotary_dim, inv_freq);
    return 1.0f;
  }
  const ModelConfig::LongRope& lr = *c.longrope;
  const int64_t orig = lr.original_max_position_embeddings;
  const bool use_long = c.max_position_embeddings > orig;
  const std::vector<float>& ext = use_long ? lr.long_factor : lr.short_factor;
  for (int64_t j = 0; j < c.rotary_dim / 2; ++j) {
    const double base = std::pow(static_cast<double>(c.rope.theta), static_cast<double>(2 * j) / c.rotary_dim);
    inv_freq[j] = static_cast<float>(1.0 / (static_cast<double>(ext[static_cast<size_t>(j)]) * base));
  }
  double a = lr.attention_factor;
  if (a <= 0) {
    const double s = static_cast<double>(c.max_position_embeddings) / static_cast<double>(orig);
    a = s <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(s) / std::log(static_cast<double>(orig)));
  }
  return static_cast<float>(a * a);
}

class Phi3Model final : public CausalLM {
 public:
  explicit Phi3Model(const ModelConfig& c) : CausalLM(c) {}

  Status load(WeightLoader& w) {
    const ModelConfig& c = config_;
    arena_ = w.arena();
    FERRY_RETURN_IF_ERROR(ends_.load(w, c.tie_word_embeddings));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto n = [l](const char* suffix) { return layer_tensor_name(l, suffix); };
      Layer p;
      FERRY_ASSIGN_OR_RETURN(p.input_norm, w.vector(n("input_layernorm.weight")));
      FERRY_ASSIGN_OR_RETURN(p.qkv, w.matrix(n("self_attn.qkv_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.o, w.matrix(n("self_attn.o_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.post_norm, w.vector(n("post_attention_layernorm.weight")));
      FERRY_ASSIGN_OR_RETURN(p.gate_up, w.matrix(n("mlp.gate_up_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.down, w.matrix(n("mlp.down_proj.weight")));
      layers_.push_back(p);
    }
    inv_freq_.resize(static_cast<size_t>(c.rotary_dim / 2));
    qk_factor_ = phi3_rope(c, inv_freq_.data());
    return Status::Ok();
  }

  void forward(const k::Context& ctx, const StepMetadata& m, const KvCacheView& kv, Workspace& ws) const override {
    const ModelConfig& c = config_;
    const int64_t n = m.num_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    const int64_t qkv_width = c.q_size() + 2 * c.kv_size();
    float* x = ws.get(Workspace::kResidual, n * hidden);     // [n, hidden] residual stream
    float* h = ws.get(Workspace::kHidden, n * hidden);       // [n, hidden] normed input of a sub-layer
    float* delta = ws.get(Workspace::kDelta, n * hidden);    // [n, hidden] a sub-layer's output
    float* qkv = ws.get(Workspace::kQkv, n * qkv_width);     // [n, q | k | v]
    float* attn = ws.get(Workspace::kAttn, n * c.q_size());  // [n, q_size]
    float* gate_up = ws.get(Workspace::kGateUp, n * 2 * inter);  // [n, gate | up]
    float* act = ws.get(Workspace::kAct, n * inter);         // [n, inter]
    float* q = qkv;
    float* kk = q + c.q_size();
    float* v = kk + c.kv_size();
    const bool partial = c.rotary_dim < c.head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    AttentionParams ap{c.num_heads, c.num_kv_heads, c.head_dim, partial ? scale : qk_factor_ * scale};

    k::embedding(ctx, x, ends_.embed.data, ends_.embed.dtype, c.vocab_size, hidden, m.token_ids, n);
    k::rms_norm(ctx, h, x, layers_[0].input_norm, n, hidden, c.rms_norm_eps);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const Layer& p = layers_[static_cast<size_t>(l)];
      k::linear(ctx, qkv, qkv_width, h, p.qkv, nullptr, n);
      rope_partial(ctx, q, kk, m.positions, inv_freq_.data(), n, qkv_width, c.num_heads, c.num_kv_heads, c.head_dim,
                   c.rotary_dim);
      if (partial && qk_factor_ != 1.0f) {
        scale_head_prefix(ctx, q, n, qkv_width, c.num_heads, c.head_dim, c.rotary_dim, qk_factor_);
      }
      ap.sliding_window = c.layer_windows.empty() ? 0 : c.layer_windows[static_cast<size_t>(l)];
      attention(ctx, m, kv, l, ap, q, kk, v, qkv_width, attn);
      k::linear(ctx, delta, hidden, attn, p.o, nullptr, n);
      k::add_rms_norm(ctx, h, x, delta, p.post_norm, n, hidden, c.rms_norm_eps);
      k::linear(ctx, gate_up, 2 * inter, h, p.gate_up, nullptr, n);
      k::silu_and_mul(ctx, act, gate_up, n, inter);
      k::linear(ctx, delta, hidden, act, p.down, nullptr, n);
      const float* next_norm = l + 1 < c.num_layers ? layers_[static_cast<size_t>(l + 1)].input_norm : ends_.final_norm;
      k::add_rms_norm(ctx, h, x, delta, next_norm, n, hidden, c.rms_norm_eps);
    }
  }

  void logits(const k::Context& ctx, const float* hidden, int64_t rows, float* out) const override {
    k::linear(ctx, out, config_.vocab_size, hidden, ends_.lm_head, nullptr, rows);
  }

  int64_t weight_bytes() const override { return arena_->owned_bytes() + arena_->mapped_bytes(); }

 private:
  struct Layer {
    const float* input_norm = nullptr;  // [hidden]
    k::WeightMatrix qkv;                // [q_size + 2 * kv_size, hidden]
    k::WeightMatrix o;                  // [hidden, q_size]
    const float* post_norm = nullptr;   // [hidden]
    k::WeightMatrix gate_up;            // [2 * inter, hidden]: gate rows, then up rows
    k::WeightMatrix down;               // [hidden, inter]
  };
  std::shared_ptr<WeightArena> arena_;
  ModelEnds ends_;  // embedding [vocab, hidden], final norm [hidden], lm_head [vocab, hidden]
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;        // [rotary_dim / 2]
  float qk_factor_ = 1.0f;             // longrope's attention factor squared (see the top)
};

Result<std::unique_ptr<CausalLM>> create(const ModelConfig& c, WeightLoader& loader) {
  auto m = std::make_unique<Phi3Model>(c);
  FERRY_RETURN_IF_ERROR(m->load(loader));
  return std::unique_ptr<CausalLM>(std::move(m));
}

}  // namespace

const ArchitectureInfo kPhi3Architectures[1] = {
    {"Phi3ForCausalLM", configure, plan, create},
};

}  // namespace ferry::llm
