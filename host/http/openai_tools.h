// Tool calling on /v1/chat/completions: the request's tools and tool_choice, and the model's text
// turned into OpenAI tool_calls.
//
// A model writes its calls in the format its chat template taught it; the LLM backend names that
// format in the model's metadata (llm_protocol::kMetaToolCallParser, vLLM's parser names):
//   llama3_json  Llama 3.1-3.3: the reply is a JSON object {"name", "parameters"} (several joined
//                by ";"), optionally after <|python_tag|>;
//   hermes       Qwen2.5, Qwen3, Hermes: <tool_call>{"name", "arguments"}</tool_call>, once per
//                call, possibly after some text;
//   mistral      [TOOL_CALLS] then a JSON list [{"name", "arguments"}], possibly after some text.
// Text that does not parse as calls stays content, as vLLM leaves it.
//
// tool_choice "required" and a named function ask the backend to constrain the reply to JSON
// (guided_json, vLLM's way): a named function's reply is its arguments; "required"'s is a list
// [{"name", "parameters"}]. These parse the same whatever the model's own format.
//
// Thread-safety: plain functions and values; a ToolCallStream belongs to one choice of one stream.
#pragma once

#include <json/json.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry::host {

enum class ToolCallFormat { kNone, kLlama3Json, kHermes, kMistral };

// "llama3_json", "hermes", "mistral" -> the format; anything else (absent too) -> kNone.
ToolCallFormat tool_call_format_from_name(std::string_view name);

// What the request asked for.
struct ToolRequest {
  Json::Value tools{Json::arrayValue};  // checked (common/chat_request.h normalize_chat_tools)
  // "none": the model's text is content; "auto": its calls are parsed; "required": it must call
  // one of the tools; "function": it must call `function`.
  enum class Choice { kNone, kAuto, kRequired, kFunction } choice = Choice::kAuto;
  std::string function;        // Choice::kFunction
  bool parallel_tool_calls = true;
  bool active() const { return tools.size() > 0 && choice != Choice::kNone; }
};

// Reads tools, tool_choice and parallel_tool_calls of a chat body. InvalidArgument names the field.
Result<ToolRequest> parse_tool_request(const Json::Value& body);

// The guided_json schema that makes the reply parse for tool_choice "required" or a named function;
// null for the other choices.
Json::Value tool_call_schema(const ToolRequest& request);
// `schema` (tool_call_schema's) as text, each tool's parameters schema in the key order of
// `tools_text`, the request's own text of "tools" (its entries are request.tools', in order): the
// arguments are then generated in the order the function declares its properties.
std::string tool_call_schema_text(const ToolRequest& request, const Json::Value& schema, std::string_view tools_text);

struct ToolCall {
  std::string id;         // "call_" + 24 hex digits
  std::string name;
  std::string arguments;  // a JSON text, as OpenAI sends it
};

struct ParsedReply {
  std::string content;          // the text that is not a call ("" when there is none)
  std::vector<ToolCall> calls;  // empty: the reply is plain content
};

// Splits a whole reply into content and calls. `format` is the model's; with tool_choice
// "required" or a named function the constrained forms above are parsed instead. At most one call
// is kept when parallel_tool_calls is false.
ParsedReply parse_reply(const ToolRequest& request, ToolCallFormat format, std::string_view text);

// OpenAI's tool_calls list for a message ([{id, type, function: {name, arguments}}]), and for a
// stream's delta (each entry with its index).
Json::Value tool_calls_json(const std::vector<ToolCall>& calls, bool with_index);

// What one piece of a streamed reply adds.
struct ToolStreamDelta {
  std::string content;             // safe to stream as content now
  std::optional<ToolCall> started;  // a call whose id and name are known from now on (arguments "")
  std::string arguments;           // text to append to that call's arguments
};

// A streamed choice's text as it arrives: content is passed on until the text may be the start of
// a call; from there on it is held and parsed when the choice ends (finish()). A named function's
// reply is its arguments, so it streams as argument deltas at once.
class ToolCallStream {
 public:
  ToolCallStream(const ToolRequest* request, ToolCallFormat format) : request_(request), format_(format) {}
  ToolStreamDelta add(std::string_view text);
  // The end of the choice: the held text parsed (its content, then its calls). When
  // arguments_streamed(), the one call has been sent already and is returned for its finish reason.
  ParsedReply finish();
  bool arguments_streamed() const { return !call_id_.empty(); }

 private:
  std::string add_content();  // the content part of add()

  const ToolRequest* request_;
  ToolCallFormat format_;
  std::string seen_;    // all text so far
  size_t sent_ = 0;     // bytes of seen_ streamed as content
  bool holding_ = false;
  std::string call_id_;  // a named function's call, once started
};

}  // namespace ferry::host
