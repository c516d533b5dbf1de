// The engine of a kind "gpu" instance (llm_config's instance_group), as far as this build can
// serve one. Only a build with nvcc and without CUDA emulation serves on a GPU: in the emulation
// build (FERRY_CUDA_EMULATION) the CUDA kernels run on the host's SIMT emulator, a test
// configuration (tests/llm/engine/cuda_engine_test.cc) that must never answer requests, and a build
// without nvcc has no CUDA code at all. The served engine is CudaEngine (cuda_engine.h).
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
  int64_t max_num_tokens = 2048;  // the scheduler's max_num_batched_tokens
  int64_t max_num_seqs = 64;      // the scheduler's max_num_seqs
};

// Ok when this build can run the model on a GPU, else why not (the message starts with "key
// 'instance_group.kind' is gpu, but"): no CUDA in this build (Unimplemented), an emulation build
// (Unimplemented), no device (Unavailable), a device id that does not exist (InvalidArgument), or
// the CUDA engine does not run this model (Unimplemented, naming what is missing).
Status gpu_engine_supported(const ModelConfig& config, const ModelWeights& weights, const GpuEngineOptions& options);

// A CudaEngine for the model on options.device (after gpu_engine_supported said Ok).
Result<std::unique_ptr<Engine>> create_gpu_engine(const ModelConfig& config, const ModelWeights& weights,
                                                  const GpuEngineOptions& options);

}  // namespace ferry::llm
