// WeightLoader: turns a checkpoint's tensors (ModelWeights: safetensors mappings or dummy values)
// into the form the engine computes with, once per model.
//
// Matrices of linear layers come out as kernels::WeightMatrix views in the configured format:
//   "auto"        the checkpoint's own dtype (bf16 stays bf16, fp16 stays fp16, fp32 stays fp32);
//   "fp32"/"bf16"/"fp16"  converted when the checkpoint differs;
//   "int8"        weight-only, symmetric, one scale per output channel, quantized at load;
//   "int4"        weight-only, groups of `group_size` input features with a scale (and, with
//                 int4_zero_points, a zero point) each, quantized at load. A matrix whose input
//                 features are not a multiple of the group size uses groups of 32 if they divide
//                 it, and is kept in int8 otherwise (WeightArena::fallbacks() lists them).
// A matrix already in the wanted float format is used in place from the mmap (zero copy); every
// other one is converted into a buffer the loader's WeightArena owns. Vectors (norm weights,
// biases) are fp32; embedding tables stay in the checkpoint's float dtype (read in place).
// GPTQ/AWQ checkpoints ("auto"): 4-bit layers keep their codes, scales and zero points (int4, no
// re-quantization); 8-bit GPTQ layers are dequantized and re-quantized per output channel (int8).
//
// Memory: conversion reads one tensor at a time as fp32 (a transient buffer of that tensor's size),
// so peak memory is the result plus the largest tensor, never a second copy of the model.
//
// Progress: with WeightLoadOptions::on_progress set, the loader counts every planned tensor once as
// it is handed out (rows of a fused tensor in proportion) against the checkpoint's total, and
// reports through a LoadProgress (load_progress.h): a first report when the loader is made, one at
// most every half second, and the final one when the last planned tensor is done. The stage says
// whether the load converts ("loading weights, converting to int8"), which is the slow part.
//
// Ownership: the arena (and through it the mappings) must outlive every view handed out; a
// CausalLM keeps the arena. Thread-safety: a loader is used by one thread; the arena is immutable
// once loading ends and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/llm/model/load_progress.h"
#include "backend/llm/model/model_weights.h"
#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

enum class WeightDType { kAuto, kF32, kF16, kBF16, kInt8, kInt4 };

struct WeightLoadOptions {
  WeightDType dtype = WeightDType::kAuto;
  int64_t group_size = 32;        // int4 only: 32, 64 or 128
  bool int4_zero_points = false;  // int4 only: asymmetric groups (min/max) instead of symmetric
  LoadProgressCallback on_progress;  // empty: no progress reports
};

// The int4 group size the loader gives a matrix of k input features when `wanted` (32, 64 or 128)
// was asked: wanted when it divides k, else 32 when that does, else 0 (no group fits: the matrix is
// kept in int8).
int64_t int4_group_for(int64_t k, int64_t wanted);
// The group size of an imported 4-bit GPTQ/AWQ matrix whose checkpoint groups are `checkpoint_group`
// wide: the same for 32, 64, 128; 128 for a larger multiple of 128 (each checkpoint group split in
// groups sharing its scale and zero: exact); 0 for anything else (unsupported).
int64_t imported_int4_group(int64_t checkpoint_group);

// Parses "auto", "fp32", "bf16", "fp16", "int8", "int4" (also "float32", "bfloat16", "float16").
Result<WeightDType> parse_weight_dtype(const std::string& name);
const char* weight_dtype_name(WeightDType dtype);

// Owns converted weight buffers (64-byte aligned) and keeps the checkpoint mappings alive.
class WeightArena {
 public:
  explicit WeightArena(ModelWeights checkpoint) : checkpoint_(std::move(checkpoint)) {}
  void* allocate(int64_t bytes);  // aligned, not zero-filled; bad_alloc on failure
  int64_t owned_bytes() const { return owned_bytes_; }
  int64_t mapped_bytes() const { return mapped_bytes_; }
  void add_mapped(int64_t bytes) { mapped_bytes_ += bytes; }
  const ModelWeights& checkpoint() const { return checkpoint_; }
  // Bookkeeping for release_converted(): tensors read in place, and tensors converted from a mapping.
  void note_in_place(const std::string& name) { in_place_.push_back(name); }
  void note_converted(const std::string& name) { converted_.push_back(name); }
  // int4 requested, but the matrix's input features fit no group size: kept in int8.
  void note_fallback(int64_t n, int64_t k) {
    fallbacks_ += (fallbacks_.empty() ? "" : ", ") + std::to_string(n) + "x" + std::to_string(k);
  }
  // "" or the shapes of the matrices that fell back to int8, for the load log.
  const std::string& fallbacks() const { return fallbacks_; }
  // Drops from this process's resident set the mapped pages of tensors that were converted and are
  // not also read in place (MADV_DONTNEED on a read-only file mapping: the file stays in the page
  // cache, the process no longer holds it), so RSS is the weights in their serving format. Call
  // once loading is done.
  void release_converted();

 private:
  struct Free {
    void operator()(void* p) const;
  };
  ModelWeights checkpoint_;
  std::vector<std::unique_ptr<void, Free>> buffers_;
  std::vector<std::string> in_place_, converted_;
  std::string fallbacks_;
  int64_t owned_bytes_ = 0;
  int64_t mapped_bytes_ = 0;
};

class WeightLoader {
 public:
  WeightLoader(const ModelWeights& checkpoint, const WeightLoadOptions& options);

  // A linear layer's [n, k] matrix in the configured format.
  Result<kernels::WeightMatrix> matrix(const std::string& name);
  // The same, for rows [row_begin, row_end) of a fused checkpoint tensor (e.g. Phi-3's qkv_proj
  // split into q, k, v): a view of those rows.
  Result<kernels::WeightMatrix> matrix_rows(const std::string& name, int64_t row_begin, int64_t row_end);
  // A vector (norm weight, bias) as fp32; `add` is added to every element (Gemma's (1 + w) norms).
  Result<const float*> vector(const std::string& name, float add = 0.0f);
  // An embedding table [vocab, hidden] in a float dtype the embedding operator reads.
  struct Table {
    const void* data = nullptr;
    kernels::DType dtype = kernels::DType::kF32;
  };
  Result<Table> table(const std::string& name);

  // The format matrices come out in (kAuto resolved against the checkpoint).
  kernels::WeightFormat format() const { return format_; }
  // What the progress reports call this load: "loading weights", "loading dummy weights", and
  // ", converting to <format>" when matrices are converted from the checkpoint's dtype.
  const std::string& stage() const { return stage_; }
  // The counts so far, with the time and rate of the last report (all zero without on_progress).
  const LoadProgressSnapshot& progress() const { return progress_.last(); }
  std::shared_ptr<WeightArena> arena() const { return arena_; }

 private:
  Result<std::vector<float>> read_f32(const std::string& name, int64_t* rows, int64_t* cols);
  Result<kernels::WeightMatrix> convert(const float* w, int64_t n, int64_t k);
  // Rows [row_begin, row_end) of a 4-bit GPTQ/AWQ matrix as an int4 WeightMatrix, codes as stored.
  Result<kernels::WeightMatrix> import_int4(const QuantizedTensor& q, int64_t row_begin, int64_t row_end);
  // Counts rows [0, rows) more of planned tensor `name` as done (a tensor counts once: rows past
  // its own are ignored, so a tensor read twice, e.g. a tied embedding, is not counted twice).
  void count_done(const std::string& name, int64_t rows);
  // The tensor's size in the checkpoint (as stored: dtype bytes, or its quantized parts).
  int64_t checkpoint_bytes(const WeightSpec& spec) const;

  WeightLoadOptions options_;
  kernels::WeightFormat format_ = kernels::WeightFormat::kF32;
  std::shared_ptr<WeightArena> arena_;
  std::string stage_;
  LoadProgress progress_;
  std::map<std::string, int64_t> rows_done_;  // planned tensors counted so far, by name
};

}  // namespace ferry::llm
