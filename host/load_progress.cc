#include "host/load_progress.h"

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <vector>

namespace ferry::host {
namespace {

constexpr size_t kMaxStageBytes = 200;

// Reads field `member` of a report only when the sender's struct_size covers it.
#define FERRY_PROGRESS_FIELD(p, member) \
  ((p).struct_size >= offsetof(ferry_load_progress, member) + sizeof((p).member) ? (p).member : decltype((p).member){})

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// "1.2 of 4.4 GB" or "120 of 537 MB" (the unit is the total's; "1.2 GB" alone without a total).
std::string amount(uint64_t done, uint64_t total, const char* of) {
  const uint64_t scale_by = total > 0 ? total : done;
  const bool gb = scale_by >= 1000000000ull;
  const double unit = gb ? 1e9 : 1e6;
  const int decimals = gb || scale_by < 10000000ull ? 1 : 0;
  std::string out = fixed(static_cast<double>(done) / unit, decimals);
  if (total > 0) out += of + fixed(static_cast<double>(total) / unit, decimals);
  return out + (gb ? " GB" : " MB");
}

std::string rate(double bytes_per_second) {
  return bytes_per_second > 0 ? fixed(bytes_per_second / 1e6, 0) + " MB/s" : "";
}

}  // namespace

bool LoadProgress::complete() const {
  if (bytes_total == 0 && tensors_total == 0) return false;
  return bytes_done >= bytes_total && tensors_done >= tensors_total;
}

int LoadProgress::percent() const {
  auto pct = [](uint64_t done, uint64_t total) {
    if (done >= total) return 100;
    return static_cast<int>(std::floor(static_cast<double>(done) * 100.0 / static_cast<double>(total)));
  };
  if (bytes_total > 0) return pct(bytes_done, bytes_total);
  if (tensors_total > 0) return pct(tensors_done, tensors_total);
  return -1;
}

std::optional<LoadProgress> copy_load_progress(const ferry_load_progress& p) {
  const char* stage = FERRY_PROGRESS_FIELD(p, stage);
  if (stage == nullptr) return std::nullopt;
  LoadProgress out;
  out.stage = stage;
  if (out.stage.size() > kMaxStageBytes) out.stage.resize(kMaxStageBytes);
  out.bytes_done = FERRY_PROGRESS_FIELD(p, bytes_done);
  out.bytes_total = FERRY_PROGRESS_FIELD(p, bytes_total);
  out.tensors_done = FERRY_PROGRESS_FIELD(p, tensors_done);
  out.tensors_total = FERRY_PROGRESS_FIELD(p, tensors_total);
  const double bps = FERRY_PROGRESS_FIELD(p, bytes_per_second);
  out.bytes_per_second = std::isfinite(bps) && bps > 0 ? bps : 0.0;
  return out;
}

std::string load_progress_reason(const LoadProgress& p) {
  std::string out = p.stage;
  const int pct = p.percent();
  std::string detail;
  if (p.bytes_total > 0 || p.bytes_done > 0) detail = amount(p.bytes_done, p.bytes_total, " of ");
  if (p.bytes_total == 0 && p.tensors_total > 0) {
    detail += (detail.empty() ? "" : ", ") + std::to_string(p.tensors_done) + " of " + std::to_string(p.tensors_total) +
              " tensors";
  }
  const std::string r = rate(p.bytes_per_second);
  if (!r.empty()) detail += (detail.empty() ? "" : ", ") + r;
  if (pct >= 0) {
    out += ": " + std::to_string(pct) + " %";
    if (!detail.empty()) out += " (" + detail + ")";
  } else if (!detail.empty()) {
    out += ": " + detail;
  }
  return out;
}

std::string load_progress_log(const std::string& model, int64_t version, const LoadProgress& p) {
  std::string out = "loading model '" + model + "' version " + std::to_string(version) + ": " + p.stage + ": ";
  std::vector<std::string> parts;
  const std::string percent = p.percent() >= 0 ? " (" + std::to_string(p.percent()) + " %)" : "";
  const bool bytes_known = p.bytes_total > 0 || p.bytes_done > 0;
  if (bytes_known) parts.push_back(amount(p.bytes_done, p.bytes_total, "/") + percent);
  if (p.tensors_total > 0 || p.tensors_done > 0) {
    parts.push_back(std::to_string(p.tensors_done) + (p.tensors_total > 0 ? " of " + std::to_string(p.tensors_total) : "") +
                    " tensors" + (bytes_known ? "" : percent));
  }
  if (!rate(p.bytes_per_second).empty()) parts.push_back(rate(p.bytes_per_second));
  if (parts.empty()) return out.substr(0, out.size() - 2);  // only a stage: no trailing ": "
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out;
}

}  // namespace ferry::host
