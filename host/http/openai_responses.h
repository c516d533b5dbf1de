// OpenAI's Responses API (POST /v1/responses), text in and text out, as vLLM serves it: the request
// becomes a chat (instructions as the system message, input as the messages) for the same backend
// path as /v1/chat/completions, and the answer is a "response" object, or for a stream the
// response.* events (created, in_progress, output_item.added, content_part.added,
// output_text.delta..., output_text.done, content_part.done, output_item.done, completed).
//
// Not served (400 naming the field): previous_response_id and background (ferry stores no
// responses), tools and non-text input items (images, files, function call outputs).
//
// Thread-safety: plain functions over values.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <string>

#include "common/status.h"
#include "host/http/openai_request.h"

namespace ferry::host {

// The request as a one-choice chat request; `echo` receives the request's fields that the response
// object repeats (instructions, max_output_tokens, temperature, top_p, metadata, ...).
Result<OaiRequest> parse_responses_request(const Json::Value& body, Json::Value* echo);

// What the response object says of one finished (or running) reply.
struct ResponsesState {
  std::string id;       // "resp_..."
  std::string item_id;  // "msg_...": the one output message
  int64_t created_at = 0;
  std::string model;
  std::string text;
  std::string finish_reason;  // "" while running
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
};

// The response object: status "in_progress" while finish_reason is "", "completed" after "stop",
// "incomplete" (incomplete_details.reason "max_output_tokens") after "length".
Json::Value responses_object(const ResponsesState& s, const Json::Value& echo);

// The stream's events. Each has its "type" and "sequence_number" (`*seq`, advanced).
Json::Value responses_event(const char* type, int64_t* seq);
// The output message item and its text part, as the item.added / part.added / *.done events carry them.
Json::Value responses_message_item(const ResponsesState& s, bool done);
Json::Value responses_text_part(const std::string& text);

}  // namespace ferry::host
