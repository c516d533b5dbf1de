// gpu_engine.h: what a kind "gpu" instance gets in each build. A build without nvcc refuses, and
// so does the emulation build unless FERRY_CUDA_EMULATED_DEVICE=1, each with a message naming the key
// and the reason; an nvcc build refuses without a device, and with one (or the emulation build with
// the opt-in) accepts a Llama and refuses what CudaEngine does not run.
#include <gtest/gtest.h>

#include <cstdlib>

#if defined(FERRY_TEST_GPU_SERVE)
#include <cuda_runtime.h>
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

// Accepts the Llama (an engine with a KV cache) and refuses a sliding window, naming it.
[[maybe_unused]] void expect_serves_llama_and_refuses_a_window(const ModelConfig& c, const ModelWeights& w) {
  auto e = create_gpu_engine(c, w, {});
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  KvCacheOptions kv;
  kv.num_blocks = 4;
  EXPECT_TRUE(e.value()->allocate_kv_cache(kv).ok());
  const ModelConfig windowed = config(R"({"architectures":["MistralForCausalLM"],"hidden_size":32,
    "intermediate_size":40,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50,
    "sliding_window":16})");
  const Status ws = gpu_engine_supported(windowed, ModelWeights::dummy(windowed, 3), {});
  EXPECT_EQ(ws.code(), StatusCode::kUnimplemented);
  EXPECT_NE(ws.message().find("sliding"), std::string::npos) << ws.to_string();
}

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
  // The opt-in: only "1" counts.
  setenv(kEmulatedDeviceEnv, "yes", 1);
  EXPECT_EQ(gpu_engine_supported(c, w, {}).code(), StatusCode::kUnimplemented);
  setenv(kEmulatedDeviceEnv, "1", 1);
  EXPECT_TRUE(gpu_engine_supported(c, w, {}).ok());
  GpuEngineOptions bad;
  bad.device = 1;  // the emulated runtime has one device
  EXPECT_EQ(gpu_engine_supported(c, w, bad).code(), StatusCode::kInvalidArgument);
  expect_serves_llama_and_refuses_a_window(c, w);
  unsetenv(kEmulatedDeviceEnv);
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
  expect_serves_llama_and_refuses_a_window(c, w);
#else
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("no CUDA engine"), std::string::npos) << s.to_string();
#endif
}

}  // namespace
}  // namespace ferry::llm
