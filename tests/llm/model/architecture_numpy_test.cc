// Every registered architecture against an independent numpy forward pass
// (tests/llm/model/numpy_forward.py, float64, written from the HF modeling math).
//
// Per case: a tiny model (3 layers, hidden 64, 4 heads over 2 KV heads, vocab 128) with seeded
// random fp32 weights is written as a real HF folder (config.json + model.safetensors, every tensor
// the architecture's plan() names); CpuEngine runs a 20-token prefill with every position's logits
// and then 3 decode steps, and, on a fresh cache, the same 23 tokens as chunked prefill (8 + 12)
// plus decode; numpy computes the logits of all 23 positions from the same folder. Blocks of 4
// tokens handed out shuffled, so sliding windows start mid-block and cross blocks.
//
// Tolerance: |engine - numpy| <= 1e-4 * max(1, max |numpy logit|) per case (fp32 weights). The
// engine computes in fp32 (sgemm or blocked sums, fp32 softmax) against float64: measured max
// absolute error 2e-6 to 8e-6 (Gemma 3 the largest) on logits up to |4..8|, so the bound leaves a
// 50x margin and is still far below what a modelling slip moves (a wrong window, cap, norm or
// rotation moves logits by > 1e-2; e.g. the longrope attention factor applied to the unrotated
// dims too was off by 1.15). Each case's ablation keeps the comparison from being vacuous: its
// distinguishing feature removed from the config must move numpy's logits by more than 1e-2.
//
// Skipped, with the reason, when no python3 with numpy is found (FERRY_PYTHON, python3,
// /usr/bin/python3; scripts/setup installs python3-numpy).
#include <gtest/gtest.h>
#include <json/json.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/llm/engine/cpu_engine.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

namespace fs = std::filesystem;

// ---- environment ---------------------------------------------------------------------------------

fs::path source_dir() {
  const char* env = std::getenv("FERRY_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? fs::path(env) : fs::path(FERRY_TEST_SOURCE_DIR);
}

// A python3 that imports numpy, or nullopt.
std::optional<std::string> python_with_numpy() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("FERRY_PYTHON"); env != nullptr && *env != '\0') candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const std::string& py : candidates) {
    if (std::system(("'" + py + "' -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return py;
  }
  return std::nullopt;
}

// ---- the model folder ----------------------------------------------------------------------------

// Writes F32 tensors with the given values as one safetensors file.
void write_f32_safetensors(const fs::path& path, const std::vector<WeightSpec>& specs,
                           const std::vector<std::vector<float>>& values) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  size_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const size_t bytes = values[i].size() * sizeof(float);
    header += ",\"" + specs[i].name + "\":{\"dtype\":\"F32\",\"shape\":" + testing::shape_json(specs[i].shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header;
  for (const auto& v : values) out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
}

// Seeded values that keep activations O(1): matrices U(-1, 1) * sqrt(3 / fan_in) (unit variance
// outputs for unit inputs), norm weights around 1 (Gemma's stored w around 0, used as 1 + w),
// biases small, embeddings U(-1, 1).
std::vector<float> random_tensor(const WeightSpec& s, bool gemma, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  const bool norm = s.name.find("norm") != std::string::npos;
  const bool bias = s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, ".bias") == 0;
  const bool embed = s.name == "model.embed_tokens.weight";
  const float fan_scale = s.shape.size() == 2 ? std::sqrt(3.0f / static_cast<float>(s.shape[1])) : 1.0f;
  for (float& x : v) {
    if (norm) {
      x = (gemma ? 0.0f : 1.0f) + 0.3f * u(rng);
    } else if (bias) {
      x = 0.2f * u(rng);
    } else if (embed) {
      x = u(rng);
    } else {
      x = fan_scale * u(rng);
    }
  }
  return v;
}

// Writes config.json and model.safetensors for `config_json` into `dir`; returns the parsed config.
ModelConfig write_model(const fs::path& dir, const std::string& config_json, uint32_t seed) {
  auto config = parse_model_config(config_json);
  EXPECT_TRUE(config.ok()) << config.status().to_string();
  const ArchitectureInfo* arch = find_architecture(config.value().architecture_name);
  FERRY_CHECK(arch != nullptr);
  const std::vector<WeightSpec> specs = arch->plan(config.value());
  const bool gemma = config.value().architecture_name.rfind("Gemma", 0) == 0;
  std::mt19937 rng(seed);
  std::vector<std::vector<float>> values;
  for (const WeightSpec& s : specs) values.push_back(random_tensor(s, gemma, rng));
  testing::write_text(dir / "config.json", config_json);
  write_f32_safetensors(dir / "model.safetensors", specs, values);
  return config.value();
}

// ---- the two sides -------------------------------------------------------------------------------

// Logits of every position of `tokens` from the engine: steps of the given query lengths on one
// sequence, every row kept. [tokens.size(), vocab].
std::vector<float> engine_logits(const fs::path& dir, const std::vector<int32_t>& tokens,
                                 const std::vector<int32_t>& step_lens) {
  auto config = load_model_config(dir);
  EXPECT_TRUE(config.ok()) << config.status().to_string();
  auto weights = ModelWeights::load_safetensors(config.value(), dir);
  EXPECT_TRUE(weights.ok()) << weights.status().to_string();
  auto engine = CpuEngine::create(config.value(), weights.value());
  EXPECT_TRUE(engine.ok()) << engine.status().to_string();
  constexpr int64_t kBlockSize = 4, kNumBlocks = 16;
  KvCacheOptions kv;
  kv.num_blocks = kNumBlocks;
  kv.block_size = kBlockSize;
  EXPECT_TRUE(engine.value()->allocate_kv_cache(kv).ok());
  std::vector<int32_t> table(kNumBlocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(99));

  std::vector<float> all;
  int32_t done = 0;
  for (int32_t len : step_lens) {
    std::vector<int32_t> ids(tokens.begin() + done, tokens.begin() + done + len), pos(static_cast<size_t>(len));
    std::iota(pos.begin(), pos.end(), done);
    SequenceInput seq;
    seq.query_start = 0;
    seq.query_len = len;
    seq.context_len = done + len;
    seq.block_table = table;
    std::vector<SequenceInput> seqs{seq};
    ForwardBatch batch{ids, pos, seqs, /*all_logits=*/true};
    ForwardOutput out;
    Status st = engine.value()->forward(batch, &out);
    EXPECT_TRUE(st.ok()) << st.to_string();
    all.insert(all.end(), out.logits.begin(), out.logits.end());
    done += len;
  }
  return all;
}

// numpy's logits of every position. [tokens.size(), vocab] as double.
std::vector<double> numpy_logits(const std::string& python, const fs::path& dir, const std::vector<int32_t>& tokens) {
  std::string csv;
  for (int32_t t : tokens) {
    if (!csv.empty()) csv += ',';
    csv += std::to_string(t);
  }
  const fs::path out = dir / "numpy_logits.f64";
  const std::string cmd = "'" + python + "' '" + (source_dir() / "tests/llm/model/numpy_forward.py").string() + "' '" +
                          dir.string() + "' " + csv + " '" + out.string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out, std::ios::binary);
  std::vector<double> v;
  double x;
  while (in.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

// ---- the cases -----------------------------------------------------------------------------------

struct Case {
  const char* name;
  std::string config;    // config.json text
  std::string ablation;  // the same config without the case's distinguishing feature
};

std::string shape(const char* arch, const std::string& extra) {
  return std::string(R"({"architectures":[")") + arch +
         R"("],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":3,"num_attention_heads":4,)"
         R"("num_key_value_heads":2,"vocab_size":128,"max_position_embeddings":64,"rms_norm_eps":1e-5,)"
         R"("torch_dtype":"float32")" +
         extra + "}";
}

// longrope lists: one divisor per rotated frequency (rotary_dim / 2 values).
std::string factors(int n, double first, double step) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ',';
    s += std::to_string(first + step * i);
  }
  return s + "]";
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"Llama3RopeScaling",
       shape("LlamaForCausalLM", R"(,"rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,)"
                                 R"("low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16})"),
       shape("LlamaForCausalLM", R"(,"rope_theta":500000.0)")},
      {"Qwen2BiasSlidingUpperLayers",
       shape("Qwen2ForCausalLM", R"(,"use_sliding_window":true,"sliding_window":5,"max_window_layers":1)"),
       shape("Qwen2ForCausalLM", R"(,"use_sliding_window":false,"sliding_window":5,"max_window_layers":1)")},
      {"Qwen3QkNorm", shape("Qwen3ForCausalLM", R"(,"head_dim":24,"rope_theta":1000000.0)"),
       shape("Qwen3ForCausalLM", R"(,"head_dim":24,"rope_theta":10000.0)")},
      {"MistralWindowSmallerThanPrompt", shape("MistralForCausalLM", R"(,"sliding_window":6)"),
       shape("MistralForCausalLM", R"(,"sliding_window":null)")},
      // original_max 16 < 23 tokens and max_position 64 > 16: long factors on both sides (HF's
      // per-sequence rule and ferry's per-model one agree), attention factor sqrt(1 + ln 4 / ln 16).
      {"Phi3LongropeLongPartialRotary",
       shape("Phi3ForCausalLM", R"(,"partial_rotary_factor":0.75,"original_max_position_embeddings":16,)"
                                R"("rope_scaling":{"type":"longrope","short_factor":)" +
                                    factors(6, 1.0, 0.1) + R"(,"long_factor":)" + factors(6, 1.5, 2.0) + "}"),
       shape("Phi3ForCausalLM", R"(,"partial_rotary_factor":0.75,"original_max_position_embeddings":16)")},
      // max_position == original_max: short factors, no attention factor; and a window of 7.
      {"Phi3LongropeShortWindow",
       shape("Phi3ForCausalLM", R"(,"original_max_position_embeddings":64,"sliding_window":7,)"
                                R"("rope_scaling":{"type":"su","short_factor":)" +
                                    factors(8, 1.0, 0.5) + R"(,"long_factor":)" + factors(8, 3.0, 1.0) + "}"),
       shape("Phi3ForCausalLM", R"(,"original_max_position_embeddings":64,)"
                                R"("rope_scaling":{"type":"su","short_factor":)" +
                                    factors(8, 1.0, 0.5) + R"(,"long_factor":)" + factors(8, 3.0, 1.0) + "}")},
      {"Gemma2",
       shape("Gemma2ForCausalLM", R"(,"head_dim":16,"query_pre_attn_scalar":24,"sliding_window":6,)"
                                  R"("attn_logit_softcapping":2.0,"final_logit_softcapping":3.0,)"
                                  R"("hidden_activation":"gelu_pytorch_tanh")"),
       shape("Gemma2ForCausalLM", R"(,"head_dim":16,"query_pre_attn_scalar":24,"sliding_window":6,)"
                                  R"("attn_logit_softcapping":null,"final_logit_softcapping":null,)"
                                  R"("hidden_activation":"gelu_pytorch_tanh")")},
      {"Gemma3",
       shape("Gemma3ForCausalLM", R"(,"head_dim":32,"query_pre_attn_scalar":32,"sliding_window":6,)"
                                  R"("sliding_window_pattern":3,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,)"
                                  R"("rope_scaling":{"rope_type":"linear","factor":2.0},)"
                                  R"("hidden_activation":"gelu_pytorch_tanh")"),
       shape("Gemma3ForCausalLM", R"(,"head_dim":32,"query_pre_attn_scalar":32,"sliding_window":null,)"
                                  R"("rope_theta":1000000.0,"rope_scaling":{"rope_type":"linear","factor":2.0},)"
                                  R"("hidden_activation":"gelu_pytorch_tanh")")},
  };
  return c;
}

class ArchitectureNumpyTest : public ::testing::TestWithParam<size_t> {};

TEST_P(ArchitectureNumpyTest, EngineMatchesNumpyForward) {
  const Case& c = cases()[GetParam()];
  const std::optional<std::string> python = python_with_numpy();
  if (!python) GTEST_SKIP() << "no python3 with numpy (FERRY_PYTHON, python3, /usr/bin/python3): apt-get install python3-numpy";

  const fs::path dir = testing::make_temp_dir(std::string("arch_") + c.name);
  ASSERT_FALSE(dir.empty());
  const ModelConfig config = write_model(dir, c.config, 1234);
  const int64_t vocab = config.vocab_size;
  std::vector<int32_t> tokens(23);
  std::mt19937 rng(42);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));

  const std::vector<double> want = numpy_logits(*python, dir, tokens);
  ASSERT_EQ(static_cast<int64_t>(want.size()), 23 * vocab) << "numpy_forward.py wrote no or short output";
  double max_want = 1.0;
  for (double x : want) max_want = std::max(max_want, std::fabs(x));
  const double tol = 1e-4 * max_want;

  for (const auto& [what, steps] : {std::pair<const char*, std::vector<int32_t>>{"prefill 20 + 3 decodes", {20, 1, 1, 1}},
                                    {"chunked prefill 8 + 12 + 3 decodes", {8, 12, 1, 1, 1}}}) {
    const std::vector<float> got = engine_logits(dir, tokens, steps);
    ASSERT_EQ(got.size(), want.size()) << what;
    double max_err = 0;
    for (size_t i = 0; i < got.size(); ++i) max_err = std::max(max_err, std::fabs(got[i] - want[i]));
    EXPECT_LE(max_err, tol) << what << ": max |engine - numpy| over " << got.size() << " logits (max |logit| "
                            << max_want << ")";
    RecordProperty(std::string(what) + " max_abs_err", std::to_string(max_err));
  }

  // The feature under test must matter: numpy without it gives other logits.
  const fs::path ablated = testing::make_temp_dir(std::string("arch_ablated_") + c.name);
  fs::copy_file(dir / "model.safetensors", ablated / "model.safetensors");
  testing::write_text(ablated / "config.json", c.ablation);
  const std::vector<double> other = numpy_logits(*python, ablated, tokens);
  ASSERT_EQ(other.size(), want.size());
  double moved = 0;
  for (size_t i = 0; i < want.size(); ++i) moved = std::max(moved, std::fabs(other[i] - want[i]));
  EXPECT_GT(moved, 1e-2) << "the case's feature does not change the logits: the comparison would not catch its loss";

  fs::remove_all(dir);
  fs::remove_all(ablated);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ArchitectureNumpyTest, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return cases()[info.param].name; });

// Every registered architecture has a case above (a new one must add its numpy check).
TEST(ArchitectureNumpyCoverageTest, EveryArchitectureHasACase) {
  std::string names = supported_architectures() + ", ";
  for (size_t start = 0, comma; (comma = names.find(", ", start)) != std::string::npos; start = comma + 2) {
    const std::string name = names.substr(start, comma - start);
    bool found = false;
    for (const Case& c : cases()) found = found || c.config.find("\"" + name + "\"") != std::string::npos;
    EXPECT_TRUE(found) << name << " has no numpy case";
  }
}

}  // namespace
}  // namespace ferry::llm
