// Checked CUDA and cuBLAS calls for the launchers in kernels/cuda: every runtime call goes through
// FERRY_CUDA_RETURN_IF_ERROR, every kernel launch is followed by FERRY_CUDA_CHECK_LAUNCH, and a
// failure comes back as a ferry::Status (kInternal) naming the file, line, call and CUDA error.
// Nothing here synchronizes or aborts: a launcher fails one request, not the process.
// Internal to kernels/cuda (the engine sees only the Statuses).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace ferry::kernels::cuda {

inline Status cuda_error_status(cudaError_t err, const char* what, const char* file, int line) {
  return Status::Internal(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                          cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

inline Status cublas_error_status(cublasStatus_t err, const char* what, const char* file, int line) {
  return Status::Internal(std::string(file) + ":" + std::to_string(line) + ": " + what +
                          ": cuBLAS status " + std::to_string(static_cast<int>(err)));
}

}  // namespace ferry::kernels::cuda

#define FERRY_CUDA_RETURN_IF_ERROR(call)                                                         \
  do {                                                                                           \
    const cudaError_t ferry_cuda_err_ = (call);                                                  \
    if (ferry_cuda_err_ != cudaSuccess)                                                          \
      return ::ferry::kernels::cuda::cuda_error_status(ferry_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: reports a bad configuration (or an earlier asynchronous error).
#define FERRY_CUDA_CHECK_LAUNCH(kernel_name)                                                      \
  do {                                                                                           \
    const cudaError_t ferry_cuda_err_ = cudaGetLastError();                                      \
    if (ferry_cuda_err_ != cudaSuccess)                                                          \
      return ::ferry::kernels::cuda::cuda_error_status(ferry_cuda_err_, "launch " kernel_name,   \
                                                       __FILE__, __LINE__);                      \
  } while (0)

#define FERRY_CUBLAS_RETURN_IF_ERROR(call)                                                         \
  do {                                                                                             \
    const cublasStatus_t ferry_cublas_err_ = (call);                                               \
    if (ferry_cublas_err_ != CUBLAS_STATUS_SUCCESS)                                                \
      return ::ferry::kernels::cuda::cublas_error_status(ferry_cublas_err_, #call, __FILE__, __LINE__); \
  } while (0)

// Argument validation at a launcher's boundary.
#define FERRY_CUDA_REQUIRE(cond, op)                                                    \
  do {                                                                                  \
    if (!(cond)) return ::ferry::Status::InvalidArgument(std::string(op) + ": " #cond); \
  } while (0)
