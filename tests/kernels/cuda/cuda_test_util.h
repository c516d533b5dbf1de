// Shared helpers of the CUDA kernel tests: the "no CUDA device" skip, a device buffer that is
// poisoned (0xFF bytes: NaN for floats) when allocated, random never-zero inputs and a tolerance
// check. Nothing here touches CUDA before a test calls it (no static initialization), so the test
// binary starts and lists its tests on a machine without a GPU.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace ferry::kernels::cuda::testing {

// True when cudaGetDeviceCount succeeds and finds at least one device (asked once, lazily).
bool cuda_available();

#define FERRY_ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call
#define FERRY_ASSERT_OK(expr)                  \
  do {                                         \
    const ::ferry::Status s_ = (expr);         \
    ASSERT_TRUE(s_.ok()) << s_.to_string();    \
  } while (0)

// Fixture for every GPU test: skips without a device, owns a stream.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    FERRY_ASSERT_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_) {
      EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
    }
  }
  void sync() { ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess); }
  cudaStream_t stream_ = nullptr;
};

// A device array of n T's, every byte 0xFF after construction. Failures are test failures.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n == 0) return;
    if (cudaMalloc(&ptr_, n * sizeof(T)) != cudaSuccess || cudaMemset(ptr_, 0xFF, n * sizeof(T)) != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc/cudaMemset of " << n * sizeof(T) << " bytes failed";
      ptr_ = nullptr;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return static_cast<T*>(ptr_); }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    if (ptr_ && cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      ADD_FAILURE() << "upload failed";
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (ptr_ && cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      ADD_FAILURE() << "download failed";
    return host;
  }

 private:
  size_t n_;
  void* ptr_ = nullptr;
};

// Uniform in [lo, hi), zeros replaced by (lo + hi) / 2 + 0.25 so no input is exactly 0.
std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f);

// |got - want| <= atol + rtol * |want| for every element (NaN fails).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol, float rtol,
                  const char* what);

}  // namespace ferry::kernels::cuda::testing
