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
#include "tests/llm/model/quantized_checkpoint_writer.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

namespace k = ferry::kernels;
using testing::make_temp_dir;
using testing::shape_json;
using testing::Checkpoint;
using testing::Layer;
using testing::make_checkpoint;
using testing::Method;
using testing::RawTensor;
using testing::add_packed;
using testing::as_bytes;
using testing::random_layer;
using testing::write_raw;

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
