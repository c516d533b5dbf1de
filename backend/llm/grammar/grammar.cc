// Skeleton of the grammar engine (grammar.h): every entry point answers Unimplemented until the
// compiler and matcher land.
#include "backend/llm/grammar/grammar.h"

namespace ferry::llm::grammar {

class Grammar {};

Result<std::string> json_schema_to_gbnf(const Json::Value&) {
  return Status::Unimplemented("json_schema_to_gbnf: not implemented yet");
}
std::string json_object_gbnf() { return "root ::= \"{}\"\n"; }
Result<std::string> regex_to_gbnf(std::string_view) { return Status::Unimplemented("regex_to_gbnf: not implemented yet"); }
Result<std::string> choice_to_gbnf(std::span<const std::string>) {
  return Status::Unimplemented("choice_to_gbnf: not implemented yet");
}
Result<std::shared_ptr<const Grammar>> compile_gbnf(std::string_view) {
  return Status::Unimplemented("compile_gbnf: not implemented yet");
}

struct TokenVocabulary::Impl {
  int32_t size = 0;
};
TokenVocabulary::TokenVocabulary() : impl_(std::make_unique<Impl>()) {}
TokenVocabulary::~TokenVocabulary() = default;
std::shared_ptr<const TokenVocabulary> TokenVocabulary::build(std::vector<std::string> token_bytes,
                                                              std::vector<int32_t>) {
  std::shared_ptr<TokenVocabulary> v(new TokenVocabulary());
  v->impl_->size = static_cast<int32_t>(token_bytes.size());
  return v;
}
int32_t TokenVocabulary::size() const { return impl_->size; }

struct Matcher::State {};
Matcher::Matcher(std::shared_ptr<const Grammar>, std::shared_ptr<const TokenVocabulary>)
    : state_(std::make_unique<State>()) {}
Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;
Matcher& Matcher::operator=(Matcher&&) noexcept = default;
bool Matcher::accept_token(int32_t) { return false; }
bool Matcher::accept_bytes(std::string_view) { return false; }
void Matcher::fill_mask(std::span<uint32_t> mask) {
  for (auto& w : mask) w = 0;
}
bool Matcher::can_end() const { return false; }
bool Matcher::is_terminated() const { return false; }
void Matcher::rollback(int32_t) {}

}  // namespace ferry::llm::grammar
