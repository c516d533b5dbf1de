// The normalizer stage of a HuggingFace tokenizer.json pipeline ("normalizer" key): the text
// rewrites applied to each piece of input before pre-tokenization. Supported types: Sequence,
// NFC, NFD, NFKC, NFKD (via ICU), Prepend, Append, Replace (String or Regex pattern), Lowercase,
// Strip. Others (e.g. BertNormalizer, Precompiled) are refused at load with a Status naming them.
//
// Offsets are not tracked (ferry never needs offsets back into the original text).
// Immutable after construction; normalize() is const and safe to call concurrently.
#pragma once

#include <json/json.h>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "backend/llm/tokenizer/regex.h"
#include "common/status.h"

namespace ferry::llm {

class Normalizer {
 public:
  // Builds from the JSON value at `path` (e.g. "normalizer"); null gives an empty normalizer.
  static Result<Normalizer> from_json(const Json::Value& value, const std::string& path);

  // Rewrites s in place (s must be valid UTF-8; stays valid UTF-8).
  void normalize(std::string& s) const;
  bool empty() const { return steps_.empty(); }

 private:
  enum class Form { kNfc, kNfd, kNfkc, kNfkd };
  struct Unicode {
    Form form;
  };
  struct Prepend {
    std::string text;
  };
  struct Append {
    std::string text;
  };
  struct Replace {
    std::string literal;  // used when !regex
    std::shared_ptr<const Regex> regex;
    std::string content;
  };
  struct Lowercase {};
  struct Strip {
    bool left = true;
    bool right = true;
  };
  using Step = std::variant<Unicode, Prepend, Append, Replace, Lowercase, Strip>;

  static Status add_steps(const Json::Value& value, const std::string& path, std::vector<Step>& steps);

  std::vector<Step> steps_;
};

// Shared by the normalizer, pre-tokenizer and decoder parsers: reads a HF "pattern" object
// ({"String": s} or {"Regex": r}). Exactly one of *literal / *regex is set on success.
Status parse_pattern(const Json::Value& value, const std::string& path, std::string* literal,
                     std::shared_ptr<const Regex>* regex);

// Replaces every occurrence of a literal (non-empty) or every regex match in s with content.
void replace_all(std::string& s, const std::string& literal, const Regex* regex, const std::string& content);

}  // namespace ferry::llm
