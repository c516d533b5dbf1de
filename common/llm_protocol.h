// The names of ferry's LLM protocol: what a host frontend puts in an ABI request to an LLM backend
// and reads back from its responses and metadata. The LLM backend (backend/llm/llm_request.h
// documents each parameter's meaning and range) and the host's OpenAI frontend
// (host/http/openai_*.cc) both include this header, so the two sides cannot drift apart.
//
// Not in here: the sampling fields (temperature, top_p, stop, logit_bias, ...), which pass from a
// client to the backend under the client's own (OpenAI / vLLM) names; the backend validates them.
//
// Header-only constants; no types, no JSON code.
#pragma once

namespace ferry::llm_protocol {

// --- model metadata (FERRY_DESCRIBE_KIND_METADATA, a KServe metadata object) ---
// A model whose metadata "platform" is kPlatform speaks this protocol (the /v1 endpoints serve it).
inline constexpr const char* kMetaPlatform = "platform";
inline constexpr const char* kPlatform = "ferry_llm";
// Its context window in tokens (prompt + generated), an integer.
inline constexpr const char* kMetaMaxModelLen = "max_model_len";
// How the model writes tool calls ("llama3_json", "hermes", "mistral"; vLLM's parser names); absent
// when it has no known format.
inline constexpr const char* kMetaToolCallParser = "tool_call_parser";

// --- request inputs (one of them, or the kMessages parameter) ---
inline constexpr const char* kInputText = "text_input";  // BYTES, one element: the prompt's text
inline constexpr const char* kInputIds = "input_ids";    // INT32 / INT64: the prompt's token ids

// --- request parameters ---
inline constexpr const char* kTask = "task";  // one of the three below; default kTaskGenerate
inline constexpr const char* kTaskGenerate = "generate";
inline constexpr const char* kTaskTokenize = "tokenize";      // answers the prompt's ids at once
inline constexpr const char* kTaskDetokenize = "detokenize";  // answers the text of input_ids at once
// [{role, content, ...}]: a chat rendered through the model's chat template (common/chat_request.h
// checks it).
inline constexpr const char* kMessages = "messages";
// [{type: "function", function: {name, description, parameters}}]: passed to the chat template as
// `tools`, as HF's apply_chat_template does.
inline constexpr const char* kTools = "tools";
inline constexpr const char* kMaxTokens = "max_tokens";  // >= 0; 0: the prompt alone (echo, prompt logprobs)
// true: when max_tokens is absent, generate up to the end of the context window (OpenAI's chat
// default) instead of the backend's default of 16.
inline constexpr const char* kMaxTokensToWindow = "max_tokens_to_window";
// true: the first response carries the prompt (kPromptText, kPromptIds).
inline constexpr const char* kEcho = "echo";
inline constexpr const char* kLogprobs = "logprobs";  // N: the chosen token's logprob and the top N
// N in [0, 20] (vLLM's prompt_logprobs): the prompt's logprobs, each prompt token's after the first
// with the top N at its position. As a response parameter (on the first response once the prompt is
// computed, once): one entry per prompt token in the kLogprobs entry format, the first without
// kLogprob, kRank and kTopLogprobs (nothing precedes it); kToken is the token's text as it reads in
// the decoded prompt.
inline constexpr const char* kPromptLogprobs = "prompt_logprobs";
// Output formats (constrained decoding, docs/structured-outputs.md): at most one per request, under
// OpenAI's, vLLM's and llama.cpp's names; the backend parses them (backend/llm/guided_decoding.h).
inline constexpr const char* kOutputFormatKeys[] = {"response_format", "guided_json",        "guided_regex",
                                                    "guided_choice",   "guided_grammar",     "structured_outputs",
                                                    "grammar",         "json_schema"};
// Those whose value may hold a JSON Schema, and `tools` (each function's parameters are one, and a
// chat template may print them): the host keeps their text as sent, key order included
// (host/json_util.h).
inline constexpr const char* kSchemaFormatKeys[] = {"response_format", "guided_json", "structured_outputs",
                                                    "json_schema", "tools"};
// vLLM's choice of grammar engine: accepted and ignored (ferry has one).
inline constexpr const char* kGuidedDecodingBackend = "guided_decoding_backend";

// --- response outputs ---
inline constexpr const char* kOutputText = "text_output";  // BYTES: the new text
inline constexpr const char* kOutputIds = "output_ids";    // INT32: the new token ids

// --- response parameters ---
inline constexpr const char* kPromptText = "prompt_text";  // echo, first response: the prompt's text
inline constexpr const char* kPromptIds = "prompt_ids";    // echo, first response: its ids
inline constexpr const char* kFinishReason = "finish_reason";  // FINAL: "stop" or "length"
inline constexpr const char* kUsage = "usage";                 // FINAL: {prompt_tokens, completion_tokens}
inline constexpr const char* kPromptTokens = "prompt_tokens";
inline constexpr const char* kCompletionTokens = "completion_tokens";
// logprobs: [{token_id, token, logprob, rank, top_logprobs: [{token_id, token, logprob}]}]
inline constexpr const char* kTokenId = "token_id";
inline constexpr const char* kToken = "token";
inline constexpr const char* kLogprob = "logprob";
inline constexpr const char* kRank = "rank";
inline constexpr const char* kTopLogprobs = "top_logprobs";
// tokenize task: the number of ids and the context window.
inline constexpr const char* kCount = "count";
inline constexpr const char* kMaxModelLen = "max_model_len";

}  // namespace ferry::llm_protocol
