// Emulation shim (FERRY_CUDA_EMULATION): only what cuda_check.cuh names. There is no cuBLASLt in an
// emulation build; kernels/cuda/gemm_emu.cc implements CublasGemm's interface on plain loops.
#pragma once
#include "kernels/cuda/emu/cuda_api.h"

enum cublasStatus_t : int { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
