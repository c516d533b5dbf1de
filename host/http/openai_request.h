// OpenAI-compatible request bodies (/v1/completions, /v1/chat/completions, /tokenize, /detokenize)
// turned into ABI requests for the LLM backend (backend/llm/llm_request.h has its protocol).
//
// Field names, types and defaults follow the OpenAI API reference, and vLLM where it is silent
// (top_k, min_p, repetition_penalty, ignore_eos, stop_token_ids, skip_special_tokens, ...).
// Sampling values pass to the backend, which checks their ranges and names the field it refuses;
// this layer checks the fields it interprets itself (prompt, messages, n, stream, logprobs, ...)
// and refuses the ones ferry does not implement rather than ignoring them silently. Every error
// is InvalidArgument whose message names the field in quotes ('temperature'), so the caller can
// fill OpenAI's "param".
//
// Thread-safety: plain functions over values.
#pragma once

#include <json/json.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "host/http/openai_tools.h"
#include "host/model_version.h"

namespace ferry::host {

enum class OaiEndpoint { kCompletions, kChat };

// The most choices one request may ask for (n), and the most choices of all the prompts of one
// completions request together (prompts x n).
inline constexpr int kOaiMaxChoices = 16;
inline constexpr int kOaiMaxPromptChoices = 256;

// One completions prompt: text, or token ids when `text` is absent.
struct OaiPrompt {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
};

struct OaiRequest {
  OaiEndpoint endpoint = OaiEndpoint::kCompletions;
  std::string model;  // empty: not given (the handler picks the only LLM model, if there is one)
  // The prompts: completions give one or several, each text or token ids; chat gives messages,
  // which the backend checks and renders through the model's chat template.
  std::vector<OaiPrompt> prompts;
  Json::Value messages;  // chat only: as the client sent them
  ToolRequest tools;     // chat only: tools, tool_choice, parallel_tool_calls
  ToolCallFormat tool_format = ToolCallFormat::kNone;  // set by the handler from the model's metadata
  int n = 1;             // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: the prompt leads the text
  // Logprobs: -1 none; otherwise how many alternatives per token (completions: "logprobs";
  // chat: "top_logprobs", 0 when only "logprobs": true).
  int num_logprobs = -1;
  // vLLM's prompt_logprobs: -1 none; else alternatives per prompt position (vLLM's field in the
  // answer). Completions' echo with logprobs asks the backend for the prompt's logprobs too (the
  // legacy logprobs object then starts with the prompt's tokens).
  int num_prompt_logprobs = -1;
  // Whether max_tokens (or max_completion_tokens) was given; when it was not, chat fills the rest
  // of the context window (the backend's llm_protocol::kMaxTokensToWindow).
  bool has_max_tokens = false;
  std::optional<uint64_t> seed;
  uint32_t priority = 0;
  uint64_t timeout_us = 0;
  // The backend parameters common to every choice (sampling, stop, ...), without seed and the
  // prompt.
  Json::Value parameters{Json::objectValue};
  // The body as the client sent it (may be empty): the output formats' own text is put back into
  // each choice's parameters, since a JSON Schema's property order matters and jsoncpp sorts keys.
  std::string body_text;

  // Choices in all: n per prompt, prompt after prompt (choice index = prompt * n + j, as vLLM
  // numbers them).
  int num_choices() const { return n * std::max<int>(1, static_cast<int>(prompts.size())); }
  const OaiPrompt& prompt_of(int choice) const { return prompts[static_cast<size_t>(choice / n)]; }
};

Result<OaiRequest> parse_completion_request(const Json::Value& body);
Result<OaiRequest> parse_chat_request(const Json::Value& body);

// The ABI request for choice `index` (0-based, < num_choices()): its prompt, the shared parameters,
// and the seed (seed + index % n, so that n choices sample differently yet reproducibly; no seed
// stays random).
RequestSpec make_choice_request(const OaiRequest& request, int index);

// POST /tokenize: {model, prompt} or {model, messages[, add_generation_prompt]}, add_special_tokens.
// POST /detokenize: {model, tokens}. `model` receives the body's model.
Result<RequestSpec> parse_tokenize_request(const Json::Value& body, std::string* model);
Result<RequestSpec> parse_detokenize_request(const Json::Value& body, std::string* model);

}  // namespace ferry::host
