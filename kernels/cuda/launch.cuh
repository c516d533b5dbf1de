// The one way kernels/cuda launches a kernel: launch_kernel(kernel, grid, block, shared_bytes,
// stream, args...) is kernel<<<grid, block, shared_bytes, stream>>>(args...) under nvcc, and a run
// on the SIMT emulator (kernels/cuda/emu/simt.h) in the CUDA emulation build
// (FERRY_CUDA_EMULATION), so the same .cu sources build both ways. Follow it with
// FERRY_CUDA_CHECK_LAUNCH as any launch. FERRY_DYNAMIC_SHARED(T, name) declares the block's
// dynamic shared memory as `T* name` (extern __shared__ T name[] under nvcc).
// Internal to kernels/cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#if defined(FERRY_CUDA_EMULATION)
#include "kernels/cuda/emu/simt.h"
#define FERRY_DYNAMIC_SHARED(T, name) T* name = ::ferry::simt::dynamic_shared<T>()
#else
#define FERRY_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace ferry::kernels::cuda::detail {

template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
#if defined(FERRY_CUDA_EMULATION)
  ::ferry::simt::launch(kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#endif
}

}  // namespace ferry::kernels::cuda::detail
