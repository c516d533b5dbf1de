#include "backend/llm/model/load_progress.h"

#include <algorithm>

namespace ferry::llm {

LoadProgress::LoadProgress(std::string stage, int64_t tensors_total, int64_t bytes_total, LoadProgressCallback callback,
                           std::chrono::milliseconds interval, Clock clock)
    : callback_(std::move(callback)), interval_(interval), clock_(std::move(clock)) {
  snapshot_.stage = std::move(stage);
  snapshot_.tensors_total = std::max<int64_t>(tensors_total, 0);
  snapshot_.bytes_total = std::max<int64_t>(bytes_total, 0);
}

void LoadProgress::start() {
  if (started_) return;
  started_ = true;
  start_ = clock_();
  report(false);
}

void LoadProgress::add(int64_t tensors, int64_t bytes) {
  if (snapshot_.final) return;
  if (!started_) start();
  snapshot_.tensors_done += tensors;
  snapshot_.bytes_done += bytes;
  if (snapshot_.tensors_total > 0 && snapshot_.tensors_done >= snapshot_.tensors_total) {
    report(true);
  } else if (clock_() - last_report_ >= interval_) {
    report(false);
  }
}

void LoadProgress::finish() {
  if (snapshot_.final) return;
  if (!started_) start();
  report(true);
}

void LoadProgress::report(bool final) {
  const auto now = clock_();
  last_report_ = now;
  snapshot_.final = final;
  snapshot_.seconds = std::chrono::duration<double>(now - start_).count();
  snapshot_.bytes_per_second =
      snapshot_.seconds > 0 ? static_cast<double>(snapshot_.bytes_done) / snapshot_.seconds : 0.0;
  if (callback_) callback_(snapshot_);
}

}  // namespace ferry::llm
