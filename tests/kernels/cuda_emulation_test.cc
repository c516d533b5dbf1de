// The SIMT emulator (kernels/cuda/emu) must catch the bugs a GPU test would: each deliberately
// broken kernel here sits beside its correct twin; the correct one must match the host result and the
// broken one must not (or must fail the launch). Plus the emulator's own contract: shuffle and vote
// semantics, barrier rendezvous, launch-configuration errors, sticky execution errors.
// Kernels are launched through kernels/cuda/launch.cuh, the same helper the real kernels use.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/cuda/launch.cuh"

namespace {

using ferry::kernels::cuda::detail::launch_kernel;

constexpr unsigned kFull = 0xffffffffu;

// ---- 1. a missing barrier in a shared-memory tree reduction ---------------------------------------

constexpr int kReduceThreads = 256;

template <bool kBarrierInLoop>
__global__ void tree_sum_kernel(float* out, const float* in) {
  __shared__ float s[kReduceThreads];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * kReduceThreads + t];
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    if constexpr (kBarrierInLoop) __syncthreads();  // the broken twin leaves this out
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Inputs are small integers so that every summation order gives the exact same float.
std::vector<float> small_ints(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<int>((i * 7919) % 13) - 6);
  return v;
}

// Runs kernel over `blocks` blocks of kReduceThreads and returns the per-block sums.
template <typename Kernel>
std::vector<float> run_reduction(Kernel kernel, const std::vector<float>& in, int blocks) {
  float *d_in = nullptr, *d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_in, in.size() * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, blocks * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  launch_kernel(kernel, blocks, kReduceThreads, 0, nullptr, d_out, static_cast<const float*>(d_in));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> out(blocks);
  EXPECT_EQ(cudaMemcpy(out.data(), d_out, blocks * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  return out;
}

TEST(CudaEmulation, MissingBarrierInSharedReductionGivesWrongSums) {
  constexpr int kBlocks = 6;  // every scheduling order (forward, reverse, shuffled) twice
  const std::vector<float> in = small_ints(kBlocks * kReduceThreads);
  std::vector<float> want(kBlocks, 0.0f);
  for (int b = 0; b < kBlocks; ++b)
    for (int t = 0; t < kReduceThreads; ++t) want[b] += in[b * kReduceThreads + t];

  EXPECT_EQ(run_reduction(tree_sum_kernel<true>, in, kBlocks), want);
  const std::vector<float> broken = run_reduction(tree_sum_kernel<false>, in, kBlocks);
  int wrong = 0;
  for (int b = 0; b < kBlocks; ++b) wrong += broken[b] != want[b];
  EXPECT_GT(wrong, 0) << "the reduction without its loop barrier matched the reference in every block";
}

// ---- 2. an off-by-one in a shared tile (a 3-point stencil with a halo) ---------------------------

constexpr int kTile = 64;

// out[i] = in[i - 1] + in[i] + in[i + 1] (zero outside). The tile holds kTile + 2 elements: the
// block's own at [1, kTile] and one halo element on each side. The broken twin loads the right
// halo one slot short (tile[kTile] instead of tile[kTile + 1]), overwriting the last own element
// and leaving the slot the last thread reads unwritten (poisoned dynamic shared memory: NaN).
template <bool kOffByOne>
__global__ void stencil_kernel(float* out, const float* in, int n) {
  FERRY_DYNAMIC_SHARED(float, tile);  // [kTile + 2]
  const int t = threadIdx.x, i = blockIdx.x * kTile + t;
  tile[t + 1] = i < n ? in[i] : 0.0f;
  if (t == 0) tile[0] = i > 0 ? in[i - 1] : 0.0f;
  if (t == kTile - 1) tile[kOffByOne ? kTile : kTile + 1] = i + 1 < n ? in[i + 1] : 0.0f;
  __syncthreads();
  if (i < n) out[i] = tile[t] + tile[t + 1] + tile[t + 2];
}

template <typename Kernel>
std::vector<float> run_stencil(Kernel kernel, const std::vector<float>& in) {
  const int n = static_cast<int>(in.size()), blocks = (n + kTile - 1) / kTile;
  float *d_in = nullptr, *d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_in, n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_in, in.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  launch_kernel(kernel, blocks, kTile, (kTile + 2) * sizeof(float), nullptr, d_out, static_cast<const float*>(d_in),
                n);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  return out;
}

TEST(CudaEmulation, OffByOneInSharedTileGivesWrongResults) {
  const std::vector<float> in = small_ints(301);  // odd: the last block is partial
  std::vector<float> want(in.size());
  for (size_t i = 0; i < in.size(); ++i)
    want[i] = (i > 0 ? in[i - 1] : 0.0f) + in[i] + (i + 1 < in.size() ? in[i + 1] : 0.0f);
  EXPECT_EQ(run_stencil(stencil_kernel<false>, in), want);
  const std::vector<float> broken = run_stencil(stencil_kernel<true>, in);
  int wrong = 0;
  for (size_t i = 0; i < in.size(); ++i) wrong += !(broken[i] == want[i]);  // NaN counts as wrong
  EXPECT_GE(wrong, 4) << "the off-by-one halo went unnoticed";
}

// ---- 3. a warp reduction with the wrong shuffle width ----------------------------------------------

template <int kWidth>
__global__ void warp_sum_kernel(float* out, const float* in) {
  float v = in[blockIdx.x * 32 + threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFull, v, offset, kWidth);
  out[blockIdx.x * 32 + threadIdx.x] = v;  // every lane's view of the warp total
}

template <typename Kernel>
std::vector<float> run_warp_sum(Kernel kernel, const std::vector<float>& in) {
  const int warps = static_cast<int>(in.size() / 32);
  float *d_in = nullptr, *d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_in, in.size() * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, in.size() * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  launch_kernel(kernel, warps, 32, 0, nullptr, d_out, static_cast<const float*>(d_in));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> out(in.size());
  EXPECT_EQ(cudaMemcpy(out.data(), d_out, in.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  return out;
}

TEST(CudaEmulation, ShuffleWithWrongWidthGivesWrongSums) {
  const std::vector<float> in = small_ints(3 * 32);
  std::vector<float> want(in.size());
  for (size_t w = 0; w < 3; ++w) {
    const float total = std::accumulate(in.begin() + w * 32, in.begin() + w * 32 + 32, 0.0f);
    std::fill(want.begin() + w * 32, want.begin() + w * 32 + 32, total);
  }
  EXPECT_EQ(run_warp_sum(warp_sum_kernel<32>, in), want);
  EXPECT_NE(run_warp_sum(warp_sum_kernel<16>, in), want);  // each half-warp sums only itself
}

// ---- the emulator's own contract ---------------------------------------------------------------------

// Each thread reads its neighbour's slot after the barrier: right only if every thread's write
// happened before any thread's read, i.e. the threads really interleave at __syncthreads.
__global__ void neighbour_kernel(int* out) {
  __shared__ int s[96];
  const unsigned t = threadIdx.x + threadIdx.y * blockDim.x;  // a 2-D block: 32 x 3
  s[t] = static_cast<int>(t * 10 + blockIdx.x);
  __syncthreads();
  out[blockIdx.x * 96 + t] = s[(t + 1) % 96];
}

TEST(CudaEmulation, BarrierOrdersEveryWriteBeforeEveryRead) {
  int* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_out, 4 * 96 * sizeof(int)), cudaSuccess);
  launch_kernel(neighbour_kernel, 4, dim3(32, 3), 0, nullptr, d_out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> out(4 * 96);
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < 4; ++b)
    for (int t = 0; t < 96; ++t) ASSERT_EQ(out[b * 96 + t], ((t + 1) % 96) * 10 + b) << b << " " << t;
  cudaFree(d_out);
}

// Per lane: shfl (broadcast within 8-lane segments), up and down by 3 (width 16), xor 5 (width 8),
// ballot of odd lanes, and an atomicAdd of every thread of every block.
__global__ void warp_ops_kernel(int* out, int* counter) {
  const int lane = threadIdx.x, v = 100 + lane;
  int* row = out + (blockIdx.x * 32 + lane) * 5;
  row[0] = __shfl_sync(kFull, v, 2, 8);
  row[1] = __shfl_up_sync(kFull, v, 3, 16);
  row[2] = __shfl_down_sync(kFull, v, 3, 16);
  row[3] = __shfl_xor_sync(kFull, v, 5, 8);
  row[4] = static_cast<int>(__ballot_sync(kFull, lane & 1));
  atomicAdd(counter, 1);
}

TEST(CudaEmulation, ShuffleAndVoteSemantics) {
  int *d_out = nullptr, *d_counter = nullptr;
  ASSERT_EQ(cudaMalloc(&d_out, 2 * 32 * 5 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_counter, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_counter, 0, sizeof(int)), cudaSuccess);
  launch_kernel(warp_ops_kernel, 2, 32, 0, nullptr, d_out, d_counter);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> out(2 * 32 * 5);
  int counter = 0;
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&counter, d_counter, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(counter, 64);
  for (int b = 0; b < 2; ++b) {
    for (int lane = 0; lane < 32; ++lane) {
      const int* row = &out[(b * 32 + lane) * 5];
      const int seg16 = lane & ~15;
      EXPECT_EQ(row[0], 100 + (lane & ~7) + 2) << lane;
      EXPECT_EQ(row[1], 100 + (lane - 3 >= seg16 ? lane - 3 : lane)) << lane;
      EXPECT_EQ(row[2], 100 + (lane + 3 < seg16 + 16 ? lane + 3 : lane)) << lane;
      EXPECT_EQ(row[3], 100 + (lane ^ 5)) << lane;  // xor 5 stays inside an 8-lane segment
      EXPECT_EQ(static_cast<unsigned>(row[4]), 0xaaaaaaaau) << lane;
    }
  }
  cudaFree(d_out);
  cudaFree(d_counter);
}

// Threads that exit early do not hold a barrier up (as on the GPU).
__global__ void early_exit_kernel(int* out) {
  __shared__ int s[64];
  if (threadIdx.x >= 40) return;
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[39 - threadIdx.x];
}

TEST(CudaEmulation, ExitedThreadsDoNotBlockABarrier) {
  int* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_out, 40 * sizeof(int)), cudaSuccess);
  launch_kernel(early_exit_kernel, 1, 64, 0, nullptr, d_out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> out(40);
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, 40 * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int t = 0; t < 40; ++t) EXPECT_EQ(out[t], 39 - t);
  cudaFree(d_out);
}

// Execution errors are sticky (every later call fails) until cudaDeviceReset, like a GPU fault.
void expect_execution_error(const char* needle) {
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  EXPECT_NE(ferry::simt::last_error_message().find(needle), std::string::npos) << ferry::simt::last_error_message();
  EXPECT_EQ(cudaDeviceReset(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void exited_lane_shuffle_kernel(float* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = __shfl_xor_sync(kFull, 1.0f, 1);
}

__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x == 0) __syncthreads();
  float v = __shfl_xor_sync(kFull, 1.0f, 1);  // lane 0 never gets here before the others pass a barrier
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = v;
}

TEST(CudaEmulation, ReportsDivergentBarriersBadShufflesAndDeadlocks) {
  float* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_out, 64 * sizeof(float)), cudaSuccess);
  launch_kernel(divergent_barrier_kernel, 1, 32, 0, nullptr);
  expect_execution_error("divergent");
  launch_kernel(exited_lane_shuffle_kernel, 1, 32, 0, nullptr, d_out);
  expect_execution_error("exited");
  launch_kernel(deadlock_kernel, 1, 32, 0, nullptr, d_out);
  expect_execution_error("deadlock");
  cudaFree(d_out);
}

__global__ void empty_kernel() {}

TEST(CudaEmulation, LaunchConfigurationErrors) {
  launch_kernel(empty_kernel, 1, 1025, 0, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  launch_kernel(empty_kernel, dim3(1, 70000), 32, 0, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  // More than 48 KiB of dynamic shared memory needs the opt-in, as on the GPU.
  launch_kernel(empty_kernel, 1, 32, 64 * 1024, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
  launch_kernel(empty_kernel, 1, 32, 64 * 1024, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // reading the error clears it
}

// The emulated device has kEmulatedDeviceMemoryBytes: cudaMemGetInfo reports what cudaMalloc holds,
// an allocation past the free memory fails (not sticky) and leaves everything as it was.
TEST(CudaEmulation, DeviceMemoryIsFiniteAndReported) {
  size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  EXPECT_EQ(total, ferry::simt::kEmulatedDeviceMemoryBytes);
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, size_t{3} << 20), cudaSuccess);
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, size_t{3} << 20);
  void* too_big = nullptr;
  EXPECT_EQ(cudaMalloc(&too_big, free1 + 1), cudaErrorMemoryAllocation);
  EXPECT_EQ(too_big, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not sticky
  ASSERT_EQ(cudaFree(p), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free1, free0);
}

// ---- graphs: stream capture and replay (cuda_api.h, Graphs) ----------------------------------------

__global__ void scale_add_kernel(float* out, const float* in, float a, float b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * in[i] + b;
}

constexpr int kGraphN = 40;

// Device buffers and a stream for the graph tests; the stream captures nothing when a test ends.
class CudaGraphEmulation : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&in_, kGraphN * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&out_, kGraphN * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemset(out_, 0, kGraphN * sizeof(float)), cudaSuccess);
    upload(1.0f);
  }
  void TearDown() override {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    EXPECT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusNone);
    cudaFree(in_);
    cudaFree(out_);
    EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
    (void)cudaGetLastError();
  }
  // in[i] = i * step.
  void upload(float step) {
    std::vector<float> host(kGraphN);
    for (int i = 0; i < kGraphN; ++i) host[i] = static_cast<float>(i) * step;
    ASSERT_EQ(cudaMemcpy(in_, host.data(), sizeof(float) * kGraphN, cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() {
    std::vector<float> host(kGraphN);
    EXPECT_EQ(cudaMemcpy(host.data(), out_, sizeof(float) * kGraphN, cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  void launch_scale_add(float a, float b, cudaStream_t stream) {
    launch_kernel(scale_add_kernel, 2, 32, 0, stream, out_, static_cast<const float*>(in_), a, b, kGraphN);
  }
  // Ends the capture that an illegal call should have invalidated and checks that it gave no graph.
  void expect_invalidated_capture() {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    EXPECT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusInvalidated);
    launch_scale_add(1.0f, 0.0f, stream_);  // work on an invalidated capture fails too
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(this);
    EXPECT_EQ(cudaStreamEndCapture(stream_, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    (void)cudaGetLastError();
  }

  cudaStream_t scratch_stream() {
    if (scratch_ == nullptr) {
      EXPECT_EQ(cudaStreamCreate(&scratch_), cudaSuccess);
    }
    return scratch_;
  }

  cudaStream_t stream_ = nullptr;
  cudaStream_t scratch_ = nullptr;  // a second stream, created on demand
  float* in_ = nullptr;
  float* out_ = nullptr;
};

// A captured launch does not run; each replay runs it with the arguments of the capture (a later
// change of the host variable passed is not seen) on the device memory of the replay.
TEST_F(CudaGraphEmulation, ReplayRunsFrozenArgumentsOnCurrentMemory) {
  float a = 2.0f;
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  ASSERT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  launch_scale_add(a, 1.0f, stream_);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  EXPECT_EQ(out_[5], 0.0f) << "a captured launch must not run";  // host memory underneath: readable
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphDestroy(graph), cudaSuccess);  // the executable graph is a snapshot

  a = 100.0f;  // after capture: no effect
  for (float step : {1.0f, 3.0f, -0.5f}) {
    upload(step);
    ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const std::vector<float> out = download();
    for (int i = 0; i < kGraphN; ++i) ASSERT_EQ(out[i], 2.0f * static_cast<float>(i) * step + 1.0f) << i;
  }
  ASSERT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
}

// Copies and memsets are nodes too: they keep their pointers and sizes and move the bytes that are
// there at replay (a host-to-device copy from a pinned staging buffer, as the engine's metadata).
TEST_F(CudaGraphEmulation, CopiesAndMemsetsReplayInOrder) {
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(float) * kGraphN), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(out_, 0xFF, sizeof(float) * kGraphN, stream_), cudaSuccess);  // NaNs, overwritten next
  ASSERT_EQ(cudaMemcpyAsync(in_, pinned, sizeof(float) * kGraphN, cudaMemcpyHostToDevice, stream_), cudaSuccess);
  launch_scale_add(1.0f, 0.5f, stream_);
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 3; ++replay) {
    for (int i = 0; i < kGraphN; ++i) pinned[i] = static_cast<float>(i * (replay + 1));
    ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const std::vector<float> out = download();
    for (int i = 0; i < kGraphN; ++i) ASSERT_EQ(out[i], static_cast<float>(i * (replay + 1)) + 0.5f) << i;
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

// A 2-D copy moves `height` rows of `width` bytes between pitches, now or at each replay; a row past
// the end of an allocation is refused.
TEST_F(CudaGraphEmulation, Copy2DMovesRowsBetweenPitches) {
  std::vector<float> host = {1, 2, 3, 4, 5, 6};  // 3 rows of 2 floats
  const size_t width = 2 * sizeof(float), dpitch = 5 * sizeof(float);
  ASSERT_EQ(cudaMemcpy2DAsync(out_, dpitch, host.data(), width, width, 3, cudaMemcpyHostToDevice, stream_), cudaSuccess);
  const std::vector<float> out = download();
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 12),
            (std::vector<float>{1, 2, 0, 0, 0, 3, 4, 0, 0, 0, 5, 6}));
  EXPECT_EQ(cudaMemcpy2DAsync(out_, 20 * sizeof(float), host.data(), width, width, 3, cudaMemcpyHostToDevice, stream_),
            cudaErrorInvalidValue);  // the third row would end at float 42 of 40
  EXPECT_EQ(cudaMemcpy2DAsync(out_, sizeof(float), host.data(), width, width, 3, cudaMemcpyHostToDevice, stream_),
            cudaErrorInvalidValue);  // a pitch narrower than a row
  (void)cudaGetLastError();

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaMemcpy2DAsync(out_ + 1, dpitch, host.data(), width, width, 3, cudaMemcpyHostToDevice, stream_),
            cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  EXPECT_EQ(download()[11], 6.0f) << "a captured copy must not run";
  host = {7, 8, 9, 10, 11, 12};
  ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
  const std::vector<float> replayed = download();
  EXPECT_EQ(std::vector<float>(replayed.begin(), replayed.begin() + 13),
            (std::vector<float>{1, 7, 8, 0, 0, 3, 9, 10, 0, 0, 5, 11, 12}));
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

// What CUDA forbids during a capture fails with the runtime's error and invalidates the capture.
TEST_F(CudaGraphEmulation, IllegalCallsDuringCaptureFailIt) {
  float* scratch = nullptr;
  ASSERT_EQ(cudaMalloc(&scratch, sizeof(float) * kGraphN), cudaSuccess);
  std::vector<float> host(kGraphN);
  cudaEvent_t event = nullptr;
  ASSERT_EQ(cudaEventCreate(&event), cudaSuccess);
  const struct {
    const char* what;
    std::function<cudaError_t()> call;
    cudaError_t error;
  } cases[] = {
      {"cudaStreamSynchronize", [&] { return cudaStreamSynchronize(stream_); }, cudaErrorStreamCaptureUnsupported},
      {"cudaDeviceSynchronize", [] { return cudaDeviceSynchronize(); }, cudaErrorStreamCaptureUnsupported},
      {"cudaMemcpy", [&] { return cudaMemcpy(host.data(), out_, sizeof(float), cudaMemcpyDeviceToHost); },
       cudaErrorStreamCaptureUnsupported},
      {"cudaMemset", [&] { return cudaMemset(scratch, 0, sizeof(float)); }, cudaErrorStreamCaptureUnsupported},
      {"cudaMalloc", [] { void* p = nullptr; return cudaMalloc(&p, 64); }, cudaErrorStreamCaptureUnsupported},
      {"cudaFree", [&] { return cudaFree(scratch); }, cudaErrorStreamCaptureUnsupported},
      {"cudaEventSynchronize on a captured event",
       [&] {
         EXPECT_EQ(cudaEventRecord(event, stream_), cudaSuccess);
         return cudaEventSynchronize(event);
       },
       cudaErrorCapturedEvent},
      {"launch on the legacy stream",
       [&] {
         launch_scale_add(1.0f, 0.0f, nullptr);
         return cudaGetLastError();
       },
       cudaErrorStreamCaptureImplicit},
      {"wait on an uncaptured event",
       [&] {
         EXPECT_EQ(cudaEventRecord(event, scratch_stream()), cudaSuccess);
         return cudaStreamWaitEvent(stream_, event, 0);
       },
       cudaErrorStreamCaptureIsolation},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    launch_scale_add(1.0f, 0.0f, stream_);
    EXPECT_EQ(c.call(), c.error);
    (void)cudaGetLastError();
    expect_invalidated_capture();
  }
  // Nothing of the failed captures ran, and the stream works again.
  EXPECT_EQ(download(), std::vector<float>(kGraphN, 0.0f));
  launch_scale_add(1.0f, 0.0f, stream_);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(event), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(scratch_), cudaSuccess);
  EXPECT_EQ(cudaFree(scratch), cudaSuccess);
}

// The capture modes: Relaxed allows the unsafe calls on the capturing thread; ThreadLocal ignores
// other threads, Global prohibits them too. Ending a capture belongs to the thread that began it.
TEST_F(CudaGraphEmulation, CaptureModesAndThreads) {
  cudaGraph_t graph = nullptr;
  void* p = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaErrorStreamCaptureUnsupported);  // never legal
  EXPECT_EQ(cudaStreamEndCapture(stream_, &graph), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();

  for (auto [mode, other_thread_may_allocate] :
       {std::pair{cudaStreamCaptureModeThreadLocal, true}, std::pair{cudaStreamCaptureModeGlobal, false}}) {
    ASSERT_EQ(cudaStreamBeginCapture(stream_, mode), cudaSuccess);
    EXPECT_EQ(cudaStreamBeginCapture(stream_, mode), cudaErrorIllegalState);
    cudaError_t other_malloc = cudaSuccess, other_end = cudaSuccess;
    std::thread([&] {
      void* q = nullptr;
      other_malloc = cudaMalloc(&q, 64);
      if (q != nullptr) cudaFree(q);
      cudaGraph_t g = nullptr;
      other_end = cudaStreamEndCapture(stream_, &g);
    }).join();
    EXPECT_EQ(other_malloc, other_thread_may_allocate ? cudaSuccess : cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(other_end, cudaErrorStreamCaptureWrongThread);
    EXPECT_EQ(cudaStreamEndCapture(stream_, &graph),
              other_thread_may_allocate ? cudaSuccess : cudaErrorStreamCaptureInvalidated);
    if (graph != nullptr) {
      EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    }
    (void)cudaGetLastError();
  }
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(stream_, &graph), cudaErrorIllegalState);
  (void)cudaGetLastError();
}

// A blocking stream's capture depends on the legacy stream: using that stream meanwhile, even from
// another thread (a synchronous copy), invalidates it. A non-blocking stream (CudaEngine's) keeps
// capturing.
TEST_F(CudaGraphEmulation, LegacyStreamInvalidatesOnlyABlockingCapture) {
  for (const unsigned flags : {0u, cudaStreamNonBlocking}) {
    SCOPED_TRACE(flags);
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, flags), cudaSuccess);
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    launch_scale_add(2.0f, 0.0f, stream);
    std::vector<float> host(kGraphN);
    cudaError_t legacy_copy = cudaErrorInvalidValue;
    std::thread([&] { legacy_copy = cudaMemcpy(host.data(), in_, sizeof(float) * kGraphN, cudaMemcpyDeviceToHost); })
        .join();
    const bool blocking = flags == 0;
    EXPECT_EQ(legacy_copy, blocking ? cudaErrorStreamCaptureImplicit : cudaSuccess);
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), blocking ? cudaErrorStreamCaptureInvalidated : cudaSuccess);
    if (graph != nullptr) {
      EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    }
    EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    (void)cudaGetLastError();
  }
}

// A launch error during capture (bad configuration) is reported at the launch and fails the capture.
TEST_F(CudaGraphEmulation, LaunchErrorDuringCaptureInvalidatesIt) {
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  launch_kernel(empty_kernel, 1, 1025, 0, stream_);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  expect_invalidated_capture();
}

}  // namespace
