// AVX-512 (F, BW, VL, DQ, VNNI, BF16) inner loops of the kCpu linear layer (design in linear.h).
// This file alone is compiled with those flags (kernels/CMakeLists.txt); linear.cc calls it only
// after CPUID said the CPU has them all. Builds without the flags get nullptr.
#include "kernels/cpu/linear.h"

namespace ferry::kernels::cpu {
// Not written yet: the path reports itself absent.
const LinearKernels* linear_kernels_avx512() { return nullptr; }
}  // namespace ferry::kernels::cpu
