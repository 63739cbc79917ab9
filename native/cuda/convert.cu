// float32 <-> float16 / bfloat16 conversions with integer bit manipulation only (no cuda_fp16.h
// intrinsics), so the emulated and real builds produce identical bits: round to nearest even,
// NaN stays NaN (quiet), fp16 overflow goes to infinity.
#include "cuda_compat.h"

namespace psrpc {
namespace cuda {
namespace {

// F. Giesen's float_to_half_fast3_rtne: the subnormal range is rounded by one float addition
// whose hardware rounding (forced to round-to-nearest with __fadd_rn) does the work.
__device__ __forceinline__ uint16_t to_f16(float f) {
  const uint32_t kF32Infinity = 255u << 23;
  const uint32_t kF16Max = (127u + 16u) << 23;  // 65536.0f: everything above rounds to infinity
  const uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t u = float_bits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t out;
  if (u >= kF16Max) {
    out = u > kF32Infinity ? 0x7e00u : 0x7c00u;
  } else if (u < (113u << 23)) {
    out = float_bits(__fadd_rn(bits_float(u), bits_float(kDenormMagic))) - kDenormMagic;
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    u += mant_odd;
    out = u >> 13;
  }
  return static_cast<uint16_t>(out | (sign >> 16));
}

__device__ __forceinline__ float from_f16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return bits_float(sign);
    // Subnormal: shift the leading one into the implicit position.
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3ffu;
    return bits_float(sign | (exponent << 23) | (mantissa << 13));
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

__device__ __forceinline__ uint16_t to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float from_bf16(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

__global__ void f32_to_f16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = to_f16(x[i]);
}
__global__ void f16_to_f32_kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = from_f16(x[i]);
}
__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = to_bf16(x[i]);
}
__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = from_bf16(x[i]);
}

}  // namespace
}  // namespace cuda

namespace kernels {

void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  if (n > 0) PSRPC_LAUNCH(cuda::blocks_for(n), cuda::kThreads, 0, cuda::f32_to_f16_kernel)(x, y, n);
}
void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  if (n > 0) PSRPC_LAUNCH(cuda::blocks_for(n), cuda::kThreads, 0, cuda::f16_to_f32_kernel)(x, y, n);
}
void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  if (n > 0) PSRPC_LAUNCH(cuda::blocks_for(n), cuda::kThreads, 0, cuda::f32_to_bf16_kernel)(x, y, n);
}
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  if (n > 0) PSRPC_LAUNCH(cuda::blocks_for(n), cuda::kThreads, 0, cuda::bf16_to_f32_kernel)(x, y, n);
}

}  // namespace kernels
}  // namespace psrpc
