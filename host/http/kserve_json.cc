#include "host/http/kserve_json.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/json_writer.h"
#include "host/json_util.h"

namespace ferry::host {
namespace {

ferry_dtype parse_dtype(const std::string& s) {
  static const std::pair<const char*, ferry_dtype> kTypes[] = {
      {"BOOL", FERRY_DTYPE_BOOL}, {"INT32", FERRY_DTYPE_INT32}, {"INT64", FERRY_DTYPE_INT64},
      {"FP16", FERRY_DTYPE_FP16}, {"BF16", FERRY_DTYPE_BF16},   {"FP32", FERRY_DTYPE_FP32},
      {"BYTES", FERRY_DTYPE_BYTES}};
  for (const auto& [name, t] : kTypes) {
    if (s == name) return t;
  }
  return FERRY_DTYPE_INVALID;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));  // inf/nan
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);                                        // overflow
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // round to nearest even
  return static_cast<uint16_t>(half);
}

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // nan
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

float bf16_to_float(uint16_t b) {
  uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void flatten(const Json::Value& v, std::vector<const Json::Value*>* out, int depth, bool* too_deep) {
  if (depth > 32) {
    *too_deep = true;
    return;
  }
  if (v.isArray()) {
    for (const auto& e : v) flatten(e, out, depth + 1, too_deep);
  } else {
    out->push_back(&v);
  }
}

template <typename T>
void append(std::vector<uint8_t>* data, T value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  data->insert(data->end(), p, p + sizeof(T));
}

template <typename T>
T read_at(const std::vector<uint8_t>& data, size_t i) {
  T v;
  std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
  return v;
}

Json::Value scalar_json(const abi::OwnedTensor& t, size_t i, const std::vector<std::string_view>& strings) {
  switch (t.dtype) {
    case FERRY_DTYPE_BOOL: return Json::Value(t.data[i] != 0);
    case FERRY_DTYPE_INT32: return Json::Value(read_at<int32_t>(t.data, i));
    case FERRY_DTYPE_INT64: return Json::Value(Json::Int64(read_at<int64_t>(t.data, i)));
    case FERRY_DTYPE_FP16: return Json::Value(half_to_float(read_at<uint16_t>(t.data, i)));
    case FERRY_DTYPE_BF16: return Json::Value(bf16_to_float(read_at<uint16_t>(t.data, i)));
    case FERRY_DTYPE_FP32: return Json::Value(read_at<float>(t.data, i));
    case FERRY_DTYPE_BYTES: return Json::Value(std::string(strings[i]));
    case FERRY_DTYPE_INVALID: break;
  }
  return Json::Value();
}

// Builds a tensor of `dtype` from JSON elements; `what` names the tensor in errors.
Status encode_elements(const std::vector<const Json::Value*>& elems, ferry_dtype dtype, const std::string& what,
                       std::vector<uint8_t>* data) {
  std::vector<std::string> strings;
  for (const Json::Value* e : elems) {
    switch (dtype) {
      case FERRY_DTYPE_BOOL:
        if (!e->isBool()) return Status::InvalidArgument(what + ": BOOL data must be true/false");
        data->push_back(e->asBool() ? 1 : 0);
        break;
      case FERRY_DTYPE_INT32:
        if (!e->isInt()) return Status::InvalidArgument(what + ": INT32 data must be integers in range");
        append<int32_t>(data, e->asInt());
        break;
      case FERRY_DTYPE_INT64:
        if (!e->isInt64()) return Status::InvalidArgument(what + ": INT64 data must be integers in range");
        append<int64_t>(data, e->asInt64());
        break;
      case FERRY_DTYPE_FP16:
      case FERRY_DTYPE_BF16:
      case FERRY_DTYPE_FP32: {
        if (!e->isNumeric() || e->isBool()) return Status::InvalidArgument(what + ": data must be numbers");
        float f = e->asFloat();
        if (dtype == FERRY_DTYPE_FP32) append<float>(data, f);
        else append<uint16_t>(data, dtype == FERRY_DTYPE_FP16 ? float_to_half(f) : float_to_bf16(f));
        break;
      }
      case FERRY_DTYPE_BYTES:
        if (!e->isString()) return Status::InvalidArgument(what + ": BYTES data must be strings");
        strings.push_back(e->asString());
        break;
      case FERRY_DTYPE_INVALID:
        return Status::InvalidArgument(what + ": invalid datatype");
    }
  }
  if (dtype == FERRY_DTYPE_BYTES) *data = abi::join_bytes(strings);
  return Status::Ok();
}

}  // namespace

Status apply_request_controls(const Json::Value& p, RequestSpec* spec) {
  if (p.isMember("priority")) {
    if (!p["priority"].isUInt()) return Status::InvalidArgument("parameter 'priority' must be an integer >= 0");
    spec->priority = p["priority"].asUInt();
  }
  if (p.isMember("timeout")) {
    if (!p["timeout"].isUInt64()) return Status::InvalidArgument("parameter 'timeout' must be an integer of microseconds >= 0");
    spec->timeout_us = p["timeout"].asUInt64();
  }
  return Status::Ok();
}

Result<abi::OwnedTensor> tensor_from_json(const Json::Value& t) {
  if (!t.isObject()) return Status::InvalidArgument("each input must be an object");
  if (!t["name"].isString() || t["name"].asString().empty()) return Status::InvalidArgument("input without a string 'name'");
  const std::string name = t["name"].asString();
  const std::string what = "input '" + name + "'";
  if (!t["datatype"].isString()) return Status::InvalidArgument(what + ": 'datatype' must be a string");
  ferry_dtype dtype = parse_dtype(t["datatype"].asString());
  if (dtype == FERRY_DTYPE_INVALID) return Status::InvalidArgument(what + ": unknown datatype '" + t["datatype"].asString() + "'");
  if (!t["shape"].isArray()) return Status::InvalidArgument(what + ": 'shape' must be a list of integers");
  abi::OwnedTensor out;
  out.name = name;
  out.dtype = dtype;
  uint64_t count = 1;
  for (const auto& d : t["shape"]) {
    if (!d.isInt64() || d.asInt64() < 0) return Status::InvalidArgument(what + ": 'shape' must hold integers >= 0");
    out.shape.push_back(d.asInt64());
    count *= static_cast<uint64_t>(d.asInt64());
    if (count > (uint64_t{1} << 32)) return Status::InvalidArgument(what + ": shape too large");
  }
  if (!t.isMember("data")) return Status::InvalidArgument(what + ": missing 'data'");
  std::vector<const Json::Value*> elems;
  bool too_deep = false;
  flatten(t["data"], &elems, 0, &too_deep);
  if (too_deep) return Status::InvalidArgument(what + ": 'data' nests too deeply");
  if (elems.size() != count) {
    return Status::InvalidArgument(what + ": shape needs " + std::to_string(count) + " elements, 'data' has " +
                                   std::to_string(elems.size()));
  }
  FERRY_RETURN_IF_ERROR(encode_elements(elems, dtype, what, &out.data));
  return out;
}

Json::Value tensor_to_json(const abi::OwnedTensor& t) {
  Json::Value j;
  j["name"] = t.name;
  j["datatype"] = abi::dtype_name(t.dtype);
  j["shape"] = Json::Value(Json::arrayValue);
  size_t count = 1;
  for (int64_t d : t.shape) {
    j["shape"].append(Json::Int64(d));
    count *= static_cast<size_t>(d);
  }
  std::vector<std::string_view> strings;
  if (t.dtype == FERRY_DTYPE_BYTES) {
    auto s = abi::split_bytes(t.data.data(), t.data.size());
    if (s.ok()) strings = s.value();
    count = strings.size();
  }
  j["data"] = Json::Value(Json::arrayValue);
  for (size_t i = 0; i < count; ++i) j["data"].append(scalar_json(t, i, strings));
  return j;
}

void append_tensor_json(std::string& out, const abi::OwnedTensor& t) {
  out.append("{\"name\":");
  append_json_string(out, t.name);
  out.append(",\"datatype\":");
  append_json_string(out, abi::dtype_name(t.dtype));
  out.append(",\"shape\":[");
  size_t count = 1;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    if (d > 0) out.push_back(',');
    append_json_int(out, t.shape[d]);
    count *= static_cast<size_t>(t.shape[d]);
  }
  out.append("],\"data\":[");
  if (t.dtype == FERRY_DTYPE_BYTES) {
    auto strings = abi::split_bytes(t.data.data(), t.data.size());
    count = strings.ok() ? strings->size() : 0;
    for (size_t i = 0; i < count; ++i) {
      if (i > 0) out.push_back(',');
      append_json_string(out, strings.value()[i]);
    }
  } else {
    for (size_t i = 0; i < count; ++i) {
      if (i > 0) out.push_back(',');
      switch (t.dtype) {
        case FERRY_DTYPE_BOOL: out.append(t.data[i] != 0 ? "true" : "false"); break;
        case FERRY_DTYPE_INT32: append_json_int(out, read_at<int32_t>(t.data, i)); break;
        case FERRY_DTYPE_INT64: append_json_int(out, read_at<int64_t>(t.data, i)); break;
        case FERRY_DTYPE_FP16: append_json_double(out, half_to_float(read_at<uint16_t>(t.data, i))); break;
        case FERRY_DTYPE_BF16: append_json_double(out, bf16_to_float(read_at<uint16_t>(t.data, i))); break;
        case FERRY_DTYPE_FP32: append_json_double(out, read_at<float>(t.data, i)); break;
        default: out.append("null");
      }
    }
  }
  out.append("]}");
}

Result<RequestSpec> infer_request_from_json(const Json::Value& body) {
  if (!body.isObject()) return Status::InvalidArgument("request body must be a JSON object");
  std::string client_id;
  if (body.isMember("id")) {
    if (!body["id"].isString()) return Status::InvalidArgument("'id' must be a string");
    client_id = body["id"].asString();
  }
  auto spec = infer_request_from_parts(body["inputs"], body.isMember("parameters") ? &body["parameters"] : nullptr);
  if (spec.ok()) spec->client_id = std::move(client_id);
  return spec;
}

Result<RequestSpec> infer_request_from_parts(const Json::Value& inputs, const Json::Value* parameters) {
  RequestSpec spec;
  if (!inputs.isArray() || inputs.empty()) return Status::InvalidArgument("'inputs' must be a non-empty list");
  for (const auto& t : inputs) {
    auto tensor = tensor_from_json(t);
    if (!tensor.ok()) return tensor.status();
    for (const auto& existing : spec.inputs) {
      if (existing.name == tensor->name) return Status::InvalidArgument("input '" + existing.name + "' given twice");
    }
    spec.inputs.push_back(std::move(tensor.value()));
  }
  if (parameters != nullptr) {
    if (!parameters->isObject()) return Status::InvalidArgument("'parameters' must be an object");
    FERRY_RETURN_IF_ERROR(apply_request_controls(*parameters, &spec));
    spec.parameters_json = to_json(*parameters);
  }
  return spec;
}

Result<RequestSpec> generate_request_from_json(const Json::Value& body, const Json::Value& metadata_inputs) {
  if (!body.isObject()) return Status::InvalidArgument("request body must be a JSON object");
  RequestSpec spec;
  Json::Value params(Json::objectValue);
  for (const auto& key : body.getMemberNames()) {
    const Json::Value& v = body[key];
    if (key == "parameters") {
      if (!v.isObject()) return Status::InvalidArgument("'parameters' must be an object");
      for (const auto& k : v.getMemberNames()) params[k] = v[k];
      continue;
    }
    if (key == "id" && v.isString()) {
      spec.client_id = v.asString();
      continue;
    }
    const Json::Value* input = nullptr;
    if (metadata_inputs.isArray()) {
      for (const auto& m : metadata_inputs) {
        if (m["name"].asString() == key) input = &m;
      }
    }
    if (input == nullptr) {
      params[key] = v;
      continue;
    }
    abi::OwnedTensor t;
    t.name = key;
    t.dtype = parse_dtype((*input)["datatype"].asString());
    if (t.dtype == FERRY_DTYPE_INVALID) return Status::Internal("model metadata has a bad datatype for '" + key + "'");
    std::vector<const Json::Value*> elems;
    if (v.isArray()) {
      for (const auto& e : v) elems.push_back(&e);
    } else {
      elems.push_back(&v);
    }
    t.shape = {static_cast<int64_t>(elems.size())};
    FERRY_RETURN_IF_ERROR(encode_elements(elems, t.dtype, "input '" + key + "'", &t.data));
    spec.inputs.push_back(std::move(t));
  }
  FERRY_RETURN_IF_ERROR(apply_request_controls(params, &spec));
  spec.parameters_json = to_json(params);
  return spec;
}

Json::Value infer_response_to_json(const std::string& model, int64_t version, const std::string& id,
                                   const ResponseData& response) {
  Json::Value j;
  j["model_name"] = model;
  j["model_version"] = std::to_string(version);
  if (!id.empty()) j["id"] = id;
  j["outputs"] = Json::Value(Json::arrayValue);
  for (const auto& t : response.outputs) j["outputs"].append(tensor_to_json(t));
  if (!response.parameters_json.empty()) {
    auto p = parse_json(response.parameters_json, "response parameters");
    if (p.ok() && p->isObject() && !p->empty()) j["parameters"] = std::move(p).value();
  }
  return j;
}

Json::Value generate_response_to_json(const std::string& model, int64_t version, const ResponseData& response) {
  Json::Value j;
  j["model_name"] = model;
  j["model_version"] = std::to_string(version);
  for (const auto& t : response.outputs) {
    Json::Value tj = tensor_to_json(t);
    j[t.name] = tj["data"].size() == 1 ? tj["data"][0] : tj["data"];
  }
  if (!response.parameters_json.empty()) {
    auto p = parse_json(response.parameters_json, "response parameters");
    if (p.ok() && p->isObject()) {
      for (const auto& k : p->getMemberNames()) {
        if (!j.isMember(k)) j[k] = (*p)[k];
      }
    }
  }
  return j;
}

}  // namespace ferry::host
