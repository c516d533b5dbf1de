#include "backend/llm/chat_template/string_util.h"

#include <algorithm>

namespace ferry::llm {

namespace {

size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

uint32_t decode(std::string_view c) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(c[i])); };
  switch (c.size()) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char up(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }
char low(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

template <typename Pred>
std::string strip_if(const std::string& s, bool left, bool right, Pred pred) {
  std::vector<std::string> chars = utf8_chars(s);
  size_t a = 0, b = chars.size();
  if (left) {
    while (a < b && pred(chars[a])) ++a;
  }
  if (right) {
    while (b > a && pred(chars[b - 1])) --b;
  }
  std::string out;
  for (size_t i = a; i < b; ++i) out += chars[i];
  return out;
}

}  // namespace

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t n = utf8_len(static_cast<unsigned char>(s[i]));
    if (i + n > s.size()) n = 1;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
        n = 1;
        break;
      }
    }
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string python_strip(const std::string& s, bool left, bool right) {
  return strip_if(s, left, right, [](const std::string& c) { return is_py_space(decode(c)); });
}

std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right) {
  std::vector<std::string> set = utf8_chars(chars);
  return strip_if(s, left, right,
                  [&](const std::string& c) { return std::find(set.begin(), set.end(), c) != set.end(); });
}

std::vector<std::string> split_whitespace(const std::string& s, int64_t max_split, bool from_right) {
  std::vector<std::string> chars = utf8_chars(s);
  std::vector<std::string> words;
  if (from_right) std::reverse(chars.begin(), chars.end());
  size_t i = 0;
  int64_t splits = 0;
  while (i < chars.size()) {
    while (i < chars.size() && is_py_space(decode(chars[i]))) ++i;
    if (i >= chars.size()) break;
    std::vector<std::string> word;
    if (max_split >= 0 && splits >= max_split) {
      size_t end = chars.size();
      while (end > i && is_py_space(decode(chars[end - 1]))) --end;
      word.assign(chars.begin() + static_cast<std::ptrdiff_t>(i), chars.begin() + static_cast<std::ptrdiff_t>(end));
      i = chars.size();
    } else {
      while (i < chars.size() && !is_py_space(decode(chars[i]))) word.push_back(chars[i++]);
      ++splits;
    }
    if (from_right) std::reverse(word.begin(), word.end());
    std::string w;
    for (auto& c : word) w += c;
    words.push_back(std::move(w));
  }
  if (from_right) std::reverse(words.begin(), words.end());
  return words;
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep, int64_t max_split, bool from_right) {
  std::vector<std::string> parts;
  if (!from_right) {
    size_t start = 0;
    int64_t splits = 0;
    while (max_split < 0 || splits < max_split) {
      size_t p = s.find(sep, start);
      if (p == std::string::npos) break;
      parts.push_back(s.substr(start, p - start));
      start = p + sep.size();
      ++splits;
    }
    parts.push_back(s.substr(start));
    return parts;
  }
  size_t end = s.size();
  int64_t splits = 0;
  while (max_split < 0 || splits < max_split) {
    if (end < sep.size()) break;
    size_t p = s.rfind(sep, end - sep.size());
    if (p == std::string::npos) break;
    parts.push_back(s.substr(p + sep.size(), end - p - sep.size()));
    end = p;
    ++splits;
  }
  parts.push_back(s.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::string ascii_upper(std::string s) {
  for (char& c : s) c = up(c);
  return s;
}

std::string ascii_lower(std::string s) {
  for (char& c : s) c = low(c);
  return s;
}

std::string python_title(const std::string& s) {
  std::string out = s;
  bool prev_alpha = false;
  for (char& c : out) {
    c = prev_alpha ? low(c) : up(c);
    prev_alpha = is_alpha(c);
  }
  return out;
}

std::string python_capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = up(out[0]);
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    std::vector<std::string> chars = utf8_chars(s);
    int64_t done = 0;
    for (const auto& c : chars) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += c;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t p = s.find(from, start);
    if (p == std::string::npos) break;
    out.append(s, start, p - start);
    out += to;
    start = p + from.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

}  // namespace ferry::llm
