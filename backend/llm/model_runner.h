// ModelRunner: turns one scheduler step into one engine step, and the engine's samples into the
// per-sequence results the scheduler takes back.
//
//   prepare(out, requests)  scheduler output -> ForwardBatch (token ids, positions, one
//                           SequenceInput with its block table per sequence) and one
//                           SamplingSequence per sequence (params null for a prefill chunk that
//                           does not reach the prompt's end: it samples nothing);
//   execute(engine)         fills the token masks of constrained sequences (their grammar
//                           matchers), runs Engine::step, then checks each sampled token against
//                           what the scheduler must know at once to free the blocks: the
//                           request's stop token ids (EOS included unless ignore_eos), max_tokens,
//                           and a grammar that is complete (finish "stop").
// Speculative decoding: a decode the scheduler gave proposed tokens (ScheduledSequence::
// num_draft_tokens) is one query of 1 + k tokens; the engine verifies the drafts and the sequence
// emits 1 to k + 1 tokens. The stop checks run over them in order: the run is cut after a stop
// token or at max_tokens, so nothing past either is ever emitted. Constrained sequences never get
// drafts (the instance proposes none for them).
// Prompt logprobs (params.num_prompt_logprobs >= 0): each prefill chunk asks the engine to score
// the prompt tokens its query positions predict (ForwardBatch::prompt_logprobs), except those the
// request had scored before a preemption; prompt_logprobs(i) hands the results to the instance.
// Stop STRINGS are not checked here: they need the detokenized text, which the OutputProcessor
// builds off this thread; it asks the instance to end a request when it finds one.
//
// Not for: scheduling, detokenizing, responding. Owns no request state: the per-request
// RunnerRequest lives with the instance, which hands pointers to prepare().
//
// Allocation: the batch vectors and the engine's StepOutput are members, reused every step, so a
// warm runner allocates nothing per step (SampleResult::top_logprobs keep their capacity too).
//
// Thread-safety: none; one runner per instance, used by its loop thread. prepare() reads the
// scheduler's token and block-table spans, so call it while they are stable (the loop holds the
// instance lock); execute() only reads what prepare() recorded and may run unlocked, as long as
// nothing but the loop thread changes the scheduler (schedule / update_from_output).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/llm/engine/engine.h"
#include "backend/llm/grammar/grammar.h"
#include "backend/llm/sampling/sampler.h"
#include "backend/llm/sampling/sampling_params.h"
#include "backend/llm/sampling/sampling_rng.h"
#include "backend/llm/scheduler/scheduler.h"
#include "backend/llm/speculative/speculation_gate.h"
#include "common/status.h"

namespace ferry::llm {

// What the step thread keeps per request to sample it and to decide the stops it must see at once.
struct RunnerRequest {
  RunnerRequest(SamplingParams sampling_params, std::span<const int32_t> eos_token_ids);

  SamplingParams params;
  SamplingRng rng;                      // the request's own stream (seeded from params.seed)
  std::vector<int32_t> stop_token_ids;  // params.stop_token_ids, then the EOS ids unless ignore_eos
  // Constrained decoding: the sequence's place in its grammar (null: unconstrained). Advanced by
  // every sampled token; a preempted request keeps its output tokens and so its matcher state.
  std::unique_ptr<grammar::Matcher> matcher;
  bool speculate = true;                // false: the request opted out ("speculative": false)
  // Prompt logprobs (params.num_prompt_logprobs >= 0): the next prompt token to score. Token 0 has
  // none; a prefill recomputed after a preemption does not score again what was scored before.
  int32_t next_prompt_logprob = 1;
  SpeculationGate spec_gate;            // backs off while its drafts are mostly rejected
  // Draft-model speculation: the draft's own random stream (from params.seed, apart from rng), and
  // the last proposal: its tokens and, for a sampled request, their distributions q [drafts, vocab]
  // (prepare() hands q to the verification of a step with drafts).
  SamplingRng draft_rng;
  std::vector<int32_t> draft_tokens;
  std::vector<float> draft_probs;
};

class ModelRunner {
 public:
  // Builds the batch of out.scheduled; requests[i] is the state of out.scheduled[i] and must stay
  // valid until execute() returns.
  void prepare(const SchedulerOutput& out, std::span<RunnerRequest* const> requests);

  // Runs the prepared batch. On OK, results()[i] holds the sampled token of every sequence that
  // sampled (kNoToken otherwise) and finish kStop (a stop token) or kLength (max_tokens) when that
  // token ends the request. On error every result is kError and nothing was sampled; the status
  // is the engine's.
  Status execute(Engine& engine);

  // The prepared batch (views of the runner's buffers, valid until the next prepare()).
  ForwardBatch batch() const { return ForwardBatch{token_ids_, positions_, inputs_, false, prompt_inputs_}; }
  std::span<const SamplingSequence> sampling() const { return sampling_; }

  // One per scheduled sequence of the last prepare(), in order; valid until the next prepare().
  std::span<const SequenceResult> results() const { return results_; }
  // Tokens sequence i emitted in the last execute(): 1 + results()[i].extra_tokens.size() when it
  // sampled, else 0.
  int32_t num_emitted(size_t i) const {
    return results_[i].token == SequenceResult::kNoToken ? 0 : 1 + static_cast<int32_t>(results_[i].extra_tokens.size());
  }
  // The sample (token, logprobs) of the j-th token sequence i emitted (j < num_emitted(i)).
  const SampleResult& sample(size_t i, size_t j = 0) const {
    return j == 0 ? step_out_.samples[i] : step_out_.extra[static_cast<size_t>(step_out_.extra_begin[i]) + j - 1];
  }
  // Speculative decoding, sequence i of the last execute(): drafts verified, and accepted (before
  // the stop checks cut the run).
  int32_t num_drafts(size_t i) const { return inputs_[i].num_draft_tokens; }
  int32_t num_accepted(size_t i) const { return accepted_[i]; }
  // Tokens emitted by all sequences in the last execute().
  int64_t num_sampled() const { return num_sampled_; }
  // Prompt logprobs sequence i computed in the last execute(): one per prompt token scored, in
  // order, the first for prompt token first_prompt_logprob(i); empty when it asked for none or this
  // step's chunk scored none (or the step failed).
  std::span<const SampleResult> prompt_logprobs(size_t i) const;
  int32_t first_prompt_logprob(size_t i) const;

 private:
  RequestFinishReason check_stop(size_t i, int32_t num_before, int32_t token) const;
  // Advances sequence i's matcher (if any) by its sampled token: kStop once the value is complete.
  RequestFinishReason advance_grammar(size_t i, int32_t token);
  void fill_masks();  // the constrained sequences' masks, into sampling_
  // Sequence i's prompt tokens to score in this step, if any, into prompt_inputs_.
  void add_prompt_logprobs(size_t i, const ScheduledSequence& s, const RunnerRequest& r);
  // After a successful step: maps sequences to their rows, advances next_prompt_logprob.
  void record_prompt_logprobs();

  // Batch, parallel arrays (ForwardBatch views them).
  std::vector<int32_t> token_ids_;       // [num_tokens]
  std::vector<int32_t> positions_;       // [num_tokens]
  std::vector<SequenceInput> inputs_;    // [num_seqs]
  std::vector<SamplingSequence> sampling_;  // [num_seqs]; params null: no token this step
  // Per sequence, for the stop checks after the step.
  std::vector<RunnerRequest*> requests_;        // [num_seqs] (execute advances their matchers)
  std::vector<int32_t> num_outputs_;            // [num_seqs] generated tokens before this step
  std::vector<SequenceResult> results_;         // [num_seqs]
  // Constrained sequences' token masks: mask_offset_[i] words into masks_ (-1: none).
  std::vector<int64_t> mask_offset_;            // [num_seqs]
  std::vector<uint32_t> masks_;                 // [sum of constrained sequences' mask words]
  std::vector<bool> dead_end_;                  // [num_seqs] its mask allowed no token
  std::vector<int32_t> emitted_;                // extra tokens of all sequences (results_ view them)
  std::vector<int32_t> emitted_begin_;          // [num_seqs] sequence i's first extra token in emitted_
  std::vector<int32_t> accepted_;               // [num_seqs] drafts accepted
  // Prompt logprobs: the entries of the sequences that score prompt tokens this step (usually none),
  // their targets, and per sequence its entry (-1: none).
  std::vector<PromptLogprobsInput> prompt_inputs_;
  std::vector<int32_t> prompt_targets_;
  std::vector<int32_t> prompt_entry_;           // [num_seqs], filled only when prompt_inputs_ is not empty
  std::vector<size_t> prompt_row_begin_;        // [prompt_inputs_.size()] first row in step_out_.prompt_logprobs
  bool step_ok_ = false;
  StepOutput step_out_;
  int64_t num_sampled_ = 0;
};

}  // namespace ferry::llm
