// JSON <-> ABI conversions for the KServe v2 protocol and Triton's generate extension.
//
// Tensors: {"name", "shape", "datatype", "data"} with data flat or nested in row-major order; BYTES
// elements are JSON strings. Request "parameters" pass to the backend as its parameters JSON;
// "priority" (integer >= 0) and "timeout" (integer microseconds) among them also become the
// request's priority and timeout, as in Triton. Errors are InvalidArgument naming the field.
#pragma once

#include <json/json.h>

#include <string>

#include "common/abi/abi_util.h"
#include "common/status.h"
#include "host/model_version.h"

namespace ferry::host {

Result<abi::OwnedTensor> tensor_from_json(const Json::Value& tensor);
Json::Value tensor_to_json(const abi::OwnedTensor& tensor);
// The same object as compact JSON text appended to `out`, without a DOM (the ZeroMQ responses).
void append_tensor_json(std::string& out, const abi::OwnedTensor& tensor);

// POST /v2/models/{m}/infer body -> RequestSpec. `client_id` receives the body's "id" ("" if none).
Result<RequestSpec> infer_request_from_json(const Json::Value& body);
// The same from a body's parts, for frontends that carry "inputs" and "parameters" in a message of
// their own: `inputs` is the KServe list, `parameters` the object or null when absent. `client_id`
// is left empty. Reads the JSON in place (no copy of the tensors' data).
Result<RequestSpec> infer_request_from_parts(const Json::Value& inputs, const Json::Value* parameters);

// POST /v2/models/{m}/generate[_stream] body -> RequestSpec. Top-level keys naming one of the
// model's inputs (from its metadata, a KServe "inputs" list) become input tensors of that input's
// datatype (a scalar becomes shape [1], a list shape [n]); "parameters" (an object) and every other
// key become parameters.
Result<RequestSpec> generate_request_from_json(const Json::Value& body, const Json::Value& metadata_inputs);

// {"model_name", "model_version", "id", "outputs": [...], "parameters": {...}}
Json::Value infer_response_to_json(const std::string& model, int64_t version, const std::string& id,
                                   const ResponseData& response);
// {"model_name", "model_version", <output name>: value or list, ...}; the response's parameters
// (e.g. finish_reason) are merged as top-level keys where they do not clash.
Json::Value generate_response_to_json(const std::string& model, int64_t version, const ResponseData& response);

// Extracts priority/timeout from a parameters object into `spec` (wrong types are errors).
Status apply_request_controls(const Json::Value& parameters, RequestSpec* spec);

}  // namespace ferry::host
