// The emulated CUDA runtime (see cuda_api.h): device memory is the heap, every stream operation runs
// when it is enqueued, errors follow CUDA's split into launch errors and sticky execution errors.
#include "kernels/cuda/emu/cuda_api.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>

struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point when{};
  bool recorded = false;
};

namespace ferry::simt::detail {
namespace {

// Allocation alignment: cudaMalloc guarantees at least 256 bytes.
constexpr size_t kAlignment = 256;

struct Device {
  std::mutex mu;
  std::unordered_map<void*, size_t> allocations;    // guarded by mu
  size_t allocated_bytes = 0;                        // guarded by mu: the sum over allocations
  std::unordered_set<cudaStream_t> streams;          // guarded by mu
  std::unordered_set<cudaEvent_t> events;            // guarded by mu
  std::unordered_map<const void*, size_t> max_shared;  // guarded by mu; per kernel address
  cudaError_t sticky = cudaSuccess;                  // guarded by mu
  std::string sticky_message;                        // guarded by mu
};

Device& device() {
  static Device* d = new Device();  // never destroyed: buffers may be freed during static destruction
  return *d;
}

thread_local cudaError_t g_last_error = cudaSuccess;

cudaError_t fail(cudaError_t err) {
  g_last_error = err;
  return err;
}

// Every runtime call first reports a sticky execution error, as the real runtime does.
#define FERRY_SIMT_RETURN_IF_STICKY()                  \
  do {                                                 \
    if (const cudaError_t e = sticky_error(); e != cudaSuccess) return fail(e); \
  } while (0)

bool known_allocation_range(const void* p, size_t bytes) {
  // Host pointers are valid "device" pointers here (both live in the one address space); only
  // ranges that start inside a cudaMalloc'd block are checked against its end.
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  const auto* c = static_cast<const char*>(p);
  for (const auto& [base, size] : d.allocations) {
    const auto* b = static_cast<const char*>(base);
    if (c >= b && c < b + size) return c + bytes <= b + size;
  }
  return true;
}

}  // namespace

cudaError_t sticky_error() {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.sticky;
}

void set_launch_error(cudaError_t err) { g_last_error = err; }

void set_execution_error(const std::string& message) {
  std::fprintf(stderr, "ferry simt: execution error: %s\n", message.c_str());
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (d.sticky == cudaSuccess) {
    d.sticky = cudaErrorLaunchFailure;
    d.sticky_message = message;
  }
}

bool valid_stream(cudaStream_t stream) {
  if (stream == nullptr) return true;
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.streams.count(stream) != 0;
}

size_t max_dynamic_shared_bytes(const void* func) {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  const auto it = d.max_shared.find(func);
  return it == d.max_shared.end() ? kDefaultMaxDynamicSharedBytes : it->second;
}

}  // namespace ferry::simt::detail

namespace ferry::simt {
std::string last_error_message() {
  detail::Device& d = detail::device();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.sticky_message;
}
}  // namespace ferry::simt

using ferry::simt::detail::device;
using ferry::simt::detail::fail;
using ferry::simt::detail::g_last_error;
using ferry::simt::detail::sticky_error;

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) return e;
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) return e;
  return g_last_error;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : fail(cudaErrorInvalidValue); }

cudaError_t cudaGetDevice(int* dev) {
  if (dev == nullptr) return fail(cudaErrorInvalidValue);
  *dev = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  FERRY_SIMT_RETURN_IF_STICKY();
  return cudaSuccess;
}

// Clears the sticky error (memory stays allocated, unlike on the GPU: tests keep their buffers).
cudaError_t cudaDeviceReset() {
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.sticky = cudaSuccess;
  d.sticky_message.clear();
  g_last_error = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (bytes > ferry::simt::kEmulatedDeviceMemoryBytes - d.allocated_bytes) return fail(cudaErrorMemoryAllocation);
  void* p = ::operator new(bytes, std::align_val_t{ferry::simt::detail::kAlignment}, std::nothrow);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  d.allocations.emplace(p, bytes);
  d.allocated_bytes += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  *ptr = bytes == 0 ? nullptr : ::operator new(bytes, std::align_val_t{ferry::simt::detail::kAlignment}, std::nothrow);
  return bytes != 0 && *ptr == nullptr ? fail(cudaErrorMemoryAllocation) : cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr != nullptr) ::operator delete(ptr, std::align_val_t{ferry::simt::detail::kAlignment});
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  *total_bytes = ferry::simt::kEmulatedDeviceMemoryBytes;
  *free_bytes = ferry::simt::kEmulatedDeviceMemoryBytes - d.allocated_bytes;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    auto it = d.allocations.find(ptr);
    if (it == d.allocations.end()) return fail(cudaErrorInvalidDevicePointer);
    d.allocated_bytes -= it->second;
    d.allocations.erase(it);
  }
  ::operator delete(ptr, std::align_val_t{ferry::simt::detail::kAlignment});
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidValue);
  if (!ferry::simt::detail::known_allocation_range(dst, bytes) ||
      !ferry::simt::detail::known_allocation_range(src, bytes))
    return fail(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!ferry::simt::detail::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (bytes == 0) return cudaSuccess;
  if (ptr == nullptr || !ferry::simt::detail::known_allocation_range(ptr, bytes)) return fail(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (!ferry::simt::detail::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  *stream = new CUstream_st{flags};
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (stream == nullptr || d.streams.erase(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (!ferry::simt::detail::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  FERRY_SIMT_RETURN_IF_STICKY();
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!ferry::simt::detail::valid_stream(stream) || event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;  // everything enqueued before the event has already run
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st();
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (event == nullptr || d.events.erase(event) == 0) return fail(cudaErrorInvalidResourceHandle);
  }
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr || !ferry::simt::detail::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  event->when = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  FERRY_SIMT_RETURN_IF_STICKY();
  return cudaSuccess;
}

// Host time between the two records: the emulator's speed, nothing about a GPU's.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr) return fail(cudaErrorInvalidValue);
  if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return fail(cudaErrorInvalidValue);
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return fail(cudaErrorInvalidValue);
  if (value < 0 || static_cast<size_t>(value) > ferry::simt::detail::kDeviceMaxDynamicSharedBytes)
    return fail(cudaErrorInvalidValue);
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.max_shared[func] = static_cast<size_t>(value);
  return cudaSuccess;
}
