// compile_gbnf: GBNF text -> Grammar (grammar_internal.h).
//
// Syntax (llama.cpp's GBNF): `name ::= alternatives`; alternatives separated by `|`; a sequence of
// elements: "literal", [class], [^class], `.`, a rule name, ( alternatives ); postfix * + ? {m}
// {m,} {m,n} {,n}; `#` comments to the end of the line. Newlines are plain whitespace here: a rule
// ends where the next `name ::=` begins (so a rule may span lines without a trailing `|`).
//
// Compilation: a literal becomes one byte element per UTF-8 byte; a class over code points becomes
// one byte-set element for its ASCII part plus one alternative per UTF-8 byte-range sequence of
// the rest (in a helper rule); groups and repetitions become helper rules, repetitions right-
// recursive (x* -> R ::= x R | "") so the matcher's tail calls keep stacks flat. Then: undefined
// rules, a missing root and left recursion (also through rules that can match nothing) are refused
// (a repetition of something that can be empty is not left recursion: see check_left_recursion).
#include <algorithm>
#include <string>
#include <unordered_map>

#include "backend/llm/grammar/codepoints.h"
#include "backend/llm/grammar/grammar_internal.h"

namespace ferry::llm::grammar {

namespace {

constexpr int kMaxNesting = 64;  // parentheses; the parser recurses on them

struct BuildElem {
  ElementKind kind;
  uint32_t arg;
};
using BuildAlt = std::vector<BuildElem>;

struct BuildRule {
  std::string name;
  std::vector<BuildAlt> alts;
  bool defined = false;
  size_t offset = 0;  // where it was defined (or first used, while undefined)
};

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view src) : src_(src) {}

  Result<std::shared_ptr<const Grammar>> run();

 private:
  Status error(size_t at, const std::string& what) const;
  bool eof() const { return pos_ >= src_.size(); }
  char peek() const { return eof() ? '\0' : src_[pos_]; }
  void skip_space();
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }
  std::string_view parse_name();
  bool at_rule_start();

  Status parse_rule();
  Status parse_alternates(uint32_t owner, int depth, std::vector<BuildAlt>* alts);
  Status parse_sequence(uint32_t owner, int depth, BuildAlt* seq);
  Status parse_atom(uint32_t owner, int depth, BuildAlt* atom);
  Status parse_postfix(uint32_t owner, BuildAlt* atom);
  Status parse_escape(uint32_t* cp);
  Status parse_char(uint32_t* cp);
  Status parse_literal(BuildAlt* out);
  Status parse_class(uint32_t owner, BuildAlt* out);
  Status parse_count(uint32_t* value);

  uint32_t rule_id(std::string_view name, size_t offset);
  uint32_t new_helper(uint32_t owner, std::vector<BuildAlt> alts);
  Status add_elements(size_t n);
  uint32_t byte_set_id(const ByteSet& set);
  Status append_class(uint32_t owner, const CodepointSet& set, BuildAlt* out);
  Status repeat(uint32_t owner, BuildAlt atom, uint32_t min, uint32_t max, bool unbounded, BuildAlt* out);

  Status check_left_recursion() const;
  std::shared_ptr<const Grammar> flatten() const;

  std::string_view src_;
  size_t pos_ = 0;
  std::vector<BuildRule> rules_;
  std::unordered_map<std::string, uint32_t> rule_ids_;
  std::vector<ByteSet> byte_sets_;
  std::unordered_map<std::string, uint32_t> byte_set_ids_;
  size_t num_elements_ = 0;
  std::vector<uint32_t> helper_counts_;  // per rule: helpers made for it (names)
};

Status GbnfParser::error(size_t at, const std::string& what) const {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < at && i < src_.size(); ++i) {
    if (src_[i] == '\n') {
      ++line, col = 1;
    } else {
      ++col;
    }
  }
  return Status::InvalidArgument("gbnf: line " + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
}

void GbnfParser::skip_space() {
  while (!eof()) {
    const char c = peek();
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++pos_;
    } else if (c == '#') {
      while (!eof() && peek() != '\n') ++pos_;
    } else {
      break;
    }
  }
}

std::string_view GbnfParser::parse_name() {
  const size_t start = pos_;
  while (!eof() && is_name_char(peek())) ++pos_;
  return src_.substr(start, pos_ - start);
}

// At `name ::=` (the start of the next rule)? Leaves pos_ where it was.
bool GbnfParser::at_rule_start() {
  const size_t save = pos_;
  const bool named = !parse_name().empty();
  skip_space();
  const bool yes = named && src_.substr(pos_, 3) == "::=";
  pos_ = save;
  return yes;
}

uint32_t GbnfParser::rule_id(std::string_view name, size_t offset) {
  auto it = rule_ids_.find(std::string(name));
  if (it != rule_ids_.end()) return it->second;
  const auto id = static_cast<uint32_t>(rules_.size());
  BuildRule r;
  r.name = std::string(name);
  r.offset = offset;
  rules_.push_back(std::move(r));
  helper_counts_.push_back(0);
  rule_ids_.emplace(std::string(name), id);
  return id;
}

uint32_t GbnfParser::new_helper(uint32_t owner, std::vector<BuildAlt> alts) {
  const auto id = static_cast<uint32_t>(rules_.size());
  BuildRule r;
  r.name = rules_[owner].name + "-" + std::to_string(++helper_counts_[owner]);
  r.alts = std::move(alts);
  r.defined = true;
  r.offset = pos_;
  rules_.push_back(std::move(r));
  helper_counts_.push_back(0);
  return id;
}

Status GbnfParser::add_elements(size_t n) {
  num_elements_ += n;
  if (num_elements_ > kMaxElements) {
    return error(pos_, "the grammar is too large (more than " + std::to_string(kMaxElements) + " elements)");
  }
  if (rules_.size() > kMaxRules) {
    return error(pos_, "the grammar is too large (more than " + std::to_string(kMaxRules) + " rules)");
  }
  return Status::Ok();
}

uint32_t GbnfParser::byte_set_id(const ByteSet& set) {
  const std::string key(reinterpret_cast<const char*>(set.bits.data()), sizeof set.bits);
  auto [it, inserted] = byte_set_ids_.emplace(key, static_cast<uint32_t>(byte_sets_.size()));
  if (inserted) byte_sets_.push_back(set);
  return it->second;
}

Result<std::shared_ptr<const Grammar>> GbnfParser::run() {
  skip_space();
  while (!eof()) {
    FERRY_RETURN_IF_ERROR(parse_rule());
    skip_space();
  }
  for (const BuildRule& r : rules_) {
    if (!r.defined) return error(r.offset, "undefined rule '" + r.name + "'");
  }
  if (rule_ids_.find("root") == rule_ids_.end()) {
    return Status::InvalidArgument("gbnf: no 'root' rule (the start rule must be called root)");
  }
  FERRY_RETURN_IF_ERROR(check_left_recursion());
  return flatten();
}

Status GbnfParser::parse_rule() {
  const size_t start = pos_;
  const std::string_view name = parse_name();
  if (name.empty()) return error(pos_, "expected a rule name");
  skip_space();
  if (src_.substr(pos_, 3) != "::=") return error(pos_, "expected '::=' after rule name '" + std::string(name) + "'");
  pos_ += 3;
  const uint32_t id = rule_id(name, start);
  if (rules_[id].defined) return error(start, "rule '" + std::string(name) + "' is defined twice");
  rules_[id].defined = true;
  rules_[id].offset = start;
  std::vector<BuildAlt> alts;
  FERRY_RETURN_IF_ERROR(parse_alternates(id, 0, &alts));
  rules_[id].alts = std::move(alts);
  return Status::Ok();
}

Status GbnfParser::parse_alternates(uint32_t owner, int depth, std::vector<BuildAlt>* alts) {
  for (;;) {
    BuildAlt seq;
    FERRY_RETURN_IF_ERROR(parse_sequence(owner, depth, &seq));
    FERRY_RETURN_IF_ERROR(add_elements(1));  // its end marker
    alts->push_back(std::move(seq));
    skip_space();
    if (peek() != '|') return Status::Ok();
    ++pos_;
  }
}

Status GbnfParser::parse_sequence(uint32_t owner, int depth, BuildAlt* seq) {
  for (;;) {
    skip_space();
    if (eof() || peek() == '|' || peek() == ')' || at_rule_start()) return Status::Ok();
    BuildAlt atom;
    FERRY_RETURN_IF_ERROR(parse_atom(owner, depth, &atom));
    FERRY_RETURN_IF_ERROR(parse_postfix(owner, &atom));
    seq->insert(seq->end(), atom.begin(), atom.end());
  }
}

Status GbnfParser::parse_atom(uint32_t owner, int depth, BuildAlt* atom) {
  const char c = peek();
  if (c == '"') return parse_literal(atom);
  if (c == '[') return parse_class(owner, atom);
  if (c == '.') {
    ++pos_;
    return append_class(owner, CodepointSet::any(), atom);
  }
  if (c == '(') {
    const size_t open = pos_++;
    if (depth + 1 > kMaxNesting) return error(open, "parentheses nest deeper than " + std::to_string(kMaxNesting));
    std::vector<BuildAlt> alts;
    FERRY_RETURN_IF_ERROR(parse_alternates(owner, depth + 1, &alts));
    skip_space();
    if (peek() != ')') return error(pos_, "expected ')' to close the '(' at offset " + std::to_string(open));
    ++pos_;
    if (alts.size() == 1) {
      *atom = std::move(alts[0]);  // a plain group: its elements inline
    } else {
      FERRY_RETURN_IF_ERROR(add_elements(1));
      atom->push_back({ElementKind::kRule, new_helper(owner, std::move(alts))});
    }
    return Status::Ok();
  }
  if (is_name_char(c)) {
    const size_t start = pos_;
    const std::string_view name = parse_name();
    FERRY_RETURN_IF_ERROR(add_elements(1));
    atom->push_back({ElementKind::kRule, rule_id(name, start)});
    return Status::Ok();
  }
  return error(pos_, std::string("unexpected character '") + c + "'");
}

Status GbnfParser::parse_count(uint32_t* value) {
  const size_t start = pos_;
  uint64_t v = 0;
  while (!eof() && peek() >= '0' && peek() <= '9') {
    v = v * 10 + static_cast<uint64_t>(peek() - '0');
    if (v > kMaxRepeat) return error(start, "repetition count over " + std::to_string(kMaxRepeat));
    ++pos_;
  }
  if (pos_ == start) return error(pos_, "expected a number");
  *value = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status GbnfParser::parse_postfix(uint32_t owner, BuildAlt* atom) {
  for (;;) {
    const size_t save = pos_;
    skip_space();
    const char c = peek();
    uint32_t min = 0, max = 0;
    bool unbounded = false;
    if (c == '*' || c == '+' || c == '?') {
      ++pos_;
      min = c == '+' ? 1 : 0;
      max = c == '?' ? 1 : 0;
      unbounded = c != '?';
    } else if (c == '{') {
      const size_t open = pos_++;
      skip_space();
      if (peek() != ',') FERRY_RETURN_IF_ERROR(parse_count(&min));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
        if (peek() == '}') {
          unbounded = true;
        } else {
          FERRY_RETURN_IF_ERROR(parse_count(&max));
        }
      } else {
        max = min;
      }
      skip_space();
      if (peek() != '}') return error(pos_, "expected '}' to close the repetition");
      ++pos_;
      if (!unbounded && max < min) return error(open, "repetition {m,n} with n < m");
    } else {
      pos_ = save;
      return Status::Ok();
    }
    BuildAlt out;
    FERRY_RETURN_IF_ERROR(repeat(owner, std::move(*atom), min, max, unbounded, &out));
    *atom = std::move(out);
  }
}

// atom{min,max} (or atom{min,} when unbounded) -> elements appended to *out.
Status GbnfParser::repeat(uint32_t owner, BuildAlt atom, uint32_t min, uint32_t max, bool unbounded,
                          BuildAlt* out) {
  BuildElem x;
  if (atom.size() == 1) {
    x = atom[0];
  } else {
    FERRY_RETURN_IF_ERROR(add_elements(atom.size() + 1));
    x = {ElementKind::kRule, new_helper(owner, {std::move(atom)})};
  }
  FERRY_RETURN_IF_ERROR(add_elements(min));
  out->assign(min, x);
  if (unbounded) {
    // R ::= x R | ""
    const uint32_t r = new_helper(owner, {});
    rules_[r].alts = {{x, {ElementKind::kRule, r}}, {}};
    FERRY_RETURN_IF_ERROR(add_elements(5));
    out->push_back({ElementKind::kRule, r});
  } else if (max > min) {
    // R1 ::= x | "";  Rk ::= x R(k-1) | ""
    uint32_t prev = new_helper(owner, {{x}, {}});
    FERRY_RETURN_IF_ERROR(add_elements(3));
    for (uint32_t k = 2; k <= max - min; ++k) {
      prev = new_helper(owner, {{x, {ElementKind::kRule, prev}}, {}});
      FERRY_RETURN_IF_ERROR(add_elements(4));
    }
    out->push_back({ElementKind::kRule, prev});
  }
  return Status::Ok();
}

Status GbnfParser::parse_escape(uint32_t* cp) {
  const size_t start = pos_;
  ++pos_;  // the backslash
  if (eof()) return error(start, "unfinished escape");
  const char c = src_[pos_++];
  int hex_digits = 0;
  switch (c) {
    case 'n': *cp = '\n'; return Status::Ok();
    case 't': *cp = '\t'; return Status::Ok();
    case 'r': *cp = '\r'; return Status::Ok();
    case '0': *cp = 0; return Status::Ok();
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/':
      *cp = static_cast<uint8_t>(c);
      return Status::Ok();
    case 'x': hex_digits = 2; break;
    case 'u': hex_digits = 4; break;
    case 'U': hex_digits = 8; break;
    default: return error(start, std::string("unknown escape '\\") + c + "'");
  }
  uint32_t v = 0;
  for (int i = 0; i < hex_digits; ++i) {
    const char h = peek();
    int d;
    if (h >= '0' && h <= '9') {
      d = h - '0';
    } else if (h >= 'a' && h <= 'f') {
      d = h - 'a' + 10;
    } else if (h >= 'A' && h <= 'F') {
      d = h - 'A' + 10;
    } else {
      return error(pos_, "expected " + std::to_string(hex_digits) + " hex digits after '\\" + c + "'");
    }
    v = (v << 4) | static_cast<uint32_t>(d);
    ++pos_;
  }
  if (v > kMaxCodepoint) return error(start, "code point past U+10FFFF");
  *cp = v;
  return Status::Ok();
}

// One character of a literal or class: an escape or one UTF-8 encoded code point.
Status GbnfParser::parse_char(uint32_t* cp) {
  if (peek() == '\\') return parse_escape(cp);
  if (!decode_utf8(src_, &pos_, cp)) return error(pos_, "invalid UTF-8");
  return Status::Ok();
}

Status GbnfParser::parse_literal(BuildAlt* out) {
  const size_t open = pos_++;
  while (peek() != '"') {
    if (eof()) return error(open, "unterminated string literal");
    uint32_t cp;
    FERRY_RETURN_IF_ERROR(parse_char(&cp));
    if (cp >= 0xD800 && cp <= 0xDFFF) return error(pos_, "a surrogate code point cannot be matched in UTF-8");
    std::string bytes;
    append_utf8(&bytes, cp);
    FERRY_RETURN_IF_ERROR(add_elements(bytes.size()));
    for (char b : bytes) {
      ByteSet s;
      s.add(static_cast<uint8_t>(b));
      out->push_back({ElementKind::kBytes, byte_set_id(s)});
    }
  }
  ++pos_;
  return Status::Ok();
}

Status GbnfParser::parse_class(uint32_t owner, BuildAlt* out) {
  const size_t open = pos_++;
  const bool negated = peek() == '^';
  if (negated) ++pos_;
  CodepointSet set;
  while (peek() != ']') {
    if (eof()) return error(open, "unterminated character class");
    uint32_t lo, hi;
    FERRY_RETURN_IF_ERROR(parse_char(&lo));
    hi = lo;
    if (peek() == '-' && pos_ + 1 < src_.size() && src_[pos_ + 1] != ']') {
      ++pos_;
      const size_t at = pos_;
      FERRY_RETURN_IF_ERROR(parse_char(&hi));
      if (hi < lo) return error(at, "character range is out of order");
    }
    set.add(lo, hi);
  }
  ++pos_;
  return append_class(owner, negated ? set.complement() : set, out);
}

// A code-point set as elements: one byte set when it is all ASCII, else a helper rule with one
// alternative per UTF-8 byte-range sequence (the ASCII part as one of them).
Status GbnfParser::append_class(uint32_t owner, const CodepointSet& set, BuildAlt* out) {
  const std::vector<Utf8Sequence> seqs = utf8_sequences(set);
  ByteSet ascii;
  std::vector<BuildAlt> alts;
  for (const Utf8Sequence& s : seqs) {
    if (s.length == 1) {
      ascii.add_range(s.lo[0], s.hi[0]);
      continue;
    }
    BuildAlt alt;
    for (int i = 0; i < s.length; ++i) {
      ByteSet b;
      b.add_range(s.lo[i], s.hi[i]);
      alt.push_back({ElementKind::kBytes, byte_set_id(b)});
    }
    alts.push_back(std::move(alt));
  }
  if (alts.empty()) {
    out->push_back({ElementKind::kBytes, byte_set_id(ascii)});
    return add_elements(1);
  }
  if (ascii.any()) alts.insert(alts.begin(), BuildAlt{{ElementKind::kBytes, byte_set_id(ascii)}});
  size_t n = 1;
  for (const BuildAlt& a : alts) n += a.size() + 1;
  out->push_back({ElementKind::kRule, new_helper(owner, std::move(alts))});
  return add_elements(n);
}

// Refuses left recursion that would make the matcher's stacks grow without consuming a byte.
// Edge r -> s when s occurs in an alternative of r after elements that can all be empty; the edge
// is a tail edge when nothing follows s there (the matcher pushes no return position for it). A
// cycle made of tail edges only is harmless (x* over an x that can be empty: the matcher's visited
// set ends it); a cycle with any other edge is refused.
Status GbnfParser::check_left_recursion() const {
  const size_t n = rules_.size();
  std::vector<char> nullable(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const BuildAlt& alt : rules_[r].alts) {
        const bool all = std::all_of(alt.begin(), alt.end(), [&](const BuildElem& e) {
          return e.kind == ElementKind::kRule && nullable[e.arg];
        });
        if (all) {
          nullable[r] = 1, changed = true;
          break;
        }
      }
    }
  }
  struct Edge {
    uint32_t to;
    bool tail;
  };
  std::vector<std::vector<Edge>> edges(n);
  for (size_t r = 0; r < n; ++r) {
    for (const BuildAlt& alt : rules_[r].alts) {
      for (size_t i = 0; i < alt.size(); ++i) {
        if (alt[i].kind != ElementKind::kRule) break;
        edges[r].push_back({alt[i].arg, i + 1 == alt.size()});
        if (!nullable[alt[i].arg]) break;
      }
    }
  }
  // Strongly connected components (iterative Tarjan).
  std::vector<int32_t> index(n, -1), low(n, 0), comp(n, -1);
  std::vector<char> on_stack(n, 0);
  std::vector<uint32_t> stack;
  std::vector<std::pair<uint32_t, size_t>> calls;
  int32_t next_index = 0, num_comps = 0;
  for (uint32_t start = 0; start < n; ++start) {
    if (index[start] >= 0) continue;
    calls.push_back({start, 0});
    while (!calls.empty()) {
      auto& [r, next] = calls.back();
      if (next == 0) {
        index[r] = low[r] = next_index++;
        stack.push_back(r);
        on_stack[r] = 1;
      }
      if (next < edges[r].size()) {
        const uint32_t s = edges[r][next++].to;
        if (index[s] < 0) {
          calls.push_back({s, 0});
        } else if (on_stack[s]) {
          low[r] = std::min(low[r], index[s]);
        }
        continue;
      }
      if (low[r] == index[r]) {
        uint32_t w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = 0;
          comp[w] = num_comps;
        } while (w != r);
        ++num_comps;
      }
      const uint32_t done = r;
      calls.pop_back();
      if (!calls.empty()) low[calls.back().first] = std::min(low[calls.back().first], low[done]);
    }
  }
  for (uint32_t u = 0; u < n; ++u) {
    for (const Edge& e : edges[u]) {
      if (e.tail || comp[e.to] != comp[u]) continue;
      // A growing cycle through u -> e.to: name it (a path e.to ... u inside the component).
      std::vector<int64_t> from(n, -1);
      std::vector<uint32_t> queue{e.to};
      from[e.to] = e.to;
      for (size_t q = 0; q < queue.size() && from[u] < 0; ++q) {
        for (const Edge& f : edges[queue[q]]) {
          if (comp[f.to] == comp[u] && from[f.to] < 0) {
            from[f.to] = queue[q];
            queue.push_back(f.to);
          }
        }
      }
      std::vector<uint32_t> path{u};
      while (path.back() != e.to) path.push_back(static_cast<uint32_t>(from[path.back()]));
      std::string cycle;
      for (size_t i = path.size(); i-- > 0;) cycle += rules_[path[i]].name + " -> ";
      cycle += rules_[e.to].name;
      return error(rules_[e.to].offset, "left recursion (a rule reaches itself without consuming input: " + cycle +
                                            "); write it right-recursive or as a repetition");
    }
  }
  return Status::Ok();
}

std::shared_ptr<const Grammar> GbnfParser::flatten() const {
  auto g = std::make_shared<Grammar>();
  g->byte_sets = byte_sets_;
  g->elements.reserve(num_elements_);
  for (const BuildRule& r : rules_) {
    g->rule_alts.push_back(static_cast<uint32_t>(g->alt_starts.size()));
    g->rule_names.push_back(r.name);
    for (const BuildAlt& alt : r.alts) {
      g->alt_starts.push_back(static_cast<uint32_t>(g->elements.size()));
      for (const BuildElem& e : alt) g->elements.push_back({e.kind, e.arg});
      g->elements.push_back({ElementKind::kEnd, 0});
    }
  }
  g->rule_alts.push_back(static_cast<uint32_t>(g->alt_starts.size()));
  g->root = rule_ids_.at("root");
  return g;
}

}  // namespace

Result<std::shared_ptr<const Grammar>> compile_gbnf(std::string_view gbnf) {
  GbnfParser parser(gbnf);
  return parser.run();
}

}  // namespace ferry::llm::grammar
