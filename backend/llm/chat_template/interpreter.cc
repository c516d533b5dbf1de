#include "backend/llm/chat_template/interpreter.h"

#include <cmath>

namespace ferry::llm {

Value CallArgs::get(size_t index, std::string_view name) const {
  if (index < positional.size()) return positional[index];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return v;
  }
  return Value();
}

Interpreter::Interpreter(std::string_view source, const RenderLimits& limits) : source_(source), limits_(limits) {}

std::string Interpreter::render(const StmtList& body, ValueDict globals) {
  frames_.clear();
  frames_.emplace_back();
  for (auto& [k, v] : globals.items) frames_[0][k] = std::move(v);
  frames_.emplace_back();
  std::string out;
  out_ = &out;
  Flow flow = exec_list(body);
  if (flow != Flow::kNormal) fail("'break' or 'continue' outside of a loop");
  out_ = nullptr;
  return out;
}

void Interpreter::fail(const std::string& message) const { throw TemplateError{pos_, message}; }

void Interpreter::check_size(size_t size) const {
  if (size > limits_.max_output_bytes) {
    fail("value or output larger than the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
  }
}

void Interpreter::step() {
  if (++steps_ > limits_.max_steps) fail("template evaluation exceeded the step limit");
}

void Interpreter::emit(std::string_view text) {
  check_size(out_->size() + text.size());
  out_->append(text);
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
    auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  return Value();
}

void Interpreter::assign(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }

void Interpreter::bind_targets(const std::vector<std::string>& targets, const Value& item) {
  if (targets.size() == 1) {
    assign(targets[0], item);
    return;
  }
  if (!item.is_list()) fail("cannot unpack a " + std::string(item.kind_name()) + " into " +
                            std::to_string(targets.size()) + " names");
  const ValueList& parts = item.as_list();
  if (parts.size() != targets.size()) {
    fail("cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(targets.size()) +
         " names");
  }
  for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], parts[i]);
}

Interpreter::Flow Interpreter::exec_list(const StmtList& list) {
  for (const auto& s : list) {
    Flow f = exec(*s);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  step();
  pos_ = s.pos;
  switch (s.kind) {
    case StmtKind::kText:
      emit(s.text);
      return Flow::kNormal;
    case StmtKind::kOutput: {
      Value v = eval(*s.expr);
      emit(v.str());
      return Flow::kNormal;
    }
    case StmtKind::kIf:
      for (size_t i = 0; i < s.conditions.size(); ++i) {
        if (eval(*s.conditions[i]).truthy()) return exec_list(s.bodies[i]);
      }
      if (s.bodies.size() > s.conditions.size()) return exec_list(s.bodies.back());
      return Flow::kNormal;
    case StmtKind::kFor:
      exec_for(s);
      return Flow::kNormal;
    case StmtKind::kSet:
      exec_set(s);
      return Flow::kNormal;
    case StmtKind::kMacro:
      define_macro(s);
      return Flow::kNormal;
    case StmtKind::kFilterBlock: {
      std::string body;
      std::string* saved = out_;
      out_ = &body;
      Flow f = exec_list(s.bodies[0]);
      out_ = saved;
      // s.expr is a chain of filters whose innermost target is the placeholder name "".
      std::vector<const Expr*> chain;
      for (const Expr* e = s.expr.get(); e && e->kind == ExprKind::kFilter; e = e->children[0].get()) {
        chain.push_back(e);
      }
      Value v(std::move(body));
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        CallArgs args;
        eval_args(**it, args);
        v = apply_filter((*it)->name, v, args);
      }
      emit(v.str());
      return f;
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

void Interpreter::exec_for(const Stmt& s) {
  Value iterable = eval(*s.expr);
  if (iterable.is_none()) fail("cannot iterate over none");
  ValueList items = iterate(*this, iterable);
  if (s.condition) {
    ValueList kept;
    for (const Value& item : items) {
      frames_.emplace_back();
      bind_targets(s.targets, item);
      bool keep = eval(*s.condition).truthy();
      frames_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (s.bodies.size() > 1) {
      frames_.emplace_back();
      exec_list(s.bodies[1]);
      frames_.pop_back();
    }
    return;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step();  // an empty body still costs a step, so nested loops hit the step limit
    frames_.emplace_back();
    ValueDict loop;
    loop.set("index0", Value(i));
    loop.set("index", Value(i + 1));
    loop.set("revindex0", Value(n - 1 - i));
    loop.set("revindex", Value(n - i));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == n - 1));
    loop.set("length", Value(n));
    loop.set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value());
    loop.set("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value());
    loop.set("cycle", Value::function("loop.cycle", [i](Interpreter& in, CallArgs& args) {
      if (args.positional.empty()) in.fail("loop.cycle() needs at least one argument");
      return args.positional[static_cast<size_t>(i) % args.positional.size()];
    }));
    assign("loop", Value(std::move(loop)));
    bind_targets(s.targets, items[static_cast<size_t>(i)]);
    Flow f = exec_list(s.bodies[0]);
    frames_.pop_back();
    if (f == Flow::kBreak) break;
  }
}

void Interpreter::exec_set(const Stmt& s) {
  if (!s.attr.empty()) {
    Value target = lookup(s.targets[0]);
    if (!target.is_dict() || !target.as_dict().is_namespace) {
      fail("cannot assign attribute '" + s.attr + "' of '" + s.targets[0] + "': not a namespace");
    }
    target.as_dict().set(s.attr, eval(*s.expr));
    return;
  }
  if (!s.bodies.empty()) {
    std::string body;
    std::string* saved = out_;
    out_ = &body;
    Flow f = exec_list(s.bodies[0]);
    out_ = saved;
    if (f != Flow::kNormal) fail("'break' or 'continue' inside a set block");
    assign(s.targets[0], Value(std::move(body)));
    return;
  }
  bind_targets(s.targets, eval(*s.expr));
}

void Interpreter::define_macro(const Stmt& s) {
  const Stmt* macro = &s;
  assign(s.text, Value::function(s.text, [macro](Interpreter& in, CallArgs& args) -> Value {
    if (args.positional.size() > macro->params.size()) in.fail("too many arguments to macro '" + macro->text + "'");
    if (++in.call_depth_ > in.limits_.max_call_depth) in.fail("macro calls nested too deeply");
    Frame frame;
    for (size_t i = 0; i < macro->params.size(); ++i) {
      const MacroParam& p = macro->params[i];
      Value v = args.get(i, p.name);
      if (v.is_undefined() && p.default_value) v = in.eval(*p.default_value);
      frame[p.name] = std::move(v);
    }
    for (const auto& [k, v] : args.kwargs) {
      bool known = false;
      for (const auto& p : macro->params) known = known || p.name == k;
      if (!known) in.fail("macro '" + macro->text + "' has no parameter '" + k + "'");
    }
    // The macro sees globals and the template scope, not the caller's locals.
    std::vector<Frame> saved;
    saved.swap(in.frames_);
    in.frames_.push_back(saved[0]);
    in.frames_.push_back(saved[1]);
    in.frames_.push_back(std::move(frame));
    std::string body;
    std::string* saved_out = in.out_;
    in.out_ = &body;
    size_t saved_pos = in.pos_;
    struct Restore {
      Interpreter& in;
      std::vector<Frame>& saved;
      std::string* saved_out;
      size_t saved_pos;
      ~Restore() {
        // Template-scope assignments made by the macro body stay local to it, as in Jinja.
        in.frames_.swap(saved);
        in.out_ = saved_out;
        in.pos_ = saved_pos;
        --in.call_depth_;
      }
    } restore{in, saved, saved_out, saved_pos};
    in.exec_list(macro->bodies[0]);
    return Value(std::move(body));
  }));
}

Value Interpreter::call(const Value& fn, CallArgs& args) {
  if (!fn.is_callable()) fail("cannot call a value of type " + std::string(fn.kind_name()));
  return fn.as_function()(*this, args);
}

Value Interpreter::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
  return call_filter(*this, name, input, args);
}

void Interpreter::eval_args(const Expr& e, CallArgs& args) {
  for (size_t i = 1; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i]));
  for (const auto& [k, v] : e.kwargs) args.kwargs.emplace_back(k, eval(*v));
}

Value Interpreter::eval_call(const Expr& e) {
  Value fn = eval(*e.children[0]);
  CallArgs args;
  eval_args(e, args);
  pos_ = e.pos;
  if (fn.is_undefined()) {
    const Expr& callee = *e.children[0];
    std::string what = callee.kind == ExprKind::kName || callee.kind == ExprKind::kGetAttr ? callee.name : "value";
    fail("'" + what + "' is undefined or not callable");
  }
  return call(fn, args);
}

Value Interpreter::eval(const Expr& e) {
  step();
  pos_ = e.pos;
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName:
      return lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList list;
      for (const auto& c : e.children) list.push_back(eval(*c));
      return Value(std::move(list));
    }
    case ExprKind::kDict: {
      ValueDict dict;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value k = eval(*e.children[i]);
        if (!k.is_string()) fail("dict keys must be strings");
        dict.set(k.as_string(), eval(*e.children[i + 1]));
      }
      return Value(std::move(dict));
    }
    case ExprKind::kGetAttr: {
      Value obj = eval(*e.children[0]);
      pos_ = e.pos;
      return get_attribute(*this, obj, e.name);
    }
    case ExprKind::kGetItem: {
      Value obj = eval(*e.children[0]);
      Value key = eval(*e.children[1]);
      pos_ = e.pos;
      return get_item(*this, obj, key);
    }
    case ExprKind::kSlice: {
      Value obj = eval(*e.children[0]);
      Value parts[3];
      for (int i = 0; i < 3; ++i) {
        if (e.children[static_cast<size_t>(i) + 1]) parts[i] = eval(*e.children[static_cast<size_t>(i) + 1]);
      }
      pos_ = e.pos;
      return slice_value(*this, obj, parts[0], parts[1], parts[2]);
    }
    case ExprKind::kCall:
      return eval_call(e);
    case ExprKind::kFilter: {
      Value input = eval(*e.children[0]);
      CallArgs args;
      eval_args(e, args);
      pos_ = e.pos;
      return call_filter(*this, e.name, input, args);
    }
    case ExprKind::kTest: {
      Value v = eval(*e.children[0]);
      CallArgs args;
      eval_args(e, args);
      pos_ = e.pos;
      bool r = call_test(*this, e.name, v, args);
      return Value(e.negated ? !r : r);
    }
    case ExprKind::kUnary: {
      Value v = eval(*e.children[0]);
      pos_ = e.pos;
      if (e.name == "not") return Value(!v.truthy());
      if (!v.is_number()) fail("bad operand type for unary " + e.name + ": " + v.kind_name());
      if (e.name == "+") return v.is_float() ? v : Value(v.as_int());
      if (v.is_float()) return Value(-v.as_double());
      return Value(-v.as_int());
    }
    case ExprKind::kBinary:
      return eval_binary(e);
    case ExprKind::kAnd: {
      Value l = eval(*e.children[0]);
      return l.truthy() ? eval(*e.children[1]) : l;
    }
    case ExprKind::kOr: {
      Value l = eval(*e.children[0]);
      return l.truthy() ? l : eval(*e.children[1]);
    }
    case ExprKind::kConditional:
      if (eval(*e.children[1]).truthy()) return eval(*e.children[0]);
      return e.children[2] ? eval(*e.children[2]) : Value();
  }
  return Value();
}

namespace {

int compare_values(Interpreter& in, const Value& l, const Value& r) {
  if (l.is_number() && r.is_number()) {
    if (!l.is_float() && !r.is_float()) return l.as_int() < r.as_int() ? -1 : (l.as_int() > r.as_int() ? 1 : 0);
    double a = l.as_double(), b = r.as_double();
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  if (l.is_string() && r.is_string()) {
    int c = l.as_string().compare(r.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (l.is_list() && r.is_list()) {
    const ValueList& a = l.as_list();
    const ValueList& b = r.as_list();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      int c = compare_values(in, a[i], b[i]);
      if (c != 0) return c;
    }
    return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
  }
  in.fail(std::string("cannot compare ") + l.kind_name() + " with " + r.kind_name());
}

bool contains(Interpreter& in, const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) in.fail("'in <string>' requires a string on the left");
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& v : container.as_list()) {
      if (v.equals(item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
  if (container.is_undefined()) return false;
  in.fail(std::string("'in' needs a string, list or dict, not ") + container.kind_name());
}

Value arithmetic(Interpreter& in, const std::string& op, const Value& l, const Value& r) {
  if (!l.is_number() || !r.is_number()) {
    in.fail("unsupported operand types for " + op + ": " + l.kind_name() + " and " + r.kind_name());
  }
  bool ints = !l.is_float() && !r.is_float();
  if (op == "/") {
    if (r.as_double() == 0.0) in.fail("division by zero");
    return Value(l.as_double() / r.as_double());
  }
  if (ints) {
    int64_t a = l.as_int(), b = r.as_int();
    if (op == "-") return Value(a - b);
    if (op == "*") return Value(a * b);
    if (op == "+") return Value(a + b);
    if (op == "//" || op == "%") {
      if (b == 0) in.fail("division by zero");
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) {
        --q;
        m += b;
      }
      return Value(op == "//" ? q : m);
    }
    if (op == "**") {
      if (b < 0) return Value(std::pow(static_cast<double>(a), static_cast<double>(b)));
      int64_t result = 1;
      for (int64_t i = 0; i < b && i < 64; ++i) result *= a;
      return Value(result);
    }
  }
  double a = l.as_double(), b = r.as_double();
  if (op == "+") return Value(a + b);
  if (op == "-") return Value(a - b);
  if (op == "*") return Value(a * b);
  if (op == "**") return Value(std::pow(a, b));
  if (b == 0.0) in.fail("division by zero");
  if (op == "//") return Value(std::floor(a / b));
  double m = std::fmod(a, b);
  if (m != 0.0 && ((m < 0) != (b < 0))) m += b;
  return Value(m);
}

Value repeat(Interpreter& in, const Value& seq, int64_t count) {
  if (count <= 0) return seq.is_string() ? Value(std::string()) : Value(ValueList{});
  if (seq.is_string()) {
    in.check_size(seq.as_string().size() * static_cast<size_t>(count));
    std::string out;
    for (int64_t i = 0; i < count; ++i) out += seq.as_string();
    return Value(std::move(out));
  }
  in.check_size(seq.as_list().size() * static_cast<size_t>(count));
  ValueList out;
  for (int64_t i = 0; i < count; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
  return Value(std::move(out));
}

}  // namespace

Value Interpreter::eval_binary(const Expr& e) {
  Value l = eval(*e.children[0]);
  Value r = eval(*e.children[1]);
  pos_ = e.pos;
  const std::string& op = e.name;
  if (op == "~") {
    std::string s = l.str();
    std::string rs = r.str();
    check_size(s.size() + rs.size());
    return Value(s + rs);
  }
  if (op == "==") return Value(l.equals(r));
  if (op == "!=") return Value(!l.equals(r));
  if (op == "<") return Value(compare_values(*this, l, r) < 0);
  if (op == ">") return Value(compare_values(*this, l, r) > 0);
  if (op == "<=") return Value(compare_values(*this, l, r) <= 0);
  if (op == ">=") return Value(compare_values(*this, l, r) >= 0);
  if (op == "in") return Value(contains(*this, r, l));
  if (op == "not in") return Value(!contains(*this, r, l));
  if (op == "+") {
    if (l.is_string() && r.is_string()) {
      check_size(l.as_string().size() + r.as_string().size());
      if (l.is_markup() || r.is_markup()) {
        // Jinja2 Markup: the plain operand is escaped, the result stays Markup.
        std::string a = l.is_markup() ? l.as_string() : html_escape(l.as_string());
        std::string b = r.is_markup() ? r.as_string() : html_escape(r.as_string());
        return Value::markup(a + b);
      }
      return Value(l.as_string() + r.as_string());
    }
    if (l.is_list() && r.is_list()) {
      check_size(l.as_list().size() + r.as_list().size());
      ValueList out = l.as_list();
      out.insert(out.end(), r.as_list().begin(), r.as_list().end());
      return Value(std::move(out));
    }
  }
  if (op == "*") {
    if ((l.is_string() || l.is_list()) && (r.is_int() || r.is_bool())) return repeat(*this, l, r.as_int());
    if ((r.is_string() || r.is_list()) && (l.is_int() || l.is_bool())) return repeat(*this, r, l.as_int());
  }
  return arithmetic(*this, op, l, r);
}

}  // namespace ferry::llm
