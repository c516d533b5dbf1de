#include "backend/llm/engine/cuda_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "backend/llm/engine/cuda_graphs.h"
#include "backend/llm/engine/host_sampling.h"
#include "backend/llm/engine/prompt_logprobs.h"
#include "backend/llm/engine/step_layout.h"
#include "backend/llm/model/weight_loader.h"
#include "kernels/cuda/add_rms_norm.cuh"
#include "kernels/cuda/argmax.cuh"
#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gather_rows.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/head_rms_norm.cuh"
#include "kernels/cuda/quantized_gemm.h"
#include "kernels/cuda/kv_cache_write.cuh"
#include "kernels/cuda/paged_attention_decode.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/silu_and_mul.cuh"

namespace ferry::llm {

namespace k = ferry::kernels;
namespace kc = ferry::kernels::cuda;

namespace {

// One cudaMalloc'd range, freed on destruction.
// Owned CUDA memory: device memory (cudaMalloc), or page-locked host memory (cudaMallocHost) when
// kHost, whose copies to and from the device are DMA transfers that need no staging by the driver.
template <bool kHost>
class CudaMemory {
 public:
  CudaMemory() = default;
  CudaMemory(CudaMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaMemory& operator=(CudaMemory&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~CudaMemory() { reset(); }

  static Result<CudaMemory> allocate(size_t bytes) {
    CudaMemory m;
    if (bytes == 0) return m;
    const cudaError_t err = kHost ? cudaMallocHost(&m.ptr_, bytes) : cudaMalloc(&m.ptr_, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky: clear it
      return Status::ResourceExhausted(std::string(kHost ? "cudaMallocHost" : "cudaMalloc") + " of " +
                                       std::to_string(bytes) + " bytes: out of memory");
    }
    FERRY_CUDA_RETURN_IF_ERROR(err);
    m.bytes_ = bytes;
    return m;
  }
  void reset() {
    if (ptr_ != nullptr) (void)(kHost ? cudaFreeHost(ptr_) : cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
using DeviceMemory = CudaMemory<false>;
using PinnedMemory = CudaMemory<true>;

bool is_llama_family(const std::string& name) {
  return name == "LlamaForCausalLM" || name == "MistralForCausalLM" || name == "Qwen2ForCausalLM" ||
         name == "Qwen3ForCausalLM";
}

bool quantized(k::WeightFormat f) { return f == k::WeightFormat::kInt8 || f == k::WeightFormat::kInt4; }

// The device format of the linear layers' matrices (WeightLoader's choice: a GPTQ/AWQ checkpoint
// under kAuto keeps its own precision).
k::WeightFormat resolve_weight_format(const ModelConfig& c, const ModelWeights& w, WeightDType d) {
  const QuantizationConfig& q = w.quantization();
  if (d == WeightDType::kAuto && q.method != QuantizationConfig::Method::kNone)
    return q.bits == 4 ? k::WeightFormat::kInt4 : k::WeightFormat::kInt8;
  switch (d) {
    case WeightDType::kAuto:
      return c.dtype == k::DType::kF32 ? k::WeightFormat::kF32
                                       : (c.dtype == k::DType::kBF16 ? k::WeightFormat::kBF16 : k::WeightFormat::kF16);
    case WeightDType::kF32: return k::WeightFormat::kF32;
    case WeightDType::kBF16: return k::WeightFormat::kBF16;
    case WeightDType::kF16: return k::WeightFormat::kF16;
    case WeightDType::kInt8: return k::WeightFormat::kInt8;
    case WeightDType::kInt4: return k::WeightFormat::kInt4;
  }
  return k::WeightFormat::kF32;
}

// The GEMM input dtype of a float format (int8 and int4 have none: see State::linear).
k::DType float_dtype(k::WeightFormat f) {
  return f == k::WeightFormat::kBF16 ? k::DType::kBF16 : (f == k::WeightFormat::kF16 ? k::DType::kF16 : k::DType::kF32);
}

// The dtype CpuEngine's loader gives the embedding table (WeightLoader::table): the checkpoint's
// own for a stored tensor, the float format's for converted ones, fp32 under a quantized format.
k::DType embedding_dtype(const ModelWeights& w, k::WeightFormat f) {
  if (!quantized(f)) return float_dtype(f);
  const TensorView* view = w.view("model.embed_tokens.weight");
  const bool in_place = view != nullptr && view->dtype_supported &&
                        reinterpret_cast<uintptr_t>(view->data) % k::dtype_size(view->dtype) == 0;
  return in_place ? view->dtype : k::DType::kF32;
}

// A row the device samples (cuda::sample, or the arg max when greedy): nothing the CPU sampler
// would add to the logits (the sampler's own predicate, so min_tokens and masks count too), no
// logprobs to compute and no drafts to verify. The rest is sampled on the host.
bool samples_on_device(const SamplingSequence& s, int32_t num_draft_tokens) {
  return num_draft_tokens == 0 && s.params->num_logprobs < 0 && Sampler::leaves_logits_unchanged(s);
}

// A device-sampled row that is plain greedy: the arg max of the raw logits, no draw.
bool device_greedy(const SamplingSequence& s, int32_t num_draft_tokens) {
  return s.params->is_greedy() && samples_on_device(s, num_draft_tokens);
}

}  // namespace

struct CudaEngine::State {
  // A linear layer's [n, k] matrix on the device in kernels.h's layout of its format: the float
  // format's elements, int8 codes + one fp32 scale per row, or packed int4 codes + fp32 scales (and
  // zeros) per group. Under int4 a matrix whose input features fit no group is int8, as on the CPU.
  struct Matrix {
    k::WeightFormat format = k::WeightFormat::kF32;
    const void* data = nullptr;
    const float* scales = nullptr;  // kInt8: [n]; kInt4: [n, k / group_size]
    const float* zeros = nullptr;   // kInt4, optional: [n, k / group_size]
    int64_t group_size = 0;         // kInt4
  };
  struct Layer {
    const float* input_norm = nullptr;  // [hidden]
    Matrix qkv;                         // [q_size + 2 * kv_size, hidden]
    const float* qkv_bias = nullptr;    // [q_size + 2 * kv_size] or nullptr
    Matrix o;                           // [hidden, q_size]
    const float* o_bias = nullptr;      // [hidden] or nullptr
    const float* q_norm = nullptr;      // [head_dim] or nullptr (Qwen3)
    const float* k_norm = nullptr;
    const float* post_norm = nullptr;   // [hidden]
    Matrix gate_up;                     // [2 * inter, hidden]
    Matrix down;                        // [hidden, inter]
  };
  struct LayerCache {
    void* k = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] of the cache dtype (fp32, bf16 bits, int8)
    void* v = nullptr;
    float* k_scales = nullptr;  // kInt8: [num_blocks, block_size, num_kv_heads]
    float* v_scales = nullptr;
  };

  ModelConfig config;
  CudaEngineOptions options;
  k::WeightFormat wfmt = k::WeightFormat::kF32;
  k::DType wdt = k::DType::kF32;        // float formats: the GEMM dtype
  k::DType embed_dtype = k::DType::kF32;
  int device = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<kc::CublasGemm> gemm;
  std::vector<DeviceMemory> owned;  // everything but the KV cache and the block tables
  int64_t owned_bytes = 0;
  int64_t weight_bytes = 0;  // the part of owned_bytes that load_weights allocated
  // planned_device_bytes: load_weights and allocate_activations only add up what they would
  // allocate (no CUDA call, no tensor read).
  bool dry_run = false;

  // Weights.
  const void* embed = nullptr;    // [vocab, hidden], embed_dtype
  Matrix lm_head;                 // [vocab, hidden] (embed when tied and not int8)
  const float* final_norm = nullptr;
  const float* inv_freq = nullptr;  // [head_dim / 2]
  std::vector<Layer> layers;

  // Activations, fp32 unless said: rows for max_num_tokens tokens.
  float* x = nullptr;        // [T, hidden] residual stream
  float* h = nullptr;        // [T, hidden] normed
  float* delta = nullptr;    // [T, hidden] sub-layer output
  float* qkv = nullptr;      // [T, q + 2kv]
  float* attn = nullptr;     // [T, q]
  float* gate_up = nullptr;  // [T, 2 * inter]
  float* act = nullptr;      // [T, inter]
  void* x16 = nullptr;       // [T, max(hidden, q, inter)] 16-bit GEMM input; null for fp32 weights
  void* w16 = nullptr;       // int8/int4 weights: bf16 [n, k] of the largest layer matrix (the GEMM path)
  size_t w16_bytes = 0;
  float* last = nullptr;     // [max_num_seqs, hidden]: the rows whose logits are wanted
  float* logits = nullptr;   // [max_num_seqs, vocab]
  int32_t* tokens = nullptr;  // [max_num_seqs]: device argmax / cuda::sample tokens
  kc::SamplingRowParams* sample_params = nullptr;  // [max_num_seqs]: cuda::sample's entries
  void* decode_ws = nullptr;
  size_t decode_ws_bytes = 0;
  int64_t decode_ctx = 0;  // the longest context the decode workspace holds (decode_context_tokens)

  // The sizes the forward pass's kernel arguments are computed from. An uncaptured step takes them
  // from its layout; a graph step from its bucket only (run_decode_graph), so that a replay's frozen
  // arguments fit every batch of the bucket.
  struct StepShape {
    int64_t num_tokens = 0;          // rows of every activation
    int64_t num_seqs = 0;
    int64_t max_blocks_per_seq = 0;  // the block tables' row stride
    int64_t max_context_len = 0;     // sizes the decode attention's partitions
    int64_t max_query_len = 0;
    bool decode = false;             // the split-K decode attention (every query_len 1)
  };
  StepShape shape;
  std::unique_ptr<DecodeGraphs> graphs;  // null when options.cuda_graphs is off

  // Step metadata on the device: one buffer, the arrays packed at the step's sizes (16-byte
  // aligned; a graph step's: its bucket's), the pointers below set by upload_metadata into it.
  uint8_t* d_meta = nullptr;
  int32_t* d_token_ids = nullptr;    // [n]
  int32_t* d_positions = nullptr;    // [n]
  int64_t* d_slots = nullptr;        // [n]
  int32_t* d_logit_rows = nullptr;   // [n]
  int32_t* d_query_start = nullptr;  // [num_seqs + 1]
  int32_t* d_context_lens = nullptr;  // [num_seqs]
  DeviceMemory block_tables;          // [S, max_blocks_per_seq], sized with the KV cache
  // Page-locked host staging: the packed metadata, then the block tables (sized with the KV
  // cache); and the device-greedy tokens coming back. Two host-to-device copies per step.
  PinnedMemory staging;
  PinnedMemory pinned_tokens;  // [S] int32
  PinnedMemory pinned_sample_params;  // [S] kc::SamplingRowParams, copied to sample_params
  // [S, vocab] fp32: the logits rows of the sequences sampled on the host. Empty when page-locked
  // memory was refused at load; then those rows (and any step with more of them) use host_logits.
  PinnedMemory pinned_logits;

  // KV cache.
  DeviceMemory cache;
  std::vector<LayerCache> cache_layers;
  k::KvCacheDType cache_dtype = k::KvCacheDType::kF32;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t max_blocks_per_seq = 0;

  // Host side of a step.
  StepLayout layout;
  // A graph step's metadata, padded from the layout's to the bucket (pad_decode_metadata).
  struct Padded {
    std::vector<int32_t> token_ids, positions, logit_rows, query_start, context_lens, block_tables;
    std::vector<int64_t> slots;
  } padded;
  std::vector<float> host_logits;  // [rows, vocab]: host-sampled rows that pinned_logits cannot hold
  std::vector<float*> host_rows;  // [num_seqs]: a host-sampled sequence's logits rows, else null
  std::unique_ptr<Sampler> sampler;
  std::vector<SampleResult> run;  // sample_on_host's scratch
  std::vector<float> host_prompt_logits;  // [max_num_seqs, vocab]; allocated once prompt logprobs are asked
  int64_t device_sampled = 0, host_sampled = 0;  // sequences sampled on each side, all steps

  ~State() {
    if (dry_run) return;
    (void)cudaSetDevice(device);
    graphs.reset();
    cache.reset();
    block_tables.reset();
    staging.reset();
    pinned_tokens.reset();
    pinned_sample_params.reset();
    pinned_logits.reset();
    owned.clear();
    gemm.reset();
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }

  template <typename T>
  Result<T*> alloc(int64_t count) {
    if (dry_run) {  // sizes only: the pointer is stored, never dereferenced or freed
      owned_bytes += count * static_cast<int64_t>(sizeof(T));
      return count > 0 ? reinterpret_cast<T*>(uintptr_t{256}) : nullptr;
    }
    auto m = DeviceMemory::allocate(static_cast<size_t>(count) * sizeof(T));
    if (!m.ok()) return m.status();
    T* p = m.value().template as<T>();
    owned_bytes += static_cast<int64_t>(m.value().bytes());
    owned.push_back(std::move(m).value());
    return p;
  }
  Status upload(const void* dst, const void* src, size_t bytes) {
    if (dry_run) return Status::Ok();
    // Synchronous, so that `src` may be freed on return; on the legacy stream, which create() waits
    // for (the DMA from pageable memory may still run when this returns).
    FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpy(const_cast<void*>(dst), src, bytes, cudaMemcpyHostToDevice));
    return Status::Ok();
  }

  int64_t quantized_gemv_max_rows() const {
    return options.quantized_gemv_max_rows > 0 ? options.quantized_gemv_max_rows : kc::kQuantizedGemvMaxRows;
  }
  Status init(const ModelConfig& c, const ModelWeights& weights, const CudaEngineOptions& o);
  Status load_weights(const ModelWeights& w);
  Result<const void*> upload_tensors(const ModelWeights& w, const std::vector<std::string>& names, k::DType dtype);
  // How WeightLoader stores a quantized matrix (format: int8 where an int4 group does not fit).
  struct QuantizedLayout {
    k::WeightFormat format = k::WeightFormat::kInt8;
    int64_t group_size = 0;  // kInt4
    bool zeros = false;      // kInt4: zero points per group
  };
  QuantizedLayout plan_quantized(const ModelWeights& w, const std::string& name, int64_t k) const;
  Result<Matrix> upload_matrix(const ModelWeights& w, const std::vector<std::string>& names);
  Status allocate_activations();

  size_t metadata_bytes() const;
  // The host arrays one step's kernels read (a layout's, or their padded copies). block_tables
  // holds rows of table_row entries; on the device they land table_stride entries apart.
  struct HostMetadata {
    std::span<const int32_t> token_ids, positions;
    std::span<const int64_t> slots;
    std::span<const int32_t> logit_rows, query_start, context_lens, block_tables;
    int64_t table_row = 0;
    int64_t table_stride = 0;
  };
  Status upload_metadata(const HostMetadata& m);
  int64_t graph_bucket(const ForwardBatch& b) const;
  void pad_decode_metadata(const ForwardBatch& b, int64_t bucket);
  Status forward_logits(int64_t bucket);
  Status run_forward(const ForwardBatch& b);
  Status run_decode_graph(const ForwardBatch& b, int64_t bucket);
  Status linear(float* out, const float* in, const Matrix& w, const float* bias, int64_t m, int64_t n, int64_t kdim);
  Status forward(int64_t num_tokens);
  Status attention_layer(int64_t l, int64_t num_tokens);
  Status mlp_layer(int64_t l, int64_t num_tokens);
  Status logits_rows(int64_t row_begin, int64_t num_rows, int64_t num_tokens);
  Status score_prompts(const ForwardBatch& batch, StepOutput* out);
  Status plan_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
                       StepOutput* out);
  Status sample_on_device(int64_t row_begin, int64_t num_rows);
  Status copy_host_rows(const ForwardBatch& batch, int64_t row_begin, int64_t num_rows);
  void finish_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, StepOutput* out);

  // The step's sampling plan (plan_sampling): the device rows, whose cuda::sample entries are in
  // pinned_sample_params in the same (row) order; whether the arg max kernel serves them instead
  // (every sampling sequence plain greedy); the host sequences' rows are where host_rows points.
  // host_first_row is plan_sampling's scratch (a host sequence's first row in the packed buffer).
  struct DeviceRow {
    size_t seq;   // the sequence
    int64_t row;  // its logits row (StepLayout::logit_rows order)
  };
  std::vector<DeviceRow> device_rows;
  bool argmax_only = false;
  std::vector<int64_t> host_first_row;  // [num_seqs]
  int64_t num_host_rows = 0;
};

namespace {

struct Stacked {
  int64_t rows = 0;
  int64_t numel = 0;
};

// The shape of tensors stacked by rows (the fused q|k|v and gate|up).
Result<Stacked> stacked_shape(const ModelWeights& w, const std::vector<std::string>& names) {
  Stacked s;
  for (const auto& n : names) {
    const WeightSpec* spec = w.spec(n);
    if (spec == nullptr) return Status::NotFound("the checkpoint plan has no tensor " + n);
    s.rows += spec->shape.empty() ? 1 : spec->shape[0];
    s.numel += spec->numel();
  }
  return s;
}

// Reads tensors as fp32, one after the other (rows stacked).
Result<std::vector<float>> read_stacked(const ModelWeights& w, const std::vector<std::string>& names) {
  Stacked shape;
  FERRY_ASSIGN_OR_RETURN(shape, stacked_shape(w, names));
  std::vector<float> f32(static_cast<size_t>(shape.numel));
  int64_t at = 0;
  for (const auto& n : names) {
    FERRY_RETURN_IF_ERROR(w.read_f32(n, f32.data() + at));
    at += w.spec(n)->numel();
  }
  return f32;
}

}  // namespace

// The stacked tensors as one device array of `dtype`.
Result<const void*> CudaEngine::State::upload_tensors(const ModelWeights& w, const std::vector<std::string>& names,
                                                      k::DType dtype) {
  if (dry_run) {
    Stacked shape;
    FERRY_ASSIGN_OR_RETURN(shape, stacked_shape(w, names));
    uint8_t* p = nullptr;
    FERRY_ASSIGN_OR_RETURN(p, alloc<uint8_t>(shape.numel * static_cast<int64_t>(k::dtype_size(dtype))));
    return static_cast<const void*>(p);
  }
  std::vector<float> f32;
  FERRY_ASSIGN_OR_RETURN(f32, read_stacked(w, names));
  const int64_t total = static_cast<int64_t>(f32.size());
  const void* src = f32.data();
  std::vector<uint16_t> half;
  if (dtype != k::DType::kF32) {
    half.resize(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) half[i] = dtype == k::DType::kBF16 ? k::f32_to_bf16(f32[i]) : k::f32_to_f16(f32[i]);
    src = half.data();
  }
  void* dst = nullptr;
  FERRY_ASSIGN_OR_RETURN(dst, alloc<uint8_t>(total * static_cast<int64_t>(k::dtype_size(dtype))));
  FERRY_RETURN_IF_ERROR(upload(dst, src, static_cast<size_t>(total) * k::dtype_size(dtype)));
  return static_cast<const void*>(dst);
}

// The format, group size and zero points a quantized matrix of `k` input features gets from
// WeightLoader (without reading it: planned_device_bytes sizes the device from this).
CudaEngine::State::QuantizedLayout CudaEngine::State::plan_quantized(const ModelWeights& w, const std::string& name,
                                                                     int64_t k) const {
  QuantizedLayout l;
  l.format = wfmt;
  if (const QuantizedTensor* q = w.quantized(name);
      q != nullptr && q->config.bits == 4 && wfmt == k::WeightFormat::kInt4) {
    l.group_size = imported_int4_group(q->group_size);  // 0: the loader refuses it
    l.zeros = true;                                      // imported codes always carry zeros
    return l;
  }
  if (wfmt == k::WeightFormat::kInt4) {
    l.group_size = int4_group_for(k, options.weight_group_size);
    if (l.group_size == 0) l.format = k::WeightFormat::kInt8;
    l.zeros = l.group_size != 0 && options.weight_zero_points;
  }
  return l;
}

// A linear layer's stacked matrix in the weight format. Float formats: converted from the fp32
// values. int8 / int4: the matrices CpuEngine's WeightLoader builds (quantized at load, or GPTQ/AWQ
// codes as stored), one loader per stacked matrix so that its host copies are freed after the
// upload, stacked by rows (per-row scales and per-row groups: a stacked matrix is its parts).
Result<CudaEngine::State::Matrix> CudaEngine::State::upload_matrix(const ModelWeights& w,
                                                                   const std::vector<std::string>& names) {
  Matrix m;
  m.format = wfmt;
  if (!quantized(wfmt)) {
    FERRY_ASSIGN_OR_RETURN(m.data, upload_tensors(w, names, wdt));
    return m;
  }
  Stacked shape;
  FERRY_ASSIGN_OR_RETURN(shape, stacked_shape(w, names));
  const int64_t rows = shape.rows, kdim = shape.numel / shape.rows;
  const QuantizedLayout plan = plan_quantized(w, names[0], kdim);
  FERRY_CHECK(plan.format != k::WeightFormat::kInt4 || plan.group_size > 0);  // check_supported refused it
  const int64_t row_bytes = k::weight_data_bytes(plan.format, 1, kdim);
  const int64_t row_scales = plan.format == k::WeightFormat::kInt8 ? 1 : kdim / plan.group_size;
  uint8_t* d_data = nullptr;
  float* d_scales = nullptr;
  float* d_zeros = nullptr;
  FERRY_ASSIGN_OR_RETURN(d_data, alloc<uint8_t>(rows * row_bytes));
  FERRY_ASSIGN_OR_RETURN(d_scales, alloc<float>(rows * row_scales));
  if (plan.zeros) FERRY_ASSIGN_OR_RETURN(d_zeros, alloc<float>(rows * row_scales));
  m.format = plan.format;
  m.group_size = plan.group_size;
  m.data = d_data;
  m.scales = d_scales;
  m.zeros = d_zeros;
  if (dry_run) return m;
  WeightLoadOptions lo;
  lo.dtype = options.weight_dtype;
  lo.group_size = options.weight_group_size;
  lo.int4_zero_points = options.weight_zero_points;
  WeightLoader loader(w, lo);
  int64_t at = 0;
  for (const std::string& name : names) {
    k::WeightMatrix part;
    FERRY_ASSIGN_OR_RETURN(part, loader.matrix(name));
    if (part.format != plan.format || part.k != kdim || part.group_size != plan.group_size ||
        (part.zeros != nullptr) != plan.zeros) {
      return Status::Internal("CudaEngine: " + name + " loaded as " + k::weight_format_name(part.format) +
                              " with another layout than planned (or than the matrices stacked with it)");
    }
    FERRY_RETURN_IF_ERROR(upload(d_data + at * row_bytes, part.data, static_cast<size_t>(part.n * row_bytes)));
    const size_t scale_bytes = static_cast<size_t>(part.n * row_scales) * sizeof(float);
    FERRY_RETURN_IF_ERROR(upload(d_scales + at * row_scales, part.scales, scale_bytes));
    if (d_zeros != nullptr) FERRY_RETURN_IF_ERROR(upload(d_zeros + at * row_scales, part.zeros, scale_bytes));
    at += part.n;
  }
  return m;
}

Status CudaEngine::State::load_weights(const ModelWeights& w) {
  const ModelConfig& c = config;
  auto vec = [&](const std::string& name) -> Result<const float*> {
    const void* p = nullptr;
    FERRY_ASSIGN_OR_RETURN(p, upload_tensors(w, {name}, k::DType::kF32));
    return static_cast<const float*>(p);
  };
  FERRY_ASSIGN_OR_RETURN(embed, upload_tensors(w, {"model.embed_tokens.weight"}, embed_dtype));
  if (c.tie_word_embeddings && !quantized(wfmt)) {
    lm_head.format = wfmt;
    lm_head.data = embed;
  } else {  // int8 / int4: the lm_head is a quantized matrix even when tied, as on the CPU (layers.cc)
    FERRY_ASSIGN_OR_RETURN(lm_head, upload_matrix(w, {c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"}));
  }
  FERRY_ASSIGN_OR_RETURN(final_norm, vec("model.norm.weight"));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto n = [l](const char* suffix) { return layer_tensor_name(l, suffix); };
    Layer p;
    FERRY_ASSIGN_OR_RETURN(p.input_norm, vec(n("input_layernorm.weight")));
    FERRY_ASSIGN_OR_RETURN(p.qkv, upload_matrix(w, {n("self_attn.q_proj.weight"), n("self_attn.k_proj.weight"),
                                                    n("self_attn.v_proj.weight")}));
    if (c.qkv_bias) {
      const void* b = nullptr;
      FERRY_ASSIGN_OR_RETURN(b, upload_tensors(w, {n("self_attn.q_proj.bias"), n("self_attn.k_proj.bias"),
                                                   n("self_attn.v_proj.bias")}, k::DType::kF32));
      p.qkv_bias = static_cast<const float*>(b);
    }
    FERRY_ASSIGN_OR_RETURN(p.o, upload_matrix(w, {n("self_attn.o_proj.weight")}));
    if (c.o_bias) FERRY_ASSIGN_OR_RETURN(p.o_bias, vec(n("self_attn.o_proj.bias")));
    if (c.qk_norm) {
      FERRY_ASSIGN_OR_RETURN(p.q_norm, vec(n("self_attn.q_norm.weight")));
      FERRY_ASSIGN_OR_RETURN(p.k_norm, vec(n("self_attn.k_norm.weight")));
    }
    FERRY_ASSIGN_OR_RETURN(p.post_norm, vec(n("post_attention_layernorm.weight")));
    FERRY_ASSIGN_OR_RETURN(p.gate_up, upload_matrix(w, {n("mlp.gate_proj.weight"), n("mlp.up_proj.weight")}));
    FERRY_ASSIGN_OR_RETURN(p.down, upload_matrix(w, {n("mlp.down_proj.weight")}));
    layers.push_back(p);
  }
  std::vector<float> freq(static_cast<size_t>(c.head_dim / 2));
  k::rope_inv_freq(c.rope, c.head_dim, freq.data());
  float* d_freq = nullptr;
  FERRY_ASSIGN_OR_RETURN(d_freq, alloc<float>(c.head_dim / 2));
  FERRY_RETURN_IF_ERROR(upload(d_freq, freq.data(), freq.size() * sizeof(float)));
  inv_freq = d_freq;
  return Status::Ok();
}

Status CudaEngine::State::allocate_activations() {
  const ModelConfig& c = config;
  const int64_t t = options.max_num_tokens, s = options.max_num_seqs;
  const int64_t qkv_width = c.q_size() + 2 * c.kv_size(), inter = c.intermediate_size, hidden = c.hidden_size;
  FERRY_ASSIGN_OR_RETURN(x, alloc<float>(t * hidden));
  FERRY_ASSIGN_OR_RETURN(h, alloc<float>(t * hidden));
  FERRY_ASSIGN_OR_RETURN(delta, alloc<float>(t * hidden));
  FERRY_ASSIGN_OR_RETURN(qkv, alloc<float>(t * qkv_width));
  FERRY_ASSIGN_OR_RETURN(attn, alloc<float>(t * c.q_size()));
  FERRY_ASSIGN_OR_RETURN(gate_up, alloc<float>(t * 2 * inter));
  FERRY_ASSIGN_OR_RETURN(act, alloc<float>(t * inter));
  if (wdt != k::DType::kF32 || quantized(wfmt)) {
    const int64_t widest = std::max({hidden, c.q_size(), inter});
    FERRY_ASSIGN_OR_RETURN(x16, alloc<uint16_t>(t * widest));
  }
  if (quantized(wfmt) && t > quantized_gemv_max_rows()) {
    // The largest layer matrix widened to bf16 (the lm_head always runs the few-rows kernel).
    const int64_t max_elems = std::max({qkv_width * hidden, hidden * c.q_size(), 2 * inter * hidden, hidden * inter});
    w16_bytes = kc::quantized_gemm_w16_bytes(max_elems, 1);
    FERRY_ASSIGN_OR_RETURN(w16, alloc<uint8_t>(static_cast<int64_t>(w16_bytes)));
  }
  FERRY_ASSIGN_OR_RETURN(last, alloc<float>(s * hidden));
  FERRY_ASSIGN_OR_RETURN(logits, alloc<float>(s * c.vocab_size));
  FERRY_ASSIGN_OR_RETURN(tokens, alloc<int32_t>(s));
  FERRY_ASSIGN_OR_RETURN(sample_params, alloc<kc::SamplingRowParams>(s));
  FERRY_ASSIGN_OR_RETURN(d_meta, alloc<uint8_t>(static_cast<int64_t>(metadata_bytes())));
  if (!dry_run) {
    FERRY_ASSIGN_OR_RETURN(pinned_tokens, PinnedMemory::allocate(static_cast<size_t>(s) * sizeof(int32_t)));
    FERRY_ASSIGN_OR_RETURN(pinned_sample_params,
                           PinnedMemory::allocate(static_cast<size_t>(s) * sizeof(kc::SamplingRowParams)));
    // Optional: page-locked memory is a limited resource, and pageable memory still works.
    auto host_rows_memory = PinnedMemory::allocate(static_cast<size_t>(s * c.vocab_size) * sizeof(float));
    if (host_rows_memory.ok()) {
      pinned_logits = std::move(host_rows_memory).value();
    } else if (host_rows_memory.status().code() != StatusCode::kResourceExhausted) {
      return host_rows_memory.status();
    }
  }
  decode_ctx = options.decode_context_tokens > 0 ? options.decode_context_tokens
                                                : std::min<int64_t>(c.max_position_embeddings, 8192);
  decode_ws_bytes = kc::paged_attention_decode_workspace_bytes(s, c.num_heads, c.head_dim, decode_ctx);
  if (decode_ws_bytes > 0) FERRY_ASSIGN_OR_RETURN(decode_ws, alloc<uint8_t>(static_cast<int64_t>(decode_ws_bytes)));
  return Status::Ok();
}

// out[m, n] = in[m, kdim] . w[n, kdim]^T (+ bias): fp32 in and out; a 16-bit copy of `in` first when
// the weights are 16-bit; int8 / int4 weights through int8_matmul / int4_matmul (few rows: their
// kernels on the fp32 input; more: the weights widened into w16, `in` cast into x16, the bf16 GEMM).
Status CudaEngine::State::linear(float* out, const float* in, const Matrix& w, const float* bias, int64_t m, int64_t n,
                                 int64_t kdim) {
  if (quantized(w.format)) {
    const kc::QuantizedGemmWorkspace ws{w16, w16_bytes, x16, x16 != nullptr ? kc::quantized_gemm_x16_bytes(m, kdim) : 0};
    if (w.format == k::WeightFormat::kInt8) {
      return kc::int8_matmul(*gemm, out, in, static_cast<const int8_t*>(w.data), w.scales, bias, m, n, kdim, ws,
                             quantized_gemv_max_rows());
    }
    return kc::int4_matmul(*gemm, out, in, static_cast<const uint8_t*>(w.data), w.scales, w.zeros, w.group_size, bias,
                           m, n, kdim, ws, quantized_gemv_max_rows());
  }
  const void* xin = in;
  if (wdt != k::DType::kF32) {
    FERRY_RETURN_IF_ERROR(kc::cast(x16, wdt, in, k::DType::kF32, m * kdim, stream));
    xin = x16;
  }
  return gemm->matmul(out, k::DType::kF32, xin, w.data, wdt, bias, m, n, kdim);
}

namespace {
size_t align16(size_t n) { return (n + 15) & ~size_t{15}; }
}  // namespace

// The packed step metadata at its largest: max_num_tokens ids, positions, slots and logit rows,
// max_num_seqs + 1 query starts and max_num_seqs context lengths, each section 16-byte aligned.
size_t CudaEngine::State::metadata_bytes() const {
  const size_t t = static_cast<size_t>(options.max_num_tokens), s = static_cast<size_t>(options.max_num_seqs);
  return align16(t * 4) * 3 + align16(t * 8) + align16((s + 1) * 4) + align16(s * 4);
}

// Packs the step's metadata into the pinned staging buffer and copies it in one transfer (and the
// block tables in a second, row by row to their device stride), pointing d_token_ids ..
// d_context_lens into d_meta. The offsets depend only on the arrays' sizes, so the pointers of a
// graph step depend only on its bucket. The staging buffer is reused by the next step only after
// this one synchronized (step() waits for its results).
Status CudaEngine::State::upload_metadata(const HostMetadata& m) {
  uint8_t* h = staging.as<uint8_t>();
  size_t at = 0;
  auto put = [&](const void* src, size_t bytes) {
    const size_t offset = at;
    if (bytes > 0) std::memcpy(h + offset, src, bytes);
    at = align16(offset + bytes);
    return offset;
  };
  d_token_ids = reinterpret_cast<int32_t*>(d_meta + put(m.token_ids.data(), m.token_ids.size_bytes()));
  d_positions = reinterpret_cast<int32_t*>(d_meta + put(m.positions.data(), m.positions.size_bytes()));
  d_slots = reinterpret_cast<int64_t*>(d_meta + put(m.slots.data(), m.slots.size_bytes()));
  d_logit_rows = reinterpret_cast<int32_t*>(d_meta + put(m.logit_rows.data(), m.logit_rows.size_bytes()));
  d_query_start = reinterpret_cast<int32_t*>(d_meta + put(m.query_start.data(), m.query_start.size_bytes()));
  d_context_lens = reinterpret_cast<int32_t*>(d_meta + put(m.context_lens.data(), m.context_lens.size_bytes()));
  const size_t meta = at;
  FERRY_CHECK(meta <= metadata_bytes());
  const size_t tables = put(m.block_tables.data(), m.block_tables.size_bytes());
  FERRY_CHECK(at <= staging.bytes());
  FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_meta, h, meta, cudaMemcpyHostToDevice, stream));
  if (m.block_tables.empty()) return Status::Ok();
  FERRY_CHECK(m.table_row >= 1 && m.table_row <= m.table_stride && m.block_tables.size() % m.table_row == 0);
  const auto row_bytes = static_cast<size_t>(m.table_row) * sizeof(int32_t);
  FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(block_tables.as<int32_t>(), static_cast<size_t>(m.table_stride) * sizeof(int32_t),
                                               h + tables, row_bytes, row_bytes, m.block_tables.size() / m.table_row,
                                               cudaMemcpyHostToDevice, stream));
  return Status::Ok();
}

// The bucket whose graph runs this step, or 0 for an uncaptured step: graphs on, every sequence
// with exactly one query token (no drafts, no all_logits) and every context within the decode
// attention's workspace (a longer one takes the prefill kernel, whose grid follows the step).
int64_t CudaEngine::State::graph_bucket(const ForwardBatch& b) const {
  if (graphs == nullptr || b.sequences.empty() || layout.max_query_len != 1 ||
      layout.logit_rows.size() != b.sequences.size() || layout.max_context_len > decode_ctx) {
    return 0;
  }
  return graphs->bucket_for(static_cast<int64_t>(b.sequences.size()));
}

// The layout's arrays padded to `bucket` sequences of one token each (the block tables' rows as
// wide as the layout's; upload_metadata spreads them to the fixed stride). A padding row reads
// token 0 at position 0 with a context of one position in block 0 (finite values, whatever the
// cache holds) and writes no cache slot (slot -1); every kernel treats rows independently, so
// padding rows do not disturb real ones.
void CudaEngine::State::pad_decode_metadata(const ForwardBatch& b, int64_t bucket) {
  const auto n = static_cast<int64_t>(b.sequences.size());
  const auto pad = [bucket](auto& out, const auto& real, auto fill) {
    out.assign(real.begin(), real.end());
    out.resize(static_cast<size_t>(bucket), fill);
  };
  pad(padded.token_ids, b.token_ids, 0);
  pad(padded.positions, b.positions, 0);
  pad(padded.slots, layout.slots, int64_t{-1});
  pad(padded.context_lens, layout.context_lens, 1);
  padded.logit_rows.resize(static_cast<size_t>(bucket));
  padded.query_start.resize(static_cast<size_t>(bucket + 1));
  for (int64_t i = 0; i <= bucket; ++i) {
    if (i < bucket) padded.logit_rows[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    padded.query_start[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  }
  // Padding rows: block 0 (the layout pads its own rows with block 0 too).
  padded.block_tables.assign(layout.block_tables.begin(), layout.block_tables.begin() + n * layout.max_blocks);
  padded.block_tables.resize(static_cast<size_t>(bucket * layout.max_blocks), 0);
}

// The captured part of a decode step: the forward pass over the bucket's rows and their logits.
Status CudaEngine::State::forward_logits(int64_t bucket) {
  FERRY_RETURN_IF_ERROR(forward(bucket));
  return logits_rows(0, bucket, bucket);
}

// h = rmsnorm(x) on entry; q|k|v, q/k norms, RoPE, cache write, paged attention, o; then
// x += o(...), h = rmsnorm(x) with the post-attention norm.
Status CudaEngine::State::attention_layer(int64_t l, int64_t n) {
  const ModelConfig& c = config;
  const Layer& p = layers[static_cast<size_t>(l)];
  const LayerCache& kv = cache_layers[static_cast<size_t>(l)];
  const int64_t qkv_width = c.q_size() + 2 * c.kv_size();
  float* q = qkv;
  float* kk = q + c.q_size();
  float* v = kk + c.kv_size();
  FERRY_RETURN_IF_ERROR(linear(qkv, h, p.qkv, p.qkv_bias, n, qkv_width, c.hidden_size));
  if (c.qk_norm) {
    FERRY_RETURN_IF_ERROR(kc::head_rms_norm(q, p.q_norm, n, qkv_width, c.num_heads, c.head_dim, c.rms_norm_eps, stream));
    FERRY_RETURN_IF_ERROR(
        kc::head_rms_norm(kk, p.k_norm, n, qkv_width, c.num_kv_heads, c.head_dim, c.rms_norm_eps, stream));
  }
  FERRY_RETURN_IF_ERROR(kc::rope(q, kk, d_positions, inv_freq, n, qkv_width, qkv_width, c.num_heads, c.num_kv_heads,
                                 c.head_dim, stream));
  const int64_t num_slots = num_blocks * block_size;
  if (cache_dtype == k::KvCacheDType::kInt8) {
    FERRY_RETURN_IF_ERROR(kc::kv_cache_write_int8(static_cast<int8_t*>(kv.k), static_cast<int8_t*>(kv.v), kv.k_scales,
                                                  kv.v_scales, kk, v, d_slots, n, num_slots, qkv_width, qkv_width,
                                                  c.num_kv_heads, c.head_dim, stream));
  } else if (cache_dtype == k::KvCacheDType::kBF16) {
    FERRY_RETURN_IF_ERROR(kc::kv_cache_write_bf16(static_cast<uint16_t*>(kv.k), static_cast<uint16_t*>(kv.v), kk, v,
                                                  d_slots, n, num_slots, qkv_width, qkv_width, c.num_kv_heads,
                                                  c.head_dim, stream));
  } else {
    FERRY_RETURN_IF_ERROR(kc::kv_cache_write(static_cast<float*>(kv.k), static_cast<float*>(kv.v), kk, v, d_slots, n,
                                             num_slots, qkv_width, qkv_width, c.num_kv_heads, c.head_dim, stream));
  }
  k::PagedAttentionArgs a{};
  a.out = attn;
  a.q = q;
  a.k_cache = kv.k;
  a.v_cache = kv.v;
  a.k_scales = kv.k_scales;
  a.v_scales = kv.v_scales;
  a.kv_dtype = cache_dtype;
  a.query_start = d_query_start;
  a.context_lens = d_context_lens;
  a.block_tables = block_tables.as<int32_t>();
  a.num_seqs = shape.num_seqs;
  a.num_tokens = n;
  a.max_blocks_per_seq = shape.max_blocks_per_seq;
  a.q_stride = qkv_width;
  a.num_q_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.block_size = block_size;
  a.num_blocks = num_blocks;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  a.sliding_window = c.layer_windows.empty() ? 0 : c.layer_windows[static_cast<size_t>(l)];
  a.logit_softcap = c.attn_logit_softcap;
  if (shape.decode) {
    FERRY_RETURN_IF_ERROR(kc::paged_attention_decode(a, shape.max_context_len, decode_ws, decode_ws_bytes, stream));
  } else {
    FERRY_RETURN_IF_ERROR(kc::paged_attention_prefill(a, shape.max_query_len, stream));
  }
  FERRY_RETURN_IF_ERROR(linear(delta, attn, p.o, p.o_bias, n, c.hidden_size, c.q_size()));
  return kc::add_rms_norm(h, x, delta, p.post_norm, n, c.hidden_size, c.rms_norm_eps, stream);
}

// h = rmsnorm(x) with the post-attention norm on entry; x += down(silu(gate(h)) * up(h)), then
// h = rmsnorm(x) with the next layer's input norm (the final norm after the last layer).
Status CudaEngine::State::mlp_layer(int64_t l, int64_t n) {
  const ModelConfig& c = config;
  const Layer& p = layers[static_cast<size_t>(l)];
  const int64_t inter = c.intermediate_size;
  FERRY_RETURN_IF_ERROR(linear(gate_up, h, p.gate_up, nullptr, n, 2 * inter, c.hidden_size));
  FERRY_RETURN_IF_ERROR(kc::silu_and_mul(act, gate_up, n, inter, stream));
  FERRY_RETURN_IF_ERROR(linear(delta, act, p.down, nullptr, n, c.hidden_size, inter));
  const float* next_norm = l + 1 < c.num_layers ? layers[static_cast<size_t>(l + 1)].input_norm : final_norm;
  return kc::add_rms_norm(h, x, delta, next_norm, n, c.hidden_size, c.rms_norm_eps, stream);
}

// Every layer over the step's tokens; the final-normed hidden states end in h.
Status CudaEngine::State::forward(int64_t n) {
  const ModelConfig& c = config;
  FERRY_RETURN_IF_ERROR(kc::embedding(x, embed, embed_dtype, c.vocab_size, c.hidden_size, d_token_ids, n, stream));
  FERRY_RETURN_IF_ERROR(
      kc::add_rms_norm(h, x, nullptr, layers[0].input_norm, n, c.hidden_size, c.rms_norm_eps, stream));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    FERRY_RETURN_IF_ERROR(attention_layer(l, n));
    FERRY_RETURN_IF_ERROR(mlp_layer(l, n));
  }
  return Status::Ok();
}

// logits[0 .. num_rows) = lm_head(h[logit_rows[row_begin + i]]).
Status CudaEngine::State::logits_rows(int64_t row_begin, int64_t num_rows, int64_t num_tokens) {
  const ModelConfig& c = config;
  FERRY_RETURN_IF_ERROR(kc::gather_rows(last, h, d_logit_rows + row_begin, num_rows, num_tokens, c.hidden_size, stream));
  return linear(logits, last, lm_head, nullptr, num_rows, c.vocab_size, c.hidden_size);
}

// An uncaptured step: metadata at the step's sizes, kernel arguments from its layout.
Status CudaEngine::State::run_forward(const ForwardBatch& b) {
  const StepLayout& l = layout;
  FERRY_RETURN_IF_ERROR(upload_metadata({b.token_ids, b.positions, l.slots, l.logit_rows, l.query_start, l.context_lens,
                                         l.block_tables, l.max_blocks, l.max_blocks}));
  shape.num_tokens = static_cast<int64_t>(b.token_ids.size());
  shape.num_seqs = static_cast<int64_t>(l.context_lens.size());
  shape.max_blocks_per_seq = l.max_blocks;
  shape.max_context_len = l.max_context_len;
  shape.max_query_len = l.max_query_len;
  shape.decode = l.max_query_len == 1 && kc::paged_attention_decode_workspace_bytes(shape.num_seqs, config.num_heads,
                                                                                     config.head_dim, l.max_context_len) <=
                                             decode_ws_bytes;
  return forward(shape.num_tokens);
}

// A graph step: the padded metadata goes to the buffers the bucket's graph reads (the copies run
// before the replay, uncaptured), then the graph, captured at the bucket's first step. Its kernel
// arguments depend on the bucket alone: the decode attention is sized for decode_ctx (partitions
// past a sequence's context return at once) and the block tables have the fixed stride.
Status CudaEngine::State::run_decode_graph(const ForwardBatch& b, int64_t bucket) {
  pad_decode_metadata(b, bucket);
  const Padded& p = padded;
  FERRY_RETURN_IF_ERROR(upload_metadata({p.token_ids, p.positions, p.slots, p.logit_rows, p.query_start,
                                         p.context_lens, p.block_tables, layout.max_blocks, max_blocks_per_seq}));
  shape.num_tokens = bucket;
  shape.num_seqs = bucket;
  shape.max_blocks_per_seq = max_blocks_per_seq;
  shape.max_context_len = decode_ctx;
  shape.max_query_len = 1;
  shape.decode = true;
  return graphs->launch(bucket, stream, [this, bucket] { return forward_logits(bucket); });
}

Status CudaEngine::check_supported(const ModelConfig& c, const ModelWeights& weights, WeightDType weight_dtype) {
  if (!is_llama_family(c.architecture_name)) {
    return Status::Unimplemented("the CUDA engine runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and "
                                 "Qwen3ForCausalLM only, not " + c.architecture_name);
  }
  if (resolve_weight_format(c, weights, weight_dtype) == k::WeightFormat::kInt4) {
    for (const WeightSpec& spec : weights.specs()) {
      const QuantizedTensor* q = weights.quantized(spec.name);
      if (q != nullptr && q->config.bits == 4 && imported_int4_group(q->group_size) == 0) {
        return Status::Unimplemented("int4 checkpoint group size " + std::to_string(q->group_size) + " of " + spec.name +
                                     " (supported: 32, 64, 128 or a multiple of 128)");
      }
    }
  }
  if (c.final_logit_softcap != 0.0f) {
    return Status::Unimplemented("the CUDA engine has no final logit soft-capping yet");
  }
  if (c.attention_scale != 0.0f) {
    return Status::Unimplemented("the CUDA engine supports only the 1/sqrt(head_dim) attention scale");
  }
  if (c.rotary_dim != c.head_dim || c.longrope || c.local_rope) {
    return Status::Unimplemented("the CUDA engine has no partial rotary, longrope or local RoPE yet");
  }
  if (c.head_dim > 256 || c.head_dim % 2 != 0) {
    return Status::Unimplemented("the CUDA attention kernels take an even head_dim of at most 256, not " +
                                 std::to_string(c.head_dim));
  }
  return Status::Ok();
}

CudaEngine::CudaEngine(std::unique_ptr<State> state) : s_(std::move(state)) {}
CudaEngine::~CudaEngine() {
  if (s_ && s_->stream != nullptr) {
    (void)cudaSetDevice(s_->device);
    (void)cudaStreamSynchronize(s_->stream);
  }
}

// Checks what create() checks before touching a device, and sets the formats.
Status CudaEngine::State::init(const ModelConfig& c, const ModelWeights& weights, const CudaEngineOptions& o) {
  FERRY_RETURN_IF_ERROR(check_supported(c, weights, o.weight_dtype));
  if (o.max_num_tokens < 1 || o.max_num_seqs < 1 || o.max_num_seqs > o.max_num_tokens) {
    return Status::InvalidArgument("CudaEngine: need 1 <= max_num_seqs <= max_num_tokens");
  }
  config = c;
  options = o;
  device = o.device;
  wfmt = resolve_weight_format(c, weights, o.weight_dtype);
  wdt = float_dtype(wfmt);
  embed_dtype = embedding_dtype(weights, wfmt);
  return Status::Ok();
}

Result<int64_t> CudaEngine::planned_device_bytes(const ModelConfig& config, const ModelWeights& weights,
                                                 const CudaEngineOptions& options, int64_t block_size) {
  if (block_size < 1) return Status::InvalidArgument("KV block size must be >= 1");
  State s;
  s.dry_run = true;
  FERRY_RETURN_IF_ERROR(s.init(config, weights, options));
  FERRY_RETURN_IF_ERROR(s.load_weights(weights));
  FERRY_RETURN_IF_ERROR(s.allocate_activations());
  const int64_t max_blocks = (config.max_position_embeddings + block_size - 1) / block_size;
  return s.owned_bytes + static_cast<int64_t>(kc::CublasGemm::kDefaultWorkspaceBytes) +
         options.max_num_seqs * max_blocks * static_cast<int64_t>(sizeof(int32_t));
}

Result<std::unique_ptr<CudaEngine>> CudaEngine::create(const ModelConfig& config, const ModelWeights& weights,
                                                       const CudaEngineOptions& options) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return Status::Unavailable("no CUDA device is present");
  }
  if (options.device < 0 || options.device >= count) {
    return Status::InvalidArgument("CUDA device " + std::to_string(options.device) + " does not exist (" +
                                   std::to_string(count) + " present)");
  }
  auto s = std::make_unique<State>();
  FERRY_RETURN_IF_ERROR(s->init(config, weights, options));
  FERRY_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  // Non-blocking: the legacy stream (another thread's cudaMemcpy, say) must not join this stream's
  // work, which would invalidate a decode graph capture (cudaErrorStreamCaptureImplicit). Hence
  // create() waits for its uploads explicitly, and the KV cache is cleared on this stream.
  FERRY_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  FERRY_ASSIGN_OR_RETURN(s->gemm, kc::CublasGemm::create(s->stream));
  FERRY_RETURN_IF_ERROR(s->load_weights(weights));
  s->weight_bytes = s->owned_bytes;
  FERRY_RETURN_IF_ERROR(s->allocate_activations());
  s->sampler = std::make_unique<Sampler>(static_cast<int32_t>(config.vocab_size));
  // The uploads are done (or failed) here: the non-blocking engine stream does not wait for them.
  FERRY_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
  if (options.cuda_graphs) s->graphs = std::make_unique<DecodeGraphs>(options.max_num_seqs);
  return std::unique_ptr<CudaEngine>(new CudaEngine(std::move(s)));
}

const ModelConfig& CudaEngine::config() const { return s_->config; }
int64_t CudaEngine::num_kv_blocks() const { return s_->num_blocks; }
k::WeightFormat CudaEngine::weight_format() const { return s_->wfmt; }
int64_t CudaEngine::device_bytes() const {
  return s_->owned_bytes + static_cast<int64_t>(s_->cache.bytes() + s_->block_tables.bytes());
}
int64_t CudaEngine::weight_bytes() const { return s_->weight_bytes; }
int64_t CudaEngine::device_sampled_seqs() const { return s_->device_sampled; }
int64_t CudaEngine::host_sampled_seqs() const { return s_->host_sampled; }
int64_t CudaEngine::graphs_captured() const { return s_->graphs ? s_->graphs->num_captured() : 0; }
int64_t CudaEngine::graph_replays() const { return s_->graphs ? s_->graphs->num_replayed() : 0; }
int64_t CudaEngine::graphs_held() const { return s_->graphs ? s_->graphs->num_graphs() : 0; }

int64_t CudaEngine::kv_block_bytes(int64_t block_size, k::KvCacheDType dtype) const {
  const ModelConfig& c = s_->config;
  return 2 * c.num_layers * block_size * c.num_kv_heads * k::kv_cache_bytes_per_head(dtype, c.head_dim);
}

Result<int64_t> CudaEngine::allocate_kv_cache(const KvCacheOptions& o) {
  State& s = *s_;
  const ModelConfig& c = s.config;
  if (o.block_size < 1) return Status::InvalidArgument("KV block size must be >= 1");
  FERRY_CUDA_RETURN_IF_ERROR(cudaSetDevice(s.device));  // the current device is per host thread
  const int64_t per_block = kv_block_bytes(o.block_size, o.dtype);
  const int64_t blocks = o.num_blocks > 0 ? o.num_blocks : o.budget_bytes / per_block;
  if (blocks < 1) {
    return Status::InvalidArgument("the KV cache budget (" + std::to_string(o.budget_bytes) +
                                   " bytes) is too small for one block of " + std::to_string(per_block) + " bytes");
  }
  FERRY_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s.stream));  // no step may still read the old cache
  if (s.graphs != nullptr) s.graphs->clear();  // they hold the old cache's and block tables' pointers
  s.cache.reset();
  s.block_tables.reset();
  s.cache_layers.clear();
  s.num_blocks = 0;
  const int64_t max_blocks = (c.max_position_embeddings + o.block_size - 1) / o.block_size;
  FERRY_ASSIGN_OR_RETURN(s.block_tables, DeviceMemory::allocate(static_cast<size_t>(s.options.max_num_seqs * max_blocks) *
                                                                sizeof(int32_t)));
  FERRY_ASSIGN_OR_RETURN(s.staging,
                         PinnedMemory::allocate(s.metadata_bytes() +
                                                align16(static_cast<size_t>(s.options.max_num_seqs * max_blocks) * sizeof(int32_t))));
  FERRY_ASSIGN_OR_RETURN(s.cache, DeviceMemory::allocate(static_cast<size_t>(blocks * per_block)));
  FERRY_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(s.cache.as<void>(), 0, s.cache.bytes(), s.stream));
  // Per layer: K values, V values, then (int8) K scales, V scales.
  const int64_t slots_heads = blocks * o.block_size * c.num_kv_heads;
  const int64_t value_bytes =
      slots_heads * c.head_dim * (o.dtype == k::KvCacheDType::kInt8 ? 1 : (o.dtype == k::KvCacheDType::kBF16 ? 2 : 4));
  const int64_t scale_bytes = o.dtype == k::KvCacheDType::kInt8 ? slots_heads * 4 : 0;
  uint8_t* at = s.cache.as<uint8_t>();
  for (int64_t l = 0; l < c.num_layers; ++l) {
    State::LayerCache lc;
    lc.k = at;
    lc.v = at + value_bytes;
    at += 2 * value_bytes;
    if (scale_bytes > 0) {
      lc.k_scales = reinterpret_cast<float*>(at);
      lc.v_scales = reinterpret_cast<float*>(at + scale_bytes);
      at += 2 * scale_bytes;
    }
    s.cache_layers.push_back(lc);
  }
  s.cache_dtype = o.dtype;
  s.block_size = o.block_size;
  s.num_blocks = blocks;
  s.max_blocks_per_seq = max_blocks;
  return blocks;
}

Status CudaEngine::step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
                        StepOutput* out) {
  State& s = *s_;
  const ModelConfig& c = s.config;
  if (s.num_blocks == 0) return Status::InvalidArgument("no KV cache allocated");
  FERRY_RETURN_IF_ERROR(validate_batch(batch, c, s.block_size, s.num_blocks));
  // The current device is per host thread, and the instance's loop thread is not the one that
  // created the engine.
  FERRY_CUDA_RETURN_IF_ERROR(cudaSetDevice(s.device));
  FERRY_RETURN_IF_ERROR(validate_sampling(batch, sampling));
  FERRY_RETURN_IF_ERROR(validate_prompt_logprobs(batch, static_cast<int32_t>(s.config.vocab_size)));
  const int64_t num_tokens = static_cast<int64_t>(batch.token_ids.size());
  const int64_t num_seqs = static_cast<int64_t>(batch.sequences.size());
  if (num_tokens > s.options.max_num_tokens || num_seqs > s.options.max_num_seqs) {
    return Status::InvalidArgument("batch: " + std::to_string(num_tokens) + " tokens / " + std::to_string(num_seqs) +
                                   " sequences exceed the CUDA engine's max_num_tokens " +
                                   std::to_string(s.options.max_num_tokens) + " / max_num_seqs " +
                                   std::to_string(s.options.max_num_seqs));
  }
  s.layout.build(batch, s.block_size);
  const int64_t bucket = s.graph_bucket(batch);
  if (bucket > 0) {
    FERRY_RETURN_IF_ERROR(s.run_decode_graph(batch, bucket));
  } else {
    FERRY_RETURN_IF_ERROR(s.run_forward(batch));
  }

  // Logits, max_num_seqs rows per lm_head GEMM; rows go to the host only when asked for.
  const int64_t rows = static_cast<int64_t>(s.layout.logit_rows.size());
  const int64_t vocab = c.vocab_size;
  if (return_logits) {
    out->logits.logits.resize(static_cast<size_t>(rows * vocab));
    out->logits.num_rows = rows;
    out->logits.vocab = vocab;
  }
  // Sampling, per sequence: on the device when samples_on_device (one row, nothing but temperature /
  // min_p / top_k / top_p), else on the host. Only host-sampled rows come to the host, unless
  // return_logits asks for all of them.
  FERRY_RETURN_IF_ERROR(s.plan_sampling(batch, sampling, return_logits, out));
  for (int64_t r0 = 0; r0 < rows; r0 += s.options.max_num_seqs) {
    const int64_t nr = std::min(s.options.max_num_seqs, rows - r0);
    if (bucket == 0) FERRY_RETURN_IF_ERROR(s.logits_rows(r0, nr, num_tokens));  // else the graph computed them
    FERRY_RETURN_IF_ERROR(s.sample_on_device(r0, nr));
    if (return_logits) {
      FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out->logits.logits.data() + r0 * vocab, s.logits,
                                                 static_cast<size_t>(nr * vocab) * sizeof(float),
                                                 cudaMemcpyDeviceToHost, s.stream));
    } else {
      FERRY_RETURN_IF_ERROR(s.copy_host_rows(batch, r0, nr));
    }
  }
  if (!s.device_rows.empty()) {
    const int64_t num_tokens_back = s.argmax_only ? rows : static_cast<int64_t>(s.device_rows.size());
    FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(s.pinned_tokens.as<int32_t>(), s.tokens,
                                               static_cast<size_t>(num_tokens_back) * sizeof(int32_t),
                                               cudaMemcpyDeviceToHost, s.stream));
  }
  FERRY_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s.stream));
  s.finish_sampling(batch, sampling, out);
  return s.score_prompts(batch, out);
}

// Decides where each sequence is sampled. Device rows: u = rng.uniform() drawn now for each
// sampled (non-greedy) one, exactly the one draw Sampler::sample would make, and the cuda::sample
// entries uploaded in row order (one small copy); or, when every sampling sequence is plain
// greedy, the arg max kernel over all rows (as many as sequences then: no drafts). Host rows:
// host_rows points each host sequence at where its rows will be: out->logits under return_logits,
// else packed in sequence order into pinned_logits, or into host_logits when they are more than it
// holds.
Status CudaEngine::State::plan_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                                        bool return_logits, StepOutput* out) {
  const int64_t vocab = config.vocab_size;
  host_rows.assign(sampling.size(), nullptr);
  host_first_row.assign(sampling.size(), -1);
  device_rows.clear();
  num_host_rows = 0;
  bool all_greedy = true;
  auto* entries = pinned_sample_params.as<kc::SamplingRowParams>();
  int64_t row = 0;
  for (size_t q = 0; q < sampling.size(); ++q) {
    const int32_t k = batch.sequences[q].num_draft_tokens;
    const SamplingSequence& seq = sampling[q];
    if (seq.params != nullptr && samples_on_device(seq, k)) {
      const SamplingParams& p = *seq.params;
      kc::SamplingRowParams e;
      e.row = static_cast<int32_t>(row % options.max_num_seqs);  // within its lm_head chunk
      e.temperature = p.temperature;
      e.top_k = p.top_k;
      e.top_p = p.top_p;
      e.min_p = p.min_p;
      if (!p.is_greedy()) {
        FERRY_CHECK(seq.rng != nullptr);
        e.u = seq.rng->uniform();
      }
      all_greedy = all_greedy && device_greedy(seq, k);
      entries[device_rows.size()] = e;
      device_rows.push_back({q, row});
    } else if (seq.params != nullptr) {
      host_first_row[q] = num_host_rows;
      num_host_rows += 1 + k;
      all_greedy = false;
    }
    row += 1 + k;
  }
  argmax_only = !device_rows.empty() && all_greedy;
  if (!device_rows.empty() && !argmax_only) {
    FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(sample_params, entries,
                                               device_rows.size() * sizeof(kc::SamplingRowParams),
                                               cudaMemcpyHostToDevice, stream));
  }
  float* packed = nullptr;
  if (!return_logits && num_host_rows > 0) {
    if (num_host_rows <= options.max_num_seqs && pinned_logits.bytes() > 0) {
      packed = pinned_logits.as<float>();
    } else {
      host_logits.resize(static_cast<size_t>(num_host_rows * vocab));
      packed = host_logits.data();
    }
  }
  row = 0;
  for (size_t q = 0; q < sampling.size(); ++q) {
    if (host_first_row[q] >= 0) {
      host_rows[q] = return_logits ? out->logits.logits.data() + row * vocab : packed + host_first_row[q] * vocab;
    }
    row += 1 + batch.sequences[q].num_draft_tokens;
  }
  return Status::Ok();
}

// Samples the device rows among logits rows [row_begin, row_begin + num_rows) (an lm_head chunk,
// whose logits are in `logits`) into tokens.
Status CudaEngine::State::sample_on_device(int64_t row_begin, int64_t num_rows) {
  if (device_rows.empty()) return Status::Ok();
  if (argmax_only) {
    // One row per sequence, all in the one lm_head chunk: tokens[q] is sequence q's.
    return kc::argmax(tokens, logits, num_rows, config.vocab_size, stream);
  }
  // Entries are in row order, so this chunk's are contiguous; tokens[i] is entry i's.
  const auto in_chunk = [&](const DeviceRow& d) { return d.row >= row_begin && d.row < row_begin + num_rows; };
  const auto first = std::find_if(device_rows.begin(), device_rows.end(), in_chunk);
  const auto last = std::find_if_not(first, device_rows.end(), in_chunk);
  const int64_t begin = first - device_rows.begin(), count = last - first;
  if (count == 0) return Status::Ok();
  return kc::sample(tokens + begin, logits, sample_params + begin, count, config.vocab_size, stream);
}

// Copies the host-sampled rows among logits rows [row_begin, row_begin + num_rows) (the chunk in
// `logits`) to where host_rows points: one copy per run of rows adjacent on both sides.
Status CudaEngine::State::copy_host_rows(const ForwardBatch& batch, int64_t row_begin, int64_t num_rows) {
  if (num_host_rows == 0) return Status::Ok();
  const int64_t vocab = config.vocab_size, row_end = row_begin + num_rows;
  int64_t run_src = -1, run_len = 0;  // a pending run: its chunk-relative source row, its length
  float* run_dst = nullptr;           // and its destination
  auto flush = [&]() -> Status {
    if (run_len > 0) {
      FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(run_dst, logits + run_src * vocab,
                                                 static_cast<size_t>(run_len * vocab) * sizeof(float),
                                                 cudaMemcpyDeviceToHost, stream));
    }
    run_len = 0;
    return Status::Ok();
  };
  int64_t row = 0;
  for (size_t q = 0; q < host_rows.size() && row < row_end; ++q) {
    const int64_t n = 1 + batch.sequences[q].num_draft_tokens;
    const int64_t a = std::max(row, row_begin), b = std::min(row + n, row_end);
    if (host_rows[q] != nullptr && a < b) {
      const int64_t src = a - row_begin;
      float* dst = host_rows[q] + (a - row) * vocab;
      if (run_len > 0 && src == run_src + run_len && dst == run_dst + run_len * vocab) {
        run_len += b - a;
      } else {
        FERRY_RETURN_IF_ERROR(flush());
        run_src = src, run_dst = dst, run_len = b - a;
      }
    }
    row += n;
  }
  return flush();
}

// After the step's synchronization: the host sequences through sample_on_host, the device tokens
// into their samples (no logprobs: device rows have none to give), and the counters.
void CudaEngine::State::finish_sampling(const ForwardBatch& batch, std::span<const SamplingSequence> sampling,
                                        StepOutput* out) {
  sample_on_host(*sampler, batch, sampling, host_rows, &run, out);
  const int32_t* got = pinned_tokens.as<int32_t>();
  for (size_t i = 0; i < device_rows.size(); ++i) {
    SampleResult& r = out->samples[device_rows[i].seq];
    r.token = got[argmax_only ? device_rows[i].seq : i];
    r.logprob = 0.0f;
    r.rank = 0;
    r.top_logprobs.clear();
  }
  device_sampled += static_cast<int64_t>(device_rows.size());
  for (const float* r : host_rows) host_sampled += r != nullptr ? 1 : 0;
}

// Prompt logprobs, after sampling (the logits buffer is free again): a sequence's query rows are
// contiguous in h, so max_num_seqs of them at a time go through lm_head and to the host, where
// score_prompt_row keeps the prompt token's logprob, rank and the top N of each.
Status CudaEngine::State::score_prompts(const ForwardBatch& batch, StepOutput* out) {
  size_t num_rows = 0;
  for (const PromptLogprobsInput& p : batch.prompt_logprobs) num_rows += p.targets.size();
  out->prompt_logprobs.resize(num_rows);
  if (num_rows == 0) return Status::Ok();
  const int64_t vocab = config.vocab_size, hidden = config.hidden_size;
  host_prompt_logits.resize(static_cast<size_t>(options.max_num_seqs * vocab));
  size_t row = 0;
  for (const PromptLogprobsInput& p : batch.prompt_logprobs) {
    const int64_t first = batch.sequences[static_cast<size_t>(p.sequence)].query_start + p.first;
    const auto num = static_cast<int64_t>(p.targets.size());
    for (int64_t r0 = 0; r0 < num; r0 += options.max_num_seqs) {
      const int64_t n = std::min(options.max_num_seqs, num - r0);
      FERRY_RETURN_IF_ERROR(linear(logits, h + (first + r0) * hidden, lm_head, nullptr, n, vocab, hidden));
      FERRY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_prompt_logits.data(), logits, static_cast<size_t>(n * vocab) * sizeof(float),
                                                 cudaMemcpyDeviceToHost, stream));
      FERRY_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
      for (int64_t i = 0; i < n; ++i) {
        score_prompt_row(std::span<const float>(host_prompt_logits.data() + i * vocab, static_cast<size_t>(vocab)),
                         p.targets[static_cast<size_t>(r0 + i)], p.num_top, &out->prompt_logprobs[row++]);
      }
    }
  }
  return Status::Ok();
}

}  // namespace ferry::llm
