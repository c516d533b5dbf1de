// regex_to_gbnf and choice_to_gbnf: two front ends that write GBNF text.
//
// The regex subset (ECMAScript-like): literals; escapes \n \t \r \f \v \0 \xHH \uHHHH and escaped
// punctuation; . (any character but \n and \r); classes [...] [^...] with ranges and \d \w \s \D
// \W \S inside or outside them; groups (...) and (?:...) (named groups (?<n>...) as plain ones);
// alternation |; quantifiers * + ? {m} {m,} {m,n} (a lazy ? after them is accepted and means
// nothing here: a grammar has no match preference); ^ at the start and $ at the end. Refused with
// InvalidArgument: backreferences, lookaround, \b \B, anchors elsewhere.
#include <string>

#include "backend/llm/grammar/codepoints.h"
#include "backend/llm/grammar/front_ends.h"
#include "backend/llm/grammar/grammar.h"

namespace ferry::llm::grammar {

namespace {

constexpr int kMaxRegexNesting = 64;

CodepointSet class_digit() {
  CodepointSet s;
  s.add('0', '9');
  return s;
}
CodepointSet class_word() {
  CodepointSet s;
  s.add('a', 'z');
  s.add('A', 'Z');
  s.add('0', '9');
  s.add('_');
  return s;
}
CodepointSet class_space() {
  CodepointSet s;
  s.add(' ');
  s.add('\t', '\r');  // \t \n \v \f \r
  return s;
}

// "(inner)suffix", built by appends (GCC 12 warns falsely on "(" + s + ")" chains).
std::string group(std::string_view inner, std::string_view suffix = "") {
  std::string out;
  out.reserve(inner.size() + suffix.size() + 2);
  out.push_back('(');
  out.append(inner);
  out.push_back(')');
  out.append(suffix);
  return out;
}

// The JSON-escaped spelling of one control character, quote or backslash.
std::string json_escaped_char(uint32_t cp) {
  std::string one;
  append_utf8(&one, cp);
  return json_escape(one);
}

class RegexConverter {
 public:
  RegexConverter(std::string_view re, bool json_string) : re_(re), json_string_(json_string) {}

  Result<std::string> run() {
    bool anchored_start = false, anchored_end = false;
    if (!re_.empty() && re_[0] == '^') anchored_start = true, pos_ = 1;
    std::string expr;
    FERRY_RETURN_IF_ERROR(parse_alternation(0, &expr));
    if (pos_ < re_.size() && re_[pos_] == '$' && pos_ + 1 == re_.size()) anchored_end = true, ++pos_;
    if (pos_ < re_.size()) {
      return error(re_[pos_] == ')' ? "unbalanced ')'" : re_[pos_] == '$' ? "'$' before the end is not supported" : "unexpected character");
    }
    if (json_string_) {
      const std::string any = group(class_expr(CodepointSet::any()), "*");
      if (!anchored_start) expr = any + " " + expr;
      if (!anchored_end) expr = expr + " " + any;
    }
    return group(expr);
  }

 private:
  Status error(const std::string& what) const {
    return Status::InvalidArgument("regex: " + what + " at offset " + std::to_string(pos_) + " of '" +
                                   std::string(re_) + "'");
  }
  bool eof() const { return pos_ >= re_.size(); }
  char peek() const { return eof() ? '\0' : re_[pos_]; }

  // A GBNF expression matching one character of `set` (JSON-escaped in json_string mode).
  std::string class_expr(const CodepointSet& set) const {
    if (!json_string_) return gbnf_class(set);
    CodepointSet plain, special;
    for (const CodepointRange& r : set.ranges()) {
      for (uint32_t cp = r.lo; cp <= r.hi && cp < 0x20; ++cp) special.add(cp);
      if (r.lo <= '"' && '"' <= r.hi) special.add('"');
      if (r.lo <= '\\' && '\\' <= r.hi) special.add('\\');
    }
    plain = set;
    CodepointSet remove = special.complement();
    // plain = set minus special
    CodepointSet kept;
    for (const CodepointRange& r : plain.ranges()) {
      for (const CodepointRange& k : remove.ranges()) {
        const uint32_t lo = std::max(r.lo, k.lo), hi = std::min(r.hi, k.hi);
        if (lo <= hi) kept.add(lo, hi);
      }
    }
    std::string out;
    if (!kept.empty()) out = gbnf_class(kept);
    for (const CodepointRange& r : special.ranges()) {
      for (uint32_t cp = r.lo; cp <= r.hi; ++cp) {
        out += (out.empty() ? "" : " | ") + gbnf_literal(json_escaped_char(cp));
      }
    }
    if (out.empty()) return gbnf_class(CodepointSet());
    return group(out);
  }

  std::string char_expr(uint32_t cp) const {
    if (!json_string_) {
      std::string s;
      append_utf8(&s, cp);
      return gbnf_literal(s);
    }
    CodepointSet one;
    one.add(cp);
    return class_expr(one);
  }

  Status parse_alternation(int depth, std::string* out) {
    std::string alt;
    FERRY_RETURN_IF_ERROR(parse_concat(depth, &alt));
    *out = alt;
    while (peek() == '|') {
      ++pos_;
      FERRY_RETURN_IF_ERROR(parse_concat(depth, &alt));
      *out += " | " + alt;
    }
    return Status::Ok();
  }

  Status parse_concat(int depth, std::string* out) {
    out->clear();
    while (!eof() && peek() != '|' && peek() != ')') {
      if (peek() == '$' && pos_ + 1 == re_.size() && depth == 0) break;  // the end anchor
      std::string atom;
      FERRY_RETURN_IF_ERROR(parse_atom(depth, &atom));
      FERRY_RETURN_IF_ERROR(parse_quantifiers(&atom));
      *out += (out->empty() ? "" : " ") + atom;
    }
    return Status::Ok();
  }

  Status parse_number(uint32_t* v) {
    const size_t start = pos_;
    uint64_t n = 0;
    while (!eof() && peek() >= '0' && peek() <= '9') {
      n = n * 10 + static_cast<uint64_t>(peek() - '0');
      if (n > 100000) return error("repetition count too large");
      ++pos_;
    }
    if (pos_ == start) return error("expected a number");
    *v = static_cast<uint32_t>(n);
    return Status::Ok();
  }

  Status parse_quantifiers(std::string* atom) {
    for (;;) {
      const char c = peek();
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        *atom = group(*atom, std::string(1, c));
      } else if (c == '{') {
        ++pos_;
        uint32_t m = 0, n = 0;
        FERRY_RETURN_IF_ERROR(parse_number(&m));
        std::string q(1, '{');
        q += std::to_string(m);
        if (peek() == ',') {
          ++pos_;
          q += ",";
          if (peek() != '}') {
            FERRY_RETURN_IF_ERROR(parse_number(&n));
            if (n < m) return error("{m,n} with n < m");
            q += std::to_string(n);
          }
        }
        if (peek() != '}') return error("expected '}'");
        ++pos_;
        *atom = group(*atom, q + "}");
      } else {
        return Status::Ok();
      }
      if (peek() == '?') ++pos_;  // lazy: no meaning for a grammar
      if (peek() == '*' || peek() == '+' || peek() == '{') return error("a quantifier cannot follow a quantifier");
    }
  }

  // An escape after '\' (pos_ at the character after it): a class shorthand into *set (returns
  // true), or one code point into *cp.
  Status parse_escape(uint32_t* cp, CodepointSet* set, bool* is_set) {
    *is_set = false;
    if (eof()) return error("unfinished escape");
    const char c = re_[pos_++];
    switch (c) {
      case 'd': *set = class_digit(), *is_set = true; return Status::Ok();
      case 'D': *set = class_digit().complement(), *is_set = true; return Status::Ok();
      case 'w': *set = class_word(), *is_set = true; return Status::Ok();
      case 'W': *set = class_word().complement(), *is_set = true; return Status::Ok();
      case 's': *set = class_space(), *is_set = true; return Status::Ok();
      case 'S': *set = class_space().complement(), *is_set = true; return Status::Ok();
      case 'n': *cp = '\n'; return Status::Ok();
      case 't': *cp = '\t'; return Status::Ok();
      case 'r': *cp = '\r'; return Status::Ok();
      case 'f': *cp = '\f'; return Status::Ok();
      case 'v': *cp = '\v'; return Status::Ok();
      case '0': *cp = 0; return Status::Ok();
      case 'x':
      case 'u': {
        const int digits = c == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int i = 0; i < digits; ++i) {
          const char h = peek();
          const int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) return error(std::string("expected hex digits after \\") + c);
          v = v * 16 + static_cast<uint32_t>(d);
          ++pos_;
        }
        if (v >= 0xD800 && v <= 0xDFFF) return error("surrogate code points are not supported");
        *cp = v;
        return Status::Ok();
      }
      case 'b': case 'B': return error("word boundaries (\\b, \\B) are not supported");
      default:
        if (c >= '1' && c <= '9') return error("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return error(std::string("unknown escape \\") + c);
        --pos_;
        if (!decode_utf8(re_, &pos_, cp)) return error("invalid UTF-8");
        return Status::Ok();
    }
  }

  Status parse_class(std::string* out) {
    ++pos_;  // '['
    const bool negated = peek() == '^';
    if (negated) ++pos_;
    CodepointSet set;
    bool first = true;
    while (first || peek() != ']') {
      if (eof()) return error("unterminated character class");
      first = false;
      uint32_t lo;
      CodepointSet shorthand;
      bool is_set = false;
      if (peek() == '\\') {
        ++pos_;
        FERRY_RETURN_IF_ERROR(parse_escape(&lo, &shorthand, &is_set));
      } else if (!decode_utf8(re_, &pos_, &lo)) {
        return error("invalid UTF-8");
      }
      if (is_set) {
        set.add(shorthand);
        continue;
      }
      uint32_t hi = lo;
      if (peek() == '-' && pos_ + 1 < re_.size() && re_[pos_ + 1] != ']') {
        ++pos_;
        if (peek() == '\\') {
          ++pos_;
          FERRY_RETURN_IF_ERROR(parse_escape(&hi, &shorthand, &is_set));
          if (is_set) return error("a class shorthand cannot end a range");
        } else if (!decode_utf8(re_, &pos_, &hi)) {
          return error("invalid UTF-8");
        }
        if (hi < lo) return error("character range out of order");
      }
      set.add(lo, hi);
    }
    ++pos_;  // ']'
    *out = class_expr(negated ? set.complement() : set);
    return Status::Ok();
  }

  Status parse_atom(int depth, std::string* out) {
    const char c = peek();
    if (c == '(') {
      if (depth + 1 > kMaxRegexNesting) return error("groups nest too deep");
      ++pos_;
      if (peek() == '?') {
        ++pos_;
        if (peek() == ':') {
          ++pos_;
        } else if (peek() == '<' && pos_ + 1 < re_.size() && re_[pos_ + 1] != '=' && re_[pos_ + 1] != '!') {
          while (!eof() && peek() != '>') ++pos_;  // a named group: the name does not matter here
          if (eof()) return error("unterminated group name");
          ++pos_;
        } else {
          return error("lookaround and other (?...) groups are not supported");
        }
      }
      std::string inner;
      FERRY_RETURN_IF_ERROR(parse_alternation(depth + 1, &inner));
      if (peek() != ')') return error("missing ')'");
      ++pos_;
      *out = group(inner);
      return Status::Ok();
    }
    if (c == '[') return parse_class(out);
    if (c == '.') {
      ++pos_;
      CodepointSet nl;
      nl.add('\n');
      nl.add('\r');
      *out = class_expr(nl.complement());
      return Status::Ok();
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') return error("nothing to repeat");
    if (c == '^' || c == '$') return error("anchors inside the pattern are not supported");
    uint32_t cp;
    if (c == '\\') {
      ++pos_;
      CodepointSet set;
      bool is_set;
      FERRY_RETURN_IF_ERROR(parse_escape(&cp, &set, &is_set));
      *out = is_set ? class_expr(set) : char_expr(cp);
      return Status::Ok();
    }
    if (!decode_utf8(re_, &pos_, &cp)) return error("invalid UTF-8");
    *out = char_expr(cp);
    return Status::Ok();
  }

  std::string_view re_;
  bool json_string_;
  size_t pos_ = 0;
};

}  // namespace

std::string json_escape(std::string_view text) {
  std::string out;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(ch);
        }
    }
  }
  return out;
}

Result<std::string> regex_to_gbnf_expression(std::string_view regex, bool json_string) {
  if (!is_valid_utf8(regex)) return Status::InvalidArgument("regex: not valid UTF-8");
  return RegexConverter(regex, json_string).run();
}

Result<std::string> regex_to_gbnf(std::string_view regex) {
  auto expr = regex_to_gbnf_expression(regex, false);
  if (!expr.ok()) return expr.status();
  return "root ::= " + expr.value() + "\n";
}

Result<std::string> choice_to_gbnf(std::span<const std::string> choices) {
  if (choices.empty()) return Status::InvalidArgument("choice: the list of choices is empty");
  std::string out = "root ::= ";
  for (size_t i = 0; i < choices.size(); ++i) {
    if (!is_valid_utf8(choices[i])) {
      return Status::InvalidArgument("choice: choice " + std::to_string(i) + " is not valid UTF-8");
    }
    out += (i == 0 ? "" : " | ") + gbnf_literal(choices[i]);
  }
  return out + "\n";
}

}  // namespace ferry::llm::grammar
