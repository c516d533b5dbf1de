#include "backend/llm/grammar/json_key_order.h"

#include "backend/llm/grammar/codepoints.h"

namespace ferry::llm::grammar {

std::string json_pointer_escape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

namespace {

class KeyScanner {
 public:
  explicit KeyScanner(std::string_view t) : t_(t) {}

  JsonKeyOrder run() {
    // One frame per open container: its pointer, whether it is an object, the next array index.
    struct Frame {
      std::string pointer;
      bool object;
      size_t index;
    };
    std::vector<Frame> stack;
    std::string value_pointer;  // where the next value goes
    bool expect_key = false;
    while (skip_space(), i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '{' || c == '[') {
        ++i_;
        stack.push_back({value_pointer, c == '{', 0});
        if (c == '{') {
          order_[value_pointer];  // an empty object still has an (empty) order
          expect_key = true;
        } else {
          value_pointer = stack.back().pointer + "/0";
        }
      } else if (c == '}' || c == ']') {
        ++i_;
        if (!stack.empty()) stack.pop_back();
        expect_key = false;
      } else if (c == ',') {
        ++i_;
        if (stack.empty()) continue;
        if (stack.back().object) {
          expect_key = true;
        } else {
          value_pointer = stack.back().pointer + "/" + std::to_string(++stack.back().index);
        }
      } else if (c == ':') {
        ++i_;
      } else if (c == '"') {
        std::string s = read_string();
        if (expect_key && !stack.empty()) {
          order_[stack.back().pointer].push_back(s);
          value_pointer = stack.back().pointer + "/" + json_pointer_escape(s);
          expect_key = false;
        }
      } else {
        ++i_;  // numbers, literals: nothing to record
      }
    }
    return std::move(order_);
  }

 private:
  void skip_space() {
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i_;
      } else if (c == '/' && i_ + 1 < t_.size() && t_[i_ + 1] == '/') {
        while (i_ < t_.size() && t_[i_] != '\n') ++i_;
      } else if (c == '/' && i_ + 1 < t_.size() && t_[i_ + 1] == '*') {
        const size_t end = t_.find("*/", i_ + 2);
        i_ = end == std::string_view::npos ? t_.size() : end + 2;
      } else {
        return;
      }
    }
  }

  uint32_t read_hex4() {
    uint32_t v = 0;
    for (int k = 0; k < 4 && i_ < t_.size(); ++k, ++i_) {
      const char h = t_[i_];
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  // A string at t_[i_] == '"', decoded.
  std::string read_string() {
    std::string out;
    ++i_;
    while (i_ < t_.size() && t_[i_] != '"') {
      if (t_[i_] != '\\') {
        out.push_back(t_[i_++]);
        continue;
      }
      if (++i_ >= t_.size()) break;
      const char e = t_[i_++];
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'u': {
          uint32_t cp = read_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && t_.substr(i_, 2) == "\\u") {
            i_ += 2;
            const uint32_t lo = read_hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (cp <= kMaxCodepoint && !(cp >= 0xD800 && cp <= 0xDFFF)) append_utf8(&out, cp);
          break;
        }
        default: out.push_back(e);  // \" \\ \/
      }
    }
    ++i_;
    return out;
  }

  std::string_view t_;
  size_t i_ = 0;
  JsonKeyOrder order_;
};

}  // namespace

JsonKeyOrder json_key_order(std::string_view text) { return KeyScanner(text).run(); }

}  // namespace ferry::llm::grammar
