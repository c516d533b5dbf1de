// LoadProgress (the rate limit, the first and final reports, the MB/s math on a fake clock) and the
// WeightLoader's use of it: every planned tensor counted once, bytes as stored, a final report at
// 100 %, and a stage that says when the load converts.
#include "backend/llm/model/load_progress.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "backend/llm/model/architecture.h"
#include "backend/llm/model/model_weights.h"
#include "tests/llm/model/test_safetensors_writer.h"

namespace ferry::llm {
namespace {

using namespace std::chrono_literals;
using Time = std::chrono::steady_clock::time_point;

struct FakeClock {
  Time now{};
  LoadProgress::Clock fn() {
    return [this] { return now; };
  }
};

TEST(LoadProgress, ReportsAtStartThenAtMostOncePerIntervalAndAlwaysTheFinal) {
  FakeClock clock;
  std::vector<LoadProgressSnapshot> seen;
  LoadProgress p("loading weights", 4, 400, [&](const LoadProgressSnapshot& s) { seen.push_back(s); }, 500ms,
                 clock.fn());
  p.start();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].tensors_done, 0);
  EXPECT_FALSE(seen[0].final);

  clock.now += 100ms;
  p.add(1, 100);  // 100 ms after the last report: too soon
  EXPECT_EQ(seen.size(), 1u);
  clock.now += 400ms;
  p.add(1, 100);  // 500 ms: due
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].tensors_done, 2);
  EXPECT_EQ(seen[1].bytes_done, 200);
  clock.now += 100ms;
  p.add(1, 100);
  EXPECT_EQ(seen.size(), 2u);
  clock.now += 100ms;
  p.add(1, 100);  // the last tensor: reported at once, final
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[2].final);
  EXPECT_EQ(seen[2].tensors_done, 4);
  EXPECT_EQ(seen[2].bytes_done, 400);

  clock.now += 10s;
  p.add(1, 1);  // nothing after the final report
  p.finish();
  EXPECT_EQ(seen.size(), 3u);
}

TEST(LoadProgress, RateIsBytesDoneOverTheTimeSinceStart) {
  FakeClock clock;
  std::vector<LoadProgressSnapshot> seen;
  LoadProgress p("loading weights", 10, 4'400'000'000, [&](const LoadProgressSnapshot& s) { seen.push_back(s); },
                 500ms, clock.fn());
  clock.now += 3s;  // time before start() does not count
  p.start();
  EXPECT_EQ(seen.back().bytes_per_second, 0.0);  // no time has passed yet
  clock.now += 2s;
  p.add(3, 1'700'000'000);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_DOUBLE_EQ(seen.back().seconds, 2.0);
  EXPECT_DOUBLE_EQ(seen.back().bytes_per_second, 850e6);  // 1.7 GB in 2 s: 850 MB/s
  clock.now += 1500ms;
  p.add(7, 2'700'000'000);
  EXPECT_TRUE(seen.back().final);
  EXPECT_DOUBLE_EQ(seen.back().bytes_per_second, 4.4e9 / 3.5);
}

TEST(LoadProgress, FinishReportsALoadThatEndedShortOnceAndAnEmptyCallbackIsSilent) {
  FakeClock clock;
  std::vector<LoadProgressSnapshot> seen;
  LoadProgress p("loading weights", 3, 300, [&](const LoadProgressSnapshot& s) { seen.push_back(s); }, 500ms,
                 clock.fn());
  p.add(1, 100);  // add() starts the clock when start() was not called
  ASSERT_EQ(seen.size(), 1u);
  p.finish();
  p.finish();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().tensors_done, 1);

  LoadProgress silent("x", 1, 1, nullptr, 500ms, clock.fn());
  silent.start();
  silent.add(1, 1);
  EXPECT_TRUE(silent.last().final);
}

ModelConfig tiny_config(bool tied) {
  auto c = parse_model_config(std::string(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
    "intermediate_size":96,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,
    "vocab_size":50,"torch_dtype":"bfloat16","tie_word_embeddings":)") +
                              (tied ? "true" : "false") + "}");
  FERRY_CHECK(c.ok());
  return c.value();
}

int64_t planned_bytes(const ModelConfig& c, int64_t bytes_per_value) {
  int64_t n = 0;
  for (const auto& s : plan_weights(c)) n += s.numel() * bytes_per_value;
  return n;
}

// Loads the model through its architecture with a progress callback, as the backend does.
std::vector<LoadProgressSnapshot> load_reports(const ModelConfig& c, const ModelWeights& w, WeightDType dtype) {
  std::vector<LoadProgressSnapshot> seen;
  WeightLoadOptions options;
  options.dtype = dtype;
  options.on_progress = [&](const LoadProgressSnapshot& s) { seen.push_back(s); };
  auto model = load_causal_lm(c, w, options);
  EXPECT_TRUE(model.ok()) << model.status().to_string();
  return seen;
}

TEST(WeightLoaderProgress, CountsEveryPlannedTensorOnceAndEndsFinalAt100PercentSayingItConverts) {
  for (bool tied : {false, true}) {  // tied: the embedding is read as a table and as lm_head
    const ModelConfig c = tiny_config(tied);
    const auto reports = load_reports(c, ModelWeights::dummy(c, 7), WeightDType::kInt8);
    ASSERT_GE(reports.size(), 2u);
    EXPECT_EQ(reports.front().tensors_done, 0);
    const LoadProgressSnapshot& last = reports.back();
    EXPECT_TRUE(last.final);
    EXPECT_EQ(last.stage, "loading dummy weights, converting to int8");
    EXPECT_EQ(last.tensors_total, static_cast<int64_t>(plan_weights(c).size()));
    EXPECT_EQ(last.tensors_done, last.tensors_total);
    EXPECT_EQ(last.bytes_total, planned_bytes(c, 2));  // dummy weights stand for bf16
    EXPECT_EQ(last.bytes_done, last.bytes_total);
    for (size_t i = 0; i + 1 < reports.size(); ++i) {
      EXPECT_FALSE(reports[i].final);
      EXPECT_LE(reports[i].bytes_done, reports[i + 1].bytes_done);
    }
  }
}

TEST(WeightLoaderProgress, FusedTensorsOfPhi3CountOnceAtTheirFullSize) {
  // Phi-3 stores q, k and v in one qkv_proj and gate and up in one gate_up_proj.
  auto c = parse_model_config(R"({"architectures":["Phi3ForCausalLM"],"hidden_size":64,"intermediate_size":96,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":50,
    "torch_dtype":"bfloat16","tie_word_embeddings":false})");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  const auto reports = load_reports(c.value(), ModelWeights::dummy(c.value(), 3), WeightDType::kInt8);
  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().final);
  EXPECT_EQ(reports.back().tensors_done, static_cast<int64_t>(plan_weights(c.value()).size()));
  EXPECT_EQ(reports.back().bytes_done, planned_bytes(c.value(), 2));
}

TEST(WeightLoaderProgress, RowRangesOfOneTensorAddUpToItOnceAndARereadIsNotCounted) {
  const ModelConfig c = tiny_config(false);
  const ModelWeights w = ModelWeights::dummy(c, 5);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";  // [64, 64]: 8 KiB as bf16
  std::vector<LoadProgressSnapshot> seen;
  WeightLoadOptions options;
  options.dtype = WeightDType::kInt8;
  options.on_progress = [&](const LoadProgressSnapshot& s) { seen.push_back(s); };
  WeightLoader loader(w, options);
  ASSERT_TRUE(loader.matrix_rows(q, 0, 21).ok());  // 21/64 of the rows: bytes in proportion
  EXPECT_EQ(loader.progress().tensors_done, 0);
  ASSERT_TRUE(loader.matrix_rows(q, 21, 43).ok());
  ASSERT_TRUE(loader.matrix_rows(q, 43, 64).ok());
  EXPECT_EQ(loader.progress().tensors_done, 1);
  ASSERT_TRUE(loader.matrix(q).ok());  // read again: not counted twice
  EXPECT_EQ(loader.progress().tensors_done, 1);
  // Every other planned tensor: the final report has the checkpoint's bytes, exactly.
  for (const auto& s : plan_weights(c)) {
    if (s.name == q) continue;
    if (s.shape.size() == 2 && s.name != "model.embed_tokens.weight") {
      ASSERT_TRUE(loader.matrix(s.name).ok()) << s.name;
    } else {
      ASSERT_TRUE(loader.vector(s.name).ok()) << s.name;
    }
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().bytes_done, planned_bytes(c, 2));
  EXPECT_EQ(seen.back().tensors_done, seen.back().tensors_total);
}

TEST(WeightLoaderProgress, Bf16SafetensorsReadInPlaceIsLoadingWithoutConverting) {
  const ModelConfig c = tiny_config(false);
  const auto dir = testing::make_temp_dir("load_progress");
  std::vector<testing::FakeTensor> fakes;
  for (const auto& s : plan_weights(c)) fakes.push_back({s.name, "BF16", s.shape, 2});
  testing::write_safetensors(dir / "model.safetensors", fakes);
  auto w = ModelWeights::load_safetensors(c, dir);
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  auto reports = load_reports(c, w.value(), WeightDType::kAuto);
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().stage, "loading weights");
  EXPECT_TRUE(reports.back().final);
  EXPECT_EQ(reports.back().bytes_done, planned_bytes(c, 2));
  reports = load_reports(c, w.value(), WeightDType::kInt4);
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().stage, "loading weights, converting to int4");
  EXPECT_EQ(reports.back().tensors_done, reports.back().tensors_total);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::llm
