#include "backend/llm/draft_proposer.h"

#include <algorithm>
#include <limits>

namespace ferry::llm {

Result<std::unique_ptr<DraftProposer>> DraftProposer::create(std::shared_ptr<const CausalLM> draft,
                                                             const DraftProposerOptions& options) {
  CpuEngineOptions engine_options;
  engine_options.num_threads = options.num_threads;
  std::unique_ptr<CpuEngine> engine;
  FERRY_ASSIGN_OR_RETURN(engine, CpuEngine::create(std::move(draft), engine_options));
  return create(std::unique_ptr<Engine>(std::move(engine)), options);
}

Result<std::unique_ptr<DraftProposer>> DraftProposer::create(std::unique_ptr<Engine> engine,
                                                             const DraftProposerOptions& options) {
  if (options.max_catch_up_tokens < 1) return Status::InvalidArgument("draft: max_catch_up_tokens must be >= 1");
  KvCacheOptions kv;
  kv.num_blocks = options.num_blocks;
  kv.block_size = options.block_size;
  kv.dtype = options.kv_dtype;
  FERRY_RETURN_IF_ERROR(engine->allocate_kv_cache(kv).status().with_prefix("draft KV cache"));
  return std::unique_ptr<DraftProposer>(
      new DraftProposer(std::move(engine), options.block_size, options.max_catch_up_tokens));
}

DraftProposer::DraftProposer(std::unique_ptr<Engine> engine, int64_t block_size, int32_t max_catch_up_tokens)
    : engine_(std::move(engine)),
      block_size_(block_size),
      max_catch_up_tokens_(max_catch_up_tokens),
      max_positions_(static_cast<int32_t>(
          std::min<int64_t>(engine_->config().max_position_embeddings, std::numeric_limits<int32_t>::max()))),
      sampler_(static_cast<int32_t>(engine_->config().vocab_size)),
      point_mass_(static_cast<size_t>(engine_->config().vocab_size)) {
  // Handed out from the back: block 0 first.
  for (int64_t b = engine_->num_kv_blocks(); b-- > 0;) free_blocks_.push_back(static_cast<int32_t>(b));
}

void DraftProposer::release(uint64_t id) {
  auto it = states_.find(id);
  if (it == states_.end()) return;
  free_blocks_.insert(free_blocks_.end(), it->second.blocks.begin(), it->second.blocks.end());
  states_.erase(it);
}

int32_t DraftProposer::valid_prefix(const SeqState& s, std::span<const int32_t> tokens) {
  const auto len = static_cast<int32_t>(tokens.size());
  if (s.base_len > len) return 0;  // not this sequence's history (cannot happen while ids are unique)
  // The drafts the target kept are the sequence's tokens after base_len; the K/V of those drafts
  // (computed by the last round) stay valid, the rest do not.
  int32_t kept = 0;
  while (kept < static_cast<int32_t>(s.drafts.size()) && s.base_len + kept < len &&
         tokens[static_cast<size_t>(s.base_len + kept)] == s.drafts[static_cast<size_t>(kept)]) {
    ++kept;
  }
  // At least the last token is computed again: its logits give the first draft.
  return std::min({s.num_computed, s.base_len + kept, len - 1});
}

bool DraftProposer::evict_idle() {
  auto victim = states_.end();
  for (auto it = states_.begin(); it != states_.end(); ++it) {
    if (it->second.last_round == round_ || it->second.blocks.empty()) continue;
    if (victim == states_.end() || it->second.last_round < victim->second.last_round) victim = it;
  }
  if (victim == states_.end()) return false;
  release(victim->first);
  return true;
}

bool DraftProposer::ensure_blocks(SeqState* s, int32_t context_len) {
  const size_t need = static_cast<size_t>((context_len + block_size_ - 1) / block_size_);
  while (s->blocks.size() < need) {
    if (free_blocks_.empty() && !evict_idle()) return false;
    s->blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return true;
}

bool DraftProposer::plan(const DraftJob& job, int32_t* budget) {
  job.drafts->clear();
  job.probs->clear();
  const auto len = static_cast<int32_t>(job.tokens.size());
  // The last round computes position len + k - 2: the context must hold len + k - 1 positions.
  const int32_t k = std::min(job.num_drafts, max_positions_ - len + 1);
  if (len < 1 || k < 1 || *budget < 1) return false;
  SeqState& s = states_[job.id];
  s.last_round = round_;
  s.num_computed = valid_prefix(s, job.tokens);  // the drafts past it are rolled back
  s.base_len = s.num_computed;
  s.drafts.clear();
  Active a;
  a.job = &job;
  a.state = &s;
  a.len = len;
  a.k = k;
  a.begin = s.num_computed;
  a.end = a.begin + std::min(len - a.begin, *budget);
  a.proposes = a.end == len;
  if (!ensure_blocks(&s, a.proposes ? len + k - 1 : a.end)) return false;
  *budget -= a.end - a.begin;
  active_.push_back(a);
  return true;
}

Status DraftProposer::propose(std::span<const DraftJob> jobs) {
  ++round_;
  active_.clear();
  int32_t budget = max_catch_up_tokens_;
  int32_t num_steps = 0;
  for (const DraftJob& job : jobs) {
    FERRY_CHECK(job.drafts != nullptr && job.probs != nullptr && job.params != nullptr);
    if (plan(job, &budget)) num_steps = std::max(num_steps, active_.back().proposes ? active_.back().k : 1);
  }
  for (int32_t r = 0; r < num_steps; ++r) {
    Status s = run_step(r);
    if (!s.ok()) {
      for (const DraftJob& job : jobs) {
        job.drafts->clear();
        job.probs->clear();
      }
      // What the failed step would have written is not valid: recompute from each step-0 start.
      for (Active& a : active_) a.state->num_computed = std::min(a.state->num_computed, a.begin);
      finish_round();
      return s;
    }
  }
  finish_round();
  return Status::Ok();
}

// Step 0: every active sequence's catch-up tokens [begin, end). Step r >= 1: the proposing
// sequences that want more than r drafts, one token each (draft r - 1 at position len + r - 1).
Status DraftProposer::run_step(int32_t r) {
  stepping_.clear();
  token_ids_.clear();
  positions_.clear();
  inputs_.clear();
  for (size_t i = 0; i < active_.size(); ++i) {
    const Active& a = active_[i];
    SequenceInput in;
    in.query_start = static_cast<int32_t>(token_ids_.size());
    in.block_table = a.state->blocks;
    if (r == 0) {
      for (int32_t p = a.begin; p < a.end; ++p) {
        token_ids_.push_back(a.job->tokens[static_cast<size_t>(p)]);
        positions_.push_back(p);
      }
      in.query_len = a.end - a.begin;
      in.context_len = a.end;
    } else {
      if (!a.proposes || a.k <= r || static_cast<int32_t>(a.job->drafts->size()) != r) continue;
      token_ids_.push_back(a.job->drafts->back());
      positions_.push_back(a.len + r - 1);
      in.query_len = 1;
      in.context_len = a.len + r;
    }
    stepping_.push_back(i);
    inputs_.push_back(in);
  }
  if (stepping_.empty()) return Status::Ok();
  const ForwardBatch batch{token_ids_, positions_, inputs_, false};
  FERRY_RETURN_IF_ERROR(engine_->step(batch, {}, true, &out_));
  for (size_t s = 0; s < stepping_.size(); ++s) {
    Active& a = active_[stepping_[s]];
    a.state->num_computed = inputs_[s].context_len;
    const std::span<const float> row(out_.logits.row(static_cast<int64_t>(s)), static_cast<size_t>(out_.logits.vocab));
    if (a.proposes) take_draft(a, row);
  }
  return Status::Ok();
}

// The next draft of `a` from the draft's logits row at its last computed position.
void DraftProposer::take_draft(const Active& a, std::span<const float> logits) {
  const DraftJob& job = *a.job;
  const SamplingParams& p = *job.params;
  std::vector<int32_t>& drafts = *job.drafts;
  const auto prompt = job.tokens.first(static_cast<size_t>(job.num_prompt_tokens));
  std::span<const int32_t> output = job.tokens.subspan(static_cast<size_t>(job.num_prompt_tokens));
  if (!drafts.empty() && (p.has_penalties() || p.min_tokens > 0)) {
    // Penalties and min_tokens see the drafts before this one as generated tokens.
    history_.assign(output.begin(), output.end());
    history_.insert(history_.end(), drafts.begin(), drafts.end());
    output = history_;
  }
  const SamplingSequence seq{&p, prompt, output, job.rng, {}, {}};
  const size_t vocab = point_mass_.size();
  if (p.is_greedy()) {
    sampler_.distribution(logits, seq, point_mass_);
    drafts.push_back(static_cast<int32_t>(std::max_element(point_mass_.begin(), point_mass_.end()) - point_mass_.begin()));
    return;
  }
  FERRY_CHECK(job.rng != nullptr);
  job.probs->resize((drafts.size() + 1) * vocab);
  const std::span<float> q(job.probs->data() + drafts.size() * vocab, vocab);
  sampler_.distribution(logits, seq, q);
  drafts.push_back(Sampler::draw_from(q, *job.rng));
}

// What the states say for the next round's valid_prefix: the sequence's tokens up to base_len,
// then the round's drafts (none for a catch-up in progress or a failed round).
void DraftProposer::finish_round() {
  for (const Active& a : active_) {
    SeqState& s = *a.state;
    if (a.proposes && !a.job->drafts->empty()) {
      s.base_len = a.len;
      s.drafts.assign(a.job->drafts->begin(), a.job->drafts->end());
    } else {
      s.base_len = s.num_computed;
      s.drafts.clear();
    }
  }
  active_.clear();
}

}  // namespace ferry::llm
