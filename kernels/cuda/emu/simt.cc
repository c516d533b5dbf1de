// The block runner of the SIMT emulator (see simt.h for the model): one fiber per CUDA thread, a
// round-robin scheduler on the launching host thread, barriers and warp operations as rendezvous.
#include "kernels/cuda/emu/simt.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/emu/fiber.h"

namespace ferry::simt::detail {

thread_local const ThreadIdentity* g_current = nullptr;
thread_local BlockState g_block;

namespace {

constexpr unsigned kMaxThreadsPerBlock = 1024;

enum class State { kRunnable, kAtBarrier, kAtWarpOp, kDone };

struct Thread {
  ThreadIdentity id;
  FiberContext context;
  State state = State::kRunnable;
  uint64_t warp_ops = 0;  // warp operations posted so far
  unsigned warp_mask = 0;
  const char* warp_op = "";
  std::source_location barrier_site;
};

// A warp operation is a rendezvous of the lanes of its mask. Operations alternate between two slots
// by the parity of the lane's operation count: a lane cannot be two operations ahead of another of
// the same mask (the next operation needs it), so two slots suffice.
struct Warp {
  uint64_t values[2][32];
  unsigned mask[2];
  unsigned arrived[2];  // lanes that posted to the slot's pending operation (0: none pending)
  uint64_t op[2];       // that operation's index in the lanes' counts
  unsigned present;     // lanes that exist (a partial last warp has fewer than 32)
  unsigned exited;
};

// Thread orders the scheduler uses, block by block, so that a read not ordered by a barrier after
// its write meets the write missing in at least some blocks.
enum class Order { kForward, kReverse, kShuffled };

Order order_for_block(uint64_t block_linear) {
  static const int forced = [] {
    const char* env = std::getenv("FERRY_SIMT_SCHEDULE");  // forward | reverse | shuffled (debugging)
    if (env == nullptr) return -1;
    if (std::strcmp(env, "forward") == 0) return 0;
    if (std::strcmp(env, "reverse") == 0) return 1;
    if (std::strcmp(env, "shuffled") == 0) return 2;
    return -1;
  }();
  return static_cast<Order>(forced >= 0 ? forced : static_cast<int>(block_linear % 3));
}

class BlockRunner {
 public:
  // Runs one block; false (with error() set) when the block failed.
  bool run(uint3 block_idx, uint64_t block_linear, BodyFn body, void* context, size_t shared_bytes);
  const std::string& error() const { return error_; }

  // Called from fibers.
  [[noreturn]] void fail(const std::string& what);
  void barrier(const std::source_location& site);
  const uint64_t* exchange(unsigned mask, uint64_t bits, const char* op);
  [[noreturn]] void finish_current();

 private:
  static void fiber_entry();
  void yield_current() { fiber_switch(current_->context, scheduler_); }
  void release_barrier_if_complete();
  std::string describe_states() const;

  FiberStacks stacks_;
  std::vector<Thread> threads_;
  std::vector<Warp> warps_;
  std::vector<unsigned char> shared_;
  std::vector<unsigned> order_;
  FiberContext scheduler_;
  Thread* current_ = nullptr;
  BodyFn body_ = nullptr;
  void* body_context_ = nullptr;
  unsigned num_threads_ = 0, num_done_ = 0, num_at_barrier_ = 0;
  bool failed_ = false;
  std::string error_;
};

thread_local BlockRunner* g_runner = nullptr;

BlockRunner& runner() {
  if (g_runner == nullptr) g_runner = new BlockRunner();  // per host thread, kept for its lifetime
  return *g_runner;
}

void BlockRunner::fiber_entry() {
  BlockRunner& r = runner();
  r.body_(r.body_context_);
  r.finish_current();
}

bool BlockRunner::run(uint3 block_idx, uint64_t block_linear, BodyFn body, void* context, size_t shared_bytes) {
  const dim3 bd = g_block.block_dim;
  num_threads_ = bd.x * bd.y * bd.z;
  const unsigned num_warps = (num_threads_ + 31) / 32;
  if (threads_.size() < num_threads_) threads_.resize(num_threads_);
  if (warps_.size() < num_warps) warps_.resize(num_warps);
  stacks_.reserve(num_threads_);
  shared_.assign(std::max<size_t>(shared_bytes, 16), 0xFF);  // poison: NaN as floats
  g_block.block_idx = block_idx;
  g_block.dynamic_shared = shared_.data();
  body_ = body;
  body_context_ = context;
  num_done_ = num_at_barrier_ = 0;
  failed_ = false;
  error_.clear();
  for (unsigned w = 0; w < num_warps; ++w) {
    const unsigned lanes = std::min(32u, num_threads_ - 32 * w);
    warps_[w].arrived[0] = warps_[w].arrived[1] = 0;
    warps_[w].exited = 0;
    warps_[w].present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  }
  for (unsigned i = 0; i < num_threads_; ++i) {
    Thread& t = threads_[i];
    t.id.idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
    t.id.linear = i;
    t.id.lane = i % 32;
    t.state = State::kRunnable;
    t.warp_ops = 0;
    fiber_prepare(t.context, stacks_.stack_base(i), FiberStacks::kStackBytes, &BlockRunner::fiber_entry);
  }
  order_.resize(num_threads_);
  std::iota(order_.begin(), order_.end(), 0u);
  switch (order_for_block(block_linear)) {
    case Order::kForward: break;
    case Order::kReverse: std::reverse(order_.begin(), order_.end()); break;
    case Order::kShuffled: std::shuffle(order_.begin(), order_.end(), std::mt19937(static_cast<uint32_t>(block_linear))); break;
  }

  while (num_done_ < num_threads_ && !failed_) {
    bool ran = false;
    for (unsigned i : order_) {
      Thread& t = threads_[i];
      if (t.state != State::kRunnable) continue;
      current_ = &t;
      g_current = &t.id;
      fiber_switch(scheduler_, t.context);
      g_current = nullptr;
      current_ = nullptr;
      ran = true;
      if (failed_) break;
    }
    if (!ran && !failed_) {
      failed_ = true;
      error_ = "deadlock: no thread can make progress (" + describe_states() + ")";
    }
  }
  return !failed_;
}

std::string BlockRunner::describe_states() const {
  unsigned barrier = 0, warp = 0, done = 0;
  std::string first_warp_op;
  for (unsigned i = 0; i < num_threads_; ++i) {
    switch (threads_[i].state) {
      case State::kAtBarrier: ++barrier; break;
      case State::kAtWarpOp:
        if (warp++ == 0) first_warp_op = threads_[i].warp_op;
        break;
      case State::kDone: ++done; break;
      case State::kRunnable: break;
    }
  }
  std::string s = std::to_string(barrier) + " at __syncthreads, " + std::to_string(warp) + " in a warp operation";
  if (warp > 0) s += " (" + first_warp_op + ")";
  return s + ", " + std::to_string(done) + " exited, of " + std::to_string(num_threads_);
}

void BlockRunner::fail(const std::string& what) {
  failed_ = true;
  if (current_ != nullptr) {
    error_ = what + " (thread " + std::to_string(current_->id.linear) + ")";
    fiber_switch(current_->context, scheduler_);  // never resumed: the block is abandoned
  }
  error_ = what;
  std::abort();  // unreachable from device code; a host-side misuse
}

void BlockRunner::release_barrier_if_complete() {
  if (num_at_barrier_ == 0 || num_at_barrier_ + num_done_ < num_threads_) return;
  const Thread* first = nullptr;
  for (unsigned i = 0; i < num_threads_; ++i) {
    Thread& t = threads_[i];
    if (t.state != State::kAtBarrier) continue;
    if (first == nullptr) {
      first = &t;
    } else if (t.barrier_site.line() != first->barrier_site.line() ||
               std::strcmp(t.barrier_site.file_name(), first->barrier_site.file_name()) != 0) {
      fail(std::string("__syncthreads in divergent code: threads wait at ") + first->barrier_site.file_name() + ":" +
           std::to_string(first->barrier_site.line()) + " and at line " + std::to_string(t.barrier_site.line()));
    }
    t.state = State::kRunnable;
  }
  num_at_barrier_ = 0;
}

void BlockRunner::barrier(const std::source_location& site) {
  Thread& t = *current_;
  t.barrier_site = site;
  t.state = State::kAtBarrier;
  ++num_at_barrier_;
  release_barrier_if_complete();
  if (t.state == State::kAtBarrier) yield_current();
}

const uint64_t* BlockRunner::exchange(unsigned mask, uint64_t bits, const char* op) {
  Thread& t = *current_;
  const unsigned lane = t.id.lane, bit = 1u << lane;
  Warp& w = warps_[t.id.linear / 32];
  if ((mask & bit) == 0) fail(std::string(op) + ": the calling lane is not in the mask");
  if ((mask & ~w.present) != 0) fail(std::string(op) + ": the mask names lanes beyond the end of the block");
  if ((mask & w.exited) != 0) fail(std::string(op) + ": the mask names a lane that exited");
  const uint64_t k = t.warp_ops++;
  const unsigned p = k & 1;
  if (w.arrived[p] == 0) {
    w.mask[p] = mask;
    w.op[p] = k;
  } else if (w.mask[p] != mask) {
    fail(std::string(op) + ": lanes pass different masks");
  } else if (w.op[p] != k) {
    fail(std::string(op) + ": lanes of the mask are at different warp operations (divergent code)");
  }
  w.values[p][lane] = bits;
  w.arrived[p] |= bit;
  t.warp_mask = mask;
  t.warp_op = op;
  if (w.arrived[p] == mask) {  // the last to arrive wakes the others
    w.arrived[p] = 0;
    const unsigned warp_first = t.id.linear - lane;
    for (unsigned rest = mask & ~bit; rest != 0; rest &= rest - 1)
      threads_[warp_first + static_cast<unsigned>(__builtin_ctz(rest))].state = State::kRunnable;
    return w.values[p];
  }
  t.state = State::kAtWarpOp;
  yield_current();
  return w.values[p];
}

void BlockRunner::finish_current() {
  Thread& t = *current_;
  t.state = State::kDone;
  ++num_done_;
  // A lane that exits while the rest of its warp waits for it in a warp operation: on the GPU the
  // result is undefined; here it is an error.
  Warp& w = warps_[t.id.linear / 32];
  const unsigned bit = 1u << t.id.lane;
  w.exited |= bit;
  for (unsigned p = 0; p < 2; ++p)
    if (w.arrived[p] != 0 && (w.mask[p] & bit) != 0)
      fail("warp operation: lane " + std::to_string(t.id.lane) + " exited while named in the mask of a pending one");
  release_barrier_if_complete();
  fiber_switch(t.context, scheduler_);
  std::abort();  // a finished fiber is never resumed
}

}  // namespace

void device_fail(const std::string& what) {
  if (g_runner == nullptr || g_current == nullptr) {
    std::fprintf(stderr, "ferry simt: %s\n", what.c_str());
    std::abort();
  }
  g_runner->fail(what);
}

void block_barrier(const std::source_location& site) {
  if (g_current == nullptr) device_fail("__syncthreads called outside a kernel launch");
  g_runner->barrier(site);
}

const uint64_t* warp_exchange(unsigned mask, uint64_t bits, const char* op) {
  if (g_current == nullptr) device_fail("warp operation called outside a kernel launch");
  return g_runner->exchange(mask, bits, op);
}

namespace {

// The errors CUDA reports at launch: sticky error, bad stream, bad configuration.
cudaError_t launch_error(const void* func, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream) {
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  if (const cudaError_t e = check_enqueue(stream); e != cudaSuccess) return e;
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  if (shared_bytes > max_dynamic_shared_bytes(func)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace

void capture_grid(const void* func, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                  StreamWork replay) {
  if (g_current != nullptr) device_fail("kernel launched from device code (dynamic parallelism is not emulated)");
  cudaError_t e = launch_error(func, grid, block, shared_bytes, stream);
  if (e == cudaSuccess) e = record_work(stream, "kernel launch", std::move(replay));
  if (e != cudaSuccess) {
    invalidate_capture(stream);  // a failed launch fails the capture, as on the GPU
    set_launch_error(e);
  }
}

void run_grid(const void* func, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, BodyFn body,
              void* context) {
  if (g_current != nullptr) device_fail("kernel launched from device code (dynamic parallelism is not emulated)");
  if (const cudaError_t e = launch_error(func, grid, block, shared_bytes, stream); e != cudaSuccess)
    return set_launch_error(e);

  BlockRunner& r = runner();
  g_block.block_dim = block;
  g_block.grid_dim = grid;
  uint64_t linear = 0;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x, ++linear) {
        if (!r.run(uint3{x, y, z}, linear, body, context, shared_bytes)) {
          return set_execution_error("kernel block (" + std::to_string(x) + ", " + std::to_string(y) + ", " +
                                     std::to_string(z) + "): " + r.error());
        }
      }
    }
  }
}

}  // namespace ferry::simt::detail
