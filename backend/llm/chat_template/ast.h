// Syntax tree of ferry's Jinja-subset interpreter. Built by parser.h, walked by interpreter.h.
//
// Nodes are plain structs owned by their parent through unique_ptr; a parsed template is immutable
// and may be rendered from many threads at once.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/llm/chat_template/value.h"

namespace ferry::llm {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,      // literal
  kName,         // name
  kList,         // [children...]
  kTuple,        // (children...) — also the target of `for a, b in`
  kDict,         // {children[2i]: children[2i+1]}
  kGetAttr,      // children[0] . name
  kGetItem,      // children[0] [ children[1] ]
  kSlice,        // children[0] [ children[1] : children[2] : children[3] ] (null = omitted)
  kCall,         // children[0] ( children[1..] , kwargs )
  kFilter,       // children[0] | name ( children[1..], kwargs )
  kTest,         // children[0] is [not] name ( children[1..] )
  kUnary,        // op children[0]: "not", "-", "+"
  kBinary,       // children[0] op children[1]: + - * / // % ** ~ == != < > <= >= in "not in"
  kAnd,          // children[0] and children[1]
  kOr,           // children[0] or children[1]
  kConditional,  // children[0] if children[1] else children[2] (children[2] may be null)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  size_t pos = 0;           // byte offset in the source, for errors
  Value literal;            // kLiteral
  std::string name;         // kName, kGetAttr, kFilter, kTest; operator for kUnary/kBinary
  bool negated = false;     // kTest with `is not`
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall, kFilter
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

enum class StmtKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // conditions[i] -> bodies[i]; bodies.size() == conditions.size() + 1 when there is an else
  kFor,       // for targets in expr [if condition]: bodies[0]; else: bodies[1] (optional)
  kSet,       // set targets = expr, or set target.attr = expr (attr non-empty), or block set (bodies[0])
  kMacro,     // macro name(params) bodies[0]
  kFilterBlock,  // filter expr(applied to the body, placeholder name "") bodies[0]
  kBreak,
  kContinue,
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  size_t pos = 0;
  std::string text;                  // kText; macro name for kMacro
  ExprPtr expr;                      // kOutput value, kFor iterable, kSet value, kFilterBlock filter
  ExprPtr condition;                 // kFor's inline `if`
  std::vector<std::string> targets;  // kFor / kSet variable names
  std::string attr;                  // kSet `ns.attr = ...`
  std::vector<ExprPtr> conditions;   // kIf
  std::vector<StmtList> bodies;
  std::vector<MacroParam> params;    // kMacro
};

}  // namespace ferry::llm
