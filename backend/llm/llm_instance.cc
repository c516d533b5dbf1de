#include "backend/llm/llm_instance.h"

#include <pthread.h>
#include <algorithm>

#include "backend/llm/engine/cpu_engine.h"
#include "backend/llm/engine/gpu_engine.h"
#include "backend/llm/speculative/ngram_proposer.h"

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
  OutputProcessorConfig oc;
  oc.host = ctx_.host;
  oc.tokenizer = ctx_.tokenizer.get();
  oc.anchor_token = ctx_.anchor_token;
  oc.anchor_text = ctx_.anchor_text;
  oc.model_name = ctx_.name;
  oc.ttft = ctx_.metrics.ttft;
  oc.itl = ctx_.metrics.itl;
  oc.e2e = ctx_.metrics.e2e;
  oc.request_stop = [this](uint64_t id) { request_stop(id); };
  oc.stream_interval = ctx_.config.stream_interval;
  output_ = std::make_unique<OutputProcessor>(std::move(oc));
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
  std::unique_ptr<Engine> engine;
  if (ctx_.config.gpu) {
    FERRY_ASSIGN_OR_RETURN(engine,
                           create_gpu_engine(ctx_.model_config, ctx_.weights, gpu_engine_options(ctx_.config, index_)));
  } else {
    CpuEngineOptions options;
    options.num_threads = ctx_.config.num_threads;
    auto cpu = CpuEngine::create(ctx_.model, options);
    if (!cpu.ok()) return cpu.status();
    engine = std::move(cpu).value();
  }
  KvCacheOptions kv;
  kv.num_blocks = ctx_.num_blocks;
  kv.block_size = ctx_.config.kv_cache_block_size;
  kv.dtype = ctx_.config.kv_cache_dtype;
  auto blocks = engine->allocate_kv_cache(kv);
  if (!blocks.ok()) return blocks.status();
  if (ctx_.draft != nullptr) {
    DraftProposerOptions d;
    d.num_blocks = ctx_.draft_num_blocks;
    d.block_size = kv.block_size;
    d.kv_dtype = kv.dtype;
    d.num_threads = ctx_.config.num_threads;
    d.max_catch_up_tokens = ctx_.config.scheduler.max_num_batched_tokens;
    if (ctx_.config.gpu) {
      std::unique_ptr<Engine> draft_engine;
      FERRY_ASSIGN_OR_RETURN(draft_engine,
                             create_gpu_engine(ctx_.draft->config, *ctx_.draft->weights,
                                               draft_gpu_engine_options(ctx_.config, ctx_.draft->load, index_)));
      FERRY_ASSIGN_OR_RETURN(draft_, DraftProposer::create(std::move(draft_engine), d));
    } else {
      FERRY_ASSIGN_OR_RETURN(draft_, DraftProposer::create(ctx_.draft->model, d));
    }
  }
  engine_ = std::move(engine);
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
  if (worker_.joinable()) worker_.join();  // the loop hands every request's final event over
  output_.reset();                         // sends them, then stops
  for (ferry_metric* m : {m_running_, m_waiting_, m_blocks_used_, m_blocks_total_}) {
    if (m != nullptr) ctx_.host->metric_destroy(ctx_.host->host, m);
  }
}

Status LlmInstance::submit(const SubmitInfo& info, LlmRequest&& request) {
  const auto num_prompt = static_cast<int64_t>(request.prompt_ids.size());
  const bool prompt_logprobs = request.sampling.num_prompt_logprobs >= 0;
  auto seq = std::make_unique<Sequence>(request.sampling, ctx_.eos_ids);
  seq->runner.matcher = std::move(request.matcher);
  // Constrained requests do not speculate: their drafts would need the grammar's mask at every
  // drafted position (not implemented).
  seq->runner.speculate = request.speculative && ctx_.config.speculative.enabled() && seq->runner.matcher == nullptr;
  seq->output = std::make_unique<OutputRequest>(
      info.id, info.responder, info.stream, *ctx_.tokenizer, request.skip_special_tokens, request.sampling,
      ctx_.eos_ids, num_prompt, request.echo ? request.prompt_ids : std::vector<int32_t>{});
  seq->output->prompt_only = request.prompt_only;
  seq->prompt_only = request.prompt_only;
  if (prompt_logprobs) seq->output->prompt_ids = request.prompt_ids;
  seq->load = num_prompt + request.sampling.max_tokens;
  NewRequest nr;
  nr.id = info.id;
  nr.prompt = std::move(request.prompt_ids);
  nr.max_tokens = request.sampling.max_tokens;
  nr.priority = info.priority;
  nr.timeout_us = info.timeout_us;
  nr.arrival_time = seq->output->submitted;
  nr.skip_prefix_cache = prompt_logprobs;  // every prompt position's logits are needed
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("model is unloading");
    FERRY_RETURN_IF_ERROR(scheduler_->add_request(std::move(nr)));
    load_tokens_ += seq->load;
    ctx_.add(ctx_.metrics.prompt_tokens, static_cast<double>(num_prompt));
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

void LlmInstance::request_stop(uint64_t id) {
  // Like a client's cancel; the output processor turns the CANCELLED final event into "stop".
  cancel(id);
}

void LlmInstance::end_locked(uint64_t id, RequestFinishReason reason, Status status) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Sequence& seq = *it->second;
  batch_.add_final(id, reason, std::move(status), seq.started, &seq.output);
  release_draft(id);
  load_tokens_ -= seq.load;
  seqs_.erase(it);
  if (seqs_.empty()) idle_cv_.notify_all();
}

void LlmInstance::flush_outputs() { output_->push(batch_); }

void LlmInstance::run_step(const SchedulerOutput& out, std::unique_lock<std::mutex>& lock) {
  // Build the batch under the lock: the scheduler's spans are stable until update_from_output.
  step_requests_.clear();
  step_seqs_.clear();
  step_ids_.clear();
  const Clock::time_point step_start = Clock::now();
  // A step whose every sequence computes one token plus its drafts: what it costs says what the
  // drafts cost (SpeculationCost); a prefill chunk would say nothing.
  bool decode_only = true;
  int32_t num_drafts = 0;
  for (const ScheduledSequence& s : out.scheduled) {
    decode_only = decode_only && s.samples && s.num_new_tokens == 1 + s.num_draft_tokens;
    num_drafts += s.num_draft_tokens;
    // Requests end only on this thread, so these pointers stay valid until end_locked below.
    Sequence* seq = seqs_.at(s.request_id).get();
    if (seq->started == Clock::time_point{}) seq->started = step_start;
    step_seqs_.push_back(seq);
    step_ids_.push_back(s.request_id);
    step_requests_.push_back(&seq->runner);
  }
  runner_.prepare(out, step_requests_);
  const size_t num_seqs = out.scheduled.size();
  lock.unlock();

  ctx_.observe(ctx_.metrics.batch_size, static_cast<double>(num_seqs));
  Status status = runner_.execute(*engine_);
  if (!status.ok()) {
    ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "': forward pass failed: " + status.message());
  }
  // The step's tokens, in batch order, before any final event of this step.
  const Clock::time_point sampled_at = Clock::now();
  std::span<const SequenceResult> results = runner_.results();
  int64_t num_generated = runner_.num_sampled();
  for (size_t i = 0; i < num_seqs; ++i) {
    Sequence* seq = step_seqs_[i];
    if (seq->prompt_only) num_generated -= runner_.num_emitted(i);  // dropped, not generated
    if (std::span<const SampleResult> rows = runner_.prompt_logprobs(i); !rows.empty()) {
      batch_.add_prompt_logprobs(out.scheduled[i].request_id, rows, &seq->output);
    }
    for (int32_t j = 0; j < runner_.num_emitted(i); ++j) {
      batch_.add_token(out.scheduled[i].request_id, runner_.sample(i, static_cast<size_t>(j)),
                       seq->runner.params.num_logprobs >= 0, sampled_at, &seq->output);
    }
  }
  ctx_.add(ctx_.metrics.generated_tokens, static_cast<double>(num_generated));
  record_speculation();

  lock.lock();
  // (out belongs to the scheduler and is not read after update_from_output.)
  const std::vector<FinishedRequest>& done = scheduler_->update_from_output(results);
  propose_drafts_locked();
  // Their blocks are free already, so a client that sees its FINAL never sees its blocks in use.
  for (const FinishedRequest& f : done) {
    Status s = f.status;
    if (f.reason == RequestFinishReason::kError) s = Status::Internal("forward pass failed: " + status.message());
    end_locked(f.request_id, f.reason, std::move(s));
  }
  lock.unlock();
  flush_outputs();
  lock.lock();
  // A draft model's round counts with the step that verifies its drafts: the next one.
  if (ctx_.config.speculative.enabled() && decode_only && status.ok()) {
    spec_cost_.record_step(static_cast<int32_t>(num_seqs), num_drafts,
                           seconds(Clock::now() - step_start) + draft_round_seconds_);
  }
  draft_round_seconds_ = 0.0;
  if (!draft_jobs_.empty()) {
    const Clock::time_point round_start = Clock::now();
    propose_with_draft_model(lock);
    draft_round_seconds_ = seconds(Clock::now() - round_start);
  }
}

void LlmInstance::record_speculation() {
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    const int32_t proposed = runner_.num_drafts(i);
    if (proposed == 0) continue;
    const int32_t accepted = runner_.num_accepted(i);
    step_seqs_[i]->runner.spec_gate.record(proposed, accepted);
    ctx_.add(ctx_.metrics.spec_proposed_tokens, proposed);
    ctx_.add(ctx_.metrics.spec_accepted_tokens, accepted);
    ctx_.add(ctx_.metrics.spec_emitted_tokens, runner_.num_emitted(i));
    ctx_.observe(ctx_.metrics.spec_acceptance_length, runner_.num_emitted(i));
  }
}

// The adaptive rule's batch half: with more running sequences than disable_by_batch_size, the
// step is compute-bound already and verifying drafts costs more than it saves (perf/RESULTS.md).
void LlmInstance::propose_drafts_locked() {
  const SpeculativeConfig& sc = ctx_.config.speculative;
  const auto num_running = static_cast<int32_t>(scheduler_->num_running());
  if (!sc.enabled() || num_running > sc.disable_by_batch_size) return;
  // What a draft costs the next step, in plain-step tokens (the gates' half of the rule).
  const double draft_cost = sc.measured_rate() ? spec_cost_.break_even_rate(num_running) : sc.min_acceptance_rate;
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    const SchedulerRequest* r = scheduler_->find(step_ids_[i]);
    if (r == nullptr || r->finished() || r->num_tokens() - r->num_computed_tokens != 1) continue;
    RunnerRequest& runner = step_seqs_[i]->runner;  // not ended yet: end_locked runs after this
    if (!runner.speculate) continue;
    const int32_t max_k = std::min(sc.num_speculative_tokens, r->max_tokens - r->num_output_tokens() - 1);
    const int32_t k = runner.spec_gate.num_drafts(max_k, draft_cost);
    if (k < 1) continue;
    if (sc.method == SpeculativeMethod::kDraft) {
      // r->tokens stays put until the next schedule(), which this thread runs after the round.
      DraftJob job;
      job.id = r->id;
      job.tokens = r->tokens;
      job.num_prompt_tokens = r->num_prompt_tokens;
      job.num_drafts = k;
      job.params = &runner.params;
      job.rng = &runner.draft_rng;
      job.drafts = &runner.draft_tokens;
      job.probs = &runner.draft_probs;
      draft_jobs_.push_back(job);
      continue;
    }
    ngram_propose(r->tokens, sc.prompt_lookup_min, sc.prompt_lookup_max, k, &drafts_);
    scheduler_->set_draft_tokens(r->id, drafts_);
  }
}

void LlmInstance::propose_with_draft_model(std::unique_lock<std::mutex>& lock) {
  // The jobs' requests end only on this thread, and their tokens change only in schedule() /
  // update_from_output(): the round runs unlocked, so submit / cancel / stats do not wait for it.
  lock.unlock();
  Status s = draft_->propose(draft_jobs_);
  draft_blocks_used_ = draft_->num_blocks_used();
  draft_sequences_ = static_cast<int64_t>(draft_->num_sequences());
  lock.lock();
  if (!s.ok()) ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "': draft model step failed: " + s.message());
  // A request cancelled meanwhile still takes its drafts; it leaves at the next schedule().
  for (const DraftJob& job : draft_jobs_) scheduler_->set_draft_tokens(job.id, *job.drafts);
  draft_jobs_.clear();
}

void LlmInstance::release_draft(uint64_t id) {
  if (draft_ == nullptr) return;
  draft_->release(id);
  draft_blocks_used_ = draft_->num_blocks_used();
  draft_sequences_ = static_cast<int64_t>(draft_->num_sequences());
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

void LlmInstance::check_consistency_locked() {
  Status s = scheduler_->check_consistency();
  checked_at_step_ = scheduler_->stats().num_steps;
  if (!s.ok() && consistent_.exchange(false)) {
    ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "' instance " + std::to_string(index_) +
                                        ": KV cache inconsistent: " + s.message());
  }
}

bool LlmInstance::reload_engine(std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  auto t0 = Clock::now();
  Status s = load_engine();  // cold start after an idle unload
  lock.lock();
  if (!s.ok()) {
    ctx_.log(FERRY_LOG_LEVEL_ERROR, "model '" + ctx_.name + "': reload failed: " + s.message());
    cv_.wait_for(lock, std::chrono::seconds(1));
    return false;
  }
  ctx_.add(ctx_.metrics.cold_starts, 1);
  ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "' instance " + std::to_string(index_) + ": cold start in " +
                                     std::to_string(seconds(Clock::now() - t0)) + " s");
  return true;
}

bool LlmInstance::unload_if_idle(std::unique_lock<std::mutex>& lock) {
  const int64_t idle_s = ctx_.config.idle_unload_seconds;
  if (idle_s <= 0 || Clock::now() < last_active_ + std::chrono::seconds(idle_s)) return false;
  // Idle (checked under mu_, so no request slips in): the cache contents go with the engine, so
  // the scheduler's prefix cache must go too; a fresh one takes the next requests.
  auto fresh = make_scheduler();
  if (!fresh.ok()) {
    last_active_ = Clock::now();
    return true;
  }
  scheduler_ = std::move(fresh.value());
  checked_at_step_ = 0;  // the fresh scheduler has run no step, and holds nothing to check
  engine_loaded_ = false;
  lock.unlock();
  engine_.reset();
  draft_.reset();  // no request is left, so no draft state either
  draft_blocks_used_ = 0;
  draft_sequences_ = 0;
  lock.lock();
  ctx_.log(FERRY_LOG_LEVEL_INFO, "model '" + ctx_.name + "' instance " + std::to_string(index_) + ": idle for " +
                                     std::to_string(idle_s) + " s, engine and KV cache freed");
  return true;
}

void LlmInstance::run() {
  pthread_setname_np(pthread_self(), "llm-step");  // names the engine's thread in top, perf and /proc
  std::unique_lock<std::mutex> lock(mu_);
  auto has_work = [&] { return stopping_ || scheduler_->has_unfinished(); };
  while (!stopping_) {
    if (!engine_loaded_) {
      if (scheduler_->has_unfinished()) reload_engine(lock);
      else cv_.wait(lock, has_work);
      continue;
    }
    const SchedulerOutput& out = scheduler_->schedule(Clock::now());
    for (const FinishedRequest& f : out.finished) end_locked(f.request_id, f.reason, f.status);
    for (uint64_t id : out.preempted) release_draft(id);  // it recomputes; so does its draft
    if (!out.scheduled.empty()) {
      run_step(out, lock);  // hands this step's events (and the ends above) to the output processor
      last_active_ = Clock::now();
      checked_since_busy_ = false;
#ifndef NDEBUG
      check_consistency_locked();
#endif
      update_gauges();
      continue;
    }
    if (!batch_.empty()) {
      lock.unlock();
      flush_outputs();
      lock.lock();
    }
    update_gauges();
    if (scheduler_->has_unfinished()) {
      // Waiting for a batching window or a queue deadline, or for blocks a cancel will free.
      if (out.has_wake_at) cv_.wait_until(lock, out.wake_at);
      else cv_.wait_for(lock, std::chrono::milliseconds(50));
      continue;
    }
    if (!checked_since_busy_) {
      // Under load an instance is idle for microseconds between waves of requests, and the check
      // costs O(blocks): milliseconds for a large pool of small blocks (a small model). It waits
      // for a quiet spell instead.
      if (cv_.wait_for(lock, kIdleCheckDelay, has_work)) continue;
      check_consistency_locked();
      checked_since_busy_ = true;
    }
    if (unload_if_idle(lock)) continue;
    const int64_t idle_s = ctx_.config.idle_unload_seconds;
    if (idle_s > 0) cv_.wait_until(lock, last_active_ + std::chrono::seconds(idle_s), has_work);
    else cv_.wait(lock, has_work);
  }
  // Stopping: every request still here ends with a FINAL.
  std::vector<uint64_t> left;
  for (const auto& [id, seq] : seqs_) left.push_back(id);
  for (uint64_t id : left) end_locked(id, RequestFinishReason::kCancelled, Status::Cancelled("model unloaded"));
  lock.unlock();
  flush_outputs();
}

bool LlmInstance::wait_idle(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!idle_cv_.wait_until(lock, deadline, [&] { return seqs_.empty(); })) return false;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return output_->wait_drained(std::max(left, std::chrono::milliseconds(0)));
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
  s["consistent"] = consistent_.load();  // as of the loop's last check (see the header)
  s["consistency_checked_at_step"] = static_cast<Json::Int64>(checked_at_step_);
  if (ctx_.config.speculative.enabled()) {
    // The measured cost of drafts (speculation_cost.h), per batch size seen in a decode-only step.
    Json::Value& cost = s["speculation_cost"];
    cost = Json::Value(Json::arrayValue);
    for (int32_t b = 1; b <= SpeculationCost::kMaxBatch; ++b) {
      if (spec_cost_.plain_seconds(b) == 0.0) continue;
      Json::Value e;
      e["batch_size"] = b;
      e["plain_step_us"] = spec_cost_.plain_seconds(b) * 1e6;
      if (spec_cost_.draft_cost_measured(b)) {
        e["draft_cost"] = spec_cost_.draft_cost(b);
        e["break_even_rate"] = spec_cost_.break_even_rate(b);
      }
      cost.append(e);
    }
  }
  if (ctx_.draft != nullptr) {  // as of the loop's last draft round or release
    s["draft_kv_blocks_used"] = static_cast<Json::Int64>(draft_blocks_used_.load());
    s["draft_sequences"] = static_cast<Json::Int64>(draft_sequences_.load());
  }
  return s;
}

}  // namespace ferry::llm
