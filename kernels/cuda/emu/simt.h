// ferry's SIMT emulator: the device side of CUDA (qualifiers, threadIdx & co, __syncthreads,
// __shared__, warp shuffles and votes, atomics, the math intrinsics the kernels call) and the
// kernel launch, so that kernels/cuda/*.cu compile as C++ and run on the host in the CUDA
// emulation build (FERRY_CUDA_EMULATION; docs/cuda.md says what this checks and what it cannot).
//
// Execution model: one fiber (own stack, cooperative context switch) per CUDA thread; the blocks of
// a grid run one after another on the launching host thread, the threads of a block interleave.
// A thread runs until it reaches a barrier or a warp operation, where it waits for the others, so:
//   - __syncthreads releases only when every live thread of the block arrived, at the same call
//     site (a barrier in divergent code is reported as an error, as is a deadlock);
//   - a shuffle or vote completes only when every lane of its mask posted its value; a mask naming
//     an exited lane, a lane outside the block, or a lane that passes a different mask is an error;
//   - a missing barrier shows up as a wrong result: threads run as far ahead as they can, in an
//     order that changes from block to block (forward, reverse, shuffled), so a reader that is not
//     ordered after its writer by a barrier reads stale or poisoned shared memory.
// Dynamic shared memory is poisoned (0xFF bytes, NaN as floats) at the start of every block.
// Static __shared__ variables are function-local statics of the host thread (blocks run in turn,
// so they are per block in effect) and are not poisoned.
// Not modelled: concurrency between blocks, the memory model (every write is visible at once),
// timing, tensor-core instructions. Thread-safety: launches from different host threads are
// independent (all emulator state is per host thread).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/cuda/emu/cuda_api.h"
#include "kernels/cuda/emu/half.h"

// ---- qualifiers ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

constexpr int warpSize = 32;

namespace ferry::simt::detail {

// Identity of the CUDA thread whose fiber is running (g_current points into the block runner).
struct ThreadIdentity {
  uint3 idx;
  unsigned linear;  // x + y * blockDim.x + z * blockDim.x * blockDim.y
  unsigned lane;    // linear % 32
};

struct BlockState {
  uint3 block_idx{0, 0, 0};
  dim3 block_dim;
  dim3 grid_dim;
  unsigned char* dynamic_shared = nullptr;
};

extern thread_local const ThreadIdentity* g_current;
extern thread_local BlockState g_block;

// Aborts the current block with an execution error (never returns to the kernel).
[[noreturn]] void device_fail(const std::string& what);

// Posts `bits` for this lane's next warp operation over `mask`, waits until every lane of the mask
// has posted for the same operation, and returns the 32 posted values (indexed by lane).
const uint64_t* warp_exchange(unsigned mask, uint64_t bits, const char* op);

void block_barrier(const std::source_location& site);

inline const ThreadIdentity& current() {
  if (g_current == nullptr) device_fail("device code called outside a kernel launch");
  return *g_current;
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t), "shuffle of a wide type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

inline unsigned segment_base(unsigned lane, int width, const char* op) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    device_fail(std::string(op) + ": width " + std::to_string(width) + " is not a power of 2 <= 32");
  return lane & ~static_cast<unsigned>(width - 1);
}

// The value lane `src` posted; reading a lane that is not part of the operation is an error (on the
// GPU the result is undefined).
template <typename T>
T shuffle_from(unsigned mask, T var, unsigned src, const char* op) {
  const unsigned lane = current().lane;
  const uint64_t* values = warp_exchange(mask, to_bits(var), op);
  if (src != lane && (src >= 32 || ((mask >> src) & 1u) == 0))
    device_fail(std::string(op) + ": source lane " + std::to_string(src) + " is not in the mask");
  return from_bits<T>(values[src]);
}

// A kernel launch's body as a plain function pointer and context (no allocation per launch).
using BodyFn = void (*)(void*);
void run_grid(const void* func, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, BodyFn body,
              void* context);
// A launch on a capturing stream: checks it as run_grid would and records `replay` (which runs the
// grid with the arguments it holds) in the capture, or reports the launch error and invalidates it.
void capture_grid(const void* func, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                  StreamWork replay);

}  // namespace ferry::simt::detail

// ---- thread and block coordinates -----------------------------------------------------------------
#define threadIdx (static_cast<const ::uint3&>(::ferry::simt::detail::current().idx))
#define blockIdx (static_cast<const ::uint3&>(::ferry::simt::detail::g_block.block_idx))
#define blockDim (static_cast<const ::dim3&>(::ferry::simt::detail::g_block.block_dim))
#define gridDim (static_cast<const ::dim3&>(::ferry::simt::detail::g_block.grid_dim))

// ---- synchronization and warp operations ----------------------------------------------------------
inline void __syncthreads(const std::source_location& site = std::source_location::current()) {
  ferry::simt::detail::block_barrier(site);
}

inline void __syncwarp(unsigned mask = 0xffffffffu) { ferry::simt::detail::warp_exchange(mask, 0, "__syncwarp"); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  namespace d = ferry::simt::detail;
  const unsigned base = d::segment_base(d::current().lane, width, "__shfl_sync");
  return d::shuffle_from(mask, var, base + (static_cast<unsigned>(src_lane) & (width - 1)),
                         "__shfl_sync");
}

template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  namespace d = ferry::simt::detail;
  const unsigned lane = d::current().lane;
  const unsigned base = d::segment_base(lane, width, "__shfl_up_sync");
  const unsigned src = lane >= base + delta ? lane - delta : lane;  // below the segment: own value
  return d::shuffle_from(mask, var, src, "__shfl_up_sync");
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  namespace d = ferry::simt::detail;
  const unsigned lane = d::current().lane;
  const unsigned base = d::segment_base(lane, width, "__shfl_down_sync");
  const unsigned src = lane + delta < base + static_cast<unsigned>(width) ? lane + delta : lane;
  return d::shuffle_from(mask, var, src, "__shfl_down_sync");
}

// Butterfly: lanes beyond the end of the caller's width-segment give the caller's own value; lower
// segments can be read (PTX shfl.bfly's clamp).
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  namespace d = ferry::simt::detail;
  const unsigned lane = d::current().lane;
  const unsigned base = d::segment_base(lane, width, "__shfl_xor_sync");
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  return d::shuffle_from(mask, var, src < base + static_cast<unsigned>(width) ? src : lane,
                         "__shfl_xor_sync");
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const uint64_t* values = ferry::simt::detail::warp_exchange(mask, predicate != 0, "__ballot_sync");
  unsigned ballot = 0;
  for (unsigned j = 0; j < 32; ++j)
    if (((mask >> j) & 1u) && values[j]) ballot |= 1u << j;
  return ballot;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// ---- atomics (blocks run in turn on one host thread; the builtins keep them honest anyway) ---------
template <typename T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    const T old = *p;
    *p = old + v;
    return old;
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  }
}
template <typename T>
T atomicSub(T* p, T v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED);
}
template <typename T>
T atomicMax(T* p, T v) {
  T old = *p;
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  T old = *p;
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}

// ---- math intrinsics (IEEE fp32 on the host: -std=c++20 does not contract a*b+c into an FMA, so
// __fmul_rn and friends round exactly as written; nvcc does contract plain a*b+c) ---------------------
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }

// CUDA's device min/max overloads for integers and floats.
#define FERRY_SIMT_MINMAX(T)                          \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
FERRY_SIMT_MINMAX(int)
FERRY_SIMT_MINMAX(unsigned)
FERRY_SIMT_MINMAX(long)
FERRY_SIMT_MINMAX(unsigned long)
FERRY_SIMT_MINMAX(long long)
FERRY_SIMT_MINMAX(unsigned long long)
FERRY_SIMT_MINMAX(float)
FERRY_SIMT_MINMAX(double)
#undef FERRY_SIMT_MINMAX

namespace ferry::simt {

// The block's dynamic shared memory (the launch's shared_bytes), as T*.
template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(detail::g_block.dynamic_shared);
}

// Runs kernel<<<grid, block, shared_bytes, stream>>>(args...) to completion before returning, or,
// when `stream` captures, records it with copies of the arguments taken now (cuda_api.h, Graphs).
// Errors go where CUDA puts them (see cuda_api.h). Each CUDA thread gets its own copies of the
// parameters, as on the GPU.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  struct Call {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;
    static void run(void* self) {
      Call* call = static_cast<Call*>(self);
      std::apply(call->kernel, call->params);  // by-value parameters: copies per thread
    }
  };
  Call call{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
  if (detail::capturing(stream)) {
    const void* func = reinterpret_cast<const void*>(kernel);
    detail::capture_grid(func, grid, block, shared_bytes, stream, [call, func, grid, block, shared_bytes](cudaStream_t s) {
      Call frozen = call;  // the arguments as they were at capture
      detail::run_grid(func, grid, block, shared_bytes, s, &Call::run, &frozen);
    });
    return;
  }
  detail::run_grid(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, stream, &Call::run, &call);
}

}  // namespace ferry::simt
