#include "backend/llm/model_runner.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace ferry::llm {

namespace {

// The draft's stream of a seeded request: another seed (an odd multiplier, then a constant), so
// that it does not share the request's own stream.
std::optional<uint64_t> draft_seed(std::optional<uint64_t> seed) {
  if (!seed) return std::nullopt;
  return (*seed * 0xD1342543DE82EF95ull) ^ 0x5851F42D4C957F2Dull;
}

}  // namespace

RunnerRequest::RunnerRequest(SamplingParams sampling_params, std::span<const int32_t> eos_token_ids)
    : params(std::move(sampling_params)),
      rng(SamplingRng::from_seed(params.seed)),
      stop_token_ids(params.stop_token_ids.begin(), params.stop_token_ids.end()),
      draft_rng(SamplingRng::from_seed(draft_seed(params.seed))) {
  if (!params.ignore_eos) stop_token_ids.insert(stop_token_ids.end(), eos_token_ids.begin(), eos_token_ids.end());
  if (params.min_tokens > 0) params.min_tokens_masked_ids = stop_token_ids;
}

void ModelRunner::prepare(const SchedulerOutput& out, std::span<RunnerRequest* const> requests) {
  FERRY_CHECK(requests.size() == out.scheduled.size());
  token_ids_.clear();
  positions_.clear();
  inputs_.clear();
  sampling_.clear();
  requests_.clear();
  num_outputs_.clear();
  mask_offset_.clear();
  prompt_inputs_.clear();
  prompt_targets_.clear();
  step_ok_ = false;
  size_t mask_words = 0;
  for (size_t i = 0; i < out.scheduled.size(); ++i) {
    const ScheduledSequence& s = out.scheduled[i];
    RunnerRequest* r = requests[i];
    SequenceInput in;
    in.query_start = static_cast<int32_t>(token_ids_.size());
    in.query_len = s.num_new_tokens;
    in.context_len = s.num_computed_tokens + s.num_new_tokens;
    in.block_table = s.block_table;
    in.num_draft_tokens = s.num_draft_tokens;
    auto tokens = s.new_tokens();
    token_ids_.insert(token_ids_.end(), tokens.begin(), tokens.end());
    auto drafts = s.draft_tokens();
    token_ids_.insert(token_ids_.end(), drafts.begin(), drafts.end());
    for (int32_t j = 0; j < s.num_new_tokens; ++j) positions_.push_back(s.num_computed_tokens + j);
    inputs_.push_back(in);
    SamplingSequence ss;
    if (s.samples) ss = {&r->params, s.request->prompt(), s.request->output(), &r->rng, {}, {}};
    if (s.num_draft_tokens > 0) ss.draft_probs = r->draft_probs;  // empty: point-mass drafts
    FERRY_CHECK(s.num_draft_tokens == 0 || r->matcher == nullptr);  // constrained requests get no drafts
    sampling_.push_back(ss);
    int64_t offset = -1;
    if (s.samples && r->matcher != nullptr) {
      offset = static_cast<int64_t>(mask_words);
      mask_words += grammar::bitmask_words(r->matcher->vocab_size());
    }
    mask_offset_.push_back(offset);
    requests_.push_back(r);
    num_outputs_.push_back(s.request->num_output_tokens());
    if (r->params.num_prompt_logprobs >= 0) add_prompt_logprobs(i, s, *r);
  }
  // Targets were appended as the entries were made; their spans are taken once the vector is whole.
  size_t at = 0;
  for (PromptLogprobsInput& p : prompt_inputs_) {
    const size_t n = p.targets.size();
    p.targets = std::span<const int32_t>(prompt_targets_).subspan(at, n);
    at += n;
  }
  masks_.resize(mask_words);
  dead_end_.assign(sampling_.size(), false);
}

// Query token j (position c + j) predicts prompt token c + j + 1: the chunk scores prompt tokens
// from max(c + 1, next) to min(c + n, num_prompt - 1), those the request has not had scored.
void ModelRunner::add_prompt_logprobs(size_t i, const ScheduledSequence& s, const RunnerRequest& r) {
  const int32_t begin = std::max(s.num_computed_tokens + 1, r.next_prompt_logprob);
  const int32_t end = std::min(s.num_computed_tokens + s.num_new_tokens, s.request->num_prompt_tokens - 1) + 1;
  if (begin >= end) return;
  PromptLogprobsInput p;
  p.sequence = static_cast<int32_t>(i);
  p.first = begin - 1 - s.num_computed_tokens;
  p.num_top = r.params.num_prompt_logprobs;
  auto prompt = s.request->prompt();
  prompt_targets_.insert(prompt_targets_.end(), prompt.begin() + begin, prompt.begin() + end);
  p.targets = std::span<const int32_t>(prompt_targets_.data(), static_cast<size_t>(end - begin));  // size only, see prepare
  prompt_inputs_.push_back(p);
}

void ModelRunner::record_prompt_logprobs() {
  prompt_entry_.assign(inputs_.size(), -1);
  prompt_row_begin_.clear();
  size_t row = 0;
  for (size_t e = 0; e < prompt_inputs_.size(); ++e) {
    const PromptLogprobsInput& p = prompt_inputs_[e];
    prompt_entry_[static_cast<size_t>(p.sequence)] = static_cast<int32_t>(e);
    prompt_row_begin_.push_back(row);
    row += p.targets.size();
    RunnerRequest& r = *requests_[static_cast<size_t>(p.sequence)];
    r.next_prompt_logprob = first_prompt_logprob(static_cast<size_t>(p.sequence)) + static_cast<int32_t>(p.targets.size());
  }
  FERRY_CHECK(step_out_.prompt_logprobs.size() == row);
}

std::span<const SampleResult> ModelRunner::prompt_logprobs(size_t i) const {
  if (!step_ok_ || prompt_inputs_.empty() || prompt_entry_[i] < 0) return {};
  const auto e = static_cast<size_t>(prompt_entry_[i]);
  return std::span<const SampleResult>(step_out_.prompt_logprobs).subspan(prompt_row_begin_[e], prompt_inputs_[e].targets.size());
}

int32_t ModelRunner::first_prompt_logprob(size_t i) const {
  if (!step_ok_ || prompt_inputs_.empty() || prompt_entry_[i] < 0) return -1;
  // Query token `first` is at position num_computed + first and scores the prompt token after it.
  const PromptLogprobsInput& p = prompt_inputs_[static_cast<size_t>(prompt_entry_[i])];
  return inputs_[i].context_len - inputs_[i].query_len + p.first + 1;
}

void ModelRunner::fill_masks() {
  for (size_t i = 0; i < sampling_.size(); ++i) {
    if (mask_offset_[i] < 0) continue;
    grammar::Matcher& m = *requests_[i]->matcher;
    std::span<uint32_t> mask(masks_.data() + mask_offset_[i], grammar::bitmask_words(m.vocab_size()));
    m.fill_mask(mask);
    sampling_[i].allowed_tokens = mask;
    dead_end_[i] = std::all_of(mask.begin(), mask.end(), [](uint32_t w) { return w == 0; });
  }
}

// The stops the scheduler must act on in this very step (StopChecker's order: a stop token first,
// then the length; stop strings are the output processor's).
// num_before: tokens the sequence emitted earlier in this step.
RequestFinishReason ModelRunner::check_stop(size_t i, int32_t num_before, int32_t token) const {
  const auto& stops = requests_[i]->stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return RequestFinishReason::kStop;
  if (num_outputs_[i] + num_before + 1 >= requests_[i]->params.max_tokens) return RequestFinishReason::kLength;
  return RequestFinishReason::kNone;
}

RequestFinishReason ModelRunner::advance_grammar(size_t i, int32_t token) {
  grammar::Matcher* m = requests_[i]->matcher.get();
  if (m == nullptr) return RequestFinishReason::kNone;
  // The token came from the matcher's own mask, so it is accepted; a complete value ends the output.
  const bool accepted = m->accept_token(token);
  return !accepted || m->is_terminated() ? RequestFinishReason::kStop : RequestFinishReason::kNone;
}

Status ModelRunner::execute(Engine& engine) {
  const size_t n = inputs_.size();
  fill_masks();
  Status status = engine.step(batch(), sampling_, false, &step_out_);
  step_ok_ = status.ok();
  if (step_ok_ && !prompt_inputs_.empty()) record_prompt_logprobs();
  results_.assign(n, SequenceResult{});
  accepted_.assign(n, 0);
  emitted_.clear();
  num_sampled_ = 0;
  if (!status.ok()) {
    for (SequenceResult& r : results_) r.finish = RequestFinishReason::kError;
    return status;
  }
  FERRY_CHECK(step_out_.samples.size() >= n);
  // Extra tokens go to emitted_ first; the spans into it are taken once it stops growing.
  emitted_begin_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    emitted_begin_[i] = static_cast<int32_t>(emitted_.size());
    if (sampling_[i].params == nullptr) continue;
    if (dead_end_[i]) {  // the grammar allows no token of this vocabulary: the output ends here
      results_[i].finish = RequestFinishReason::kStop;
      continue;
    }
    const int32_t token = step_out_.samples[i].token;
    results_[i].token = token;
    results_[i].finish = check_stop(i, 0, token);
    if (results_[i].finish == RequestFinishReason::kNone) results_[i].finish = advance_grammar(i, token);
    ++num_sampled_;
    if (inputs_[i].num_draft_tokens == 0) continue;
    const int32_t num_extra = step_out_.num_extra[i];
    accepted_[i] = num_extra;
    const size_t first = static_cast<size_t>(step_out_.extra_begin[i]);
    for (int32_t j = 0; j < num_extra && results_[i].finish == RequestFinishReason::kNone; ++j) {
      const int32_t t = step_out_.extra[first + static_cast<size_t>(j)].token;
      emitted_.push_back(t);
      results_[i].finish = check_stop(i, j + 1, t);
      ++num_sampled_;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (results_[i].token == SequenceResult::kNoToken) continue;
    const size_t end = i + 1 < n ? static_cast<size_t>(emitted_begin_[i + 1]) : emitted_.size();
    const size_t begin = static_cast<size_t>(emitted_begin_[i]);
    results_[i].extra_tokens = std::span<const int32_t>(emitted_).subspan(begin, end - begin);
  }
  return status;
}

}  // namespace ferry::llm
