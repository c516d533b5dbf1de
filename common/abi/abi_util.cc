#include "common/abi/abi_util.h"

#include <cstring>
#include <exception>

namespace ferry::abi {

ferry_tensor OwnedTensor::view() const {
  ferry_tensor t{};
  t.struct_size = sizeof(ferry_tensor);
  t.name = name.c_str();
  t.dtype = dtype;
  t.num_dims = static_cast<uint32_t>(shape.size());
  t.shape = shape.data();
  t.data = data.data();
  t.data_bytes = data.size();
  return t;
}

size_t dtype_size(ferry_dtype dtype) {
  switch (dtype) {
    case FERRY_DTYPE_BOOL: return 1;
    case FERRY_DTYPE_INT32: return 4;
    case FERRY_DTYPE_INT64: return 8;
    case FERRY_DTYPE_FP16: return 2;
    case FERRY_DTYPE_BF16: return 2;
    case FERRY_DTYPE_FP32: return 4;
    case FERRY_DTYPE_BYTES:
    case FERRY_DTYPE_INVALID: return 0;
  }
  return 0;
}

const char* dtype_name(ferry_dtype dtype) {
  switch (dtype) {
    case FERRY_DTYPE_BOOL: return "BOOL";
    case FERRY_DTYPE_INT32: return "INT32";
    case FERRY_DTYPE_INT64: return "INT64";
    case FERRY_DTYPE_FP16: return "FP16";
    case FERRY_DTYPE_BF16: return "BF16";
    case FERRY_DTYPE_FP32: return "FP32";
    case FERRY_DTYPE_BYTES: return "BYTES";
    case FERRY_DTYPE_INVALID: return "INVALID";
  }
  return "INVALID";
}

Result<std::vector<std::string_view>> split_bytes(const uint8_t* data, uint64_t size) {
  std::vector<std::string_view> out;
  auto count = for_each_bytes(data, size, [&](std::string_view e) { out.push_back(e); });
  if (!count.ok()) return count.status();
  return out;
}

std::vector<uint8_t> join_bytes(const std::vector<std::string>& elements) {
  std::vector<uint8_t> out;
  for (const auto& e : elements) {
    uint32_t len = static_cast<uint32_t>(e.size());
    const auto* p = reinterpret_cast<const uint8_t*>(&len);
    out.insert(out.end(), p, p + 4);
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

Result<OwnedTensor> copy_tensor(const ferry_tensor& t) {
  if (t.name == nullptr || t.name[0] == '\0') return Status::InvalidArgument("tensor without a name");
  OwnedTensor o;
  o.name = t.name;
  o.dtype = t.dtype;
  o.shape.assign(t.shape, t.shape + t.num_dims);
  uint64_t count = 1;
  for (int64_t d : o.shape) {
    if (d < 0) return Status::InvalidArgument("tensor '" + o.name + "' has a negative dimension");
    count *= static_cast<uint64_t>(d);
  }
  if (t.data_bytes > 0 && t.data == nullptr) return Status::InvalidArgument("tensor '" + o.name + "' has no data");
  const auto* bytes = static_cast<const uint8_t*>(t.data);
  if (t.dtype == FERRY_DTYPE_BYTES) {
    auto parts = for_each_bytes(bytes, t.data_bytes, [](std::string_view) {});
    if (!parts.ok()) return parts.status().with_prefix("tensor '" + o.name + "'");
    if (parts.value() != count) {
      return Status::InvalidArgument("tensor '" + o.name + "' holds " + std::to_string(parts.value()) +
                                     " BYTES elements but its shape has " + std::to_string(count));
    }
  } else {
    size_t es = dtype_size(t.dtype);
    if (es == 0) return Status::InvalidArgument("tensor '" + o.name + "' has an invalid datatype");
    if (t.data_bytes != count * es) {
      return Status::InvalidArgument("tensor '" + o.name + "' has " + std::to_string(t.data_bytes) +
                                     " bytes but its shape and datatype need " + std::to_string(count * es));
    }
  }
  if (t.data_bytes > 0) o.data.assign(bytes, bytes + t.data_bytes);
  return o;
}

ferry_error_code to_error(const Status& status, ferry_error* error) {
  auto code = static_cast<ferry_error_code>(status.code());
  if (status.ok() || error == nullptr) return code;
  error->code = code;
  std::snprintf(error->message, sizeof(error->message), "%s", status.message().c_str());
  return code;
}

ferry_error_code error_from_current_exception(ferry_error* error) {
  try {
    throw;
  } catch (const std::exception& e) {
    return to_error(Status::Internal(e.what()), error);
  } catch (...) {
    return to_error(Status::Internal("unknown exception"), error);
  }
}

size_t write_describe(const std::string& json, char* buffer, size_t capacity) {
  if (buffer != nullptr && capacity > 0) {
    size_t n = json.size() < capacity - 1 ? json.size() : capacity - 1;
    std::memcpy(buffer, json.data(), n);
    buffer[n] = '\0';
  }
  return json.size();
}

}  // namespace ferry::abi
