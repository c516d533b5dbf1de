#include "backend/llm/model_runner.h"

#include <algorithm>
#include <utility>

namespace ferry::llm {

RunnerRequest::RunnerRequest(SamplingParams sampling_params, std::span<const int32_t> eos_token_ids)
    : params(std::move(sampling_params)),
      rng(SamplingRng::from_seed(params.seed)),
      stop_token_ids(params.stop_token_ids.begin(), params.stop_token_ids.end()) {
  if (!params.ignore_eos) stop_token_ids.insert(stop_token_ids.end(), eos_token_ids.begin(), eos_token_ids.end());
}

void ModelRunner::prepare(const SchedulerOutput& out, std::span<RunnerRequest* const> requests) {
  FERRY_CHECK(requests.size() == out.scheduled.size());
  token_ids_.clear();
  positions_.clear();
  inputs_.clear();
  sampling_.clear();
  requests_.clear();
  num_outputs_.clear();
  for (size_t i = 0; i < out.scheduled.size(); ++i) {
    const ScheduledSequence& s = out.scheduled[i];
    RunnerRequest* r = requests[i];
    SequenceInput in;
    in.query_start = static_cast<int32_t>(token_ids_.size());
    in.query_len = s.num_new_tokens;
    in.context_len = s.num_computed_tokens + s.num_new_tokens;
    in.block_table = s.block_table;
    auto tokens = s.new_tokens();
    token_ids_.insert(token_ids_.end(), tokens.begin(), tokens.end());
    for (int32_t j = 0; j < s.num_new_tokens; ++j) positions_.push_back(s.num_computed_tokens + j);
    inputs_.push_back(in);
    SamplingSequence ss;
    if (s.samples) ss = {&r->params, s.request->prompt(), s.request->output(), &r->rng};
    sampling_.push_back(ss);
    requests_.push_back(r);
    num_outputs_.push_back(s.request->num_output_tokens());
  }
}

// The stops the scheduler must act on in this very step (StopChecker's order: a stop token first,
// then the length; stop strings are the output processor's).
RequestFinishReason ModelRunner::check_stop(size_t i, int32_t token) const {
  const auto& stops = requests_[i]->stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return RequestFinishReason::kStop;
  if (num_outputs_[i] + 1 >= requests_[i]->params.max_tokens) return RequestFinishReason::kLength;
  return RequestFinishReason::kNone;
}

Status ModelRunner::execute(Engine& engine) {
  const size_t n = inputs_.size();
  Status status = engine.step(batch(), sampling_, false, &step_out_);
  results_.assign(n, SequenceResult{});
  num_sampled_ = 0;
  if (!status.ok()) {
    for (SequenceResult& r : results_) r.finish = RequestFinishReason::kError;
    return status;
  }
  FERRY_CHECK(step_out_.samples.size() >= n);
  for (size_t i = 0; i < n; ++i) {
    if (sampling_[i].params == nullptr) continue;
    const int32_t token = step_out_.samples[i].token;
    results_[i].token = token;
    results_[i].finish = check_stop(i, token);
    ++num_sampled_;
  }
  return status;
}

}  // namespace ferry::llm
