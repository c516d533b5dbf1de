// Guided (constrained) decoding for the LLM backend: the request fields that ask for an output
// format, and the per-model state that serves them.
//
//   guided_gbnf(params)   the request's parameters JSON -> the GBNF text of the format it asks for
//                         (JSON Schema properties in the order the text writes them)
//                         ("" when it asks for none). Fields, at most one per request:
//     response_format     OpenAI: {"type": "text"} (none), {"type": "json_object"},
//                         {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}
//     guided_json         vLLM: a JSON Schema (object, or a string holding one)
//     guided_regex        vLLM: a regular expression the whole output matches
//     guided_choice       vLLM: a list of strings, the output is exactly one of them
//     guided_grammar      vLLM: a grammar; ferry takes GBNF (llama.cpp's syntax)
//     structured_outputs  vLLM >= 0.10: {"json" | "regex" | "choice" | "grammar": ...} (one key)
//     grammar             llama.cpp server: GBNF
//     json_schema         llama.cpp server: a JSON Schema
//     guided_decoding_backend is accepted and ignored (ferry has one engine); every other key
//     is someone else's. A bad value is InvalidArgument naming the field.
//   GuidedDecoding        per model: compiles GBNF into grammar::Grammar through a small LRU cache
//                         (a service sends the same schema again and again) and builds the
//                         TokenVocabulary on first use (a 128k vocabulary's trie costs ~0.1 s).
//
// The matcher per sequence lives in the model runner (RunnerRequest::matcher): it fills the mask
// before sampling and ends the sequence ("stop") when the output is a complete value.
//
// Thread-safety: guided_gbnf is pure; GuidedDecoding is safe to call from any thread.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <json/json.h>

#include "backend/llm/grammar/grammar.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "common/status.h"

namespace ferry::llm {

// params_text: the text params was parsed from (where a schema's property order survives; empty:
// properties in name order).
Result<std::string> guided_gbnf(const Json::Value& params, std::string_view params_text = {});

class GuidedDecoding {
 public:
  // vocab_size: the model's (logits) vocabulary, which may exceed the tokenizer's; ids without
  // bytes are never allowed. end_ids: the ids that end generation (allowed where the grammar can
  // end).
  GuidedDecoding(const Tokenizer& tokenizer, int32_t vocab_size, std::vector<int32_t> end_ids,
                 size_t cache_capacity = 64);

  // The compiled grammar of gbnf (cached). InvalidArgument from the compiler.
  Result<std::shared_ptr<const grammar::Grammar>> compile(const std::string& gbnf);
  std::shared_ptr<const grammar::TokenVocabulary> vocabulary();

  // A matcher for one sequence.
  std::unique_ptr<grammar::Matcher> matcher(std::shared_ptr<const grammar::Grammar> g);

 private:
  const Tokenizer& tokenizer_;
  const int32_t vocab_size_;
  const std::vector<int32_t> end_ids_;
  const size_t capacity_;

  std::mutex mu_;
  std::shared_ptr<const grammar::TokenVocabulary> vocab_;  // GUARDED_BY(mu_), built once
  // LRU: most recent first.
  using Entry = std::pair<std::string, std::shared_ptr<const grammar::Grammar>>;
  std::list<Entry> lru_;                                                   // GUARDED_BY(mu_)
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // GUARDED_BY(mu_)
};

}  // namespace ferry::llm
