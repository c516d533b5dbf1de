// The engine of a kind "gpu" instance (llm_config's instance_group), as far as this build can
// serve one. The served engine is CudaEngine (cuda_engine.h).
//   - A build with nvcc and without CUDA emulation serves on a GPU.
//   - The emulation build (FERRY_CUDA_EMULATION, with or without nvcc) runs the CUDA kernels on the
//     host's SIMT emulator: a test configuration, thousands of times slower than a GPU. It refuses
//     kind gpu unless the process's environment has FERRY_CUDA_EMULATED_DEVICE=1 (an explicit
//     opt-in that integration tests set, so a real ferry-server runs CudaEngine end to end on the
//     emulated device, tests/integration/llm_gpu_emulated_test.cc); it never serves on a GPU.
//   - A build without nvcc and without emulation has no CUDA code at all and refuses.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/llm/engine/engine.h"
#include "backend/llm/model/model_config.h"
#include "backend/llm/model/model_weights.h"
#include "backend/llm/model/weight_loader.h"
#include "common/status.h"

namespace ferry::llm {

struct GpuEngineOptions {
  int device = 0;
  WeightDType weight_dtype = WeightDType::kAuto;
  int64_t weight_group_size = 32;    // int4: as the model config's weight_group_size
  bool weight_zero_points = false;   // int4: as weight_zero_points
  int64_t max_num_tokens = 2048;  // the scheduler's max_num_batched_tokens
  int64_t max_num_seqs = 64;      // the scheduler's max_num_seqs
  bool cuda_graphs = true;        // the model config's cuda_graphs (CudaEngineOptions::cuda_graphs)
};

// The opt-in of the emulation build (above), and whether this process has it ("1").
inline constexpr const char* kEmulatedDeviceEnv = "FERRY_CUDA_EMULATED_DEVICE";
bool emulated_device_opted_in();

// Ok when this build can run the model on a GPU, else why not (the message starts with "key
// 'instance_group.kind' is gpu, but"): no CUDA in this build (Unimplemented), an emulation build
// without the opt-in (Unimplemented), no device (Unavailable), a device id that does not exist (InvalidArgument), or
// the CUDA engine does not run this model (Unimplemented, naming what is missing).
Status gpu_engine_supported(const ModelConfig& config, const ModelWeights& weights, const GpuEngineOptions& options);

// The KV pool of each of `instances_on_device` kind gpu instances on options.device when together
// they take `fraction` (0 < f <= 1) of the device memory that is free now, after their engines'
// own allocations (CudaEngine::planned_device_bytes: weights, activations, workspaces, block
// tables of blocks of `block_size` tokens): fraction * (free - instances * planned) / instances
// bytes. Fails as gpu_engine_supported does, InvalidArgument for a bad fraction, ResourceExhausted
// when the engines alone do not fit. Call it before the engines exist (llm_model does, at load).
Result<int64_t> gpu_kv_cache_budget_bytes(const ModelConfig& config, const ModelWeights& weights,
                                          const GpuEngineOptions& options, int64_t block_size, double fraction,
                                          int instances_on_device);

// A CudaEngine for the model on options.device (after gpu_engine_supported said Ok).
Result<std::unique_ptr<Engine>> create_gpu_engine(const ModelConfig& config, const ModelWeights& weights,
                                                  const GpuEngineOptions& options);

}  // namespace ferry::llm
