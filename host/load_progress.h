// What the host makes of a backend's loading-progress report (ferry_load_progress, ABI 1.2): the
// copy it keeps, the version's LOADING reason in the repository index, and the log line.
//
//   reason  "loading weights, converting to int8: 27 % (1.2 of 4.4 GB, 850 MB/s)"
//   log     "loading model 'm' version 1: loading weights, converting to int8: 1.2/4.4 GB (27 %),
//            310 of 1100 tensors, 850 MB/s"
//
// Sizes are decimal (GB = 1e9 bytes, MB = 1e6), in GB from 1 GB of total and in MB below. The
// percentage is of bytes (of tensors when the backend knows no byte total), rounded down, so it
// says 100 only when everything is done. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ferry/ferry.h"

namespace ferry::host {

struct LoadProgress {
  std::string stage;
  uint64_t bytes_done = 0, bytes_total = 0;
  uint64_t tensors_done = 0, tensors_total = 0;
  double bytes_per_second = 0;

  // Done with everything it counts (and counts something).
  bool complete() const;
  // 0..100, or -1 when there is no total to be a percentage of.
  int percent() const;
};

// Copies a backend's report, reading only the fields inside its struct_size (the others stay 0).
// nullopt when it is too short to hold a stage, or the stage is NULL. The stage is cut to 200 bytes.
std::optional<LoadProgress> copy_load_progress(const ferry_load_progress& progress);

std::string load_progress_reason(const LoadProgress& progress);
std::string load_progress_log(const std::string& model, int64_t version, const LoadProgress& progress);

}  // namespace ferry::host
