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
  c.weight_group_size = o.weight_group_size;
  c.weight_zero_points = o.weight_zero_points;
  c.max_num_tokens = std::max<int64_t>(1, o.max_num_tokens);
  c.max_num_seqs = std::clamp<int64_t>(o.max_num_seqs, 1, c.max_num_tokens);
  c.cuda_graphs = o.cuda_graphs;
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

Result<int64_t> gpu_kv_cache_budget_bytes(const ModelConfig& config, const ModelWeights& weights,
                                          const GpuEngineOptions& o, int64_t block_size, double fraction,
                                          int instances_on_device) {
  FERRY_RETURN_IF_ERROR(gpu_engine_supported(config, weights, o));
  if (!(fraction > 0.0 && fraction <= 1.0) || instances_on_device < 1) {
    return Status::InvalidArgument("key 'kv_cache_memory_fraction' must be in (0, 1]");
  }
  int64_t planned = 0;
  FERRY_ASSIGN_OR_RETURN(planned, CudaEngine::planned_device_bytes(config, weights, cuda_options(o), block_size));
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(o.device) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    const cudaError_t err = cudaGetLastError();
    return Status::Internal(std::string("cudaMemGetInfo on device ") + std::to_string(o.device) + ": " +
                            cudaGetErrorName(err));
  }
  const int64_t left = static_cast<int64_t>(free_bytes) - instances_on_device * planned;
  if (left <= 0) {
    return Status::ResourceExhausted(
        "key 'kv_cache_memory_fraction': CUDA device " + std::to_string(o.device) + " has " +
        std::to_string(free_bytes >> 20) + " MiB free, not more than the weights, activations and workspaces of " +
        std::to_string(instances_on_device) + " instance(s) (" + std::to_string(planned >> 20) + " MiB each)");
  }
  return static_cast<int64_t>(fraction * static_cast<double>(left)) / instances_on_device;
}

#else

Status gpu_engine_supported(const ModelConfig&, const ModelWeights&, const GpuEngineOptions&) {
  return refuse(StatusCode::kUnimplemented, "this build has no CUDA engine (nvcc was not found); use kind cpu");
}

Result<std::unique_ptr<Engine>> create_gpu_engine(const ModelConfig& config, const ModelWeights& weights,
                                                  const GpuEngineOptions& o) {
  return gpu_engine_supported(config, weights, o);
}

Result<int64_t> gpu_kv_cache_budget_bytes(const ModelConfig& config, const ModelWeights& weights,
                                          const GpuEngineOptions& o, int64_t, double, int) {
  return gpu_engine_supported(config, weights, o);
}

#endif

}  // namespace ferry::llm
