#include "backend/llm/output_processor.h"

#include <pthread.h>
#include <cstring>
#include <utility>

#include "common/json_writer.h"
#include "common/llm_protocol.h"

namespace ferry::llm {

namespace proto = llm_protocol;
namespace {

double seconds(OutputClock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

OutputRequest::OutputRequest(uint64_t request_id, ferry_responder* request_responder, bool streaming,
                             const Tokenizer& tokenizer, bool skip_special_tokens, const SamplingParams& params,
                             std::span<const int32_t> eos_token_ids, int64_t prompt_tokens,
                             std::vector<int32_t> echo_prompt)
    : id(request_id),
      responder(request_responder),
      stream(streaming),
      num_logprobs(params.num_logprobs),
      num_prompt_tokens(prompt_tokens),
      detokenizer(tokenizer, skip_special_tokens),
      stop(params, eos_token_ids),
      prompt_for_echo(std::move(echo_prompt)),
      num_prompt_logprobs(params.num_prompt_logprobs) {}

// ---- OutputBatch --------------------------------------------------------------------------------

OutputEvent& OutputBatch::next_event(uint64_t id, std::unique_ptr<OutputRequest>* start) {
  if (num_events_ == events_.size()) events_.emplace_back();
  OutputEvent& e = events_[num_events_++];
  e.request_id = id;
  if (start != nullptr && *start) e.start = std::move(*start);
  else e.start.reset();
  e.token = -1;
  e.logprobs_index = -1;
  e.num_prompt_logprobs = 0;
  e.time = {};
  e.final = false;
  e.reason = RequestFinishReason::kNone;
  e.status = Status::Ok();
  return e;
}

void OutputBatch::add_token(uint64_t id, const SampleResult& sample, bool with_logprobs, OutputClock::time_point time,
                            std::unique_ptr<OutputRequest>* start) {
  OutputEvent& e = next_event(id, start);
  e.token = sample.token;
  e.time = time;
  if (with_logprobs) {
    if (num_logprobs_ == logprobs_.size()) logprobs_.emplace_back();
    logprobs_[num_logprobs_] = sample;  // copy-assignment keeps the slot's top_logprobs capacity
    e.logprobs_index = static_cast<int32_t>(num_logprobs_++);
  }
}

void OutputBatch::add_final(uint64_t id, RequestFinishReason reason, Status status, OutputClock::time_point started,
                            std::unique_ptr<OutputRequest>* start) {
  OutputEvent& e = next_event(id, start);
  e.final = true;
  e.reason = reason;
  e.status = std::move(status);
  e.time = started;
}

void OutputBatch::add_prompt_logprobs(uint64_t id, std::span<const SampleResult> rows,
                                      std::unique_ptr<OutputRequest>* start) {
  OutputEvent& e = next_event(id, start);
  e.logprobs_index = static_cast<int32_t>(num_logprobs_);
  e.num_prompt_logprobs = static_cast<int32_t>(rows.size());
  for (const SampleResult& row : rows) {
    if (num_logprobs_ == logprobs_.size()) logprobs_.emplace_back();
    logprobs_[num_logprobs_++] = row;
  }
}

void OutputBatch::end_step() {
  if (num_events_ == 0 || (num_steps_ > 0 && step_ends_[num_steps_ - 1] == num_events_)) return;
  if (num_steps_ == step_ends_.size()) step_ends_.push_back(0);
  step_ends_[num_steps_++] = num_events_;
}

void OutputBatch::append(OutputBatch& other) {
  other.end_step();
  end_step();
  const size_t event_base = num_events_;
  for (size_t j = 0; j < other.num_steps_; ++j) {
    if (num_steps_ == step_ends_.size()) step_ends_.push_back(0);
    step_ends_[num_steps_++] = event_base + other.step_ends_[j];
  }
  const auto base = static_cast<int32_t>(num_logprobs_);
  for (size_t j = 0; j < other.num_logprobs_; ++j) {
    if (num_logprobs_ == logprobs_.size()) logprobs_.emplace_back();
    std::swap(logprobs_[num_logprobs_++], other.logprobs_[j]);  // both slots keep storage
  }
  for (size_t j = 0; j < other.num_events_; ++j) {
    if (num_events_ == events_.size()) events_.emplace_back();
    OutputEvent& e = events_[num_events_++];
    e = std::move(other.events_[j]);
    if (e.logprobs_index >= 0) e.logprobs_index += base;
  }
  other.clear();
}

void OutputBatch::clear() {
  for (size_t i = 0; i < num_events_; ++i) events_[i].start.reset();
  num_events_ = 0;
  num_logprobs_ = 0;
  num_steps_ = 0;
}

// ---- OutputProcessor ----------------------------------------------------------------------------

OutputProcessor::OutputProcessor(OutputProcessorConfig config) : config_(std::move(config)) {
  thread_ = std::thread([this] { run(); });
}

OutputProcessor::~OutputProcessor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void OutputProcessor::push(OutputBatch& batch) {
  if (batch.empty()) return;
  bool wake = false;
  batch.end_step();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The thread took the last batch: hand this one over whole; else it is behind, and this step's
    // events join the waiting ones (taken together; answered per step unless far behind).
    if (incoming_.empty()) std::swap(incoming_, batch);
    else incoming_.append(batch);
    ++num_pushed_;
    wake = !busy_;
    busy_ = true;  // one wake-up until the thread goes idle again
  }
  batch.clear();
  if (wake) cv_.notify_one();
}

bool OutputProcessor::wait_drained(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = num_pushed_;
  return drained_cv_.wait_for(lock, timeout, [&] { return num_processed_ >= target; });
}

void OutputProcessor::run() {
  pthread_setname_np(pthread_self(), "llm-output");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (incoming_.empty()) {
      if (stopping_) break;
      busy_ = false;
      cv_.wait(lock, [&] { return stopping_ || !incoming_.empty(); });
      continue;
    }
    busy_ = true;
    std::swap(incoming_, working_);
    const uint64_t batches = num_pushed_;  // every batch pushed so far is in working_
    lock.unlock();
    process(working_);
    working_.clear();
    lock.lock();
    num_processed_ = batches;
    drained_cv_.notify_all();
  }
  lock.unlock();
  // The instance's loop ends every request before the processor stops; one left here is a bug,
  // but its client still gets its one FINAL.
  for (auto& [id, r] : requests_) send(*r, true, nullptr, Status::Cancelled("model unloaded"));
  requests_.clear();
}

void OutputProcessor::process(OutputBatch& batch) {
  // One response per step and stream, unless far behind (see coalesce_after_steps).
  const bool per_step = batch.num_steps() <= config_.coalesce_after_steps;
  size_t step = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    OutputEvent& e = batch.event(i);
    OutputRequest* r = nullptr;
    if (e.start) {
      r = e.start.get();
      // Ids are unique among a scheduler's unfinished requests, and a request's final event comes
      // before any event of a later request with the same id.
      FERRY_CHECK(requests_.try_emplace(e.request_id, std::move(e.start)).second);
    } else {
      auto it = requests_.find(e.request_id);
      FERRY_CHECK(it != requests_.end());  // every request's first event carries its state
      r = it->second.get();
    }
    if (e.final) {
      r->final = true;
      r->final_reason = e.reason;
      r->final_status = std::move(e.status);
      r->started = e.time;
    } else if (e.num_prompt_logprobs > 0) {
      for (int32_t j = 0; j < e.num_prompt_logprobs; ++j) r->prompt_logprobs.push_back(batch.logprobs(e.logprobs_index + j));
    } else {
      take_token(*r, e, batch);
    }
    if (!r->touched) {
      r->touched = true;
      touched_.push_back(r);
    }
    if (per_step && step < batch.num_steps() && i + 1 == batch.step_end(step)) {
      answer_touched();
      ++step;
    }
  }
  answer_touched();
}

void OutputProcessor::answer_touched() {
  for (OutputRequest* r : touched_) {
    r->touched = false;
    answer(*r);  // may erase *r
  }
  touched_.clear();
}

void OutputProcessor::take_token(OutputRequest& r, const OutputEvent& e, const OutputBatch& batch) {
  if (r.text_finish != FinishReason::kNone) return;  // produced after a stop string: never sent
  if (r.prompt_only) return;                         // max_tokens 0: the scheduling token is dropped
  if (r.num_generated == 0) {
    if (config_.ttft != nullptr) config_.host->metric_observe(config_.ttft, seconds(e.time - r.submitted));
  } else if (config_.itl != nullptr) {
    config_.host->metric_observe(config_.itl, seconds(e.time - r.last_token));
  }
  r.last_token = e.time;
  ++r.num_generated;
  StopUpdate u = r.stop.append(e.token, r.detokenizer.add(e.token));
  r.pending_text += u.text;
  r.pending_ids.push_back(e.token);
  if (r.num_logprobs >= 0 && e.logprobs_index >= 0) r.pending_logprobs.push_back(batch.logprobs(e.logprobs_index));
  r.text_finish = u.finish;
  if (u.finish == FinishReason::kLength) r.pending_text += r.detokenizer.finish();
  // A stop token or the length ended it on the step thread already; a stop string only we can see.
  if (!u.stop_string.empty() && config_.request_stop) config_.request_stop(r.id);
}

void OutputProcessor::answer(OutputRequest& r) {
  if (!r.final) {
    const bool first = r.num_generated == static_cast<int64_t>(r.pending_ids.size());  // nothing sent yet
    if (r.stream && (!r.pending_ids.empty() || !r.pending_text.empty()) &&
        (first || static_cast<int32_t>(r.pending_ids.size()) >= config_.stream_interval)) {
      send(r, false, nullptr, Status::Ok());
    }
    return;
  }
  Status status = std::move(r.final_status);
  std::string reason;
  if (r.prompt_only && status.ok()) {
    reason = "length";  // nothing was to be generated
  } else if (r.text_finish != FinishReason::kNone) {
    // The text ended at a stop (or the length) whatever ended the request after it: the cancel
    // this processor asked for, or a client's cancel or an error racing it. The client has its
    // whole answer.
    reason = finish_reason_name(r.text_finish);
    status = Status::Ok();
  } else if (status.ok()) {
    // Ended by the scheduler (max_model_len): text held back for a possible stop string, and
    // bytes of an unfinished character, go out now.
    reason = std::string(request_finish_reason_name(r.final_reason));
    r.pending_text += r.stop.held_back();
    r.pending_text += r.detokenizer.finish();
  }
  if (status.ok() && config_.e2e != nullptr) {
    config_.host->metric_observe(config_.e2e, seconds(OutputClock::now() - r.submitted));
  }
  send(r, true, reason.c_str(), status);
  requests_.erase(r.id);
}

std::string OutputProcessor::logprob_piece(int32_t token) const {
  // A token's text as it reads inside a sequence: decoded after a plain anchor token and with the
  // anchor's text cut off, so SentencePiece's leading space (stripped from a sequence's first
  // token) is kept.
  if (config_.anchor_token < 0) {
    int32_t one[] = {token};
    return config_.tokenizer->decode(one, false);
  }
  int32_t two[] = {config_.anchor_token, token};
  std::string text = config_.tokenizer->decode(two, false);
  return text.size() >= config_.anchor_text.size() ? text.substr(config_.anchor_text.size()) : text;
}

// The response parameters (names in common/llm_protocol.h), written without a DOM into params_:
// empty for the common streamed response (text and ids only), which the host then need not parse.
void OutputProcessor::write_parameters(OutputRequest& r, bool final, const char* finish_reason) {
  std::string& out = params_;
  out.clear();
  auto key = [&](const char* name) {
    out.push_back(out.empty() ? '{' : ',');
    append_json_key(out, name);
  };
  if (!r.prompt_for_echo.empty()) {
    key(proto::kPromptText);
    append_json_string(out, config_.tokenizer->decode(r.prompt_for_echo, true));
    key(proto::kPromptIds);
    out.push_back('[');
    for (size_t i = 0; i < r.prompt_for_echo.size(); ++i) {
      if (i > 0) out.push_back(',');
      append_json_int(out, r.prompt_for_echo[i]);
    }
    out.push_back(']');
    r.prompt_for_echo.clear();  // the first response only
  }
  if (final) {
    key(proto::kFinishReason);
    append_json_string(out, finish_reason);
    key(proto::kUsage);
    out.push_back('{');
    append_json_key(out, proto::kPromptTokens);
    append_json_int(out, r.num_prompt_tokens);
    out.push_back(',');
    append_json_key(out, proto::kCompletionTokens);
    append_json_int(out, r.num_generated);
    out.push_back('}');
  }
  // Sent once, with the first response after the whole prompt was scored (or the FINAL).
  const bool prompt_scored = r.prompt_logprobs.size() + 1 >= static_cast<size_t>(r.num_prompt_tokens);
  if (r.num_prompt_logprobs >= 0 && !r.prompt_logprobs_sent && (prompt_scored || final)) {
    key(proto::kPromptLogprobs);
    write_prompt_logprobs(out, r);
    r.prompt_logprobs_sent = true;
  }
  if (r.num_logprobs >= 0) {
    key(proto::kLogprobs);
    out.push_back('[');
    for (size_t i = 0; i < r.pending_logprobs.size(); ++i) {
      if (i > 0) out.push_back(',');
      write_logprob_entry(out, r.pending_logprobs[i], logprob_piece(r.pending_logprobs[i].token));
    }
    out.push_back(']');
  }
  if (!out.empty()) out.push_back('}');
}

// {token_id, token, logprob, rank, top_logprobs}: `text` is the token's text (its own among the
// alternatives too; the others read as logprob_piece gives them).
void OutputProcessor::write_logprob_entry(std::string& out, const SampleResult& lp, const std::string& text) const {
  out.push_back('{');
  write_logprob_fields(out, lp.token, text, lp.logprob);
  out.push_back(',');
  append_json_key(out, proto::kRank);
  append_json_int(out, lp.rank);
  out.push_back(',');
  append_json_key(out, proto::kTopLogprobs);
  out.push_back('[');
  for (size_t k = 0; k < lp.top_logprobs.size(); ++k) {
    const TokenLogprob& t = lp.top_logprobs[k];
    if (k > 0) out.push_back(',');
    out.push_back('{');
    write_logprob_fields(out, t.token, t.token == lp.token ? text : logprob_piece(t.token), t.logprob);
    out.push_back('}');
  }
  out.append("]}");
}

// The prompt's list (llm_protocol.h's kPromptLogprobs): each prompt token's text as it reads in the
// decoded prompt (SentencePiece's leading space kept after the first word, as in the echoed text);
// a token that adds no text there (a special token, half a UTF-8 character) reads as it does
// alone. The first token (and any not scored, if the request ended early) has no logprob.
void OutputProcessor::write_prompt_logprobs(std::string& out, const OutputRequest& r) const {
  IncrementalDetokenizer detokenizer(*config_.tokenizer, true);
  out.push_back('[');
  for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
    const int32_t token = r.prompt_ids[i];
    std::string text = detokenizer.add(token);
    if (text.empty()) text = logprob_piece(token);
    if (i > 0) out.push_back(',');
    if (i > 0 && i <= r.prompt_logprobs.size()) {
      write_logprob_entry(out, r.prompt_logprobs[i - 1], text);
      continue;
    }
    out.push_back('{');
    write_token_fields(out, token, text);
    out.push_back('}');
  }
  out.push_back(']');
}

// "token_id":..,"token":.. (without braces)
void OutputProcessor::write_token_fields(std::string& out, int32_t token, const std::string& text) const {
  append_json_key(out, proto::kTokenId);
  append_json_int(out, token);
  out.push_back(',');
  append_json_key(out, proto::kToken);
  append_json_string(out, text);
}

// "token_id":..,"token":..,"logprob":.. (an entry's fields, without its braces)
void OutputProcessor::write_logprob_fields(std::string& out, int32_t token, const std::string& text,
                                           double logprob) const {
  write_token_fields(out, token, text);
  out.push_back(',');
  append_json_key(out, proto::kLogprob);
  append_json_double(out, logprob);
}

void OutputProcessor::send(OutputRequest& r, bool final, const char* finish_reason, const Status& error) {
  if (r.responder == nullptr) return;  // internal request (KV warm-up)
  ferry_response resp{};
  resp.struct_size = sizeof(resp);
  resp.queue_ns = -1;
  ferry_tensor views[2]{};
  int64_t shapes[2] = {1, 0};
  if (!error.ok()) {
    resp.error_code = static_cast<ferry_error_code>(error.code());
    resp.error_message = error.message().c_str();
  } else {
    // The text as a BYTES tensor of one element (a 4-byte little-endian length, then the bytes),
    // in a buffer this thread reuses: no allocation once it has grown.
    const auto length = static_cast<uint32_t>(r.pending_text.size());
    text_bytes_.resize(4 + r.pending_text.size());
    std::memcpy(text_bytes_.data(), &length, 4);
    std::memcpy(text_bytes_.data() + 4, r.pending_text.data(), r.pending_text.size());
    shapes[1] = static_cast<int64_t>(r.pending_ids.size());
    views[0] = ferry_tensor{sizeof(ferry_tensor), proto::kOutputText, FERRY_DTYPE_BYTES, 1, &shapes[0],
                            text_bytes_.data(), text_bytes_.size()};
    views[1] = ferry_tensor{sizeof(ferry_tensor), proto::kOutputIds, FERRY_DTYPE_INT32, 1, &shapes[1],
                            r.pending_ids.data(), r.pending_ids.size() * sizeof(int32_t)};
    resp.outputs = views;
    resp.num_outputs = 2;
    write_parameters(r, final, finish_reason);
    resp.parameters_json = params_.empty() ? nullptr : params_.c_str();
  }
  if (final) {
    resp.flags = FERRY_RESPONSE_FLAG_FINAL;
    if (r.started != OutputClock::time_point{}) {
      resp.queue_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(r.started - r.submitted).count();
    }
  }
  config_.host->respond(r.responder, &resp);
  r.pending_text.clear();
  r.pending_ids.clear();
  r.pending_logprobs.clear();
}

}  // namespace ferry::llm
