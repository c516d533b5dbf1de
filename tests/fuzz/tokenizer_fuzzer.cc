// Fuzzes the tokenizer on arbitrary bytes with two real tokenizers loaded once from the test data:
// hf-tokenizer-llama3 (byte-level BPE) and hf-tokenizer-llama2 (SentencePiece BPE with byte
// fallback). Input layout: byte 0 = flags (bit 0: which tokenizer, bit 1: add_special_tokens, bit 2:
// skip_special_tokens), the rest is used twice: as text for encode, and as little-endian u32 ids
// (taken modulo vocab_size + 8, so some ids are unknown; words 0xF....... as they are, negative) for decode and the streaming detokenizer.
//
// Invariants checked:
//   - encode succeeds exactly when the text is valid UTF-8, and yields only known ids;
//   - llama3 (lossless byte-level, no normalizer): decode(encode(text)) == text without special tokens;
//   - IncrementalDetokenizer: the concatenated deltas plus finish() equal decode(ids), and every
//     delta is valid UTF-8 (incremental_detokenizer.h's guarantees), also for the encoded ids.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/tokenizer/incremental_detokenizer.h"
#include "backend/llm/tokenizer/tokenizer.h"
#include "backend/llm/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using ferry::llm::IncrementalDetokenizer;
using ferry::llm::TokenId;
using ferry::llm::Tokenizer;

std::unique_ptr<Tokenizer> load(const char* name) {
  auto t = Tokenizer::load(ferry::fuzz::testdata_dir() + "/" + name);
  FUZZ_CHECK(t.ok(), "loading %s: %s", name, t.status().message().c_str());
  return std::move(t).value();
}

void check_streaming(const Tokenizer& tok, const std::vector<TokenId>& ids, bool skip_special) {
  const std::string expected = tok.decode(ids, skip_special);
  IncrementalDetokenizer detok(tok, skip_special);
  std::string streamed;
  for (TokenId id : ids) {
    std::string delta = detok.add(id);
    FUZZ_CHECK(ferry::llm::utf8::is_valid(delta), "a delta is not valid UTF-8");
    streamed += delta;
  }
  streamed += detok.finish();
  FUZZ_CHECK(streamed == expected, "streamed text differs from decode (%zu ids, skip_special=%d): '%s' vs '%s'",
             ids.size(), skip_special, streamed.c_str(), expected.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> llama3 = load("hf-tokenizer-llama3");
  static const std::unique_ptr<Tokenizer> llama2 = load("hf-tokenizer-llama2");
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const bool is_llama3 = (flags & 1) == 0;
  const Tokenizer& tok = is_llama3 ? *llama3 : *llama2;
  const bool add_special = flags & 2;
  const bool skip_special = flags & 4;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto ids = tok.encode(text, add_special);
  const bool valid = ferry::llm::utf8::is_valid(text);
  FUZZ_CHECK(ids.ok() == valid, "encode %s on %s UTF-8: %s", ids.ok() ? "succeeded" : "failed",
             valid ? "valid" : "invalid", ids.ok() ? "" : ids.status().message().c_str());
  if (ids.ok()) {
    for (TokenId id : *ids) FUZZ_CHECK(tok.is_valid_id(id), "encode produced unknown id %d", id);
    if (is_llama3 && !add_special) {
      std::string back = tok.decode(*ids, false);
      FUZZ_CHECK(back == text, "llama3 decode(encode(text)) != text: '%s'", back.c_str());
    }
    check_streaming(tok, *ids, skip_special);
  }

  // The same bytes as ids.
  std::vector<TokenId> random_ids;
  const uint32_t modulus = static_cast<uint32_t>(tok.vocab_size() + 8);
  for (size_t i = 0; i + 4 <= text.size(); i += 4) {
    uint32_t v;
    std::memcpy(&v, text.data() + i, 4);
    // Mostly ids near the vocabulary; words starting 0xF are taken as they are (negative, huge).
    random_ids.push_back((v >> 28) == 0xF ? static_cast<TokenId>(v) : static_cast<TokenId>(v % modulus));
  }
  check_streaming(tok, random_ids, skip_special);
  return 0;
}
