#include "backend/llm/model/weight_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace ferry::llm {

namespace k = ferry::kernels;

int64_t int4_group_for(int64_t k, int64_t wanted) {
  if (k % wanted == 0) return wanted;
  return k % 32 == 0 ? 32 : 0;  // the largest group that divides this matrix's rows
}

int64_t imported_int4_group(int64_t checkpoint_group) {
  if (checkpoint_group == 32 || checkpoint_group == 64 || checkpoint_group == 128) return checkpoint_group;
  return checkpoint_group > 0 && checkpoint_group % 128 == 0 ? 128 : 0;
}

Result<WeightDType> parse_weight_dtype(const std::string& name) {
  if (name == "auto") return WeightDType::kAuto;
  if (name == "fp32" || name == "float32") return WeightDType::kF32;
  if (name == "fp16" || name == "float16") return WeightDType::kF16;
  if (name == "bf16" || name == "bfloat16") return WeightDType::kBF16;
  if (name == "int8") return WeightDType::kInt8;
  if (name == "int4") return WeightDType::kInt4;
  return Status::InvalidArgument("'" + name + "' is not a weight dtype (auto, fp32, bf16, fp16, int8, int4)");
}

const char* weight_dtype_name(WeightDType dtype) {
  switch (dtype) {
    case WeightDType::kAuto: return "auto";
    case WeightDType::kF32: return "fp32";
    case WeightDType::kF16: return "fp16";
    case WeightDType::kBF16: return "bf16";
    case WeightDType::kInt8: return "int8";
    case WeightDType::kInt4: return "int4";
  }
  return "?";
}

void WeightArena::Free::operator()(void* p) const { std::free(p); }

void* WeightArena::allocate(int64_t bytes) {
  // 64-byte alignment: whole cache lines for the SIMD kernels. Buffers of several MiB (the
  // matrices) are 2 MiB-aligned and asked to be backed by transparent huge pages: a decode step
  // streams every weight once, and 4 KiB pages would cost a TLB miss every 4 KiB of it.
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = static_cast<size_t>(bytes) >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t size = (static_cast<size_t>(bytes) + align - 1) & ~(align - 1);
  void* p = std::aligned_alloc(align, size == 0 ? align : size);
  if (p == nullptr) throw std::bad_alloc();
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advisory: ignored where THP is off
  buffers_.emplace_back(p);
  owned_bytes_ += bytes;
  return p;
}

void WeightArena::release_converted() {
  const long page = sysconf(_SC_PAGESIZE);
  for (const std::string& name : converted_) {
    if (std::find(in_place_.begin(), in_place_.end(), name) != in_place_.end()) continue;
    const TensorView* v = checkpoint_.view(name);
    if (v == nullptr) continue;
    // Only whole pages inside the tensor: a neighbour read in place may share the edge pages.
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(v->data) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(v->data) + v->num_bytes) / page * page;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }
  converted_.clear();
}

namespace {

k::WeightFormat resolve(WeightDType want, k::DType checkpoint) {
  switch (want) {
    case WeightDType::kF32: return k::WeightFormat::kF32;
    case WeightDType::kF16: return k::WeightFormat::kF16;
    case WeightDType::kBF16: return k::WeightFormat::kBF16;
    case WeightDType::kInt8: return k::WeightFormat::kInt8;
    case WeightDType::kInt4: return k::WeightFormat::kInt4;
    case WeightDType::kAuto: break;
  }
  switch (checkpoint) {
    case k::DType::kF16: return k::WeightFormat::kF16;
    case k::DType::kBF16: return k::WeightFormat::kBF16;
    case k::DType::kF32: break;
  }
  return k::WeightFormat::kF32;
}

// The float format a WeightFormat stores, if it is one.
bool float_dtype(k::WeightFormat f, k::DType* out) {
  switch (f) {
    case k::WeightFormat::kF32: *out = k::DType::kF32; return true;
    case k::WeightFormat::kF16: *out = k::DType::kF16; return true;
    case k::WeightFormat::kBF16: *out = k::DType::kBF16; return true;
    default: return false;
  }
}

}  // namespace

WeightLoader::WeightLoader(const ModelWeights& checkpoint, const WeightLoadOptions& options)
    : options_(options), arena_(std::make_shared<WeightArena>(checkpoint)), progress_("", 0, 0, nullptr) {
  // The checkpoint's dtype: what its (first) matrices are stored in; dummy weights follow the HF
  // config's torch_dtype.
  k::DType ckpt = k::DType::kF32;
  for (const WeightSpec& s : checkpoint.specs()) {
    if (const TensorView* v = checkpoint.view(s.name)) {
      ckpt = v->dtype;
      break;
    }
  }
  if (checkpoint.format() == LoadFormat::kDummy) ckpt = checkpoint.dummy_dtype();
  format_ = resolve(options.dtype, ckpt);
  // A GPTQ/AWQ checkpoint is served in its own precision unless told otherwise: 4-bit codes as
  // they are (no re-quantization), 8-bit GPTQ as per-channel int8 (re-quantized from its groups).
  const QuantizationConfig& q = checkpoint.quantization();
  if (options.dtype == WeightDType::kAuto && q.method != QuantizationConfig::Method::kNone) {
    format_ = q.bits == 4 ? k::WeightFormat::kInt4 : k::WeightFormat::kInt8;
  }

  // Converting: the matrices end up in another format than the checkpoint holds them in (GPTQ/AWQ
  // kept in their own precision is not a conversion).
  const bool dummy = checkpoint.format() == LoadFormat::kDummy;
  const k::WeightFormat own = q.method == QuantizationConfig::Method::kNone
                                  ? resolve(WeightDType::kAuto, ckpt)
                                  : (q.bits == 4 ? k::WeightFormat::kInt4 : k::WeightFormat::kInt8);
  stage_ = dummy ? "loading dummy weights" : "loading weights";
  if (format_ != own) stage_ += std::string(", converting to ") + k::weight_format_name(format_);
  if (options_.on_progress) {
    int64_t total_bytes = 0;
    for (const WeightSpec& s : checkpoint.specs()) total_bytes += checkpoint_bytes(s);
    progress_ = LoadProgress(stage_, static_cast<int64_t>(checkpoint.specs().size()), total_bytes,
                             std::move(options_.on_progress));
    options_.on_progress = nullptr;
    progress_.start();
  }
}

int64_t WeightLoader::checkpoint_bytes(const WeightSpec& spec) const {
  const ModelWeights& ckpt = arena_->checkpoint();
  if (const TensorView* v = ckpt.view(spec.name)) return static_cast<int64_t>(v->num_bytes);
  if (const QuantizedTensor* q = ckpt.quantized(spec.name)) {
    int64_t bytes = 0;
    for (const TensorView* part : {q->qweight, q->qzeros, q->scales, q->g_idx}) {
      if (part != nullptr) bytes += static_cast<int64_t>(part->num_bytes);
    }
    return bytes;
  }
  // Dummy weights stand for the HF config's torch_dtype.
  return spec.numel() * static_cast<int64_t>(k::dtype_size(ckpt.dummy_dtype()));
}

void WeightLoader::count_done(const std::string& name, int64_t rows) {
  const WeightSpec* spec = arena_->checkpoint().spec(name);
  if (spec == nullptr) return;
  const int64_t total_rows = spec->shape.empty() ? 1 : spec->shape[0];
  int64_t& done = rows_done_[name];
  const int64_t before = done;
  done = std::min(total_rows, done + rows);
  if (done == before || total_rows <= 0) return;
  // Bytes in proportion to the rows, computed from the running total so rounding never drifts.
  const int64_t bytes = checkpoint_bytes(*spec);
  auto share = [&](int64_t r) { return static_cast<int64_t>(static_cast<double>(bytes) * r / total_rows); };
  progress_.add(done == total_rows ? 1 : 0, share(done) - share(before));
}

Result<std::vector<float>> WeightLoader::read_f32(const std::string& name, int64_t* rows, int64_t* cols) {
  const WeightSpec* spec = arena_->checkpoint().spec(name);
  if (spec == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
  *rows = spec->shape.empty() ? 1 : spec->shape[0];
  *cols = spec->shape.size() < 2 ? 1 : spec->numel() / *rows;
  std::vector<float> values(static_cast<size_t>(spec->numel()));
  FERRY_RETURN_IF_ERROR(arena_->checkpoint().read_f32(name, values.data()));
  return values;
}

Result<k::WeightMatrix> WeightLoader::convert(const float* w, int64_t n, int64_t kk) {
  k::WeightMatrix m;
  m.format = format_;
  m.n = n;
  m.k = kk;
  const size_t count = static_cast<size_t>(n * kk);
  switch (format_) {
    case k::WeightFormat::kF32: {
      auto* dst = static_cast<float*>(arena_->allocate(n * kk * 4));
      std::memcpy(dst, w, count * sizeof(float));
      m.data = dst;
      break;
    }
    case k::WeightFormat::kF16:
    case k::WeightFormat::kBF16: {
      auto* dst = static_cast<uint16_t*>(arena_->allocate(n * kk * 2));
      const bool bf = format_ == k::WeightFormat::kBF16;
      for (size_t i = 0; i < count; ++i) dst[i] = bf ? k::f32_to_bf16(w[i]) : k::f32_to_f16(w[i]);
      m.data = dst;
      break;
    }
    case k::WeightFormat::kInt8: {
      auto* q = static_cast<int8_t*>(arena_->allocate(n * kk));
      auto* scales = static_cast<float*>(arena_->allocate(n * 4));
      k::quantize_int8(w, n, kk, q, scales);
      m.data = q;
      m.scales = scales;
      break;
    }
    case k::WeightFormat::kInt4: {
      const int64_t g = int4_group_for(kk, options_.group_size);
      if (g == 0) {
        // No int4 group fits (e.g. 172 input features): this matrix is kept in int8 instead.
        arena_->note_fallback(m.n, kk);
        m.format = k::WeightFormat::kInt8;
        auto* q = static_cast<int8_t*>(arena_->allocate(n * kk));
        auto* scales = static_cast<float*>(arena_->allocate(n * 4));
        k::quantize_int8(w, n, kk, q, scales);
        m.data = q;
        m.scales = scales;
        break;
      }
      auto* packed = static_cast<uint8_t*>(arena_->allocate(k::weight_data_bytes(format_, n, kk)));
      auto* scales = static_cast<float*>(arena_->allocate(n * (kk / g) * 4));
      float* zeros = options_.int4_zero_points ? static_cast<float*>(arena_->allocate(n * (kk / g) * 4)) : nullptr;
      k::quantize_int4(w, n, kk, g, packed, scales, zeros);
      m.data = packed;
      m.scales = scales;
      m.zeros = zeros;
      m.group_size = g;
      break;
    }
  }
  return m;
}

Result<k::WeightMatrix> WeightLoader::matrix(const std::string& name) {
  const WeightSpec* spec = arena_->checkpoint().spec(name);
  if (spec == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
  if (spec->shape.size() != 2) return Status::InvalidArgument("tensor '" + name + "' is not a matrix");
  return matrix_rows(name, 0, spec->shape[0]);
}

Result<k::WeightMatrix> WeightLoader::matrix_rows(const std::string& name, int64_t row_begin, int64_t row_end) {
  const WeightSpec* spec = arena_->checkpoint().spec(name);
  if (spec == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
  if (spec->shape.size() != 2 || row_begin < 0 || row_end > spec->shape[0] || row_begin >= row_end) {
    return Status::InvalidArgument("tensor '" + name + "': bad row range");
  }
  const int64_t cols = spec->shape[1], n = row_end - row_begin;
  // In place from the mapping when the checkpoint already holds the wanted float format.
  k::DType want;
  const TensorView* view = arena_->checkpoint().view(name);
  if (view != nullptr && float_dtype(format_, &want) && view->dtype == want &&
      reinterpret_cast<uintptr_t>(view->data) % k::dtype_size(want) == 0) {
    k::WeightMatrix m;
    m.format = format_;
    m.n = n;
    m.k = cols;
    m.data = static_cast<const char*>(view->data) + row_begin * cols * static_cast<int64_t>(k::dtype_size(want));
    arena_->add_mapped(n * cols * static_cast<int64_t>(k::dtype_size(want)));
    arena_->note_in_place(name);
    count_done(name, n);
    return m;
  }
  Result<k::WeightMatrix> m = Status::Internal("unreachable");
  if (const QuantizedTensor* q = arena_->checkpoint().quantized(name);
      q != nullptr && q->config.bits == 4 && format_ == k::WeightFormat::kInt4) {
    m = import_int4(*q, row_begin, row_end);
  } else {
    int64_t rows = 0, c = 0;
    auto values = read_f32(name, &rows, &c);
    if (!values.ok()) return values.status();
    arena_->note_converted(name);
    m = convert(values.value().data() + row_begin * cols, n, cols);
  }
  if (m.ok()) count_done(name, n);
  return m;
}

Result<k::WeightMatrix> WeightLoader::import_int4(const QuantizedTensor& q, int64_t row_begin, int64_t row_end) {
  // The kernels take groups of 32, 64 or 128; a larger checkpoint group that is a multiple of 128
  // (or one group per row) becomes groups of 128 sharing its scale and zero: exact, not re-quantized.
  const int64_t g = imported_int4_group(q.group_size);
  if (g == 0) {
    return Status::Unimplemented("int4 checkpoint group size " + std::to_string(q.group_size) +
                                 " (supported: 32, 64, 128 or a multiple of 128)");
  }
  const int64_t n = row_end - row_begin, kk = q.k, src_groups = q.num_groups(), groups = kk / g;
  std::vector<uint8_t> codes(static_cast<size_t>(q.n * kk));
  std::vector<float> scales(static_cast<size_t>(q.n * src_groups)), zeros(scales.size());
  unpack_quantized(q, codes.data(), scales.data(), zeros.data());
  k::WeightMatrix m;
  m.format = k::WeightFormat::kInt4;
  m.n = n;
  m.k = kk;
  m.group_size = g;
  auto* packed = static_cast<uint8_t*>(arena_->allocate(k::weight_data_bytes(m.format, n, kk)));
  k::pack_int4(codes.data() + row_begin * kk, n, kk, packed);
  auto* s = static_cast<float*>(arena_->allocate(n * groups * 4));
  auto* z = static_cast<float*>(arena_->allocate(n * groups * 4));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const size_t src = static_cast<size_t>((row_begin + j) * src_groups + gi * g / q.group_size);
      s[j * groups + gi] = scales[src];
      z[j * groups + gi] = zeros[src];
    }
  }
  m.data = packed;
  m.scales = s;
  m.zeros = z;
  return m;
}

Result<const float*> WeightLoader::vector(const std::string& name, float add) {
  int64_t rows = 0, cols = 0;
  auto values = read_f32(name, &rows, &cols);
  if (!values.ok()) return values.status();
  const int64_t n = rows * cols;
  auto* dst = static_cast<float*>(arena_->allocate(n * 4));
  for (int64_t i = 0; i < n; ++i) dst[i] = values.value()[static_cast<size_t>(i)] + add;
  arena_->note_converted(name);
  count_done(name, rows);
  return static_cast<const float*>(dst);
}

Result<WeightLoader::Table> WeightLoader::table(const std::string& name) {
  const TensorView* view = arena_->checkpoint().view(name);
  if (view != nullptr && reinterpret_cast<uintptr_t>(view->data) % k::dtype_size(view->dtype) == 0) {
    arena_->add_mapped(static_cast<int64_t>(view->num_bytes));
    arena_->note_in_place(name);
    if (const WeightSpec* spec = arena_->checkpoint().spec(name)) count_done(name, spec->shape.empty() ? 1 : spec->shape[0]);
    return Table{view->data, view->dtype};
  }
  int64_t rows = 0, cols = 0;
  auto values = read_f32(name, &rows, &cols);
  if (!values.ok()) return values.status();
  // Dummy (or misaligned) tables: kept as the loader's float format, fp32 for quantized ones.
  k::DType dtype = k::DType::kF32;
  if (!float_dtype(format_, &dtype)) dtype = k::DType::kF32;
  const int64_t n = rows * cols;
  void* dst = arena_->allocate(n * static_cast<int64_t>(k::dtype_size(dtype)));
  const float* src = values.value().data();
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == k::DType::kF32) static_cast<float*>(dst)[i] = src[i];
    else if (dtype == k::DType::kBF16) static_cast<uint16_t*>(dst)[i] = k::f32_to_bf16(src[i]);
    else static_cast<uint16_t*>(dst)[i] = k::f32_to_f16(src[i]);
  }
  count_done(name, rows);
  return Table{dst, dtype};
}

}  // namespace ferry::llm
