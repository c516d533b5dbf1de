// KServe v2 JSON <-> tensors: every datatype round-trips, shapes and types are checked, generate
// maps top-level keys to inputs or parameters.
#include "host/http/kserve_json.h"

#include <gtest/gtest.h>

#include "host/json_util.h"

namespace ferry::host {
namespace {

Json::Value J(const std::string& text) { return parse_json(text, "test").value(); }

TEST(KserveJson, EveryDatatypeRoundTrips) {
  const char* tensors[] = {
      R"({"name":"b","datatype":"BOOL","shape":[3],"data":[true,false,true]})",
      R"({"name":"i","datatype":"INT32","shape":[2,2],"data":[[1,-2],[3,2147483647]]})",
      R"({"name":"l","datatype":"INT64","shape":[2],"data":[-9007199254740993,5]})",
      R"({"name":"h","datatype":"FP16","shape":[3],"data":[1.5,-0.25,65504]})",
      R"({"name":"bf","datatype":"BF16","shape":[2],"data":[1.5,-256]})",
      R"({"name":"f","datatype":"FP32","shape":[2],"data":[0.1,-3.5]})",
      R"({"name":"s","datatype":"BYTES","shape":[2],"data":["héllo",""]})",
  };
  for (const char* text : tensors) {
    Json::Value in = J(text);
    auto t = tensor_from_json(in);
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().to_string();
    Json::Value out = tensor_to_json(t.value());
    EXPECT_EQ(out["name"], in["name"]);
    EXPECT_EQ(out["datatype"], in["datatype"]);
    EXPECT_EQ(out["shape"], in["shape"]);
    Json::Value flat(Json::arrayValue);
    for (const auto& x : in["data"]) {
      if (x.isArray()) for (const auto& y : x) flat.append(y);
      else flat.append(x);
    }
    ASSERT_EQ(out["data"].size(), flat.size()) << text;
    for (Json::ArrayIndex i = 0; i < flat.size(); ++i) {
      if (flat[i].isDouble()) EXPECT_FLOAT_EQ(out["data"][i].asFloat(), flat[i].asFloat()) << text;
      else EXPECT_EQ(out["data"][i], flat[i]) << text;
    }
  }
}

TEST(KserveJson, BadTensorsAreRejectedNamingTheInput) {
  struct Case {
    const char* text;
    const char* needle;
  } cases[] = {
      {R"({"name":"x","datatype":"FP32","shape":[3],"data":[1,2]})", "3 elements"},
      {R"({"name":"x","datatype":"INT32","shape":[1],"data":["a"]})", "INT32"},
      {R"({"name":"x","datatype":"INT32","shape":[1],"data":[4294967296]})", "INT32"},
      {R"({"name":"x","datatype":"FLOAT","shape":[1],"data":[1]})", "unknown datatype"},
      {R"({"name":"x","datatype":"FP32","shape":[-1],"data":[1]})", "shape"},
      {R"({"name":"x","datatype":"FP32","shape":"1","data":[1]})", "shape"},
      {R"({"name":"x","datatype":"BYTES","shape":[1],"data":[1]})", "strings"},
      {R"({"name":"x","datatype":"BOOL","shape":[1],"data":[1]})", "BOOL"},
      {R"({"name":"x","datatype":"FP32","shape":[1]})", "missing 'data'"},
      {R"({"datatype":"FP32","shape":[1],"data":[1]})", "name"},
  };
  for (const auto& c : cases) {
    auto t = tensor_from_json(J(c.text));
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(c.needle), std::string::npos) << t.status().message();
  }
}

TEST(KserveJson, InferRequestTakesIdParametersPriorityTimeout) {
  auto spec = infer_request_from_json(J(R"({"id":"r1","inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1]}],
      "parameters":{"priority":2,"timeout":1500,"temperature":0.5}})"));
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(spec->client_id, "r1");
  EXPECT_EQ(spec->priority, 2u);
  EXPECT_EQ(spec->timeout_us, 1500u);
  EXPECT_EQ(J(spec->parameters_json)["temperature"].asDouble(), 0.5);
  EXPECT_FALSE(infer_request_from_json(J(R"({"inputs":[]})")).ok());
  EXPECT_FALSE(infer_request_from_json(J(R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1]},
      {"name":"x","datatype":"INT32","shape":[1],"data":[1]}]})")).ok()) << "duplicate input";
  EXPECT_FALSE(infer_request_from_json(J(R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1]}],
      "parameters":{"priority":-1}})")).ok());
}

TEST(KserveJson, GenerateMapsKnownInputsAndTheRestToParameters) {
  Json::Value meta = J(R"([{"name":"text_input","datatype":"BYTES","shape":[-1]},
                          {"name":"ids","datatype":"INT32","shape":[-1]}])");
  auto spec = generate_request_from_json(
      J(R"({"text_input":"hi","ids":[1,2,3],"max_tokens":5,"parameters":{"temperature":0.1,"priority":1}})"), meta);
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  ASSERT_EQ(spec->inputs.size(), 2u);
  EXPECT_EQ(spec->inputs[0].name, "ids");
  EXPECT_EQ(spec->inputs[0].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(spec->inputs[1].name, "text_input");
  Json::Value p = J(spec->parameters_json);
  EXPECT_EQ(p["max_tokens"].asInt(), 5);
  EXPECT_EQ(p["temperature"].asDouble(), 0.1);
  EXPECT_EQ(spec->priority, 1u);
  EXPECT_FALSE(p.isMember("text_input"));
  EXPECT_FALSE(generate_request_from_json(J(R"({"ids":["x"]})"), meta).ok());
}

}  // namespace
}  // namespace ferry::host
