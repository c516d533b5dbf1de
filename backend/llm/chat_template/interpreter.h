// Tree-walking interpreter of ferry's Jinja-subset templates (see chat_template.h for the public
// API). Internal to the chat_template library.
//
// Errors inside the interpreter are thrown as TemplateError and caught by ChatTemplate::render,
// which returns them as a Status; no exception leaves the library. Limits (output size, evaluation
// steps, call depth) turn hostile templates into errors instead of hangs or crashes.
//
// Thread-safety: one Interpreter renders one template once, on one thread. The syntax tree it walks
// is only read, so many Interpreters may share it.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/llm/chat_template/ast.h"
#include "backend/llm/chat_template/value.h"

namespace ferry::llm {

struct TemplateError {
  size_t pos;  // byte offset in the template source, or npos when unknown
  std::string message;
};

struct RenderLimits {
  size_t max_output_bytes = 8u << 20;   // also bounds every intermediate string and list
  uint64_t max_steps = 2'000'000;       // expression evaluations + statements + loop iterations
  int max_call_depth = 64;              // nested macro calls
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> kwargs;

  // Argument by position or keyword, or undefined when absent.
  Value get(size_t index, std::string_view name) const;
};

class Interpreter {
 public:
  Interpreter(std::string_view source, const RenderLimits& limits);

  // Renders the statements with `globals` as the outermost scope. Throws TemplateError.
  std::string render(const StmtList& body, ValueDict globals);

  // Throws a TemplateError at the position currently being evaluated.
  [[noreturn]] void fail(const std::string& message) const;
  // Throws when a string or list of `size` elements would exceed the limits.
  void check_size(size_t size) const;
  // Calls any callable value (builtin, macro, bound method).
  Value call(const Value& fn, CallArgs& args);
  // Calls an expression-free filter by name on a value (used by `map` and filter blocks).
  Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
  const RenderLimits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Frame = std::unordered_map<std::string, Value>;

  Flow exec_list(const StmtList& list);
  Flow exec(const Stmt& s);
  void exec_for(const Stmt& s);
  void exec_set(const Stmt& s);
  void define_macro(const Stmt& s);
  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_call(const Expr& e);
  void eval_args(const Expr& e, CallArgs& args);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v);
  void bind_targets(const std::vector<std::string>& targets, const Value& item);
  void step();
  void emit(std::string_view text);

  std::string_view source_;
  RenderLimits limits_;
  std::vector<Frame> frames_;  // [0] globals, [1] template scope, then loops / macro calls
  std::string* out_ = nullptr;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  mutable size_t pos_ = std::string_view::npos;
};

// Builtins (builtins.cc, filters.cc).
// Adds range, namespace, dict, raise_exception, strftime_now to a global scope.
void install_builtin_globals(ValueDict& globals);
// Applies a filter; throws TemplateError for unknown filters or bad arguments.
Value call_filter(Interpreter& in, const std::string& name, const Value& input, CallArgs& args);
// Applies a test (`is name`); throws TemplateError for unknown tests.
bool call_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args);
// `obj.name`: dict items, namespace attributes, bound methods of str/dict/list; undefined when absent.
Value get_attribute(Interpreter& in, const Value& obj, const std::string& name);
// `obj[key]`: dict items, list/string indexing (negative indices allowed); undefined when absent.
Value get_item(Interpreter& in, const Value& obj, const Value& key);
// Python slicing obj[start:stop:step] for lists and strings (strings by code point).
Value slice_value(Interpreter& in, const Value& obj, const Value& start, const Value& stop, const Value& step);
// Elements a `for` loop visits: list items, dict keys, string characters; empty for undefined.
ValueList iterate(Interpreter& in, const Value& v);

}  // namespace ferry::llm
