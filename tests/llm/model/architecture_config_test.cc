// What each architecture's configure() makes of config.json: which layers get a sliding window,
// the attention scale and soft-caps, HF's per-model defaults, and the keys it refuses. (The
// numbers the forward pass computes from them are checked against numpy in
// architecture_numpy_test.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/llm/model/model_config.h"

namespace ferry::llm {
namespace {

std::string config(const char* arch, const std::string& extra, int layers = 6) {
  return std::string(R"({"architectures":[")") + arch +
         R"("],"hidden_size":64,"intermediate_size":96,"num_attention_heads":4,"num_key_value_heads":2,)"
         R"("vocab_size":128,"num_hidden_layers":)" +
         std::to_string(layers) + extra + "}";
}

ModelConfig parse_ok(const std::string& text) {
  auto c = parse_model_config(text);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return c.ok() ? c.value() : ModelConfig{};
}

TEST(ArchitectureConfigTest, LlamaFamilyWindows) {
  EXPECT_TRUE(parse_ok(config("LlamaForCausalLM", R"(,"sliding_window":8)")).layer_windows.empty());
  EXPECT_EQ(parse_ok(config("MistralForCausalLM", R"(,"sliding_window":8)", 3)).layer_windows,
            (std::vector<int64_t>{8, 8, 8}));
  EXPECT_TRUE(parse_ok(config("MistralForCausalLM", R"(,"sliding_window":null)")).layer_windows.empty());
  // Qwen2: off unless use_sliding_window is true (HF's default is false); then layers >= max_window_layers.
  EXPECT_TRUE(parse_ok(config("Qwen2ForCausalLM", R"(,"sliding_window":8)")).layer_windows.empty());
  EXPECT_EQ(parse_ok(config("Qwen2ForCausalLM", R"(,"sliding_window":8,"use_sliding_window":true,"max_window_layers":2)",
                            4))
                .layer_windows,
            (std::vector<int64_t>{0, 0, 8, 8}));
  EXPECT_EQ(parse_ok(config("Qwen3ForCausalLM", R"(,"sliding_window":8,"use_sliding_window":true,"max_window_layers":1,)"
                                                R"("layer_types":["sliding_attention","full_attention","sliding_attention"])",
                            3))
                .layer_windows,
            (std::vector<int64_t>{8, 0, 8}));
  EXPECT_FALSE(parse_model_config(config("Qwen2ForCausalLM", R"(,"sliding_window":8,"use_sliding_window":true,)"
                                                             R"("layer_types":["full_attention"])",
                                         3))
                   .ok());
}

TEST(ArchitectureConfigTest, Gemma2Defaults) {
  const ModelConfig c = parse_ok(config("Gemma2ForCausalLM", R"(,"head_dim":16,"query_pre_attn_scalar":144)", 4));
  EXPECT_EQ(c.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.attention_scale, 1.0f / 12.0f);
  EXPECT_EQ(c.attn_logit_softcap, 50.0f);
  EXPECT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_EQ(c.layer_windows, (std::vector<int64_t>{4096, 0, 4096, 0}));  // even layers local
  EXPECT_FALSE(c.local_rope.has_value());
  const ModelConfig off = parse_ok(config("Gemma2ForCausalLM", R"(,"attn_logit_softcapping":null,)"
                                                               R"("final_logit_softcapping":null,"sliding_window":null)"));
  EXPECT_EQ(off.attn_logit_softcap, 0.0f);
  EXPECT_EQ(off.final_logit_softcap, 0.0f);
  EXPECT_TRUE(off.layer_windows.empty());
}

TEST(ArchitectureConfigTest, Gemma3PatternRopeAndNorms) {
  const ModelConfig c = parse_ok(config("Gemma3ForCausalLM", R"(,"sliding_window":512,"rope_local_base_freq":10000.0,)"
                                                             R"("rope_scaling":{"rope_type":"linear","factor":8.0})",
                                        12));
  std::vector<int64_t> want(12, 512);
  want[5] = want[11] = 0;  // (l + 1) % 6 == 0: global
  EXPECT_EQ(c.layer_windows, want);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.rope.theta, 1e6f);  // Gemma3TextConfig's default rope_theta
  EXPECT_EQ(c.rope.scaling, kernels::RopeScaling::kLinear);
  ASSERT_TRUE(c.local_rope.has_value());
  EXPECT_EQ(c.local_rope->theta, 10000.0f);
  EXPECT_EQ(c.local_rope->scaling, kernels::RopeScaling::kNone);
  EXPECT_EQ(c.attn_logit_softcap, 0.0f);
  EXPECT_EQ(c.final_logit_softcap, 0.0f);
}

TEST(ArchitectureConfigTest, GemmaRefusesOtherActivations) {
  auto c = parse_model_config(config("Gemma2ForCausalLM", R"(,"hidden_activation":"silu")"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("gelu_pytorch_tanh"), std::string::npos) << c.status().to_string();
}

TEST(ArchitectureConfigTest, Phi3LongropeAndPartialRotary) {
  const ModelConfig c = parse_ok(config("Phi3ForCausalLM", R"(,"partial_rotary_factor":0.75,"max_position_embeddings":131072,)"
                                                           R"("original_max_position_embeddings":4096,"sliding_window":2047,)"
                                                           R"("rope_scaling":{"type":"longrope","short_factor":[1,1,1,1,1,1],)"
                                                           R"("long_factor":[2,2,2,2,2,3]})",
                                        2));
  EXPECT_EQ(c.rotary_dim, 12);
  ASSERT_TRUE(c.longrope.has_value());
  EXPECT_EQ(c.longrope->original_max_position_embeddings, 4096);
  EXPECT_EQ(c.longrope->long_factor.back(), 3.0f);
  EXPECT_EQ(c.layer_windows, (std::vector<int64_t>{2047, 2047}));
  // One factor per rotated frequency: 6 here, 8 is refused naming the key.
  auto bad = parse_model_config(config("Phi3ForCausalLM", R"(,"rope_scaling":{"type":"su","short_factor":[1,1,1],)"
                                                          R"("long_factor":[1,1,1]})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("short_factor"), std::string::npos) << bad.status().to_string();
  EXPECT_FALSE(parse_model_config(config("Phi3ForCausalLM", R"(,"partial_rotary_factor":1.5)")).ok());
}

TEST(ArchitectureConfigTest, LongropeAndPartialRotaryRefusedWhereNotImplemented) {
  const std::string longrope = R"(,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1,1,1,1,1],)"
                               R"("long_factor":[1,1,1,1,1,1,1,1]})";
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma2ForCausalLM"}) {
    auto c = parse_model_config(config(arch, longrope));
    ASSERT_FALSE(c.ok()) << arch;
    EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented) << arch << ": " << c.status().to_string();
    EXPECT_FALSE(parse_model_config(config(arch, R"(,"partial_rotary_factor":0.5)")).ok()) << arch;
  }
}

}  // namespace
}  // namespace ferry::llm
