#include "backend/llm/chat_template/parser.h"

#include <initializer_list>

namespace ferry::llm {

namespace {

// Thrown inside the parser only; parse_template turns it into a Status.
struct ParseError {
  size_t pos;
  std::string message;
};

class Parser {
 public:
  Parser(const std::vector<Token>& tokens) : toks_(tokens) {}

  StmtList parse_all() {
    StmtList body = parse_body({});
    if (peek().kind != TokenKind::kEof) fail(peek().pos, "unexpected tag");
    return body;
  }

 private:
  // Depth guard shared by statements and expressions.
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxParseDepth) p_->fail(p_->peek().pos, "template nested too deeply");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  [[noreturn]] void fail(size_t pos, const std::string& msg) { throw ParseError{pos, msg}; }

  const Token& peek(size_t ahead = 0) const {
    size_t i = std::min(idx_ + ahead, toks_.size() - 1);
    return toks_[i];
  }
  const Token& next() {
    const Token& t = toks_[idx_];
    if (idx_ + 1 < toks_.size()) ++idx_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kOp && peek(ahead).value == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kName && peek(ahead).value == name;
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(peek().pos, std::string("expected '") + op + "'");
    next();
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::kName) fail(peek().pos, "expected a name");
    return next().value;
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::kBlockEnd) fail(peek().pos, "expected '%}'");
    next();
  }

  // ---- statements ----

  // Parses until `{% <one of end_names>` (not consumed) or end of input.
  StmtList parse_body(std::initializer_list<const char*> end_names) {
    DepthGuard guard(this);
    StmtList out;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokenKind::kEof) {
        if (end_names.size() != 0) fail(t.pos, std::string("missing '{% ") + *(end_names.end() - 1) + " %}'");
        return out;
      }
      if (t.kind == TokenKind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->pos = t.pos;
        s->text = next().value;
        out.push_back(std::move(s));
      } else if (t.kind == TokenKind::kVarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->pos = t.pos;
        s->expr = parse_tuple_or_expr(true);
        if (peek().kind != TokenKind::kVarEnd) fail(peek().pos, "expected '}}'");
        next();
        out.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        const Token& kw = peek(1);
        if (kw.kind != TokenKind::kName) fail(kw.pos, "expected a statement name");
        for (const char* end : end_names) {
          if (kw.value == end) return out;
        }
        next();
        out.push_back(parse_statement());
      } else {
        fail(t.pos, "unexpected token");
      }
    }
  }

  StmtPtr parse_statement() {
    const Token& kw = next();
    const std::string& k = kw.value;
    if (k == "if") return parse_if(kw.pos);
    if (k == "for") return parse_for(kw.pos);
    if (k == "set") return parse_set(kw.pos);
    if (k == "macro") return parse_macro(kw.pos);
    if (k == "filter") return parse_filter_block(kw.pos);
    if (k == "break" || k == "continue") {
      auto s = std::make_unique<Stmt>();
      s->kind = k == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      s->pos = kw.pos;
      expect_block_end();
      return s;
    }
    if (k == "generation") {
      // HF's {% generation %} marks assistant text for masks; it renders its body unchanged.
      expect_block_end();
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kIf;
      s->pos = kw.pos;
      auto cond = std::make_unique<Expr>();
      cond->literal = Value(true);
      s->conditions.push_back(std::move(cond));
      s->bodies.push_back(parse_body({"endgeneration"}));
      end_tag("endgeneration");
      return s;
    }
    fail(kw.pos, "unknown or unexpected statement '" + k + "'");
  }

  void end_tag(const char* name) {
    next();  // {%
    if (!is_name(name)) fail(peek().pos, std::string("expected '") + name + "'");
    next();
    expect_block_end();
  }

  StmtPtr parse_if(size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kIf;
    s->pos = pos;
    s->conditions.push_back(parse_tuple_or_expr(true));
    expect_block_end();
    while (true) {
      s->bodies.push_back(parse_body({"elif", "else", "endif"}));
      next();  // {%
      std::string kw = next().value;
      if (kw == "elif") {
        s->conditions.push_back(parse_tuple_or_expr(true));
        expect_block_end();
      } else if (kw == "else") {
        expect_block_end();
        s->bodies.push_back(parse_body({"endif"}));
        end_tag("endif");
        return s;
      } else {
        expect_block_end();
        return s;
      }
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) next();
    names.push_back(expect_name());
    while (is_op(",")) {
      next();
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  StmtPtr parse_for(size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kFor;
    s->pos = pos;
    s->targets = parse_targets();
    if (!is_name("in")) fail(peek().pos, "expected 'in'");
    next();
    s->expr = parse_tuple_or_expr(false);
    if (is_name("if")) {
      next();
      s->condition = parse_expr(true);
    }
    if (is_name("recursive")) fail(peek().pos, "recursive loops are not supported");
    expect_block_end();
    s->bodies.push_back(parse_body({"else", "endfor"}));
    next();
    std::string kw = next().value;
    expect_block_end();
    if (kw == "else") {
      s->bodies.push_back(parse_body({"endfor"}));
      end_tag("endfor");
    }
    return s;
  }

  StmtPtr parse_set(size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kSet;
    s->pos = pos;
    std::string first = expect_name();
    if (is_op(".")) {
      next();
      s->targets.push_back(first);
      s->attr = expect_name();
    } else {
      s->targets.push_back(first);
      while (is_op(",")) {
        next();
        s->targets.push_back(expect_name());
      }
    }
    if (peek().kind == TokenKind::kBlockEnd && s->attr.empty() && s->targets.size() == 1) {
      next();
      s->bodies.push_back(parse_body({"endset"}));
      end_tag("endset");
      return s;
    }
    expect_op("=");
    s->expr = parse_tuple_or_expr(true);
    expect_block_end();
    return s;
  }

  StmtPtr parse_macro(size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kMacro;
    s->pos = pos;
    s->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      MacroParam p;
      p.name = expect_name();
      if (is_op("=")) {
        next();
        p.default_value = parse_expr(true);
      }
      s->params.push_back(std::move(p));
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
    expect_block_end();
    s->bodies.push_back(parse_body({"endmacro"}));
    end_tag("endmacro");
    return s;
  }

  StmtPtr parse_filter_block(size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kFilterBlock;
    s->pos = pos;
    auto placeholder = std::make_unique<Expr>();
    placeholder->kind = ExprKind::kName;
    placeholder->name = "";
    s->expr = parse_filter_tail(std::move(placeholder), true);
    while (is_op("|")) s->expr = parse_filter_tail(std::move(s->expr), false);
    expect_block_end();
    s->bodies.push_back(parse_body({"endfilter"}));
    end_tag("endfilter");
    return s;
  }

  // ---- expressions ----

  ExprPtr make(ExprKind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  // `a, b` at top level becomes a tuple (as in `{% set x = 1, 2 %}`).
  ExprPtr parse_tuple_or_expr(bool with_condexpr) {
    size_t pos = peek().pos;
    ExprPtr first = parse_expr(with_condexpr);
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::kTuple, pos);
    tuple->children.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (peek().kind == TokenKind::kBlockEnd || peek().kind == TokenKind::kVarEnd) break;
      tuple->children.push_back(parse_expr(with_condexpr));
    }
    return tuple;
  }

  ExprPtr parse_expr(bool with_condexpr) {
    DepthGuard guard(this);
    ExprPtr e = parse_or();
    while (with_condexpr && is_name("if")) {
      size_t pos = next().pos;
      auto c = make(ExprKind::kConditional, pos);
      c->children.push_back(std::move(e));
      c->children.push_back(parse_or());
      if (is_name("else")) {
        next();
        c->children.push_back(parse_expr(true));
      } else {
        c->children.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(ExprKind kind, std::string op, ExprPtr l, ExprPtr r, size_t pos) {
    auto e = make(kind, pos);
    e->name = std::move(op);
    e->children.push_back(std::move(l));
    e->children.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      size_t pos = next().pos;
      l = binary(ExprKind::kOr, "or", std::move(l), parse_and(), pos);
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      size_t pos = next().pos;
      l = binary(ExprKind::kAnd, "and", std::move(l), parse_not(), pos);
    }
    return l;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(this);
      size_t pos = next().pos;
      auto e = make(ExprKind::kUnary, pos);
      e->name = "not";
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr l = parse_math1();
    while (true) {
      const Token& t = peek();
      std::string op;
      if (t.kind == TokenKind::kOp &&
          (t.value == "==" || t.value == "!=" || t.value == "<" || t.value == ">" || t.value == "<=" ||
           t.value == ">=")) {
        op = t.value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && is_name("in", 1)) {
        op = "not in";
        next();
        next();
      } else {
        return l;
      }
      l = binary(ExprKind::kBinary, op, std::move(l), parse_math1(), t.pos);
    }
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      l = binary(ExprKind::kBinary, t.value, std::move(l), parse_concat(), t.pos);
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      const Token& t = next();
      l = binary(ExprKind::kBinary, "~", std::move(l), parse_math2(), t.pos);
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      l = binary(ExprKind::kBinary, t.value, std::move(l), parse_pow(), t.pos);
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      const Token& t = next();
      l = binary(ExprKind::kBinary, "**", std::move(l), parse_unary(true), t.pos);
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      auto e = make(ExprKind::kUnary, t.pos);
      e->name = t.value;
      e->children.push_back(parse_unary(false));
      return with_filter ? parse_filters(std::move(e)) : std::move(e);
    }
    ExprPtr e = parse_postfix(parse_primary());
    return with_filter ? parse_filters(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case TokenKind::kName: {
        next();
        auto e = make(ExprKind::kLiteral, t.pos);
        if (t.value == "true" || t.value == "True") e->literal = Value(true);
        else if (t.value == "false" || t.value == "False") e->literal = Value(false);
        else if (t.value == "none" || t.value == "None") e->literal = Value::none();
        else {
          e->kind = ExprKind::kName;
          e->name = t.value;
        }
        return e;
      }
      case TokenKind::kString: {
        std::string s = next().value;
        while (peek().kind == TokenKind::kString) s += next().value;  // "a" "b" concatenates
        auto e = make(ExprKind::kLiteral, t.pos);
        e->literal = Value(std::move(s));
        return e;
      }
      case TokenKind::kInt: {
        auto e = make(ExprKind::kLiteral, t.pos);
        e->literal = Value(next().int_value);
        return e;
      }
      case TokenKind::kFloat: {
        auto e = make(ExprKind::kLiteral, t.pos);
        e->literal = Value(next().float_value);
        return e;
      }
      case TokenKind::kOp:
        if (t.value == "(") return parse_paren();
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail(t.pos, "unexpected token in expression");
  }

  ExprPtr parse_paren() {
    size_t pos = next().pos;
    if (is_op(")")) {
      next();
      return make(ExprKind::kTuple, pos);
    }
    ExprPtr first = parse_expr(true);
    if (is_op(")")) {
      next();
      return first;
    }
    auto tuple = make(ExprKind::kTuple, pos);
    tuple->children.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (is_op(")")) break;
      tuple->children.push_back(parse_expr(true));
    }
    expect_op(")");
    return tuple;
  }

  ExprPtr parse_list() {
    auto e = make(ExprKind::kList, next().pos);
    while (!is_op("]")) {
      e->children.push_back(parse_expr(true));
      if (!is_op(",")) break;
      next();
    }
    expect_op("]");
    return e;
  }

  ExprPtr parse_dict() {
    auto e = make(ExprKind::kDict, next().pos);
    while (!is_op("}")) {
      e->children.push_back(parse_expr(true));
      expect_op(":");
      e->children.push_back(parse_expr(true));
      if (!is_op(",")) break;
      next();
    }
    expect_op("}");
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      DepthGuard guard(this);
      const Token& t = peek();
      if (is_op(".")) {
        next();
        if (peek().kind == TokenKind::kInt) {
          auto g = make(ExprKind::kGetItem, t.pos);
          g->children.push_back(std::move(e));
          auto idx = make(ExprKind::kLiteral, peek().pos);
          idx->literal = Value(next().int_value);
          g->children.push_back(std::move(idx));
          e = std::move(g);
        } else {
          auto g = make(ExprKind::kGetAttr, t.pos);
          g->name = expect_name();
          g->children.push_back(std::move(e));
          e = std::move(g);
        }
      } else if (is_op("[")) {
        next();
        e = parse_subscript(std::move(e), t.pos);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), t.pos);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, size_t pos) {
    ExprPtr parts[3];
    int num_colons = 0;
    if (!is_op(":")) parts[0] = parse_expr(true);
    while (is_op(":") && num_colons < 2) {
      next();
      ++num_colons;
      if (!is_op(":") && !is_op("]")) parts[num_colons] = parse_expr(true);
    }
    expect_op("]");
    if (num_colons == 0) {
      auto g = make(ExprKind::kGetItem, pos);
      g->children.push_back(std::move(target));
      g->children.push_back(std::move(parts[0]));
      return g;
    }
    auto s = make(ExprKind::kSlice, pos);
    s->children.push_back(std::move(target));
    for (auto& p : parts) s->children.push_back(std::move(p));
    return s;
  }

  // Parses `( args, kw=args )` into e (children after the first, kwargs).
  void parse_args(Expr* e) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == TokenKind::kName && is_op("=", 1)) {
        std::string key = next().value;
        next();
        e->kwargs.emplace_back(std::move(key), parse_expr(true));
      } else {
        if (!e->kwargs.empty()) fail(peek().pos, "positional argument after keyword argument");
        e->children.push_back(parse_expr(true));
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee, size_t pos) {
    auto c = make(ExprKind::kCall, pos);
    c->children.push_back(std::move(callee));
    parse_args(c.get());
    return c;
  }

  // One `| name(args)` step (the '|' already consumed when first_without_bar).
  ExprPtr parse_filter_tail(ExprPtr target, bool first_without_bar) {
    size_t pos = peek().pos;
    if (!first_without_bar) expect_op("|");
    auto f = make(ExprKind::kFilter, pos);
    f->name = expect_name();
    while (is_op(".")) {  // dotted filter names are not a thing we support, but fail clearly
      fail(peek().pos, "unsupported dotted filter name");
    }
    f->children.push_back(std::move(target));
    if (is_op("(")) parse_args(f.get());
    return f;
  }

  bool starts_test_argument() const {
    const Token& t = peek();
    if (t.kind == TokenKind::kString || t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat) return true;
    if (t.kind == TokenKind::kName) {
      static const char* kStop[] = {"and", "or", "else", "if", "not", "in", "is"};
      for (const char* s : kStop) {
        if (t.value == s) return false;
      }
      return true;
    }
    return false;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_tail(std::move(e), false);
      } else if (is_name("is")) {
        size_t pos = next().pos;
        auto t = make(ExprKind::kTest, pos);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        t->children.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(t.get());
        } else if (starts_test_argument()) {
          t->children.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), peek().pos);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& toks_;
  size_t idx_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<StmtList> parse_template(const std::vector<Token>& tokens, std::string_view source) {
  if (tokens.empty()) return StmtList{};
  try {
    return Parser(tokens).parse_all();
  } catch (const ParseError& e) {
    return Status::InvalidArgument("template syntax error at " + describe_position(source, e.pos) + ": " +
                                   e.message);
  }
}

}  // namespace ferry::llm
