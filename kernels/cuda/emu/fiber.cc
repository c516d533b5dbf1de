#include "kernels/cuda/emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace ferry::simt::detail {
namespace {

size_t page_bytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
size_t slot_bytes() { return FiberStacks::kStackBytes + page_bytes(); }  // guard page, then stack

}  // namespace

FiberStacks::~FiberStacks() {
  if (region_) munmap(region_, count_ * slot_bytes());
}

void FiberStacks::reserve(size_t count) {
  if (count <= count_) return;
  if (region_) munmap(region_, count_ * slot_bytes());
  void* p = mmap(nullptr, count * slot_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "ferry simt: cannot map %zu fiber stacks\n", count);
    std::abort();  // the emulator cannot run a block without stacks; this is a test-only build
  }
  region_ = static_cast<char*>(p);
  count_ = count;
  for (size_t i = 0; i < count; ++i) mprotect(region_ + i * slot_bytes(), page_bytes(), PROT_NONE);
}

char* FiberStacks::stack_base(size_t i) const { return region_ + i * slot_bytes() + page_bytes(); }

#if defined(__x86_64__)

// ferry_simt_switch(void** save_sp, void* load_sp): pushes the callee-saved registers (System V
// ABI: rbp, rbx, r12-r15) on the current stack, stores its stack pointer in *save_sp, switches to
// load_sp and pops the same registers from there. The FP control state is shared by all fibers of a
// host thread and left alone.
extern "C" void ferry_simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .globl ferry_simt_switch
  .hidden ferry_simt_switch
  .type ferry_simt_switch,@function
  .p2align 4
ferry_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ferry_simt_switch, .-ferry_simt_switch
  .popsection
)");

void fiber_prepare(FiberContext& ctx, char* base, size_t bytes, void (*entry)()) {
  // The stack as ferry_simt_switch leaves it: six saved registers, then the address `ret` jumps to,
  // then a null return address for entry; entry starts with rsp = 8 (mod 16) as after a call.
  auto top = reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  ctx.sp = sp;
}

void fiber_switch(FiberContext& from, FiberContext& to) { ferry_simt_switch(&from.sp, to.sp); }

#else

void fiber_prepare(FiberContext& ctx, char* base, size_t bytes, void (*entry)()) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = base;
  ctx.uc.uc_stack.ss_size = bytes;
  ctx.uc.uc_link = nullptr;
  makecontext(&ctx.uc, entry, 0);
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }

#endif

}  // namespace ferry::simt::detail
