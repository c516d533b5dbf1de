// The emulated CUDA runtime (see cuda_api.h): device memory is the heap, every stream operation runs
// when it is enqueued, errors follow CUDA's split into launch errors and sticky execution errors.
#include "kernels/cuda/emu/cuda_api.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <memory>
#include <new>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ferry::simt::detail {
// One recorded operation of a capture (a graph node): what it is, for error messages, and the work.
struct GraphNode {
  std::string what;
  StreamWork work;
};
// A capture in progress on a stream.
struct Capture {
  uint64_t id = 0;  // unique per capture sequence (events remember the capture they were recorded in)
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;  // the thread that began it
  bool invalidated = false;
  std::vector<GraphNode> nodes;
};
}  // namespace ferry::simt::detail

struct CUstream_st {
  unsigned flags = 0;
  std::unique_ptr<ferry::simt::detail::Capture> capture;  // guarded by the device's mu; null when not capturing
};
struct CUevent_st {
  std::chrono::steady_clock::time_point when{};
  bool recorded = false;
  uint64_t capture_id = 0;  // guarded by the device's mu: the capture of its last record, 0 outside one
};
struct CUgraph_st {
  std::vector<ferry::simt::detail::GraphNode> nodes;
};
struct CUgraphExec_st {
  std::vector<ferry::simt::detail::GraphNode> nodes;
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
  std::unordered_set<cudaGraph_t> graphs;            // guarded by mu
  std::unordered_set<cudaGraphExec_t> graph_execs;   // guarded by mu
  uint64_t next_capture_id = 1;                      // guarded by mu
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

// Whether a "potentially unsafe" call (cudaThreadExchangeStreamCaptureMode's term) from this thread
// is prohibited by a capture in progress: one this thread began in a mode other than Relaxed, or a
// Global one of another thread (this thread's own interaction mode being Global, the default).
// Invalidates the captures that prohibit it, as the runtime does. Requires d.mu held.
bool prohibited_by_capture(Device& d) {
  const std::thread::id self = std::this_thread::get_id();
  bool prohibited = false;
  for (cudaStream_t s : d.streams) {
    Capture* c = s->capture.get();
    if (c == nullptr) continue;
    const bool own = c->thread == self;
    if ((own && c->mode != cudaStreamCaptureModeRelaxed) || (!own && c->mode == cudaStreamCaptureModeGlobal)) {
      c->invalidated = true;
      prohibited = true;
    }
  }
  return prohibited;
}

// Fails a potentially unsafe call (cudaMalloc, synchronous copies, device synchronization, ...) while
// a capture prohibits it.
cudaError_t check_unsafe_call() {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  return prohibited_by_capture(d) ? fail(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

}  // namespace

bool capturing(cudaStream_t stream) {
  if (stream == nullptr) return false;
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.streams.count(stream) != 0 && stream->capture != nullptr;
}

cudaError_t record_work(cudaStream_t stream, const char* what, StreamWork work) {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (stream == nullptr || d.streams.count(stream) == 0 || stream->capture == nullptr) return cudaErrorIllegalState;
  if (stream->capture->invalidated) return cudaErrorStreamCaptureInvalidated;
  stream->capture->nodes.push_back(GraphNode{what, std::move(work)});
  return cudaSuccess;
}

void invalidate_capture(cudaStream_t stream) {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (stream != nullptr && d.streams.count(stream) != 0 && stream->capture != nullptr) stream->capture->invalidated = true;
}

cudaError_t check_enqueue(cudaStream_t stream) {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (stream != nullptr) return d.streams.count(stream) != 0 ? cudaSuccess : cudaErrorInvalidResourceHandle;
  // The legacy stream synchronizes with every blocking stream: with one of them capturing, that
  // implicit dependency cannot be captured.
  bool implicit = false;
  for (cudaStream_t s : d.streams) {
    if (s->capture != nullptr && (s->flags & cudaStreamNonBlocking) == 0) {
      s->capture->invalidated = true;
      implicit = true;
    }
  }
  return implicit ? cudaErrorStreamCaptureImplicit : cudaSuccess;
}

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

using ferry::simt::detail::Capture;
using ferry::simt::detail::check_enqueue;
using ferry::simt::detail::check_unsafe_call;
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
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
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
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "the capture was not initiated in this stream";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
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
  return check_unsafe_call();
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
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
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
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
  *ptr = bytes == 0 ? nullptr : ::operator new(bytes, std::align_val_t{ferry::simt::detail::kAlignment}, std::nothrow);
  return bytes != 0 && *ptr == nullptr ? fail(cudaErrorMemoryAllocation) : cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
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
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
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

namespace {

cudaError_t check_memcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (dst == nullptr || src == nullptr || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidValue);
  if (!ferry::simt::detail::known_allocation_range(dst, bytes) ||
      !ferry::simt::detail::known_allocation_range(src, bytes))
    return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

// A zero-byte operation: only the stream is checked.
cudaError_t enqueue_nothing(cudaStream_t stream) {
  const cudaError_t e = check_enqueue(stream);
  return e == cudaSuccess ? e : fail(e);
}

// Runs `work` on `stream` now, or records it when the stream captures. The caller has checked the
// arguments; this checks the stream.
cudaError_t enqueue(cudaStream_t stream, const char* what, ferry::simt::detail::StreamWork work) {
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  if (ferry::simt::detail::capturing(stream)) {
    const cudaError_t e = ferry::simt::detail::record_work(stream, what, std::move(work));
    return e == cudaSuccess ? e : fail(e);
  }
  work(stream);
  return cudaSuccess;
}

}  // namespace

// The synchronous copy and memset run on the legacy stream.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
  if (const cudaError_t e = enqueue_nothing(nullptr); e != cudaSuccess) return e;
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_memcpy(dst, src, bytes, kind); e != cudaSuccess) return e;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (bytes == 0) return enqueue_nothing(stream);
  if (const cudaError_t e = check_memcpy(dst, src, bytes, kind); e != cudaSuccess) {
    ferry::simt::detail::invalidate_capture(stream);
    return e;
  }
  return enqueue(stream, "cudaMemcpyAsync", [dst, src, bytes](cudaStream_t) {
    if (sticky_error() == cudaSuccess) std::memmove(dst, src, bytes);
  });
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (width == 0 || height == 0) return enqueue_nothing(stream);
  // Each side from its first row's start to its last row's end within one allocation.
  if (dst == nullptr || src == nullptr || dpitch < width || spitch < width || kind < cudaMemcpyHostToHost ||
      kind > cudaMemcpyDefault || !ferry::simt::detail::known_allocation_range(dst, (height - 1) * dpitch + width) ||
      !ferry::simt::detail::known_allocation_range(src, (height - 1) * spitch + width)) {
    ferry::simt::detail::invalidate_capture(stream);
    return fail(cudaErrorInvalidValue);
  }
  return enqueue(stream, "cudaMemcpy2DAsync", [dst, dpitch, src, spitch, width, height](cudaStream_t) {
    if (sticky_error() != cudaSuccess) return;
    for (size_t i = 0; i < height; ++i)
      std::memmove(static_cast<char*>(dst) + i * dpitch, static_cast<const char*>(src) + i * spitch, width);
  });
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (const cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
  if (const cudaError_t e = enqueue_nothing(nullptr); e != cudaSuccess) return e;
  if (bytes == 0) return cudaSuccess;
  if (ptr == nullptr || !ferry::simt::detail::known_allocation_range(ptr, bytes)) return fail(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (bytes == 0) return enqueue_nothing(stream);
  if (ptr == nullptr || !ferry::simt::detail::known_allocation_range(ptr, bytes)) {
    ferry::simt::detail::invalidate_capture(stream);
    return fail(cudaErrorInvalidValue);
  }
  return enqueue(stream, "cudaMemsetAsync", [ptr, value, bytes](cudaStream_t) {
    if (sticky_error() == cudaSuccess) std::memset(ptr, value, bytes);
  });
}

namespace ferry::simt {
cudaError_t enqueue_host_work(cudaStream_t stream, const char* what, std::function<void()> work) {
  FERRY_SIMT_RETURN_IF_STICKY();
  return ::enqueue(stream, what, [work = std::move(work)](cudaStream_t) {
    if (sticky_error() == cudaSuccess) work();
  });
}
}  // namespace ferry::simt

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  *stream = new CUstream_st{flags, nullptr};
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (stream == nullptr || d.streams.count(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
    // A capturing stream cannot be destroyed (the capture would be lost half-way).
    if (stream->capture != nullptr) {
      stream->capture->invalidated = true;
      return fail(cudaErrorStreamCaptureUnsupported);
    }
    d.streams.erase(stream);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  FERRY_SIMT_RETURN_IF_STICKY();
  if (ferry::simt::detail::capturing(stream)) {  // never legal: nothing of a capture runs until replay
    ferry::simt::detail::invalidate_capture(stream);
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (stream != nullptr && stream->capture != nullptr) {
    // Within one capture the nodes run in order: a wait on an event of the same capture is a no-op.
    // Anything else would join uncaptured work (or another stream's capture: not emulated).
    if (stream->capture->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    if (event->capture_id != stream->capture->id) {
      stream->capture->invalidated = true;
      return fail(cudaErrorStreamCaptureIsolation);
    }
  }
  return cudaSuccess;  // everything enqueued before the event has already run
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) return fail(cudaErrorInvalidValue);
  FERRY_SIMT_RETURN_IF_STICKY();
  if (stream == nullptr) return fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (d.streams.count(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
  if (stream->capture != nullptr) return fail(cudaErrorIllegalState);
  stream->capture = std::make_unique<Capture>();
  stream->capture->id = d.next_capture_id++;
  stream->capture->mode = mode;
  stream->capture->thread = std::this_thread::get_id();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue);
  *graph = nullptr;
  auto& d = device();
  std::unique_ptr<Capture> capture;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (stream == nullptr || d.streams.count(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
    if (stream->capture == nullptr) return fail(cudaErrorIllegalState);
    if (stream->capture->mode != cudaStreamCaptureModeRelaxed && stream->capture->thread != std::this_thread::get_id())
      return fail(cudaErrorStreamCaptureWrongThread);
    capture = std::move(stream->capture);  // the stream leaves capture mode whatever the outcome
    if (capture->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    *graph = new CUgraph_st{std::move(capture->nodes)};
    d.graphs.insert(*graph);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return fail(cudaErrorInvalidValue);
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  *status = stream == nullptr || stream->capture == nullptr ? cudaStreamCaptureStatusNone
            : stream->capture->invalidated                  ? cudaStreamCaptureStatusInvalidated
                                                            : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  if (exec == nullptr || flags != 0) return fail(cudaErrorInvalidValue);  // no instantiate flags are emulated
  *exec = nullptr;
  FERRY_SIMT_RETURN_IF_STICKY();
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (graph == nullptr || d.graphs.count(graph) == 0) return fail(cudaErrorInvalidResourceHandle);
  *exec = new CUgraphExec_st{graph->nodes};  // a snapshot: the graph may be destroyed
  d.graph_execs.insert(*exec);
  return cudaSuccess;
}

// Runs the nodes in capture order on `stream`, each to completion (streams are synchronous here). A
// node whose kernel faults leaves the sticky error, which stops the rest and is returned.
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  FERRY_SIMT_RETURN_IF_STICKY();
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (exec == nullptr || d.graph_execs.count(exec) == 0) return fail(cudaErrorInvalidResourceHandle);
    if (stream != nullptr && stream->capture != nullptr) {  // a child graph node on the GPU: not emulated
      stream->capture->invalidated = true;
      return fail(cudaErrorStreamCaptureUnsupported);
    }
  }
  for (const ferry::simt::detail::GraphNode& node : exec->nodes) {
    node.work(stream);
    if (const cudaError_t e = sticky_error(); e != cudaSuccess) return fail(e);
  }
  return cudaSuccess;
}

namespace {

// Forgets and deletes a handle of the device's `set`; cudaErrorInvalidResourceHandle for any other.
template <typename T>
cudaError_t destroy_handle(std::unordered_set<T*> ferry::simt::detail::Device::*set, T* handle) {
  auto& d = device();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (handle == nullptr || (d.*set).erase(handle) == 0) return fail(cudaErrorInvalidResourceHandle);
  }
  delete handle;
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  return destroy_handle(&ferry::simt::detail::Device::graph_execs, exec);
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) { return destroy_handle(&ferry::simt::detail::Device::graphs, graph); }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st();
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  d.events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) { return destroy_handle(&ferry::simt::detail::Device::events, event); }

// In a capture the record is a node: the event becomes a captured event (it can be waited on by
// the same capture; synchronizing on it fails) and its time is taken at each replay.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return fail(e);
  auto& d = device();
  std::unique_lock<std::mutex> lock(d.mu);
  if (stream != nullptr && stream->capture != nullptr) {
    if (stream->capture->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    event->capture_id = stream->capture->id;
    stream->capture->nodes.push_back({"cudaEventRecord", [event](cudaStream_t) {
                                        event->when = std::chrono::steady_clock::now();
                                        event->recorded = true;
                                      }});
    return cudaSuccess;
  }
  event->capture_id = 0;
  lock.unlock();
  event->when = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  FERRY_SIMT_RETURN_IF_STICKY();
  auto& d = device();
  std::lock_guard<std::mutex> lock(d.mu);
  if (event->capture_id != 0) {  // last recorded in a capture: there is nothing to wait for
    for (cudaStream_t s : d.streams)
      if (s->capture != nullptr && s->capture->id == event->capture_id) s->capture->invalidated = true;
    return fail(cudaErrorCapturedEvent);
  }
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
