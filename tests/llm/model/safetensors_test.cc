// safetensors reading: valid single and sharded files, and every broken-file case failing with a
// Status that names the problem (never a crash). Files are built in a temp dir.
#include <gtest/gtest.h>

#include "backend/llm/model/safetensors.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

using testing::FakeTensor;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("st");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(SafetensorsTest, ReadsViewsOfAllDtypes) {
  testing::write_safetensors(dir_ / "model.safetensors",
                             {{"a", "F32", {3, 5}, 4}, {"b", "BF16", {7}, 2}, {"c", "F16", {2, 2}, 2}, {"d", "I64", {2}, 8}});
  auto f = SafetensorsFile::open(dir_ / "model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  const TensorView* a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, kernels::DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(a->num_bytes, 60u);
  EXPECT_FLOAT_EQ(static_cast<const float*>(a->data)[6], 7 * 0.25f);
  EXPECT_EQ(f->find("b")->dtype, kernels::DType::kBF16);
  EXPECT_EQ(f->find("c")->dtype, kernels::DType::kF16);
  EXPECT_FALSE(f->find("d")->dtype_supported);
  EXPECT_EQ(f->find("d")->dtype_name, "I64");
  EXPECT_EQ(f->find("zzz"), nullptr);
}

TEST_F(SafetensorsTest, TruncatedFileNamesTheTensor) {
  testing::write_safetensors(dir_ / "t.safetensors", {{"first", "F32", {4}, 4}, {"last", "F32", {100}, 4}}, 17);
  auto f = SafetensorsFile::open(dir_ / "t.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("'last'"), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find("truncated"), std::string::npos);
}

TEST_F(SafetensorsTest, BadHeaders) {
  testing::write_text(dir_ / "short.safetensors", "abc");
  EXPECT_FALSE(SafetensorsFile::open(dir_ / "short.safetensors").ok());

  std::string huge(8, '\0');
  huge[6] = 0x7f;  // header length far beyond the file
  testing::write_text(dir_ / "huge.safetensors", huge + "{}");
  auto h = SafetensorsFile::open(dir_ / "huge.safetensors");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("header length"), std::string::npos);

  std::string notjson = std::string("\x08\0\0\0\0\0\0\0", 8) + "{garbage";
  testing::write_text(dir_ / "nj.safetensors", notjson);
  auto nj = SafetensorsFile::open(dir_ / "nj.safetensors");
  ASSERT_FALSE(nj.ok());
  EXPECT_NE(nj.status().message().find("JSON"), std::string::npos);

  // An entry whose byte span does not match its shape.
  const std::string bad_span = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})";
  std::string file(8, '\0');
  file[0] = static_cast<char>(bad_span.size());
  testing::write_text(dir_ / "span.safetensors", file + bad_span + std::string(16, 'x'));
  auto sp = SafetensorsFile::open(dir_ / "span.safetensors");
  ASSERT_FALSE(sp.ok());
  EXPECT_NE(sp.status().message().find("'w'"), std::string::npos);

  const std::string bad_dtype = R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})";
  file[0] = static_cast<char>(bad_dtype.size());
  testing::write_text(dir_ / "dt.safetensors", file + bad_dtype + std::string(16, 'x'));
  auto dt = SafetensorsFile::open(dir_ / "dt.safetensors");
  ASSERT_FALSE(dt.ok());
  EXPECT_NE(dt.status().message().find("Q4"), std::string::npos);

  auto missing = SafetensorsFile::open(dir_ / "nope.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, ShardedIndex) {
  testing::write_safetensors(dir_ / "model-00001-of-00002.safetensors", {{"x", "F32", {2, 3}, 4}});
  testing::write_safetensors(dir_ / "model-00002-of-00002.safetensors", {{"y", "BF16", {5}, 2}});
  testing::write_text(dir_ / "model.safetensors.index.json",
                      R"({"metadata":{"total_size":26},"weight_map":{"x":"model-00001-of-00002.safetensors",
                          "y":"model-00002-of-00002.safetensors"}})");
  auto store = TensorStore::open_dir(dir_);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ(store->size(), 2u);
  ASSERT_NE(store->find("y"), nullptr);
  EXPECT_EQ(store->find("y")->shape, std::vector<int64_t>{5});

  // The index names a tensor its shard does not hold.
  testing::write_text(dir_ / "model.safetensors.index.json",
                      R"({"weight_map":{"x":"model-00001-of-00002.safetensors","z":"model-00002-of-00002.safetensors"}})");
  auto bad = TensorStore::open_dir(dir_);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'z'"), std::string::npos);

  // A shard path that escapes the folder.
  testing::write_text(dir_ / "model.safetensors.index.json", R"({"weight_map":{"x":"../evil.safetensors"}})");
  EXPECT_FALSE(TensorStore::open_dir(dir_).ok());
}

}  // namespace
}  // namespace ferry::llm
