// json_schema_to_gbnf / json_object_gbnf: for each schema, random walks on masks (a byte-level
// vocabulary plus multi-byte pieces) generate documents that must parse as JSON and be valid under
// the schema, checked by a small validator written here for the supported keywords. Schemas with
// unsupported keywords give errors naming the keyword and where it is.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "backend/llm/grammar/grammar.h"
#include "common/json_parse.h"
#include "tests/llm/grammar/grammar_test_util.h"

namespace ferry::llm::grammar {
namespace {

using testing::make_test_vocab;
using testing::random_walk;

Json::Value parse(const std::string& text) {
  auto v = parse_json_text(text);
  EXPECT_TRUE(v.ok()) << v.status().message() << ": " << text;
  return v.ok() ? v.value() : Json::Value();
}

std::string compact(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  return Json::writeString(b, v);
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool is_integer(const Json::Value& v) {
  return v.isNumeric() && !v.isBool() && std::floor(v.asDouble()) == v.asDouble();
}

bool has_type(const Json::Value& v, const std::string& t) {
  if (t == "null") return v.isNull();
  if (t == "boolean") return v.isBool();
  if (t == "string") return v.isString();
  if (t == "object") return v.isObject();
  if (t == "array") return v.isArray();
  if (t == "number") return v.isNumeric() && !v.isBool();
  if (t == "integer") return is_integer(v);
  return false;
}

// The day of a "YYYY-MM-DD..." text exists: each month's length, February 29 in leap years only.
bool day_exists(const std::string& date) {
  const int year = std::stoi(date.substr(0, 4)), month = std::stoi(date.substr(5, 2)), day = std::stoi(date.substr(8, 2));
  static const int kDays[] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  return day <= (month == 2 && leap ? 29 : kDays[month]);
}

const Json::Value& resolve(const Json::Value& root, const std::string& ref) {
  const Json::Value* t = &root;
  size_t i = 1;
  while (i < ref.size()) {
    size_t j = ref.find('/', i + 1);
    if (j == std::string::npos) j = ref.size();
    t = &(*t)[ref.substr(i + 1, j - i - 1)];
    i = j;
  }
  return *t;
}

// A validator for the keywords the converter supports. Returns "" when valid, else why not.
std::string validate(const Json::Value& v, const Json::Value& s, const Json::Value& root) {
  if (s.isBool()) return s.asBool() ? "" : "schema false";
  if (s.isMember("$ref")) return validate(v, resolve(root, s["$ref"].asString()), root);
  if (s.isMember("anyOf")) {
    for (const Json::Value& a : s["anyOf"]) {
      if (validate(v, a, root).empty()) return "";
    }
    return "no anyOf branch matches";
  }
  if (s.isMember("oneOf")) {
    int n = 0;
    for (const Json::Value& a : s["oneOf"]) n += validate(v, a, root).empty();
    return n == 1 ? "" : "oneOf matched " + std::to_string(n) + " branches";
  }
  for (const Json::Value& a : s["allOf"]) {
    std::string why = validate(v, a, root);
    if (!why.empty()) return "allOf: " + why;
  }
  if (s.isMember("const") && compact(s["const"]) != compact(v)) return "not the const";
  if (s.isMember("enum")) {
    bool found = false;
    for (const Json::Value& e : s["enum"]) found |= compact(e) == compact(v);
    if (!found) return "not in enum";
  }
  if (s.isMember("type")) {
    bool ok = false;
    if (s["type"].isString()) ok = has_type(v, s["type"].asString());
    for (const Json::Value& t : s["type"]) {
      if (s["type"].isArray()) ok |= has_type(v, t.asString());
    }
    if (!ok) return "wrong type";
  }
  if (v.isString()) {
    const std::string str = v.asString();
    if (s.isMember("minLength") && code_points(str) < s["minLength"].asUInt()) return "too short";
    if (s.isMember("maxLength") && code_points(str) > s["maxLength"].asUInt()) return "too long";
    if (s.isMember("pattern") && !std::regex_search(str, std::regex(s["pattern"].asString()))) return "pattern";
    if (s.isMember("format")) {
      static const std::map<std::string, std::string> kFormats = {
          {"date", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"},
          {"time", R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"date-time", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"uuid", R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"},
          {"email", R"([A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)"},
          {"ipv4", R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
          {"hostname", R"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)"},
          // ASCII only, percent escapes complete, at most one fragment.
          {"uri", R"([A-Za-z][A-Za-z0-9+.-]*:([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})+(#([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?)"},
      };
      const std::string f = s["format"].asString();
      auto it = kFormats.find(f);
      if (it != kFormats.end() && !std::regex_match(str, std::regex(it->second))) return "format " + it->first;
      if ((f == "date" || f == "date-time") && !day_exists(str)) return "format " + f + ": no such day";
      if (f == "hostname" && str.size() > 253) return "format hostname: over 253 characters";
      if (f == "email" && (str.find('@') > 64 || str.size() - str.find('@') - 1 > 253)) return "format email: too long";
    }
  }
  if (v.isNumeric() && !v.isBool()) {
    const double x = v.asDouble();
    if (s.isMember("minimum") && x < s["minimum"].asDouble()) return "below minimum";
    if (s.isMember("maximum") && x > s["maximum"].asDouble()) return "above maximum";
    if (s.isMember("exclusiveMinimum") && x <= s["exclusiveMinimum"].asDouble()) return "not above exclusiveMinimum";
    if (s.isMember("exclusiveMaximum") && x >= s["exclusiveMaximum"].asDouble()) return "not below exclusiveMaximum";
  }
  if (v.isObject()) {
    for (const Json::Value& r : s["required"]) {
      if (!v.isMember(r.asString())) return "missing required " + r.asString();
    }
    for (const std::string& k : v.getMemberNames()) {
      if (s["properties"].isMember(k)) {
        std::string why = validate(v[k], s["properties"][k], root);
        if (!why.empty()) return k + ": " + why;
      } else if (s.isMember("additionalProperties")) {
        std::string why = validate(v[k], s["additionalProperties"], root);
        if (!why.empty()) return "additional " + k + ": " + why;
      }
      if (s["propertyNames"].isMember("maxLength") && code_points(k) > s["propertyNames"]["maxLength"].asUInt()) {
        return "name " + k + " too long";
      }
    }
    if (s.isMember("maxProperties") && v.size() > s["maxProperties"].asUInt()) return "too many members";
  }
  if (v.isArray()) {
    if (s.isMember("minItems") && v.size() < s["minItems"].asUInt()) return "too few items";
    if (s.isMember("maxItems") && v.size() > s["maxItems"].asUInt()) return "too many items";
    const Json::Value& prefix = s["prefixItems"];
    for (Json::ArrayIndex i = 0; i < v.size(); ++i) {
      const bool in_prefix = prefix.isArray() && i < prefix.size();
      if (!in_prefix && !s.isMember("items")) continue;
      std::string why = validate(v[i], in_prefix ? prefix[i] : s["items"], root);
      if (!why.empty()) return "item " + std::to_string(i) + ": " + why;
    }
  }
  return "";
}

const char* const kSchemas[] = {
    R"({"type": "string"})",
    R"({"type": "integer"})",
    R"({"type": "number"})",
    R"({"type": "boolean"})",
    R"({"type": "null"})",
    R"({"type": ["string", "integer", "null"]})",
    R"({})",
    R"({"type": "object"})",
    R"({"type": "array"})",
    R"({"enum": ["red", "green", "blue \"dark\"", 42, null, {"a": [1, 2]}]})",
    R"({"const": "exactly this\n"})",
    R"({"type": "string", "enum": ["a", 1, "b"]})",
    R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]})",
    R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}})",
    R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}}, "required": ["b"]})",
    R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["b"], "additionalProperties": false})",
    R"({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}})",
    R"({"type": "object", "properties": {"x": {"const": 1}}, "required": ["x"], "additionalProperties": true})",
    R"({"type": "object", "additionalProperties": {"type": "integer"}})",
    R"({"type": "object", "required": ["anything"]})",
    R"({"type": "object", "properties": {"inner": {"type": "object", "properties": {"deep": {"type": "array", "items": {"type": "integer"}}}, "required": ["deep"]}}, "required": ["inner"]})",
    R"({"type": "array", "items": {"type": "string"}})",
    R"({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4})",
    R"({"type": "array", "items": {"type": "boolean"}, "maxItems": 0})",
    R"({"type": "array", "items": {"type": "null"}, "minItems": 1})",
    R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false})",
    R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": {"type": "boolean"}, "minItems": 1, "maxItems": 5})",
    R"({"type": "array", "prefixItems": [{"const": "x"}, {"const": "y"}, {"const": "z"}], "minItems": 2, "maxItems": 2})",
    R"({"type": "string", "minLength": 2, "maxLength": 5})",
    R"({"type": "string", "minLength": 3})",
    R"({"type": "string", "maxLength": 1})",
    R"({"type": "string", "pattern": "^[a-z]+-[0-9]{2,3}$"})",
    R"({"type": "string", "pattern": "^(yes|no|\"quoted\"|back\\\\slash)$"})",
    R"({"type": "string", "pattern": "ab"})",
    R"({"type": "string", "format": "date"})",
    R"({"type": "string", "format": "time"})",
    R"({"type": "string", "format": "date-time"})",
    R"({"type": "string", "format": "uuid"})",
    R"({"type": "string", "format": "email"})",
    R"({"type": "string", "format": "ipv4"})",
    R"({"type": "string", "format": "hostname"})",
    R"({"type": "string", "format": "uri"})",
    R"({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["a", "b"], "additionalProperties": {"type": "boolean"}})",
    R"({"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}, "propertyNames": {"maxLength": 3}, "maxProperties": 3})",
    R"({"type": "object", "maxProperties": 2})",
    R"({"propertyNames": {"type": "string", "maxLength": 2}})",
    R"({"type": "string", "format": "not-a-known-format"})",
    R"({"type": "integer", "minimum": 0})",
    R"({"type": "integer", "exclusiveMinimum": 0})",
    R"({"type": "integer", "minimum": 18, "maximum": 120})",
    R"({"type": "integer", "minimum": -15, "maximum": 7})",
    R"({"type": "integer", "maximum": -3})",
    R"({"type": "integer", "minimum": 995, "exclusiveMaximum": 1234})",
    R"({"type": "number", "minimum": 0})",
    R"({"type": "number", "exclusiveMinimum": 0})",
    R"({"type": "number", "minimum": -3, "maximum": 7})",
    R"({"type": "number", "minimum": 2})",
    R"({"type": "number", "maximum": -2})",
    R"({"type": "number", "minimum": -5, "maximum": -5})",
    R"({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer", "minimum": 0}]})",
    R"({"oneOf": [{"type": "boolean"}, {"type": "null"}, {"type": "array", "maxItems": 1}]})",
    R"({"allOf": [{"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]}]})",
    R"({"$defs": {"pos": {"type": "integer", "minimum": 1}}, "type": "object", "properties": {"p": {"$ref": "#/$defs/pos"}, "q": {"$ref": "#/$defs/pos"}}, "required": ["p"]})",
    R"({"definitions": {"color": {"enum": ["r", "g"]}}, "type": "array", "items": {"$ref": "#/definitions/color"}})",
    R"({"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["value"]}}, "$ref": "#/$defs/node"})",
    R"({"type": "object", "properties": {"name": {"type": "string"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["name", "next"]})",
    R"({"title": "annotated", "description": "d", "examples": [1], "default": 2, "$comment": "c", "type": "integer"})",
    R"({"properties": {"implied": {"type": "boolean"}}, "required": ["implied"]})",
    R"({"type": "object", "properties": {"quote\"key": {"type": "string"}, "ünï": {"type": "integer"}}, "required": ["quote\"key", "ünï"]})",
    R"({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 1}, "score": {"type": ["number", "null"]}}, "required": ["tags"]})",
};

class SchemaWalkTest : public ::testing::TestWithParam<int> {};

// Documents generated along masks parse and are valid; the first walk of each schema also checks
// every mask against the brute-force reference.
TEST_P(SchemaWalkTest, GeneratedDocumentsAreValid) {
  const std::string text = kSchemas[GetParam()];
  const Json::Value schema = parse(text);
  auto gbnf = json_schema_text_to_gbnf(text);
  ASSERT_TRUE(gbnf.ok()) << gbnf.status().message() << "\n" << text;
  auto g = compile_gbnf(gbnf.value());
  ASSERT_TRUE(g.ok()) << g.status().message() << "\n" << gbnf.value();
  static const auto vocab = make_test_vocab();
  int finished = 0;
  for (uint32_t seed = 1; seed <= 10; ++seed) {
    bool ended = false;
    const std::string doc = random_walk(g.value(), vocab, seed * 7919, seed == 1 ? 60 : 600,
                                        /*check_reference=*/seed == 1, &ended, 0.3, "\"]}0");
    if (std::getenv("FERRY_GRAMMAR_PRINT") != nullptr) std::printf("%d %s: %s\n", GetParam(), ended ? "done" : "cut", doc.c_str());
    if (!ended) continue;
    ++finished;
    // Duplicate names among additional members (or in a free-form object) are allowed: a grammar
    // cannot remember which names came (docs/structured-outputs.md). Declared names never repeat
    // (JsonSchemaTest.AdditionalPropertiesAfterDeclaredOnes).
    JsonParseOptions options;
    options.reject_dup_keys = false;
    auto v = parse_json_text(doc, options);
    ASSERT_TRUE(v.ok()) << v.status().message() << "\nschema: " << text << "\ndoc: " << doc << "\n" << gbnf.value();
    EXPECT_EQ(validate(v.value(), schema, schema), "") << "schema: " << text << "\ndoc: " << doc << "\n" << gbnf.value();
  }
  EXPECT_GE(finished, 3) << "too few walks finished a document for " << text;
}

INSTANTIATE_TEST_SUITE_P(Schemas, SchemaWalkTest,
                         ::testing::Range(0, static_cast<int>(sizeof(kSchemas) / sizeof(kSchemas[0]))));

bool matches(const std::string& gbnf, const std::string& text) {
  auto g = compile_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().message();
  if (!g.ok()) return false;
  Matcher m(g.value(), nullptr);
  return m.accept_bytes(text) && m.can_end();
}

std::string schema_gbnf(const std::string& schema_text) {
  auto gbnf = json_schema_to_gbnf(parse(schema_text));
  EXPECT_TRUE(gbnf.ok()) << gbnf.status().message();
  return gbnf.ok() ? gbnf.value() : "";
}

// The tricky part: optional properties and their commas. Exactly the valid combinations in order.
TEST(JsonSchemaTest, OptionalPropertiesAndCommas) {
  const std::string g = schema_gbnf(
      R"({"type": "object", "properties": {"a": {"const": 1}, "b": {"const": 2}, "c": {"const": 3}}, "required": ["b"]})");
  for (const char* ok : {R"({"b":2})", R"({"a":1,"b":2})", R"({"b":2,"c":3})", R"({"a":1,"b":2,"c":3})",
                         R"({ "a": 1, "b": 2 })", "{\n  \"b\": 2\n}"}) {
    EXPECT_TRUE(matches(g, ok)) << ok;
  }
  for (const char* bad : {"{}", R"({"a":1})", R"({"c":3})", R"({,"b":2})", R"({"b":2,})", R"({"a":1"b":2})",
                          R"({"a":1,,"b":2})", R"({"b":2,"a":1})", R"({"a":1,"c":3})", R"({"b":2,"b":2})"}) {
    EXPECT_FALSE(matches(g, bad)) << bad;
  }
  const std::string all_optional =
      schema_gbnf(R"({"type": "object", "properties": {"a": {"const": 1}, "b": {"const": 2}}})");
  for (const char* ok : {"{}", R"({"a":1})", R"({"b":2})", R"({"a":1,"b":2})", "{ }"}) {
    EXPECT_TRUE(matches(all_optional, ok)) << ok;
  }
  for (const char* bad : {"{,}", R"({,"b":2})", R"({"a":1,})", R"({"b":2,"a":1})"}) {
    EXPECT_FALSE(matches(all_optional, bad)) << bad;
  }
}

TEST(JsonSchemaTest, PropertiesInTheSchemaTextsOrder) {
  const std::string text =
      R"({"type": "object", "properties": {"zeta": {"const": 1}, "alpha": {"type": "object", "properties": )"
      R"({"y\u00e9": {"const": 2}, "b/c": {"const": 3}}, "required": ["b/c", "y\u00e9"]}}, "required": ["alpha", "zeta"]})";
  auto from_text = json_schema_text_to_gbnf(text);
  ASSERT_TRUE(from_text.ok()) << from_text.status().message();
  EXPECT_TRUE(matches(from_text.value(), R"({"zeta":1,"alpha":{"yé":2,"b/c":3}})"));
  EXPECT_FALSE(matches(from_text.value(), R"({"alpha":{"yé":2,"b/c":3},"zeta":1})"));
  EXPECT_FALSE(matches(from_text.value(), R"({"zeta":1,"alpha":{"b/c":3,"yé":2}})"));
  // A parsed Json::Value has no order: sorted by name.
  const std::string sorted = schema_gbnf(text);
  EXPECT_TRUE(matches(sorted, R"({"alpha":{"b/c":3,"yé":2},"zeta":1})"));
  EXPECT_FALSE(json_schema_text_to_gbnf("{\"type\": ").ok());
}

TEST(JsonSchemaTest, AdditionalPropertiesAfterDeclaredOnes) {
  const std::string g = schema_gbnf(
      R"({"type": "object", "properties": {"a": {"const": 1}}, "additionalProperties": {"type": "integer"}})");
  for (const char* ok : {"{}", R"({"a":1})", R"({"x":5})", R"({"a":1,"x":5,"y":6})", R"({"x":5,"y":6})"}) {
    EXPECT_TRUE(matches(g, ok)) << ok;
  }
  for (const char* bad : {R"({"x":"s"})", R"({"a":1,})", R"({,"x":5})"}) EXPECT_FALSE(matches(g, bad)) << bad;
  // An additional member never repeats a declared name (nor spells one with escapes).
  const std::string named = schema_gbnf(
      R"({"type": "object", "properties": {"ab": {"const": 1}, "a": {"const": 2}}, "additionalProperties": true})");
  for (const char* ok : {R"({"ab":1,"abc":3})", R"({"a":2,"b":3})", R"({"":0,"aa":[]})", R"({"ä":1})"}) {
    EXPECT_TRUE(matches(named, ok)) << ok;
  }
  for (const char* bad : {R"({"ab":1,"ab":1})", R"({"a":5})", R"({"ab":9})", R"({"\u0061":2})", R"({"x\n":1})"}) {
    EXPECT_FALSE(matches(named, bad)) << bad;
  }
}

TEST(JsonSchemaTest, IntegerRangesAreExact) {
  const std::string g = schema_gbnf(R"({"type": "integer", "minimum": -15, "maximum": 107})");
  for (int i = -40; i <= 200; ++i) EXPECT_EQ(matches(g, std::to_string(i)), i >= -15 && i <= 107) << i;
  EXPECT_FALSE(matches(g, "007"));
  EXPECT_FALSE(matches(g, "-0"));
  const std::string big = schema_gbnf(R"({"type": "integer", "minimum": 95})");
  for (int i = 0; i <= 1200; ++i) EXPECT_EQ(matches(big, std::to_string(i)), i >= 95) << i;
  EXPECT_TRUE(matches(big, "123456789012"));
}

// Formats follow the RFCs as ajv-formats checks them: real days (found by the schema suite:
// November 31 was allowed), host name lengths, dot-atom local parts, URIs in ASCII.
TEST(JsonSchemaTest, FormatsFollowTheirRfcs) {
  const std::string date = schema_gbnf(R"({"type": "string", "format": "date"})");
  for (const char* ok : {"2024-02-29", "2000-02-29", "0000-02-29", "1996-02-29", "2023-02-28", "2023-01-31",
                         "2023-03-31", "2023-04-30", "2023-07-31", "2023-08-31", "2023-11-30", "2023-12-31"}) {
    EXPECT_TRUE(matches(date, std::string("\"") + ok + "\"")) << ok;
  }
  for (const char* bad : {"2023-02-29", "1900-02-29", "2100-02-29", "2024-02-30", "2023-04-31", "2023-06-31",
                          "2023-09-31", "6355-11-31", "2023-13-01", "2023-00-10", "2023-01-00", "2023-01-32"}) {
    EXPECT_FALSE(matches(date, std::string("\"") + bad + "\"")) << bad;
  }
  const std::string date_time = schema_gbnf(R"({"type": "string", "format": "date-time"})");
  EXPECT_TRUE(matches(date_time, R"("2024-02-29T12:30:00Z")"));
  EXPECT_FALSE(matches(date_time, R"("2023-02-29T12:30:00Z")"));

  const std::string host = schema_gbnf(R"({"type": "string", "format": "hostname"})");
  const std::string label63(63, 'a'), label26(26, 'b');
  for (const std::string& ok : {std::string("a"), std::string("example.com"), std::string("a-1.b-2.c"), label63,
                                label63 + "." + label26 + "." + label26, std::string("a.b.c.d.e.f.g.h")}) {
    EXPECT_TRUE(matches(host, "\"" + ok + "\"")) << ok;
  }
  // Longer than 253 characters, a label of 64, empty labels, hyphens at a label's ends.
  std::string long_name = label63;
  for (int i = 0; i < 4; ++i) long_name += "." + label63;
  for (const std::string& bad : {long_name, label63 + "a", std::string("a..b"), std::string("-a"), std::string("a-"),
                                 std::string("a.-b")}) {
    EXPECT_FALSE(matches(host, "\"" + bad + "\"")) << bad;
  }

  const std::string email = schema_gbnf(R"({"type": "string", "format": "email"})");
  for (const char* ok : {"a@b.co", "first.last+tag@mail.example.org", "x_y-z@a-b.c"}) {
    EXPECT_TRUE(matches(email, std::string("\"") + ok + "\"")) << ok;
  }
  for (const char* bad : {"a..b@c.de", ".a@b.cd", "a.@b.cd", "a@b", "a@-b.cd", "a@b..cd", "@b.cd"}) {
    EXPECT_FALSE(matches(email, std::string("\"") + bad + "\"")) << bad;
  }
  const std::string local65(65, 'a');
  EXPECT_FALSE(matches(email, "\"" + local65 + "@b.cd\"")) << "a local part over 64";

  const std::string uri = schema_gbnf(R"({"type": "string", "format": "uri"})");
  for (const char* ok : {"https://example.com/a/b?x=1&y=2#top", "mailto:someone@example.com", "urn:isbn:0451450523",
                         "http://h:8080/p%20q/", "tag:/x", "s3://bucket/key?"}) {
    EXPECT_TRUE(matches(uri, std::string("\"") + ok + "\"")) << ok;
  }
  for (const char* bad : {"a:b c", "a:\u201d", "a:%zz", "a:#x#y", "1a:b", "a:", "http://a/b?c#d#e",
                          "no-scheme"}) {
    EXPECT_FALSE(matches(uri, std::string("\"") + bad + "\"")) << bad;
  }
}

// A required name without a properties entry takes additionalProperties' schema; with
// additionalProperties false no object is valid, and the schema is refused (found by the suite).
TEST(JsonSchemaTest, RequiredNamesWithoutPropertiesFollowAdditionalProperties) {
  const std::string g = schema_gbnf(
      R"({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["a", "b"], "additionalProperties": {"type": "boolean"}})");
  EXPECT_TRUE(matches(g, R"({"a":null,"b":true})"));
  EXPECT_FALSE(matches(g, R"({"a":null,"b":1})"));
  auto refused = json_schema_to_gbnf(
      parse(R"({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["a", "b"], "additionalProperties": false})"));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("'b'"), std::string::npos) << refused.status().message();
  EXPECT_NE(refused.status().message().find("additionalProperties"), std::string::npos) << refused.status().message();
  EXPECT_TRUE(matches(schema_gbnf(R"({"type": "object", "required": ["b"]})"), R"({"b":[1]})"));
}

TEST(JsonSchemaTest, JsonObjectGrammar) {
  const std::string g = json_object_gbnf();
  EXPECT_TRUE(matches(g, R"({"a": [1, 2.5e-3, "x\u00e9\n", {"b": null}], "c": true})"));
  EXPECT_TRUE(matches(g, "{}"));
  EXPECT_FALSE(matches(g, "[]"));
  EXPECT_FALSE(matches(g, R"({"a": 01})"));
  EXPECT_FALSE(matches(g, R"({"a": "\ud800"})"));  // half a surrogate pair
  EXPECT_TRUE(matches(g, R"({"a": "\ud83d\ude00"})"));
  EXPECT_FALSE(matches(g, "{" + std::string(30, ' ') + "}"));  // whitespace is bounded
}

std::string error_of(const std::string& schema_text) {
  auto gbnf = json_schema_to_gbnf(parse(schema_text));
  EXPECT_FALSE(gbnf.ok()) << schema_text;
  return gbnf.ok() ? "" : gbnf.status().message();
}

TEST(JsonSchemaTest, UnsupportedKeywordsAreNamed) {
  EXPECT_EQ(error_of(R"({"type": "object", "properties": {"a": {"not": {"type": "string"}}}})"),
            "json_schema: unsupported keyword 'not' at /properties/a");
  EXPECT_EQ(error_of(R"({"if": {}, "then": {}})"), "json_schema: unsupported keyword 'if' at the root");
  EXPECT_EQ(error_of(R"({"type": "array", "items": {"type": "number", "multipleOf": 2}})"),
            "json_schema: unsupported keyword 'multipleOf' at /items");
  EXPECT_EQ(error_of(R"({"type": "object", "patternProperties": {"^x": {}}})"),
            "json_schema: unsupported keyword 'patternProperties' at the root");
  EXPECT_EQ(error_of(R"({"type": "array", "uniqueItems": true})"), "json_schema: unsupported keyword 'uniqueItems' at the root");
  EXPECT_EQ(error_of(R"({"type": "array", "contains": {"const": 1}})"), "json_schema: unsupported keyword 'contains' at the root");
  EXPECT_EQ(error_of(R"({"$defs": {"a": {"dependentSchemas": {}}}, "$ref": "#/$defs/a"})"),
            "json_schema: unsupported keyword 'dependentSchemas' at /$defs/a");
  EXPECT_EQ(error_of(R"({"anyOf": [{"type": "string"}, {"type": "object", "properties": {"x~/y": {"not": {}}}}]})"),
            "json_schema: unsupported keyword 'not' at /anyOf/1/properties/x~0~1y");
  EXPECT_EQ(error_of(R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})"),
            "json_schema: 'allOf' with other than one schema is not supported at the root");
  EXPECT_EQ(error_of(R"({"type": "number", "maximum": 3.5})"),
            "json_schema: 'maximum' on a number must be an integer within +-1e15 at the root");
  EXPECT_EQ(error_of(R"({"type": "number", "exclusiveMaximum": 3})"),
            "json_schema: 'exclusiveMaximum' on a number is not supported (only on an integer) at the root");
  EXPECT_EQ(error_of(R"({"$ref": "https://example.com/s.json"})"),
            "json_schema: only local references ('#/...') are supported, not 'https://example.com/s.json' at the root");
  EXPECT_EQ(error_of(R"({"$ref": "#/$defs/missing"})"), "json_schema: '$ref' '#/$defs/missing' points at nothing at the root");
  EXPECT_EQ(error_of(R"({"type": "strin"})"), "json_schema: unknown type 'strin' at the root");
}

// propertyNames (maxLength) and maxProperties bound the additional members: without them a model
// that keeps naming members never ends (found by the schema suite on stories260K).
TEST(JsonSchemaTest, PropertyNamesAndMaxPropertiesBoundAdditionalMembers) {
  const std::string g = schema_gbnf(R"({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
      "additionalProperties": {"type": "boolean"}, "propertyNames": {"maxLength": 3}, "maxProperties": 3})");
  for (const char* ok : {R"({"id":1})", R"({"id":1,"abc":true})", R"({"id":1,"a":true,"b":false})", R"({"id":1,"":true})",
                         R"({"id":1,"idx":true})", R"({"id":1,"ü":true})"}) {
    EXPECT_TRUE(matches(g, ok)) << ok;
  }
  for (const char* bad : {R"({"id":1,"abcd":true})", R"({"id":1,"a":true,"b":true,"c":true})", R"({"id":1,"id":true})",
                          R"({"id":1,"a":1})"}) {
    EXPECT_FALSE(matches(g, bad)) << bad;
  }
  const std::string free_form = schema_gbnf(R"({"type": "object", "maxProperties": 2})");
  for (const char* ok : {"{}", R"({"a":1})", R"({"a":1,"bcdefg":[2]})"}) EXPECT_TRUE(matches(free_form, ok)) << ok;
  EXPECT_FALSE(matches(free_form, R"({"a":1,"b":2,"c":3})"));
  const std::string names = schema_gbnf(R"({"propertyNames": {"maxLength": 1}})");
  EXPECT_TRUE(matches(names, R"({"a":1,"b":2,"c":"x"})"));
  EXPECT_FALSE(matches(names, R"({"ab":1})"));
  const std::string none = schema_gbnf(R"({"type": "object", "maxProperties": 0})");
  EXPECT_TRUE(matches(none, "{}"));
  EXPECT_FALSE(matches(none, R"({"a":1})"));

  EXPECT_EQ(error_of(R"({"type": "object", "propertyNames": {"pattern": "^a"}})"),
            "json_schema: 'propertyNames' supports only 'maxLength' at the root");
  EXPECT_EQ(error_of(R"({"type": "object", "properties": {"long": {}}, "propertyNames": {"maxLength": 2}})"),
            "json_schema: property 'long' is longer than 'propertyNames' 'maxLength' at the root");
  EXPECT_EQ(error_of(R"({"type": "object", "properties": {"a": {}, "b": {}}, "maxProperties": 1})"),
            "json_schema: 'maxProperties' below the number of declared properties is not supported at the root");
  EXPECT_EQ(error_of(R"({"type": "object", "maxProperties": -1})"),
            "json_schema: 'maxProperties' must be a non-negative integer at the root");
}

// Numbers between integer bounds (without an exponent): every decimal written near the bounds is
// allowed exactly when it lies between them.
TEST(JsonSchemaTest, NumberRangesWithIntegerBounds) {
  struct Case {
    const char* schema;
    double lo, hi;
  };
  const double inf = 1e300;
  for (const Case& c : {Case{R"({"type": "number", "minimum": -3, "maximum": 7})", -3, 7},
                        Case{R"({"type": "number", "minimum": 2})", 2, inf},
                        Case{R"({"type": "number", "maximum": -2})", -inf, -2},
                        Case{R"({"type": "number", "maximum": 0})", -inf, 0},
                        Case{R"({"type": "number", "minimum": -5, "maximum": -5})", -5, -5},
                        Case{R"({"type": "number", "minimum": 0, "maximum": 10})", 0, 10}}) {
    const std::string g = schema_gbnf(c.schema);
    for (int tenths = -120; tenths <= 120; ++tenths) {
      for (const std::string& text : {std::to_string(tenths / 10) + "." + std::to_string(std::abs(tenths % 10)),
                                      std::to_string(tenths / 10)}) {
        // -0.5 is written "0.-5" by the above for tenths in (-10, 0): write the sign first.
        std::string t = text;
        if (tenths < 0 && tenths > -10 && text.find('.') != std::string::npos) t = "-0." + std::to_string(-tenths);
        const double v = std::stod(t);
        EXPECT_EQ(matches(g, t), v >= c.lo && v <= c.hi) << c.schema << ": " << t;
      }
    }
    EXPECT_FALSE(matches(g, "1e1")) << c.schema << ": no exponent with bounds";
  }
  const std::string g = schema_gbnf(R"({"type": "number", "minimum": -3, "maximum": 7})");
  for (const char* ok : {"7.000", "-3.0", "6.99999999999999999999", "-2.99999999999999999999", "-0", "0.25"}) {
    EXPECT_TRUE(matches(g, ok)) << ok;
  }
  for (const char* bad : {"7.001", "-3.01", "-4", "8", "07", "7."}) EXPECT_FALSE(matches(g, bad)) << bad;
  EXPECT_EQ(error_of(R"({"type": "number", "minimum": 3, "maximum": 2})"),
            "json_schema: no number lies between the bounds at the root");
}

}  // namespace
}  // namespace ferry::llm::grammar
