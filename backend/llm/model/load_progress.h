// LoadProgress: how far loading a model's weights has got (tensors and bytes done of their totals,
// the average rate), handed to a callback often enough that a user waiting for a large model sees
// it move, and seldom enough that the log and the host are not flooded.
//
// Reports: the first at start() (0 done), then at most one every `interval` as work is added, and
// always the final one, when the last tensor is done (or at finish(), if that never happens).
// Nothing is reported after the final one. The rate is bytes done over the time since start().
//
// Not the place for what the numbers mean to a user (formatting, percentages): the host does that
// from the snapshot (host/load_progress.h). Thread-safety: one thread at a time (the loader's).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace ferry::llm {

struct LoadProgressSnapshot {
  std::string stage;          // e.g. "loading weights, converting to int8"
  int64_t tensors_done = 0;
  int64_t tensors_total = 0;
  int64_t bytes_done = 0;     // checkpoint bytes of the tensors done (their size as stored)
  int64_t bytes_total = 0;
  double seconds = 0;         // since start()
  double bytes_per_second = 0;  // bytes_done / seconds; 0 before any time has passed
  bool final = false;         // the last report of this load
};

using LoadProgressCallback = std::function<void(const LoadProgressSnapshot&)>;

class LoadProgress {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // Half a second: a waiting user sees the numbers move, a 16 GB model at 1 GB/s gives ~32 reports.
  static constexpr std::chrono::milliseconds kDefaultInterval{500};

  // `callback` may be empty: then nothing is reported. `clock` is for tests.
  LoadProgress(std::string stage, int64_t tensors_total, int64_t bytes_total, LoadProgressCallback callback,
               std::chrono::milliseconds interval = kDefaultInterval, Clock clock = &std::chrono::steady_clock::now);

  // Starts the clock and reports 0 done.
  void start();
  // Adds finished work; reports when `interval` has passed since the last report, and reports the
  // final snapshot once every tensor is done.
  void add(int64_t tensors, int64_t bytes);
  // Reports the final snapshot if it has not been reported (a load that ended short of the totals
  // says so: its final report is below 100 %).
  void finish();

  // The counts so far, with the time and rate of the last report.
  const LoadProgressSnapshot& last() const { return snapshot_; }

 private:
  void report(bool final);

  LoadProgressCallback callback_;
  std::chrono::milliseconds interval_;
  Clock clock_;
  std::chrono::steady_clock::time_point start_{}, last_report_{};
  bool started_ = false;
  LoadProgressSnapshot snapshot_;  // counts so far; seconds and rate as of the last report
};

}  // namespace ferry::llm
