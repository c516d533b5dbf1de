// GPTQ and AWQ checkpoints: tiny Llama checkpoints whose linear layers are packed by this test
// (from random codes, zero points and fp16 scales, in each format's layout) must read back as
// (code - zero) * scale exactly, through ModelWeights::read_f32 and through the WeightLoader's int4
// matrices (codes kept, not re-quantized); act-order and malformed tensors are refused by name.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "backend/llm/model/model_weights.h"
#include "backend/llm/model/weight_loader.h"
#include "kernels/kernels.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

namespace k = ferry::kernels;
using testing::make_temp_dir;
using testing::shape_json;

struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

void write_raw(const std::filesystem::path& path, const std::map<std::string, RawTensor>& tensors) {
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
std::vector<char> as_bytes(const std::vector<T>& v) {
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
           k::f16_to_f32(scales_f16[g]);
  }
};

// Zero points are drawn from 1..15: GPTQ's v1 format stores zero - 1 in four bits, so a zero point
// of 0 cannot be stored (AutoGPTQ's -1 overflows into the neighbouring nibbles).
Layer random_layer(int64_t n, int64_t kk, int64_t group, std::mt19937& rng) {
  Layer l{n, kk, group, {}, {}, {}};
  std::uniform_int_distribution<int> code(0, 15), zero(1, 15);
  std::uniform_real_distribution<float> scale(0.01f, 0.1f);
  for (int64_t i = 0; i < n * kk; ++i) l.codes.push_back(static_cast<uint8_t>(code(rng)));
  for (int64_t i = 0; i < n * (kk / group); ++i) {
    l.zeros.push_back(static_cast<uint8_t>(zero(rng)));
    l.scales_f16.push_back(k::f32_to_f16(scale(rng)));
  }
  return l;
}

// Packs a layer the way the checkpoint format stores it (see quantized_checkpoint.h).
void add_packed(std::map<std::string, RawTensor>* out, const std::string& base, const Layer& l, Method m) {
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
Checkpoint make_checkpoint(Method m, int group_cfg, int64_t hidden = 64, int64_t inter = 128) {
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

void expect_exact(const Checkpoint& ck) {
  auto config = load_model_config(ck.dir);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  auto weights = ModelWeights::load_safetensors(config.value(), ck.dir);
  ASSERT_TRUE(weights.ok()) << weights.status().to_string();
  WeightLoader loader(weights.value(), {});
  EXPECT_EQ(loader.format(), k::WeightFormat::kInt4) << "a 4-bit checkpoint is served as int4 by default";
  for (const auto& [name, l] : ck.layers) {
    SCOPED_TRACE(name);
    ASSERT_NE(weights->quantized(name), nullptr);
    std::vector<float> got(static_cast<size_t>(l.n * l.k));
    ASSERT_TRUE(weights->read_f32(name, got.data()).ok());
    auto m = loader.matrix(name);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    EXPECT_EQ(m->format, k::WeightFormat::kInt4);
    std::vector<float> deq(got.size());
    k::dequantize_weight(m.value(), deq.data());
    int bad = 0;
    for (int64_t j = 0; j < l.n; ++j)
      for (int64_t c = 0; c < l.k; ++c) {
        const size_t i = static_cast<size_t>(j * l.k + c);
        if (got[i] != l.value(j, c) || deq[i] != l.value(j, c)) ++bad;
      }
    EXPECT_EQ(bad, 0) << "values differing from (code - zero) * scale";
  }
}

TEST(QuantizedCheckpoint, GptqGroup32IsReadExactly) { expect_exact(make_checkpoint(Method::kGptq, 32)); }
TEST(QuantizedCheckpoint, GptqGroup64IsReadExactly) { expect_exact(make_checkpoint(Method::kGptq, 64)); }
TEST(QuantizedCheckpoint, AwqGroup32IsReadExactly) { expect_exact(make_checkpoint(Method::kAwq, 32)); }
// One group per row (group_size -1, k = 256) and groups of 256 become kernel groups of 128 that
// share their scale and zero: still exact.
TEST(QuantizedCheckpoint, PerChannelGroupsAreRegroupedExactly) {
  expect_exact(make_checkpoint(Method::kGptq, -1, 256, 256));
}
TEST(QuantizedCheckpoint, Group256IsRegroupedExactly) { expect_exact(make_checkpoint(Method::kAwq, 256, 256, 256)); }

TEST(QuantizedCheckpoint, ActOrderIsRefusedByName) {
  // One GPTQ layer whose g_idx reorders the input features (act-order).
  std::mt19937 rng(7);
  Layer l = random_layer(64, 64, 32, rng);
  std::map<std::string, RawTensor> t;
  add_packed(&t, "model.layers.0.self_attn.q_proj", l, Method::kGptq);
  std::vector<int32_t> g_idx(64);
  for (int c = 0; c < 64; ++c) g_idx[c] = (63 - c) / 32;
  t["model.layers.0.self_attn.q_proj.g_idx"] = {"I32", {64}, as_bytes(g_idx)};
  const auto dir = make_temp_dir("actorder");
  write_raw(dir / "q.safetensors", t);
  auto store = TensorStore::open_files({dir / "q.safetensors"});
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  QuantizationConfig q;
  q.method = QuantizationConfig::Method::kGptq;
  q.bits = 4;
  q.group_size = 32;
  q.desc_act = true;
  auto found = find_quantized(store.value(), q, "model.layers.0.self_attn.q_proj.weight", 64, 64);
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(found.status().message().find("q_proj"), std::string::npos) << found.status().message();
  EXPECT_NE(found.status().message().find("act-order"), std::string::npos) << found.status().message();
}

TEST(QuantizedCheckpoint, WrongQweightShapeIsRefusedByName) {
  Checkpoint ck = make_checkpoint(Method::kAwq, 32);
  auto config = load_model_config(ck.dir);
  ASSERT_TRUE(config.ok());
  // Claim a wider layer than stored: the shapes no longer fit.
  auto store = TensorStore::open_dir(ck.dir);
  ASSERT_TRUE(store.ok());
  auto found = find_quantized(store.value(), config->quantization, "model.layers.0.mlp.up_proj.weight", 136, 64);
  ASSERT_FALSE(found.ok());
  EXPECT_NE(found.status().message().find("mlp.up_proj"), std::string::npos) << found.status().message();
}

TEST(QuantizedCheckpoint, UnknownMethodIsUnimplemented) {
  auto c = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":1,"num_attention_heads":4,"vocab_size":96,"quantization_config":{"quant_method":"bitsandbytes"}})");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(c.status().message().find("bitsandbytes"), std::string::npos);
}

}  // namespace
}  // namespace ferry::llm
