#include "perf/bench/bench_options.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>

namespace ferry::bench {
namespace {

constexpr const char* kUsage = R"(usage: ferry-bench --model NAME [flags]
Serving benchmark for any OpenAI-compatible server (ferry, vLLM, llama.cpp server, ...): streams
completions and reports request and token throughput, TTFT, TPOT, ITL and end-to-end latency
(mean, median, p99) with the definitions of vLLM's benchmark_serving.

Target
  --base-url URL          server (default http://127.0.0.1:8000)
  --endpoint PATH         /v1/completions (default) or /v1/chat/completions
  --model NAME            the "model" field of every request (required)
Workload
  --input-len N           random prompts: tokens per prompt (default 128)
  --output-len N          max_tokens per request (default 128)
  --range-ratio R         draw both lengths uniformly from [N*(1-R), N*(1+R)] (default 0)
  --prefix-len N          random prompts: a prefix of N tokens shared by all prompts (default 0)
  --tokenizer DIR         a HF model folder (tokenizer.json): random prompts get exactly N tokens
                          by that tokenizer; without it a prompt is N common words (about N tokens)
  --prompts-file FILE     prompts instead of random ones: one per line, a JSON object
                          {"prompt": "...", "output_len": N} or a JSON string or plain text; the
                          file is reused from the top when it has fewer than --num-prompts
  --num-prompts N         requests to send (default 1000)
  --seed S                seed of the lengths, words and arrival times (default 0)
Arrivals
  --request-rate R        Poisson arrivals at R requests/s; inf (default) sends all at once
  --max-concurrency C     at most C requests in flight (default: no limit but 512)
  --warmup N              untimed requests sent first, one at a time (default 1)
Request body
  --no-ignore-eos         do not send "ignore_eos": true (servers that reject unknown fields)
  --temperature T         (default 0)
  --extra-body JSON       an object merged into every request body, e.g. '{"top_k": 1}'
Output
  --label TEXT            names the run in the report and the JSON
  --result-json FILE      write the result as JSON
  --save-detailed         add per-request lengths, TTFT, ITL and errors to the JSON
  --no-progress           no progress bar on stderr
Exit status: 0 every request succeeded, 1 bad flags or the warm-up failed, 2 some requests failed.
)";

template <typename T>
Status parse_integer(std::string_view flag, std::string_view text, T min, T* out) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min) {
    return Status::InvalidArgument(std::string(flag) + ": expected an integer >= " + std::to_string(min) + ", got '" +
                                   std::string(text) + "'");
  }
  *out = v;
  return Status::Ok();
}

Status parse_real(std::string_view flag, std::string_view text, double min, double* out) {
  if (text == "inf" || text == "infinity") {
    *out = INFINITY;
    return Status::Ok();
  }
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(v >= min)) {
    return Status::InvalidArgument(std::string(flag) + ": expected a number >= " + std::to_string(min) + ", got '" +
                                   s + "'");
  }
  *out = v;
  return Status::Ok();
}

}  // namespace

Status parse_options(int argc, char** argv, BenchOptions* o) {
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
    if (flag == "--no-ignore-eos") {
      o->ignore_eos = false;
      continue;
    }
    if (flag == "--save-detailed") {
      o->save_detailed = true;
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
    double rate = 0;
    if (flag == "--base-url") {
      o->base_url = value;
      while (!o->base_url.empty() && o->base_url.back() == '/') o->base_url.pop_back();
    } else if (flag == "--endpoint") {
      o->endpoint = value;
    } else if (flag == "--model") {
      o->model = value;
    } else if (flag == "--input-len") {
      s = parse_integer<int>(flag, value, 1, &o->input_len_tokens);
    } else if (flag == "--output-len") {
      s = parse_integer<int>(flag, value, 1, &o->output_len_tokens);
    } else if (flag == "--range-ratio") {
      s = parse_real(flag, value, 0.0, &o->range_ratio);
      if (s.ok() && o->range_ratio >= 1.0) s = Status::InvalidArgument("--range-ratio: expected a number in [0, 1)");
    } else if (flag == "--prefix-len") {
      s = parse_integer<int>(flag, value, 0, &o->prefix_len_tokens);
    } else if (flag == "--tokenizer") {
      o->tokenizer_dir = value;
    } else if (flag == "--prompts-file") {
      o->prompts_file = value;
    } else if (flag == "--num-prompts") {
      s = parse_integer<uint64_t>(flag, value, 1, &o->num_prompts);
    } else if (flag == "--seed") {
      s = parse_integer<uint64_t>(flag, value, 0, &o->seed);
    } else if (flag == "--request-rate") {
      s = parse_real(flag, value, 0.0, &rate);
      if (s.ok() && rate == 0.0) s = Status::InvalidArgument("--request-rate: expected a rate > 0 or inf");
      o->request_rate = std::isinf(rate) ? 0.0 : rate;
    } else if (flag == "--max-concurrency") {
      s = parse_integer<int>(flag, value, 1, &o->max_concurrency);
    } else if (flag == "--warmup") {
      s = parse_integer<int>(flag, value, 0, &o->num_warmup);
    } else if (flag == "--temperature") {
      s = parse_real(flag, value, 0.0, &o->temperature);
    } else if (flag == "--extra-body") {
      o->extra_body = value;
    } else if (flag == "--label") {
      o->label = value;
    } else if (flag == "--result-json") {
      o->result_json = value;
    } else {
      s = Status::InvalidArgument("unknown flag '" + std::string(flag) + "' (see --help)");
    }
    if (!s.ok()) return s;
  }
  if (o->model.empty()) return Status::InvalidArgument("--model is required (see --help)");
  if (o->endpoint.empty() || o->endpoint[0] != '/') return Status::InvalidArgument("--endpoint: expected a path like /v1/completions");
  o->api = o->endpoint.find("chat/completions") != std::string::npos ? ApiKind::kChatCompletions
                                                                       : ApiKind::kCompletions;
  if (o->label.empty()) o->label = o->model;
  return Status::Ok();
}

}  // namespace ferry::bench
