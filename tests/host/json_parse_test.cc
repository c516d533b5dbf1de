// common/json_parse.h: the nesting pre-scan, the depth limit at its boundary, and that a text at
// the limit can be parsed, copied, written and destroyed on a stack the size of a civetweb
// worker's (100 KiB in Debian's civetweb 1.15), which is where HTTP bodies are parsed.
#include "common/json_parse.h"

#include <gtest/gtest.h>

#include <random>
#include <pthread.h>

#include <functional>
#include <string>

#include "host/json_util.h"

namespace ferry {
namespace {

std::string arrays(int depth) { return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']'); }

std::string objects(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"k\":";
  s += "1";
  s.append(static_cast<size_t>(depth), '}');
  return s;
}

TEST(JsonNestingDepth, CountsBracketsOutsideStringsAndComments) {
  EXPECT_EQ(json_nesting_depth("1", true, 100), 0);
  EXPECT_EQ(json_nesting_depth("[]", true, 100), 1);
  EXPECT_EQ(json_nesting_depth("[[],{\"a\":[[]]}]", true, 100), 4);
  EXPECT_EQ(json_nesting_depth(R"({"a":"[[[[{{{{"})", true, 100), 1);
  EXPECT_EQ(json_nesting_depth(R"({"a\"[[[":"\\",  "b":[1]})", true, 100), 2);
  EXPECT_EQ(json_nesting_depth("// [[[[\n[ /* {{{{ */ ]", true, 100), 1);
  EXPECT_EQ(json_nesting_depth("// [[[[\n[]", false, 100), 5);
  EXPECT_EQ(json_nesting_depth(arrays(100000), true, 100000), 100000);
  // Stops as soon as the depth passes `stop_above`.
  EXPECT_EQ(json_nesting_depth(arrays(100000), true, 10), 11);
  // Malformed text still gets a number (unbalanced closers do not go negative).
  EXPECT_EQ(json_nesting_depth("]]]][[", true, 100), 2);
  EXPECT_EQ(json_nesting_depth("[\"unterminated [[[", true, 100), 1);
}

TEST(ParseJsonText, RefusesNestingOverTheLimitBeforeParsing) {
  for (const auto& make : {std::function<std::string(int)>(arrays), std::function<std::string(int)>(objects)}) {
    EXPECT_TRUE(parse_json_text(make(kMaxJsonDepth)).ok());
    for (int depth : {kMaxJsonDepth + 1, 198, 1000, 100000}) {
      auto r = parse_json_text(make(depth));
      ASSERT_FALSE(r.ok()) << depth;
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("deeper than " + std::to_string(kMaxJsonDepth)), std::string::npos)
          << r.status().message();
    }
  }
  JsonParseOptions shallow;
  shallow.max_depth = 2;
  EXPECT_TRUE(parse_json_text("[[1]]", shallow).ok());
  EXPECT_FALSE(parse_json_text("[[[1]]]", shallow).ok());
  // max_depth never goes above kMaxJsonDepth.
  JsonParseOptions deep;
  deep.max_depth = 1000;
  EXPECT_FALSE(parse_json_text(arrays(kMaxJsonDepth + 1), deep).ok());
}

TEST(ParseJsonText, OptionsKeepEachReadersDialect) {
  EXPECT_FALSE(parse_json_text("{} x").ok());
  EXPECT_TRUE(parse_json_text("{} x", kJsonFileOptions).ok());
  EXPECT_FALSE(parse_json_text(R"({"a":1,"a":2})").ok());
  auto last = parse_json_text(R"({"a":1,"a":2})", kJsonFileOptions);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ((*last)["a"].asInt(), 2);
  EXPECT_TRUE(parse_json_text("// hand-written\n{\"a\": 1}").ok());
  auto bad = parse_json_text("{\"a\": }");
  ASSERT_FALSE(bad.ok());
  EXPECT_FALSE(bad.status().message().empty());
}

// Runs `fn` on a thread with a `stack_bytes` stack (a stack overflow there kills the test binary).
void run_on_stack(size_t stack_bytes, const std::function<void()>& fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, stack_bytes), 0);
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, trampoline, const_cast<std::function<void()>*>(&fn)), 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

// civetweb 1.15 (Debian) starts its workers with pthread_attr_setstacksize(..., 0x19000).
constexpr size_t kCivetwebWorkerStackBytes = 0x19000;

TEST(ParseJsonText, TheDeepestAcceptedTextFitsACivetwebWorkerStack) {
  bool parsed_arrays = false, parsed_objects = false, refused = false;
  run_on_stack(kCivetwebWorkerStackBytes, [&] {
    // What a handler does with a body: parse (host::parse_json, as read_json_body), copy, write
    // it back out, destroy (all recursive in jsoncpp).
    auto a = host::parse_json(arrays(kMaxJsonDepth), "body");
    auto o = host::parse_json(objects(kMaxJsonDepth), "body");
    parsed_arrays = a.ok() && host::to_json(Json::Value(a.value())) == arrays(kMaxJsonDepth);
    parsed_objects = o.ok() && !host::to_json(Json::Value(o.value())).empty();
    refused = !host::parse_json(arrays(100000), "body").ok();
  });
  EXPECT_TRUE(parsed_arrays);
  EXPECT_TRUE(parsed_objects);
  EXPECT_TRUE(refused);
}

TEST(RawJsonMember, ReturnsTheValueTextAsWrittenKeyOrderIncluded) {
  const std::string text =
      R"( {"a": 1, "s": "x,}\"]", "schema" : {"properties": {"zeta": {}, "alpha": [1, {"b": "}"}]}},)"
      R"( "n": -1.5e3, "t": true, "k\"q": null } )";
  EXPECT_EQ(raw_json_member(text, {"a"}).value_or("?"), "1");
  EXPECT_EQ(raw_json_member(text, {"s"}).value_or("?"), R"("x,}\"]")");
  EXPECT_EQ(raw_json_member(text, {"schema", "properties"}).value_or("?"), R"({"zeta": {}, "alpha": [1, {"b": "}"}]})");
  EXPECT_EQ(raw_json_member(text, {"schema", "properties", "alpha"}).value_or("?"), R"([1, {"b": "}"}])");
  EXPECT_EQ(raw_json_member(text, {"n"}).value_or("?"), "-1.5e3");
  EXPECT_EQ(raw_json_member(text, {"t"}).value_or("?"), "true");
  EXPECT_EQ(raw_json_member(text, {"k\"q"}).value_or("?"), "null");
  EXPECT_EQ(raw_json_member(text, {}).value_or("?"), text.substr(1, text.size() - 2));
  // Absent keys, steps into non-objects, and text that is not plain JSON.
  EXPECT_FALSE(raw_json_member(text, {"missing"}));
  EXPECT_FALSE(raw_json_member(text, {"a", "b"}));
  EXPECT_FALSE(raw_json_member(text, {"schema", "properties", "alpha", "b"}));
  EXPECT_FALSE(raw_json_member(R"({"a": {"b": 1})", {"a", "b"}));       // unclosed
  EXPECT_FALSE(raw_json_member(R"({"a": {/* c */ "b": 1}})", {"a", "b"}));  // comment
  EXPECT_FALSE(raw_json_member(R"({"a" 1})", {"a"}));
  EXPECT_FALSE(raw_json_member("", {"a"}));
  // The first of duplicate keys.
  EXPECT_EQ(raw_json_member(R"({"a": 1, "a": 2})", {"a"}).value_or("?"), "1");
}

TEST(RawJsonMember, AgreesWithTheParserOnRandomDocuments) {
  // Documents written by jsoncpp from random values: every top-level member's raw text parses back
  // to the same value.
  std::mt19937 gen(3);
  for (int round = 0; round < 200; ++round) {
    Json::Value doc(Json::objectValue);
    const int members = 1 + static_cast<int>(gen() % 5);
    for (int m = 0; m < members; ++m) {
      Json::Value v;
      switch (gen() % 5) {
        case 0: v = static_cast<int>(gen() % 1000) - 500; break;
        case 1: v = std::string("s\"}],{[\\") + std::to_string(gen() % 10); break;
        case 2: v["x"]["y"].append(static_cast<int>(gen() % 3)); v["z"] = "]"; break;
        case 3: v.append(Json::Value(Json::objectValue)); v.append("{"); break;
        default: v = gen() % 2 == 0; break;
      }
      std::string key = "k";  // (not "k" + ...: GCC 12 warns falsely on that, -Wrestrict)
      key += std::to_string(m);
      doc[key] = v;
    }
    Json::StreamWriterBuilder w;
    w["indentation"] = round % 2 == 0 ? "" : "  ";
    const std::string text = Json::writeString(w, doc);
    for (const std::string& key : doc.getMemberNames()) {
      auto raw = raw_json_member(text, {key});
      ASSERT_TRUE(raw.has_value()) << text << " " << key;
      auto back = parse_json_text(*raw);
      ASSERT_TRUE(back.ok()) << *raw;
      EXPECT_EQ(back.value(), doc[key]) << text << " " << key;
    }
  }
}

}  // namespace
}  // namespace ferry
