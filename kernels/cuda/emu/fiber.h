// Fibers for the SIMT emulator: a stack and a saved context per CUDA thread, switched cooperatively
// on one host thread. x86-64 uses a six-register switch written here (a few nanoseconds: the
// emulator switches at every barrier and shuffle of every thread); other hosts fall back to
// ucontext (swapcontext makes a signal-mask system call per switch: correct, slower).
// Not thread-safe: a FiberStacks and its contexts belong to one host thread.
#pragma once

#include <cstddef>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace ferry::simt::detail {

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

// `count` stacks of `stack_bytes` each, every one below a guard page (an overflow faults instead of
// corrupting the neighbour). Reused across launches; grows, never shrinks.
class FiberStacks {
 public:
  static constexpr size_t kStackBytes = 64 * 1024;
  FiberStacks() = default;
  ~FiberStacks();
  FiberStacks(const FiberStacks&) = delete;
  FiberStacks& operator=(const FiberStacks&) = delete;
  void reserve(size_t count);
  char* stack_base(size_t i) const;  // lowest usable address of stack i
 private:
  char* region_ = nullptr;
  size_t count_ = 0;
};

// Prepares `ctx` to start running entry() on the stack [base, base + bytes). entry must never return.
void fiber_prepare(FiberContext& ctx, char* base, size_t bytes, void (*entry)());
// Saves the running context into `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);

}  // namespace ferry::simt::detail
