// Element type conversion on the GPU between the fp32 activations and the 16-bit types the cuBLAS
// GEMMs take (kernels/cuda/gemm.cuh). No CPU twin in kernels.h; kernels::convert_to_f32 and
// f32_to_bf16 / f32_to_f16 are its references.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::kernels::cuda {

// dst[i] = convert(src[i]) for i < n. Supported: kF32 -> kF16 / kBF16 (round to nearest even, as
// kernels::f32_to_f16 / f32_to_bf16), kF16 / kBF16 -> kF32 (exact), and kF32 -> kF32 (a copy).
// Device pointers, not overlapping. Returns InvalidArgument for other pairs; never syncs.
Status cast(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, cudaStream_t stream);

}  // namespace ferry::kernels::cuda
