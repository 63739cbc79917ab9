// Which vector path the CPU kernels take on this machine, decided once per process.
//
// Every vectorised kernel is compiled three times (AVX-512, AVX2+FMA, plain C++) with
// function-level target options, so the addon loads and runs on any x86-64 CPU; the level is read
// from __builtin_cpu_supports at first use. PSRPC_SIMD=avx2|scalar in the environment lowers it
// (never raises it), which is how tests exercise the fallback paths on a machine that has AVX-512.
#pragma once

namespace psrpc {
namespace cpu {

enum class SimdLevel { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

SimdLevel simd_level();
const char* simd_name(SimdLevel level);

}  // namespace cpu
}  // namespace psrpc

// In a kernels:: function: calls cpu::<path>::NAME(args...) for the path chosen at start-up, where
// <path> is one of the namespaces avx512, avx2, scalar holding the same loops compiled per target.
#define PSRPC_DISPATCH(NAME, ...)                                         \
  switch (cpu::simd_level()) {                                            \
    case cpu::SimdLevel::kAvx512: return cpu::avx512::NAME(__VA_ARGS__);  \
    case cpu::SimdLevel::kAvx2: return cpu::avx2::NAME(__VA_ARGS__);      \
    default: return cpu::scalar::NAME(__VA_ARGS__);                       \
  }
