// Helpers for both sides of the C ABI (host and backends): owned copies of ABI tensors, Status <-> ferry_error,
// and writing describe() JSON into the host's buffer. C++ only; nothing here crosses the ABI.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "ferry/ferry.h"

namespace ferry::abi {

// An owned copy of a ferry_tensor.
struct OwnedTensor {
  std::string name;
  ferry_dtype dtype = FERRY_DTYPE_INVALID;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  // A view that points into this object; valid while it lives and is not modified.
  ferry_tensor view() const;
};

// Copies `t`, checking that its byte size agrees with dtype and shape (BYTES: that the
// length-prefixed elements fill data exactly and their count equals the shape's product).
Result<OwnedTensor> copy_tensor(const ferry_tensor& t);

// Bytes per element of a fixed-size dtype; 0 for BYTES and INVALID.
size_t dtype_size(ferry_dtype dtype);
const char* dtype_name(ferry_dtype dtype);  // "FP32", ... (KServe names)

// Calls f(std::string_view) on each element of a BYTES payload (views into `data`), in order, and
// returns their count; fails on a malformed payload (f may have seen the elements before the
// fault). No allocation: the per-token response path uses it.
template <typename F>
Result<uint64_t> for_each_bytes(const uint8_t* data, uint64_t size, F&& f);
// Splits a BYTES payload into its elements (views into `data`). Fails on a malformed payload.
Result<std::vector<std::string_view>> split_bytes(const uint8_t* data, uint64_t size);
// Encodes strings as a BYTES payload.
std::vector<uint8_t> join_bytes(const std::vector<std::string>& elements);

// Fills `error` (may be NULL) from a non-OK status and returns its code; OK returns OK.
ferry_error_code to_error(const Status& status, ferry_error* error);

// For a backend's extern "C" catch (...) blocks: maps the exception in flight to INTERNAL with its
// what() text. Call only inside a catch handler.
ferry_error_code error_from_current_exception(ferry_error* error);

// Writes `json` into (buffer, capacity) as ferry_model_describe specifies; returns json.size().
size_t write_describe(const std::string& json, char* buffer, size_t capacity);

template <typename F>
Result<uint64_t> for_each_bytes(const uint8_t* data, uint64_t size, F&& f) {
  uint64_t pos = 0, count = 0;
  while (pos < size) {
    if (size - pos < 4) return Status::InvalidArgument("BYTES payload ends inside a length prefix");
    uint32_t len = 0;
    std::memcpy(&len, data + pos, 4);  // little-endian hosts only (x86_64, aarch64)
    pos += 4;
    if (size - pos < len) return Status::InvalidArgument("BYTES element runs past the end of the payload");
    f(std::string_view(reinterpret_cast<const char*>(data + pos), len));
    pos += len;
    ++count;
  }
  return count;
}

}  // namespace ferry::abi
