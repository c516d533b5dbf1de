#include "backend/llm/engine/cpu_engine.h"

#include <algorithm>
#include <new>

#include "backend/llm/engine/host_sampling.h"
#include "backend/llm/engine/prompt_logprobs.h"

namespace ferry::llm {

namespace k = ferry::kernels;

CpuEngine::CpuEngine(std::shared_ptr<const CausalLM> model, CpuEngineOptions options) : model_(std::move(model)) {
  ctx_.backend = options.backend;
  if (options.num_threads > 0) pool_ = std::make_unique<k::ThreadPool>(options.num_threads);
  ctx_.pool = pool_.get();
  sampler_ = std::make_unique<Sampler>(static_cast<int32_t>(model_->config().vocab_size));
}

Result<std::unique_ptr<CpuEngine>> CpuEngine::create(std::shared_ptr<const CausalLM> model, CpuEngineOptions options) {
  if (options.backend == k::Backend::kCuda) return Status::InvalidArgument("CpuEngine cannot run the CUDA backend");
  if (model == nullptr) return Status::InvalidArgument("CpuEngine needs a loaded model");
  return std::unique_ptr<CpuEngine>(new CpuEngine(std::move(model), options));
}

Result<std::unique_ptr<CpuEngine>> CpuEngine::create(const ModelConfig& config, const ModelWeights& weights,
                                                     CpuEngineOptions options, const WeightLoadOptions& load) {
  auto model = load_causal_lm(config, weights, load);
  if (!model.ok()) return model.status();
  return create(std::move(model).value(), options);
}

namespace {

KvCacheShape cache_shape(const ModelConfig& c, int64_t num_blocks, int64_t block_size, k::KvCacheDType dtype) {
  KvCacheShape s;
  s.dtype = dtype;
  s.num_layers = c.num_layers;
  s.num_blocks = num_blocks;
  s.block_size = block_size;
  s.num_kv_heads = c.num_kv_heads;
  s.head_dim = c.head_dim;
  return s;
}

}  // namespace

int64_t CpuEngine::kv_block_bytes(int64_t block_size, k::KvCacheDType dtype) const {
  return cache_shape(config(), 1, block_size, dtype).bytes_per_block();
}

Result<int64_t> CpuEngine::allocate_kv_cache(const KvCacheOptions& o) {
  if (o.block_size < 1) return Status::InvalidArgument("KV block size must be >= 1");
  const int64_t per_block = kv_block_bytes(o.block_size, o.dtype);
  const int64_t blocks = o.num_blocks > 0 ? o.num_blocks : o.budget_bytes / per_block;
  if (blocks < 1) {
    return Status::InvalidArgument("the KV cache budget (" + std::to_string(o.budget_bytes) +
                                   " bytes) is too small for one block of " + std::to_string(per_block) + " bytes");
  }
  cache_.reset();
  auto cache = KvCacheStorage::create(cache_shape(config(), blocks, o.block_size, o.dtype));
  if (!cache.ok()) return cache.status();
  cache_ = std::make_unique<KvCacheStorage>(std::move(cache).value());
  kv_layers_.assign(static_cast<size_t>(config().num_layers), LayerKv{});
  for (int64_t l = 0; l < config().num_layers; ++l) {
    LayerKv& lk = kv_layers_[static_cast<size_t>(l)];
    switch (o.dtype) {
      case k::KvCacheDType::kF32:
        lk.k = cache_->k(l);
        lk.v = cache_->v(l);
        break;
      case k::KvCacheDType::kBF16:
        lk.k = cache_->k_bf16(l);
        lk.v = cache_->v_bf16(l);
        break;
      case k::KvCacheDType::kInt8:
        lk.k = cache_->k_int8(l);
        lk.v = cache_->v_int8(l);
        lk.k_scales = cache_->k_scales(l);
        lk.v_scales = cache_->v_scales(l);
        break;
    }
  }
  kv_.dtype = o.dtype;
  kv_.block_size = o.block_size;
  kv_.num_blocks = blocks;
  kv_.layers = kv_layers_.data();
  return blocks;
}

Status CpuEngine::step(const ForwardBatch& batch, std::span<const SamplingSequence> sampling, bool return_logits,
                       StepOutput* out) {
  if (cache_ == nullptr) return Status::InvalidArgument("no KV cache allocated");
  FERRY_RETURN_IF_ERROR(validate_batch(batch, config(), cache_->shape().block_size, cache_->shape().num_blocks));
  FERRY_RETURN_IF_ERROR(validate_sampling(batch, sampling));
  FERRY_RETURN_IF_ERROR(validate_prompt_logprobs(batch, static_cast<int32_t>(config().vocab_size)));
  const ModelConfig& c = config();
  layout_.build(batch, cache_->shape().block_size);
  StepMetadata m;
  m.num_tokens = static_cast<int64_t>(batch.token_ids.size());
  m.num_seqs = static_cast<int64_t>(batch.sequences.size());
  m.token_ids = batch.token_ids.data();
  m.positions = batch.positions.data();
  m.slots = layout_.slots.data();
  m.query_start = layout_.query_start.data();
  m.context_lens = layout_.context_lens.data();
  m.block_tables = layout_.block_tables.data();
  m.max_blocks_per_seq = layout_.max_blocks;
  model_->forward(ctx_, m, kv_, ws_);

  // Project only the rows whose logits are wanted.
  const int64_t rows = static_cast<int64_t>(layout_.logit_rows.size());
  if (static_cast<int64_t>(last_.size()) < rows * c.hidden_size) last_.resize(static_cast<size_t>(rows * c.hidden_size));
  k::gather_rows(ctx_, last_.data(), ws_.hidden(), layout_.logit_rows.data(), rows, c.hidden_size);
  std::vector<float>& logits = return_logits ? out->logits.logits : logits_;
  logits.resize(static_cast<size_t>(rows * c.vocab_size));
  model_->logits(ctx_, last_.data(), rows, logits.data());
  if (return_logits) {
    out->logits.num_rows = rows;
    out->logits.vocab = c.vocab_size;
  }

  sample_on_host(*sampler_, batch, sampling, logits.data(), &run_, out);
  score_prompts(batch, out);
  return Status::Ok();
}

// The hidden rows of the scored prompt tokens go through lm_head kPromptRowsPerChunk at a time;
// only each row's SampleResult is kept.
void CpuEngine::score_prompts(const ForwardBatch& batch, StepOutput* out) {
  size_t num_rows = 0;
  for (const PromptLogprobsInput& p : batch.prompt_logprobs) num_rows += p.targets.size();
  out->prompt_logprobs.resize(num_rows);
  if (num_rows == 0) return;
  const ModelConfig& c = config();
  const auto hidden = static_cast<size_t>(c.hidden_size);
  const auto vocab = static_cast<size_t>(c.vocab_size);
  prompt_logits_.resize(kPromptRowsPerChunk * vocab);
  size_t row = 0;
  for (const PromptLogprobsInput& p : batch.prompt_logprobs) {
    const int32_t query_start = batch.sequences[static_cast<size_t>(p.sequence)].query_start;
    for (size_t r0 = 0; r0 < p.targets.size(); r0 += kPromptRowsPerChunk) {
      const size_t n = std::min(kPromptRowsPerChunk, p.targets.size() - r0);
      // A sequence's query rows are contiguous in the hidden states: no gather needed.
      const float* h = ws_.hidden() + (static_cast<size_t>(query_start + p.first) + r0) * hidden;
      model_->logits(ctx_, h, static_cast<int64_t>(n), prompt_logits_.data());
      for (size_t i = 0; i < n; ++i) {
        score_prompt_row(std::span<const float>(prompt_logits_.data() + i * vocab, vocab), p.targets[r0 + i], p.num_top,
                         &out->prompt_logprobs[row++]);
      }
    }
  }
}

}  // namespace ferry::llm
