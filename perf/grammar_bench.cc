// grammar_bench: the cost of constrained decoding per token and sequence: Matcher::fill_mask (and
// accept_token) along a real generation path, on the Llama-3 vocabulary (128,256 ids).
//
//   build-dir/perf/grammar_bench [--benchmark_filter=...] [--benchmark_repetitions=...]
//
// The vocabulary: hf-tokenizer-llama3/tokenizer.json from FERRY_TESTDATA (default
// ../shared/testdata): each byte-level BPE piece decoded to its bytes here through the GPT-2
// byte-to-unicode table; added/special tokens have no bytes; <|end_of_text|> and <|eot_id|> end.
// Without the file the benchmark says so and stops (no synthetic stand-in).
//
// The path: a valid document for each schema is tokenized along the masks themselves (at every
// step the longest allowed token that is a prefix of the rest of the document), then the end id;
// every step's fill_mask is timed. Three schemas of increasing size: small (2 properties), medium
// (a person: 10 properties, nested object, array, enum, date), large (an order: $defs, arrays of
// objects, uuid / email / date-time formats, 25 properties).
//
// BM_FillMask/<schema>/<cache>: cache 0 = cold (a freshly compiled Grammar per iteration, so its
// mask cache starts empty: the first sequence of a new schema), 1 = warm (the same Grammar across
// iterations: another sequence with a schema seen before). Iteration time = the sum of fill_mask
// over the path (wall clock). Counters: steps; median_us / p99_us / max_us = per-step fill_mask
// times of the last iteration in THREAD CPU time (CLOCK_THREAD_CPUTIME_ID), so that other
// processes on a shared, loaded machine do not inflate them; accept_us = mean accept_token time
// (CPU). The wall-clock iteration time is reported beside them.
// BM_BuildVocabulary: TokenVocabulary::build over the 128k pieces (once per model).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "common/json_parse.h"

namespace {

using ferry::llm::grammar::Matcher;
using ferry::llm::grammar::TokenVocabulary;
namespace grammar = ferry::llm::grammar;

struct Vocab {
  std::vector<std::string> pieces;
  std::vector<int32_t> end_ids;
  std::unordered_map<std::string, int32_t> by_bytes;
  std::shared_ptr<const TokenVocabulary> vocab;
};

std::string testdata_dir() {
  const char* v = std::getenv("FERRY_TESTDATA");
  return (v != nullptr && v[0] != '\0') ? v : FERRY_BENCH_TESTDATA;
}

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the other 68 are shifted to
// U+0100 onwards in byte order. Returns code point -> byte.
std::unordered_map<uint32_t, uint8_t> unicode_to_byte() {
  std::unordered_map<uint32_t, uint8_t> out;
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[printable ? b : next++] = static_cast<uint8_t>(b);
  }
  return out;
}

const Vocab* load_vocab() {
  static const Vocab* vocab = [] () -> const Vocab* {
    const std::string path = testdata_dir() + "/hf-tokenizer-llama3/tokenizer.json";
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return nullptr;
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
    auto json = ferry::parse_json_text(text, ferry::kJsonFileOptions);
    if (!json.ok()) return nullptr;
    const auto table = unicode_to_byte();
    auto* v = new Vocab();
    const Json::Value& model_vocab = json.value()["model"]["vocab"];
    size_t size = model_vocab.size();
    for (const Json::Value& a : json.value()["added_tokens"]) size = std::max<size_t>(size, a["id"].asUInt() + 1);
    v->pieces.assign(size, "");
    for (const std::string& piece : model_vocab.getMemberNames()) {
      std::string bytes;
      size_t pos = 0;
      // Decode the piece's UTF-8 into code points, each one byte of the token.
      while (pos < piece.size()) {
        uint32_t cp = static_cast<uint8_t>(piece[pos]);
        int len = cp < 0x80 ? 1 : cp < 0xE0 ? 2 : cp < 0xF0 ? 3 : 4;
        if (len > 1) cp &= (1u << (7 - len)) - 1;
        for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(piece[pos + static_cast<size_t>(k)]) & 0x3F);
        pos += static_cast<size_t>(len);
        bytes.push_back(static_cast<char>(table.at(cp)));
      }
      const auto id = static_cast<int32_t>(model_vocab[piece].asInt());
      v->pieces[static_cast<size_t>(id)] = bytes;
      v->by_bytes.emplace(bytes, id);
    }
    for (const Json::Value& a : json.value()["added_tokens"]) {
      const std::string c = a["content"].asString();
      if (c == "<|end_of_text|>" || c == "<|eot_id|>") v->end_ids.push_back(a["id"].asInt());
    }
    v->vocab = TokenVocabulary::build(v->pieces, v->end_ids);
    return v;
  }();
  return vocab;
}

struct Case {
  const char* name;
  const char* schema;
  const char* document;
};

const Case kCases[] = {
    {"small",
     R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]})",
     R"({"name": "Ada Lovelace", "age": 36})"},
    {"medium",
     R"({"type": "object", "properties": {
         "first_name": {"type": "string"}, "last_name": {"type": "string"},
         "birth_date": {"type": "string", "format": "date"},
         "email": {"type": "string", "format": "email"},
         "role": {"enum": ["engineer", "manager", "designer", "analyst"]},
         "active": {"type": "boolean"}, "score": {"type": "number"},
         "skills": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
         "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                     "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["street", "city", "zip"]},
         "notes": {"type": "string", "maxLength": 200}},
       "required": ["first_name", "last_name", "birth_date", "email", "role", "active", "skills", "address"]})",
     R"({"first_name": "Grace", "last_name": "Hopper", "birth_date": "1906-12-09", "email": "grace.hopper@navy.mil", "role": "engineer", "active": true, "score": 98.5, "skills": ["COBOL", "compilers", "teaching"], "address": {"street": "12 Main Street", "city": "Arlington", "zip": "22201"}, "notes": "Pioneer of machine-independent programming languages."})"},
    {"large",
     R"({"$defs": {
         "money": {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}, "currency": {"enum": ["USD", "EUR", "GBP"]}}, "required": ["amount", "currency"]},
         "address": {"type": "object", "properties": {"name": {"type": "string"}, "line1": {"type": "string"}, "line2": {"type": "string"}, "city": {"type": "string"}, "country": {"type": "string", "minLength": 2, "maxLength": 2}}, "required": ["name", "line1", "city", "country"]},
         "item": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}, "title": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1, "maximum": 100}, "price": {"$ref": "#/$defs/money"}, "gift": {"type": "boolean"}}, "required": ["sku", "title", "quantity", "price"]}},
       "type": "object", "properties": {
         "order_id": {"type": "string", "format": "uuid"}, "created_at": {"type": "string", "format": "date-time"},
         "customer": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}, "email": {"type": "string", "format": "email"}, "vip": {"type": "boolean"}}, "required": ["id", "email"]},
         "status": {"enum": ["pending", "paid", "shipped", "delivered", "cancelled"]},
         "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 20},
         "shipping": {"$ref": "#/$defs/address"}, "billing": {"$ref": "#/$defs/address"},
         "total": {"$ref": "#/$defs/money"}, "coupon": {"type": ["string", "null"]},
         "tags": {"type": "array", "items": {"type": "string"}}, "comment": {"type": "string"}},
       "required": ["order_id", "created_at", "customer", "status", "items", "shipping", "total"]})",
     R"({"order_id": "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d", "created_at": "2024-05-17T14:32:08Z", "customer": {"id": 48213, "email": "jane.doe@example.com", "vip": false}, "status": "paid", "items": [{"sku": "ABC-1234", "title": "Wireless mouse", "quantity": 2, "price": {"amount": 24.99, "currency": "USD"}}, {"sku": "KEY-0042", "title": "Mechanical keyboard with brown switches", "quantity": 1, "price": {"amount": 89.5, "currency": "USD"}, "gift": true}], "shipping": {"name": "Jane Doe", "line1": "221B Baker Street", "city": "London", "country": "GB"}, "billing": {"name": "Jane Doe", "line1": "221B Baker Street", "line2": "Flat 2", "city": "London", "country": "GB"}, "total": {"amount": 139.48, "currency": "USD"}, "coupon": null, "tags": ["electronics", "priority"], "comment": "Please leave the parcel with the concierge if nobody answers."})"},
};

std::shared_ptr<const grammar::Grammar> compile_case(const Case& c) {
  auto gbnf = grammar::json_schema_text_to_gbnf(c.schema);
  if (!gbnf.ok()) {
    std::fprintf(stderr, "%s: %s\n", c.name, gbnf.status().message().c_str());
    std::abort();
  }
  auto g = grammar::compile_gbnf(gbnf.value());
  if (!g.ok()) {
    std::fprintf(stderr, "%s: %s\n", c.name, g.status().message().c_str());
    std::abort();
  }
  return g.value();
}

// Generates c.document along the masks; returns per-step fill_mask times (seconds) and the total
// accept_token time.
double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Generates c.document along the masks. Returns per-step fill_mask CPU times (s); *wall_s = their
// wall-clock sum, *accept_s = the accept_token CPU time.
std::vector<double> run_path(const Vocab& v, const Case& c, std::shared_ptr<const grammar::Grammar> g,
                             std::vector<uint32_t>& mask, double* accept_s, double* wall_s = nullptr) {
  using Clock = std::chrono::steady_clock;
  double wall = 0;
  Matcher m(std::move(g), v.vocab);
  std::vector<double> times;
  const std::string doc = c.document;
  size_t pos = 0;
  *accept_s = 0;
  for (;;) {
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_s();
    m.fill_mask(mask);
    times.push_back(thread_cpu_s() - c0);
    wall += std::chrono::duration<double>(Clock::now() - t0).count();
    int32_t id = -1;
    if (pos == doc.size()) {
      id = v.end_ids[0];
    } else {
      for (size_t len = std::min<size_t>(doc.size() - pos, 48); len > 0 && id < 0; --len) {
        auto it = v.by_bytes.find(doc.substr(pos, len));
        if (it != v.by_bytes.end() && ((mask[static_cast<size_t>(it->second) >> 5] >> (it->second & 31)) & 1)) id = it->second;
      }
    }
    if (id < 0 || !((mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1)) {
      std::fprintf(stderr, "%s: no allowed token continues the document at byte %zu\n", c.name, pos);
      std::abort();
    }
    const double c1 = thread_cpu_s();
    const bool ok = m.accept_token(id);
    *accept_s += thread_cpu_s() - c1;
    if (!ok) std::abort();
    if (id == v.end_ids[0]) break;
    pos += v.pieces[static_cast<size_t>(id)].size();
  }
  if (wall_s != nullptr) *wall_s = wall;
  return times;
}

void BM_FillMask(benchmark::State& state) {
  const Vocab* v = load_vocab();
  if (v == nullptr) {
    state.SkipWithError("no hf-tokenizer-llama3/tokenizer.json under FERRY_TESTDATA");
    return;
  }
  const Case& c = kCases[state.range(0)];
  const bool warm = state.range(1) == 1;
  std::vector<uint32_t> mask(grammar::bitmask_words(v->vocab->size()));
  auto shared = compile_case(c);
  if (warm) {
    double unused;
    run_path(*v, c, shared, mask, &unused);  // fills the cache
  }
  std::vector<double> times;
  double accept_s = 0;
  for (auto _ : state) {
    auto g = warm ? shared : compile_case(c);
    double wall = 0;
    times = run_path(*v, c, g, mask, &accept_s, &wall);
    state.SetIterationTime(wall);
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  state.counters["steps"] = static_cast<double>(sorted.size());
  state.counters["median_us"] = sorted[sorted.size() / 2] * 1e6;
  state.counters["p99_us"] = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)] * 1e6;
  state.counters["max_us"] = sorted.back() * 1e6;
  double cpu_total = 0;
  for (double t : sorted) cpu_total += t;
  state.counters["mean_us"] = cpu_total / static_cast<double>(sorted.size()) * 1e6;
  state.counters["accept_us"] = accept_s / static_cast<double>(sorted.size()) * 1e6;
  state.SetLabel(std::string(c.name) + (warm ? " warm" : " cold"));
}
BENCHMARK(BM_FillMask)->ArgsProduct({{0, 1, 2}, {0, 1}})->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_BuildVocabulary(benchmark::State& state) {
  const Vocab* v = load_vocab();
  if (v == nullptr) {
    state.SkipWithError("no hf-tokenizer-llama3/tokenizer.json under FERRY_TESTDATA");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(TokenVocabulary::build(v->pieces, v->end_ids));
}
BENCHMARK(BM_BuildVocabulary)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
