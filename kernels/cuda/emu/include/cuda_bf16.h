// Emulation shim (FERRY_CUDA_EMULATION): stands in for the toolkit's cuda_bf16.h. See ../half.h.
#pragma once
#include "kernels/cuda/emu/half.h"
