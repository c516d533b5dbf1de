#include "backend/llm/llm_model.h"

#include <json/json.h>

#include <algorithm>

#include "common/abi/abi_util.h"
#include "kernels/kernels.h"

namespace ferry::llm {
namespace {

std::string compact(const Json::Value& v) {
  static const Json::StreamWriterBuilder kWriter = [] {
    Json::StreamWriterBuilder w;
    w["indentation"] = "";
    w["emitUTF8"] = true;
    return w;
  }();
  return Json::writeString(kWriter, v);
}

constexpr const char* kMetadata =
    R"({"platform":"ferry_llm","inputs":[{"name":"text_input","datatype":"BYTES","shape":[1]},)"
    R"({"name":"input_ids","datatype":"INT32","shape":[-1]}],"outputs":[)"
    R"({"name":"text_output","datatype":"BYTES","shape":[1]},{"name":"output_ids","datatype":"INT32","shape":[-1]}]})";

}  // namespace

Result<std::unique_ptr<LlmModel>> LlmModel::create(const ferry_host_api* host, const ferry_model_desc& desc) {
  std::unique_ptr<LlmModel> m(new LlmModel(host, desc.name, desc.version));
  FERRY_RETURN_IF_ERROR(m->load(desc));
  m->create_metrics();
  m->worker_ = std::thread([raw = m.get()] { raw->run(); });
  return m;
}

Status LlmModel::load(const ferry_model_desc& desc) {
  auto config = LlmConfig::parse(desc.config_json ? desc.config_json : "{}");
  if (!config.ok()) return config.status();
  config_ = config.value();
  const std::string dir = desc.version_path;
  auto model_config = load_model_config(dir);
  if (!model_config.ok()) return model_config.status();
  model_config_ = model_config.value();
  auto tokenizer = Tokenizer::load(dir);
  if (!tokenizer.ok()) return tokenizer.status();
  tokenizer_ = std::move(tokenizer.value());
  if (!tokenizer_->chat_template().empty()) {
    auto tmpl = ChatTemplate::parse(tokenizer_->chat_template());
    if (tmpl.ok()) {
      chat_template_ = std::make_unique<ChatTemplate>(std::move(tmpl.value()));
    } else {
      log(FERRY_LOG_LEVEL_WARNING, "model '" + name_ + "': chat template unusable, chat requests will fail: " +
                                       tmpl.status().message());
    }
  }
  if (config_.num_threads > 0) kernels::cpu_set_num_threads(config_.num_threads);

  Result<ModelWeights> weights = config_.dummy_weights ? Result<ModelWeights>(ModelWeights::dummy(model_config_, config_.seed))
                                                       : ModelWeights::load_safetensors(model_config_, dir);
  if (!weights.ok()) return weights.status();
  auto engine = CpuEngine::create(model_config_, weights.value());
  if (!engine.ok()) return engine.status();
  engine_ = std::move(engine.value());

  const int64_t max_pos = model_config_.max_position_embeddings;
  if (config_.max_model_len > max_pos) {
    return Status::InvalidArgument("key 'max_model_len' (" + std::to_string(config_.max_model_len) +
                                   ") exceeds the model's max_position_embeddings (" + std::to_string(max_pos) + ")");
  }
  max_model_len_ = config_.max_model_len > 0 ? config_.max_model_len : max_pos;
  const int64_t bs = config_.kv_cache_block_size;
  num_blocks_ = config_.kv_cache_num_blocks;
  if (num_blocks_ == 0) num_blocks_ = config_.kv_cache_memory_bytes / engine_->kv_cache_shape(1, bs).bytes_per_block();
  if (num_blocks_ < 1) return Status::InvalidArgument("key 'kv_cache_memory_bytes' is too small for one KV block");
  if (num_blocks_ * bs < max_model_len_) {
    if (config_.max_model_len > 0) {
      return Status::InvalidArgument("key 'max_model_len' (" + std::to_string(max_model_len_) + ") needs more KV cache than " +
                                     std::to_string(num_blocks_) + " blocks of " + std::to_string(bs) + " tokens");
    }
    max_model_len_ = num_blocks_ * bs;
    log(FERRY_LOG_LEVEL_WARNING, "model '" + name_ + "': context limited to " + std::to_string(max_model_len_) +
                                     " tokens by the KV cache size (raise kv_cache_memory_bytes for more)");
  }
  auto cache = KvCacheStorage::create(engine_->kv_cache_shape(num_blocks_, bs));
  if (!cache.ok()) return cache.status();
  cache_ = std::make_unique<KvCacheStorage>(std::move(cache.value()));
  blocks_ = std::make_unique<SimpleBlockAllocator>(num_blocks_);
  sampler_ = std::make_unique<Sampler>(static_cast<int32_t>(model_config_.vocab_size));

  eos_ids_ = model_config_.eos_token_ids;
  for (int32_t id : tokenizer_->stop_token_ids()) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  log(FERRY_LOG_LEVEL_INFO, "model '" + name_ + "': " + model_config_.architecture_name + ", " +
                                std::to_string(model_config_.num_layers) + " layers, vocab " +
                                std::to_string(model_config_.vocab_size) + ", context " + std::to_string(max_model_len_) +
                                ", KV pool " + std::to_string(num_blocks_) + " x " + std::to_string(bs) + " tokens" +
                                (config_.dummy_weights ? ", dummy weights" : ""));
  return Status::Ok();
}

Json::Value LlmModel::logprob_json(const SampleResult& r) const {
  auto piece = [&](int32_t id) {
    int32_t one[] = {id};
    return tokenizer_->decode(one, false);
  };
  Json::Value j;
  j["token_id"] = r.token;
  j["token"] = piece(r.token);
  j["logprob"] = r.logprob;
  j["rank"] = r.rank;
  j["top_logprobs"] = Json::Value(Json::arrayValue);
  for (const auto& t : r.top_logprobs) {
    Json::Value e;
    e["token_id"] = t.token;
    e["token"] = piece(t.token);
    e["logprob"] = t.logprob;
    j["top_logprobs"].append(e);
  }
  return j;
}

void LlmModel::create_metrics() {
  std::string version = std::to_string(version_);
  ferry_label labels[] = {{"model", name_.c_str()}, {"version", version.c_str()}};
  auto make = [&](ferry_metric_kind kind, const char* name, const char* help, const double* buckets = nullptr,
                  uint32_t num_buckets = 0) {
    ferry_error err{};
    err.struct_size = sizeof(err);
    ferry_metric* m = host_->metric_create(host_->host, kind, name, help, labels, 2, buckets, num_buckets, &err);
    if (m == nullptr) log(FERRY_LOG_LEVEL_WARNING, err.message);
    return m;
  };
  m_prompt_tokens_ = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_prompt_tokens_total", "Prompt tokens admitted");
  m_generated_tokens_ = make(FERRY_METRIC_KIND_COUNTER, "ferry_llm_generation_tokens_total", "Tokens generated");
  m_running_ = make(FERRY_METRIC_KIND_GAUGE, "ferry_llm_running_sequences", "Sequences in the running batch");
  m_waiting_ = make(FERRY_METRIC_KIND_GAUGE, "ferry_llm_waiting_sequences", "Sequences waiting to be admitted");
  m_blocks_used_ = make(FERRY_METRIC_KIND_GAUGE, "ferry_llm_kv_blocks_used", "KV cache blocks in use");
  m_ttft_ = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_time_to_first_token_seconds",
                 "Time from submission to the first generated token");
  m_itl_ = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_inter_token_latency_seconds",
                "Time between consecutive generated tokens of a sequence");
  m_e2e_ = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_e2e_request_latency_seconds",
                "Time from submission to the last token of a finished sequence");
  static const double kBatchBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  m_batch_size_ = make(FERRY_METRIC_KIND_HISTOGRAM, "ferry_llm_batch_size", "Sequences per engine step",
                       kBatchBuckets, sizeof(kBatchBuckets) / sizeof(kBatchBuckets[0]));
}

void LlmModel::observe_token_times(Sequence& seq, Clock::time_point now) {
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  if (seq.output.size() == 1) {
    if (m_ttft_) host_->metric_observe(m_ttft_, seconds(now - seq.submitted));
  } else if (m_itl_) {
    host_->metric_observe(m_itl_, seconds(now - seq.last_token));
  }
  seq.last_token = now;
}

LlmModel::~LlmModel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (ferry_metric* m : {m_prompt_tokens_, m_generated_tokens_, m_running_, m_waiting_, m_blocks_used_, m_ttft_, m_itl_,
                          m_e2e_, m_batch_size_}) {
    if (m != nullptr) host_->metric_destroy(host_->host, m);
  }
}

void LlmModel::log(ferry_log_level level, const std::string& message) const {
  host_->log(host_->host, level, __FILE__, __LINE__, message.c_str());
}

Status LlmModel::submit(const ferry_request& request, ferry_responder* responder) {
  auto parsed = parse_llm_request(request, *tokenizer_, chat_template_.get(),
                                  static_cast<int32_t>(model_config_.vocab_size));
  if (!parsed.ok()) return parsed.status();
  LlmRequest& r = parsed.value();
  if (r.task != LlmTask::kGenerate) {
    answer_now(r, responder);
    return Status::Ok();
  }
  const int64_t prompt = static_cast<int64_t>(r.prompt_ids.size());
  const int64_t total = prompt + r.sampling.max_tokens;
  if (total > max_model_len_) {
    return Status::InvalidArgument("the prompt has " + std::to_string(prompt) + " tokens and max_tokens is " +
                                   std::to_string(r.sampling.max_tokens) + ": " + std::to_string(total) +
                                   " tokens exceed the context window of " + std::to_string(max_model_len_));
  }
  auto seq = std::make_unique<Sequence>();
  seq->id = request.id;
  seq->responder = responder;
  seq->stream = (request.flags & FERRY_REQUEST_FLAG_STREAM) != 0;
  seq->echo = r.echo;
  seq->prompt = std::move(r.prompt_ids);
  seq->params = std::move(r.sampling);
  seq->rng = SamplingRng::from_seed(seq->params.seed);
  seq->detokenizer = std::make_unique<IncrementalDetokenizer>(*tokenizer_, r.skip_special_tokens);
  seq->stop = std::make_unique<StopChecker>(seq->params, eos_ids_);
  seq->submitted = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("model is unloading");
    waiting_.push_back(std::move(seq));
    ++num_requests_;
    if (m_waiting_) host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
  }
  cv_.notify_one();
  return Status::Ok();
}

void LlmModel::answer_now(const LlmRequest& request, ferry_responder* responder) {
  abi::OwnedTensor out;
  Json::Value p(Json::objectValue);
  if (request.task == LlmTask::kTokenize) {
    out.name = "output_ids";
    out.dtype = FERRY_DTYPE_INT32;
    out.shape = {static_cast<int64_t>(request.prompt_ids.size())};
    const auto* bytes = reinterpret_cast<const uint8_t*>(request.prompt_ids.data());
    out.data.assign(bytes, bytes + request.prompt_ids.size() * sizeof(int32_t));
    p["count"] = static_cast<Json::UInt64>(request.prompt_ids.size());
    p["max_model_len"] = static_cast<Json::Int64>(max_model_len_);
  } else {
    out.name = "text_output";
    out.dtype = FERRY_DTYPE_BYTES;
    out.shape = {1};
    out.data = abi::join_bytes({tokenizer_->decode(request.prompt_ids, request.skip_special_tokens)});
  }
  ferry_tensor view = out.view();
  std::string params = compact(p);
  ferry_response r{};
  r.struct_size = sizeof(r);
  r.flags = FERRY_RESPONSE_FLAG_FINAL;
  r.num_outputs = 1;
  r.outputs = &view;
  r.parameters_json = params.c_str();
  r.queue_ns = 0;
  host_->respond(responder, &r);
}

bool LlmModel::cancel(uint64_t request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto mark = [&](Sequence& s) {
    if (s.id != request_id || s.cancelled) return false;
    s.cancelled = true;
    return true;
  };
  bool found = false;
  for (auto& s : waiting_) found = found || mark(*s);
  for (auto& s : running_) found = found || mark(*s);
  if (found) cv_.notify_one();
  return found;
}

void LlmModel::send(Sequence& seq, bool final, const char* finish_reason, const Status& error) {
  ferry_response r{};
  r.struct_size = sizeof(r);
  r.queue_ns = -1;
  std::vector<abi::OwnedTensor> outputs(2);
  std::vector<ferry_tensor> views;
  std::string params;
  if (!error.ok()) {
    r.error_code = static_cast<ferry_error_code>(error.code());
    r.error_message = error.message().c_str();
  } else {
    outputs[0].name = "text_output";
    outputs[0].dtype = FERRY_DTYPE_BYTES;
    outputs[0].shape = {1};
    outputs[0].data = abi::join_bytes({seq.pending_text});
    outputs[1].name = "output_ids";
    outputs[1].dtype = FERRY_DTYPE_INT32;
    outputs[1].shape = {static_cast<int64_t>(seq.pending_ids.size())};
    const auto* ids = reinterpret_cast<const uint8_t*>(seq.pending_ids.data());
    outputs[1].data.assign(ids, ids + seq.pending_ids.size() * sizeof(int32_t));
    for (const auto& t : outputs) views.push_back(t.view());
    r.outputs = views.data();
    r.num_outputs = static_cast<uint32_t>(views.size());
    Json::Value p(Json::objectValue);
    if (seq.echo) {
      p["prompt_text"] = tokenizer_->decode(seq.prompt, true);
      p["prompt_ids"] = Json::Value(Json::arrayValue);
      for (int32_t id : seq.prompt) p["prompt_ids"].append(id);
      seq.echo = false;  // the first response only
    }
    if (final) {
      p["finish_reason"] = finish_reason;
      p["usage"]["prompt_tokens"] = static_cast<Json::UInt64>(seq.prompt.size());
      p["usage"]["completion_tokens"] = static_cast<Json::UInt64>(seq.output.size());
    }
    if (seq.params.num_logprobs >= 0) {
      p["logprobs"] = Json::Value(Json::arrayValue);
      for (const auto& lp : seq.pending_logprobs) p["logprobs"].append(logprob_json(lp));
    }
    params = compact(p);
    r.parameters_json = params.c_str();
  }
  if (final) {
    r.flags = FERRY_RESPONSE_FLAG_FINAL;
    if (seq.started != Clock::time_point{}) {
      r.queue_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(seq.started - seq.submitted).count();
    }
    if (error.ok() && m_e2e_) {
      host_->metric_observe(m_e2e_, std::chrono::duration<double>(Clock::now() - seq.submitted).count());
    }
  }
  host_->respond(seq.responder, &r);
  seq.pending_text.clear();
  seq.pending_ids.clear();
  seq.pending_logprobs.clear();
}

void LlmModel::release(Sequence& seq) {
  blocks_used_ -= static_cast<int64_t>(seq.block_table.size());
  blocks_->release(&seq.block_table);
}

void LlmModel::step(std::vector<Sequence*>& batch) {
  token_ids_.clear();
  positions_.clear();
  inputs_.clear();
  for (Sequence* s : batch) {
    SequenceInput in;
    in.query_start = static_cast<int32_t>(token_ids_.size());
    if (s->num_computed == 0) {
      token_ids_.insert(token_ids_.end(), s->prompt.begin(), s->prompt.end());  // the whole prompt in one pass
    } else {
      token_ids_.push_back(s->output.back());
    }
    in.query_len = static_cast<int32_t>(token_ids_.size()) - in.query_start;
    in.context_len = s->num_computed + in.query_len;
    in.block_table = s->block_table;
    for (int32_t i = 0; i < in.query_len; ++i) positions_.push_back(s->num_computed + i);
    inputs_.push_back(in);
  }
  ForwardBatch fb{token_ids_, positions_, inputs_, false};
  if (m_batch_size_) host_->metric_observe(m_batch_size_, static_cast<double>(batch.size()));
  Status status = engine_->forward(fb, *cache_, &logits_);
  if (!status.ok()) {
    log(FERRY_LOG_LEVEL_ERROR, "model '" + name_ + "': forward pass failed: " + status.message());
    for (Sequence* s : batch) {
      send(*s, true, nullptr, Status::Internal("forward pass failed: " + status.message()));
      s->num_computed = -1;  // marks it finished
    }
    return;
  }
  uint64_t generated = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& s = *batch[i];
    s.num_computed += inputs_[i].query_len;
    SamplingSequence ss{&s.params, s.prompt, s.output, &s.rng};
    sampler_->sample(std::span<const float>(logits_.row(static_cast<int64_t>(i)), logits_.vocab), ss, sample_);
    const int32_t token = sample_.token;
    s.output.push_back(token);
    observe_token_times(s, Clock::now());
    ++generated;
    StopUpdate u = s.stop->append(token, s.detokenizer->add(token));
    s.pending_text += u.text;
    s.pending_ids.push_back(token);
    if (s.params.num_logprobs >= 0) s.pending_logprobs.push_back(sample_);
    const bool at_limit = static_cast<int64_t>(s.prompt.size() + s.output.size()) >= max_model_len_;
    if (u.finished() || at_limit) {
      FinishReason reason = u.finished() ? u.finish : FinishReason::kLength;
      if (reason == FinishReason::kLength) s.pending_text += s.detokenizer->finish();
      release(s);  // before the answer: a client that saw its FINAL never sees its blocks in use
      send(s, true, finish_reason_name(reason), Status::Ok());
      s.num_computed = -1;
    } else if (s.stream) {
      send(s, false, nullptr, Status::Ok());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  num_generated_tokens_ += generated;
  if (m_generated_tokens_) host_->metric_add(m_generated_tokens_, static_cast<double>(generated));
}

void LlmModel::run() {
  std::vector<Sequence*> batch;
  std::vector<std::unique_ptr<Sequence>> cancelled;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty(); });
    if (stopping_) break;
    // Cancelled sequences leave first and free their blocks at this step.
    auto take_cancelled = [&](auto& from) {
      for (auto it = from.begin(); it != from.end();) {
        if ((*it)->cancelled) {
          cancelled.push_back(std::move(*it));
          it = from.erase(it);
        } else {
          ++it;
        }
      }
    };
    take_cancelled(waiting_);
    take_cancelled(running_);
    num_cancelled_ += cancelled.size();
    // Admit FCFS while the batch has room and the pool can reserve prompt + max_tokens.
    uint64_t admitted_tokens = 0;
    while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
      Sequence& s = *waiting_.front();
      int64_t reserve = std::min<int64_t>(static_cast<int64_t>(s.prompt.size()) + s.params.max_tokens, max_model_len_);
      if (!blocks_->ensure_capacity(&s.block_table, reserve, config_.kv_cache_block_size)) break;
      blocks_used_ += static_cast<int64_t>(s.block_table.size());
      s.started = Clock::now();
      admitted_tokens += s.prompt.size();
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    num_prompt_tokens_ += admitted_tokens;
    batch.clear();
    for (auto& s : running_) batch.push_back(s.get());
    if (m_prompt_tokens_ && admitted_tokens) host_->metric_add(m_prompt_tokens_, static_cast<double>(admitted_tokens));
    if (m_running_) host_->metric_set(m_running_, static_cast<double>(running_.size()));
    if (m_waiting_) host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
    lock.unlock();

    for (auto& s : cancelled) {
      release(*s);
      send(*s, true, nullptr, Status::Cancelled("request cancelled"));
    }
    cancelled.clear();
    if (!batch.empty()) step(batch);

    lock.lock();
    for (auto it = running_.begin(); it != running_.end();) {
      if ((*it)->num_computed < 0) {
        release(**it);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    if (m_blocks_used_) host_->metric_set(m_blocks_used_, static_cast<double>(blocks_used_.load()));
    if (batch.empty() && running_.empty() && !waiting_.empty()) {
      // Nothing runs and the head of the queue does not fit: it never will (checked at submit),
      // so this cannot spin; wait for a change.
      cv_.wait(lock);
    }
  }
  // Unloading: every request still here ends with a FINAL.
  std::vector<std::unique_ptr<Sequence>> left;
  for (auto& s : waiting_) left.push_back(std::move(s));
  for (auto& s : running_) left.push_back(std::move(s));
  waiting_.clear();
  running_.clear();
  lock.unlock();
  for (auto& s : left) send(*s, true, nullptr, Status::Cancelled("model unloaded"));
}

std::string LlmModel::describe(ferry_describe_kind kind) const {
  if (kind == FERRY_DESCRIBE_KIND_METADATA) return kMetadata;
  std::lock_guard<std::mutex> lock(mu_);
  Json::Value s;
  s["requests"] = static_cast<Json::UInt64>(num_requests_);
  s["prompt_tokens"] = static_cast<Json::UInt64>(num_prompt_tokens_);
  s["generated_tokens"] = static_cast<Json::UInt64>(num_generated_tokens_);
  s["cancelled"] = static_cast<Json::UInt64>(num_cancelled_);
  s["running"] = static_cast<Json::UInt64>(running_.size());
  s["waiting"] = static_cast<Json::UInt64>(waiting_.size());
  s["kv_blocks_used"] = static_cast<Json::Int64>(blocks_used_.load());
  s["kv_blocks_total"] = static_cast<Json::Int64>(num_blocks_);
  s["max_model_len"] = static_cast<Json::Int64>(max_model_len_);
  return compact(s);
}

}  // namespace ferry::llm
