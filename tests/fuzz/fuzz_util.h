// Helpers shared by the libFuzzer targets in tests/fuzz: where the reference data is, a private
// temporary folder, and an always-on check that reports and aborts (libFuzzer then saves the input).
// Test code only.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>

namespace ferry::fuzz {

// FERRY_TESTDATA from the environment, else the folder the build compiled in.
inline std::string testdata_dir() {
  const char* v = std::getenv("FERRY_TESTDATA");
  return (v != nullptr && v[0] != '\0') ? v : FERRY_FUZZ_TESTDATA;
}

// A folder of this process's own, made on first use and kept for the process's life; libFuzzer
// runs inputs one after another in one thread, so targets may reuse files in it.
// Removed at a normal exit.
inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path;
    Dir() : path(std::filesystem::temp_directory_path() / ("ferry-fuzz-" + std::to_string(::getpid()))) {
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// The stack a civetweb worker runs HTTP handlers on: Debian's civetweb 1.15 starts its workers with
// pthread_attr_setstacksize(..., 0x19000). Targets whose code runs on such a thread in the server
// (request parsing) run each input on one, so a recursion that fits libFuzzer's 8 MiB main stack
// but not a worker's is found (a body nesting 198 deep crashed the server this way).
inline constexpr size_t kWorkerStackBytes = 0x19000;

// Runs `fn` on a new thread with a `stack_bytes` stack and waits for it.
inline void run_on_stack(size_t stack_bytes, const std::function<void()>& fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  if (pthread_create(&thread, &attr, trampoline, const_cast<std::function<void()>*>(&fn)) != 0) {
    std::fprintf(stderr, "fuzz: pthread_create failed\n");
    std::abort();
  }
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace ferry::fuzz

// An invariant of the code under test; on failure prints it and aborts so libFuzzer keeps the input.
#define FUZZ_CHECK(cond, ...)                                                    \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, \
                   #cond);                                                       \
      std::fprintf(stderr, __VA_ARGS__);                                         \
      std::fprintf(stderr, "\n");                                                \
      std::abort();                                                              \
    }                                                                            \
  } while (0)
