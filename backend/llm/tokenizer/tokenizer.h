// ferry's tokenizer for HuggingFace models: loads tokenizer.json (plus tokenizer_config.json and
// generation_config.json when present) from a model folder and encodes/decodes text the way the
// HF `tokenizers` library does.
//
// Supported: model BPE (byte-level as GPT-2 / Llama 3 / Qwen2, and SentencePiece-style with
// byte_fallback / fuse_unk / unk as Llama 2 / Mistral; ignore_merges); the normalizers,
// pre-tokenizers and decoders listed in normalizer.h, pre_tokenizer.h and decoder.h; added and
// special tokens; post-processors TemplateProcessing (single sequence), RobertaProcessing,
// BertProcessing, ByteLevel and Sequence. Anything else is refused at load with a Status naming the
// key, e.g. "tokenizer.json: model.type 'Unigram' is not supported". A folder with only
// vocab.json + merges.txt (GPT-2 / Qwen2 style) is loaded with the pipeline its tokenizer_class
// implies (GPT2Tokenizer, Qwen2Tokenizer).
//
// BOS/EOS: encode(text, true) adds what the post-processor adds, except that explicit
// add_bos_token / add_eos_token booleans in tokenizer_config.json replace it with
// [bos] text [eos] (what transformers' Llama tokenizers do).
//
// Ownership and threading: a Tokenizer is immutable after load(); encode, decode and every accessor
// are const and safe to call concurrently from any number of threads. Per-sequence streaming state
// lives in IncrementalDetokenizer (incremental_detokenizer.h), not here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/llm/tokenizer/added_vocabulary.h"
#include "backend/llm/tokenizer/bpe_model.h"
#include "backend/llm/tokenizer/decoder.h"
#include "backend/llm/tokenizer/normalizer.h"
#include "backend/llm/tokenizer/pre_tokenizer.h"
#include "common/status.h"

namespace ferry::llm {

class Tokenizer {
 public:
  // Loads a HF model folder. Needs tokenizer.json, or vocab.json + merges.txt with a
  // tokenizer_config.json naming a supported tokenizer_class. NotFound when neither exists,
  // InvalidArgument / Unimplemented (naming the file and key) when a file is broken or unsupported.
  static Result<std::unique_ptr<Tokenizer>> load(const std::filesystem::path& model_dir);

  // Builds from file contents (tokenizer_config_json / generation_config_json may be empty).
  static Result<std::unique_ptr<Tokenizer>> from_json(std::string_view tokenizer_json,
                                                      std::string_view tokenizer_config_json = {},
                                                      std::string_view generation_config_json = {});

  // Text -> ids. add_special_tokens applies the post-processor (BOS/EOS, see above).
  // InvalidArgument when text is not valid UTF-8.
  // max_tokens: the caller cannot use more ids than this (a prompt and its context window). Encoding
  // stops as soon as more are produced (checked per pre-tokenized word), so a huge text costs about
  // what max_tokens ids of it cost; the result then holds more than max_tokens ids, a prefix of the
  // full encoding (without the post-processor's suffix), and only its being too long is meaningful.
  // A pipeline without a pre-tokenizer split (SentencePiece-style) has one word per run of text
  // between added tokens: bound such texts' bytes before calling (parse_llm_request does).
  Result<std::vector<TokenId>> encode(std::string_view text, bool add_special_tokens,
                                      size_t max_tokens = SIZE_MAX) const;

  // Ids -> text, as HF's Tokenizer.decode (no clean_up_tokenization_spaces). Ids that are not in
  // the vocabulary are skipped, as HF does; validate with is_valid_id() first where that matters.
  std::string decode(std::span<const TokenId> ids, bool skip_special_tokens) const;

  // Vocabulary.
  size_t vocab_size() const { return vocab_size_; }  // one past the largest id
  bool is_valid_id(TokenId id) const { return id_to_token(id) != nullptr; }
  std::optional<TokenId> token_to_id(std::string_view token) const;
  // The token's text (added-token content or model piece); nullptr for an unknown id.
  const std::string* id_to_token(TokenId id) const;
  // True for added tokens marked special (skipped by skip_special_tokens).
  bool is_special(TokenId id) const;
  // For every id in [0, vocab_size()): the bytes it adds to a decoded text when it is not the first
  // token (the decoder's per-token steps: byte fallback, byte-level alphabet, Metaspace; a token's
  // bytes need not be valid UTF-8 on their own). Empty for special tokens and unknown ids: what
  // constrained decoding (grammar::TokenVocabulary) matches generated text against.
  std::vector<std::string> token_bytes_table() const;
  const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }

  // From tokenizer_config.json (and generation_config.json); empty / nullopt when absent.
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  const std::string& pad_token() const { return pad_token_; }
  const std::string& unk_token() const { return unk_token_; }
  std::optional<TokenId> bos_token_id() const { return bos_id_; }
  std::optional<TokenId> eos_token_id() const { return eos_id_; }
  std::optional<TokenId> pad_token_id() const { return pad_id_; }
  // Whether encode(text, true) puts BOS first / EOS last.
  bool adds_bos() const { return adds_bos_; }
  bool adds_eos() const { return adds_eos_; }
  // generation_config.json's eos_token_id (an int or a list), in file order.
  const std::vector<TokenId>& generation_eos_token_ids() const { return generation_eos_ids_; }
  // Every id that ends generation: eos_token_id() plus generation_eos_token_ids(), no repeats.
  std::vector<TokenId> stop_token_ids() const;
  // The default chat template (Jinja source; empty when there is none) and any named ones.
  const std::string& chat_template() const { return chat_template_; }
  const std::map<std::string, std::string>& named_chat_templates() const { return named_chat_templates_; }
  bool clean_up_tokenization_spaces() const { return clean_up_tokenization_spaces_; }

 private:
  friend class IncrementalDetokenizer;
  friend class TokenizerLoader;
  Tokenizer() = default;

  // Appends the decoder bytes of id as the index-th decoded token; false when it is not decoded
  // (unknown id, or special and skipped).
  bool append_token_bytes(TokenId id, bool skip_special_tokens, size_t index, std::string& bytes) const;
  // Appends the ids of one run of text without added tokens; stops once out holds more than
  // max_tokens ids.
  void encode_text(std::string_view text, bool at_input_start, size_t max_tokens, std::vector<TokenId>& out) const;

  BpeModel model_;
  AddedVocabulary added_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  std::vector<TokenId> prefix_ids_;  // added by encode(.., true) before the text
  std::vector<TokenId> suffix_ids_;  // and after it
  size_t vocab_size_ = 0;

  std::string bos_token_, eos_token_, pad_token_, unk_token_;
  std::optional<TokenId> bos_id_, eos_id_, pad_id_;
  bool adds_bos_ = false, adds_eos_ = false;
  std::vector<TokenId> generation_eos_ids_;
  std::string chat_template_;
  std::map<std::string, std::string> named_chat_templates_;
  bool clean_up_tokenization_spaces_ = false;
};

}  // namespace ferry::llm
