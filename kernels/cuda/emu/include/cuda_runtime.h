// Emulation shim (FERRY_CUDA_EMULATION): stands in for the toolkit's cuda_runtime.h. See ../cuda_api.h.
#pragma once
#include "kernels/cuda/emu/cuda_api.h"
