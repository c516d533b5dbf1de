// The one JSON parse that every ferry entry point uses (HTTP bodies, ZeroMQ messages, backend
// parameters, config files, model files): jsoncpp, behind a cheap non-recursive pre-scan that
// refuses text nesting arrays/objects deeper than kMaxJsonDepth before jsoncpp's recursive reader
// (and, later, Json::Value's recursive copy, write and destructor) can run out of stack.
//
// Why a pre-scan and not jsoncpp's own "stackLimit": jsoncpp 1.9 counts its node stack, not
// brackets, and throws (not fails) past the limit; its default of 1000 is far deeper than the
// 100 KiB stack of a civetweb worker allows (measured: ~380 bytes per nested array and ~600 per
// nested object in jsoncpp 1.9.5 -O2, so 100 KiB overflows near 270 arrays / 170 objects).
//
// Thread-safety: every function may be called from any thread (readers are per thread).
#pragma once

#include <json/json.h>

#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry {

// The deepest nesting of arrays and objects accepted anywhere (a scalar at the top is depth 0,
// [] and {} are depth 1). 64 levels of objects take ~38 KiB of jsoncpp frames, leaving most of a
// 100 KiB civetweb worker stack to the server's own frames; real requests and model files nest
// under 20 (JSON schemas in OpenAI tools included). serde_json's default is 128, Python's ~1000.
inline constexpr int kMaxJsonDepth = 64;

struct JsonParseOptions {
  bool fail_if_extra = true;     // text after the value is an error
  bool reject_dup_keys = true;   // {"a":1,"a":2} is an error
  bool allow_comments = true;    // // and /* */ comments are skipped (jsoncpp's default, which
                                 // every ferry reader has always had)
  int max_depth = kMaxJsonDepth; // deeper nesting is an error (never more than kMaxJsonDepth)
};

// The JSON options ferry uses for files other programs wrote (HF config.json, tokenizer.json,
// safetensors headers): jsoncpp's defaults (comments allowed, duplicate keys keep the last),
// still depth-limited.
inline constexpr JsonParseOptions kJsonFileOptions{false, false, true, kMaxJsonDepth};

// The deepest nesting of arrays and objects in `text`, counting brackets outside strings (and
// outside comments when `allow_comments`), without recursion: O(size), no allocation. Stops and
// returns a value > `stop_above` as soon as the depth passes it. Malformed text gets a number too
// (the parser reports what is wrong with it).
int json_nesting_depth(std::string_view text, bool allow_comments, int stop_above);

// Parses `text` as one JSON value. InvalidArgument with jsoncpp's message when it is malformed,
// or "nests deeper than N levels" when over options.max_depth (checked before parsing). The
// message has no prefix: callers add what they parsed. Never throws.
Result<Json::Value> parse_json_text(std::string_view text, const JsonParseOptions& options = {});

// The text of the value at `path` (a chain of object keys) in the JSON text `text`, exactly as
// written: for the places where the order of an object's keys matters (a JSON Schema's
// properties) and jsoncpp's Json::Value, which sorts keys, would lose it. nullopt when a key is
// absent, a step is not an object, or the text is not plain JSON (comments, malformed). Keys are
// compared after decoding simple escapes (\" \\ \/); a key with \u escapes never matches. The
// first of duplicate keys wins. No recursion, no allocation: O(size of text).
std::optional<std::string_view> raw_json_member(std::string_view text, std::initializer_list<std::string_view> path);
// The texts of the elements of the JSON array `text`, exactly as written; nullopt when it is not a
// plain JSON array (the same rules as raw_json_member).
std::optional<std::vector<std::string_view>> raw_json_elements(std::string_view text);

}  // namespace ferry
