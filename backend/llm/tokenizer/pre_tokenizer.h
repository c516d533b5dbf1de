// The pre-tokenizer stage of a HuggingFace tokenizer.json pipeline ("pre_tokenizer" key): splits
// each normalized piece of text into the words that the BPE model encodes independently.
// Supported types: Sequence, Split (String or Regex pattern, every behavior, invert), ByteLevel
// (add_prefix_space, use_regex with the GPT-2 pattern; maps bytes to the byte-level alphabet),
// Metaspace (replacement, prepend_scheme always/first/never or legacy add_prefix_space, split),
// Digits, Whitespace, WhitespaceSplit, Punctuation. Others are refused with a Status naming them.
//
// Immutable after construction; run() is const and safe to call concurrently.
#pragma once

#include <json/json.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/llm/tokenizer/regex.h"
#include "common/status.h"

namespace ferry::llm {

// One piece of text on its way to the model. at_input_start is true only for the piece that begins
// at byte 0 of the caller's original text (Metaspace's prepend_scheme "first" needs it).
struct Piece {
  std::string text;
  bool at_input_start = false;
};

class PreTokenizer {
 public:
  // Builds from the JSON value at `path` (e.g. "pre_tokenizer"); null gives a pass-through.
  static Result<PreTokenizer> from_json(const Json::Value& value, const std::string& path);

  // Splits/rewrites `pieces` in place. Empty pieces are dropped (as HF does).
  void run(std::vector<Piece>& pieces) const;
  bool empty() const { return steps_.empty(); }

  // How a Split keeps its delimiters (HF's SplitDelimiterBehavior).
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel, kMetaspace } kind = Kind::kSplit;
    // kSplit (and kByteLevel with use_regex): the pattern, how matches are kept, invert flag.
    std::string literal;
    std::shared_ptr<const Regex> regex;
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    // kByteLevel
    bool add_prefix_space = false;
    // kMetaspace
    std::string replacement;
    enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
    bool split = true;
  };

  static Status add_steps(const Json::Value& value, const std::string& path, std::vector<Step>& steps);
  static void split_piece(const Step& step, Piece&& piece, std::vector<Piece>& out);

  std::vector<Step> steps_;
};

}  // namespace ferry::llm
