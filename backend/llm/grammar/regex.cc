#include "backend/llm/grammar/grammar.h"
namespace ferry::llm::grammar {
Result<std::string> json_schema_to_gbnf(const Json::Value&) { return Status::Unimplemented("x"); }
std::string json_object_gbnf() { return "root ::= \"{}\"\n"; }
Result<std::string> regex_to_gbnf(std::string_view) { return Status::Unimplemented("x"); }
Result<std::string> choice_to_gbnf(std::span<const std::string>) { return Status::Unimplemented("x"); }
}
