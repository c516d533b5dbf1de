// json_schema_to_gbnf and json_object_gbnf: JSON Schema -> GBNF text.
//
// Soundness first: every text the grammar allows is valid under the schema (tests check generated
// documents with a validator); where a keyword cannot be expressed exactly the conversion refuses
// it, or (documented in docs/structured-outputs.md) allows a subset of the valid documents:
// properties come in the schema's order; "additionalProperties" unspecified means none beside
// "properties" (OpenAI's strict mode); the type is inferred from the keywords when "type" is absent;
// enum/const objects and arrays are matched in their compact form; oneOf is matched as anyOf.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/llm/grammar/codepoints.h"
#include "backend/llm/grammar/front_ends.h"
#include "backend/llm/grammar/json_key_order.h"
#include "backend/llm/grammar/grammar.h"
#include "common/json_parse.h"

namespace ferry::llm::grammar {

namespace {

constexpr int kMaxSchemaDepth = 64;
constexpr int64_t kMaxIntegerBound = 1000000000000000LL;  // |bounds| above 1e15 are refused
constexpr int kMaxIntegerDigits = 19;  // unbounded integers: at most this many digits

// The JSON primitives every converted grammar may use (its rules are emitted when referenced).
// `ws` is bounded so that a model cannot loop in whitespace: nothing, one space, or one newline
// followed by up to 20 spaces or tabs (pretty-printed indentation).
const char* const kPrimitives[][2] = {
    {"ws", R"(( " " | "\n" [ \t]{0,20} )?)"},
    {"value", "object | array | string | number | boolean | null"},
    {"object", R"("{" ws ( member ( ws "," ws member )* ws )? "}")"},
    {"member", R"(string ws ":" ws value)"},
    {"array", R"("[" ws ( value ( ws "," ws value )* ws )? "]")"},
    {"string", R"("\"" char* "\"")"},
    // One character of a JSON string: unescaped, or an escape; \u escapes never leave half a
    // surrogate pair.
    {"char", R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" uhex ))"},
    {"uhex", R"([0-9a-cA-Ce-fE-F] hex{3} | [dD] [0-7] hex{2} | [dD] [89abAB] hex{2} "\\u" [dD] [c-fC-F] hex{2})"},
    {"hex", "[0-9a-fA-F]"},
    {"number", R"(integer ( "." [0-9]{1,20} )? ( [eE] [-+]? [0-9]{1,2} )?)"},
    {"integer", R"("-"? ( "0" | [1-9] [0-9]{0,18} ))"},
    {"boolean", R"("true" | "false")"},
    {"null", R"("null")"},
    // Formats (string contents, no quotes).
    // RFC 3339 full-date: each month's own number of days; February 29 only in leap years (a
    // multiple of 4 that is not a multiple of 100, or a multiple of 400).
    {"date", R"([0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" date-31 | ( "0" [469] | "11" ) "-" date-30 | "02-" date-28 ) | date-leap "-02-29")"},
    {"date-28", R"("0" [1-9] | "1" [0-9] | "2" [0-8])"},
    {"date-30", R"(date-28 | "29" | "30")"},
    {"date-31", R"(date-30 | "31")"},
    {"date-leap", R"([0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) | ( [02468] [048] | [13579] [26] ) "00")"},
    {"time", R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))"},
    {"date-time", R"(date "T" time)"},
    {"uuid", R"(hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12})"},
    // RFC 1123: labels of at most 63 characters, at most 253 in all. A grammar cannot count the
    // whole, so the first label may have 63 and up to 7 more 26 each (63 + 7 * 27 = 252).
    {"hostname", R"(label ( "." label-short ){0,7})"},
    {"label", R"([a-zA-Z0-9] ( [a-zA-Z0-9-]{0,61} [a-zA-Z0-9] )?)"},
    {"label-short", R"([a-zA-Z0-9] ( [a-zA-Z0-9-]{0,24} [a-zA-Z0-9] )?)"},
    // A dot-atom local part (no leading, trailing or double dot) of at most 64 characters (RFC 5321:
    // up to 4 atoms, 16 + 3 * 16), then a host name of two labels or more.
    {"email", R"([a-zA-Z0-9_+-]{1,16} ( "." [a-zA-Z0-9_+-]{1,15} ){0,3} "@" label ( "." label-short ){1,7})"},
    {"ipv4", R"(octet "." octet "." octet "." octet)"},
    {"octet", R"("25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9])"},
    // RFC 3986 (ASCII only, other characters percent-encoded): scheme ":" then an authority and
    // an absolute path, an absolute path, or a relative one; a query and a fragment. Bounded
    // (8 segments of 48, a query of 128, a fragment of 64) so that a value always ends.
    {"uri", R"([a-zA-Z] [a-zA-Z0-9+.-]{0,15} ":" ( "//" hostname ( ":" [0-9]{1,5} )? ( "/" uri-char{0,48} ){0,8} | "/" ( uri-char{1,48} ( "/" uri-char{0,48} ){0,7} )? | uri-char{1,48} ( "/" uri-char{0,48} ){0,7} ) ( "?" ( uri-char | [/?] ){0,128} )? ( "#" ( uri-char | [/?] ){0,64} )?)"},
    {"uri-char", R"([a-zA-Z0-9._~!$&'()*+,;=:@-] | "%" hex hex)"},
};

// Code points in UTF-8 `text` (continuation bytes not counted).
size_t code_point_count(const std::string& text) {
  return static_cast<size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Keywords that change what is valid and that the converter does not support.
const char* const kUnsupported[] = {
    "not", "if", "then", "else", "dependentSchemas", "dependentRequired", "dependencies", "multipleOf",
    "patternProperties", "uniqueItems", "contains", "minContains", "maxContains",
    "minProperties", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
    "$recursiveRef", "additionalItems"};

// Keywords that only annotate (or hold definitions); allowed beside $ref / anyOf / oneOf / allOf.
const char* const kAnnotations[] = {"title", "description", "examples", "default", "$schema", "$id",
                                    "$comment", "$defs", "definitions", "deprecated", "readOnly",
                                    "writeOnly", "$anchor", "contentEncoding", "contentMediaType"};

bool is_annotation(const std::string& key) {
  return std::find(std::begin(kAnnotations), std::end(kAnnotations), key) != std::end(kAnnotations);
}

std::string where(const std::string& pointer) { return pointer.empty() ? "the root" : pointer; }

std::string compact_json(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  b["emitUTF8"] = true;
  return Json::writeString(b, v);
}

// The type names a JSON value has (an integer-valued number is also an "integer").
bool value_has_type(const Json::Value& v, const std::string& type) {
  if (type == "null") return v.isNull();
  if (type == "boolean") return v.isBool();
  if (type == "string") return v.isString();
  if (type == "object") return v.isObject();
  if (type == "array") return v.isArray();
  if (type == "number") return v.isNumeric() && !v.isBool();
  if (type == "integer") return v.isNumeric() && !v.isBool() && std::floor(v.asDouble()) == v.asDouble();
  return false;
}

// Integers as GBNF: [lo, hi] of non-negative integers (hi < 0: unbounded).
std::string digits_any(size_t n) { return n == 0 ? "" : n == 1 ? "[0-9]" : "[0-9]{" + std::to_string(n) + "}"; }

// Decimal strings a and b of equal length, a <= b: every string between them.
std::string same_length_range(const std::string& a, const std::string& b) {
  if (a.empty()) return "";
  if (a.size() == 1) return a == b ? "\"" + a + "\"" : "[" + a + "-" + b + "]";
  if (a[0] == b[0]) return "\"" + a.substr(0, 1) + "\" " + same_length_range(a.substr(1), b.substr(1));
  const size_t rest = a.size() - 1;
  std::vector<std::string> alts;
  alts.push_back("\"" + a.substr(0, 1) + "\" " + same_length_range(a.substr(1), std::string(rest, '9')));
  if (b[0] - a[0] > 1) {
    const char lo = static_cast<char>(a[0] + 1), hi = static_cast<char>(b[0] - 1);
    alts.push_back((lo == hi ? "\"" + std::string(1, lo) + "\"" : "[" + std::string(1, lo) + "-" + std::string(1, hi) + "]") +
                   " " + digits_any(rest));
  }
  alts.push_back("\"" + b.substr(0, 1) + "\" " + same_length_range(std::string(rest, '0'), b.substr(1)));
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

std::string nonneg_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alts;
  const std::string slo = std::to_string(lo);
  const size_t max_len = hi < 0 ? static_cast<size_t>(kMaxIntegerDigits) : std::to_string(hi).size();
  for (size_t len = slo.size(); len <= max_len; ++len) {
    // [max(lo, 10^(len-1)), min(hi, 10^len - 1)] in `len` digits (0 is the one 1-digit number with a 0)
    std::string first = slo;
    if (len != slo.size()) first = std::string(len, '0'), first[0] = '1';
    const bool last = hi >= 0 && len == max_len;
    if (!last && len > slo.size()) {
      alts.push_back("[1-9] " + digits_any(len - 1));
      continue;
    }
    const std::string end = last ? std::to_string(hi) : std::string(len, '9');
    if (first > end) continue;
    alts.push_back(same_length_range(first, end));
  }
  if (alts.empty()) return "";
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

class SchemaConverter {
 public:
  // key_order: the schema text's key order (null: jsoncpp's sorted order).
  SchemaConverter(const Json::Value& root, const JsonKeyOrder* key_order) : root_(root), key_order_(key_order) {}

  Result<std::string> run() {
    std::string root_expr;
    FERRY_ASSIGN_OR_RETURN(root_expr, visit(root_, "", 0));
    std::string out = "root ::= " + root_expr + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    for (const auto& prim : kPrimitives) {
      if (used_.count(prim[0])) out += std::string(prim[0]) + " ::= " + prim[1] + "\n";
    }
    return out;
  }

  // The primitive `name` and those it uses, marked for output.
  std::string use(const std::string& name) {
    static const std::map<std::string, std::vector<std::string>> kDeps = {
        {"value", {"object", "array", "string", "number", "boolean", "null"}},
        {"object", {"ws", "member"}}, {"member", {"string", "ws", "value"}}, {"array", {"ws", "value"}},
        {"string", {"char"}}, {"char", {"uhex"}}, {"uhex", {"hex"}}, {"number", {"integer"}},
        {"date-time", {"date", "time"}}, {"uuid", {"hex"}}, {"hostname", {"label", "label-short"}},
        {"email", {"label", "label-short"}}, {"date", {"date-28", "date-30", "date-31", "date-leap"}},
        {"date-30", {"date-28"}}, {"date-31", {"date-30"}},
        {"uri", {"hostname", "uri-char"}}, {"uri-char", {"hex"}},
        {"ipv4", {"octet"}}};
    if (used_.insert(name).second) {
      auto it = kDeps.find(name);
      if (it != kDeps.end()) {
        for (const std::string& d : it->second) use(d);
      }
    }
    return name;
  }

 private:
  Status fail(const std::string& what, const std::string& pointer) const {
    return Status::InvalidArgument("json_schema: " + what + " at " + where(pointer));
  }

  // A rule with this body (an existing one when the body is the same); returns its name.
  std::string add_rule(const std::string& hint, const std::string& body) {
    auto it = body_names_.find(body);
    if (it != body_names_.end()) return it->second;
    std::string name = fresh_name(hint);
    rules_[name] = body;
    body_names_[body] = name;
    return name;
  }

  std::string fresh_name(const std::string& hint) {
    std::string base = "s-";
    for (char c : hint) base.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
    if (base.size() > 40) base.resize(40);
    return base + std::to_string(++name_count_);
  }

  Result<std::string> visit(const Json::Value& s, const std::string& ptr, int depth);
  Result<std::string> visit_ref(const Json::Value& s, const std::string& ptr, int depth);
  Result<std::string> visit_type(const Json::Value& s, const std::string& type, const std::string& ptr, int depth);
  Result<std::string> visit_string(const Json::Value& s, const std::string& ptr);
  Result<std::string> visit_integer(const Json::Value& s, const std::string& ptr);
  Result<std::string> visit_number(const Json::Value& s, const std::string& ptr);
  Result<std::string> visit_object(const Json::Value& s, const std::string& ptr, int depth);
  Result<std::string> visit_array(const Json::Value& s, const std::string& ptr, int depth);
  Result<std::string> visit_literals(const Json::Value& values, const Json::Value& s, const std::string& ptr);
  Status only_annotations_beside(const Json::Value& s, const char* keyword, const std::string& ptr) const;
  std::string other_key(const std::vector<std::string>& names, int64_t max_length);

  const Json::Value& root_;
  const JsonKeyOrder* key_order_;
  std::map<std::string, std::string> rules_;  // name -> body
  std::unordered_map<std::string, std::string> body_names_;
  std::unordered_map<std::string, std::string> ref_names_;
  std::set<std::string> used_;
  int name_count_ = 0;
};

Status SchemaConverter::only_annotations_beside(const Json::Value& s, const char* keyword,
                                                const std::string& ptr) const {
  for (const std::string& key : s.getMemberNames()) {
    if (key != keyword && !is_annotation(key)) {
      return fail("keyword '" + key + "' beside '" + keyword + "' is not supported", ptr);
    }
  }
  return Status::Ok();
}

Result<std::string> SchemaConverter::visit(const Json::Value& s, const std::string& ptr, int depth) {
  if (depth > kMaxSchemaDepth) return fail("schema nests deeper than " + std::to_string(kMaxSchemaDepth), ptr);
  if (s.isBool()) {
    if (s.asBool()) return use("value");
    return fail("the schema 'false' (nothing is valid) is not supported here", ptr);
  }
  if (!s.isObject()) return fail("a schema must be an object or a boolean", ptr);
  for (const char* k : kUnsupported) {
    if (s.isMember(k)) return fail(std::string("unsupported keyword '") + k + "'", ptr);
  }
  if (s.isMember("$ref")) return visit_ref(s, ptr, depth);
  for (const char* k : {"anyOf", "oneOf"}) {
    if (!s.isMember(k)) continue;
    FERRY_RETURN_IF_ERROR(only_annotations_beside(s, k, ptr));
    const Json::Value& list = s[k];
    if (!list.isArray() || list.empty()) return fail(std::string("'") + k + "' must be a non-empty array", ptr);
    std::string out;
    for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
      std::string alt;
      FERRY_ASSIGN_OR_RETURN(alt, visit(list[i], ptr + "/" + k + "/" + std::to_string(i), depth + 1));
      out += (i ? " | " : "") + alt;
    }
    return "(" + out + ")";
  }
  if (s.isMember("allOf")) {
    FERRY_RETURN_IF_ERROR(only_annotations_beside(s, "allOf", ptr));
    const Json::Value& list = s["allOf"];
    if (!list.isArray() || list.size() != 1) return fail("'allOf' with other than one schema is not supported", ptr);
    return visit(list[0], ptr + "/allOf/0", depth + 1);
  }
  if (s.isMember("const")) {
    Json::Value one(Json::arrayValue);
    one.append(s["const"]);
    return visit_literals(one, s, ptr);
  }
  if (s.isMember("enum")) {
    if (!s["enum"].isArray() || s["enum"].empty()) return fail("'enum' must be a non-empty array", ptr);
    return visit_literals(s["enum"], s, ptr);
  }
  std::vector<std::string> types;
  const Json::Value& t = s["type"];
  if (t.isString()) {
    types.push_back(t.asString());
  } else if (t.isArray()) {
    for (const Json::Value& x : t) {
      if (!x.isString()) return fail("'type' must be a string or an array of strings", ptr);
      types.push_back(x.asString());
    }
    if (types.empty()) return fail("'type' is an empty array", ptr);
  } else if (!t.isNull()) {
    return fail("'type' must be a string or an array of strings", ptr);
  } else {
    // No type: inferred from the keywords present (stricter than the specification, which lets
    // other types through; documented).
    auto has = [&](std::initializer_list<const char*> keys) {
      return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return s.isMember(k); });
    };
    if (has({"properties", "required", "additionalProperties", "propertyNames", "maxProperties"})) {
      types.push_back("object");
    }
    if (has({"items", "prefixItems", "minItems", "maxItems"})) types.push_back("array");
    if (has({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
    if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
    if (types.empty()) return use("value");
  }
  std::string out;
  for (size_t i = 0; i < types.size(); ++i) {
    std::string alt;
    FERRY_ASSIGN_OR_RETURN(alt, visit_type(s, types[i], ptr, depth));
    out += (i ? " | " : "") + alt;
  }
  return types.size() == 1 ? out : "(" + out + ")";
}

Result<std::string> SchemaConverter::visit_ref(const Json::Value& s, const std::string& ptr, int depth) {
  FERRY_RETURN_IF_ERROR(only_annotations_beside(s, "$ref", ptr));
  if (!s["$ref"].isString()) return fail("'$ref' must be a string", ptr);
  const std::string ref = s["$ref"].asString();
  auto known = ref_names_.find(ref);
  if (known != ref_names_.end()) return known->second;
  if (ref.empty() || ref[0] != '#') return fail("only local references ('#/...') are supported, not '" + ref + "'", ptr);
  // Resolve the JSON pointer after '#'.
  const Json::Value* target = &root_;
  std::string target_ptr;
  size_t i = 1;
  while (i < ref.size()) {
    if (ref[i] != '/') return fail("'$ref' '" + ref + "' is not a JSON pointer", ptr);
    size_t j = ref.find('/', i + 1);
    if (j == std::string::npos) j = ref.size();
    std::string key;
    for (size_t k = i + 1; k < j; ++k) {
      if (ref[k] == '~' && k + 1 < j && (ref[k + 1] == '0' || ref[k + 1] == '1')) {
        key.push_back(ref[k + 1] == '0' ? '~' : '/');
        ++k;
      } else {
        key.push_back(ref[k]);
      }
    }
    if (target->isObject() && target->isMember(key)) {
      target = &(*target)[key];
    } else if (target->isArray() && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
               std::stoul(key) < target->size()) {
      target = &(*target)[static_cast<Json::ArrayIndex>(std::stoul(key))];
    } else {
      return fail("'$ref' '" + ref + "' points at nothing", ptr);
    }
    target_ptr += "/" + json_pointer_escape(key);
    i = j;
  }
  // Named before its body is made, so recursive references find it.
  const std::string name = fresh_name("ref" + target_ptr);
  ref_names_[ref] = name;
  std::string body;
  FERRY_ASSIGN_OR_RETURN(body, visit(*target, target_ptr, depth + 1));
  rules_[name] = body;
  return name;
}

Result<std::string> SchemaConverter::visit_literals(const Json::Value& values, const Json::Value& s,
                                                    const std::string& ptr) {
  std::vector<std::string> types;
  if (s["type"].isString()) types.push_back(s["type"].asString());
  for (const Json::Value& t : s["type"]) {
    if (s["type"].isArray() && t.isString()) types.push_back(t.asString());
  }
  std::string out;
  for (const Json::Value& v : values) {
    const bool typed = types.empty() || std::any_of(types.begin(), types.end(),
                                                    [&](const std::string& t) { return value_has_type(v, t); });
    if (!typed) continue;
    out += (out.empty() ? "" : " | ") + gbnf_literal(compact_json(v));
  }
  if (out.empty()) return fail("no value of 'enum'/'const' has the schema's 'type'", ptr);
  return "(" + out + ")";
}

Result<std::string> SchemaConverter::visit_type(const Json::Value& s, const std::string& type, const std::string& ptr,
                                                int depth) {
  if (type == "null") return use("null");
  if (type == "boolean") return use("boolean");
  if (type == "string") return visit_string(s, ptr);
  if (type == "integer") return visit_integer(s, ptr);
  if (type == "number") return visit_number(s, ptr);
  if (type == "object") return visit_object(s, ptr, depth);
  if (type == "array") return visit_array(s, ptr, depth);
  return fail("unknown type '" + type + "'", ptr);
}

Result<std::string> SchemaConverter::visit_string(const Json::Value& s, const std::string& ptr) {
  const bool lengths = s.isMember("minLength") || s.isMember("maxLength");
  if (s.isMember("pattern")) {
    if (lengths || s.isMember("format")) return fail("'pattern' together with 'minLength'/'maxLength'/'format' is not supported", ptr);
    if (!s["pattern"].isString()) return fail("'pattern' must be a string", ptr);
    auto expr = regex_to_gbnf_expression(s["pattern"].asString(), true);
    if (!expr.ok()) return fail("'pattern': " + expr.status().message(), ptr);
    return add_rule(ptr + "-pattern", "\"\\\"\" " + expr.value() + " \"\\\"\"");
  }
  if (s.isMember("format") && s["format"].isString()) {
    const std::string f = s["format"].asString();
    static const char* const kFormats[] = {"date", "time", "date-time", "uuid", "email", "ipv4", "hostname", "uri"};
    if (std::find(std::begin(kFormats), std::end(kFormats), f) != std::end(kFormats)) {
      if (lengths) return fail("'format' together with 'minLength'/'maxLength' is not supported", ptr);
      return add_rule("str-" + f, "\"\\\"\" " + use(f) + " \"\\\"\"");
    }
    // Other formats are annotations (JSON Schema 2020-12 default): any string.
  }
  if (!lengths) return use("string");
  const Json::Value& lo = s["minLength"];
  const Json::Value& hi = s["maxLength"];
  if ((!lo.isNull() && (!lo.isIntegral() || lo.asInt64() < 0)) || (!hi.isNull() && (!hi.isIntegral() || hi.asInt64() < 0))) {
    return fail("'minLength'/'maxLength' must be non-negative integers", ptr);
  }
  const int64_t min = lo.isNull() ? 0 : lo.asInt64();
  if (min > 10000 || (!hi.isNull() && hi.asInt64() > 10000)) return fail("'minLength'/'maxLength' over 10000 are not supported", ptr);
  if (!hi.isNull() && hi.asInt64() < min) return fail("'maxLength' is below 'minLength'", ptr);
  use("char");
  const std::string rep = hi.isNull() ? "{" + std::to_string(min) + ",}" : "{" + std::to_string(min) + "," + std::to_string(hi.asInt64()) + "}";
  return add_rule("str-len", "\"\\\"\" char" + rep + " \"\\\"\"");
}

Result<std::string> SchemaConverter::visit_integer(const Json::Value& s, const std::string& ptr) {
  bool has_lo = false, has_hi = false;
  int64_t lo = 0, hi = 0;
  for (const char* k : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
    if (!s.isMember(k)) continue;
    const Json::Value& v = s[k];
    if (!v.isNumeric() || v.isBool() || std::fabs(v.asDouble()) > static_cast<double>(kMaxIntegerBound)) {
      return fail(std::string("'") + k + "' must be a number within +-1e15", ptr);
    }
    const double d = v.asDouble();
    const std::string key = k;
    if (key == "minimum" || key == "exclusiveMinimum") {
      const int64_t b = key == "minimum" ? static_cast<int64_t>(std::ceil(d)) : static_cast<int64_t>(std::floor(d)) + 1;
      lo = has_lo ? std::max(lo, b) : b, has_lo = true;
    } else {
      const int64_t b = key == "maximum" ? static_cast<int64_t>(std::floor(d)) : static_cast<int64_t>(std::ceil(d)) - 1;
      hi = has_hi ? std::min(hi, b) : b, has_hi = true;
    }
  }
  if (!has_lo && !has_hi) return use("integer");
  if (has_lo && has_hi && lo > hi) return fail("no integer lies between the bounds", ptr);
  std::vector<std::string> alts;
  // Non-negative part: [max(lo, 0), hi].
  if (!has_hi || hi >= 0) {
    const std::string r = nonneg_range(has_lo ? std::max<int64_t>(lo, 0) : 0, has_hi ? hi : -1);
    if (!r.empty()) alts.push_back(r);
  }
  // Negative part: -[max(1, -hi), -lo].
  if (!has_lo || lo < 0) {
    const int64_t nlo = has_hi ? std::max<int64_t>(1, -hi) : 1;
    const std::string r = nonneg_range(nlo, has_lo ? -lo : -1);
    if (!r.empty()) alts.push_back("\"-\" " + r);
  }
  std::string body;
  for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
  return add_rule("int", body);
}

Result<std::string> SchemaConverter::visit_number(const Json::Value& s, const std::string& ptr) {
  if (s.isMember("exclusiveMaximum")) return fail("'exclusiveMaximum' on a number is not supported (only on an integer)", ptr);
  const Json::Value& min = s["minimum"];
  const Json::Value& max = s["maximum"];
  const Json::Value& xmin = s["exclusiveMinimum"];
  if (min.isNull() && max.isNull() && xmin.isNull()) return use("number");
  if (!xmin.isNull()) {
    if (!min.isNull() || !max.isNull() || !xmin.isNumeric() || xmin.asDouble() != 0) {
      return fail("'exclusiveMinimum' on a number is supported only as 0, alone", ptr);
    }
    // > 0: a non-zero integer part, or a fraction with a non-zero digit.
    return add_rule("num-positive",
                    R"(( [1-9] [0-9]{0,18} ( "." [0-9]{1,20} )? | "0." [0-9]{0,19} [1-9] [0-9]{0,19} ) ( [eE] [-+]? [0-9]{1,2} )?)");
  }
  for (const char* k : {"minimum", "maximum"}) {
    const Json::Value& v = s[k];
    if (!v.isNull() && (!v.isNumeric() || v.isBool() || std::fabs(v.asDouble()) > static_cast<double>(kMaxIntegerBound) ||
                        std::floor(v.asDouble()) != v.asDouble())) {
      return fail(std::string("'") + k + "' on a number must be an integer within +-1e15", ptr);
    }
  }
  if (!min.isNull() && max.isNull() && min.asDouble() == 0) {
    return add_rule("num-nonneg", R"(( "0" | [1-9] [0-9]{0,18} ) ( "." [0-9]{1,20} )? ( [eE] [-+]? [0-9]{1,2} )?)");
  }
  // Integer bounds lo <= x <= hi, without an exponent: x is "-"? k ( "." digits )?. Written
  // without "-", k.f is in [lo, hi] for k in [lo, hi - 1] with any fraction, or k = hi with a
  // fraction of zeros; written with "-", -(k.f) is in [lo, hi] for k in [max(0, -hi), -lo - 1]
  // with any fraction, or k = -lo with zeros. (Rounding to a double can only reach the bound.)
  const bool has_lo = !min.isNull(), has_hi = !max.isNull();
  const int64_t lo = has_lo ? static_cast<int64_t>(min.asDouble()) : 0;
  const int64_t hi = has_hi ? static_cast<int64_t>(max.asDouble()) : 0;
  if (has_lo && has_hi && lo > hi) return fail("no number lies between the bounds", ptr);
  const std::string any_fraction = R"(( "." [0-9]{1,20} )?)", zero_fraction = R"(( "." "0"{1,20} )?)";
  std::vector<std::string> alts;
  // [a, b] of k (b < 0: unbounded) with `fraction`, after `sign`.
  auto add = [&](const std::string& sign, int64_t a, int64_t b, bool unbounded, const std::string& fraction) {
    if (!unbounded && b < a) return;
    const std::string k = nonneg_range(a, unbounded ? -1 : b);
    if (!k.empty()) alts.push_back(sign + k + " " + fraction);
  };
  if (!has_hi || hi >= 0) {
    const int64_t a = has_lo ? std::max<int64_t>(lo, 0) : 0;
    add("", a, hi - 1, !has_hi, any_fraction);
    if (has_hi && hi >= a) add("", hi, hi, false, zero_fraction);
  }
  if (!has_lo || lo < 0) {
    const int64_t a = has_hi ? std::max<int64_t>(0, -hi) : 0;
    add("\"-\" ", a, -lo - 1, !has_lo, any_fraction);
    if (has_lo && -lo >= a) add("\"-\" ", -lo, -lo, false, zero_fraction);
  }
  std::string body;
  for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
  return add_rule("num-range", body);
}

// Properties in the schema's order; required ones always, optional ones optional. With
// p_0..p_{n-1} and kv_i = "name_i" ws ":" ws value_i, two families of rules:
//   rest_i  (something came before; p_i.. remain):  [required] ws "," ws kv_i rest_{i+1}
//                                                   [optional] ( ws "," ws kv_i )? rest_{i+1}
//   first_i (nothing yet, non-empty; p_i.. remain): [required] kv_i rest_{i+1}
//                                                   [optional] kv_i rest_{i+1} | first_{i+1}
// and past the last property, additional members when allowed (rest_n: ( ws "," ws extra )*,
// first_n: extra rest_n). The object is "{" ws first_0 ws "}", or "{" ws ( first_0 ws )? "}" when
// nothing is required.
Result<std::string> SchemaConverter::visit_object(const Json::Value& s, const std::string& ptr, int depth) {
  const Json::Value& props = s["properties"];
  const Json::Value& add = s["additionalProperties"];
  if (!props.isNull() && !props.isObject()) return fail("'properties' must be an object", ptr);
  if (!add.isNull() && !add.isBool() && !add.isObject()) return fail("'additionalProperties' must be a boolean or a schema", ptr);
  // No declared members and any others allowed: a free-form object, unless its members are bounded.
  const bool free_form = props.isNull() && (add.isNull() || (add.isBool() && add.asBool()));
  const bool bounded = s.isMember("propertyNames") || s.isMember("maxProperties");
  if (free_form && !s.isMember("required") && !bounded) return use("object");

  std::set<std::string> required;
  for (const Json::Value& r : s["required"]) {
    if (!r.isString()) return fail("'required' must hold strings", ptr);
    required.insert(r.asString());
  }
  // The schema text's order when known; jsoncpp's getMemberNames is sorted.
  std::vector<std::string> names;
  if (props.isObject()) {
    names = props.getMemberNames();
    if (key_order_ != nullptr) {
      auto known = key_order_->find(ptr + "/properties");
      // Same keys (duplicate keys in the text would differ in number): use the text's order.
      if (known != key_order_->end() && known->second.size() == names.size()) names = known->second;
    }
  }
  // A required name without a 'properties' entry is an additional member: its value follows
  // 'additionalProperties' (any value when that is absent or true; none when it is false).
  const bool add_false = add.isBool() && !add.asBool();
  std::string add_value;
  if (add.isObject()) FERRY_ASSIGN_OR_RETURN(add_value, visit(add, ptr + "/additionalProperties", depth + 1));
  for (const std::string& r : required) {
    if (std::find(names.begin(), names.end(), r) != names.end()) continue;
    if (add_false) {
      return fail("required property '" + r + "' has no 'properties' entry and 'additionalProperties' is false", ptr);
    }
    if (add_value.empty()) add_value = use("value");
    names.push_back(r);
  }
  std::vector<std::string> kv;
  for (const std::string& name : names) {
    std::string value;
    if (props.isObject() && props.isMember(name)) {
      FERRY_ASSIGN_OR_RETURN(value, visit(props[name], ptr + "/properties/" + json_pointer_escape(name), depth + 1));
    } else {
      value = add_value;
    }
    std::string key(1, '"');
    key += json_escape(name);
    key.push_back('"');
    kv.push_back(gbnf_literal(key) + " ws \":\" ws " + value);
  }
  // propertyNames (only maxLength) and maxProperties bound the additional members, so that a model
  // that would go on naming members still ends. Every declared name must fit both.
  int64_t name_max = -1;  // code points; -1: unbounded
  if (s.isMember("propertyNames")) {
    const Json::Value& pn = s["propertyNames"];
    for (const std::string& k : pn.isObject() ? pn.getMemberNames() : std::vector<std::string>{"?"}) {
      if (k != "maxLength" && !(k == "type" && pn[k] == "string") && !is_annotation(k)) {
        return fail("'propertyNames' supports only 'maxLength'", ptr);
      }
    }
    const Json::Value& m = pn["maxLength"];
    if (!m.isIntegral() || m.asInt64() < 0 || m.asInt64() > 10000) {
      return fail("'propertyNames' 'maxLength' must be an integer in [0, 10000]", ptr);
    }
    name_max = m.asInt64();
    for (const std::string& name : names) {
      if (static_cast<int64_t>(code_point_count(name)) > name_max) {
        return fail("property '" + name + "' is longer than 'propertyNames' 'maxLength'", ptr);
      }
    }
  }
  int64_t extra_max = -1;  // additional members; -1: unbounded
  if (s.isMember("maxProperties")) {
    const Json::Value& m = s["maxProperties"];
    if (!m.isIntegral() || m.asInt64() < 0) return fail("'maxProperties' must be a non-negative integer", ptr);
    // Counted as if every declared property were present, so the total never exceeds the bound.
    if (m.asInt64() < static_cast<int64_t>(names.size())) {
      return fail("'maxProperties' below the number of declared properties is not supported", ptr);
    }
    extra_max = std::min<int64_t>(m.asInt64() - static_cast<int64_t>(names.size()), 1000);
  }
  std::string extra;  // empty: no additional members
  if ((add.isObject() || (add.isBool() && add.asBool()) || (free_form && bounded)) && extra_max != 0) {
    const std::string key = other_key(names, name_max);
    if (!key.empty()) extra = key + " ws \":\" ws " + (add.isObject() ? add_value : use("value"));
  }
  use("ws");
  const size_t n = names.size();
  std::vector<std::string> rest(n + 1), first(n + 1);
  if (!extra.empty()) {
    // rest_n: up to extra_max more members after some; first_n: one, then up to extra_max - 1.
    const std::string comma_extra = "( ws \",\" ws " + extra + " )";
    if (extra_max < 0) {
      rest[n] = add_rule("obj-extra-rest", comma_extra + "*");
      first[n] = add_rule("obj-extra-first", extra + " " + rest[n]);
    } else {
      rest[n] = add_rule("obj-extra-rest", comma_extra + "{0," + std::to_string(extra_max) + "}");
      first[n] = add_rule("obj-extra-first", extra + " " + comma_extra + "{0," + std::to_string(extra_max - 1) + "}");
    }
  }
  for (size_t i = n; i-- > 0;) {
    const bool req = required.count(names[i]) != 0;
    const std::string tail = rest[i + 1].empty() ? "" : " " + rest[i + 1];
    rest[i] = add_rule("obj-rest", req ? "ws \",\" ws " + kv[i] + tail : "( ws \",\" ws " + kv[i] + " )?" + tail);
    std::string f = kv[i] + tail;
    if (!req && !first[i + 1].empty()) f += " | " + first[i + 1];
    first[i] = add_rule("obj-first", f);
  }
  if (first[0].empty()) return std::string(R"(( "{" ws "}" ))");
  if (!required.empty()) return add_rule("obj", "\"{\" ws " + first[0] + " ws \"}\"");
  return add_rule("obj", "\"{\" ws ( " + first[0] + " ws )? \"}\"");
}

// The name of an additional member: a JSON string that is none of the declared `names`, so that a
// declared property never comes twice or under another schema. Written without escapes (no
// \u0061 spelling of a declared name can slip through), as a trie over the names' code points:
// at each node, the closing quote (unless a name ends there), a character that leaves every name
// (then anything), or the next character of some name. With `max_length` >= 0 no name is longer
// than that many code points (the declared names are checked by the caller).
std::string SchemaConverter::other_key(const std::vector<std::string>& names, int64_t max_length) {
  struct Node {
    std::map<uint32_t, size_t> kids;
    bool end = false;
    int64_t depth = 0;  // code points from the root
  };
  std::vector<Node> trie(1);
  for (const std::string& name : names) {
    std::vector<uint32_t> cps;
    size_t pos = 0;
    uint32_t cp;
    while (pos < name.size() && decode_utf8(name, &pos, &cp)) cps.push_back(cp);
    const bool plain = pos == name.size() && std::none_of(cps.begin(), cps.end(), [](uint32_t c) {
                         return c == '"' || c == '\\' || c < 0x20;
                       });
    if (!plain) continue;  // a name that needs escapes cannot be written without them
    size_t t = 0;
    for (uint32_t c : cps) {
      auto it = trie[t].kids.find(c);
      if (it == trie[t].kids.end()) {
        trie.emplace_back();
        trie.back().depth = trie[t].depth + 1;
        it = trie[t].kids.emplace(c, trie.size() - 1).first;
      }
      t = it->second;
    }
    trie[t].end = true;
  }
  CodepointSet special;
  special.add(0, 0x1F);
  special.add('"');
  special.add('\\');
  const std::string any_char = gbnf_class(special.complement());
  // The rest of a name after `depth` code points, once it has left every declared name.
  auto free_after = [&](int64_t depth) {
    if (max_length < 0) return add_rule("key-free", any_char + "* \"\\\"\"");
    return add_rule("key-free", any_char + "{0," + std::to_string(max_length - depth - 1) + "} \"\\\"\"");
  };
  std::vector<std::string> rule(trie.size());  // empty: no name continues from there
  for (size_t t = trie.size(); t-- > 0;) {  // children were made after their parents
    CodepointSet leave = special;
    for (const auto& [c, kid] : trie[t].kids) leave.add(c);
    std::vector<std::string> alts;
    if (!trie[t].end) alts.push_back("\"\\\"\"");
    if (max_length < 0 || trie[t].depth < max_length) {
      alts.push_back(gbnf_class(leave.complement()) + " " + free_after(trie[t].depth));
    }
    for (const auto& [c, kid] : trie[t].kids) {
      if (rule[kid].empty()) continue;
      std::string one;
      append_utf8(&one, c);
      alts.push_back(gbnf_literal(one) + " " + rule[kid]);
    }
    if (alts.empty()) continue;
    std::string body;
    for (const std::string& a : alts) body += (body.empty() ? "" : " | ") + a;
    rule[t] = add_rule("key", body);
  }
  // The root always has the closing quote or a first character unless max_length is 0 and the
  // empty name is declared: then no additional name exists.
  if (rule[0].empty()) return "";
  return add_rule("other-key", "\"\\\"\" " + rule[0]);
}

Result<std::string> SchemaConverter::visit_array(const Json::Value& s, const std::string& ptr, int depth) {
  std::vector<std::string> prefix;
  const Json::Value& items = s["items"];
  const Json::Value* tuple = s.isMember("prefixItems") ? &s["prefixItems"] : items.isArray() ? &items : nullptr;
  if (tuple != nullptr) {
    if (!tuple->isArray()) return fail("'prefixItems' must be an array", ptr);
    const std::string key = &items == tuple ? "/items/" : "/prefixItems/";
    for (Json::ArrayIndex i = 0; i < tuple->size(); ++i) {
      std::string e;
      FERRY_ASSIGN_OR_RETURN(e, visit((*tuple)[i], ptr + key + std::to_string(i), depth + 1));
      prefix.push_back(e);
    }
  }
  std::string item;  // empty: no items past the prefix
  if (&items == tuple) {
    item = use("value");  // draft-07 array-form items: any value after them ("additionalItems" is refused)
  } else if (items.isNull() || (items.isBool() && items.asBool())) {
    item = use("value");
  } else if (items.isBool()) {
    item = "";
  } else {
    FERRY_ASSIGN_OR_RETURN(item, visit(items, ptr + "/items", depth + 1));
  }
  const Json::Value& lo = s["minItems"];
  const Json::Value& hi = s["maxItems"];
  if ((!lo.isNull() && (!lo.isIntegral() || lo.asInt64() < 0)) || (!hi.isNull() && (!hi.isIntegral() || hi.asInt64() < 0))) {
    return fail("'minItems'/'maxItems' must be non-negative integers", ptr);
  }
  const int64_t min = lo.isNull() ? 0 : lo.asInt64();
  int64_t max = hi.isNull() ? -1 : hi.asInt64();  // -1: unbounded
  if (min > 1000 || max > 1000) return fail("'minItems'/'maxItems' over 1000 are not supported", ptr);
  if (max >= 0 && max < min) return fail("'maxItems' is below 'minItems'", ptr);
  const auto k = static_cast<int64_t>(prefix.size());
  if (item.empty()) {
    if (min > k) return fail("'minItems' is more than the items allowed", ptr);
    max = max < 0 ? k : std::min(max, k);
  }
  use("ws");
  if (max == 0) return std::string(R"(( "[" ws "]" ))");
  auto element = [&](int64_t i) { return i < k ? prefix[static_cast<size_t>(i)] : item; };
  // tail(i): what follows once i >= 1 elements are out.
  std::string tail;
  {
    // Past the prefix: (ws "," ws item){a,b}.
    const int64_t from = std::max<int64_t>(k, 1);
    const int64_t a = std::max<int64_t>(0, min - from);
    std::string rep;
    if (!item.empty() && (max < 0 || max > from)) {
      const std::string group = add_rule("arr-more", "ws \",\" ws " + item);
      rep = max < 0 ? group + "{" + std::to_string(a) + ",}"
                    : group + "{" + std::to_string(a) + "," + std::to_string(max - from) + "}";
    }
    tail = rep;
    for (int64_t i = std::min<int64_t>(k, max < 0 ? k : max) - 1; i >= 1; --i) {
      // The element at index i, then tail(i + 1); optional when i elements are enough.
      const std::string seq = "ws \",\" ws " + element(i) + (tail.empty() ? "" : " " + tail);
      tail = add_rule("arr-tail", i >= min ? "( " + seq + " )?" : seq);
    }
  }
  const std::string body = element(0) + (tail.empty() ? "" : " " + tail) + " ws";
  if (min == 0) return add_rule("arr", "\"[\" ws ( " + body + " )? \"]\"");
  return add_rule("arr", "\"[\" ws " + body + " \"]\"");
}

}  // namespace

Result<std::string> json_schema_to_gbnf(const Json::Value& schema) {
  SchemaConverter converter(schema, nullptr);
  return converter.run();
}

Result<std::string> json_schema_text_to_gbnf(std::string_view schema_json) {
  auto schema = parse_json_text(schema_json);
  if (!schema.ok()) return schema.status().with_prefix("json_schema: not valid JSON");
  const JsonKeyOrder order = json_key_order(schema_json);
  SchemaConverter converter(schema.value(), &order);
  return converter.run();
}

std::string json_object_gbnf() {
  Json::Value schema(Json::objectValue);
  schema["type"] = "object";
  auto gbnf = json_schema_to_gbnf(schema);
  FERRY_CHECK(gbnf.ok());
  return gbnf.value();
}

}  // namespace ferry::llm::grammar
