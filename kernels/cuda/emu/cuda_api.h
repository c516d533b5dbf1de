// The CUDA runtime API subset that ferry's kernels, launchers and tests call, implemented over host
// memory for the CUDA emulation build (FERRY_CUDA_EMULATION; docs/cuda.md). Declarations follow the
// real runtime's names and signatures so the same sources compile against either; the shims in
// emu/include/ (cuda_runtime.h, ...) include this file in place of the toolkit's headers.
//
// What "device" means here: one emulated device whose memory is the process's heap (at most
// kEmulatedDeviceMemoryBytes of it, reported by cudaMemGetInfo). cudaMalloc'd
// pointers are ordinary host pointers, streams and events are synchronous (work runs when it is
// enqueued), and a kernel fault the emulator detects (deadlock at a barrier, a shuffle naming an
// exited lane, a bad launch configuration) is reported like a real one: configuration errors by
// cudaGetLastError right after the launch, execution errors as a sticky cudaErrorLaunchFailure
// returned by every later call until cudaDeviceReset. The error text is also on stderr and in
// ferry::simt::last_error_message().
// Thread-safety: calls from different host threads are safe; each host thread runs its own
// launches (kernels run on the calling thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct uint3 {
  unsigned x, y, z;
};

// The toolkit's 16-byte vector type (vector loads in kernels: one float4 per 16-byte aligned access).
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute : int {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

enum cudaDataType_t : int { CUDA_R_16F = 2, CUDA_R_32F = 0, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;

struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;

constexpr unsigned cudaStreamNonBlocking = 1;

const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();

cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
// Page-locked host memory: plain host memory here (nothing to pin; not device memory, so it does not
// count against kEmulatedDeviceMemoryBytes).
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
// Free and total bytes of the emulated device: kEmulatedDeviceMemoryBytes in all, less what
// cudaMalloc holds; a cudaMalloc past it fails with cudaErrorMemoryAllocation, as on a full GPU.
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// `func` is the kernel's address (any function pointer). Only the dynamic shared memory limit is
// modelled: launches asking for more than 48 KiB fail unless raised here (as on the GPU), up to the
// emulated device's 227 KiB (sm_90).
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <typename F>
cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

namespace ferry::simt {

// The emulated device's memory (host heap underneath): 1 GiB, enough for every test, small enough
// that a KV pool sized as a fraction of it stays cheap to allocate and clear on a shared machine.
constexpr size_t kEmulatedDeviceMemoryBytes = size_t{1} << 30;

// The text of the last execution error on this process's emulated device ("" when none).
std::string last_error_message();

// Emulator internals the launch path and the runtime share.
namespace detail {
constexpr size_t kDefaultMaxDynamicSharedBytes = 48 * 1024;
constexpr size_t kDeviceMaxDynamicSharedBytes = 227 * 1024;
size_t max_dynamic_shared_bytes(const void* func);
void set_launch_error(cudaError_t err);                    // cudaGetLastError's next answer
void set_execution_error(const std::string& message);      // sticky cudaErrorLaunchFailure
cudaError_t sticky_error();
bool valid_stream(cudaStream_t stream);
}  // namespace detail

}  // namespace ferry::simt
