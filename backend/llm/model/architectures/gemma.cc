// Gemma 2 (Gemma2ForCausalLM) and Gemma 3 text (Gemma3ForCausalLM: the 1B model, and the text
// tower of the larger ones when exported as a text-only checkpoint).
//
// Per layer, four RMSNorms (all with (1 + w) weights: loaded with vector(name, 1.0f)); the two post
// norms normalize the sub-layer's output before it joins the residual stream:
//   h = in_norm(x);  x += post_attn_norm(o(attn(rope(q(h)), rope(k(h)), v(h))));
//   h = pre_ff_norm(x);  x += post_ff_norm(down(gelu_tanh(gate(h)) * up(h))).
// Attention: q.k scaled by query_pre_attn_scalar^-0.5 (not head_dim^-0.5); Gemma 2 soft-caps the
// scores (attn_logit_softcapping: c * tanh(s / c)) and the logits (final_logit_softcapping).
// Local (sliding-window) and global layers alternate:
//   Gemma 2  even layers local (0, 2, ...), window sliding_window (4096); one RoPE (rope_theta);
//   Gemma 3  layer l local unless (l + 1) % sliding_window_pattern == 0 (5 local : 1 global);
//            local layers use rope_local_base_freq without scaling, global ones rope_theta with
//            rope_scaling (linear on the 4B+ models); q and k get a per-head (1 + w) RMSNorm
//            (q_norm, k_norm) before RoPE.
// A `layer_types` list, when the config has one, names each layer's kind instead.
// Embeddings are tied unless tie_word_embeddings is false (HF's Gemma default is true).
//
// The embedding scale. HF multiplies the embeddings by sqrt(hidden_size) rounded to the activation
// dtype (bf16: 48 for Gemma 2 2B, 59.75 for 9B). kernels.h has no scaling operator, so the residual
// stream here is kept divided by that factor s instead, which costs nothing and is exact up to fp32
// rounding: the embeddings go in unscaled; the two post norms, whose outputs are what the stream
// adds, carry (1 + w) / s; and every norm that reads the stream (input, pre-feedforward, final)
// uses eps / s^2, since rms_norm(x / s, eps / s^2) = x / sqrt(mean(x^2) + eps) = rms_norm(x, eps).
// The sub-layers see exactly the inputs HF gives them.
//
// Not supported: Gemma3ForConditionalGeneration (vision tower, language_model.* names), Gemma 1.
#include <cmath>

#include "backend/llm/model/architecture.h"
#include "backend/llm/model/architectures/architectures.h"

namespace ferry::llm {
namespace {

namespace k = ferry::kernels;

bool is_gemma3(const ModelConfig& c) { return c.architecture_name == "Gemma3ForCausalLM"; }

// A float key whose null means "off" (0) and whose absence means HF's default.
Result<float> optional_float(const Json::Value& root, const char* key, float fallback) {
  if (!root.isMember(key)) return fallback;
  const Json::Value& v = root[key];
  if (v.isNull()) return 0.0f;
  if (!v.isNumeric() || v.asDouble() < 0) {
    return Status::InvalidArgument(std::string("config.json: key '") + key + "' must be a number >= 0 or null");
  }
  return static_cast<float>(v.asDouble());
}

// Which layers are local (sliding window): `layer_types`, else the architecture's pattern.
Result<std::vector<bool>> local_layers(const Json::Value& root, const ModelConfig& c) {
  std::vector<bool> local(static_cast<size_t>(c.num_layers));
  if (root.isMember("layer_types") && !root["layer_types"].isNull()) {
    const Json::Value& list = root["layer_types"];
    if (!list.isArray() || static_cast<int64_t>(list.size()) != c.num_layers) {
      return Status::InvalidArgument("config.json: key 'layer_types' must list one type per layer");
    }
    for (Json::ArrayIndex l = 0; l < list.size(); ++l) {
      const Json::Value& t = list[l];
      if (!t.isString() || (t.asString() != "sliding_attention" && t.asString() != "full_attention")) {
        return Status::InvalidArgument("config.json: layer_types entries must be 'sliding_attention' or 'full_attention'");
      }
      local[l] = t.asString() == "sliding_attention";
    }
    return local;
  }
  int64_t pattern = 2;  // Gemma 2: every other layer, starting with layer 0
  if (is_gemma3(c)) {
    const Json::Value& p = root.get("sliding_window_pattern", 6);
    if (!p.isInt64() || p.asInt64() < 1) {
      return Status::InvalidArgument("config.json: key 'sliding_window_pattern' must be a positive integer");
    }
    pattern = p.asInt64();
  }
  for (int64_t l = 0; l < c.num_layers; ++l) local[static_cast<size_t>(l)] = (l + 1) % pattern != 0;
  return local;
}

Status configure(const Json::Value& root, ModelConfig* c) {
  const bool g3 = is_gemma3(*c);
  const std::string& name = c->architecture_name;
  // HF's Gemma configs default the activation to gelu_pytorch_tanh (the common parse's default is silu).
  if (!root.isMember("hidden_act") && !root.isMember("hidden_activation")) c->hidden_act = "gelu_pytorch_tanh";
  if (c->hidden_act != "gelu_pytorch_tanh") {
    return Status::Unimplemented("config.json: hidden_activation '" + c->hidden_act + "' is not supported for " +
                                 name + " (only gelu_pytorch_tanh)");
  }
  const Json::Value& ab = root.get("attention_bias", false);
  if (!ab.isBool() || ab.asBool()) return Status::Unimplemented("config.json: attention_bias must be false for " + name);
  if (c->longrope) return Status::Unimplemented("config.json: rope_scaling longrope is not supported for " + name);
  if (c->rotary_dim != c->head_dim) {
    return Status::Unimplemented("config.json: partial_rotary_factor is not supported for " + name);
  }
  const Json::Value& tie = root.get("tie_word_embeddings", true);
  if (!tie.isBool()) return Status::InvalidArgument("config.json: key 'tie_word_embeddings' must be a boolean");
  c->tie_word_embeddings = tie.asBool();

  const Json::Value& qpas = root.get("query_pre_attn_scalar", 256);
  if (!qpas.isNumeric() || qpas.asDouble() <= 0) {
    return Status::InvalidArgument("config.json: key 'query_pre_attn_scalar' must be a number > 0");
  }
  c->attention_scale = static_cast<float>(1.0 / std::sqrt(qpas.asDouble()));
  FERRY_ASSIGN_OR_RETURN(c->attn_logit_softcap, optional_float(root, "attn_logit_softcapping", g3 ? 0.0f : 50.0f));
  FERRY_ASSIGN_OR_RETURN(c->final_logit_softcap, optional_float(root, "final_logit_softcapping", g3 ? 0.0f : 30.0f));

  if (g3) {
    c->qk_norm = true;
    if (!root.isMember("rope_theta")) c->rope.theta = 1e6f;  // Gemma3TextConfig's default
    const Json::Value& local_theta = root.get("rope_local_base_freq", 10000.0);
    if (!local_theta.isNumeric() || local_theta.asDouble() <= 0) {
      return Status::InvalidArgument("config.json: key 'rope_local_base_freq' must be a number > 0");
    }
    k::RopeParams local;
    local.theta = static_cast<float>(local_theta.asDouble());
    c->local_rope = local;
  }

  // sliding_window: HF's default is 4096 when the key is absent; null turns the windows off.
  int64_t window = 4096;
  if (root.isMember("sliding_window")) window = c->sliding_window.value_or(0);
  if (window > 0) {
    std::vector<bool> local;
    FERRY_ASSIGN_OR_RETURN(local, local_layers(root, *c));
    c->layer_windows.assign(static_cast<size_t>(c->num_layers), 0);
    for (int64_t l = 0; l < c->num_layers; ++l)
      if (local[static_cast<size_t>(l)]) c->layer_windows[static_cast<size_t>(l)] = window;
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
    add("self_attn.q_proj.weight", {c.q_size(), h});
    add("self_attn.k_proj.weight", {c.kv_size(), h});
    add("self_attn.v_proj.weight", {c.kv_size(), h});
    add("self_attn.o_proj.weight", {h, c.q_size()});
    if (c.qk_norm) {
      add("self_attn.q_norm.weight", {c.head_dim});
      add("self_attn.k_norm.weight", {c.head_dim});
    }
    add("post_attention_layernorm.weight", {h});
    add("pre_feedforward_layernorm.weight", {h});
    add("post_feedforward_layernorm.weight", {h});
    add("mlp.gate_proj.weight", {c.intermediate_size, h});
    add("mlp.up_proj.weight", {c.intermediate_size, h});
    add("mlp.down_proj.weight", {h, c.intermediate_size});
  }
  specs.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}});
  return specs;
}

// sqrt(hidden_size) as HF has it: a tensor of the activation dtype.
float embedding_scale(const ModelConfig& c) {
  const float s = std::sqrt(static_cast<float>(c.hidden_size));
  switch (c.dtype) {
    case k::DType::kBF16: return k::bf16_to_f32(k::f32_to_bf16(s));
    case k::DType::kF16: return k::f16_to_f32(k::f32_to_f16(s));
    case k::DType::kF32: return s;
  }
  return s;
}

class GemmaModel final : public CausalLM {
 public:
  explicit GemmaModel(const ModelConfig& c) : CausalLM(c) {}

  Status load(WeightLoader& w) {
    const ModelConfig& c = config_;
    const int64_t hidden = c.hidden_size;
    arena_ = w.arena();
    const float s = embedding_scale(c);
    stream_eps_ = c.rms_norm_eps / (s * s);
    FERRY_RETURN_IF_ERROR(ends_.load(w, c.tie_word_embeddings, 1.0f));
    post_norms_.resize(static_cast<size_t>(c.num_layers * 2 * hidden));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto n = [l](const char* suffix) { return layer_tensor_name(l, suffix); };
      Layer p;
      FERRY_ASSIGN_OR_RETURN(p.input_norm, w.vector(n("input_layernorm.weight"), 1.0f));
      FERRY_ASSIGN_OR_RETURN(p.q, w.matrix(n("self_attn.q_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.k, w.matrix(n("self_attn.k_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.v, w.matrix(n("self_attn.v_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.o, w.matrix(n("self_attn.o_proj.weight")));
      if (c.qk_norm) {
        FERRY_ASSIGN_OR_RETURN(p.q_norm, w.vector(n("self_attn.q_norm.weight"), 1.0f));
        FERRY_ASSIGN_OR_RETURN(p.k_norm, w.vector(n("self_attn.k_norm.weight"), 1.0f));
      }
      FERRY_ASSIGN_OR_RETURN(p.pre_ff_norm, w.vector(n("pre_feedforward_layernorm.weight"), 1.0f));
      // The post norms carry (1 + w) / s (the residual stream is kept divided by s: see the top).
      const char* post_names[2] = {"post_attention_layernorm.weight", "post_feedforward_layernorm.weight"};
      for (int i = 0; i < 2; ++i) {
        const float* wt = nullptr;
        FERRY_ASSIGN_OR_RETURN(wt, w.vector(n(post_names[i]), 1.0f));
        float* dst = post_norms_.data() + (l * 2 + i) * hidden;
        for (int64_t j = 0; j < hidden; ++j) dst[j] = wt[j] / s;
        (i == 0 ? p.post_attn_norm : p.post_ff_norm) = dst;
      }
      FERRY_ASSIGN_OR_RETURN(p.gate, w.matrix(n("mlp.gate_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.up, w.matrix(n("mlp.up_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.down, w.matrix(n("mlp.down_proj.weight")));
      layers_.push_back(p);
    }
    global_inv_freq_.resize(static_cast<size_t>(c.head_dim / 2));
    k::rope_inv_freq(c.rope, c.head_dim, global_inv_freq_.data());
    local_inv_freq_ = global_inv_freq_;
    if (c.local_rope) k::rope_inv_freq(*c.local_rope, c.head_dim, local_inv_freq_.data());
    return Status::Ok();
  }

  void forward(const k::Context& ctx, const StepMetadata& m, const KvCacheView& kv, Workspace& ws) const override {
    const ModelConfig& c = config_;
    const int64_t n = m.num_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    const int64_t qkv_width = c.q_size() + 2 * c.kv_size();
    const float eps = c.rms_norm_eps;
    float* x = ws.get(Workspace::kResidual, n * hidden);     // [n, hidden] residual stream, divided by s
    float* h = ws.get(Workspace::kHidden, n * hidden);       // [n, hidden] normed input of a sub-layer
    float* delta = ws.get(Workspace::kDelta, n * hidden);    // [n, hidden] a sub-layer's output (/ s once post-normed)
    float* qkv = ws.get(Workspace::kQkv, n * qkv_width);     // [n, q | k | v]
    float* attn = ws.get(Workspace::kAttn, n * c.q_size());  // [n, q_size]
    float* gate_up = ws.get(Workspace::kGateUp, n * 2 * inter);  // [n, gate | up]
    float* act = ws.get(Workspace::kAct, n * inter);         // [n, inter]
    float* q = qkv;
    float* kk = q + c.q_size();
    float* v = kk + c.kv_size();
    AttentionParams ap{c.num_heads, c.num_kv_heads, c.head_dim, c.attention_scale};
    ap.logit_softcap = c.attn_logit_softcap;

    k::embedding(ctx, x, ends_.embed.data, ends_.embed.dtype, c.vocab_size, hidden, m.token_ids, n);
    k::rms_norm(ctx, h, x, layers_[0].input_norm, n, hidden, stream_eps_);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const Layer& p = layers_[static_cast<size_t>(l)];
      const int64_t window = c.layer_windows.empty() ? 0 : c.layer_windows[static_cast<size_t>(l)];
      k::linear(ctx, q, qkv_width, h, p.q, nullptr, n);
      k::linear(ctx, kk, qkv_width, h, p.k, nullptr, n);
      k::linear(ctx, v, qkv_width, h, p.v, nullptr, n);
      if (c.qk_norm) {
        k::head_rms_norm(ctx, q, p.q_norm, n, qkv_width, c.num_heads, c.head_dim, eps);
        k::head_rms_norm(ctx, kk, p.k_norm, n, qkv_width, c.num_kv_heads, c.head_dim, eps);
      }
      const float* inv_freq = window > 0 ? local_inv_freq_.data() : global_inv_freq_.data();
      k::rope(ctx, q, kk, m.positions, inv_freq, n, qkv_width, qkv_width, c.num_heads, c.num_kv_heads, c.head_dim);
      ap.sliding_window = window;
      attention(ctx, m, kv, l, ap, q, kk, v, qkv_width, attn);
      k::linear(ctx, delta, hidden, attn, p.o, nullptr, n);
      k::rms_norm(ctx, delta, delta, p.post_attn_norm, n, hidden, eps);
      k::add_rms_norm(ctx, h, x, delta, p.pre_ff_norm, n, hidden, stream_eps_);
      k::linear(ctx, gate_up, 2 * inter, h, p.gate, nullptr, n);
      k::linear(ctx, gate_up + inter, 2 * inter, h, p.up, nullptr, n);
      k::gelu_tanh_and_mul(ctx, act, gate_up, n, inter);
      k::linear(ctx, delta, hidden, act, p.down, nullptr, n);
      k::rms_norm(ctx, delta, delta, p.post_ff_norm, n, hidden, eps);
      const float* next_norm = l + 1 < c.num_layers ? layers_[static_cast<size_t>(l + 1)].input_norm : ends_.final_norm;
      k::add_rms_norm(ctx, h, x, delta, next_norm, n, hidden, stream_eps_);
    }
  }

  void logits(const k::Context& ctx, const float* hidden, int64_t rows, float* out) const override {
    k::linear(ctx, out, config_.vocab_size, hidden, ends_.lm_head, nullptr, rows);
    if (config_.final_logit_softcap > 0.0f) softcap(ctx, out, rows * config_.vocab_size, config_.final_logit_softcap);
  }

  int64_t weight_bytes() const override {
    return arena_->owned_bytes() + arena_->mapped_bytes() + static_cast<int64_t>(post_norms_.size() * sizeof(float));
  }

 private:
  struct Layer {
    const float* input_norm = nullptr;      // [hidden], 1 + w
    k::WeightMatrix q, k, v, o;             // [q_size, hidden], [kv_size, hidden] x2, [hidden, q_size]
    const float* q_norm = nullptr;          // [head_dim], 1 + w (Gemma 3)
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;  // [hidden], (1 + w) / s
    const float* pre_ff_norm = nullptr;     // [hidden], 1 + w
    const float* post_ff_norm = nullptr;    // [hidden], (1 + w) / s
    k::WeightMatrix gate, up, down;         // [inter, hidden] x2, [hidden, inter]
  };
  std::shared_ptr<WeightArena> arena_;
  ModelEnds ends_;  // embedding [vocab, hidden], final norm [hidden] (1 + w), lm_head [vocab, hidden]
  std::vector<Layer> layers_;
  std::vector<float> post_norms_;          // [num_layers, 2, hidden]: the post norms' (1 + w) / s
  float stream_eps_ = 0.0f;                // rms_norm_eps / s^2 for the norms that read the stream
  std::vector<float> global_inv_freq_;     // [head_dim / 2]: rope_theta, rope_scaling
  std::vector<float> local_inv_freq_;      // [head_dim / 2]: Gemma 3's rope_local_base_freq (else = global)
};

Result<std::unique_ptr<CausalLM>> create(const ModelConfig& c, WeightLoader& loader) {
  auto m = std::make_unique<GemmaModel>(c);
  FERRY_RETURN_IF_ERROR(m->load(loader));
  return std::unique_ptr<CausalLM>(std::move(m));
}

}  // namespace

const ArchitectureInfo kGemmaArchitectures[2] = {
    {"Gemma2ForCausalLM", configure, plan, create},
    {"Gemma3ForCausalLM", configure, plan, create},
};

}  // namespace ferry::llm
