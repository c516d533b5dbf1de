#include "backend/llm/model/quantized_checkpoint.h"

#include <cstring>
#include <vector>

#include "kernels/kernels.h"

namespace ferry::llm {

namespace {

bool is_i32(const TensorView* v) { return v != nullptr && v->dtype_name == "I32"; }

uint32_t word_at(const TensorView* v, int64_t index) {
  uint32_t w;
  std::memcpy(&w, static_cast<const char*>(v->data) + index * 4, 4);
  return w;
}

// Nibble position, within an AWQ word, of column j % 8 (the inverse of the order 0 2 4 6 1 3 5 7).
constexpr int kAwqNibbleOf[8] = {0, 4, 1, 5, 2, 6, 3, 7};

}  // namespace

Result<std::optional<QuantizedTensor>> find_quantized(const TensorStore& store, const QuantizationConfig& config,
                                                      const std::string& name, int64_t n, int64_t k) {
  const std::string suffix = ".weight";
  if (config.method == QuantizationConfig::Method::kNone || name.size() <= suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return std::optional<QuantizedTensor>();
  }
  const std::string base = name.substr(0, name.size() - suffix.size());
  const TensorView* qweight = store.find(base + ".qweight");
  if (qweight == nullptr) return std::optional<QuantizedTensor>();
  QuantizedTensor t;
  t.config = config;
  t.n = n;
  t.k = k;
  t.qweight = qweight;
  t.qzeros = store.find(base + ".qzeros");
  t.scales = store.find(base + ".scales");
  t.g_idx = store.find(base + ".g_idx");
  t.group_size = config.group_size > 0 ? config.group_size : k;
  auto bad = [&](const std::string& what) { return Status::InvalidArgument("quantized tensor '" + base + "': " + what); };
  if (!is_i32(t.qweight) || !is_i32(t.qzeros)) return bad("qweight and qzeros must be I32");
  if (t.scales == nullptr || !t.scales->dtype_supported) return bad("scales missing or not F16/BF16/F32");
  if (k % t.group_size != 0) return bad("input features not a multiple of group_size " + std::to_string(t.group_size));
  const int64_t groups = k / t.group_size;
  const int64_t pack = 32 / config.bits;
  std::vector<int64_t> want_w, want_z, want_s = {groups, n};
  if (config.method == QuantizationConfig::Method::kGptq) {
    if (k % pack != 0 || n % pack != 0) return bad("shape not a multiple of the packing");
    want_w = {k / pack, n};
    want_z = {groups, n / pack};
  } else {
    if (n % 8 != 0) return bad("output features not a multiple of 8");
    want_w = {k, n / 8};
    want_z = {groups, n / 8};
  }
  if (t.qweight->shape != want_w) return bad("qweight shape " + shape_to_string(t.qweight->shape) + ", expected " + shape_to_string(want_w));
  if (t.qzeros->shape != want_z) return bad("qzeros shape " + shape_to_string(t.qzeros->shape) + ", expected " + shape_to_string(want_z));
  if (t.scales->shape != want_s) return bad("scales shape " + shape_to_string(t.scales->shape) + ", expected " + shape_to_string(want_s));
  if (t.g_idx != nullptr) {
    if (!is_i32(t.g_idx) || t.g_idx->shape != std::vector<int64_t>{k}) return bad("g_idx must be I32 [in_features]");
    for (int64_t c = 0; c < k; ++c) {
      if (static_cast<int32_t>(word_at(t.g_idx, c)) != c / t.group_size) {
        return Status::Unimplemented("quantized tensor '" + base +
                                     "': act-order (g_idx reorders the input features) is not supported");
      }
    }
  }
  return std::optional<QuantizedTensor>(t);
}

void unpack_quantized(const QuantizedTensor& t, uint8_t* codes, float* scales, float* zeros) {
  const int bits = t.config.bits;
  const uint32_t mask = (1u << bits) - 1;
  const int64_t pack = 32 / bits, groups = t.num_groups();
  const bool gptq = t.config.method == QuantizationConfig::Method::kGptq;
  // Codes: the checkpoint is [k, n]-major; write [n, k].
  for (int64_t c = 0; c < t.k; ++c) {
    for (int64_t j = 0; j < t.n; ++j) {
      uint32_t code;
      if (gptq) {
        code = (word_at(t.qweight, (c / pack) * t.n + j) >> (bits * (c % pack))) & mask;
      } else {
        code = (word_at(t.qweight, c * (t.n / 8) + j / 8) >> (4 * kAwqNibbleOf[j % 8])) & mask;
      }
      codes[j * t.k + c] = static_cast<uint8_t>(code);
    }
  }
  std::vector<float> row(static_cast<size_t>(t.n));
  for (int64_t g = 0; g < groups; ++g) {
    const char* srow = static_cast<const char*>(t.scales->data) +
                       g * t.n * static_cast<int64_t>(kernels::dtype_size(t.scales->dtype));
    kernels::convert_to_f32(row.data(), srow, t.scales->dtype, static_cast<size_t>(t.n));
    for (int64_t j = 0; j < t.n; ++j) {
      scales[j * groups + g] = row[static_cast<size_t>(j)];
      uint32_t z;
      if (gptq) {
        z = (word_at(t.qzeros, g * (t.n / pack) + j / pack) >> (bits * (j % pack))) & mask;
        if (!t.config.gptq_v2) z += 1;  // v1 stores zero - 1
      } else {
        z = (word_at(t.qzeros, g * (t.n / 8) + j / 8) >> (4 * kAwqNibbleOf[j % 8])) & mask;
      }
      zeros[j * groups + g] = static_cast<float>(z);
    }
  }
}

}  // namespace ferry::llm
