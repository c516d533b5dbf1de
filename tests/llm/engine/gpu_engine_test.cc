// gpu_engine.h: what a kind "gpu" instance gets in each build. A build without nvcc refuses, and
// so does the emulation build unless FERRY_CUDA_EMULATED_DEVICE=1, each with a message naming the key
// and the reason; an nvcc build refuses without a device, and with one (or the emulation build with
// the opt-in) accepts a Llama and refuses what CudaEngine does not run.
#include <gtest/gtest.h>

#include <cstdlib>

#if defined(FERRY_TEST_GPU_SERVE) || defined(FERRY_TEST_GPU_EMULATED)
#include <cuda_runtime.h>

#include "backend/llm/engine/cuda_engine.h"
#endif

#include "backend/llm/engine/gpu_engine.h"

namespace ferry::llm {
namespace {

ModelConfig config(const std::string& json) {
  auto c = parse_model_config(json);
  FERRY_CHECK(c.ok());
  return c.value();
}

const char* kLlama = R"({"architectures":["LlamaForCausalLM"],"hidden_size":32,"intermediate_size":40,
  "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50})";

// Accepts the Llama (an engine with a KV cache) and a sliding-window Mistral, and refuses what the
// CUDA engine does not run (a final-logit soft-cap), naming it.
[[maybe_unused]] void expect_serves_llama_and_refuses_a_final_softcap(const ModelConfig& c, const ModelWeights& w) {
  auto e = create_gpu_engine(c, w, {});
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  KvCacheOptions kv;
  kv.num_blocks = 4;
  EXPECT_TRUE(e.value()->allocate_kv_cache(kv).ok());
  const ModelConfig windowed = config(R"({"architectures":["MistralForCausalLM"],"hidden_size":32,
    "intermediate_size":40,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50,
    "sliding_window":16})");
  const Status ws = gpu_engine_supported(windowed, ModelWeights::dummy(windowed, 3), {});
  EXPECT_TRUE(ws.ok()) << ws.to_string();
  ModelConfig capped = c;
  capped.final_logit_softcap = 30.0f;
  const Status cs = gpu_engine_supported(capped, ModelWeights::dummy(capped, 3), {});
  EXPECT_EQ(cs.code(), StatusCode::kUnimplemented);
  EXPECT_NE(cs.message().find("soft-capping"), std::string::npos) << cs.to_string();
}

#if defined(FERRY_TEST_GPU_SERVE) || defined(FERRY_TEST_GPU_EMULATED)
// gpu_kv_cache_budget_bytes: fraction * (free - instances * planned) / instances, from the free
// memory the runtime reports; ResourceExhausted when the engines alone do not fit.
void expect_kv_budget_is_the_fraction_of_free_memory(const ModelConfig& c, const ModelWeights& w) {
  GpuEngineOptions o;
  o.max_num_tokens = 64;
  o.max_num_seqs = 4;
  CudaEngineOptions co;
  co.max_num_tokens = 64;
  co.max_num_seqs = 4;
  auto planned = CudaEngine::planned_device_bytes(c, w, co, 16);
  ASSERT_TRUE(planned.ok()) << planned.status().to_string();
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  const int64_t left = static_cast<int64_t>(free_bytes) - 2 * planned.value();
  auto budget = gpu_kv_cache_budget_bytes(c, w, o, 16, 0.25, 2);
  ASSERT_TRUE(budget.ok()) << budget.status().to_string();
  EXPECT_EQ(budget.value(), static_cast<int64_t>(0.25 * static_cast<double>(left)) / 2);
  const int too_many = static_cast<int>(static_cast<int64_t>(free_bytes) / planned.value() + 1);
  const Status full = gpu_kv_cache_budget_bytes(c, w, o, 16, 0.25, too_many).status();
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("kv_cache_memory_fraction"), std::string::npos) << full.to_string();
  EXPECT_EQ(gpu_kv_cache_budget_bytes(c, w, o, 16, 1.5, 1).status().code(), StatusCode::kInvalidArgument);
}
#endif

TEST(GpuEngine, RefusesOrAcceptsAsThisBuildCan) {
  const ModelConfig c = config(kLlama);
  const ModelWeights w = ModelWeights::dummy(c, 3);
  const Status s = gpu_engine_supported(c, w, {});
  if (!s.ok()) {
    EXPECT_EQ(s.message().rfind("key 'instance_group.kind' is gpu, but ", 0), 0u) << s.to_string();
  }
#if defined(FERRY_TEST_GPU_EMULATED)
  ASSERT_FALSE(emulated_device_opted_in()) << "run this test without " << kEmulatedDeviceEnv << " set";
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("emulator"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find(kEmulatedDeviceEnv), std::string::npos) << s.to_string();
  EXPECT_EQ(create_gpu_engine(c, w, {}).status().code(), StatusCode::kUnimplemented);
  // The opt-in: only "1" counts. Unset again however the checks below end.
  struct Unset {
    ~Unset() { unsetenv(kEmulatedDeviceEnv); }
  } unset;
  setenv(kEmulatedDeviceEnv, "yes", 1);
  EXPECT_EQ(gpu_engine_supported(c, w, {}).code(), StatusCode::kUnimplemented);
  setenv(kEmulatedDeviceEnv, "1", 1);
  EXPECT_TRUE(gpu_engine_supported(c, w, {}).ok());
  GpuEngineOptions bad;
  bad.device = 1;  // the emulated runtime has one device
  EXPECT_EQ(gpu_engine_supported(c, w, bad).code(), StatusCode::kInvalidArgument);
  expect_serves_llama_and_refuses_a_final_softcap(c, w);
  expect_kv_budget_is_the_fraction_of_free_memory(c, w);
#elif defined(FERRY_TEST_GPU_SERVE)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
    EXPECT_NE(s.message().find("no CUDA device"), std::string::npos) << s.to_string();
    return;
  }
  EXPECT_TRUE(s.ok()) << s.to_string();
  GpuEngineOptions bad;
  bad.device = count;
  EXPECT_EQ(gpu_engine_supported(c, w, bad).code(), StatusCode::kInvalidArgument);
  expect_serves_llama_and_refuses_a_final_softcap(c, w);
  expect_kv_budget_is_the_fraction_of_free_memory(c, w);
#else
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("no CUDA engine"), std::string::npos) << s.to_string();
#endif
}

}  // namespace
}  // namespace ferry::llm
