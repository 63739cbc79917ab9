// Runtime of the SIMT emulation (see cuda_emu.h): the per-block fiber scheduler that makes
// __syncthreads() a real barrier, and the runtime API over host memory.
//
// Fibers switch with a few lines of x86-64 assembly (callee-saved registers + stack pointer,
// about a nanosecond) because glibc's swapcontext makes a sigprocmask system call on every
// switch, which made the tiled kernels tens of times slower; other architectures use ucontext.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#if !defined(__x86_64__) || defined(PSRPC_EMU_UCONTEXT)
#define PSRPC_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace psrpc_emu {

__thread uint3 thread_idx{0, 0, 0};
__thread uint3 block_idx{0, 0, 0};
__thread uint3 block_dim{1, 1, 1};
__thread uint3 grid_dim{1, 1, 1};

namespace {

thread_local cudaError_t last_error = cudaSuccess;

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

// 64 KiB of stack per emulated thread (kernels use a few hundred bytes; the margin covers -O0
// builds and sanitizers), plus a guard page below each stack so an overflow faults loudly.
constexpr size_t kStackBytes = 64 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;

#if !PSRPC_EMU_USE_UCONTEXT
extern "C" void psrpc_emu_switch(void** save_sp, void* load_sp);
// save_sp <- current stack (callee-saved registers, MXCSR and x87 control word pushed on it);
// then resume the stack load_sp, popping the same frame it pushed when it switched away.
asm(R"(
  .text
  .p2align 4
  .globl psrpc_emu_switch
  .hidden psrpc_emu_switch
  .type psrpc_emu_switch,@function
psrpc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size psrpc_emu_switch,.-psrpc_emu_switch
)");
#endif

struct Fiber {
  char* stack_lo = nullptr;  // lowest usable byte (just above the guard page)
#if PSRPC_EMU_USE_UCONTEXT
  ucontext_t ctx;
#else
  void* sp = nullptr;
#endif
  bool done = false;
};

// Everything one OS thread needs to emulate blocks: its fibers and the scheduler's context.
struct Engine {
  std::vector<Fiber> fibers;
  char* region = nullptr;
  size_t region_bytes = 0;
  size_t page = 0;
#if PSRPC_EMU_USE_UCONTEXT
  ucontext_t scheduler;
#else
  void* scheduler_sp = nullptr;
#endif
  unsigned current = 0;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  bool running = false;
  // PSRPC_EMU_SCHEDULE=ordered runs threads 0, 1, 2, ... in every pass (for debugging a kernel).
  bool fixed_order = [] {
    const char* v = std::getenv("PSRPC_EMU_SCHEDULE");
    return v && std::strcmp(v, "ordered") == 0;
  }();
  uint32_t random_state = 0x9e3779b9u;

  uint32_t next_random() {  // xorshift32
    uint32_t x = random_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return random_state = x;
  }

  ~Engine() {
    if (region) munmap(region, region_bytes);
  }

  bool reserve(unsigned threads) {
    if (fibers.size() >= threads) return true;
    if (region) munmap(region, region_bytes);
    page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t slot = kStackBytes + page;
    region_bytes = slot * threads;
    void* mem = mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      region = nullptr;
      fibers.clear();
      return false;
    }
    region = static_cast<char*>(mem);
    fibers.assign(threads, Fiber{});
    for (unsigned i = 0; i < threads; ++i) {
      char* guard = region + i * slot;
      mprotect(guard, page, PROT_NONE);
      fibers[i].stack_lo = guard + page;
    }
    return true;
  }
};

thread_local Engine engine;

[[noreturn]] void fiber_main();

#if PSRPC_EMU_USE_UCONTEXT
void fiber_entry() { fiber_main(); }

void start_fiber(Fiber& f) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack_lo;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry, 0);
  f.done = false;
}
void resume(Fiber& f) { swapcontext(&engine.scheduler, &f.ctx); }
void yield_to_scheduler(Fiber& f) { swapcontext(&f.ctx, &engine.scheduler); }
#else
void fiber_entry() { fiber_main(); }

// Lays out the frame psrpc_emu_switch pops: control words, six zeroed callee-saved registers,
// then the return address fiber_entry, entered with the stack aligned as after a call.
void start_fiber(Fiber& f) {
  uintptr_t top = reinterpret_cast<uintptr_t>(f.stack_lo + kStackBytes) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;  // fake return address of fiber_entry: stops unwinders
  *--sp = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int i = 0; i < 6; ++i) *--sp = 0;
  --sp;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  f.sp = sp;
  f.done = false;
}
void resume(Fiber& f) { psrpc_emu_switch(&engine.scheduler_sp, f.sp); }
void yield_to_scheduler(Fiber& f) { psrpc_emu_switch(&f.sp, engine.scheduler_sp); }
#endif

void fiber_main() {
  engine.body(engine.ctx);
  Fiber& f = engine.fibers[engine.current];
  f.done = true;
  yield_to_scheduler(f);
  std::abort();  // a finished fiber is never resumed
}

}  // namespace

void syncthreads() {
  if (!engine.running) return;  // called from host code: nothing to wait for
  yield_to_scheduler(engine.fibers[engine.current]);
}

bool run_grid(dim3 grid, dim3 block, size_t dynamic_shared, void (*body)(void*), void* ctx) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > kMaxThreadsPerBlock ||
      block.z > 64 || grid.y > 65535 || grid.z > 65535 || dynamic_shared != 0) {
    record(cudaErrorInvalidConfiguration);
    return false;
  }
  if (engine.running) {
    // Dynamic parallelism is not emulated; a kernel launching a kernel is a bug here.
    std::fprintf(stderr, "psrpc cuda-emu: nested kernel launch is not supported\n");
    std::abort();
  }
  const unsigned n = static_cast<unsigned>(threads);
  if (!engine.reserve(n)) {
    record(cudaErrorMemoryAllocation);
    return false;
  }
  const uint3 saved_block_dim = block_dim, saved_grid_dim = grid_dim;
  const uint3 saved_block_idx = block_idx, saved_thread_idx = thread_idx;
  engine.body = body;
  engine.ctx = ctx;
  engine.running = true;
  block_dim = uint3{block.x, block.y, block.z};
  grid_dim = uint3{grid.x, grid.y, grid.z};
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        block_idx = uint3{bx, by, bz};
        for (unsigned i = 0; i < n; ++i) start_fiber(engine.fibers[i]);
        // Round robin: each pass runs every live thread up to its next barrier or its end, so
        // when a pass finishes, every live thread waits at the same barrier. Each pass starts at
        // a pseudo-random thread and goes up or down, so a missing barrier shows up whichever
        // side of the racing writer the reader is on (a fixed order hides half of such races).
        // The sequence is seeded per OS thread: runs are reproducible.
        unsigned live = n;
        while (live > 0) {
          live = 0;
          const uint32_t r = engine.next_random();
          const bool forward = (r & 1u) != 0 || engine.fixed_order;
          const unsigned start = engine.fixed_order ? 0 : (r >> 1) % n;
          for (unsigned step = 0; step < n; ++step) {
            unsigned i = forward ? start + step : start + n - step;
            if (i >= n) i -= n;
            if (i >= n) i -= n;
            Fiber& f = engine.fibers[i];
            if (f.done) continue;
            engine.current = i;
            thread_idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
            resume(f);
            if (!f.done) ++live;
          }
        }
      }
    }
  }
  engine.running = false;
  block_dim = saved_block_dim;
  grid_dim = saved_grid_dim;
  block_idx = saved_block_idx;
  thread_idx = saved_thread_idx;
  return true;
}

}  // namespace psrpc_emu

using psrpc_emu::record;

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (!ptr) return record(cudaErrorInvalidValue);
  // 256-byte alignment, as cudaMalloc guarantees.
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes == 0 ? 256 : bytes) != 0) {
    *ptr = nullptr;
    return record(cudaErrorMemoryAllocation);
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return record(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!ptr) return record(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaGetLastError() {
  const cudaError_t e = psrpc_emu::last_error;
  psrpc_emu::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return psrpc_emu::last_error; }

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record(cudaErrorInvalidValue);
  *count = 1;  // the emulated device
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int* device) {
  if (!device) return record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
  }
  return "unknown error";
}
