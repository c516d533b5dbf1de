// AMX (tiles, bf16) GEMM of the kCpu linear layer for prefill-sized m (design in linear.h). This
// file alone is compiled with -mamx-tile -mamx-bf16 (kernels/CMakeLists.txt); linear_gemm_amx()
// returns it only after CPUID and the kernel (arch_prctl) allowed this process to use the tiles.
#include "kernels/cpu/linear.h"

namespace ferry::kernels::cpu {
// Not written yet: the path reports itself absent.
GemmFn linear_gemm_amx() { return nullptr; }
}  // namespace ferry::kernels::cpu
