#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "backend/llm/model/model_config.h"

namespace ferry::llm {
namespace {

// Llama-3.1-8B's published config.json (values as released by Meta on the HF hub).
const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

TEST(ModelConfigTest, Llama31With8BShapeAndLlama3Rope) {
  auto c = parse_model_config(kLlama31_8B);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->architecture_name, "LlamaForCausalLM");
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->num_layers, 32);
  EXPECT_EQ(c->num_heads, 32);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);  // hidden / heads
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->rope.theta, 500000.0f);
  EXPECT_EQ(c->rope.scaling, kernels::RopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(c->rope.factor, 8.0f);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->dtype, kernels::DType::kBF16);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->qk_norm);
}

TEST(ModelConfigTest, Qwen2BiasQwen3NormAndExplicitHeadDim) {
  auto q2 = parse_model_config(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
    "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,
    "max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"tie_word_embeddings":true,
    "torch_dtype":"bfloat16","sliding_window":32768,"use_sliding_window":false,"eos_token_id":151643})");
  ASSERT_TRUE(q2.ok()) << q2.status().to_string();
  EXPECT_TRUE(q2->qkv_bias);
  EXPECT_FALSE(q2->o_bias);
  EXPECT_EQ(q2->head_dim, 64);
  EXPECT_TRUE(q2->tie_word_embeddings);
  EXPECT_FALSE(q2->sliding_window.has_value());
  EXPECT_EQ(q2->eos_token_ids, std::vector<int32_t>{151643});

  auto q3 = parse_model_config(R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":1024,"intermediate_size":3072,
    "num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,
    "max_position_embeddings":40960,"rms_norm_eps":1e-06,"rope_theta":1000000,"attention_bias":false,
    "tie_word_embeddings":true,"torch_dtype":"bfloat16"})");
  ASSERT_TRUE(q3.ok()) << q3.status().to_string();
  EXPECT_TRUE(q3->qk_norm);
  EXPECT_FALSE(q3->qkv_bias);
  EXPECT_EQ(q3->head_dim, 128);  // not hidden/heads = 64
  EXPECT_EQ(q3->q_size(), 2048);

  auto mistral = parse_model_config(R"({"architectures":["MistralForCausalLM"],"hidden_size":4096,
    "intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,
    "vocab_size":32000,"max_position_embeddings":32768,"rms_norm_eps":1e-05,"rope_theta":10000.0,
    "sliding_window":4096,"torch_dtype":"bfloat16","bos_token_id":1,"eos_token_id":2})");
  ASSERT_TRUE(mistral.ok()) << mistral.status().to_string();
  EXPECT_EQ(mistral->architecture_name, "MistralForCausalLM");
  EXPECT_EQ(mistral->sliding_window, 4096);
}

TEST(ModelConfigTest, ErrorsNameTheKey) {
  auto unsupported = parse_model_config(R"({"architectures":["GPT2LMHeadModel"],"hidden_size":8})");
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(unsupported.status().message().find("GPT2LMHeadModel"), std::string::npos);

  auto missing = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
    "num_hidden_layers":2,"num_attention_heads":8,"vocab_size":10})");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("intermediate_size"), std::string::npos);

  auto wrong_type = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":"64",
    "intermediate_size":2,"num_hidden_layers":2,"num_attention_heads":8,"vocab_size":10})");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("hidden_size"), std::string::npos);

  auto yarn = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":2,
    "num_hidden_layers":2,"num_attention_heads":8,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4}})");
  ASSERT_FALSE(yarn.ok());
  EXPECT_NE(yarn.status().message().find("yarn"), std::string::npos);

  auto gqa = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":2,
    "num_hidden_layers":2,"num_attention_heads":8,"num_key_value_heads":3,"vocab_size":10})");
  ASSERT_FALSE(gqa.ok());
  EXPECT_NE(gqa.status().message().find("num_key_value_heads"), std::string::npos);

  // A head far larger than any model's is refused before its size feeds double arithmetic
  // (model_config_fuzzer found hidden_size 2^63 - 2 with one head overflowing a cast).
  auto huge = parse_model_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":9223372036854775806,
    "intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":1,"vocab_size":1,"max_position_embeddings":1})");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("head_dim"), std::string::npos) << huge.status().message();

  EXPECT_FALSE(parse_model_config("{not json").ok());
}

TEST(ModelConfigTest, GenerationConfigEosIntOrList) {
  auto c = parse_model_config(kLlama31_8B);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(apply_generation_config(R"({"bos_token_id":128000,"eos_token_id":128009,"temperature":0.6})", &*c).ok());
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{128009});
  ASSERT_TRUE(apply_generation_config(R"({"eos_token_id":[5,6]})", &*c).ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_FALSE(apply_generation_config(R"({"eos_token_id":"x"})", &*c).ok());
}

TEST(ModelConfigTest, Stories260KFolder) {
  const char* root = std::getenv("FERRY_TESTDATA");
#ifdef FERRY_TESTDATA_DEFAULT_DIR
  if (root == nullptr || *root == '\0') root = FERRY_TESTDATA_DEFAULT_DIR;
#endif
  if (root == nullptr) GTEST_SKIP() << "FERRY_TESTDATA is not set";
  const std::filesystem::path dir = std::filesystem::path(root) / "stories260K-hf-format.derived";
  if (!std::filesystem::exists(dir / "config.json")) GTEST_SKIP() << "missing " << dir;
  auto c = load_model_config(dir);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c->rope.scaling, kernels::RopeScaling::kNone);
}

}  // namespace
}  // namespace ferry::llm
