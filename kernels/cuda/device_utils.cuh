// Device-side helpers shared by the kernels in kernels/cuda: warp and block reductions and element
// loads from the weight dtypes of kernels.h. Internal to kernels/cuda; no launchers here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::kernels::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;

// Combining operations for the reductions below.
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxFloatOp {  // NaN never wins
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return b < a ? b : a; }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? b : a; }
};

// Reduction over the warp in a fixed butterfly order (the same inputs give the same bits); every
// lane gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, SumOp{}); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, MaxFloatOp{}); }

// Reduction over the block in a fixed order; every thread gets the result. blockDim.x must be a
// multiple of 32. `scratch` is 32 T of shared memory, reusable right after the call returns.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, num_warps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // an earlier call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_reduce(lane < num_warps ? scratch[lane] : identity, op);
}

__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_reduce(v, SumOp{}, 0.0f, scratch); }
__device__ __forceinline__ float block_max(float v, float* scratch) {
  return block_reduce(v, MaxFloatOp{}, -INFINITY, scratch);
}

// Element loads as fp32 for the table/weight element types (kernels.h DType).
__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

}  // namespace ferry::kernels::cuda::detail
