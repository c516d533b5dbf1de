// Writes tiny GPTQ and AWQ checkpoints for tests: a one-layer Llama whose seven linear layers are
// packed from random codes, zero points and fp16 scales in each format's layout (see
// backend/llm/model/quantized_checkpoint.h), with the ground truth kept to compare against.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm::testing {

namespace qk = ferry::kernels;

struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

inline void write_raw(const std::filesystem::path& path, const std::map<std::string, RawTensor>& tensors) {
  std::string header = "{";
  std::string data;
  for (const auto& [name, t] : tensors) {
    const size_t begin = data.size();
    data.append(t.bytes.begin(), t.bytes.end());
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string all(8, '\0');
  const uint64_t len = header.size();
  std::memcpy(all.data(), &len, 8);
  all += header + data;
  std::ofstream(path, std::ios::binary).write(all.data(), static_cast<std::streamsize>(all.size()));
}

template <typename T>
inline std::vector<char> as_bytes(const std::vector<T>& v) {
  std::vector<char> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

enum class Method { kGptq, kAwq };

// One quantized layer's ground truth: codes [n, k], zeros and scales [n, groups].
struct Layer {
  int64_t n, k, group;
  std::vector<uint8_t> codes;
  std::vector<uint8_t> zeros;
  std::vector<uint16_t> scales_f16;
  float value(int64_t j, int64_t c) const {
    const size_t g = static_cast<size_t>(j * (k / group) + c / group);
    return (static_cast<float>(codes[static_cast<size_t>(j * k + c)]) - static_cast<float>(zeros[g])) *
           qk::f16_to_f32(scales_f16[g]);
  }
};

// Zero points are drawn from 1..15: GPTQ's v1 format stores zero - 1 in four bits, so a zero point
// of 0 cannot be stored (AutoGPTQ's -1 overflows into the neighbouring nibbles).
inline Layer random_layer(int64_t n, int64_t kk, int64_t group, std::mt19937& rng) {
  Layer l{n, kk, group, {}, {}, {}};
  std::uniform_int_distribution<int> code(0, 15), zero(1, 15);
  std::uniform_real_distribution<float> scale(0.01f, 0.1f);
  for (int64_t i = 0; i < n * kk; ++i) l.codes.push_back(static_cast<uint8_t>(code(rng)));
  for (int64_t i = 0; i < n * (kk / group); ++i) {
    l.zeros.push_back(static_cast<uint8_t>(zero(rng)));
    l.scales_f16.push_back(qk::f32_to_f16(scale(rng)));
  }
  return l;
}

// Packs a layer the way the checkpoint format stores it (see quantized_checkpoint.h).
inline void add_packed(std::map<std::string, RawTensor>* out, const std::string& base, const Layer& l, Method m) {
  const int64_t groups = l.k / l.group;
  std::vector<uint16_t> scales(static_cast<size_t>(groups * l.n));  // [groups, n]
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t j = 0; j < l.n; ++j) scales[g * l.n + j] = l.scales_f16[j * groups + g];
  (*out)[base + ".scales"] = {"F16", {groups, l.n}, as_bytes(scales)};
  if (m == Method::kGptq) {
    std::vector<uint32_t> qw(static_cast<size_t>(l.k / 8 * l.n), 0), qz(static_cast<size_t>(groups * l.n / 8), 0);
    for (int64_t c = 0; c < l.k; ++c)
      for (int64_t j = 0; j < l.n; ++j) qw[(c / 8) * l.n + j] |= uint32_t{l.codes[j * l.k + c]} << (4 * (c % 8));
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t j = 0; j < l.n; ++j) {
        const uint32_t stored = l.zeros[j * groups + g] - 1u;  // v1: zero - 1
        qz[g * (l.n / 8) + j / 8] |= stored << (4 * (j % 8));
      }
    (*out)[base + ".qweight"] = {"I32", {l.k / 8, l.n}, as_bytes(qw)};
    (*out)[base + ".qzeros"] = {"I32", {groups, l.n / 8}, as_bytes(qz)};
    std::vector<int32_t> g_idx(static_cast<size_t>(l.k));
    for (int64_t c = 0; c < l.k; ++c) g_idx[c] = static_cast<int32_t>(c / l.group);
    (*out)[base + ".g_idx"] = {"I32", {l.k}, as_bytes(g_idx)};
  } else {
    const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // nibble i holds column 8w + order[i]
    std::vector<uint32_t> qw(static_cast<size_t>(l.k * l.n / 8), 0), qz(static_cast<size_t>(groups * l.n / 8), 0);
    for (int64_t c = 0; c < l.k; ++c)
      for (int64_t w = 0; w < l.n / 8; ++w)
        for (int i = 0; i < 8; ++i) qw[c * (l.n / 8) + w] |= uint32_t{l.codes[(8 * w + order[i]) * l.k + c]} << (4 * i);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t w = 0; w < l.n / 8; ++w)
        for (int i = 0; i < 8; ++i) qz[g * (l.n / 8) + w] |= uint32_t{l.zeros[(8 * w + order[i]) * groups + g]} << (4 * i);
    (*out)[base + ".qweight"] = {"I32", {l.k, l.n / 8}, as_bytes(qw)};
    (*out)[base + ".qzeros"] = {"I32", {groups, l.n / 8}, as_bytes(qz)};
  }
}

struct Checkpoint {
  std::filesystem::path dir;
  std::map<std::string, Layer> layers;  // by planned name "<base>.weight"
};

// A one-layer Llama (hidden 64, intermediate 128, 4 heads / 2 KV heads of hidden / 4, vocab 96) whose
// seven linear layers are quantized; embeddings, norms and lm_head stay fp32.
inline Checkpoint make_checkpoint(Method m, int group_cfg, int64_t hidden = 64, int64_t inter = 128) {
  const int64_t group = group_cfg == -1 ? 0 : group_cfg;
  Checkpoint ck;
  ck.dir = make_temp_dir(m == Method::kGptq ? "gptq" : "awq");
  const std::string method = m == Method::kGptq ? "gptq" : "awq";
  testing::write_text(ck.dir / "config.json",
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":)" + std::to_string(hidden) +
      R"(,"intermediate_size":)" + std::to_string(inter) +
      R"(,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":96,
        "max_position_embeddings":64,"torch_dtype":"float16",
        "quantization_config":{"quant_method":")" + method + R"(","bits":4,"group_size":)" +
      std::to_string(group_cfg) + R"(,"desc_act":false,"sym":false,"version":"gemm"}})");
  std::mt19937 rng(7);
  std::map<std::string, RawTensor> t;
  auto floats = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::vector<float> v(static_cast<size_t>(numel));
    std::uniform_real_distribution<float> u(-1, 1);
    for (float& x : v) x = u(rng);
    t[name] = {"F32", shape, as_bytes(v)};
  };
  floats("model.embed_tokens.weight", {96, hidden});
  floats("model.norm.weight", {hidden});
  floats("lm_head.weight", {96, hidden});
  floats("model.layers.0.input_layernorm.weight", {hidden});
  floats("model.layers.0.post_attention_layernorm.weight", {hidden});
  const std::pair<const char*, std::pair<int64_t, int64_t>> mats[] = {
      {"self_attn.q_proj", {hidden, hidden}}, {"self_attn.k_proj", {hidden / 2, hidden}},
      {"self_attn.v_proj", {hidden / 2, hidden}}, {"self_attn.o_proj", {hidden, hidden}}, {"mlp.gate_proj", {inter, hidden}}, {"mlp.up_proj", {inter, hidden}},
      {"mlp.down_proj", {hidden, inter}}};
  for (const auto& [suffix, nk] : mats) {
    const std::string base = std::string("model.layers.0.") + suffix;
    Layer l = random_layer(nk.first, nk.second, group == 0 ? nk.second : group, rng);
    add_packed(&t, base, l, m);
    ck.layers.emplace(base + ".weight", std::move(l));
  }
  write_raw(ck.dir / "model.safetensors", t);
  return ck;
}

}  // namespace ferry::llm::testing
