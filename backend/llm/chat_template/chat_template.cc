#include "backend/llm/chat_template/chat_template.h"

#include <new>

#include "backend/llm/chat_template/lexer.h"
#include "backend/llm/chat_template/parser.h"

namespace ferry::llm {

namespace {

// True when the template looks at content parts itself (loops over or indexes message content,
// or checks whether content is a string), so list content must be passed unchanged.
bool reads_content_parts(const std::string& src) {
  static const char* kPatterns[] = {"in message['content']", "in message.content", "in message[\"content\"]",
                                    "content'] is string", "content is string", "content is not string",
                                    "content\"] is string", "content'] is not string", "content[0]",
                                    "is iterable", "['type']", ".type =="};
  for (const char* p : kPatterns) {
    if (src.find(p) != std::string::npos) return true;
  }
  return false;
}

// Joins the text parts of list-valued message content into one string.
Value flatten_messages(const Value& messages) {
  if (!messages.is_list()) return messages;
  ValueList out;
  for (const Value& m : messages.as_list()) {
    const Value* content = m.is_dict() ? m.as_dict().find("content") : nullptr;
    if (!content || !content->is_list()) {
      out.push_back(m);
      continue;
    }
    std::string text;
    bool first = true;
    for (const Value& part : content->as_list()) {
      if (!part.is_dict()) continue;
      const Value* type = part.as_dict().find("type");
      const Value* t = part.as_dict().find("text");
      if (type && type->is_string() && type->as_string() == "text" && t && t->is_string()) {
        if (!first) text += "\n";
        first = false;
        text += t->as_string();
      }
    }
    ValueDict copy = m.as_dict();
    copy.set("content", Value(std::move(text)));
    out.push_back(Value(std::move(copy)));
  }
  return Value(std::move(out));
}

Value strftime_now(std::optional<std::time_t> now, Interpreter& in, CallArgs& args) {
  Value fmt = args.get(0, "format");
  if (!fmt.is_string()) in.fail("strftime_now() needs a format string");
  std::time_t t = now ? *now : std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[256];
  size_t n = std::strftime(buf, sizeof(buf), fmt.as_string().c_str(), &tm);
  return Value(std::string(buf, n));
}

std::string token_text(const Value& v) {
  if (v.is_string()) return v.as_string();
  if (v.is_dict()) {
    const Value* c = v.as_dict().find("content");
    if (c && c->is_string()) return c->as_string();
  }
  return "";
}

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string source, const ChatTemplateOptions& options) {
  LexOptions lex_options;
  lex_options.trim_blocks = options.trim_blocks;
  lex_options.lstrip_blocks = options.lstrip_blocks;
  try {
    Result<std::vector<Token>> tokens = lex_template(source, lex_options);
    if (!tokens.ok()) return tokens.status();
    Result<StmtList> body = parse_template(tokens.value(), source);
    if (!body.ok()) return body.status();
    ChatTemplate t;
    t.template_reads_content_parts_ = reads_content_parts(source);
    t.source_ = std::make_shared<const std::string>(std::move(source));
    t.body_ = std::make_shared<const StmtList>(std::move(body.value()));
    t.options_ = options;
    return t;
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory while parsing the chat template");
  }
}

Result<std::string> ChatTemplate::render(const ChatTemplateInputs& inputs) const {
  ValueDict globals;
  install_builtin_globals(globals);
  std::optional<std::time_t> now = inputs.now;
  globals.set("strftime_now", Value::function("strftime_now", [now](Interpreter& in, CallArgs& args) {
    return strftime_now(now, in, args);
  }));
  for (const auto& [k, v] : inputs.extra.items) globals.set(k, v);
  bool flatten = inputs.content_format == ContentFormat::kString ||
                 (inputs.content_format == ContentFormat::kAuto && !template_reads_content_parts_);
  globals.set("messages", flatten ? flatten_messages(inputs.messages) : inputs.messages);
  globals.set("add_generation_prompt", Value(inputs.add_generation_prompt));
  if (inputs.bos_token) globals.set("bos_token", Value(*inputs.bos_token));
  if (inputs.eos_token) globals.set("eos_token", Value(*inputs.eos_token));
  if (!inputs.tools.is_undefined()) globals.set("tools", inputs.tools);

  Interpreter interpreter(*source_, options_.limits);
  try {
    return interpreter.render(*body_, std::move(globals));
  } catch (const TemplateError& e) {
    std::string where = e.pos == std::string::npos ? "" : " (at " + describe_position(*source_, e.pos) + ")";
    return Status::InvalidArgument("chat template: " + e.message + where);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory while rendering the chat template");
  }
}

Result<TokenizerChatConfig> parse_tokenizer_chat_config(std::string_view json_text, std::string_view template_name) {
  Result<Value> doc = value_from_json(json_text);
  if (!doc.ok()) return doc.status().with_prefix("tokenizer_config.json");
  if (!doc->is_dict()) return Status::InvalidArgument("tokenizer_config.json: not a JSON object");
  const ValueDict& d = doc->as_dict();
  TokenizerChatConfig cfg;
  if (const Value* t = d.find("chat_template")) {
    if (t->is_string()) {
      cfg.chat_template = t->as_string();
    } else if (t->is_list()) {
      const Value* chosen = nullptr;
      for (const Value& entry : t->as_list()) {
        if (!entry.is_dict()) continue;
        const Value* name = entry.as_dict().find("name");
        if (!chosen) chosen = &entry;
        if (name && name->is_string() && name->as_string() == template_name) {
          chosen = &entry;
          break;
        }
      }
      const Value* text = chosen ? chosen->as_dict().find("template") : nullptr;
      if (text && text->is_string()) cfg.chat_template = text->as_string();
    }
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (const Value* v = d.find(key)) {
      if (v->is_none()) continue;
      cfg.special_tokens.set(key, Value(token_text(*v)));
    }
  }
  if (const Value* extra = d.find("additional_special_tokens"); extra && extra->is_list()) {
    ValueList names;
    for (const Value& v : extra->as_list()) names.push_back(Value(token_text(v)));
    cfg.special_tokens.set("additional_special_tokens", Value(std::move(names)));
  }
  if (const Value* v = cfg.special_tokens.find("bos_token")) cfg.bos_token = v->as_string();
  if (const Value* v = cfg.special_tokens.find("eos_token")) cfg.eos_token = v->as_string();
  return cfg;
}

}  // namespace ferry::llm
