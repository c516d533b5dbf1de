// The Llama family: LlamaForCausalLM (Llama 2, Llama 3.x), MistralForCausalLM, Qwen2ForCausalLM
// (q/k/v biases) and Qwen3ForCausalLM (per-head q/k RMSNorm before RoPE).
//
// Per layer (pre-norm):  h = rmsnorm(x);  x += o(attn(rope(q(h)), rope(k(h)), v(h)));
//                        h = rmsnorm(x);  x += down(silu(gate(h)) * up(h)).
// q, k and v are three matrices whose outputs land side by side in one [tokens, q+2kv] buffer
// (no fused copy of the weights: bf16 checkpoints are read in place from the mapping).
// Sliding windows, as HF applies them (a query at p sees keys (p - w, p]):
//   Mistral        `sliding_window` on every layer when set (Mistral 7B v0.1: 4096; later ones null);
//   Qwen2, Qwen3   only with `use_sliding_window: true` (HF's default is false), and then only on
//                  layers l >= `max_window_layers` (default 28; the lower layers stay full), unless
//                  a `layer_types` list names each layer's kind;
//   Llama          never (HF's Llama ignores the key).
// The KV blocks that fell out of a window stay allocated (freeing them is a scheduler feature).
#include <cmath>

#include "backend/llm/model/architecture.h"
#include "backend/llm/model/architectures/architectures.h"

namespace ferry::llm {
namespace {

namespace k = ferry::kernels;

// `layer_types` (newer HF configs): "sliding_attention" / "full_attention" per layer. nullopt when
// absent.
Result<std::optional<std::vector<bool>>> layer_types(const Json::Value& root, int64_t num_layers) {
  if (!root.isMember("layer_types") || root["layer_types"].isNull()) return std::optional<std::vector<bool>>();
  const Json::Value& list = root["layer_types"];
  if (!list.isArray() || static_cast<int64_t>(list.size()) != num_layers) {
    return Status::InvalidArgument("config.json: key 'layer_types' must list one type per layer");
  }
  std::vector<bool> sliding;
  for (const auto& t : list) {
    if (!t.isString() || (t.asString() != "sliding_attention" && t.asString() != "full_attention")) {
      return Status::InvalidArgument("config.json: layer_types entries must be 'sliding_attention' or 'full_attention'");
    }
    sliding.push_back(t.asString() == "sliding_attention");
  }
  return std::optional<std::vector<bool>>(std::move(sliding));
}

Status configure_windows(const Json::Value& root, ModelConfig* c) {
  const std::string& name = c->architecture_name;
  if (name == "LlamaForCausalLM" || !c->sliding_window || *c->sliding_window <= 0) return Status::Ok();
  std::vector<bool> sliding(static_cast<size_t>(c->num_layers), true);  // Mistral: every layer
  if (name == "Qwen2ForCausalLM" || name == "Qwen3ForCausalLM") {
    const Json::Value& use = root.get("use_sliding_window", false);
    if (!use.isBool()) return Status::InvalidArgument("config.json: key 'use_sliding_window' must be a boolean");
    if (!use.asBool()) return Status::Ok();
    const Json::Value& mwl = root.get("max_window_layers", 28);
    if (!mwl.isInt64() || mwl.asInt64() < 0) {
      return Status::InvalidArgument("config.json: key 'max_window_layers' must be a non-negative integer");
    }
    for (int64_t l = 0; l < c->num_layers; ++l) sliding[static_cast<size_t>(l)] = l >= mwl.asInt64();
  }
  std::optional<std::vector<bool>> types;
  FERRY_ASSIGN_OR_RETURN(types, layer_types(root, c->num_layers));
  if (types) sliding = *types;
  c->layer_windows.assign(static_cast<size_t>(c->num_layers), 0);
  for (int64_t l = 0; l < c->num_layers; ++l)
    if (sliding[static_cast<size_t>(l)]) c->layer_windows[static_cast<size_t>(l)] = *c->sliding_window;
  return Status::Ok();
}

Status configure(const Json::Value& root, ModelConfig* c) {
  const std::string act = c->hidden_act.empty() ? "silu" : c->hidden_act;
  if (act != "silu") return Status::Unimplemented("config.json: hidden_act '" + act + "' is not supported (only silu)");
  const Json::Value& ab = root.get("attention_bias", false);
  const Json::Value& mb = root.get("mlp_bias", false);
  if (!ab.isBool()) return Status::InvalidArgument("config.json: key 'attention_bias' must be a boolean");
  if (!mb.isBool()) return Status::InvalidArgument("config.json: key 'mlp_bias' must be a boolean");
  if (mb.asBool()) return Status::Unimplemented("config.json: mlp_bias true is not supported");
  const bool attention_bias = ab.asBool();
  const std::string& name = c->architecture_name;
  if (name == "Qwen2ForCausalLM") {
    c->qkv_bias = true;  // Qwen2's q/k/v projections always carry a bias; o_proj never does.
  } else if (name == "Qwen3ForCausalLM") {
    c->qk_norm = true;
    c->qkv_bias = attention_bias;
  } else {
    c->qkv_bias = attention_bias;
    c->o_bias = attention_bias;
  }
  if (c->longrope) return Status::Unimplemented("config.json: rope_scaling longrope is not supported for " + name);
  if (c->rotary_dim != c->head_dim) {
    return Status::Unimplemented("config.json: partial_rotary_factor is not supported for " + name);
  }
  return configure_windows(root, c);
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
    if (c.qkv_bias) {
      add("self_attn.q_proj.bias", {c.q_size()});
      add("self_attn.k_proj.bias", {c.kv_size()});
      add("self_attn.v_proj.bias", {c.kv_size()});
    }
    if (c.o_bias) add("self_attn.o_proj.bias", {h});
    if (c.qk_norm) {
      add("self_attn.q_norm.weight", {c.head_dim});
      add("self_attn.k_norm.weight", {c.head_dim});
    }
    add("post_attention_layernorm.weight", {h});
    add("mlp.gate_proj.weight", {c.intermediate_size, h});
    add("mlp.up_proj.weight", {c.intermediate_size, h});
    add("mlp.down_proj.weight", {h, c.intermediate_size});
  }
  specs.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}});
  return specs;
}

class LlamaModel final : public CausalLM {
 public:
  explicit LlamaModel(const ModelConfig& c) : CausalLM(c) {}

  Status load(WeightLoader& w) {
    const ModelConfig& c = config_;
    arena_ = w.arena();
    FERRY_RETURN_IF_ERROR(ends_.load(w, c.tie_word_embeddings));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto n = [l](const char* suffix) { return layer_tensor_name(l, suffix); };
      Layer p;
      FERRY_ASSIGN_OR_RETURN(p.input_norm, w.vector(n("input_layernorm.weight")));
      FERRY_ASSIGN_OR_RETURN(p.q, w.matrix(n("self_attn.q_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.k, w.matrix(n("self_attn.k_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.v, w.matrix(n("self_attn.v_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.o, w.matrix(n("self_attn.o_proj.weight")));
      if (c.qkv_bias) {
        FERRY_ASSIGN_OR_RETURN(p.q_bias, w.vector(n("self_attn.q_proj.bias")));
        FERRY_ASSIGN_OR_RETURN(p.k_bias, w.vector(n("self_attn.k_proj.bias")));
        FERRY_ASSIGN_OR_RETURN(p.v_bias, w.vector(n("self_attn.v_proj.bias")));
      }
      if (c.o_bias) FERRY_ASSIGN_OR_RETURN(p.o_bias, w.vector(n("self_attn.o_proj.bias")));
      if (c.qk_norm) {
        FERRY_ASSIGN_OR_RETURN(p.q_norm, w.vector(n("self_attn.q_norm.weight")));
        FERRY_ASSIGN_OR_RETURN(p.k_norm, w.vector(n("self_attn.k_norm.weight")));
      }
      FERRY_ASSIGN_OR_RETURN(p.post_norm, w.vector(n("post_attention_layernorm.weight")));
      FERRY_ASSIGN_OR_RETURN(p.gate, w.matrix(n("mlp.gate_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.up, w.matrix(n("mlp.up_proj.weight")));
      FERRY_ASSIGN_OR_RETURN(p.down, w.matrix(n("mlp.down_proj.weight")));
      layers_.push_back(p);
    }
    inv_freq_.resize(static_cast<size_t>(c.head_dim / 2));
    k::rope_inv_freq(c.rope, c.head_dim, inv_freq_.data());
    return Status::Ok();
  }

  void forward(const k::Context& ctx, const StepMetadata& m, const KvCacheView& kv, Workspace& ws) const override {
    const ModelConfig& c = config_;
    const int64_t n = m.num_tokens, hidden = c.hidden_size, qkv_width = c.q_size() + 2 * c.kv_size();
    float* x = ws.get(Workspace::kResidual, n * hidden);
    float* h = ws.get(Workspace::kHidden, n * hidden);
    float* delta = ws.get(Workspace::kDelta, n * hidden);
    float* qkv = ws.get(Workspace::kQkv, n * qkv_width);
    float* attn = ws.get(Workspace::kAttn, n * c.q_size());
    float* gate_up = ws.get(Workspace::kGateUp, n * 2 * c.intermediate_size);
    float* act = ws.get(Workspace::kAct, n * c.intermediate_size);
    float* q = qkv;
    float* kk = q + c.q_size();
    float* v = kk + c.kv_size();
    AttentionParams ap{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};

    k::embedding(ctx, x, ends_.embed.data, ends_.embed.dtype, c.vocab_size, hidden, m.token_ids, n);
    k::rms_norm(ctx, h, x, layers_[0].input_norm, n, hidden, c.rms_norm_eps);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const Layer& p = layers_[l];
      // Attention: q, k, v side by side in one buffer, then the paged attention of this layer.
      k::linear(ctx, q, qkv_width, h, p.q, p.q_bias, n);
      k::linear(ctx, kk, qkv_width, h, p.k, p.k_bias, n);
      k::linear(ctx, v, qkv_width, h, p.v, p.v_bias, n);
      if (c.qk_norm) {
        k::head_rms_norm(ctx, q, p.q_norm, n, qkv_width, c.num_heads, c.head_dim, c.rms_norm_eps);
        k::head_rms_norm(ctx, kk, p.k_norm, n, qkv_width, c.num_kv_heads, c.head_dim, c.rms_norm_eps);
      }
      k::rope(ctx, q, kk, m.positions, inv_freq_.data(), n, qkv_width, qkv_width, c.num_heads, c.num_kv_heads,
              c.head_dim);
      ap.sliding_window = c.layer_windows.empty() ? 0 : c.layer_windows[static_cast<size_t>(l)];
      attention(ctx, m, kv, l, ap, q, kk, v, qkv_width, attn);
      k::linear(ctx, delta, hidden, attn, p.o, p.o_bias, n);
      k::add_rms_norm(ctx, h, x, delta, p.post_norm, n, hidden, c.rms_norm_eps);
      // MLP: gate and up side by side, SwiGLU, down.
      const int64_t inter = c.intermediate_size;
      k::linear(ctx, gate_up, 2 * inter, h, p.gate, nullptr, n);
      k::linear(ctx, gate_up + inter, 2 * inter, h, p.up, nullptr, n);
      k::silu_and_mul(ctx, act, gate_up, n, inter);
      k::linear(ctx, delta, hidden, act, p.down, nullptr, n);
      const float* next_norm = l + 1 < c.num_layers ? layers_[l + 1].input_norm : ends_.final_norm;
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
    k::WeightMatrix q, k, v, o;         // [q_size, hidden], [kv_size, hidden] x2, [hidden, q_size]
    const float* q_bias = nullptr;      // [q_size] or nullptr (and k_bias, v_bias: [kv_size])
    const float* k_bias = nullptr;
    const float* v_bias = nullptr;
    const float* o_bias = nullptr;      // [hidden] or nullptr
    const float* q_norm = nullptr;      // [head_dim] or nullptr (Qwen3)
    const float* k_norm = nullptr;
    const float* post_norm = nullptr;   // [hidden]
    k::WeightMatrix gate, up, down;     // [inter, hidden] x2, [hidden, inter]
  };
  std::shared_ptr<WeightArena> arena_;
  ModelEnds ends_;  // embedding [vocab, hidden], final norm [hidden], lm_head [vocab, hidden]
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;        // [head_dim / 2]
};

Result<std::unique_ptr<CausalLM>> create(const ModelConfig& c, WeightLoader& loader) {
  auto m = std::make_unique<LlamaModel>(c);
  FERRY_RETURN_IF_ERROR(m->load(loader));
  return std::unique_ptr<CausalLM>(std::move(m));
}

}  // namespace

const ArchitectureInfo kLlamaArchitectures[4] = {
    {"LlamaForCausalLM", configure, plan, create},
    {"MistralForCausalLM", configure, plan, create},
    {"Qwen2ForCausalLM", configure, plan, create},
    {"Qwen3ForCausalLM", configure, plan, create},
};

}  // namespace ferry::llm
