// LlmRequest: an ABI request turned into what generation needs: prompt token ids and sampling
// parameters. Inputs: `text_input` (BYTES, one element) or `input_ids` (INT32/INT64), or a chat
// in the "messages" parameter rendered through the model's chat template.
//
// Parameters (TensorRT-LLM / vLLM / OpenAI names; the protocol's own names are in
// common/llm_protocol.h, shared with the host): max_tokens (0: nothing is generated, the request
// computes its prompt for its echo or its prompt_logprobs and ends with finish "length"; the prompt
// must still leave one token of room in the context window), max_tokens_to_window (true: without
// max_tokens, the rest of the context window after the prompt), temperature, top_p (alias
// runtime_top_p), top_k (alias runtime_top_k), min_p, end_id (a stop token), stop_words (alias of stop),
// seed (alias random_seed), repetition_penalty, presence_penalty, frequency_penalty, stop (string or
// list), stop_token_ids, min_tokens (no stop before this many tokens), logit_bias ({"<id>": bias in
// [-100, 100]}), ignore_eos, include_stop_str_in_output, logprobs (N: the chosen token's
// logprob and the top N), prompt_logprobs (N in [0, 20], vLLM's: each prompt token's logprob after
// the first, with its rank and the top N at its position; the request then computes its whole
// prompt, not reusing the prefix cache), add_special_tokens (text only; default true), skip_special_tokens
// (default true), messages ([{role, content, tool_calls?, tool_call_id?}], applies the chat
// template; checked by common/chat_request.h), tools (OpenAI's list, passed to the template as
// `tools`), echo (the first response's parameters carry the prompt as "prompt_text" and
// "prompt_ids"), task ("generate", the default; "tokenize": answer at once with the prompt's ids,
// no generation; "detokenize": answer at once with the text of input_ids); an output format
// (response_format, guided_json, guided_regex, guided_choice, guided_grammar, structured_outputs,
// grammar, json_schema: see guided_decoding.h) becomes guided_gbnf, which the model compiles;
// speculative (false: no speculative decoding for this request even if the model is configured
// for it; true, the default, changes nothing). Unknown keys are ignored (the host adds its own,
// e.g. priority); a known key with a bad value is an error naming it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/llm/chat_template/chat_template.h"
#include "backend/llm/grammar/grammar.h"
#include "backend/llm/sampling/sampling_params.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::llm {

enum class LlmTask { kGenerate, kTokenize, kDetokenize };

struct LlmRequest {
  LlmTask task = LlmTask::kGenerate;
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  bool skip_special_tokens = true;
  bool echo = false;
  bool prompt_only = false;  // max_tokens 0: sampling.max_tokens is 1, and that token is dropped
  std::string guided_gbnf;  // the output format asked for, as GBNF; empty: unconstrained
  // Its matcher, set by the model once guided_gbnf is compiled (LlmModel::submit); null without.
  std::unique_ptr<grammar::Matcher> matcher;
  bool speculative = true;  // false: the request opted out of speculative decoding
};

// A prompt's text may hold at most this many bytes per token of the context window. Real text
// averages 3-5 bytes per token and a vocabulary's longest pieces are rarely over 32 bytes, so no
// prompt that fits the window is refused; a text far larger than any prompt that fits is refused
// before it costs tokenization time.
inline constexpr int64_t kMaxPromptBytesPerToken = 64;

// `chat_template` may be null (the model has none: "messages" is then an error).
// max_model_len (0: no limit) bounds a generate request's prompt: its text (or rendered chat) over
// max_model_len * kMaxPromptBytesPerToken bytes is refused, naming the context window, and its
// tokenization stops once the prompt leaves no room for max_tokens (prompt_ids is then a prefix
// longer than max_model_len - max_tokens; the caller's context check refuses it).
Result<LlmRequest> parse_llm_request(const ferry_request& request, const Tokenizer& tokenizer,
                                     const ChatTemplate* chat_template, int32_t vocab_size,
                                     int64_t max_model_len = 0);

}  // namespace ferry::llm
