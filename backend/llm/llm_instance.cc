#include "backend/llm/llm_instance.h"

#include <algorithm>

#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/json_text.h"
#include "common/abi/abi_util.h"

namespace ferry::llm {
namespace {

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

LlmInstance::LlmInstance(const LlmModelContext& ctx, int index) : ctx_(ctx), index_(index) {}

Status LlmInstance::start() {
  auto scheduler = make_scheduler();
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = std::move(scheduler.value());
  FERRY_RETURN_IF_ERROR(load_engine());
  create_metrics();
  last_active_ = Clock::now();
  worker_ = std::thread([this] { run(); });
  return Status::Ok();
}

Result<std::unique_ptr<Scheduler>> LlmInstance::make_scheduler() const {
  KvCacheConfig kv;
  kv.num_blocks = static_cast<int32_t>(ctx_.num_blocks);
  kv.block_size = ctx_.config.kv_cache_block_size;
  kv.enable_prefix_caching = ctx_.config.enable_prefix_caching;
  kv.salt = kv_cache_salt(ctx_.name, ctx_.version);
  SchedulerConfig sc = ctx_.config.scheduler;
  sc.max_model_len = static_cast<int32_t>(ctx_.max_model_len);
  return Scheduler::create(sc, kv);
}

Status LlmInstance::load_engine() {
  CpuEngineOptions options;
  options.num_threads = ctx_.config.num_threads;
  auto engine = CpuEngine::create(ctx_.model, options);
  if (!engine.ok()) return engine.status();
  KvCacheOptions kv;
  kv.num_blocks = ctx_.num_blocks;
  kv.block_size = ctx_.config.kv_cache_block_size;
  kv.dtype = ctx_.config.kv_cache_dtype;
  auto blocks = engine.value()->allocate_kv_cache(kv);
  if (!blocks.ok()) return blocks.status();
  engine_ = std::move(engine).value();
  engine_loaded_ = true;
  return Status::Ok();
}

void LlmInstance::create_metrics() {
  std::string version = std::to_string(ctx_.version), instance = std::to_string(index_);
  ferry_label labels[] = {{"model", ctx_.name.c_str()}, {"version", version.c_str()}, {"instance", instance.c_str()}};
  auto make = [&](const char* name, const char* help) {
    ferry_error err{};
    err.struct_size = sizeof(err);
    ferry_metric* m = ctx_.host->metric_create(ctx_.host->host, FERRY_METRIC_KIND_GAUGE, name, help, labels, 3, nullptr, 0, &err);
    if (m == nullptr) ctx_.log(FERRY_LOG_LEVEL_WARNING, err.message);
    return m;
  };
  m_running_ = make("ferry_llm_running_sequences", "Sequences in the running batch");
  m_waiting_ = make("ferry_llm_waiting_sequences", "Sequences waiting to be admitted (or preempted)");
  m_blocks_used_ = make("ferry_llm_kv_blocks_used", "KV cache blocks owned by sequences");
  m_blocks_total_ = make("ferry_llm_kv_blocks_capacity", "KV cache blocks in the pool");
  ctx_.set(m_blocks_total_, static_cast<double>(ctx_.num_blocks));
}

LlmInstance::~LlmInstance() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (ferry_metric* m : {m_running_, m_waiting_, m_blocks_used_, m_blocks_total_}) {
    if (m != nullptr) ctx_.host->metric_destroy(ctx_.host->host, m);
  }
}

Status LlmInstance::submit(const SubmitInfo& info, LlmRequest&& request) {
  auto seq = std::make_unique<Sequence>();
  seq->info = info;
  seq->params = std::move(request.sampling);
  seq->rng = SamplingRng::from_seed(seq->params.seed);
  seq->detokenizer = std::make_unique<IncrementalDetokenizer>(*ctx_.tokenizer, request.skip_special_tokens);
  seq->stop = std::make_unique<StopChecker>(seq->params, ctx_.eos_ids);
  if (request.echo) seq->prompt_for_echo = request.prompt_ids;
  seq->submitted = Clock::now();
  seq->load = static_cast<int64_t>(request.prompt_ids.size()) + seq->params.max_tokens;
  NewRequest nr;
  nr.id = info.id;
  nr.prompt = std::move(request.prompt_ids);
  nr.max_tokens = seq->params.max_tokens;
  nr.priority = info.priority;
  nr.timeout_us = info.timeout_us;
  nr.arrival_time = seq->submitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("model is unloading");
    FERRY_RETURN_IF_ERROR(scheduler_->add_request(std::move(nr)));
    load_tokens_ += seq->load;
    ctx_.add(ctx_.metrics.prompt_tokens, static_cast<double>(seq->load - seq->params.max_tokens));
    seqs_.emplace(info.id, std::move(seq));
    last_active_ = Clock::now();
  }
  cv_.notify_one();
  return Status::Ok();
}

bool LlmInstance::cancel(uint64_t id) {
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    found = scheduler_->cancel(id);
  }
  if (found) cv_.notify_one();
  return found;
}

Json::Value LlmInstance::logprob_json(const SampleResult& r) const {
  // A token's text as it reads inside a sequence: decoded after a plain anchor token and with the
  // anchor's text cut off, so SentencePiece's leading space (stripped from a sequence's first
  // token) is kept.
  auto piece = [&](int32_t id) {
    if (ctx_.anchor_token < 0) {
      int32_t one[] = {id};
      return ctx_.tokenizer->decode(one, false);
    }
    int32_t two[] = {ctx_.anchor_token, id};
    std::string text = ctx_.tokenizer->decode(two, false);
    return text.size() >= ctx_.anchor_text.size() ? text.substr(ctx_.anchor_text.size()) : text;
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

void LlmInstance::send(Sequence& seq, bool final, const char* finish_reason, const Status& error) {
  if (seq.info.responder == nullptr) return;  // internal request (KV warm-up)
  ferry_response r{};
  r.struct_size = sizeof(r);
  r.queue_ns = -1;
  abi::OwnedTensor outputs[2];
  ferry_tensor views[2];
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
    views[0] = outputs[0].view();
    views[1] = outputs[1].view();
    r.outputs = views;
    r.num_outputs = 2;
    Json::Value p(Json::objectValue);
    if (!seq.prompt_for_echo.empty()) {
      p["prompt_text"] = ctx_.tokenizer->decode(seq.prompt_for_echo, true);
      p["prompt_ids"] = Json::Value(Json::arrayValue);
      for (int32_t id : seq.prompt_for_echo) p["prompt_ids"].append(id);
      seq.prompt_for_echo.clear();  // the first response only
    }
    if (final) {
      p["finish_reason"] = finish_reason;
      p["usage"]["prompt_tokens"] = static_cast<Json::Int64>(seq.load - seq.params.max_tokens);
      p["usage"]["completion_tokens"] = seq.num_generated;
    }
    if (seq.params.num_logprobs >= 0) {
      p["logprobs"] = Json::Value(Json::arrayValue);
      for (const auto& lp : seq.pending_logprobs) p["logprobs"].append(logprob_json(lp));
    }
    params = compact_json(p);
    r.parameters_json = params.c_str();
  }
  if (final) {
    r.flags = FERRY_RESPONSE_FLAG_FINAL;
    if (seq.started != Clock::time_point{}) {
      r.queue_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(seq.started - seq.submitted).count();
    }
  }
  ctx_.host->respond(seq.info.responder, &r);
  seq.pending_text.clear();
  seq.pending_ids.clear();
  seq.pending_logprobs.clear();
}

// Ends a request that left the scheduler (its blocks are already free): final response, metrics,
// bookkeeping. Loop thread; mu_ not held.
void LlmInstance::end_sequence(uint64_t id, const char* finish_reason, const Status& status) {
  std::unique_ptr<Sequence> seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return;
    seq = std::move(it->second);
    seqs_.erase(it);
    load_tokens_ -= seq->load;
    if (seqs_.empty()) idle_cv_.notify_all();
  }
  if (status.ok()) {
    if (std::string_view(finish_reason) == "length") seq->pending_text += seq->detokenizer->finish();
    ctx_.observe(ctx_.metrics.e2e, seconds(Clock::now() - seq->submitted));
  }
  send(*seq, true, finish_reason, status);
}

void LlmInstance::check_sampled(Sequence& seq, const SampleResult& sample, SequenceResult* result) {
  const int32_t token = sample.token;
  const Clock::time_point now = Clock::now();
  if (seq.num_generated == 0) ctx_.observe(ctx_.metrics.ttft, seconds(now - seq.submitted));
  else ctx_.observe(ctx_.metrics.itl, seconds(now - seq.last_token));
  seq.last_token = now;
  ++seq.num_generated;
  StopUpdate u = seq.stop->append(token, seq.detokenizer->add(token));
  seq.pending_text += u.text;
  seq.pending_ids.push_back(token);
  if (seq.params.num_logprobs >= 0) seq.pending_logprobs.push_back(sample);
  result->token = token;
  if (u.finish == FinishReason::kStop) result->finish = RequestFinishReason::kStop;
  else if (u.finish == FinishReason::kLength) result->finish = RequestFinishReason::kLength;
}

void LlmInstance::run_step(const SchedulerOutput& out, std::unique_lock<std::mutex>& lock) {
  // Build the batch (under the lock: the scheduler's spans are stable until update_from_output).
  token_ids_.clear();
  positions_.clear();
  inputs_.clear();
  sampling_.clear();
  step_seqs_.clear();
  for (const ScheduledSequence& s : out.scheduled) {
    // Requests end only on this thread, so these pointers stay valid until end_sequence below.
    Sequence* seq = seqs_.at(s.request_id).get();
    if (seq->started == Clock::time_point{}) seq->started = Clock::now();
    step_seqs_.push_back(seq);
    SequenceInput in;
    in.query_start = static_cast<int32_t>(token_ids_.size());
    auto tokens = s.new_tokens();
    token_ids_.insert(token_ids_.end(), tokens.begin(), tokens.end());
    for (int32_t j = 0; j < s.num_new_tokens; ++j) positions_.push_back(s.num_computed_tokens + j);
    in.query_len = s.num_new_tokens;
    in.context_len = s.num_computed_tokens + s.num_new_tokens;
    in.block_table = s.block_table;
    inputs_.push_back(in);
    SamplingSequence ss;
    if (s.samples) ss = {&seq->params, s.request->prompt(), s.request->output(), &seq->rng};
    sampling_.push_back(ss);
  }
  lock.unlock();

  ctx_.observe(ctx_.metrics.batch_size, static_cast<double>(out.scheduled.size()));
  ForwardBatch fb{token_ids_, positions_, inputs_, false};
  Status status = engine_->step(fb, sampling_, false, &step_out_);
  results_.assign(out.scheduled.size(), SequenceResult{});
  uint64_t generated = 0;
  for (size_t i = 0; i < out.scheduled.size(); ++i) {
    if (!status.ok()) {
      results_[i].finish = RequestFinishReason::kError;
    } else if (out.scheduled[i].samples) {
      check_sampled(*step_seqs_[i], step_out_.samples[i], &results_[i]);
      ++generated;
    }
  }
  if (!status.ok()) ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "': forward pass failed: " + status.message());
  ctx_.add(ctx_.metrics.generated_tokens, static_cast<double>(generated));

  lock.lock();
  std::vector<FinishedRequest> done = scheduler_->update_from_output(results_);
  lock.unlock();
  // Stream the new text of those still running, then end the finished ones (whose blocks the
  // scheduler has already freed, so a client that sees its FINAL never sees its blocks in use).
  auto finished = [&](uint64_t id) {
    return std::any_of(done.begin(), done.end(), [&](const FinishedRequest& f) { return f.request_id == id; });
  };
  // (out belongs to the scheduler and is not read after update_from_output.)
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    const bool sampled = results_[i].token != SequenceResult::kNoToken;
    if (!sampled || !step_seqs_[i]->info.stream || finished(step_seqs_[i]->info.id)) continue;
    send(*step_seqs_[i], false, nullptr, Status::Ok());
  }
  for (const FinishedRequest& f : done) {
    Status s = f.status;
    if (f.reason == RequestFinishReason::kError) s = Status::Internal("forward pass failed: " + status.message());
    end_sequence(f.request_id, std::string(request_finish_reason_name(f.reason)).c_str(), s);
  }
  lock.lock();
}

void LlmInstance::update_gauges() {
  SchedulerStats st = scheduler_->stats();
  ctx_.set(m_running_, static_cast<double>(st.num_running));
  ctx_.set(m_waiting_, static_cast<double>(st.num_waiting));
  ctx_.set(m_blocks_used_, static_cast<double>(st.kv.num_blocks_used));
  ctx_.add(ctx_.metrics.preemptions, static_cast<double>(st.num_preemptions - reported_preemptions_));
  ctx_.add(ctx_.metrics.evictions, static_cast<double>(st.kv.num_evictions - reported_evictions_));
  ctx_.add(ctx_.metrics.prefix_query_tokens, static_cast<double>(st.kv.num_query_tokens - reported_query_tokens_));
  ctx_.add(ctx_.metrics.prefix_hit_tokens, static_cast<double>(st.kv.num_hit_tokens - reported_hit_tokens_));
  reported_preemptions_ = st.num_preemptions;
  reported_evictions_ = st.kv.num_evictions;
  reported_query_tokens_ = st.kv.num_query_tokens;
  reported_hit_tokens_ = st.kv.num_hit_tokens;
}

void LlmInstance::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_) break;
    if (!engine_loaded_ && scheduler_->has_unfinished()) {
      lock.unlock();
      auto t0 = Clock::now();
      Status s = load_engine();  // cold start after an idle unload
      lock.lock();
      if (!s.ok()) {
        ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "': reload failed: " + s.message());
        cv_.wait_for(lock, std::chrono::seconds(1));
        continue;
      }
      ctx_.add(ctx_.metrics.cold_starts, 1);
      ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "' instance " + std::to_string(index_) +
                                         ": cold start in " + std::to_string(seconds(Clock::now() - t0)) + " s");
    }
    if (!engine_loaded_) {
      cv_.wait(lock, [&] { return stopping_ || scheduler_->has_unfinished(); });
      continue;
    }
    const SchedulerOutput& out = scheduler_->schedule(Clock::now());
    std::vector<FinishedRequest> ended(out.finished.begin(), out.finished.end());
    if (!ended.empty()) {
      lock.unlock();
      for (const FinishedRequest& f : ended) end_sequence(f.request_id, nullptr, f.status);
      lock.lock();
    }
    if (!out.scheduled.empty()) {
      run_step(out, lock);
      last_active_ = Clock::now();
      update_gauges();
      continue;
    }
    update_gauges();
    if (scheduler_->has_unfinished()) {
      // Waiting for a batching window or a queue deadline, or for blocks a cancel will free.
      if (out.has_wake_at) cv_.wait_until(lock, out.wake_at);
      else cv_.wait_for(lock, std::chrono::milliseconds(50));
      continue;
    }
    const int64_t idle_s = ctx_.config.idle_unload_seconds;
    if (idle_s > 0) {
      auto unload_at = last_active_ + std::chrono::seconds(idle_s);
      if (Clock::now() >= unload_at) {
        // Idle (checked under mu_, so no request slips in): the cache contents go with the engine,
        // so the scheduler's prefix cache must go too; a fresh one takes the next requests.
        auto fresh = make_scheduler();
        if (!fresh.ok()) {
          last_active_ = Clock::now();
          continue;
        }
        scheduler_ = std::move(fresh.value());
        engine_loaded_ = false;
        lock.unlock();
        engine_.reset();
        lock.lock();
        ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "' instance " + std::to_string(index_) + ": idle for " +
                                           std::to_string(idle_s) + " s, engine and KV cache freed");
        continue;
      }
      cv_.wait_until(lock, unload_at, [&] { return stopping_ || scheduler_->has_unfinished(); });
    } else {
      cv_.wait(lock, [&] { return stopping_ || scheduler_->has_unfinished(); });
    }
  }
  // Stopping: every request still here ends with a FINAL.
  std::vector<uint64_t> left;
  for (const auto& [id, seq] : seqs_) left.push_back(id);
  lock.unlock();
  for (uint64_t id : left) end_sequence(id, nullptr, Status::Cancelled("model unloaded"));
}

bool LlmInstance::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return seqs_.empty(); });
}

Json::Value LlmInstance::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats st = scheduler_->stats();
  Json::Value s;
  s["instance"] = index_;
  s["engine_loaded"] = engine_loaded_.load();
  s["running"] = static_cast<Json::Int64>(st.num_running);
  s["waiting"] = static_cast<Json::Int64>(st.num_waiting);
  s["load_tokens"] = static_cast<Json::Int64>(st.load_tokens());
  s["preemptions"] = static_cast<Json::Int64>(st.num_preemptions);
  s["rejected_queue_full"] = static_cast<Json::Int64>(st.num_rejected_queue_full);
  s["timed_out"] = static_cast<Json::Int64>(st.num_timed_out);
  s["cancelled"] = static_cast<Json::Int64>(st.num_cancelled);
  s["finished"] = static_cast<Json::Int64>(st.num_finished);
  s["steps"] = static_cast<Json::Int64>(st.num_steps);
  s["kv_blocks_used"] = st.kv.num_blocks_used;
  s["kv_blocks_total"] = st.kv.num_blocks_total;
  s["kv_cached_blocks"] = static_cast<Json::Int64>(st.kv.num_cached_blocks);
  s["prefix_query_tokens"] = static_cast<Json::Int64>(st.kv.num_query_tokens);
  s["prefix_hit_tokens"] = static_cast<Json::Int64>(st.kv.num_hit_tokens);
  s["kv_evictions"] = static_cast<Json::Int64>(st.kv.num_evictions);
  s["consistent"] = scheduler_->check_consistency().ok();
  return s;
}

}  // namespace ferry::llm
