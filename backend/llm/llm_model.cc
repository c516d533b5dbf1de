#include "backend/llm/llm_model.h"

#include <algorithm>
#include <cstddef>
#include <thread>

#include "backend/llm/draft_model.h"
#include "backend/llm/engine/gpu_engine.h"
#include "backend/llm/engine/kv_cache_storage.h"
#include "backend/llm/json_text.h"
#include "common/abi/abi_util.h"
#include "common/llm_protocol.h"
#include "kernels/kernels.h"

namespace ferry::llm {
namespace {

namespace proto = llm_protocol;

Json::Value tensor_meta(const char* name, const char* datatype, int64_t dim) {
  Json::Value t;
  t["name"] = name;
  t["datatype"] = datatype;
  t["shape"].append(static_cast<Json::Int64>(dim));
  return t;
}


// The weight loader's progress, forwarded to the host (ABI 1.2: desc.load_reporter and
// host_api->load_progress) for its log and the version's LOADING reason; empty when the host or the
// desc has neither. Called only while ferry_model_create runs, as the ABI requires.
LoadProgressCallback host_load_progress(const ferry_host_api* host, const ferry_model_desc& desc) {
  const bool desc_has = desc.struct_size >= offsetof(ferry_model_desc, load_reporter) + sizeof(desc.load_reporter);
  const bool host_has = host->struct_size >= offsetof(ferry_host_api, load_progress) + sizeof(host->load_progress);
  if (!desc_has || !host_has || desc.load_reporter == nullptr || host->load_progress == nullptr) return nullptr;
  return [report = host->load_progress, reporter = desc.load_reporter](const LoadProgressSnapshot& s) {
    ferry_load_progress p{};
    p.struct_size = sizeof(p);
    p.stage = s.stage.c_str();
    p.bytes_done = static_cast<uint64_t>(s.bytes_done);
    p.bytes_total = static_cast<uint64_t>(s.bytes_total);
    p.tensors_done = static_cast<uint64_t>(s.tensors_done);
    p.tensors_total = static_cast<uint64_t>(s.tensors_total);
    p.bytes_per_second = s.bytes_per_second;
    report(reporter, &p);
  };
}

// kv_cache_memory_fraction of a kind gpu group: each instance's KV pool in bytes, the smallest over
// the group's devices of gpu_kv_cache_budget_bytes (gpu_engine.h) with the instances that share
// each device. Fails as that does (naming the key). (Here, not in llm_config.cc: the config layer
// does not depend on the engines.)
Result<int64_t> gpu_kv_pool_bytes(const LlmConfig& c, const ModelConfig& model, const ModelWeights& weights) {
  int64_t smallest = -1;
  for (int i = 0; i < c.num_instances; ++i) {
    const GpuEngineOptions o = gpu_engine_options(c, i);
    int on_device = 0;
    bool first = true;  // each device once: at its first instance
    for (int j = 0; j < c.num_instances; ++j) {
      if (gpu_engine_options(c, j).device != o.device) continue;
      if (j < i) first = false;
      ++on_device;
    }
    if (!first) continue;
    int64_t bytes = 0;
    FERRY_ASSIGN_OR_RETURN(bytes, gpu_kv_cache_budget_bytes(model, weights, o, c.kv_cache_block_size,
                                                            c.kv_cache_memory_fraction, on_device));
    smallest = smallest < 0 ? bytes : std::min(smallest, bytes);
  }
  return smallest;
}

}  // namespace

Result<std::unique_ptr<LlmModel>> LlmModel::create(const ferry_host_api* host, const ferry_model_desc& desc) {
  std::unique_ptr<LlmModel> m(new LlmModel());
  Status s = m->load(host, desc);
  if (!s.ok()) {
    m->instances_.clear();
    m->destroy_metrics();
    return s;
  }
  return m;
}

Status LlmModel::load(const ferry_host_api* host, const ferry_model_desc& desc) {
  ctx_.host = host;
  ctx_.name = desc.name;
  ctx_.version = desc.version;
  auto config = LlmConfig::parse(desc.config_json ? desc.config_json : "{}");
  if (!config.ok()) return config.status();
  ctx_.config = config.value();
  const std::string dir = desc.version_path;
  auto model_config = load_model_config(dir);
  if (!model_config.ok()) return model_config.status();
  ctx_.model_config = model_config.value();
  auto tokenizer = Tokenizer::load(dir);
  if (!tokenizer.ok()) return tokenizer.status();
  ctx_.tokenizer = std::move(tokenizer.value());
  if (!ctx_.tokenizer->chat_template().empty()) {
    auto tmpl = ChatTemplate::parse(ctx_.tokenizer->chat_template());
    if (tmpl.ok()) {
      ctx_.chat_template = std::make_unique<ChatTemplate>(std::move(tmpl.value()));
    } else {
      ctx_.log(FERRY_LOG_LEVEL_WARNING, "model '" + ctx_.name + "': chat template unusable, chat requests will fail: " +
                                            tmpl.status().message());
    }
  }
  auto weights = ctx_.config.dummy_weights ? Result<ModelWeights>(ModelWeights::dummy(ctx_.model_config, ctx_.config.seed))
                                           : ModelWeights::load_safetensors(ctx_.model_config, dir);
  if (!weights.ok()) return weights.status();
  ctx_.weights = std::move(weights.value());
  // kind gpu: refused here, before the weights are loaded for serving, when this build, the devices
  // or the CUDA engine cannot serve it (gpu_engine.h says which builds can).
  for (int i = 0; ctx_.config.gpu && i < std::max<int>(1, static_cast<int>(ctx_.config.gpu_ids.size())); ++i) {
    FERRY_RETURN_IF_ERROR(gpu_engine_supported(ctx_.model_config, ctx_.weights, gpu_engine_options(ctx_.config, i)));
  }
  // The weights in their serving format, once for every instance.
  WeightLoadOptions load_options = ctx_.config.weights;
  load_options.on_progress = host_load_progress(host, desc);
  auto model = load_causal_lm(ctx_.model_config, ctx_.weights, load_options);
  if (!model.ok()) return model.status();
  ctx_.model = std::move(model).value();
  if (!ctx_.model->load_note().empty()) ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "': " + ctx_.model->load_note());

  // Context limit and KV pool size (per instance).
  const LlmConfig& c = ctx_.config;
  const int64_t max_pos = ctx_.model_config.max_position_embeddings;
  if (c.max_model_len > max_pos) {
    return Status::InvalidArgument("key 'max_model_len' (" + std::to_string(c.max_model_len) +
                                   ") exceeds the model's max_position_embeddings (" + std::to_string(max_pos) + ")");
  }
  ctx_.max_model_len = c.max_model_len > 0 ? c.max_model_len : max_pos;
  const int64_t bs = c.kv_cache_block_size;
  KvCacheShape one = {ctx_.model_config.num_layers, 1, bs, ctx_.model_config.num_kv_heads, ctx_.model_config.head_dim,
                      c.kv_cache_dtype};
  const bool by_fraction = c.gpu && c.kv_cache_memory_fraction > 0.0;
  int64_t kv_bytes = c.kv_cache_memory_bytes;
  if (by_fraction) FERRY_ASSIGN_OR_RETURN(kv_bytes, gpu_kv_pool_bytes(c, ctx_.model_config, ctx_.weights));
  ctx_.num_blocks = c.kv_cache_num_blocks > 0 ? c.kv_cache_num_blocks : kv_bytes / one.bytes_per_block();
  if (ctx_.num_blocks < 1) {
    return Status::InvalidArgument(std::string("key '") +
                                   (by_fraction ? "kv_cache_memory_fraction" : "kv_cache_memory_bytes") +
                                   "' is too small for one KV block");
  }
  if (ctx_.num_blocks > (int64_t{1} << 30)) return Status::InvalidArgument("the KV pool would have too many blocks");
  if (ctx_.num_blocks * bs < ctx_.max_model_len) {
    if (c.max_model_len > 0) {
      return Status::InvalidArgument("key 'max_model_len' (" + std::to_string(ctx_.max_model_len) +
                                     ") needs more KV cache than " + std::to_string(ctx_.num_blocks) + " blocks of " +
                                     std::to_string(bs) + " tokens");
    }
    ctx_.max_model_len = ctx_.num_blocks * bs;
    ctx_.log(FERRY_LOG_LEVEL_WARNING, "model '" + ctx_.name + "': context limited to " +
                                          std::to_string(ctx_.max_model_len) +
                                          " tokens by the KV cache size (raise kv_cache_memory_bytes for more)");
  }
  FERRY_RETURN_IF_ERROR(load_draft(desc));
  metadata_ = metadata_json();
  ctx_.eos_ids = ctx_.model_config.eos_token_ids;
  for (int32_t id : ctx_.tokenizer->stop_token_ids()) {
    if (std::find(ctx_.eos_ids.begin(), ctx_.eos_ids.end(), id) == ctx_.eos_ids.end()) ctx_.eos_ids.push_back(id);
  }
  guided_ = std::make_unique<GuidedDecoding>(*ctx_.tokenizer, static_cast<int32_t>(ctx_.model_config.vocab_size),
                                             ctx_.eos_ids);
  for (const char* candidate : {"a", "\xE2\x96\x81" "a", "\xC4\xA0" "a", "x"}) {  // "a", "▁a", "Ġa", "x"
    auto id = ctx_.tokenizer->token_to_id(candidate);
    if (!id) continue;
    int32_t one[] = {*id};
    std::string text = ctx_.tokenizer->decode(one, false);
    if (text.empty()) continue;
    ctx_.anchor_token = *id;
    ctx_.anchor_text = text;
    break;
  }
  const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
  preprocess_ = std::make_unique<BigStackExecutor>(static_cast<int>(std::min(cores, 8u)), size_t{16} << 20);
  create_metrics();
  // After the weights, the host's reason would stay at their 100 % while the instances allocate
  // their KV pools (and prefill warm-up prompts): say what happens now instead.
  if (load_options.on_progress) {
    LoadProgressSnapshot stage;
    stage.stage = "starting " + std::to_string(c.num_instances) + " instance(s)" +
                  (c.kv_warmup_prompts.empty() ? "" : ", prefilling warm-up prompts");
    load_options.on_progress(stage);
  }
  for (int i = 0; i < c.num_instances; ++i) {
    auto instance = std::make_unique<LlmInstance>(ctx_, i);
    FERRY_RETURN_IF_ERROR(instance->start());
    instances_.push_back(std::move(instance));
  }
  FERRY_RETURN_IF_ERROR(warm_up());
  ctx_.log(FERRY_LOG_LEVEL_INFO,
           "model '" + ctx_.name + "': " + ctx_.model_config.architecture_name + ", " +
               std::to_string(ctx_.model_config.num_layers) + " layers, vocab " + std::to_string(ctx_.model_config.vocab_size) +
               ", context " + std::to_string(ctx_.max_model_len) + ", " + std::to_string(c.num_instances) +
               " instance(s), weights " + kernels::weight_format_name(ctx_.model->weight_format()) + " (" +
               std::to_string(ctx_.model->weight_bytes() >> 20) + " MiB), KV pool " + std::to_string(ctx_.num_blocks) +
               " x " + std::to_string(bs) + " tokens each" +
               (c.dummy_weights ? ", dummy weights" : ""));
  return Status::Ok();
}

// Speculative method "draft": the draft's weights (once for every instance) and the size of each
// instance's draft KV pool: room for every sequence that may speculate at once (no more running
// than disable_by_batch_size, nor than max_num_seqs) at full length plus k, but never more tokens
// than the target's own pool holds, and at least one full-length sequence.
Status LlmModel::load_draft(const ferry_model_desc& desc) {
  const SpeculativeConfig& sc = ctx_.config.speculative;
  if (sc.method != SpeculativeMethod::kDraft) return Status::Ok();
  const std::filesystem::path repository = std::filesystem::path(desc.model_path).parent_path();
  DraftModel draft;
  FERRY_ASSIGN_OR_RETURN(draft, load_draft_model(repository, sc.draft_model, ctx_.model_config, *ctx_.tokenizer,
                                                 !ctx_.config.gpu));
  if (ctx_.config.gpu) {
    Status s = gpu_engine_supported(draft.config, *draft.weights, draft_gpu_engine_options(ctx_.config, draft.load, 0));
    if (!s.ok()) return s.with_prefix("key 'speculative.draft_model' (\"" + sc.draft_model + "\")");
  }
  const std::string path = draft.path.string();
  ctx_.draft = std::make_shared<const DraftModel>(std::move(draft));
  const int64_t bs = ctx_.config.kv_cache_block_size;
  const int64_t per_seq = (ctx_.max_model_len + sc.num_speculative_tokens + bs - 1) / bs;
  const int64_t seqs = std::max(1, std::min(ctx_.config.scheduler.max_num_seqs, sc.disable_by_batch_size));
  ctx_.draft_num_blocks = std::max(per_seq, std::min(seqs * per_seq, ctx_.num_blocks));
  ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "': draft model '" + sc.draft_model + "' from " +
                                     path + ", " + std::to_string(ctx_.draft->config.num_layers) +
                                     " layers, draft KV pool " + std::to_string(ctx_.draft_num_blocks) + " x " +
                                     std::to_string(bs) + " tokens per instance");
  return Status::Ok();
}

Status LlmModel::warm_up() {
  if (ctx_.config.kv_warmup_prompts.empty()) return Status::Ok();
  uint64_t id = 0;
  for (const std::string& prompt : ctx_.config.kv_warmup_prompts) {
    auto ids = ctx_.tokenizer->encode(prompt, true);
    if (!ids.ok()) return ids.status().with_prefix("key 'kv_warmup_prompts'");
    for (auto& instance : instances_) {
      LlmRequest r;
      r.prompt_ids = ids.value();
      r.sampling.max_tokens = 1;
      r.sampling.temperature = 0;
      SubmitInfo info;
      info.id = ~uint64_t{0} - id++;  // far from the host's ids, which count up from 1
      FERRY_RETURN_IF_ERROR(instance->submit(info, std::move(r)).with_prefix("key 'kv_warmup_prompts'"));
    }
  }
  for (auto& instance : instances_) {
    if (!instance->wait_idle(std::chrono::minutes(10))) return Status::Internal("KV warm-up did not finish");
  }
  ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "': " + std::to_string(ctx_.config.kv_warmup_prompts.size()) +
                                     " warm-up prompt(s) prefilled into the prefix cache");
  return Status::Ok();
}

void LlmModel::create_metrics() {
  std::string version = std::to_string(ctx_.version);
  // Speculative decoding's series add the method: one series per method; a model that does not
  // speculate shows the implemented method (ngram) at 0, so dashboards find the names everywhere.
  const SpeculativeMethod method =
      ctx_.config.speculative.enabled() ? ctx_.config.speculative.method : SpeculativeMethod::kNgram;
  ferry_label labels[] = {
      {"model", ctx_.name.c_str()}, {"version", version.c_str()}, {"method", speculative_method_name(method)}};
  uint32_t num_labels = 2;  // 3 for the speculative decoding series
  auto make = [&](ferry_metric_kind kind, const char* name, const char* help, const double* buckets = nullptr,
                  uint32_t num_buckets = 0) {
    ferry_error err{};
    err.struct_size = sizeof(err);
    ferry_metric* m =
        ctx_.host->metric_create(ctx_.host->host, kind, name, help, labels, num_labels, buckets, num_buckets, &err);
    if (m == nullptr) ctx_.log(FERRY_LOG_LEVEL_WARNING, err.message);
    return m;
  };
  LlmMetrics& m = ctx_.metrics;
  m.prompt_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_prompt_tokens_total", "Prompt tokens of accepted requests");
  m.generated_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_generation_tokens_total", "Tokens generated");
  m.ttft = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_time_to_first_token_seconds",
                "Time from submission to the first generated token");
  m.itl = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_inter_token_latency_seconds",
               "Time between consecutive generated tokens of a sequence");
  m.e2e = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_e2e_request_latency_seconds",
               "Time from submission to the end of a successful sequence");
  static const double kBatchBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  m.batch_size = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_batch_size", "Sequences per engine step", kBatchBuckets,
                      sizeof(kBatchBuckets) / sizeof(kBatchBuckets[0]));
  m.prefix_query_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_prefix_cache_queries_total",
                               "Prompt tokens looked up in the prefix cache");
  m.prefix_hit_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_prefix_cache_hits_total",
                             "Prompt tokens found in the prefix cache (not computed)");
  m.preemptions = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_preemptions_total", "Sequences preempted (recomputed later)");
  m.evictions = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_kv_evictions_total", "Cached KV blocks evicted for reuse");
  m.cold_starts = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_cold_starts_total", "Instance reloads after an idle unload");

  num_labels = 3;
  m.spec_proposed_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_spec_proposed_tokens_total",
                                "Speculative tokens proposed and verified");
  m.spec_accepted_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_spec_accepted_tokens_total",
                                "Speculative tokens accepted by verification");
  m.spec_emitted_tokens = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_spec_emitted_tokens_total",
                               "Tokens emitted by speculative verification steps");
  static const double kLengthBuckets[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
  m.spec_acceptance_length = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_spec_acceptance_length",
                                  "Tokens emitted per speculative verification step", kLengthBuckets,
                                  sizeof(kLengthBuckets) / sizeof(kLengthBuckets[0]));
}

void LlmModel::destroy_metrics() {
  LlmMetrics& m = ctx_.metrics;
  for (ferry_metric* x : {m.prompt_tokens, m.generated_tokens, m.ttft, m.itl, m.e2e, m.batch_size, m.prefix_query_tokens,
                          m.prefix_hit_tokens, m.preemptions, m.evictions, m.cold_starts, m.spec_proposed_tokens,
                          m.spec_accepted_tokens, m.spec_emitted_tokens, m.spec_acceptance_length}) {
    if (x != nullptr) ctx_.host->metric_destroy(ctx_.host->host, x);
  }
  m = LlmMetrics{};
}

LlmModel::~LlmModel() {
  instances_.clear();  // stops the loops first: they use the context and its metrics
  destroy_metrics();
}

std::string LlmModel::metadata_json() const {
  Json::Value m;
  m[proto::kMetaPlatform] = proto::kPlatform;
  m[proto::kMetaMaxModelLen] = static_cast<Json::Int64>(ctx_.max_model_len);
  const std::string tools =
      resolve_tool_call_parser(ctx_.config.tool_call_parser, ctx_.chat_template ? ctx_.chat_template->source() : "");
  if (!tools.empty()) m[proto::kMetaToolCallParser] = tools;
  m["inputs"].append(tensor_meta(proto::kInputText, "BYTES", 1));
  m["inputs"].append(tensor_meta(proto::kInputIds, "INT32", -1));
  m["outputs"].append(tensor_meta(proto::kOutputText, "BYTES", 1));
  m["outputs"].append(tensor_meta(proto::kOutputIds, "INT32", -1));
  return compact_json(m);
}

void LlmModel::answer_now(const LlmRequest& request, ferry_responder* responder) {
  abi::OwnedTensor out;
  Json::Value p(Json::objectValue);
  if (request.task == LlmTask::kTokenize) {
    out.name = proto::kOutputIds;
    out.dtype = FERRY_DTYPE_INT32;
    out.shape = {static_cast<int64_t>(request.prompt_ids.size())};
    const auto* bytes = reinterpret_cast<const uint8_t*>(request.prompt_ids.data());
    out.data.assign(bytes, bytes + request.prompt_ids.size() * sizeof(int32_t));
    p[proto::kCount] = static_cast<Json::UInt64>(request.prompt_ids.size());
    p[proto::kMaxModelLen] = static_cast<Json::Int64>(ctx_.max_model_len);
  } else {
    out.name = proto::kOutputText;
    out.dtype = FERRY_DTYPE_BYTES;
    out.shape = {1};
    out.data = abi::join_bytes({ctx_.tokenizer->decode(request.prompt_ids, request.skip_special_tokens)});
  }
  ferry_tensor view = out.view();
  std::string params = compact_json(p);
  ferry_response r{};
  r.struct_size = sizeof(r);
  r.flags = FERRY_RESPONSE_FLAG_FINAL;
  r.num_outputs = 1;
  r.outputs = &view;
  r.parameters_json = params.c_str();
  r.queue_ns = 0;
  ctx_.host->respond(responder, &r);
}

Status LlmModel::submit(const ferry_request& request, ferry_responder* responder) {
  Result<LlmRequest> parsed = Status::Internal("request not parsed");
  preprocess_->run([&] {
    parsed = parse_llm_request(request, *ctx_.tokenizer, ctx_.chat_template.get(),
                               static_cast<int32_t>(ctx_.model_config.vocab_size), ctx_.max_model_len);
    if (!parsed.ok() || parsed->guided_gbnf.empty()) return;
    // Compiled here, off the caller's stack and before queueing: a bad grammar is this request's 400.
    auto compiled = guided_->compile(parsed->guided_gbnf);
    if (!compiled.ok()) {
      parsed = compiled.status();
      return;
    }
    parsed->matcher = guided_->matcher(std::move(compiled.value()));
  });
  if (!parsed.ok()) return parsed.status();
  LlmRequest& r = parsed.value();
  if (r.task != LlmTask::kGenerate) {
    answer_now(r, responder);
    return Status::Ok();
  }
  const int64_t prompt = static_cast<int64_t>(r.prompt_ids.size());
  const int64_t total = prompt + r.sampling.max_tokens;
  if (total > ctx_.max_model_len) {
    // Tokenization stops once the prompt cannot fit, so its length is a lower bound here.
    return Status::InvalidArgument("the prompt has at least " + std::to_string(prompt) + " tokens and max_tokens is " +
                                   std::to_string(r.sampling.max_tokens) + ": at least " + std::to_string(total) +
                                   " tokens exceed the context window of " + std::to_string(ctx_.max_model_len));
  }
  LlmInstance* target = instances_.front().get();
  for (auto& instance : instances_) {
    if (instance->load_tokens() < target->load_tokens()) target = instance.get();
  }
  SubmitInfo info;
  info.id = request.id;
  info.responder = responder;
  info.stream = (request.flags & FERRY_REQUEST_FLAG_STREAM) != 0;
  info.priority = request.priority;
  info.timeout_us = request.timeout_us;
  return target->submit(info, std::move(r));
}

bool LlmModel::cancel(uint64_t request_id) {
  // Asks every instance (a handful at most): only the one holding the request knows its id, and no
  // routing table has to be kept in step with requests that end.
  bool found = false;
  for (auto& instance : instances_) found = instance->cancel(request_id) || found;
  return found;
}

std::string LlmModel::describe(ferry_describe_kind kind) const {
  if (kind == FERRY_DESCRIBE_KIND_METADATA) return metadata_;
  Json::Value s;
  Json::Int64 running = 0, waiting = 0, used = 0, total = 0, preemptions = 0, cancelled = 0;
  s["instances"] = Json::Value(Json::arrayValue);
  for (const auto& instance : instances_) {
    Json::Value i = instance->stats();
    running += i["running"].asInt64();
    waiting += i["waiting"].asInt64();
    used += i["kv_blocks_used"].asInt64();
    total += i["kv_blocks_total"].asInt64();
    preemptions += i["preemptions"].asInt64();
    cancelled += i["cancelled"].asInt64();
    s["instances"].append(i);
  }
  s["running"] = running;
  s["waiting"] = waiting;
  s["kv_blocks_used"] = used;
  s["kv_blocks_total"] = total;
  s["preemptions"] = preemptions;
  s["cancelled"] = cancelled;
  s["max_model_len"] = static_cast<Json::Int64>(ctx_.max_model_len);
  return compact_json(s);
}

}  // namespace ferry::llm
