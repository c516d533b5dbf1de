// The checked weight set: every expected tensor present with its shape and a supported dtype, and
// the dummy format that plans an 8B model without allocating it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>

#include "backend/llm/model/model_weights.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

using testing::FakeTensor;

ModelConfig tiny_config(bool tied) {
  auto c = parse_model_config(std::string(R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":16,
    "intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":6,
    "vocab_size":40,"tie_word_embeddings":)") + (tied ? "true" : "false") + "}");
  FERRY_CHECK(c.ok());
  return c.value();
}

std::vector<FakeTensor> fakes_for(const ModelConfig& c) {
  std::vector<FakeTensor> out;
  for (const auto& s : plan_weights(c)) out.push_back({s.name, "BF16", s.shape, 2});
  return out;
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

class ModelWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("weights"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ModelWeightsTest, PlanCoversArchitectureFeatures) {
  const ModelConfig c = tiny_config(false);
  const auto plan = plan_weights(c);
  auto has = [&](const std::string& n) {
    for (const auto& s : plan)
      if (s.name == n) return true;
    return false;
  };
  EXPECT_TRUE(has("model.layers.1.self_attn.q_norm.weight"));
  EXPECT_TRUE(has("lm_head.weight"));
  EXPECT_FALSE(has("model.layers.0.self_attn.q_proj.bias"));
  for (const auto& s : plan_weights(tiny_config(true))) EXPECT_NE(s.name, "lm_head.weight");
}

TEST_F(ModelWeightsTest, LoadsCompleteBf16Set) {
  const ModelConfig c = tiny_config(false);
  testing::write_safetensors(dir_ / "model.safetensors", fakes_for(c));
  auto w = ModelWeights::load_safetensors(c, dir_);
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  const WeightSpec* q = w->spec("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{24, 16}));
  std::vector<float> buf(static_cast<size_t>(q->numel()));
  ASSERT_TRUE(w->read_f32(q->name, buf.data()).ok());
  const uint16_t* raw = static_cast<const uint16_t*>(w->view(q->name)->data);
  EXPECT_EQ(buf[3], kernels::bf16_to_f32(raw[3]));
}

TEST_F(ModelWeightsTest, MissingWrongShapeWrongDtype) {
  const ModelConfig c = tiny_config(false);
  const std::string victim = "model.layers.1.mlp.down_proj.weight";
  {
    auto fakes = fakes_for(c);
    std::erase_if(fakes, [&](const FakeTensor& t) { return t.name == victim; });
    testing::write_safetensors(dir_ / "model.safetensors", fakes);
    auto w = ModelWeights::load_safetensors(c, dir_);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find("missing tensor '" + victim + "'"), std::string::npos) << w.status().message();
  }
  {
    auto fakes = fakes_for(c);
    for (auto& t : fakes)
      if (t.name == victim) t.shape = {16, 25};
    testing::write_safetensors(dir_ / "model.safetensors", fakes);
    auto w = ModelWeights::load_safetensors(c, dir_);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find(victim), std::string::npos);
    EXPECT_NE(w.status().message().find("[16, 24]"), std::string::npos) << w.status().message();
  }
  {
    auto fakes = fakes_for(c);
    for (auto& t : fakes)
      if (t.name == victim) {
        t.dtype = "I32";
        t.elem_size = 4;
      }
    testing::write_safetensors(dir_ / "model.safetensors", fakes);
    auto w = ModelWeights::load_safetensors(c, dir_);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find(victim), std::string::npos);
    EXPECT_NE(w.status().message().find("I32"), std::string::npos);
  }
  {
    testing::write_safetensors(dir_ / "model.safetensors", fakes_for(c), 3);
    auto w = ModelWeights::load_safetensors(c, dir_);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find("truncated"), std::string::npos);
  }
}

// Llama-3.1-8B's shape in dummy mode: the plan is complete and exact, nothing is allocated, and
// values are only produced on demand (deterministic per seed and tensor).
TEST_F(ModelWeightsTest, Dummy8BShapeLoadsWithoutAllocating) {
  auto c = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":14336,
    "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
    "max_position_embeddings":131072,"rms_norm_eps":1e-05,"rope_theta":500000.0,"tie_word_embeddings":false,
    "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
    "original_max_position_embeddings":8192,"rope_type":"llama3"},"torch_dtype":"bfloat16"})");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  const int64_t rss_before = resident_bytes();
  ModelWeights w = ModelWeights::dummy(c.value(), 1234);
  const int64_t rss_after = resident_bytes();
  EXPECT_LT(rss_after - rss_before, 16 << 20) << "dummy load must not materialise weights";
  EXPECT_EQ(w.format(), LoadFormat::kDummy);
  // 8,030,261,248 parameters: Llama-3.1-8B's published count.
  EXPECT_EQ(w.num_parameters(), 8030261248LL);
  EXPECT_EQ(w.specs().size(), 1u + 32u * 9u + 2u);
  EXPECT_EQ(w.view("model.embed_tokens.weight"), nullptr);

  const WeightSpec* norm = w.spec("model.layers.31.input_layernorm.weight");
  ASSERT_NE(norm, nullptr);
  std::vector<float> a(4096), b(4096);
  ASSERT_TRUE(w.read_f32(norm->name, a.data()).ok());
  ASSERT_TRUE(ModelWeights::dummy(c.value(), 1234).read_f32(norm->name, b.data()).ok());
  EXPECT_EQ(a, b);
  ASSERT_TRUE(ModelWeights::dummy(c.value(), 99).read_f32(norm->name, b.data()).ok());
  EXPECT_NE(a, b);
  EXPECT_FALSE(w.read_f32("no.such.tensor", a.data()).ok());
}

}  // namespace
}  // namespace ferry::llm
