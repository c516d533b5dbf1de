#include "perf/loadgen/load_options.h"

#include <charconv>
#include <cstdio>
#include <string_view>

namespace ferry::loadgen {
namespace {

constexpr const char* kUsage = R"(usage: ferry-loadgen [flags]
Sends N requests, C at a time, to a running ferry-server and reports requests/s and latency.

  --protocol http|zmq     transport (default http)
  --url URL               HTTP base URL (default http://127.0.0.1:8000)
  --endpoint EP           ZeroMQ endpoint (default tcp://127.0.0.1:5555)
  --model NAME            model to infer on (default echo)
  --input-name NAME       name of the BYTES input tensor (default text_input)
  --path PATH             HTTP only: GET this path instead of inferring (e.g. /v2/health/live)
  --requests N            timed requests (default 1000)
  --warmup N              untimed requests sent first (default 100)
  --concurrency C         requests in flight at once (default 1)
  --zmq-sockets S         ZeroMQ DEALER sockets, one thread each, C/S in flight on each
                          (default min(C, 4))
  --payload-bytes B       size of the input string (default 16)
  --prompt TEXT           send TEXT as the input string (an LLM prompt; no echo check)
  --parameters JSON       ZeroMQ: the request's "parameters" object, e.g.
                          '{"max_tokens":128,"ignore_eos":true}'
  --stream                ZeroMQ: ask for every response; the summary counts the tokens of
                          the "output_ids" outputs (output tokens/s: the LLM token path)
  --timeout-ms T          ZeroMQ: a socket silent this long fails its requests (default 10000)
  --label TEXT            name of the run in the progress line and the JSON
  --json-out FILE         also write the summary as JSON to FILE
  --no-progress           no progress line on stderr
)";

template <typename T>
Status parse_number(std::string_view flag, std::string_view text, T min, T* out) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min) {
    return Status::InvalidArgument(std::string(flag) + ": expected an integer >= " + std::to_string(min) + ", got '" +
                                   std::string(text) + "'");
  }
  *out = v;
  return Status::Ok();
}

}  // namespace

const char* protocol_name(Protocol p) { return p == Protocol::kHttp ? "http" : "zmq"; }

Status parse_options(int argc, char** argv, LoadOptions* o) {
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return Status::Cancelled("help");
    }
    if (flag == "--no-progress") {
      o->progress = false;
      continue;
    }
    if (flag == "--stream") {
      o->stream = true;
      continue;
    }
    std::string_view value;
    if (auto eq = flag.find('='); eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Status::InvalidArgument(std::string(flag) + ": missing value");
    }
    Status s = Status::Ok();
    if (flag == "--protocol") {
      if (value == "http") o->protocol = Protocol::kHttp;
      else if (value == "zmq") o->protocol = Protocol::kZmq;
      else s = Status::InvalidArgument("--protocol: expected http or zmq, got '" + std::string(value) + "'");
    } else if (flag == "--url") {
      o->url = value;
    } else if (flag == "--endpoint") {
      o->endpoint = value;
    } else if (flag == "--model") {
      o->model = value;
    } else if (flag == "--input-name") {
      o->input_name = value;
    } else if (flag == "--path") {
      o->path = value;
    } else if (flag == "--requests") {
      s = parse_number<uint64_t>(flag, value, 1, &o->num_requests);
    } else if (flag == "--warmup") {
      s = parse_number<uint64_t>(flag, value, 0, &o->num_warmup);
    } else if (flag == "--concurrency") {
      s = parse_number<int>(flag, value, 1, &o->concurrency);
    } else if (flag == "--zmq-sockets") {
      s = parse_number<int>(flag, value, 1, &o->num_zmq_sockets);
    } else if (flag == "--payload-bytes") {
      s = parse_number<size_t>(flag, value, 0, &o->payload_bytes);
    } else if (flag == "--prompt") {
      o->prompt = value;
    } else if (flag == "--parameters") {
      o->parameters_json = value;
    } else if (flag == "--timeout-ms") {
      s = parse_number<int>(flag, value, 1, &o->timeout_ms);
    } else if (flag == "--label") {
      o->label = value;
    } else if (flag == "--json-out") {
      o->json_out = value;
    } else {
      s = Status::InvalidArgument("unknown flag '" + std::string(flag) + "' (see --help)");
    }
    if (!s.ok()) return s;
  }
  if (o->protocol == Protocol::kZmq && !o->path.empty()) {
    return Status::InvalidArgument("--path is for HTTP only: ZeroMQ has no bare GET");
  }
  if (o->protocol != Protocol::kZmq && (o->stream || !o->parameters_json.empty())) {
    return Status::InvalidArgument("--stream and --parameters are for ZeroMQ only");
  }
  if (o->num_zmq_sockets == 0) o->num_zmq_sockets = o->concurrency < 4 ? o->concurrency : 4;
  if (o->num_zmq_sockets > o->concurrency) o->num_zmq_sockets = o->concurrency;
  if (o->label.empty()) {
    o->label = std::string(protocol_name(o->protocol)) + (o->path.empty() ? " infer " + o->model : " GET " + o->path) +
               " c=" + std::to_string(o->concurrency);
  }
  return Status::Ok();
}

}  // namespace ferry::loadgen
