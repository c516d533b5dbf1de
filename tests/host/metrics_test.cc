// MetricsRegistry: values, validation, and that render() is valid Prometheus text exposition.
#include "host/metrics.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/host/exposition_parser.h"

namespace ferry::host {
namespace {

TEST(Metrics, CounterGaugeHistogramRenderAsValidExposition) {
  MetricsRegistry reg;
  auto c = reg.create_series(MetricKind::kCounter, "ferry_test_total", "A counter", {{"model", "m\"1\\\n"}});
  auto g = reg.create_series(MetricKind::kGauge, "ferry_test_gauge", "A gauge", {});
  auto h = reg.create_series(MetricKind::kHistogram, "ferry_test_seconds", "A histogram", {{"model", "m"}},
                             {0.1, 1.0});
  ASSERT_TRUE(c.ok() && g.ok() && h.ok());
  c.value()->add(2);
  c.value()->add(-5);  // ignored: counters never go down
  g.value()->set(7);
  g.value()->add(-2);
  for (double v : {0.05, 0.1, 0.5, 3.0}) h.value()->observe(v);

  testing::Exposition e;
  std::string err;
  std::string text = reg.render();
  ASSERT_TRUE(testing::parse_exposition(text, &e, &err)) << err << "\n" << text;
  EXPECT_EQ(e.types["ferry_test_total"], "counter");
  EXPECT_EQ(e.types["ferry_test_seconds"], "histogram");
  EXPECT_EQ(e.value("ferry_test_total", {{"model", "m\"1\\\n"}}), 2);  // escaping round-trips
  EXPECT_EQ(e.value("ferry_test_gauge"), 5);
  EXPECT_EQ(e.value("ferry_test_seconds_bucket", {{"le", "0.1"}}), 2);  // le is inclusive
  EXPECT_EQ(e.value("ferry_test_seconds_bucket", {{"le", "1"}}), 3);
  EXPECT_EQ(e.value("ferry_test_seconds_bucket", {{"le", "+Inf"}}), 4);
  EXPECT_EQ(e.value("ferry_test_seconds_count"), 4);
  EXPECT_DOUBLE_EQ(e.value("ferry_test_seconds_sum"), 3.65);
}

TEST(Metrics, RejectsBadNamesClashesAndDuplicates) {
  MetricsRegistry reg;
  EXPECT_FALSE(reg.create_series(MetricKind::kCounter, "bad-name", "", {}).ok());
  EXPECT_FALSE(reg.create_series(MetricKind::kCounter, "ok_name", "", {{"bad-label", "x"}}).ok());
  EXPECT_FALSE(reg.create_series(MetricKind::kHistogram, "h", "", {{"le", "x"}}).ok());
  EXPECT_FALSE(reg.create_series(MetricKind::kHistogram, "h", "", {}, {1.0, 0.5}).ok());
  ASSERT_TRUE(reg.create_series(MetricKind::kCounter, "x_total", "help", {{"a", "1"}}).ok());
  EXPECT_FALSE(reg.create_series(MetricKind::kGauge, "x_total", "help", {{"a", "2"}}).ok()) << "kind clash";
  EXPECT_TRUE(reg.create_series(MetricKind::kCounter, "x_total", "help", {{"a", "2"}}).ok());
}

TEST(Metrics, DestroyedSeriesDisappearAndEmptyFamiliesGo) {
  MetricsRegistry reg;
  auto a = reg.create_series(MetricKind::kGauge, "g", "h", {{"k", "a"}});
  auto b = reg.create_series(MetricKind::kGauge, "g", "h", {{"k", "b"}});
  ASSERT_TRUE(a.ok() && b.ok());
  reg.destroy_series(a.value());
  std::string text = reg.render();
  EXPECT_EQ(text.find("k=\"a\""), std::string::npos);
  EXPECT_NE(text.find("k=\"b\""), std::string::npos);
  reg.destroy_series(b.value());
  EXPECT_EQ(reg.render(), "");
}

TEST(Metrics, CreatingAnExistingSeriesSharesItUntilTheLastDestroy) {
  // A reloaded model version registers the same series while its predecessor still holds them.
  MetricsRegistry reg;
  auto a = reg.create_series(MetricKind::kCounter, "s_total", "h", {{"v", "1"}});
  auto b = reg.create_series(MetricKind::kCounter, "s_total", "h", {{"v", "1"}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value(), b.value());
  a.value()->add(3);
  reg.destroy_series(a.value());
  EXPECT_NE(reg.render().find("s_total{v=\"1\"} 3"), std::string::npos) << "still held by the second owner";
  reg.destroy_series(b.value());
  EXPECT_EQ(reg.render(), "");
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry reg;
  auto c = reg.create_series(MetricKind::kCounter, "c_total", "h", {});
  auto h = reg.create_series(MetricKind::kHistogram, "h_seconds", "h", {});
  ASSERT_TRUE(c.ok() && h.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.value()->add(1);
        h.value()->observe(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value()->value(), 40000);
  EXPECT_EQ(h.value()->count(), 40000u);
}

}  // namespace
}  // namespace ferry::host
