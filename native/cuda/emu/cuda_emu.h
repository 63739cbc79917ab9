// SIMT emulation of the slice of CUDA that native/cuda/*.cu uses, so g++ compiles and runs the
// same kernel sources on the CPU (tests on machines without a GPU).
//
// Execution model: a launch runs its blocks one after another on the calling OS thread. Inside
// a block every CUDA thread is a fiber (its own stack, cooperative switching); __syncthreads()
// parks the fiber and the block's scheduler runs the next one, so a barrier holds exactly when
// every live thread of the block has reached it. Consequences, all deliberate:
//   - __shared__ is `static thread_local`: all fibers of a block run on one OS thread, so they
//     see the same storage, and the block that runs next on that thread reuses it (as a GPU
//     reuses shared memory: its content is undefined at block start either way). Two OS threads
//     emulating kernels at once each get their own copy, so the emulator is re-entrant.
//   - threadIdx/blockIdx/blockDim/gridDim are per-OS-thread (__thread) variables the scheduler sets before
//     it resumes each fiber.
//   - Device memory is host memory; cudaMemcpy of any kind is memcpy; launches are synchronous.
// Limits: no dynamic (extern) shared memory, no warp intrinsics, no streams or events beyond the
// legacy default stream, at most 1024 threads per block. See native/cuda/README.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __restrict__ __restrict

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

namespace psrpc_emu {

// __thread (not thread_local): plain aggregates with no dynamic initialiser, so each access is a
// direct TLS load instead of a call through the C++ thread_local wrapper. blockDim and gridDim
// are uint3 here (dim3 in CUDA); kernels only read their members, and dim3 converts from uint3.
extern __thread uint3 thread_idx;
extern __thread uint3 block_idx;
extern __thread uint3 block_dim;
extern __thread uint3 grid_dim;

// Parks the calling fiber until every live thread of its block has arrived.
void syncthreads();

// Runs body(ctx) once per CUDA thread of every block of the grid. Returns false (and records
// cudaErrorInvalidConfiguration for cudaGetLastError) when the configuration is impossible.
bool run_grid(dim3 grid, dim3 block, size_t dynamic_shared, void (*body)(void*), void* ctx);

// Bound kernel + arguments: the object that `PSRPC_LAUNCH(...)(args...)` produces.
template <typename... Params>
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shmem, void (*kernel)(Params...))
      : grid_(grid), block_(block), shmem_(shmem), kernel_(kernel) {}

  template <typename... Args>
  void operator()(Args&&... args) {
    // Arguments are converted to the parameter types once, like a real launch copies them into
    // the parameter buffer; each emulated thread then gets its own copy by value.
    struct Bound {
      void (*kernel)(Params...);
      std::tuple<std::decay_t<Params>...> args;
    } bound{kernel_, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    run_grid(grid_, block_, shmem_, &invoke<Bound>, &bound);
  }

 private:
  template <typename Bound>
  static void invoke(void* ctx) {
    Bound* b = static_cast<Bound*>(ctx);
    std::apply(b->kernel, b->args);
  }

  dim3 grid_, block_;
  size_t shmem_;
  void (*kernel_)(Params...);
};

template <typename... Params>
Launch<Params...> launch(dim3 grid, dim3 block, size_t shmem, void (*kernel)(Params...)) {
  return Launch<Params...>(grid, block, shmem, kernel);
}

}  // namespace psrpc_emu

#define threadIdx (::psrpc_emu::thread_idx)
#define blockIdx (::psrpc_emu::block_idx)
#define blockDim (::psrpc_emu::block_dim)
#define gridDim (::psrpc_emu::grid_dim)

inline void __syncthreads() { ::psrpc_emu::syncthreads(); }

// The emulator runs one fiber at a time per OS thread and blocks of one launch on one OS thread,
// but two OS threads may emulate kernels at once, so atomics stay real atomics.
inline float atomicAdd(float* address, float value) {
  uint32_t* word = reinterpret_cast<uint32_t*>(address);
  uint32_t expected = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    float old;
    std::memcpy(&old, &expected, sizeof old);
    const float sum = old + value;
    uint32_t desired;
    std::memcpy(&desired, &sum, sizeof desired);
    if (__atomic_compare_exchange_n(word, &expected, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}
inline double atomicAdd(double* address, double value) {
  uint64_t* word = reinterpret_cast<uint64_t*>(address);
  uint64_t expected = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    double old;
    std::memcpy(&old, &expected, sizeof old);
    const double sum = old + value;
    uint64_t desired;
    std::memcpy(&desired, &sum, sizeof desired);
    if (__atomic_compare_exchange_n(word, &expected, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}
inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// Host float arithmetic already rounds to nearest even (no FMA contraction across statements is
// relied upon by the kernels that use these).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }

// Runtime API: device memory is host memory.
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
