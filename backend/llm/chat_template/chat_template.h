// ferry::llm::ChatTemplate: renders HuggingFace `chat_template` strings (tokenizer_config.json) into
// the prompt text of a chat request, with a Jinja2-subset interpreter configured as HF's
// apply_chat_template configures Jinja2: trim_blocks and lstrip_blocks on, loop controls
// (break/continue), `raise_exception(msg)`, `strftime_now(fmt)`, and `tojson` = Python
// json.dumps(ensure_ascii=False).
//
// What is supported: {{ }}, {% if/elif/else %}, {% for %} (tuple targets, inline if, else,
// loop.index0/index/revindex/first/last/length/previtem/nextitem/cycle), {% set %} (names, tuples,
// namespace attributes, block set), {% macro %}, {% filter %}, {% raw %}, whitespace control,
// literals, attribute/item access, slicing, Python operators, the filters, tests and str/dict
// methods that real templates use (see filters.cc and builtins.cc). Not supported: template
// inheritance/includes, {% call %} blocks, recursive loops, auto-escaping (HF renders with it off; Markup
// values made by `safe` behave as in Jinja2).
//
// Errors are Statuses, never exceptions or crashes: a syntax error names line and column; a render
// error (including raise_exception, whose message starts with "raise_exception: ") names the
// position being evaluated. Output size, evaluation steps and macro nesting are bounded
// (RenderLimits) so hostile templates fail instead of hanging.
//
// Thread-safety: a parsed ChatTemplate is immutable; render() may be called from many threads at
// once. Inputs are read, not modified, but they share containers with the caller's Values, so the
// caller must not mutate them during render().
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backend/llm/chat_template/interpreter.h"
#include "backend/llm/chat_template/value.h"
#include "common/status.h"

namespace ferry::llm {

struct ChatTemplateOptions {
  bool trim_blocks = true;    // HF's setting
  bool lstrip_blocks = true;  // HF's setting
  RenderLimits limits;
};

// How list-valued message content (OpenAI "parts": [{"type": "text", "text": ...}, ...]) is passed.
enum class ContentFormat {
  kAuto,    // kOpenAI when the template source inspects content parts itself, else kString
  kString,  // parts whose type is "text" are joined with "\n" into one string (as vLLM does)
  kOpenAI,  // passed unchanged
};

struct ChatTemplateInputs {
  Value messages;                      // list of dicts {role, content, ...}
  bool add_generation_prompt = false;
  std::optional<std::string> bos_token;  // undefined in the template when absent
  std::optional<std::string> eos_token;  // undefined in the template when absent
  Value tools;                         // list of tool dicts; undefined (default) when the request has none
  ValueDict extra;                     // further variables (e.g. enable_thinking, unk_token, documents)
  std::optional<std::time_t> now;      // clock of strftime_now (local time); current time when absent
  ContentFormat content_format = ContentFormat::kAuto;
};

class ChatTemplate {
 public:
  // Parses a template. Fails with INVALID_ARGUMENT naming line and column on a syntax error.
  static Result<ChatTemplate> parse(std::string source, const ChatTemplateOptions& options = {});

  // Renders the prompt. Fails with INVALID_ARGUMENT when the template raises, evaluation fails
  // or a RenderLimits bound is hit (the message says which).
  Result<std::string> render(const ChatTemplateInputs& inputs) const;

  const std::string& source() const { return *source_; }

 private:
  ChatTemplate() = default;
  std::shared_ptr<const std::string> source_;
  std::shared_ptr<const StmtList> body_;
  ChatTemplateOptions options_;
  bool template_reads_content_parts_ = false;
};

// The chat-template-related fields of a tokenizer_config.json.
struct TokenizerChatConfig {
  std::string chat_template;  // empty when the config has none
  std::string bos_token;      // "" when absent; AddedToken dicts are reduced to their "content"
  std::string eos_token;
  ValueDict special_tokens;   // bos/eos/unk/pad_token and additional_special_tokens, when present
};

// Reads tokenizer_config.json text. `template_name` selects among named templates when
// chat_template is a list of {name, template} ("default" first, then the first entry).
Result<TokenizerChatConfig> parse_tokenizer_chat_config(std::string_view json_text,
                                                        std::string_view template_name = "default");

}  // namespace ferry::llm
