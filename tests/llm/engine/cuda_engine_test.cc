// CudaEngine against CpuEngine, whole model: the same logits (within a stated tolerance) and the
// same greedy tokens over steps that mix prefill, chunked prefill and decode, on stories260K (a
// trained Llama, GQA 8:4, head_dim 8) and on random-weights Llama (GQA 4:1), Qwen2 (q/k/v biases)
// and Qwen3 (q/k norms) shapes. Built in the CUDA emulation build (FERRY_CUDA_EMULATION), where the
// "device" is the SIMT emulator (docs/cuda.md); with nvcc and no emulation the tests skip without a
// GPU.
//
// Tolerances, relative to the step's max |logit| (the CPU engine is the oracle):
//   fp32 weights: 1e-4 (both accumulate fp32 dot products, in different orders; measured ~1e-6).
//   bf16 / fp16 weights: 1e-2 / 2e-3 on stories260K (measured 3.8e-3 / 5.0e-4), 2e-2 on random
//                 Qwen2 bf16 (measured 8.0e-3): the GPU also rounds every GEMM input activation to
//                 the weights' type (relative error 2^-8 for bf16, 2^-11 for fp16, per element,
//                 through every layer); the CPU engine does not. Greedy tokens there are compared
//                 only where the CPU's top-two margin exceeds twice the tolerance.
//   int8 weights (both engines quantize the same fp32 values with kernels::quantize_int8; the CPU
//                 engine on its portable linear path, which widens the weights and keeps x exact,
//                 as the GPU's int8 kernel does): 1e-4 with every GEMM on the int8 kernel
//                 (quantized_gemv_max_rows >= max_num_tokens); 1e-2 with the default 16 rows, where the
//                 prefill steps (19 and 22 tokens) take the bf16 GEMM path and round x to bf16 as
//                 the bf16-weights runs do.
//   int4 weights (both engines load the same matrices through WeightLoader; the CPU on its portable
//                 path): 1e-4 on the int4 kernel; 2e-2 on random Llama with the GEMM path, which
//                 rounds x and the dequantized weights to bf16 (two roundings: measured 9.7e-3).
#include <gtest/gtest.h>
#include <json/json.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include <cuda_runtime.h>

#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/engine/cuda_engine.h"
#include "backend/llm/engine/cuda_graphs.h"
#include "backend/llm/engine/kv_cache_storage.h"
#include "backend/llm/engine/prompt_logprobs.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cpu/linear.h"
#include "tests/llm/engine/testdata.h"
#include "tests/llm/model/quantized_checkpoint_writer.h"

namespace ferry::llm {
namespace {

struct Model {
  std::string name;
  ModelConfig config;
  ModelWeights weights;
};

std::optional<Model> stories() {
  const auto dir = testdata() / "stories260K-hf-format.derived";
  if (testdata().empty() || !std::filesystem::exists(dir / "model.safetensors")) return std::nullopt;
  auto config = load_model_config(dir);
  FERRY_CHECK(config.ok());
  auto weights = ModelWeights::load_safetensors(config.value(), dir);
  FERRY_CHECK(weights.ok());
  return Model{"stories260K", config.value(), std::move(weights).value()};
}

Model dummy(const std::string& name, const std::string& json) {
  auto c = parse_model_config(json);
  FERRY_CHECK(c.ok());
  return Model{name, c.value(), ModelWeights::dummy(c.value(), 11)};
}

Model gqa_llama() {
  return dummy("random Llama GQA 4:1", R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
    "intermediate_size":80,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":131,
    "rope_theta":500000.0,"max_position_embeddings":256})");
}

// The weight format both engines load: a WeightDType, and for int4 its group size and zero points.
struct Weights {
  Weights(WeightDType d) : dtype(d) {}  // NOLINT: implicit, so call sites can pass a WeightDType
  Weights(WeightDType d, int64_t g, bool z) : dtype(d), group_size(g), zero_points(z) {}
  WeightDType dtype;
  int64_t group_size = 32;
  bool zero_points = false;
};

// Batches of (sequence, new tokens) pairs over growing per-sequence block tables (block_size 8,
// from a pool of `num_blocks`): what a scheduler hands the engines, for steps in lockstep.
class Batches {
 public:
  explicit Batches(int64_t num_blocks) : alloc_(num_blocks) {}
  using Work = std::vector<std::pair<int, std::vector<int32_t>>>;

  // The step's batch (valid until the next build); advance() after the engines ran it.
  ForwardBatch build(const Work& work) {
    ids_.clear();
    pos_.clear();
    seqs_.clear();
    for (const auto& [s, toks] : work) {
      if (static_cast<size_t>(s) >= tables_.size()) tables_.resize(s + 1), lens_.resize(s + 1, 0);
      SequenceInput in;
      in.query_start = static_cast<int32_t>(ids_.size());
      in.query_len = static_cast<int32_t>(toks.size());
      in.context_len = lens_[s] + in.query_len;
      FERRY_CHECK(alloc_.ensure_capacity(&tables_[s], in.context_len, 8));
      for (int32_t i = 0; i < in.query_len; ++i) ids_.push_back(toks[i]), pos_.push_back(lens_[s] + i);
      seqs_.push_back(in);
    }
    for (size_t i = 0; i < work.size(); ++i) seqs_[i].block_table = tables_[work[i].first];
    return ForwardBatch{ids_, pos_, seqs_, false};
  }
  void advance(const Work& work) {
    for (const auto& [s, toks] : work) lens_[s] += static_cast<int32_t>(toks.size());
  }
  // Frees a finished sequence's blocks (another sequence may get them next).
  void finish(int s) {
    alloc_.release(&tables_[s]);
    lens_[s] = 0;
  }
  int32_t context_len(int s) const { return lens_[s]; }

 private:
  SimpleBlockAllocator alloc_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<int32_t> lens_;
  std::vector<int32_t> ids_, pos_;
  std::vector<SequenceInput> seqs_;
};

// The engine under test and the oracle, stepped in lockstep over the same block tables.
class Pair {
 public:
  Pair(const Model& m, Weights w, kernels::KvCacheDType kv = kernels::KvCacheDType::kF32,
       int64_t quantized_gemv_max_rows = 0)
      : batches_(64), vocab_(m.config.vocab_size) {
    WeightLoadOptions load;
    load.dtype = w.dtype;
    load.group_size = w.group_size;
    load.int4_zero_points = w.zero_points;
    auto cpu = CpuEngine::create(m.config, m.weights, {}, load);
    FERRY_CHECK(cpu.ok());
    cpu_ = std::move(cpu).value();
    CudaEngineOptions o;
    o.weight_dtype = w.dtype;
    o.weight_group_size = w.group_size;
    o.weight_zero_points = w.zero_points;
    o.max_num_tokens = 64;
    o.max_num_seqs = 4;
    o.quantized_gemv_max_rows = quantized_gemv_max_rows;
    auto gpu = CudaEngine::create(m.config, m.weights, o);
    if (!gpu.ok()) ADD_FAILURE() << gpu.status().to_string();
    FERRY_CHECK(gpu.ok());
    gpu_ = std::move(gpu).value();
    KvCacheOptions opt;
    opt.num_blocks = 64;
    opt.block_size = 8;
    opt.dtype = kv;
    FERRY_CHECK(cpu_->allocate_kv_cache(opt).ok());
    auto blocks = gpu_->allocate_kv_cache(opt);
    FERRY_CHECK(blocks.ok() && blocks.value() == 64);
  }

  struct Result {
    StepOutput cpu, gpu;
  };
  // One step: (sequence, new tokens) pairs; every sequence samples with `params` (null: none).
  Result step(const Batches::Work& work, const SamplingParams* params) {
    const ForwardBatch batch = batches_.build(work);
    std::vector<SamplingSequence> cpu_sampling(work.size()), gpu_sampling(work.size());
    for (size_t i = 0; i < work.size(); ++i) {
      const uint64_t seed =
          1000 + static_cast<uint64_t>(work[i].first) * 7 + static_cast<uint64_t>(batches_.context_len(work[i].first));
      cpu_rngs_.insert_or_assign(work[i].first, SamplingRng(seed));
      gpu_rngs_.insert_or_assign(work[i].first, SamplingRng(seed));
      cpu_sampling[i].params = gpu_sampling[i].params = params;
      cpu_sampling[i].rng = &cpu_rngs_.at(work[i].first);
      gpu_sampling[i].rng = &gpu_rngs_.at(work[i].first);
    }
    Result r;
    Status a = cpu_->step(batch, cpu_sampling, true, &r.cpu);
    Status b = gpu_->step(batch, gpu_sampling, true, &r.gpu);
    EXPECT_TRUE(a.ok()) << a.to_string();
    EXPECT_TRUE(b.ok()) << b.to_string();
    batches_.advance(work);
    return r;
  }

  CudaEngine& gpu() { return *gpu_; }
  int64_t vocab() const { return vocab_; }

 private:
  std::unique_ptr<CpuEngine> cpu_;
  std::unique_ptr<CudaEngine> gpu_;
  Batches batches_;
  int64_t vocab_;
  std::map<int, SamplingRng> cpu_rngs_, gpu_rngs_;
};

// Max |gpu - cpu| over the step's logits, relative to max |cpu|.
double relative_error(const Pair::Result& r) {
  const auto& c = r.cpu.logits.logits;
  const auto& g = r.gpu.logits.logits;
  EXPECT_EQ(c.size(), g.size());
  double max_abs = 0, err = 0;
  for (size_t i = 0; i < c.size() && i < g.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(c[i])));
    err = std::max(err, std::fabs(static_cast<double>(g[i]) - c[i]));
  }
  return err / std::max(max_abs, 1e-30);
}

// Top-two margin of row r of the CPU logits, relative to the row's max |logit|.
double relative_margin(const ForwardOutput& o, int64_t r) {
  const float* row = o.row(r);
  float a = -INFINITY, b = -INFINITY, max_abs = 0;
  for (int64_t j = 0; j < o.vocab; ++j) {
    max_abs = std::max(max_abs, std::fabs(row[j]));
    if (row[j] > a) {
      b = a;
      a = row[j];
    } else if (row[j] > b) {
      b = row[j];
    }
  }
  return (static_cast<double>(a) - b) / std::max(max_abs, 1e-30f);
}

bool have_device() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    return false;
  }
  return true;
}

// Three sequences over five steps: two prompts (one split into two chunks), a third prompt joining
// a decode step, then decode-only steps (the split-K decode kernel). Checks every step's logits
// within `tol` and the greedy tokens (device argmax) where the CPU's top-two margin is > 2 tol.
void run_mixed_steps(const Model& m, Weights w, double tol, kernels::KvCacheDType kv = kernels::KvCacheDType::kF32,
                     int64_t quantized_gemv_max_rows = 0) {
  Pair p(m, w, kv, quantized_gemv_max_rows);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  auto prompt = [&](int seed, int len) {
    std::vector<int32_t> t;
    for (int i = 0; i < len; ++i) t.push_back(static_cast<int32_t>((seed * 37 + i * 11 + 1) % p.vocab()));
    return t;
  };
  std::vector<int32_t> next(3, -1);
  double worst = 0;
  auto check = [&](const Pair::Result& r, const std::vector<int>& seqs, const char* what) {
    const double err = relative_error(r);
    EXPECT_LE(err, tol) << m.name << ": " << what;
    EXPECT_GT(r.cpu.logits.num_rows, 0);
    worst = std::max(worst, err);
    ASSERT_EQ(r.cpu.samples.size(), seqs.size());
    ASSERT_EQ(r.gpu.samples.size(), seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (tol <= 1e-4 || relative_margin(r.cpu.logits, static_cast<int64_t>(i)) > 2 * tol) {
        EXPECT_EQ(r.gpu.samples[i].token, r.cpu.samples[i].token) << m.name << ": " << what << ", sequence " << seqs[i];
      }
      next[static_cast<size_t>(seqs[i])] = r.cpu.samples[i].token;
    }
  };
  const std::vector<int32_t> a = prompt(1, 13), b = prompt(2, 21), c = prompt(3, 6);
  check(p.step({{0, a}, {1, std::vector<int32_t>(b.begin(), b.begin() + 9)}}, nullptr), {0, 1}, "prefill + chunk");
  // The first step sampled nothing (null params): its samples are -1 on both engines.
  auto r = p.step({{0, {next[0] < 0 ? 5 : next[0]}}, {1, std::vector<int32_t>(b.begin() + 9, b.end())}, {2, c}},
                  &greedy);
  check(r, {0, 1, 2}, "decode + last chunk + prefill");
  for (int s = 0; s < 3; ++s) {
    r = p.step({{0, {next[0]}}, {1, {next[1]}}, {2, {next[2]}}}, &greedy);
    check(r, {0, 1, 2}, "decode");
  }
  std::printf("%s, %s weights%s, %s KV cache: max relative logit error %.3g (tolerance %.0e)\n", m.name.c_str(),
              weight_dtype_name(w.dtype), quantized_gemv_max_rows > 0 ? " (quantized kernels only)" : "",
              kernels::kv_cache_dtype_name(kv), worst, tol);
  EXPECT_EQ(p.gpu().device_sampled_seqs(), 12);  // three sequences in each of the four sampling steps
  EXPECT_EQ(p.gpu().host_sampled_seqs(), 0);
}

// The CPU oracle on its portable linear path: it keeps x in fp32 at every m (the AMX GEMM rounds
// prefill activations to bf16; the SIMD decode paths quantize x per block for int8/int4), as the
// GPU kernels it is compared with do for their fp32 inputs.
class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
    saved_ = kernels::cpu::linear_isa();
    kernels::cpu::set_linear_isa(kernels::cpu::LinearIsa::kPortable);
  }
  void TearDown() override { kernels::cpu::set_linear_isa(saved_); }
  kernels::cpu::LinearIsa saved_ = kernels::cpu::LinearIsa::kPortable;
};

TEST_F(CudaEngineTest, Stories260KFp32MatchesCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kF32, 1e-4);
}

// Against an independent oracle too: llama2.c's golden logits (1e-4 absolute, as the CPU engine's
// golden test) and its 64-token greedy continuation of "Once upon a time", the prompt prefilled in
// one step and every token after it chosen by the device argmax.
TEST_F(CudaEngineTest, Stories260KGoldenGreedyContinuation) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  std::ifstream in(testdata() / "llama2c-stories260K" / "golden_outputs.derived.json");
  if (!in) GTEST_SKIP() << "golden outputs not found";
  Json::Value golden;
  Json::CharReaderBuilder builder;
  std::string errs;
  ASSERT_TRUE(Json::parseFromStream(builder, in, &golden, &errs)) << errs;
  const Json::Value* c = nullptr;
  for (const auto& x : golden["cases"])
    if (x["name"].asString() == "prompt_once_upon_a_time_greedy_64") c = &x;
  ASSERT_NE(c, nullptr);
  auto ids = [](const Json::Value& v) {
    std::vector<int32_t> out;
    for (const auto& x : v) out.push_back(x.asInt());
    return out;
  };
  const std::vector<int32_t> prompt = ids((*c)["prompt_token_ids"]), expected = ids((*c)["generated_token_ids"]);
  const int64_t vocab = m->config.vocab_size;

  CudaEngineOptions o;
  o.max_num_tokens = 32;
  o.max_num_seqs = 1;
  auto e = CudaEngine::create(m->config, m->weights, o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  CudaEngine& g = *e.value();
  KvCacheOptions kv;
  kv.num_blocks = 8;
  kv.block_size = 16;
  ASSERT_TRUE(g.allocate_kv_cache(kv).ok());
  const std::vector<int32_t> table = {5, 0, 7, 2, 6, 1};  // shuffled, covers 96 positions
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<int32_t> generated, pos;
  int checked = 0;
  auto check_logits = [&](int64_t p, const float* row) {
    for (const auto& entry : (*c)["logits_at_position"]) {
      if (entry["pos"].asInt64() != p) continue;
      float err = 0;
      for (int64_t j = 0; j < vocab; ++j) {
        err = std::max(err, std::fabs(row[j] - entry["logits"][static_cast<int>(j)].asFloat()));
      }
      EXPECT_LE(err, 1e-4f) << "position " << p;
      ++checked;
    }
  };
  // Every prompt position's logits first (all_logits; the step below writes the same K/V again).
  {
    for (size_t i = 0; i < prompt.size(); ++i) pos.push_back(static_cast<int32_t>(i));
    std::vector<SequenceInput> seqs(1);
    seqs[0].query_len = seqs[0].context_len = static_cast<int32_t>(prompt.size());
    seqs[0].block_table = table;
    ForwardOutput all;
    Status st = g.forward(ForwardBatch{prompt, pos, seqs, true}, &all);
    ASSERT_TRUE(st.ok()) << st.to_string();
    for (int64_t p = 0; p < all.num_rows; ++p) check_logits(p, all.row(p));
  }
  std::vector<int32_t> step_ids = prompt;
  int32_t context = 0;
  while (generated.size() < expected.size()) {
    pos.clear();
    for (size_t i = 0; i < step_ids.size(); ++i) pos.push_back(context + static_cast<int32_t>(i));
    std::vector<SequenceInput> seqs(1);
    seqs[0].query_len = static_cast<int32_t>(step_ids.size());
    seqs[0].context_len = context + seqs[0].query_len;
    seqs[0].block_table = table;
    SamplingSequence sampling;
    sampling.params = &greedy;
    StepOutput out;
    Status st = g.step(ForwardBatch{step_ids, pos, seqs, false}, std::span(&sampling, 1), true, &out);
    ASSERT_TRUE(st.ok()) << st.to_string();
    check_logits(seqs[0].context_len - 1, out.logits.row(0));
    generated.push_back(out.samples[0].token);
    context = seqs[0].context_len;
    step_ids = {generated.back()};
  }
  EXPECT_EQ(generated, expected);
  EXPECT_EQ(checked, 9);  // positions 0..7, the last prompt position twice
  EXPECT_EQ(g.device_sampled_seqs(), static_cast<int64_t>(expected.size()));
}

TEST_F(CudaEngineTest, RandomGqaLlamaFp32MatchesCpuEngine) { run_mixed_steps(gqa_llama(), WeightDType::kF32, 1e-4); }

TEST_F(CudaEngineTest, RandomQwen2BiasesAndQwen3QkNormFp32MatchCpuEngine) {
  run_mixed_steps(dummy("random Qwen2", R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,
    "intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"vocab_size":97,
    "rope_theta":1000000.0,"tie_word_embeddings":true,"max_position_embeddings":256})"),
                  WeightDType::kF32, 1e-4);
  run_mixed_steps(dummy("random Qwen3", R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":40,
    "intermediate_size":56,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":14,
    "vocab_size":83,"max_position_embeddings":256})"),
                  WeightDType::kF32, 1e-4);
}

TEST_F(CudaEngineTest, Stories260KBf16WeightsCloseToCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kBF16, 1e-2);
}

// fp16 weights (and fp16 GEMM inputs on the GPU: 2^-11 rounding, 8x finer than bf16's): 2e-3,
// measured 5.0e-4.
TEST_F(CudaEngineTest, Stories260KFp16WeightsCloseToCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kF16, 2e-3);
}

// Qwen2's q/k/v biases through the GEMM's bias epilogue with 16-bit inputs. Random weights give
// flat logits (a small max |logit|), so the relative error is larger than on stories260K: 2e-2,
// measured 8.0e-3.
TEST_F(CudaEngineTest, RandomQwen2Bf16WeightsCloseToCpuEngine) {
  run_mixed_steps(dummy("random Qwen2", R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,
    "intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"vocab_size":97,
    "rope_theta":1000000.0,"tie_word_embeddings":true,"max_position_embeddings":256})"),
                  WeightDType::kBF16, 2e-2);
}

// int8 / int4 weights, against CpuEngine's on its portable linear path (see the tolerances above).
using CudaEngineQuantizedTest = CudaEngineTest;

TEST_F(CudaEngineQuantizedTest, Stories260KInt8KernelMatchesCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kInt8, 1e-4, kernels::KvCacheDType::kF32, 64);
}

TEST_F(CudaEngineQuantizedTest, Stories260KInt8WithTheGemmPathCloseToCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kInt8, 1e-2);
}

// Untied lm_head (GQA Llama) and a tied one quantized from the embedding with q/k/v biases (Qwen2).
TEST_F(CudaEngineQuantizedTest, RandomLlamaAndQwen2Int8MatchCpuEngine) {
  run_mixed_steps(gqa_llama(), WeightDType::kInt8, 1e-4, kernels::KvCacheDType::kF32, 64);
  run_mixed_steps(dummy("random Qwen2", R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,
    "intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"vocab_size":97,
    "rope_theta":1000000.0,"tie_word_embeddings":true,"max_position_embeddings":256})"),
                  WeightDType::kInt8, 1e-4, kernels::KvCacheDType::kF32, 64);
}

// int4 weights (both engines load the same matrices through WeightLoader): the same tolerances as
// int8. stories260K's down_proj (172 input features, no int4 group divides it) is int8 on both.
TEST_F(CudaEngineQuantizedTest, Stories260KInt4KernelMatchesCpuEngine) {
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kInt4, 1e-4, kernels::KvCacheDType::kF32, 64);
  run_mixed_steps(*m, Weights(WeightDType::kInt4, 64, true), 1e-4, kernels::KvCacheDType::kF32, 64);
}

TEST_F(CudaEngineQuantizedTest, RandomLlamaInt4WithTheGemmPathCloseToCpuEngine) {
  run_mixed_steps(gqa_llama(), Weights(WeightDType::kInt4, 32, true), 2e-2);
  run_mixed_steps(gqa_llama(), WeightDType::kInt4, 1e-4, kernels::KvCacheDType::kF32, 64);
}

// A GPTQ or AWQ checkpoint (tests/llm/model/quantized_checkpoint_writer.h), served in its own
// precision by both engines: the 4-bit codes as stored, with their zero points and scales.
Model quantized_checkpoint(testing::Method method, int group, int64_t hidden = 64, int64_t inter = 128) {
  const testing::Checkpoint ck = testing::make_checkpoint(method, group, hidden, inter);
  auto config = load_model_config(ck.dir);
  FERRY_CHECK(config.ok());
  auto weights = ModelWeights::load_safetensors(config.value(), ck.dir);
  FERRY_CHECK(weights.ok());
  return Model{method == testing::Method::kGptq ? "GPTQ g" + std::to_string(group) : "AWQ g" + std::to_string(group),
               config.value(), std::move(weights).value()};
}

TEST_F(CudaEngineQuantizedTest, GptqAndAwqCheckpointsMatchCpuEngine) {
  const Model gptq = quantized_checkpoint(testing::Method::kGptq, 32);
  run_mixed_steps(gptq, WeightDType::kAuto, 1e-4, kernels::KvCacheDType::kF32, 64);
  run_mixed_steps(quantized_checkpoint(testing::Method::kAwq, 64), WeightDType::kAuto, 1e-4,
                  kernels::KvCacheDType::kF32, 64);
  // Groups of 256 become groups of 128 sharing a scale (exact); then the GEMM path, whose two bf16
  // roundings over 256-wide rows of random weights cost more than at hidden 64 (measured 1.7e-2).
  const Model awq256 = quantized_checkpoint(testing::Method::kAwq, 256, 256, 256);
  run_mixed_steps(awq256, WeightDType::kAuto, 1e-4, kernels::KvCacheDType::kF32, 64);
  run_mixed_steps(awq256, WeightDType::kAuto, 4e-2);
  CudaEngineOptions o;
  auto e = CudaEngine::create(gptq.config, gptq.weights, o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_EQ(e.value()->weight_format(), kernels::WeightFormat::kInt4);
  auto planned = CudaEngine::planned_device_bytes(gptq.config, gptq.weights, o, 16);
  ASSERT_TRUE(planned.ok()) << planned.status().to_string();
  KvCacheOptions kv;
  kv.num_blocks = 2;
  kv.block_size = 16;
  ASSERT_TRUE(e.value()->allocate_kv_cache(kv).ok());
  EXPECT_EQ(planned.value(), e.value()->device_bytes() - 2 * e.value()->kv_block_bytes(16, kernels::KvCacheDType::kF32) +
                                 static_cast<int64_t>(kernels::cuda::CublasGemm::kDefaultWorkspaceBytes));
}

// The device holds the quantized matrices, not a wider copy: against the fp32 engine, an int8
// matrix (lm_head included) saves 3 bytes per weight and costs a 4-byte scale per row; an int4 one
// saves 3.5 bytes per weight and costs a 4-byte scale per group of 32, and is int8 where no group
// divides its input features (gqa_llama's down_proj: 80 = 2.5 x 32). (PlannedDeviceBytes... checks
// that planned_device_bytes sizes the same matrices without reading them.)
TEST_F(CudaEngineQuantizedTest, WeightsLiveOnTheDeviceAsCodesPlusScales) {
  const Model m = gqa_llama();
  const ModelConfig& c = m.config;
  const int64_t h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  CudaEngineOptions o;
  o.weight_dtype = WeightDType::kF32;
  auto f32 = CudaEngine::create(m.config, m.weights, o);
  ASSERT_TRUE(f32.ok()) << f32.status().to_string();
  for (WeightDType d : {WeightDType::kInt8, WeightDType::kInt4}) {
    o.weight_dtype = d;
    auto e = CudaEngine::create(m.config, m.weights, o);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    const bool int4 = d == WeightDType::kInt4;
    EXPECT_EQ(e.value()->weight_format(), int4 ? kernels::WeightFormat::kInt4 : kernels::WeightFormat::kInt8);
    int64_t saved = 0;
    auto matrix = [&](int64_t n, int64_t k) {
      saved += int4 && k % 32 == 0 ? 4 * n * k - (n * k / 2 + 4 * n * (k / 32)) : 3 * n * k - 4 * n;
    };
    for (int64_t l = 0; l < c.num_layers; ++l) {
      matrix(q + 2 * kv, h);
      matrix(h, q);
      matrix(2 * inter, h);
      matrix(h, inter);
    }
    matrix(c.vocab_size, h);  // untied lm_head
    EXPECT_EQ(f32.value()->weight_bytes() - e.value()->weight_bytes(), saved) << weight_dtype_name(d);
  }
}

// bf16 KV cache: both engines round K and V to bf16 the same way and attend in fp32.
TEST_F(CudaEngineTest, Bf16KvCacheMatchesCpuEngine) {
  run_mixed_steps(gqa_llama(), WeightDType::kF32, 1e-4, kernels::KvCacheDType::kBF16);
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  run_mixed_steps(*m, WeightDType::kF32, 1e-4, kernels::KvCacheDType::kBF16);
}

TEST_F(CudaEngineTest, Int8KvCacheMatchesCpuEngine) { run_mixed_steps(gqa_llama(), WeightDType::kF32, 1e-4, kernels::KvCacheDType::kInt8); }

// Plain seeded sampling runs on the device (cuda::sample with the u the engine draws from the
// sequence's SamplingRng): with the same seed it draws what the CPU engine draws.
TEST_F(CudaEngineTest, SeededSamplingRunsOnTheDevice) {
  Pair p(gqa_llama(), WeightDType::kF32);
  SamplingParams params;
  params.temperature = 0.8f;
  params.top_k = 20;
  auto r = p.step({{0, {3, 9, 27, 81, 5}}, {1, {7, 2}}}, &params);
  EXPECT_LE(relative_error(r), 1e-4);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(r.gpu.samples[i].token, r.cpu.samples[i].token);
  EXPECT_EQ(p.gpu().host_sampled_seqs(), 0);
  EXPECT_EQ(p.gpu().device_sampled_seqs(), 2);
}

// One request of a generation test: its prompt, sampling and seed.
struct Request {
  std::vector<int32_t> prompt;
  SamplingParams params;
  uint64_t seed = 0;
};

// Runs the requests together on `engine`: every prompt prefilled in the first step, then `steps`
// decode steps that feed back the sampled tokens; each request has its own SamplingRng, and its
// prompt and outputs as history (penalties see them). Returns each request's samples, in order.
std::vector<std::vector<SampleResult>> generate(Engine& engine, const std::vector<Request>& reqs, int steps) {
  constexpr int64_t kBlockSize = 8;
  SimpleBlockAllocator alloc(64);
  const size_t n = reqs.size();
  std::vector<std::vector<int32_t>> tables(n), outputs(n);
  std::vector<SamplingRng> rngs;
  for (const Request& r : reqs) rngs.emplace_back(r.seed);
  std::vector<std::vector<SampleResult>> results(n);
  for (int step = 0; step <= steps; ++step) {
    std::vector<int32_t> ids, pos;
    std::vector<SequenceInput> seqs(n);
    for (size_t i = 0; i < n; ++i) {
      const std::vector<int32_t> fresh = step == 0 ? reqs[i].prompt : std::vector<int32_t>{outputs[i].back()};
      const auto done = static_cast<int32_t>(step == 0 ? 0 : reqs[i].prompt.size() + outputs[i].size() - 1);
      seqs[i].query_start = static_cast<int32_t>(ids.size());
      seqs[i].query_len = static_cast<int32_t>(fresh.size());
      seqs[i].context_len = done + seqs[i].query_len;
      EXPECT_TRUE(alloc.ensure_capacity(&tables[i], seqs[i].context_len, kBlockSize));
      for (size_t j = 0; j < fresh.size(); ++j) ids.push_back(fresh[j]), pos.push_back(done + static_cast<int32_t>(j));
    }
    for (size_t i = 0; i < n; ++i) seqs[i].block_table = tables[i];
    const ForwardBatch batch{ids, pos, seqs, false};
    std::vector<SamplingSequence> sampling(n);
    for (size_t i = 0; i < n; ++i) {
      sampling[i].params = &reqs[i].params;
      sampling[i].prompt_ids = reqs[i].prompt;
      sampling[i].output_ids = outputs[i];
      sampling[i].rng = &rngs[i];
    }
    StepOutput out;
    const Status st = engine.step(batch, sampling, false, &out);
    EXPECT_TRUE(st.ok()) << st.to_string();
    if (!st.ok()) return results;
    for (size_t i = 0; i < n; ++i) {
      results[i].push_back(out.samples[i]);
      outputs[i].push_back(out.samples[i].token);
    }
  }
  return results;
}

// A CpuEngine (the oracle) and a CudaEngine loading `dtype` weights, the CUDA one of at most
// max_num_tokens tokens and 4 sequences per step, each with a cache of num_blocks blocks of 8.
void engine_pair(const Model& m, WeightDType dtype, int64_t max_num_tokens, int64_t num_blocks,
                 std::unique_ptr<CpuEngine>* cpu, std::unique_ptr<CudaEngine>* gpu) {
  WeightLoadOptions load;
  load.dtype = dtype;
  auto c = CpuEngine::create(m.config, m.weights, {}, load);
  ASSERT_TRUE(c.ok());
  CudaEngineOptions o;
  o.weight_dtype = dtype;
  o.max_num_tokens = max_num_tokens;
  o.max_num_seqs = 4;
  auto g = CudaEngine::create(m.config, m.weights, o);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  KvCacheOptions kv;
  kv.num_blocks = num_blocks;
  kv.block_size = 8;
  ASSERT_TRUE(c.value()->allocate_kv_cache(kv).ok());
  ASSERT_TRUE(g.value()->allocate_kv_cache(kv).ok());
  *cpu = std::move(c).value();
  *gpu = std::move(g).value();
}

// generate()'s engines: fp32 weights, 64 tokens per step, 64 blocks.
void generation_engines(const Model& m, std::unique_ptr<CpuEngine>* cpu, std::unique_ptr<CudaEngine>* gpu) {
  engine_pair(m, WeightDType::kF32, 64, 64, cpu, gpu);
}

std::vector<int32_t> tokens_of(const std::vector<SampleResult>& samples) {
  std::vector<int32_t> t;
  for (const SampleResult& s : samples) t.push_back(s.token);
  return t;
}

SamplingParams sampled(float temperature, int32_t top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

// Seeded requests sampled on the device generate, token for token, what CpuEngine generates (the
// same seeds, the same draws): temperature alone, then with top_k, top_p, min_p and all three. The
// engines' fp32 logits differ by ~1e-6 (relative), so a token could only differ where a draw falls
// that close to a boundary of the running mass; for these seeds none does, and any difference in
// the draw order, the candidate set or the RNG stream would show within a few tokens.
void expect_device_sampling_matches_cpu(const Model& m, int steps) {
  std::unique_ptr<CpuEngine> cpu;
  std::unique_ptr<CudaEngine> gpu;
  ASSERT_NO_FATAL_FAILURE(generation_engines(m, &cpu, &gpu));
  const auto vocab = static_cast<int32_t>(m.config.vocab_size);
  const std::vector<SamplingParams> variants = {sampled(0.8f, 0, 1.0f, 0.0f), sampled(0.8f, 20, 1.0f, 0.0f),
                                                sampled(0.8f, 0, 0.9f, 0.0f), sampled(0.8f, 0, 1.0f, 0.1f),
                                                sampled(1.0f, 40, 0.95f, 0.05f), sampled(1.2f, 0, 0.8f, 0.02f)};
  std::vector<Request> reqs;
  for (size_t v = 0; v < variants.size(); ++v) {
    std::vector<int32_t> prompt;
    for (int i = 0; i < 5; ++i) prompt.push_back(static_cast<int32_t>((v * 53 + i * 17 + 1) % vocab));
    reqs.push_back({prompt, variants[v], 4242 + v});
  }
  // Four at a time (max_num_seqs).
  for (size_t first = 0; first < reqs.size(); first += 4) {
    const std::vector<Request> batch(reqs.begin() + first, reqs.begin() + std::min(reqs.size(), first + 4));
    const auto want = generate(*cpu, batch, steps);
    const auto got = generate(*gpu, batch, steps);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      EXPECT_EQ(tokens_of(got[i]), tokens_of(want[i])) << m.name << ", variant " << first + i;
    }
  }
  EXPECT_EQ(gpu->device_sampled_seqs(), static_cast<int64_t>(reqs.size()) * (steps + 1));
  EXPECT_EQ(gpu->host_sampled_seqs(), 0);
}

TEST_F(CudaEngineTest, SeededDeviceSamplingGeneratesTheCpuEnginesTokens) {
  expect_device_sampling_matches_cpu(gqa_llama(), 24);
  auto m = stories();
  if (!m) GTEST_SKIP() << "stories260K-hf-format.derived not found";
  expect_device_sampling_matches_cpu(*m, 24);
}

// A mixed batch: plain greedy and plain seeded sampling on the device, a repetition penalty and a
// logprobs request on the host (their rows through page-locked memory). Each sequence gets the
// tokens (and logprobs) it gets alone on CpuEngine.
TEST_F(CudaEngineTest, MixedBatchGivesEachSequenceItsCpuTokens) {
  const Model m = gqa_llama();
  std::unique_ptr<CpuEngine> cpu;
  std::unique_ptr<CudaEngine> gpu;
  ASSERT_NO_FATAL_FAILURE(generation_engines(m, &cpu, &gpu));
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplingParams penalized = sampled(0.8f, 0, 0.9f, 0.0f);
  penalized.repetition_penalty = 1.3f;
  SamplingParams logprobs = sampled(0.7f, 30, 1.0f, 0.0f);
  logprobs.num_logprobs = 3;
  const std::vector<Request> reqs = {{{3, 9, 27, 81, 5}, greedy, 1},
                                     {{7, 2, 11}, sampled(0.8f, 0, 0.9f, 0.05f), 2},
                                     {{100, 4, 4, 4, 60, 1}, penalized, 3},
                                     {{42, 17}, logprobs, 4}};
  const int steps = 16;
  const auto got = generate(*gpu, reqs, steps);
  ASSERT_EQ(got.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto want = generate(*cpu, {reqs[i]}, steps);
    ASSERT_EQ(want.size(), 1u);
    EXPECT_EQ(tokens_of(got[i]), tokens_of(want[0])) << "request " << i;
    for (size_t t = 0; t < want[0].size() && t < got[i].size(); ++t) {
      const SampleResult &g = got[i][t], &c = want[0][t];
      EXPECT_NEAR(g.logprob, c.logprob, 1e-4) << "request " << i << " token " << t;
      EXPECT_EQ(g.rank, c.rank);
      ASSERT_EQ(g.top_logprobs.size(), c.top_logprobs.size());
      for (size_t j = 0; j < c.top_logprobs.size(); ++j) {
        EXPECT_EQ(g.top_logprobs[j].token, c.top_logprobs[j].token);
        EXPECT_NEAR(g.top_logprobs[j].logprob, c.top_logprobs[j].logprob, 1e-4);
      }
    }
  }
  EXPECT_EQ(got[3][0].top_logprobs.size(), 3u);
  EXPECT_EQ(gpu->device_sampled_seqs(), 2 * (steps + 1));
  EXPECT_EQ(gpu->host_sampled_seqs(), 2 * (steps + 1));
}

// Drafts are verified on the host. Here one sequence's 1 + 4 rows exceed the page-locked rows
// (max_num_seqs = 4), so they go through pageable memory, and the lm_head runs in two chunks of
// rows: the device-sampled sequence after it has its row in the second. Both engines give the same
// verified run and the same token.
TEST_F(CudaEngineTest, DraftsBesideDeviceRowsMatchCpuEngine) {
  const Model m = gqa_llama();
  std::unique_ptr<CpuEngine> cpu;
  std::unique_ptr<CudaEngine> gpu;
  ASSERT_NO_FATAL_FAILURE(generation_engines(m, &cpu, &gpu));
  // Sequence 0: a 6-token prompt whose last 4 tokens are drafts; sequence 1: a plain 3-token prompt.
  std::vector<int32_t> ids = {5, 17, 3, 99, 42, 8, 61, 7, 12}, pos = {0, 1, 2, 3, 4, 5, 0, 1, 2};
  const std::vector<int32_t> table0 = {0}, table1 = {1};
  std::vector<SequenceInput> seqs(2);
  seqs[0].query_len = seqs[0].context_len = 6;
  seqs[0].num_draft_tokens = 4;
  seqs[0].block_table = table0;
  seqs[1].query_start = 6;
  seqs[1].query_len = seqs[1].context_len = 3;
  seqs[1].block_table = table1;
  const ForwardBatch batch{ids, pos, seqs, false};
  const SamplingParams drafted = sampled(0.9f, 0, 0.95f, 0.0f), plain = sampled(0.8f, 10, 1.0f, 0.0f);
  auto run = [&](Engine& e, StepOutput* out) {
    SamplingRng r0(7), r1(8);
    std::vector<SamplingSequence> sampling(2);
    sampling[0].params = &drafted;
    sampling[0].rng = &r0;
    sampling[1].params = &plain;
    sampling[1].rng = &r1;
    const Status st = e.step(batch, sampling, false, out);
    EXPECT_TRUE(st.ok()) << st.to_string();
  };
  StepOutput c, g;
  run(*cpu, &c);
  run(*gpu, &g);
  ASSERT_EQ(g.samples.size(), 2u);
  EXPECT_EQ(g.samples[0].token, c.samples[0].token);
  EXPECT_EQ(g.samples[1].token, c.samples[1].token);
  ASSERT_EQ(g.num_extra, c.num_extra);
  for (int32_t j = 0; j < c.num_extra[0]; ++j) EXPECT_EQ(g.extra[j].token, c.extra[j].token);
  EXPECT_EQ(gpu->device_sampled_seqs(), 1);
  EXPECT_EQ(gpu->host_sampled_seqs(), 1);
}

// Greedy that the sampler would change (here min_tokens blocking the arg max) is not device greedy:
// the engine samples on the host and picks what the CPU engine picks.
TEST_F(CudaEngineTest, GreedyBlockedByMinTokensRunsTheHostSampler) {
  Pair p(gqa_llama(), WeightDType::kF32);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  auto plain = p.step({{0, {3, 9, 27, 81, 5}}}, &greedy);
  const int32_t best = plain.cpu.samples[0].token;
  EXPECT_EQ(plain.gpu.samples[0].token, best);
  EXPECT_EQ(p.gpu().device_sampled_seqs(), 1);
  SamplingParams blocked = greedy;
  blocked.min_tokens = 4;
  blocked.min_tokens_masked_ids = {best};  // as an EOS id would be before min_tokens
  auto r = p.step({{1, {3, 9, 27, 81, 5}}}, &blocked);  // the same prompt as another sequence
  EXPECT_NE(r.cpu.samples[0].token, best);
  EXPECT_EQ(r.gpu.samples[0].token, r.cpu.samples[0].token);
  EXPECT_EQ(p.gpu().host_sampled_seqs(), 1);
  EXPECT_EQ(p.gpu().device_sampled_seqs(), 1);
}

// all_logits: every token's logits, through the lm_head max_num_seqs (4) rows at a time.
// A CpuEngine and a CudaEngine of at most 16 tokens and 4 sequences per step (so that lm_head runs
// in chunks of 4 rows), each with a 4-block cache of 8 tokens.
void small_engines(const Model& m, std::unique_ptr<CpuEngine>* cpu, std::unique_ptr<CudaEngine>* gpu) {
  engine_pair(m, WeightDType::kAuto, 16, 4, cpu, gpu);
}

TEST_F(CudaEngineTest, AllLogitsInChunksMatchCpuEngine) {
  const Model m = gqa_llama();
  std::unique_ptr<CpuEngine> cpu;
  std::unique_ptr<CudaEngine> gpu;
  ASSERT_NO_FATAL_FAILURE(small_engines(m, &cpu, &gpu));
  std::vector<int32_t> ids = {5, 17, 3, 99, 42, 8, 8, 130, 0, 61, 7}, pos(ids.size()), table = {2, 0};
  for (size_t i = 0; i < ids.size(); ++i) pos[i] = static_cast<int32_t>(i);
  std::vector<SequenceInput> seqs(1);
  seqs[0].query_len = seqs[0].context_len = static_cast<int32_t>(ids.size());
  seqs[0].block_table = table;
  const ForwardBatch batch{ids, pos, seqs, true};
  Pair::Result r;
  ASSERT_TRUE(cpu->forward(batch, &r.cpu.logits).ok());
  Status st = gpu->forward(batch, &r.gpu.logits);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(r.gpu.logits.num_rows, 11);
  EXPECT_LE(relative_error(r), 1e-4);
}

// Prompt logprobs: 10 scored positions through lm_head in chunks of max_num_seqs (4) rows, beside a
// second sequence that scores none, against CpuEngine's.
TEST_F(CudaEngineTest, PromptLogprobsInChunksMatchCpuEngine) {
  const Model m = gqa_llama();
  std::unique_ptr<CpuEngine> cpu;
  std::unique_ptr<CudaEngine> gpu;
  ASSERT_NO_FATAL_FAILURE(small_engines(m, &cpu, &gpu));
  std::vector<int32_t> ids = {5, 17, 3, 99, 42, 8, 8, 130, 0, 61, 7, 12, 4}, pos(ids.size());
  for (size_t i = 0; i < 11; ++i) pos[i] = static_cast<int32_t>(i);
  pos[11] = 0;
  pos[12] = 1;
  const std::vector<int32_t> table0 = {2, 0}, table1 = {3};
  std::vector<SequenceInput> seqs(2);
  seqs[0].query_len = seqs[0].context_len = 11;
  seqs[0].block_table = table0;
  seqs[1].query_start = 11;
  seqs[1].query_len = seqs[1].context_len = 2;
  seqs[1].block_table = table1;
  const std::vector<int32_t> targets(ids.begin() + 1, ids.begin() + 11);  // the next prompt tokens
  const PromptLogprobsInput p{0, 0, targets, 3};
  const ForwardBatch batch{ids, pos, seqs, false, std::span<const PromptLogprobsInput>(&p, 1)};
  StepOutput c, g;
  ASSERT_TRUE(cpu->step(batch, {}, false, &c).ok());
  Status st = gpu->step(batch, {}, false, &g);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_EQ(c.prompt_logprobs.size(), 10u);
  ASSERT_EQ(g.prompt_logprobs.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(g.prompt_logprobs[i].token, targets[i]);
    EXPECT_NEAR(g.prompt_logprobs[i].logprob, c.prompt_logprobs[i].logprob, 1e-4) << i;
    EXPECT_EQ(g.prompt_logprobs[i].rank, c.prompt_logprobs[i].rank) << i;
    ASSERT_EQ(g.prompt_logprobs[i].top_logprobs.size(), 3u);
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(g.prompt_logprobs[i].top_logprobs[j].token, c.prompt_logprobs[i].top_logprobs[j].token) << i;
      EXPECT_NEAR(g.prompt_logprobs[i].top_logprobs[j].logprob, c.prompt_logprobs[i].top_logprobs[j].logprob, 1e-4);
    }
  }
}

// Sliding windows shorter than the contexts of run_mixed_steps (up to 24 tokens): Mistral's on every
// layer, and Qwen2's on the layers from max_window_layers on (layer 0 full, layer 1 windowed).
TEST_F(CudaEngineTest, SlidingWindowModelsMatchCpuEngine) {
  const Model mistral = dummy("random Mistral window 8", R"({"architectures":["MistralForCausalLM"],"hidden_size":64,
    "intermediate_size":80,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":101,
    "sliding_window":8,"max_position_embeddings":256})");
  ASSERT_EQ(mistral.config.layer_windows, (std::vector<int64_t>{8, 8}));
  run_mixed_steps(mistral, WeightDType::kF32, 1e-4);
  const Model qwen2 = dummy("random Qwen2 window 5 from layer 1", R"({"architectures":["Qwen2ForCausalLM"],
    "hidden_size":48,"intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,
    "vocab_size":97,"use_sliding_window":true,"sliding_window":5,"max_window_layers":1,"max_position_embeddings":256})");
  ASSERT_EQ(qwen2.config.layer_windows, (std::vector<int64_t>{0, 5}));
  run_mixed_steps(qwen2, WeightDType::kF32, 1e-4, kernels::KvCacheDType::kInt8);
}

TEST_F(CudaEngineTest, RefusesWhatItDoesNotRunWithAClearMessage) {
  Model capped = dummy("soft-capped", R"({"architectures":["LlamaForCausalLM"],"hidden_size":32,
    "intermediate_size":40,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50})");
  capped.config.final_logit_softcap = 30.0f;
  auto s = CudaEngine::create(capped.config, capped.weights, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.status().message().find("soft-capping"), std::string::npos) << s.status().to_string();
}

// planned_device_bytes (what kv_cache_memory_fraction subtracts from the free memory) is what
// create() and allocate_kv_cache() allocate, less the KV pool, plus cuBLASLt's workspace.
TEST_F(CudaEngineTest, PlannedDeviceBytesAreWhatTheEngineAllocates) {
  struct Case {
    WeightDType dtype;
    int64_t max_num_tokens;  // int8 / int4 past 16 rows: the bf16 workspace too
  } cases[] = {{WeightDType::kF32, 8},  {WeightDType::kBF16, 8}, {WeightDType::kInt8, 8},
               {WeightDType::kInt8, 32}, {WeightDType::kInt4, 8}, {WeightDType::kInt4, 32}};
  const Model m = gqa_llama();
  for (const Case& c : cases) {
    CudaEngineOptions o;
    o.weight_dtype = c.dtype;
    o.max_num_tokens = c.max_num_tokens;
    o.max_num_seqs = 2;
    auto planned = CudaEngine::planned_device_bytes(m.config, m.weights, o, 16);
    ASSERT_TRUE(planned.ok()) << planned.status().to_string();
    auto e = CudaEngine::create(m.config, m.weights, o);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    KvCacheOptions kv;
    kv.num_blocks = 3;
    kv.block_size = 16;
    ASSERT_TRUE(e.value()->allocate_kv_cache(kv).ok());
    const int64_t pool = 3 * e.value()->kv_block_bytes(16, kernels::KvCacheDType::kF32);
    EXPECT_EQ(planned.value(), e.value()->device_bytes() - pool +
                                   static_cast<int64_t>(kernels::cuda::CublasGemm::kDefaultWorkspaceBytes))
        << weight_dtype_name(c.dtype) << ", max_num_tokens " << c.max_num_tokens;
  }
}

TEST_F(CudaEngineTest, KvBudgetAndBatchLimits) {
  const Model m = gqa_llama();
  CudaEngineOptions o;
  o.max_num_tokens = 8;
  o.max_num_seqs = 2;
  auto e = CudaEngine::create(m.config, m.weights, o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  CudaEngine& g = *e.value();
  const int64_t per_block = g.kv_block_bytes(16, kernels::KvCacheDType::kF32);
  EXPECT_EQ(per_block, 2 * 2 * 16 * 1 * 16 * 4);  // K and V, 2 layers, 16 tokens, 1 kv head, head_dim 16, fp32
  KvCacheOptions kv;
  kv.budget_bytes = per_block * 5 + per_block / 2;
  const int64_t before = g.device_bytes();
  auto blocks = g.allocate_kv_cache(kv);
  ASSERT_TRUE(blocks.ok()) << blocks.status().to_string();
  EXPECT_EQ(blocks.value(), 5);
  EXPECT_GE(g.device_bytes() - before, 5 * per_block);

  std::vector<int32_t> ids(9, 1), pos(9), table = {0};
  for (int i = 0; i < 9; ++i) pos[i] = i;
  std::vector<SequenceInput> seqs(1);
  seqs[0].query_len = 9;
  seqs[0].context_len = 9;
  seqs[0].block_table = table;
  ForwardOutput out;
  Status st = g.forward(ForwardBatch{ids, pos, seqs, false}, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("max_num_tokens"), std::string::npos) << st.to_string();
}

// ---- CUDA graphs (CudaEngineOptions::cuda_graphs) -------------------------------------------------

// A small random Llama whose contexts may pass one decode attention partition (kDecodePartitionTokens):
// with 1024 positions the engine's decode graphs size the attention for two partitions.
Model long_gqa_llama() {
  return dummy("random Llama GQA 2:1, 1024 positions", R"({"architectures":["LlamaForCausalLM"],"hidden_size":32,
    "intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":131,
    "rope_theta":500000.0,"max_position_embeddings":1024})");
}

// Two CudaEngines of one model, graphs off and on, stepped in lockstep over the same batches with
// device-greedy sampling: each step's logits must agree (relative to the step's max |logit|) and the
// tokens must be equal. The graph engine pads decode batches to their bucket, so a padding row that
// wrote a real block's cache slot, or a replay that read stale metadata, shows up as a difference.
class GraphTwins {
 public:
  GraphTwins(const Model& m, int64_t num_blocks, int64_t max_num_tokens, int64_t max_num_seqs)
      : batches_(num_blocks), num_blocks_(num_blocks) {
    greedy_.temperature = 0.0f;
    for (bool graphs : {false, true}) {
      CudaEngineOptions o;
      o.max_num_tokens = max_num_tokens;
      o.max_num_seqs = max_num_seqs;
      o.cuda_graphs = graphs;
      auto e = CudaEngine::create(m.config, m.weights, o);
      if (!e.ok()) ADD_FAILURE() << e.status().to_string();
      FERRY_CHECK(e.ok());
      engines_[graphs ? 1 : 0] = std::move(e).value();
    }
    allocate_kv_cache();
  }

  // (Re)allocates both KV caches (block size 8, as Batches), zeroed: the graph engine drops its graphs.
  void allocate_kv_cache() {
    KvCacheOptions kv;
    kv.num_blocks = num_blocks_;
    kv.block_size = 8;
    for (auto& e : engines_) FERRY_CHECK(e->allocate_kv_cache(kv).ok());
  }

  // Runs one step on both engines; returns the tokens sampled.
  std::vector<int32_t> step(const Batches::Work& work, const std::string& what) {
    const ForwardBatch batch = batches_.build(work);
    std::vector<SamplingSequence> sampling(work.size());
    for (SamplingSequence& s : sampling) s.params = &greedy_, s.rng = &rng_;
    Pair::Result r;
    const Status off = engines_[0]->step(batch, sampling, true, &r.cpu);
    const Status on = engines_[1]->step(batch, sampling, true, &r.gpu);
    EXPECT_TRUE(off.ok()) << what << ": " << off.to_string();
    EXPECT_TRUE(on.ok()) << what << ": " << on.to_string();
    const double err = relative_error(r);
    EXPECT_LE(err, 1e-5) << what;
    const auto& logits = r.gpu.logits.logits;
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); })) << what;
    worst_ = std::max(worst_, err);
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < work.size() && i < r.cpu.samples.size() && i < r.gpu.samples.size(); ++i) {
      EXPECT_EQ(r.gpu.samples[i].token, r.cpu.samples[i].token) << what << ", sequence " << work[i].first;
      tokens.push_back(r.cpu.samples[i].token);
    }
    batches_.advance(work);
    return tokens;
  }

  CudaEngine& off() { return *engines_[0]; }
  CudaEngine& on() { return *engines_[1]; }
  Batches& batches() { return batches_; }
  double worst() const { return worst_; }

 private:
  Batches batches_;
  int64_t num_blocks_;
  std::unique_ptr<CudaEngine> engines_[2];
  SamplingParams greedy_;
  SamplingRng rng_{1};
  double worst_ = 0;
};

// DecodeGraphs alone: its buckets; a capture that fails (a synchronization the runtime forbids
// during capture, or an error of the recorded work) leaves no graph and a usable stream, and the
// next launch captures; a replay runs the recorded work again.
TEST_F(CudaEngineTest, DecodeGraphsBucketsAndFailedCaptures) {
  const DecodeGraphs twenty(20);
  std::vector<int64_t> buckets;
  for (int64_t n = 1; n <= 20; ++n) buckets.push_back(twenty.bucket_for(n));
  EXPECT_EQ(buckets, (std::vector<int64_t>{1, 2, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20}));
  const DecodeGraphs three(3);
  EXPECT_EQ(three.bucket_for(3), 3);
  EXPECT_EQ(DecodeGraphs(1).bucket_for(1), 1);

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  uint8_t* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 16), cudaSuccess);
  DecodeGraphs g(4);
  Status st = g.launch(2, stream, [&] {
    (void)cudaStreamSynchronize(stream);  // forbidden while capturing: invalidates the capture
    return Status::Ok();
  });
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.to_string();
  st = g.launch(2, stream, [] { return Status::InvalidArgument("the recorded work failed"); });
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  EXPECT_EQ(g.num_graphs(), 0);
  EXPECT_EQ(g.num_captured(), 0);
  for (int replay = 0; replay < 2; ++replay) {
    ASSERT_EQ(cudaMemset(d, 0, 16), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    st = g.launch(2, stream, [&] {
      if (cudaMemsetAsync(d, 7, 16, stream) != cudaSuccess) return Status::Internal("cudaMemsetAsync");
      return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    uint8_t host[16] = {};
    ASSERT_EQ(cudaMemcpy(host, d, 16, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(host[0], 7);
    EXPECT_EQ(host[15], 7);
  }
  EXPECT_EQ(g.num_captured(), 1);
  EXPECT_EQ(g.num_replayed(), 2);
  EXPECT_EQ(g.num_graphs(), 1);
  g.clear();
  EXPECT_EQ(g.num_graphs(), 0);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// Decode steps of 1, 3, 5, 4 and 2 sequences (buckets 1, 4, 8, 4, 2 of max_num_seqs 8) between
// prefill and mixed steps, sequences finishing and joining (a finished sequence's blocks go to the
// next one), a context growing past the first attention partition (508 prompt tokens in chunks,
// then decodes from 509 to 516 positions), then a KV cache reallocation, after which the graph is
// captured again. Every decode step replays a graph; no other step does.
TEST_F(CudaEngineTest, DecodeGraphsMatchUncapturedStepsAcrossBuckets) {
  const Model m = long_gqa_llama();
  GraphTwins t(m, /*num_blocks=*/160, /*max_num_tokens=*/128, /*max_num_seqs=*/8);
  std::map<int, int32_t> next;  // each live sequence's next input token
  int decode_steps = 0;
  auto prompt = [&](int seed, int len) {
    std::vector<int32_t> p;
    for (int i = 0; i < len; ++i) p.push_back(static_cast<int32_t>((seed * 37 + i * 11 + 1) % m.config.vocab_size));
    return p;
  };
  // One step: decode tokens for `decoding`, prompt chunks for the rest.
  auto step = [&](const std::vector<int>& decoding, const Batches::Work& prompts, const std::string& what) {
    Batches::Work work;
    for (int s : decoding) work.push_back({s, {next.at(s)}});
    work.insert(work.end(), prompts.begin(), prompts.end());
    const std::vector<int32_t> tokens = t.step(work, what);
    for (size_t i = 0; i < tokens.size(); ++i) next[work[i].first] = tokens[i];
    if (prompts.empty()) ++decode_steps;
  };
  auto decode = [&](const std::vector<int>& seqs, int steps, const std::string& what) {
    for (int i = 0; i < steps; ++i) step(seqs, {}, what + " (decode " + std::to_string(i) + ")");
  };

  step({}, {{0, prompt(1, 7)}}, "prefill 0");
  decode({0}, 2, "1 sequence");
  EXPECT_EQ(t.on().graphs_captured(), 1);
  EXPECT_EQ(t.on().graph_replays(), 2);
  step({0}, {{1, prompt(2, 5)}, {2, prompt(3, 9)}}, "decode 0 + prefill 1, 2");
  EXPECT_EQ(t.on().graph_replays(), 2) << "a mixed step runs uncaptured";
  decode({0, 1, 2}, 2, "3 sequences");
  step({0, 1, 2}, {{3, prompt(4, 3)}, {4, prompt(5, 12)}}, "decode 0-2 + prefill 3, 4");
  decode({0, 1, 2, 3, 4}, 2, "5 sequences");
  t.batches().finish(1);
  decode({0, 2, 3, 4}, 2, "4 sequences, 1 finished");
  t.batches().finish(0);
  step({2, 3, 4}, {{5, prompt(6, 4)}}, "decode 2-4 + prefill 5 in 0's and 1's blocks");
  decode({2, 3, 4, 5}, 2, "4 sequences, 5 joined");
  EXPECT_EQ(t.on().graphs_captured(), 3);  // buckets 1, 4, 8

  // A long context: 508 prompt tokens in four chunks beside decodes, then past position 512.
  const std::vector<int32_t> long_prompt = prompt(7, 508);
  for (int c = 0; c < 4; ++c) {
    step({2}, {{6, std::vector<int32_t>(long_prompt.begin() + c * 127, long_prompt.begin() + (c + 1) * 127)}},
         "decode 2 + long prompt chunk " + std::to_string(c));
  }
  for (int s : {3, 4, 5}) t.batches().finish(s), next.erase(s);
  decode({6}, 3, "long context alone");
  decode({6, 2}, 5, "long context and another");
  EXPECT_GT(t.batches().context_len(6), 512);
  EXPECT_EQ(t.on().graphs_captured(), 4);  // bucket 2 too
  EXPECT_EQ(t.on().graph_replays(), decode_steps);
  EXPECT_EQ(t.on().graphs_held(), 4);

  // A new KV cache: the graphs held the old one's pointers and are captured again on first use.
  for (int s : {2, 6}) t.batches().finish(s);
  t.allocate_kv_cache();
  EXPECT_EQ(t.on().graphs_held(), 0);
  step({}, {{7, prompt(8, 10)}}, "prefill 7 after reallocation");
  decode({7}, 2, "1 sequence after reallocation");
  EXPECT_EQ(t.on().graphs_captured(), 5);
  EXPECT_EQ(t.on().graphs_held(), 1);
  EXPECT_EQ(t.on().graph_replays(), decode_steps);
  EXPECT_EQ(t.off().graphs_captured(), 0);
  EXPECT_EQ(t.off().graph_replays(), 0);
  EXPECT_EQ(t.on().device_sampled_seqs(), t.off().device_sampled_seqs());
  std::printf("graphs on vs off over %d decode steps: max relative logit difference %.3g\n", decode_steps, t.worst());
}

}  // namespace
}  // namespace ferry::llm
