#include "perf/bench/workload.h"

#include <json/json.h>

#include <array>
#include <cmath>
#include <fstream>
#include <memory>
#include <random>

#include "backend/llm/tokenizer/tokenizer.h"

namespace ferry::bench {
namespace {

// Short, frequent English words: most HF tokenizers with a vocabulary of 32k or more encode each
// one, with its leading space, as a single token, so N words make about N tokens.
constexpr std::array<const char*, 96> kWords = {
    "the",   "of",    "and",   "to",    "in",    "is",    "you",   "that",  "it",    "he",    "was",   "for",
    "on",    "are",   "as",    "with",  "his",   "they",  "at",    "be",    "this",  "have",  "from",  "or",
    "one",   "had",   "by",    "word",  "but",   "not",   "what",  "all",   "were",  "we",    "when",  "your",
    "can",   "said",  "there", "use",   "an",    "each",  "which", "she",   "do",    "how",   "their", "if",
    "will",  "up",    "other", "about", "out",   "many",  "then",  "them",  "these", "so",    "some",  "her",
    "would", "make",  "like",  "him",   "into",  "time",  "has",   "look",  "two",   "more",  "write", "go",
    "see",   "number", "no",   "way",   "could", "people", "my",   "than",  "first", "water", "been",  "call",
    "who",   "oil",   "its",   "now",   "find",  "long",  "down",  "day",   "did",   "get",   "come",  "made",
};

using Rng = std::mt19937_64;

// Uniform in [len*(1-r), len*(1+r)], at least 1 (vLLM's random dataset, range ratio r).
int draw_length(Rng& rng, int len, double r) {
  if (r <= 0) return len;
  int lo = std::max(1, static_cast<int>(std::floor(len * (1.0 - r))));
  int hi = std::max(lo, static_cast<int>(std::ceil(len * (1.0 + r))));
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

std::string random_words(Rng& rng, int num_words) {
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::string text;
  for (int i = 0; i < num_words; ++i) {
    if (i > 0) text += ' ';
    text += kWords[pick(rng)];
  }
  return text;
}

// Words until the tokenizer counts at least num_tokens, then the ids cut to num_tokens and decoded.
// Re-encoding the decoded text can differ by a token or so at the cut; the server's usage counts.
Result<std::string> exact_prompt(const llm::Tokenizer& tok, Rng& rng, int num_tokens) {
  std::string text = random_words(rng, num_tokens);
  for (;;) {
    auto ids = tok.encode(text, false);
    if (!ids.ok()) return ids.status();
    if (static_cast<int>(ids->size()) >= num_tokens) {
      ids->resize(num_tokens);
      return tok.decode(*ids, true);
    }
    text += ' ';
    text += random_words(rng, num_tokens - static_cast<int>(ids->size()));
  }
}

Result<std::vector<BenchRequest>> random_workload(const BenchOptions& o, Rng& rng) {
  std::unique_ptr<llm::Tokenizer> tok;
  if (!o.tokenizer_dir.empty()) {
    auto loaded = llm::Tokenizer::load(o.tokenizer_dir);
    if (!loaded.ok()) return Status::InvalidArgument("--tokenizer " + o.tokenizer_dir + ": " + loaded.status().message());
    tok = std::move(loaded).value();
  }
  auto make_text = [&](int num_tokens) -> Result<std::string> {
    if (num_tokens == 0) return std::string();
    if (tok) return exact_prompt(*tok, rng, num_tokens);
    return random_words(rng, num_tokens);
  };
  auto prefix = make_text(o.prefix_len_tokens);
  if (!prefix.ok()) return prefix.status();
  std::vector<BenchRequest> requests;
  requests.reserve(o.num_prompts);
  for (uint64_t i = 0; i < o.num_prompts; ++i) {
    BenchRequest r;
    int input_len = draw_length(rng, o.input_len_tokens, o.range_ratio);
    r.output_len_tokens = draw_length(rng, o.output_len_tokens, o.range_ratio);
    auto body = make_text(input_len);
    if (!body.ok()) return body.status();
    r.prompt = prefix->empty() ? std::move(body).value() : *prefix + " " + *body;
    r.expected_input_tokens = o.prefix_len_tokens + input_len;
    requests.push_back(std::move(r));
  }
  return requests;
}

Result<std::vector<BenchRequest>> file_workload(const BenchOptions& o, Rng& rng) {
  std::ifstream in(o.prompts_file);
  if (!in) return Status::NotFound("--prompts-file " + o.prompts_file + ": cannot open");
  std::vector<BenchRequest> lines;
  std::string line;
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    BenchRequest r;
    r.output_len_tokens = draw_length(rng, o.output_len_tokens, o.range_ratio);
    Json::Value v;
    std::string err;
    bool is_json = (line[0] == '{' || line[0] == '"') &&
                   reader->parse(line.data(), line.data() + line.size(), &v, &err);
    if (is_json && v.isString()) {
      r.prompt = v.asString();
    } else if (is_json && v.isObject()) {
      const Json::Value& p = v.isMember("prompt") ? v["prompt"] : v["text"];
      if (!p.isString()) {
        return Status::InvalidArgument(o.prompts_file + ":" + std::to_string(line_no) +
                                       ": an object needs a string \"prompt\" (or \"text\")");
      }
      r.prompt = p.asString();
      const Json::Value& n = v.isMember("output_len") ? v["output_len"] : v["max_tokens"];
      if (n.isIntegral() && n.asInt() > 0) r.output_len_tokens = n.asInt();
    } else {
      r.prompt = line;
    }
    // Unknown until the server's usage tells; words are the estimate.
    r.expected_input_tokens = 1;
    for (char c : r.prompt) r.expected_input_tokens += c == ' ' ? 1 : 0;
    lines.push_back(std::move(r));
  }
  if (lines.empty()) return Status::InvalidArgument("--prompts-file " + o.prompts_file + ": no prompts");
  std::vector<BenchRequest> requests;
  requests.reserve(o.num_prompts);
  for (uint64_t i = 0; i < o.num_prompts; ++i) requests.push_back(lines[i % lines.size()]);
  return requests;
}

}  // namespace

Result<std::vector<BenchRequest>> build_workload(const BenchOptions& o) {
  Rng rng(o.seed);
  return o.prompts_file.empty() ? random_workload(o, rng) : file_workload(o, rng);
}

std::vector<double> arrival_offsets_s(uint64_t num_requests, double rate, uint64_t seed) {
  std::vector<double> offsets(num_requests, 0.0);
  if (rate <= 0) return offsets;
  Rng rng(seed ^ 0x9e3779b97f4a7c15ULL);  // its own stream: the workload's draws do not shift it
  std::exponential_distribution<double> gap(rate);
  double t = 0;
  for (uint64_t i = 0; i < num_requests; ++i) {
    if (i > 0) t += gap(rng);  // the first request goes at once
    offsets[i] = t;
  }
  return offsets;
}

}  // namespace ferry::bench
