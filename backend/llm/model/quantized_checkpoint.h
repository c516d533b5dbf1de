// Pre-quantized linear layers of GPTQ and AWQ checkpoints, read from safetensors as stored.
//
// A quantized layer `<base>.weight` of logical shape [n, k] (n output, k input features) is stored
// as (facts of the AutoGPTQ / AutoAWQ formats that transformers loads):
//   GPTQ: qweight I32 [k * bits / 32, n]: input c's code sits in word c / (32 / bits) at bit
//         (c % (32 / bits)) * bits; qzeros I32 [k / G, n * bits / 32] packed the same way along n;
//         scales F16 [k / G, n]; optional g_idx I32 [k] (the group of each input feature).
//         Zero points are stored minus one (checkpoint_format "gptq"; "gptq_v2" stores them as is).
//   AWQ (GEMM): qweight I32 [k, n / 8] and qzeros I32 [k / G, n / 8], 4-bit codes packed along n
//         in the interleaved order 0 2 4 6 1 3 5 7 (nibble i of a word holds column 8w + order[i]);
//         scales F16 [k / G, n]; zero points as stored.
// Both dequantize as w[j][c] = (code - zero[g][j]) * scale[g][j], g = the group of input c.
// unpack_quantized() turns either into the row-major codes [n, k] and per-(row, group) scales and
// zeros [n, k / G] that kernels::pack_int4 and the int4 WeightMatrix take, without re-quantizing.
//
// Not supported (load error naming it): act-order checkpoints whose g_idx is not the trivial
// c / G (desc_act with reordering), AWQ GEMV/Marlin layouts, bits other than 4 and 8.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "backend/llm/model/model_config.h"
#include "backend/llm/model/safetensors.h"
#include "common/status.h"

namespace ferry::llm {

struct QuantizedTensor {
  QuantizationConfig config;
  int64_t n = 0, k = 0;
  int64_t group_size = 0;  // resolved: k when the checkpoint has one group per row
  const TensorView* qweight = nullptr;
  const TensorView* qzeros = nullptr;
  const TensorView* scales = nullptr;
  const TensorView* g_idx = nullptr;  // GPTQ only, may be absent
  int64_t num_groups() const { return k / group_size; }
};

// The quantized form of planned matrix `name` ("<base>.weight", shape [n, k]) when the store holds
// "<base>.qweight"; nullopt when it does not (the layer is stored in float). Shapes, dtypes and the
// group layout are checked; errors name the tensor.
Result<std::optional<QuantizedTensor>> find_quantized(const TensorStore& store, const QuantizationConfig& config,
                                                      const std::string& name, int64_t n, int64_t k);

// codes[n * k] (row-major, one code per byte), scales and zeros [n, num_groups()] row-major.
void unpack_quantized(const QuantizedTensor& t, uint8_t* codes, float* scales, float* zeros);

}  // namespace ferry::llm
