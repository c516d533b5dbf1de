// The dynamic value type of ferry's Jinja-subset interpreter (chat templates).
//
// A Value is what a template expression evaluates to: undefined, none, bool, int (int64), float
// (double), string (UTF-8 bytes), list, dict (string keys, insertion order kept, as Python dicts
// keep it), or a callable (macro, builtin, bound method). Lists and dicts have reference
// semantics, like Python objects: copying a Value shares the container. `namespace()` objects are
// dicts flagged as namespaces (the only objects whose attributes `{% set ns.x = ... %}` may assign).
//
// Also here: Python-compatible str() / repr() of values, JSON parsing into Values (keeps key order)
// and JSON dumping the way HF's `tojson` filter does (json.dumps, ensure_ascii=False).
//
// Thread-safety: a Value is not synchronized. Values that share a container must stay on one thread;
// independent Values may be used from different threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ferry::llm {

class Value;
struct CallArgs;
class Interpreter;

using ValueList = std::vector<Value>;

// A dict with string keys in insertion order. Lookups are linear: template dicts are small.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value value);
};

// A builtin function, macro or bound method. The interpreter passes itself so that callables can
// render (macros) and report errors. Throws TemplateError (see interpreter.h) on failure.
using NativeFunction = std::function<Value(Interpreter&, CallArgs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() = default;  // undefined
  static Value none() { Value v; v.kind_ = Kind::kNone; return v; }
  Value(bool b) : kind_(Kind::kBool), int_(b) {}  // NOLINT
  Value(int i) : kind_(Kind::kInt), int_(i) {}    // NOLINT
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}  // NOLINT
  Value(double d) : kind_(Kind::kFloat), float_(d) {}  // NOLINT
  Value(std::string s) : kind_(Kind::kString), str_(std::make_shared<std::string>(std::move(s))) {}  // NOLINT
  Value(const char* s) : Value(std::string(s)) {}  // NOLINT
  Value(std::string_view s) : Value(std::string(s)) {}  // NOLINT
  Value(ValueList list) : kind_(Kind::kList), list_(std::make_shared<ValueList>(std::move(list))) {}  // NOLINT
  Value(ValueDict dict) : kind_(Kind::kDict), dict_(std::make_shared<ValueDict>(std::move(dict))) {}  // NOLINT
  static Value function(std::string name, NativeFunction fn);
  // A string marked safe (Jinja's Markup, made by the `safe` and `escape` filters). With
  // autoescape off (as HF renders) it prints as is, but `str + markup` and `markup + str` HTML-escape
  // the plain operand, exactly as Jinja2 does.
  static Value markup(std::string s) {
    Value v(std::move(s));
    v.markup_ = true;
    return v;
  }
  bool is_markup() const { return kind_ == Kind::kString && markup_; }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  // Accessors: call only when the kind matches (FERRY_CHECK otherwise).
  bool as_bool() const;
  int64_t as_int() const;        // bool and int
  double as_double() const;      // bool, int and float
  const std::string& as_string() const;
  ValueList& as_list() const;
  ValueDict& as_dict() const;
  const NativeFunction& as_function() const;
  const std::string& function_name() const;

  // Python truthiness; undefined is false.
  bool truthy() const;
  // Python str(): strings as is, None as "None", True as "True", lists/dicts as their repr;
  // undefined as "".
  std::string str() const;
  // Python repr(): strings quoted ('a', or "it's").
  std::string repr() const;
  // Python ==, with int/float/bool compared numerically and containers compared deeply.
  bool equals(const Value& other) const;
  // Name of the kind for error messages ("string", "list", ...).
  const char* kind_name() const;

 private:
  struct Callable {
    std::string name;
    NativeFunction fn;
  };
  Kind kind_ = Kind::kUndefined;
  bool markup_ = false;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<std::string> str_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Callable> fn_;
};

// Markup escaping: & < > " ' become &amp; &lt; &gt; &#34; &#39;.
std::string html_escape(const std::string& s);

// Python repr() of a float (shortest round-trip digits; "1.0", "1e-05", "inf", "nan").
std::string float_repr(double d);

// Parses JSON text into a Value (objects become dicts in document order). Errors name the offset.
Result<Value> value_from_json(std::string_view json);

// Serializes like Python json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys):
// separators ", " / ": " without indent, "," / ": " with one. indent < 0 means none. Undefined and
// callables cannot be serialized (returns an error).
Result<std::string> value_to_json(const Value& v, int indent = -1, bool sort_keys = false);

}  // namespace ferry::llm
