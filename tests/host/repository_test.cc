// Repository reading: version folders and policies, HF snapshot drop-in, config errors that name
// the key and the file.
#include "host/repository.h"

#include <gtest/gtest.h>

#include "tests/host/test_util.h"

namespace ferry::host {
namespace {

using testing::TempDir;
using testing::write_file;

std::vector<int64_t> versions_of(const ModelSpec& s) {
  std::vector<int64_t> v;
  for (const auto& x : s.versions) v.push_back(x.version);
  return v;
}

TEST(Repository, LatestVersionByDefaultAndPolicies) {
  TempDir repo;
  write_file(repo / "m/config.json", R"({"backend":"echo"})");
  for (const char* v : {"1", "2", "10"}) write_file(repo / (std::string("m/") + v + "/x"), "");
  write_file(repo / "m/notaversion/x", "");
  write_file(repo / "m/01/x", "");  // leading zero: not a version folder
  auto spec = read_model(repo.path(), "m");
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(versions_of(spec.value()), (std::vector<int64_t>{10}));
  EXPECT_EQ(spec->backend, "echo");
  EXPECT_EQ(spec->backend_config, "{}");

  write_file(repo / "m/config.json", R"({"backend":"echo","version_policy":{"latest":{"num_versions":2}}})");
  EXPECT_EQ(versions_of(read_model(repo.path(), "m").value()), (std::vector<int64_t>{2, 10}));
  write_file(repo / "m/config.json", R"({"backend":"echo","version_policy":{"all":{}}})");
  EXPECT_EQ(versions_of(read_model(repo.path(), "m").value()), (std::vector<int64_t>{1, 2, 10}));
  write_file(repo / "m/config.json", R"({"backend":"echo","version_policy":{"specific":{"versions":[2,1]}}})");
  EXPECT_EQ(versions_of(read_model(repo.path(), "m").value()), (std::vector<int64_t>{1, 2}));
}

TEST(Repository, BackendKeysPassThroughAndHostKeysDoNot) {
  TempDir repo;
  write_file(repo / "m/config.json", R"({"backend":"echo","name":"m","inputs":[],"custom":{"a":1}})");
  write_file(repo / "m/1/x", "");
  auto spec = read_model(repo.path(), "m");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->backend_config, R"({"custom":{"a":1},"inputs":[]})");
}

TEST(Repository, HuggingFaceSnapshotIsVersionOneOfTheLlmBackend) {
  TempDir repo;
  write_file(repo / "tiny/config.json", R"({"architectures":["LlamaForCausalLM"],"hidden_size":64})");
  write_file(repo / "tiny/tokenizer.json", "{}");
  auto spec = read_model(repo.path(), "tiny");
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(spec->backend, "llm");
  ASSERT_EQ(spec->versions.size(), 1u);
  EXPECT_EQ(spec->versions[0].version, 1);
  EXPECT_EQ(spec->versions[0].path, spec->path);
  EXPECT_EQ(spec->config_path, "");
}

TEST(Repository, ConfigErrorsNameTheKeyAndTheFile) {
  TempDir repo;
  write_file(repo / "m/1/x", "");
  struct Case {
    const char* config;
    const char* needle;
  } cases[] = {
      {R"({"backend":"echo",)", "malformed JSON"},
      {R"([1,2])", "JSON object"},
      {R"({"backend":7})", "'backend'"},
      {R"({"backend":"echo","name":"other"})", "'name'"},
      {R"({"backend":"echo","version_policy":{"latest":{"num_versions":0}}})", "version_policy"},
      {R"({"backend":"echo","version_policy":{"specific":{"versions":[3]}}})", "version 3"},
      {R"({"backend":"echo","version_policy":"all"})", "version_policy"},
  };
  for (const auto& c : cases) {
    write_file(repo / "m/config.json", c.config);
    auto spec = read_model(repo.path(), "m");
    ASSERT_FALSE(spec.ok()) << c.config;
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << c.config;
    EXPECT_NE(spec.status().message().find(c.needle), std::string::npos) << spec.status().message();
    EXPECT_NE(spec.status().message().find("config.json"), std::string::npos) << spec.status().message();
  }
}

TEST(Repository, NoVersionFolderIsAnError) {
  TempDir repo;
  write_file(repo / "m/config.json", R"({"backend":"echo"})");
  auto spec = read_model(repo.path(), "m");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("no version folder"), std::string::npos);
}

TEST(Repository, NamesCannotEscapeTheRepository) {
  for (const char* bad : {"", ".", "..", "../etc", "a/b", ".hidden", "a b", "x\ny"}) {
    EXPECT_FALSE(valid_model_name(bad)) << bad;
  }
  for (const char* good : {"echo", "llama-3.1_8B", "m.v2"}) EXPECT_TRUE(valid_model_name(good)) << good;
  TempDir repo;
  EXPECT_EQ(read_model(repo.path(), "../x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(read_model(repo.path(), "missing").status().code(), StatusCode::kNotFound);
}

TEST(Repository, ListModelsSkipsFilesAndHiddenFolders) {
  TempDir repo;
  write_file(repo / "b/1/x", "");
  write_file(repo / "a/1/x", "");
  write_file(repo / ".git/x", "");
  write_file(repo / "README.md", "");
  auto names = list_models(repo.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names.value(), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace ferry::host
