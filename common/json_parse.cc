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

}  // namespace

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
