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
#include <functional>
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
  cudaErrorIllegalState = 401,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
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

// Stream capture and graphs (CUDA 12+ signatures). See "Graphs" below.
enum cudaStreamCaptureMode : int {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus : int {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
struct CUgraph_st;
using cudaGraph_t = CUgraph_st*;
struct CUgraphExec_st;
using cudaGraphExec_t = CUgraphExec_st*;

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
// `height` rows of `width` bytes, row i from src + i * spitch to dst + i * dpitch (pitches >= width).
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream = nullptr);
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

// ---- Graphs -------------------------------------------------------------------------------------
// While a stream captures, the work enqueued on it (kernel launches through ferry::simt::launch,
// cudaMemcpyAsync, cudaMemcpy2DAsync, cudaMemsetAsync, cudaEventRecord, the emulated GEMM's host work) is recorded, not
// run: a kernel with its grid, block, dynamic shared bytes and its arguments copied at capture time
// (a replay never sees a later change of a host variable, as on the GPU), a copy or memset with its
// pointers, size and value. cudaGraphLaunch replays the nodes in capture order on its stream; they
// read and write device memory as it is at replay.
// Capture errors follow the runtime: what CUDA forbids while a capture is in progress fails with the
// runtime's code and invalidates the capture (cudaStreamEndCapture then returns
// cudaErrorStreamCaptureInvalidated and no graph; later work on the stream fails the same way):
//   - synchronizing the capturing stream, the device, or an event recorded in a capture
//     (cudaStreamSynchronize, cudaDeviceSynchronize, cudaEventSynchronize: cudaErrorCapturedEvent);
//   - "potentially unsafe" calls (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, synchronous
//     cudaMemcpy and cudaMemset) from the capturing thread (any mode but Relaxed), or from any
//     thread while a Global capture is in progress (every thread's interaction mode is Global here:
//     cudaThreadExchangeStreamCaptureMode is not emulated);
//   - work on the legacy (null) stream while a blocking stream captures (cudaErrorStreamCaptureImplicit);
//   - a capturing stream waiting on an event not recorded in its capture (cudaErrorStreamCaptureIsolation);
//   - ending a capture from another thread than the one that began it, unless Relaxed
//     (cudaErrorStreamCaptureWrongThread), or a stream that is not capturing (cudaErrorIllegalState).
// Not emulated: multi-stream capture (fork / join through events), graph update
// (cudaGraphExecUpdate), child graphs (cudaGraphLaunch on a capturing stream is refused), node APIs.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

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

// Stream work that a capture records. `run` does the work on the stream it is given (the capturing
// one when enqueued outside a capture, the cudaGraphLaunch stream at replay) and reports errors the
// way the operation does (kernels: launch / sticky errors; host work: sticky errors).
using StreamWork = std::function<void(cudaStream_t)>;
// Whether `stream` has a capture in progress (active or invalidated): work on it must go through
// record_work instead of running.
bool capturing(cudaStream_t stream);
// Appends `work` to the capture of `stream`. Returns cudaErrorStreamCaptureInvalidated (and records
// nothing) when that capture was invalidated, cudaErrorIllegalState when the stream does not capture.
cudaError_t record_work(cudaStream_t stream, const char* what, StreamWork work);
// Invalidates the capture of `stream` (an enqueue on it failed, as a failed launch does on the GPU).
void invalidate_capture(cudaStream_t stream);
// Checks that work may be enqueued on `stream` now: cudaErrorInvalidResourceHandle for an unknown
// stream, cudaErrorStreamCaptureImplicit (capture invalidated) for the legacy stream while a blocking
// stream captures.
cudaError_t check_enqueue(cudaStream_t stream);
}  // namespace detail

// Host work ordered on `stream`, as the emulated cuBLASLt GEMM needs it: runs `work` now, or records
// it when the stream captures (a host node run at every replay). The work must capture its inputs by
// value. Returns the error the enqueue met (sticky error, capture errors as above).
cudaError_t enqueue_host_work(cudaStream_t stream, const char* what, std::function<void()> work);

}  // namespace ferry::simt
