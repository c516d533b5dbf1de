// Globals, attribute/item access, slicing, iteration and the methods of str/dict values.
#include <algorithm>
#include <cctype>

#include "backend/llm/chat_template/interpreter.h"
#include "backend/llm/chat_template/string_util.h"

namespace ferry::llm {

namespace {

int64_t int_arg(Interpreter& in, const Value& v, const char* what) {
  if (!v.is_int() && !v.is_bool()) in.fail(std::string(what) + " must be an integer, not " + v.kind_name());
  return v.as_int();
}

std::string str_arg(Interpreter& in, const Value& v, const char* what) {
  if (!v.is_string()) in.fail(std::string(what) + " must be a string, not " + v.kind_name());
  return v.as_string();
}

Value make_range(Interpreter& in, CallArgs& args) {
  int64_t start = 0, stop = 0, step = 1;
  size_t n = args.positional.size();
  if (n == 1) {
    stop = int_arg(in, args.positional[0], "range() stop");
  } else if (n == 2 || n == 3) {
    start = int_arg(in, args.positional[0], "range() start");
    stop = int_arg(in, args.positional[1], "range() stop");
    if (n == 3) step = int_arg(in, args.positional[2], "range() step");
  } else {
    in.fail("range() takes 1 to 3 arguments");
  }
  if (step == 0) in.fail("range() step must not be zero");
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    in.check_size(out.size() + 1);
    out.push_back(Value(i));
  }
  return Value(std::move(out));
}

Value make_dict(Interpreter& in, CallArgs& args, bool is_namespace) {
  ValueDict dict;
  dict.is_namespace = is_namespace;
  for (const Value& p : args.positional) {
    if (!p.is_dict()) in.fail("namespace()/dict() positional arguments must be dicts");
    for (const auto& [k, v] : p.as_dict().items) dict.set(k, v);
  }
  for (const auto& [k, v] : args.kwargs) dict.set(k, v);
  return Value(std::move(dict));
}

// Bound methods of strings.
Value string_method(Interpreter& in, const std::string& self, const std::string& name, CallArgs& args) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Value chars = args.get(0, "chars");
    bool left = name != "rstrip", right = name != "lstrip";
    if (chars.is_undefined() || chars.is_none()) return Value(python_strip(self, left, right));
    return Value(strip_chars(self, str_arg(in, chars, "strip() chars"), left, right));
  }
  if (name == "startswith" || name == "endswith") {
    Value arg = args.get(0, "prefix");
    std::vector<std::string> options;
    if (arg.is_list()) {
      for (const Value& v : arg.as_list()) options.push_back(str_arg(in, v, "startswith() argument"));
    } else {
      options.push_back(str_arg(in, arg, "startswith()/endswith() argument"));
    }
    for (const auto& o : options) {
      bool hit = name == "startswith" ? self.starts_with(o) : self.ends_with(o);
      if (hit) return Value(true);
    }
    return Value(false);
  }
  if (name == "split" || name == "rsplit") {
    Value sep = args.get(0, "sep");
    Value maxsplit = args.get(1, "maxsplit");
    int64_t max = maxsplit.is_undefined() ? -1 : int_arg(in, maxsplit, "maxsplit");
    std::vector<std::string> parts;
    if (sep.is_undefined() || sep.is_none()) {
      parts = split_whitespace(self, max, name == "rsplit");
    } else {
      std::string s = str_arg(in, sep, "split() separator");
      if (s.empty()) in.fail("split(): empty separator");
      parts = split_on(self, s, max, name == "rsplit");
    }
    ValueList out;
    for (auto& p : parts) out.push_back(Value(std::move(p)));
    return Value(std::move(out));
  }
  if (name == "upper") return Value(ascii_upper(self));
  if (name == "lower") return Value(ascii_lower(self));
  if (name == "title") return Value(python_title(self));
  if (name == "capitalize") return Value(python_capitalize(self));
  if (name == "replace") {
    Value count = args.get(2, "count");
    int64_t n = count.is_undefined() ? -1 : int_arg(in, count, "replace() count");
    std::string out = replace_all(self, str_arg(in, args.get(0, "old"), "replace() old"),
                                  str_arg(in, args.get(1, "new"), "replace() new"), n);
    in.check_size(out.size());
    return Value(std::move(out));
  }
  if (name == "find") {
    size_t p = self.find(str_arg(in, args.get(0, "sub"), "find() argument"));
    return Value(p == std::string::npos ? int64_t{-1} : static_cast<int64_t>(p));
  }
  if (name == "count") {
    std::string sub = str_arg(in, args.get(0, "sub"), "count() argument");
    if (sub.empty()) return Value(static_cast<int64_t>(utf8_chars(self).size() + 1));
    int64_t n = 0;
    for (size_t p = self.find(sub); p != std::string::npos; p = self.find(sub, p + sub.size())) ++n;
    return Value(n);
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Value& v : iterate(in, args.get(0, "iterable"))) {
      if (!first) out += self;
      first = false;
      out += str_arg(in, v, "join() item");
      in.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isalnum") {
    if (self.empty()) return Value(false);
    for (unsigned char c : self) {
      bool ok = name == "isdigit" ? (c >= '0' && c <= '9')
                : name == "isspace" ? (c == ' ' || (c >= '\t' && c <= '\r'))
                : name == "isalpha" ? std::isalpha(c) != 0
                                    : std::isalnum(c) != 0;
      if (!ok) return Value(false);
    }
    return Value(true);
  }
  in.fail("string has no method '" + name + "'");
}

Value dict_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& args) {
  const ValueDict& d = self.as_dict();
  if (name == "items") {
    ValueList out;
    for (const auto& [k, v] : d.items) out.push_back(Value(ValueList{Value(k), v}));
    return Value(std::move(out));
  }
  if (name == "keys") {
    ValueList out;
    for (const auto& item : d.items) out.push_back(Value(item.first));
    return Value(std::move(out));
  }
  if (name == "values") {
    ValueList out;
    for (const auto& item : d.items) out.push_back(item.second);
    return Value(std::move(out));
  }
  if (name == "get") {
    Value key = args.get(0, "key");
    Value fallback = args.get(1, "default");
    if (fallback.is_undefined()) fallback = Value::none();
    if (!key.is_string()) return fallback;
    const Value* v = d.find(key.as_string());
    return v ? *v : fallback;
  }
  in.fail("dict has no method '" + name + "'");
}

bool is_string_method(const std::string& name) {
  static const char* kNames[] = {"strip", "lstrip",  "rstrip", "startswith", "endswith", "split",  "rsplit",
                                 "upper", "lower",   "title",  "capitalize", "replace",  "find",   "count",
                                 "join",  "isdigit", "isspace", "isalpha",   "isalnum"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

bool is_dict_method(const std::string& name) {
  return name == "items" || name == "keys" || name == "values" || name == "get";
}

// Python slice bounds for a sequence of length n.
void slice_indices(Interpreter& in, int64_t n, const Value& start_v, const Value& stop_v, const Value& step_v,
                   int64_t* start, int64_t* stop, int64_t* step) {
  auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  *step = given(step_v) ? int_arg(in, step_v, "slice step") : 1;
  if (*step == 0) in.fail("slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (!given(v)) return dflt;
    int64_t i = int_arg(in, v, "slice index");
    if (i < 0) i += n;
    if (*step > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  *start = clamp(start_v, *step > 0 ? 0 : n - 1);
  *stop = clamp(stop_v, *step > 0 ? n : -1);
}

}  // namespace

void install_builtin_globals(ValueDict& globals) {
  globals.set("range", Value::function("range", make_range));
  globals.set("namespace", Value::function("namespace", [](Interpreter& in, CallArgs& args) {
    return make_dict(in, args, true);
  }));
  globals.set("dict", Value::function("dict", [](Interpreter& in, CallArgs& args) {
    return make_dict(in, args, false);
  }));
  globals.set("raise_exception", Value::function("raise_exception", [](Interpreter&, CallArgs& args) -> Value {
    throw TemplateError{std::string::npos, "raise_exception: " + args.get(0, "message").str()};
  }));
}

Value get_attribute(Interpreter& in, const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      in.fail("cannot read attribute '" + name + "' of an undefined value");
    case Value::Kind::kDict: {
      if (!obj.as_dict().is_namespace && is_dict_method(name)) {
        return Value::function("dict." + name, [obj, name](Interpreter& inner, CallArgs& args) {
          return dict_method(inner, obj, name, args);
        });
      }
      const Value* v = obj.as_dict().find(name);
      return v ? *v : Value();
    }
    case Value::Kind::kString:
      if (is_string_method(name)) {
        return Value::function("str." + name, [obj, name](Interpreter& inner, CallArgs& args) {
          return string_method(inner, obj.as_string(), name, args);
        });
      }
      return Value();
    default:
      return Value();
  }
}

Value get_item(Interpreter& in, const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      in.fail("cannot index an undefined value with " + key.repr());
    case Value::Kind::kDict: {
      if (!key.is_string()) return Value();
      const Value* v = obj.as_dict().find(key.as_string());
      return v ? *v : Value();
    }
    case Value::Kind::kList: {
      if (key.is_string()) return get_attribute(in, obj, key.as_string());
      if (!key.is_int() && !key.is_bool()) in.fail("list indices must be integers");
      int64_t n = static_cast<int64_t>(obj.as_list().size());
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      return obj.as_list()[static_cast<size_t>(i)];
    }
    case Value::Kind::kString: {
      if (key.is_string()) return get_attribute(in, obj, key.as_string());
      if (!key.is_int() && !key.is_bool()) in.fail("string indices must be integers");
      std::vector<std::string> chars = utf8_chars(obj.as_string());
      int64_t n = static_cast<int64_t>(chars.size());
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      return Value(chars[static_cast<size_t>(i)]);
    }
    default:
      return Value();
  }
}

Value slice_value(Interpreter& in, const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (obj.is_list()) {
    const ValueList& list = obj.as_list();
    int64_t start, stop, step;
    slice_indices(in, static_cast<int64_t>(list.size()), start_v, stop_v, step_v, &start, &stop, &step);
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(list[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  if (obj.is_string()) {
    std::vector<std::string> chars = utf8_chars(obj.as_string());
    int64_t start, stop, step;
    slice_indices(in, static_cast<int64_t>(chars.size()), start_v, stop_v, step_v, &start, &stop, &step);
    std::string out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out += chars[static_cast<size_t>(i)];
    return Value(std::move(out));
  }
  if (obj.is_undefined()) in.fail("cannot slice an undefined value");
  in.fail(std::string("cannot slice a ") + obj.kind_name());
}

ValueList iterate(Interpreter& in, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return v.as_list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& item : v.as_dict().items) keys.push_back(Value(item.first));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList out;
      for (auto& c : utf8_chars(v.as_string())) out.push_back(Value(std::move(c)));
      return out;
    }
    default:
      in.fail(std::string("cannot iterate over a ") + v.kind_name());
  }
}

}  // namespace ferry::llm
