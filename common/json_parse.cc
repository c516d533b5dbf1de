#include "common/json_parse.h"

#include <algorithm>
#include <array>
#include <memory>
#include <string>

namespace ferry {
namespace {

// Building a jsoncpp reader costs more than parsing a small request, and readers are not
// thread-safe: each thread keeps one per combination of options.
Json::CharReader& reader_for(const JsonParseOptions& o) {
  thread_local std::array<std::unique_ptr<Json::CharReader>, 8> readers;
  const size_t index = (o.fail_if_extra ? 1 : 0) | (o.reject_dup_keys ? 2 : 0) | (o.allow_comments ? 4 : 0);
  std::unique_ptr<Json::CharReader>& r = readers[index];
  if (!r) {
    Json::CharReaderBuilder builder;
    builder["collectComments"] = false;
    builder["allowComments"] = o.allow_comments;
    builder["failIfExtra"] = o.fail_if_extra;
    builder["rejectDupKeys"] = o.reject_dup_keys;
    builder["allowSpecialFloats"] = false;
    // A backstop only: the pre-scan already refused anything deeper than kMaxJsonDepth, and
    // jsoncpp's node count for a depth-d text is about d + 1.
    builder["stackLimit"] = 2 * kMaxJsonDepth + 16;
    r.reset(builder.newCharReader());
  }
  return *r;
}

size_t skip_ws(std::string_view t, size_t i) {
  while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
  return i;
}

// t[i] == '"': one past the closing quote, or npos.
size_t skip_string(std::string_view t, size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') ++i;
    else if (t[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

// One past the value starting at t[i], or npos. Brackets are matched outside strings only; the
// value's own well-formedness is the parser's business.
size_t skip_value(std::string_view t, size_t i) {
  if (i >= t.size()) return std::string_view::npos;
  if (t[i] == '"') return skip_string(t, i);
  if (t[i] == '{' || t[i] == '[') {
    int depth = 0;
    while (i < t.size()) {
      const char c = t[i];
      if (c == '"') {
        i = skip_string(t, i);
        if (i == std::string_view::npos) return i;
        continue;
      }
      if (c == '/') return std::string_view::npos;  // a comment: not plain JSON
      if (c == '{' || c == '[') ++depth;
      else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
      ++i;
    }
    return std::string_view::npos;
  }
  const size_t start = i;
  while (i < t.size() && std::string_view(",}] \t\r\n").find(t[i]) == std::string_view::npos) ++i;
  return i == start ? std::string_view::npos : i;
}

// Whether the string literal `lit` (quotes included) spells `key`.
bool key_equals(std::string_view lit, std::string_view key) {
  size_t k = 0;
  for (size_t i = 1; i + 1 < lit.size(); ++i) {
    char c = lit[i];
    if (c == '\\') {
      c = lit[++i];
      if (c != '"' && c != '\\' && c != '/') return false;
    }
    if (k >= key.size() || key[k++] != c) return false;
  }
  return k == key.size();
}

}  // namespace

std::optional<std::string_view> raw_json_member(std::string_view text, std::initializer_list<std::string_view> path) {
  size_t begin = skip_ws(text, 0);
  size_t end = skip_value(text, begin);
  if (end == std::string_view::npos) return std::nullopt;
  for (std::string_view key : path) {
    if (text[begin] != '{') return std::nullopt;
    size_t i = skip_ws(text, begin + 1);
    bool found = false;
    while (i < end && text[i] == '"') {
      const size_t key_end = skip_string(text, i);
      if (key_end == std::string_view::npos) return std::nullopt;
      const bool match = key_equals(text.substr(i, key_end - i), key);
      i = skip_ws(text, key_end);
      if (i >= end || text[i] != ':') return std::nullopt;
      const size_t value = skip_ws(text, i + 1);
      const size_t value_end = skip_value(text, value);
      if (value_end == std::string_view::npos || value_end > end) return std::nullopt;
      if (match) {
        begin = value;
        end = value_end;
        found = true;
        break;
      }
      i = skip_ws(text, value_end);
      if (i < end && text[i] == ',') i = skip_ws(text, i + 1);
    }
    if (!found) return std::nullopt;
  }
  return text.substr(begin, end - begin);
}

std::optional<std::vector<std::string_view>> raw_json_elements(std::string_view text) {
  const size_t begin = skip_ws(text, 0);
  const size_t end = skip_value(text, begin);
  if (end == std::string_view::npos || text[begin] != '[') return std::nullopt;
  std::vector<std::string_view> out;
  size_t i = skip_ws(text, begin + 1);
  while (i < end && text[i] != ']') {
    const size_t value_end = skip_value(text, i);
    if (value_end == std::string_view::npos || value_end > end) return std::nullopt;
    out.push_back(text.substr(i, value_end - i));
    i = skip_ws(text, value_end);
    if (i < end && text[i] == ',') i = skip_ws(text, i + 1);
  }
  return out;
}

int json_nesting_depth(std::string_view text, bool allow_comments, int stop_above) {
  int depth = 0;
  int deepest = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '"') {
      // Skip the string; a backslash escapes the next byte (\" and \\ included).
      for (++i; i < n && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;
      }
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > stop_above) return deepest;
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    } else if (allow_comments && c == '/' && i + 1 < n) {
      if (text[i + 1] == '/') {
        while (i < n && text[i] != '\n') ++i;
      } else if (text[i + 1] == '*') {
        size_t end = text.find("*/", i + 2);
        i = end == std::string_view::npos ? n : end + 1;
      }
    }
  }
  return deepest;
}

Result<Json::Value> parse_json_text(std::string_view text, const JsonParseOptions& options) {
  const int max_depth = std::clamp(options.max_depth, 0, kMaxJsonDepth);
  if (json_nesting_depth(text, options.allow_comments, max_depth) > max_depth) {
    return Status::InvalidArgument("JSON nests arrays/objects deeper than " + std::to_string(max_depth) + " levels");
  }
  Json::Value value;
  std::string errors;
  bool ok = false;
  try {
    ok = reader_for(options).parse(text.data(), text.data() + text.size(), &value, &errors);
  } catch (const std::exception& e) {
    // jsoncpp throws (rather than fails) past its stackLimit, and std::bad_alloc may come too.
    errors = e.what();
  }
  if (!ok) {
    while (!errors.empty() && (errors.back() == '\n' || errors.back() == ' ')) errors.pop_back();
    if (errors.empty()) errors = "not valid JSON";
    return Status::InvalidArgument(std::move(errors));
  }
  return value;
}

}  // namespace ferry
