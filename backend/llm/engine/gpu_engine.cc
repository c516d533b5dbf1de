#include "backend/llm/engine/gpu_engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(FERRY_LLM_SERVE_CUDA)
#include <cuda_runtime.h>

#include "backend/llm/engine/cuda_engine.h"
#endif

namespace ferry::llm {
namespace {

Status refuse(StatusCode code, const std::string& why) {
  return Status(code, "key 'instance_group.kind' is gpu, but " + why);
}

}  // namespace

bool emulated_device_opted_in() {
  const char* v = std::getenv(kEmulatedDeviceEnv);
  return v != nullptr && std::strcmp(v, "1") == 0;
}

#if defined(FERRY_LLM_SERVE_CUDA)

namespace {

CudaEngineOptions cuda_options(const GpuEngineOptions& o) {
  CudaEngineOptions c;
  c.device = o.device;
  c.weight_dtype = o.weight_dtype;
  c.max_num_tokens = std::max<int64_t>(1, o.max_num_tokens);
  c.max_num_seqs = std::clamp<int64_t>(o.max_num_seqs, 1, c.max_num_tokens);
  return c;
}

}  // namespace

Status gpu_engine_supported(const ModelConfig& config, const ModelWeights& weights, const GpuEngineOptions& o) {
#if defined(FERRY_LLM_CUDA_EMULATED)
  if (!emulated_device_opted_in()) {
    return refuse(StatusCode::kUnimplemented,
                  std::string("this build runs the CUDA kernels on the SIMT emulator (FERRY_CUDA_EMULATION), which "
                              "serves only tests that set ") +
                      kEmulatedDeviceEnv + "=1; build with FERRY_CUDA_EMULATION=OFF to serve on a GPU, or use kind cpu");
  }
#endif
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return refuse(StatusCode::kUnavailable, "no CUDA device is present; use kind cpu");
  }
  if (o.device < 0 || o.device >= count) {
    return refuse(StatusCode::kInvalidArgument, "CUDA device " + std::to_string(o.device) + " does not exist (" +
                                                    std::to_string(count) + " present)");
  }
  Status s = CudaEngine::check_supported(config, weights, o.weight_dtype);
  if (!s.ok()) return refuse(s.code(), s.message());
  return Status::Ok();
}

Result<std::unique_ptr<Engine>> create_gpu_engine(const ModelConfig& config, const ModelWeights& weights,
                                                  const GpuEngineOptions& o) {
#if defined(FERRY_LLM_CUDA_EMULATED)
  FERRY_RETURN_IF_ERROR(gpu_engine_supported(config, weights, o));
#endif
  auto engine = CudaEngine::create(config, weights, cuda_options(o));
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(std::move(engine).value());
}

#else

Status gpu_engine_supported(const ModelConfig&, const ModelWeights&, const GpuEngineOptions&) {
  return refuse(StatusCode::kUnimplemented, "this build has no CUDA engine (nvcc was not found); use kind cpu");
}

Result<std::unique_ptr<Engine>> create_gpu_engine(const ModelConfig& config, const ModelWeights& weights,
                                                  const GpuEngineOptions& o) {
  return gpu_engine_supported(config, weights, o);
}

#endif

}  // namespace ferry::llm
