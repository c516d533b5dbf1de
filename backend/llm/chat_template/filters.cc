// Jinja filters (`x | name(args)`) and tests (`x is name`) used by HF chat templates.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backend/llm/chat_template/interpreter.h"
#include "backend/llm/chat_template/string_util.h"

namespace ferry::llm {

namespace {

// Follows a dotted attribute path ("function.name") the way Jinja's attribute= arguments do.
Value attribute_path(Interpreter& in, const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur.is_undefined()) return cur;
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = numeric ? get_item(in, cur, Value(static_cast<int64_t>(std::atoll(part.c_str())))) : get_item(in, cur, Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string join_values(Interpreter& in, const ValueList& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i].str();
    in.check_size(out.size());
  }
  return out;
}

std::string indent_text(const std::string& text, const std::string& pad, bool first, bool blank) {
  // Jinja appends a newline before splitting so that a trailing newline keeps its line.
  std::string s = text + "\n";
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += pad;
    }
    out += lines[i];
  }
  return first ? pad + out : out;
}

// The arguments after the first `skip` positional ones, as a fresh CallArgs (for select/map).
CallArgs rest_args(const CallArgs& args, size_t skip) {
  CallArgs rest;
  for (size_t i = skip; i < args.positional.size(); ++i) rest.positional.push_back(args.positional[i]);
  return rest;
}

Value select_items(Interpreter& in, const Value& input, CallArgs& args, bool by_attribute, bool keep_matching) {
  ValueList out;
  if (input.is_none()) return Value(std::move(out));  // Jinja skips a falsy sequence
  size_t skip = by_attribute ? 1 : 0;
  std::string attr;
  if (by_attribute) {
    Value a = args.get(0, "attribute");
    if (!a.is_string()) in.fail("selectattr/rejectattr need an attribute name");
    attr = a.as_string();
  }
  Value test = args.positional.size() > skip ? args.positional[skip] : Value();
  CallArgs test_args = rest_args(args, skip + 1);
  for (const Value& item : iterate(in, input)) {
    Value subject = by_attribute ? attribute_path(in, item, attr) : item;
    bool hit = test.is_undefined() ? subject.truthy() : call_test(in, test.str(), subject, test_args);
    if (hit == keep_matching) out.push_back(item);
  }
  return Value(std::move(out));
}

Value to_int(Interpreter& in, const Value& v, const Value& fallback) {
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) return Value(static_cast<int64_t>(v.as_double()));
  if (v.is_string()) {
    const std::string s = python_strip(v.as_string(), true, true);
    char* end = nullptr;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0') return Value(static_cast<int64_t>(i));
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value(static_cast<int64_t>(d));
  }
  (void)in;
  return fallback.is_undefined() ? Value(int64_t{0}) : fallback;
}

Value to_float(const Value& v, const Value& fallback) {
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    const std::string s = python_strip(v.as_string(), true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value(d);
  }
  return fallback.is_undefined() ? Value(0.0) : fallback;
}

}  // namespace

Value call_filter(Interpreter& in, const std::string& name, const Value& input, CallArgs& args) {
  if (name == "length" || name == "count") {
    if (input.is_string()) return Value(static_cast<int64_t>(utf8_chars(input.as_string()).size()));
    if (input.is_list()) return Value(static_cast<int64_t>(input.as_list().size()));
    if (input.is_dict()) return Value(static_cast<int64_t>(input.as_dict().items.size()));
    if (input.is_undefined()) return Value(int64_t{0});
    in.fail(std::string("object of type ") + input.kind_name() + " has no length");
  }
  if (name == "tojson") {
    // HF: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
    Value indent = args.get(1, "indent");
    Value sort_keys = args.get(3, "sort_keys");
    int ind = (indent.is_int() && indent.as_int() >= 0) ? static_cast<int>(std::min<int64_t>(indent.as_int(), 64)) : -1;
    Result<std::string> json = value_to_json(input, ind, sort_keys.truthy());
    if (!json.ok()) in.fail(json.status().message());
    in.check_size(json.value().size());
    return Value(std::move(json.value()));
  }
  if (name == "trim") {
    Value chars = args.get(0, "chars");
    const std::string s = input.str();
    std::string out = chars.is_string() ? strip_chars(s, chars.as_string(), true, true) : python_strip(s, true, true);
    return input.is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
  }
  if (name == "upper") return Value(ascii_upper(input.str()));
  if (name == "lower") return Value(ascii_lower(input.str()));
  if (name == "title") return Value(python_title(input.str()));
  if (name == "capitalize") return Value(python_capitalize(input.str()));
  if (name == "string") return input.is_markup() ? input : Value(input.str());
  if (name == "safe") return Value::markup(input.str());
  if (name == "escape" || name == "e") return input.is_markup() ? input : Value::markup(html_escape(input.str()));
  if (name == "default" || name == "d") {
    Value fallback = args.get(0, "default_value");
    bool boolean = args.get(1, "boolean").truthy();
    if (input.is_undefined() || (boolean && !input.truthy())) return fallback.is_undefined() ? Value("") : fallback;
    return input;
  }
  if (name == "first" || name == "last") {
    ValueList items = iterate(in, input);
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    Value sep = args.get(0, "d");
    Value attr = args.get(1, "attribute");
    ValueList items = iterate(in, input);
    if (attr.is_string()) {
      for (Value& v : items) v = attribute_path(in, v, attr.as_string());
    }
    return Value(join_values(in, items, sep.is_undefined() ? "" : sep.str()));
  }
  if (name == "replace") {
    Value count = args.get(2, "count");
    std::string out = replace_all(input.str(), args.get(0, "old").str(), args.get(1, "new").str(),
                                  count.is_int() ? count.as_int() : -1);
    in.check_size(out.size());
    return Value(std::move(out));
  }
  if (name == "list") return Value(iterate(in, input));
  if (name == "items") {
    if (input.is_undefined()) return Value(ValueList{});
    if (!input.is_dict()) in.fail(std::string("filter 'items' needs a dict, not ") + input.kind_name());
    ValueList out;
    for (const auto& [k, v] : input.as_dict().items) out.push_back(Value(ValueList{Value(k), v}));
    return Value(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr") return select_items(in, input, args, true, name == "selectattr");
  if (name == "select" || name == "reject") return select_items(in, input, args, false, name == "select");
  if (name == "map") {
    Value attr = args.get(99, "attribute");
    ValueList out;
    if (attr.is_string()) {
      Value fallback = args.get(99, "default");
      for (const Value& item : iterate(in, input)) {
        Value v = attribute_path(in, item, attr.as_string());
        out.push_back(v.is_undefined() && !fallback.is_undefined() ? fallback : v);
      }
      return Value(std::move(out));
    }
    Value filter = args.get(0, "");
    if (!filter.is_string()) in.fail("map() needs a filter name or attribute=");
    CallArgs filter_args = rest_args(args, 1);
    for (const Value& item : iterate(in, input)) out.push_back(call_filter(in, filter.as_string(), item, filter_args));
    return Value(std::move(out));
  }
  if (name == "indent") {
    Value width = args.get(0, "width");
    std::string pad = width.is_string() ? width.as_string()
                                        : std::string(static_cast<size_t>(std::clamp<int64_t>(
                                                          width.is_int() ? width.as_int() : 4, 0, 1024)),
                                                      ' ');
    std::string out = indent_text(input.str(), pad, args.get(1, "first").truthy(), args.get(2, "blank").truthy());
    in.check_size(out.size());
    return Value(std::move(out));
  }
  if (name == "int") return to_int(in, input, args.get(0, "default"));
  if (name == "float") return to_float(input, args.get(0, "default"));
  if (name == "abs") {
    if (input.is_float()) return Value(std::fabs(input.as_double()));
    if (input.is_int() || input.is_bool()) return Value(static_cast<int64_t>(std::llabs(input.as_int())));
    in.fail("filter 'abs' needs a number");
  }
  if (name == "round") {
    if (!input.is_number()) in.fail("filter 'round' needs a number");
    Value precision = args.get(0, "precision");
    std::string method = args.get(1, "method").is_string() ? args.get(1, "method").as_string() : "common";
    double scale = std::pow(10.0, precision.is_int() ? static_cast<double>(precision.as_int()) : 0.0);
    double x = input.as_double() * scale;
    double r = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::round(x);
    return Value(r / scale);
  }
  if (name == "unique") {
    ValueList out;
    bool case_sensitive = args.get(0, "case_sensitive").truthy();
    for (const Value& item : iterate(in, input)) {
      auto key = [&](const Value& v) {
        return (!case_sensitive && v.is_string()) ? Value(ascii_lower(v.as_string())) : v;
      };
      bool seen = std::any_of(out.begin(), out.end(), [&](const Value& o) { return key(o).equals(key(item)); });
      if (!seen) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "reverse") {
    if (input.is_string()) {
      std::vector<std::string> chars = utf8_chars(input.as_string());
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
      return Value(std::move(out));
    }
    ValueList items = iterate(in, input);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "sum") {
    Value total(int64_t{0});
    for (const Value& item : iterate(in, input)) {
      if (!item.is_number()) in.fail("filter 'sum' needs numbers");
      total = (total.is_float() || item.is_float()) ? Value(total.as_double() + item.as_double())
                                                    : Value(total.as_int() + item.as_int());
    }
    return total;
  }
  if (name == "wordcount") return Value(static_cast<int64_t>(split_whitespace(input.str(), -1, false).size()));
  in.fail("unknown filter '" + name + "'");
}

bool call_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args) {
  Value arg = args.get(0, "other");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_callable();
  if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") return v.equals(arg);
  if (name == "ne" || name == "!=") return !v.equals(arg);
  if (name == "in") {
    if (arg.is_string()) return v.is_string() && arg.as_string().find(v.as_string()) != std::string::npos;
    for (const Value& item : iterate(in, arg)) {
      if (item.equals(v)) return true;
    }
    return false;
  }
  if (name == "lt" || name == "le" || name == "gt" || name == "ge" || name == "lessthan" || name == "greaterthan") {
    if (!v.is_number() || !arg.is_number()) in.fail("test '" + name + "' needs numbers");
    double a = v.as_double(), b = arg.as_double();
    if (name == "lt" || name == "lessthan") return a < b;
    if (name == "le") return a <= b;
    if (name == "gt" || name == "greaterthan") return a > b;
    return a >= b;
  }
  if (name == "even" || name == "odd") {
    if (!v.is_int()) in.fail("test '" + name + "' needs an integer");
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    if (!v.is_int() || !arg.is_int() || arg.as_int() == 0) in.fail("test 'divisibleby' needs non-zero integers");
    return v.as_int() % arg.as_int() == 0;
  }
  if (name == "lower") return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
  in.fail("unknown test '" + name + "'");
}

}  // namespace ferry::llm
