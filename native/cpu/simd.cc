// Run-time choice of the vector path (see simd.h).
#include "simd.h"

#include <cstdlib>
#include <cstring>

namespace psrpc {
namespace cpu {
namespace {

SimdLevel detect() {
  SimdLevel level = SimdLevel::kScalar;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = SimdLevel::kAvx2;
  if (level == SimdLevel::kAvx2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    level = SimdLevel::kAvx512;
  }
#endif
  // An override may only lower the level: asking for a path the CPU lacks would crash.
  if (const char* want = std::getenv("PSRPC_SIMD")) {
    if (std::strcmp(want, "scalar") == 0) level = SimdLevel::kScalar;
    if (std::strcmp(want, "avx2") == 0 && level > SimdLevel::kAvx2) level = SimdLevel::kAvx2;
  }
  return level;
}

}  // namespace

SimdLevel simd_level() {
  static const SimdLevel level = detect();
  return level;
}

const char* simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace cpu
}  // namespace psrpc
