// The host's reading of a backend's loading-progress report (ABI 1.2): the fields inside its
// struct_size only, and the reason and log line the index and the log show.
#include "host/load_progress.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <limits>

namespace ferry::host {
namespace {

ferry_load_progress report(const char* stage, uint64_t bytes_done, uint64_t bytes_total, uint64_t tensors_done,
                           uint64_t tensors_total, double bps) {
  ferry_load_progress p{};
  p.struct_size = sizeof(p);
  p.stage = stage;
  p.bytes_done = bytes_done;
  p.bytes_total = bytes_total;
  p.tensors_done = tensors_done;
  p.tensors_total = tensors_total;
  p.bytes_per_second = bps;
  return p;
}

TEST(LoadProgressText, ReasonAndLogSayStagePercentSizesTensorsAndRate) {
  auto p = copy_load_progress(report("loading weights", 1'200'000'000, 4'400'000'000, 310, 1100, 850e6));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->percent(), 27);
  EXPECT_FALSE(p->complete());
  EXPECT_EQ(load_progress_reason(*p), "loading weights: 27 % (1.2 of 4.4 GB, 850 MB/s)");
  EXPECT_EQ(load_progress_log("llama", 1, *p),
            "loading model 'llama' version 1: loading weights: 1.2/4.4 GB (27 %), 310 of 1100 tensors, 850 MB/s");
}

TEST(LoadProgressText, SmallModelsInMegabytesAndPercentIsRoundedDown) {
  auto p = copy_load_progress(report("loading weights, converting to int8", 536'999'999, 537'000'000, 146, 147, 0));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->percent(), 99);  // 100 only when done
  EXPECT_EQ(load_progress_reason(*p), "loading weights, converting to int8: 99 % (537 of 537 MB)");
  auto done = copy_load_progress(report("loading weights", 5000000, 5000000, 3, 3, 2.6e6));
  EXPECT_TRUE(done->complete());
  EXPECT_EQ(load_progress_reason(*done), "loading weights: 100 % (5.0 of 5.0 MB, 3 MB/s)");
}

TEST(LoadProgressText, WithoutByteTotalsTensorsGiveThePercent) {
  auto p = copy_load_progress(report("loading weights", 0, 0, 3, 12, 0));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(load_progress_reason(*p), "loading weights: 25 % (3 of 12 tensors)");
  EXPECT_EQ(load_progress_log("m", 2, *p), "loading model 'm' version 2: loading weights: 3 of 12 tensors (25 %)");
  auto nothing = copy_load_progress(report("warming up", 0, 0, 0, 0, std::numeric_limits<double>::quiet_NaN()));
  EXPECT_EQ(nothing->percent(), -1);
  EXPECT_FALSE(nothing->complete());
  EXPECT_EQ(nothing->bytes_per_second, 0.0);  // NaN from a backend is not shown
  EXPECT_EQ(load_progress_reason(*nothing), "warming up");
  EXPECT_EQ(load_progress_log("m", 1, *nothing), "loading model 'm' version 1: warming up");
}

TEST(LoadProgressText, ReadsOnlyFieldsInsideStructSizeAndRefusesAMissingStage) {
  auto full = report("loading weights", 10, 20, 1, 2, 5e6);
  full.struct_size = offsetof(ferry_load_progress, tensors_done);  // an older, shorter report
  auto p = copy_load_progress(full);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->bytes_total, 20u);
  EXPECT_EQ(p->tensors_total, 0u);
  EXPECT_EQ(p->bytes_per_second, 0.0);
  EXPECT_FALSE(copy_load_progress(report(nullptr, 0, 0, 0, 0, 0)).has_value());
  auto tiny = report("x", 0, 0, 0, 0, 0);
  tiny.struct_size = sizeof(uint32_t);  // no room for a stage
  EXPECT_FALSE(copy_load_progress(tiny).has_value());
  std::string long_stage(500, 's');
  EXPECT_EQ(copy_load_progress(report(long_stage.c_str(), 0, 0, 0, 0, 0))->stage.size(), 200u);
}

}  // namespace
}  // namespace ferry::host
