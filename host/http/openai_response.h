// OpenAI-compatible response bodies built from the LLM backend's responses: completion and chat
// objects, their streamed chunks, usage, both logprobs formats, and OpenAI's error object.
//
// The backend's response (names in common/llm_protocol.h): outputs text_output (the new text) and
// output_ids (the new token ids); parameters "logprobs" ([{token_id, token, logprob, rank,
// top_logprobs: [{token_id, token, logprob}]}] for this response's tokens), on the first response
// of an echo request "prompt_text", and on the FINAL "finish_reason" and "usage".
//
// Thread-safety: plain functions over values.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "host/model_version.h"

namespace ferry::host {

// What one backend response carries, decoded.
struct ChoiceDelta {
  std::string text;
  std::vector<int32_t> ids;
  Json::Value logprobs;     // the backend's list, or null
  Json::Value prompt_logprobs;  // the backend's prompt logprobs (once, when asked for), or null
  std::string prompt_text;  // echo: the prompt's text (first response only)
  std::string finish_reason;   // FINAL only: "stop" or "length"
  int64_t prompt_tokens = -1;  // FINAL only
  int64_t completion_tokens = -1;
};
Result<ChoiceDelta> decode_response(const ResponseData& response);

// id, creation time and model shared by a response's objects (or by all chunks of a stream).
struct OaiHeader {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};
// A fresh header: `prefix` + 24 random hex digits, now as created.
OaiHeader make_header(const std::string& prefix, const std::string& model);

Json::Value usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// Aligns the backend's logprob entries with the choice's text, starting at byte `*cursor` of
// `text` and advancing it past each token found. Returns each token's offset in `text`, in
// characters. A token's string is found where it next occurs after only whitespace; that
// whitespace becomes part of its string (and of the same token among the alternatives): the
// backend decodes each token alone, which drops the leading space of SentencePiece tokens
// ("▁there" -> "there"), while the text has it. A token not found (text held back by a stop
// string, a partial UTF-8 character) keeps its string and the current offset.
// `*chars` is the number of characters before `*cursor`, kept by the caller so that a stream's
// text is never recounted.
std::vector<int64_t> align_tokens(Json::Value* logprobs, const std::string& text, size_t* cursor, int64_t* chars);

// Completions' logprobs object {tokens, token_logprobs, top_logprobs: [{token: logprob}],
// text_offset} for the backend's `logprobs` list and the tokens' offsets from align_tokens.
Json::Value completion_logprobs(const Json::Value& logprobs, const std::vector<int64_t>& offsets);
// The legacy object's prompt part (echo with logprobs): the backend's prompt entries with at most
// `num_top` alternatives each, aligned with the echoed text `echo` (offsets from 0). The first
// entry has no logprob: completion_logprobs gives it null token_logprobs and top_logprobs.
Json::Value echo_prompt_entries(const Json::Value& prompt_logprobs, int num_top, const std::string& echo,
                                std::vector<int64_t>* offsets);
// vLLM's prompt_logprobs: [null, {"<token id>": {logprob, rank, decoded_token}}, ...], one per
// prompt token; each position's dict holds the prompt token and the top alternatives.
Json::Value vllm_prompt_logprobs(const Json::Value& prompt_logprobs);
// Chat's logprobs object {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
Json::Value chat_logprobs(const Json::Value& logprobs);
// The number of characters (UTF-8 code points) in `s`, as offsets in text_offset count them.
int64_t count_chars(std::string_view s);

// {"id","object":"text_completion","created","model","choices","usage"} and its chunk (one choice;
// `finish_reason` "" gives null; `usage_null` adds "usage": null as OpenAI does on the chunks of
// a stream that ends with a usage chunk).
Json::Value completion_object(const OaiHeader& h, Json::Value choices, Json::Value usage);
Json::Value completion_choice(int index, const std::string& text, Json::Value logprobs,
                              const std::string& finish_reason);
Json::Value completion_chunk(const OaiHeader& h, int index, const std::string& text, Json::Value logprobs,
                             const std::string& finish_reason, bool usage_null);

// {"id","object":"chat.completion",...} with choices [{index, message: {role, content}, logprobs,
// finish_reason}]; chunks ("chat.completion.chunk") carry {index, delta, logprobs, finish_reason}.
Json::Value chat_object(const OaiHeader& h, Json::Value choices, Json::Value usage);
Json::Value chat_choice(int index, const std::string& content, Json::Value logprobs, const std::string& finish_reason);
Json::Value chat_chunk(const OaiHeader& h, int index, Json::Value delta, Json::Value logprobs,
                       const std::string& finish_reason, bool usage_null);

// The chunks of a stream that carry only text (no logprobs, no tool calls, no finish_reason),
// written without a DOM: the object completion_chunk builds with `text`, or chat_chunk with the
// delta {"content": text}, as compact JSON (keys in OpenAI's order). One per stream: the part
// before the choice's index is formatted once.
class TextChunkWriter {
 public:
  TextChunkWriter(const OaiHeader& h, bool chat, bool usage_null);
  // Appends the chunk of choice `index` to `out`.
  void append(std::string& out, int index, std::string_view text) const;

 private:
  std::string head_;  // {"id":..,"object":..,"created":..,"model":..,"choices":[{"index":
  std::string_view text_key_;
  std::string_view tail_;
};

// The stream's last chunk when stream_options.include_usage: "choices": [] and the usage.
Json::Value usage_chunk(const OaiHeader& h, const char* object, Json::Value usage);

// OpenAI's error object {"error": {"message", "type", "param", "code"}} for `status`, and the
// HTTP status it goes with. "param" is the field the message names in quotes, if any.
int error_http_status(const Status& status);
Json::Value error_json(const Status& status);

}  // namespace ferry::host
