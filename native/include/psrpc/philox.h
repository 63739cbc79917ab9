// The counter-based generator behind dropout, shared by the CPU and CUDA backends.
//
// uniform_at(seed, index) is a pure function of its two arguments (Philox4x32-10, Salmon et al.
// 2011, the generator cuRAND and PyTorch use), so a backend may draw element i on any thread in
// any order and still produce the same mask as every other backend. Only 32-bit integer
// arithmetic is used (no floating point before the final exact scaling), which makes the result
// bit-identical on x86, ARM and every CUDA architecture. The header compiles as plain C++17 and
// as CUDA (the functions are __host__ __device__ there).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PSRPC_HOST_DEVICE __host__ __device__
#else
#define PSRPC_HOST_DEVICE
#endif

namespace psrpc {
namespace rng {

struct Philox4x32 {
  uint32_t v[4];
};

// One Philox4x32-10 block: counter (c0..c3) under key (k0, k1).
PSRPC_HOST_DEVICE inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                  uint32_t k0, uint32_t k1) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  Philox4x32 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

// The raw 32-bit draw for element `index` of stream `seed`: the first word of the Philox block
// whose counter is the 64-bit index and whose key is the 64-bit seed.
PSRPC_HOST_DEVICE inline uint32_t bits_at(uint64_t seed, uint64_t index) {
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32))
      .v[0];
}

// Uniform in [0, 1) with 24 random bits: (bits >> 8) * 2^-24 is exact in float32.
PSRPC_HOST_DEVICE inline float uniform_at(uint64_t seed, uint64_t index) {
  return static_cast<float>(bits_at(seed, index) >> 8) * (1.0f / 16777216.0f);
}

// Dropout keeps element `index` when its draw is >= p (probability 1 - p). Both backends call
// this, so the comparison itself cannot drift apart.
PSRPC_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t index, float p) {
  return uniform_at(seed, index) >= p;
}

}  // namespace rng
}  // namespace psrpc
