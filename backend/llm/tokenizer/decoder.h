// The decoder stage of a HuggingFace tokenizer.json pipeline ("decoder" key): how token texts
// become output text. Supported: Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip,
// Metaspace, and no decoder (tokens joined by " ", as HF does).
//
// Model used here, designed so that streaming and whole decoding agree byte for byte:
//   1. each token's text goes through the per-token steps (Replace, Strip, Metaspace, ByteFallback
//      "<0xNN>" -> that byte, ByteLevel alphabet -> bytes) and appends bytes;
//   2. all bytes are turned into text with utf8::append_lossy (well-formed characters kept, each
//      maximal invalid subpart -> U+FFFD, as Rust's from_utf8_lossy);
//   3. a Strip that comes after a Fuse/ByteLevel removes up to `start` leading characters of the
//      whole text.
// Differences from HF, only for unusual input: ByteFallback runs that are not valid UTF-8 give one
// U+FFFD per maximal invalid subpart (HF gives one per byte of the run); a Replace after Fuse is
// applied per token (a pattern spanning two tokens is not replaced). A Strip with stop > 0 after
// Fuse is refused at load.
//
// Immutable after construction; all methods are const and safe to call concurrently.
#pragma once

#include <json/json.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/tokenizer/regex.h"
#include "common/status.h"

namespace ferry::llm {

class Decoder {
 public:
  // Builds from the JSON value at `path` (e.g. "decoder"); null means "join with spaces".
  static Result<Decoder> from_json(const Json::Value& value, const std::string& path);

  // Appends the bytes that `token` contributes when it is the index-th token decoded (0-based,
  // counting only tokens that are decoded, i.e. after skipping special tokens).
  void append_token(std::string_view token, size_t index, std::string& bytes) const;

  // Text-level stripping of the start of the whole output (step 3 above).
  const std::string& strip_char() const { return strip_char_; }
  size_t strip_start() const { return strip_start_; }

  // Whole decode of already-collected bytes: steps 2 and 3.
  std::string finish(std::string_view bytes) const;

 private:
  struct Step {
    enum class Kind { kReplace, kStrip, kMetaspace, kByteFallback, kByteLevel } kind;
    std::string literal;  // kReplace pattern, kStrip / kMetaspace character
    std::shared_ptr<const Regex> regex;
    std::string content;                // kReplace
    size_t start = 0, stop = 0;         // kStrip
    bool metaspace_strip_first = true;  // kMetaspace: drop replacement chars of the first token
  };

  Status add_steps(const Json::Value& value, const std::string& path, bool* fused);

  std::vector<Step> steps_;
  bool join_with_space_ = false;
  std::string strip_char_;
  size_t strip_start_ = 0;
};

}  // namespace ferry::llm
