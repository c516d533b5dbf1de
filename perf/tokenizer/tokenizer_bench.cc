// Tokenizer throughput benchmark, built as build/perf/tokenizer_bench:
//
//   build/perf/tokenizer_bench <model_dir> <text_file>... [--mb N] [--threads T]
//
// Concatenates the text files, repeats them up to N MiB (default 8), encodes the whole text in
// chunks of ~4 KiB (request-sized) on T threads sharing one const Tokenizer, and prints encode
// MB/s, tokens/s and decode MB/s (single thread).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/llm/tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU seconds used by the process: on a shared, busy machine this is steadier than wall time.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Cuts text into chunks of about `size` bytes, at a space so no character is split.
std::vector<std::string> chunks_of(const std::string& text, size_t size) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + size);
    while (end < text.size() && text[end] != ' ') ++end;
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <model_dir> <text_file>... [--mb N] [--threads T]\n", argv[0]);
    return 2;
  }
  size_t target_mb = 8;
  int threads = 1;
  std::string corpus;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mb" && i + 1 < argc) {
      target_mb = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::ifstream in(arg, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      corpus += ss.str();
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no text read\n");
    return 2;
  }
  std::string text;
  while (text.size() < target_mb * 1024 * 1024) text += corpus;

  auto t0 = std::chrono::steady_clock::now();
  auto tok = ferry::llm::Tokenizer::load(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "load: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  std::printf("load: %.2f s (%s)\n", seconds_since(t0), argv[1]);

  // Cold: the corpus once, on a fresh thread (empty per-thread word cache).
  {
    const auto cold_chunks = chunks_of(corpus, 4096);
    double cpu = 0, wall = 0;
    std::thread([&] {
      const double c0 = cpu_seconds();
      const auto w0 = std::chrono::steady_clock::now();
      for (const auto& c : cold_chunks) (void)(*tok)->encode(c, false);
      cpu = cpu_seconds() - c0;
      wall = seconds_since(w0);
    }).join();
    const double cmb = static_cast<double>(corpus.size()) / 1e6;
    std::printf("encode cold (corpus once, %.2f MB): %.2f MB/s cpu, %.2f MB/s wall\n", cmb, cmb / cpu, cmb / wall);
  }

  const auto chunks = chunks_of(text, 4096);
  const double cpu0 = cpu_seconds();
  std::vector<size_t> num_tokens(static_cast<size_t>(threads), 0);
  t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < chunks.size(); i += static_cast<size_t>(threads)) {
        auto ids = (*tok)->encode(chunks[i], false);
        if (ids.ok()) num_tokens[static_cast<size_t>(t)] += ids->size();
      }
    });
  }
  for (auto& th : pool) th.join();
  const double enc_s = seconds_since(t0);
  const double enc_cpu = cpu_seconds() - cpu0;
  size_t total_tokens = 0;
  for (size_t n : num_tokens) total_tokens += n;
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf(
      "encode warm: %.1f MB in %.3f s wall = %.2f MB/s wall, %.2f MB/s per cpu-second, %.2f M tokens/s wall"
      " (%zu tokens, %d threads, %zu chunks)\n",
      mb, enc_s, mb / enc_s, mb / enc_cpu, static_cast<double>(total_tokens) / enc_s / 1e6, total_tokens, threads,
      chunks.size());

  auto all = (*tok)->encode(text, false);
  t0 = std::chrono::steady_clock::now();
  const std::string back = (*tok)->decode(all.value(), false);
  const double dec_s = seconds_since(t0);
  std::printf("decode: %.2f MB/s (round trip %s)\n", static_cast<double>(back.size()) / 1e6 / dec_s,
              back == text ? "exact" : "differs");
  return 0;
}
