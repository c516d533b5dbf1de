#include "backend/llm/chat_template/lexer.h"

#include <cerrno>
#include <cstdlib>

namespace ferry::llm {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

enum class TagKind { kVar, kBlock, kComment };

class Lexer {
 public:
  Lexer(std::string_view src, const LexOptions& options) : src_(src), options_(options) {}

  Result<std::vector<Token>> run() {
    size_t text_start = 0;
    bool strip_next_text = false;   // previous tag ended with '-'
    bool trim_next_newline = false; // previous tag was a block/comment (trim_blocks)
    size_t pos = 0;
    while (true) {
      size_t open = find_tag_open(pos);
      size_t text_end = open == std::string_view::npos ? src_.size() : open;
      TagKind kind = TagKind::kVar;
      bool left_minus = false, left_plus = false;
      if (open != std::string_view::npos) {
        char c = src_[open + 1];
        kind = c == '{' ? TagKind::kVar : c == '%' ? TagKind::kBlock : TagKind::kComment;
        if (open + 2 < src_.size()) {
          left_minus = src_[open + 2] == '-';
          left_plus = src_[open + 2] == '+';
        }
      }
      // Text between the previous tag and this one, with whitespace control applied.
      size_t a = text_start, b = text_end;
      if (strip_next_text) {
        while (a < b && is_space(src_[a])) ++a;
      } else if (trim_next_newline) {
        if (a < b && src_[a] == '\n') ++a;
        else if (a + 1 < b && src_[a] == '\r' && src_[a + 1] == '\n') a += 2;
      }
      if (open != std::string_view::npos) {
        if (left_minus) {
          while (b > a && is_space(src_[b - 1])) --b;
        } else if (kind != TagKind::kVar && options_.lstrip_blocks && !left_plus) {
          b = lstrip_end(a, b);
        }
      }
      if (b > a) push_text(a, b);
      if (open == std::string_view::npos) break;

      size_t body = open + 2 + ((left_minus || left_plus) ? 1 : 0);
      bool right_minus = false, right_plus = false;
      size_t after = 0;
      if (kind == TagKind::kComment) {
        size_t close = src_.find("#}", body);
        if (close == std::string_view::npos) return error(open, "unterminated comment");
        right_minus = close > body && src_[close - 1] == '-';
        right_plus = close > body && src_[close - 1] == '+';
        after = close + 2;
      } else {
        Status s = lex_tag_body(kind, open, body, &after, &right_minus, &right_plus);
        if (!s.ok()) return s;
        if (kind == TagKind::kBlock && is_raw_block()) {
          Status raw = take_raw(after, &after, &right_minus);
          if (!raw.ok()) return raw;
        }
      }
      strip_next_text = right_minus;
      trim_next_newline = kind != TagKind::kVar && options_.trim_blocks && !right_plus;
      text_start = after;
      pos = after;
    }
    Token eof;
    eof.kind = TokenKind::kEof;
    eof.pos = src_.size();
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  Status error(size_t pos, const std::string& what) {
    return Status::InvalidArgument("template syntax error at " + describe_position(src_, pos) + ": " + what);
  }

  size_t find_tag_open(size_t from) const {
    while (true) {
      size_t p = src_.find('{', from);
      if (p == std::string_view::npos || p + 1 >= src_.size()) return std::string_view::npos;
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      from = p + 1;
    }
  }

  // lstrip_blocks: if the text [a, b) ends with a line made only of spaces/tabs that started at
  // a line start, cut it.
  size_t lstrip_end(size_t a, size_t b) const {
    size_t p = b;
    while (p > a && (src_[p - 1] == ' ' || src_[p - 1] == '\t')) --p;
    if (p == b) return b;
    bool at_line_start = (p > a) ? src_[p - 1] == '\n' : (p == 0 || src_[p - 1] == '\n');
    return at_line_start ? p : b;
  }

  void push_text(size_t a, size_t b) {
    Token t;
    t.kind = TokenKind::kText;
    t.value = std::string(src_.substr(a, b - a));
    t.pos = a;
    tokens_.push_back(std::move(t));
  }

  void push(TokenKind kind, std::string value, size_t pos) {
    Token t;
    t.kind = kind;
    t.value = std::move(value);
    t.pos = pos;
    tokens_.push_back(std::move(t));
  }

  // True when the block just lexed is `{% raw %}`.
  bool is_raw_block() const {
    size_t n = tokens_.size();
    return n >= 3 && tokens_[n - 3].kind == TokenKind::kBlockBegin && tokens_[n - 2].kind == TokenKind::kName &&
           tokens_[n - 2].value == "raw" && tokens_[n - 1].kind == TokenKind::kBlockEnd;
  }

  // Replaces the `{% raw %}` tokens by the verbatim text up to `{% endraw %}`.
  Status take_raw(size_t from, size_t* after, bool* right_minus) {
    size_t raw_pos = tokens_[tokens_.size() - 3].pos;
    tokens_.resize(tokens_.size() - 3);
    size_t p = from;
    while (true) {
      size_t open = src_.find("{%", p);
      if (open == std::string_view::npos) return error(raw_pos, "unterminated raw block");
      size_t q = open + 2;
      bool minus = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.substr(q, 6) == "endraw") {
        q += 6;
        while (q < src_.size() && is_space(src_[q])) ++q;
        bool rminus = q < src_.size() && src_[q] == '-';
        if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
        if (src_.substr(q, 2) != "%}") return error(open, "bad endraw tag");
        size_t end = open;
        if (minus) {
          while (end > from && is_space(src_[end - 1])) --end;
        }
        if (end > from) push_text(from, end);
        *after = q + 2;
        *right_minus = rminus;
        return Status::Ok();
      }
      p = open + 2;
    }
  }

  Status lex_tag_body(TagKind kind, size_t open, size_t p, size_t* after, bool* right_minus, bool* right_plus) {
    push(kind == TagKind::kVar ? TokenKind::kVarBegin : TokenKind::kBlockBegin, "", open);
    const char close_char = kind == TagKind::kVar ? '}' : '%';
    int depth = 0;  // open ( [ { inside the tag: "}}" only closes at depth 0
    while (true) {
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (p >= src_.size()) return error(open, "unterminated tag");
      char c = src_[p];
      // Closing delimiter, optionally preceded by '-' or '+'.
      if (depth == 0) {
        size_t q = p;
        bool minus = false, plus = false;
        if (src_[q] == '-' || src_[q] == '+') {
          minus = src_[q] == '-';
          plus = src_[q] == '+';
          ++q;
        }
        if (q + 1 < src_.size() && src_[q] == close_char && src_[q + 1] == '}') {
          push(kind == TagKind::kVar ? TokenKind::kVarEnd : TokenKind::kBlockEnd, "", p);
          *after = q + 2;
          *right_minus = minus;
          *right_plus = plus;
          return Status::Ok();
        }
      }
      if (is_name_start(c)) {
        size_t s = p;
        while (p < src_.size() && is_name_char(src_[p])) ++p;
        push(TokenKind::kName, std::string(src_.substr(s, p - s)), s);
      } else if (is_digit(c)) {
        FERRY_RETURN_IF_ERROR(lex_number(p));
      } else if (c == '"' || c == '\'') {
        FERRY_RETURN_IF_ERROR(lex_string(p));
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                     ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", "!"};
        bool matched = false;
        for (const char* op : kOps) {
          std::string_view o(op);
          if (src_.substr(p, o.size()) == o) {
            if (o == "(" || o == "[" || o == "{") ++depth;
            if ((o == ")" || o == "]" || o == "}") && depth > 0) --depth;
            push(TokenKind::kOp, std::string(o), p);
            p += o.size();
            matched = true;
            break;
          }
        }
        if (!matched) return error(p, std::string("unexpected character '") + c + "'");
      }
    }
  }

  Status lex_number(size_t& p) {
    size_t s = p;
    bool is_float = false;
    while (p < src_.size() && (is_digit(src_[p]) || src_[p] == '_')) ++p;
    if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
      is_float = true;
      ++p;
      while (p < src_.size() && is_digit(src_[p])) ++p;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        is_float = true;
        p = q;
        while (p < src_.size() && is_digit(src_[p])) ++p;
      }
    }
    std::string text;
    for (size_t i = s; i < p; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    Token t;
    t.pos = s;
    if (is_float) {
      t.kind = TokenKind::kFloat;
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = TokenKind::kInt;
      errno = 0;
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno != 0) return error(s, "integer literal out of range");
    }
    tokens_.push_back(std::move(t));
    return Status::Ok();
  }

  Status lex_string(size_t& p) {
    size_t s = p;
    char quote = src_[p++];
    std::string out;
    while (p < src_.size() && src_[p] != quote) {
      char c = src_[p++];
      if (c != '\\' || p >= src_.size()) {
        out += c;
        continue;
      }
      char e = src_[p++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        default:
          out += '\\';
          out += e;
      }
    }
    if (p >= src_.size()) return error(s, "unterminated string literal");
    ++p;
    push(TokenKind::kString, std::move(out), s);
    return Status::Ok();
  }

  std::string_view src_;
  LexOptions options_;
  std::vector<Token> tokens_;
};

}  // namespace

std::string describe_position(std::string_view source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

Result<std::vector<Token>> lex_template(std::string_view source, const LexOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace ferry::llm
