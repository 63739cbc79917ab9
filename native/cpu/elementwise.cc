// The elementwise kernels of the contract (activation, arithmetic, dropout, fused optimizer
// steps, conversions), each compiled for AVX-512, AVX2 and the baseline and dispatched at run time.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "psrpc/kernels.h"
#include "psrpc/philox.h"
#include "simd.h"

namespace psrpc {
namespace cpu {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
// GCC 12 reports the intrinsics' own placeholder operands (__Y) as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace avx512 {

inline void sqrt_block(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1u);
  _mm512_mask_storeu_ps(x + i, tail, _mm512_sqrt_ps(_mm512_maskz_loadu_ps(tail, x + i)));
}

#include "elementwise_body.inc"

// The instruction set converts fp16 itself (round to nearest even, subnormals, NaN, overflow).
inline void f32_to_f16_hw(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
  f32_to_f16(x + i, y + i, n - i);
}

inline void f16_to_f32_hw(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(h));
  }
  f16_to_f32(x + i, y + i, n - i);
}

// Philox4x32-10 on 16 counters at once; bit-identical to rng::uniform_at (see philox.h).
inline void dropout_forward_hw(const float* x, float* y, uint8_t* mask, int64_t n, float p,
                               uint64_t seed, uint64_t offset) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i mul0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i mul1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512 keep_scale = _mm512_set1_ps(1.0f - p);
  const __m512 vp = _mm512_set1_ps(p);
  const __m512 to_unit = _mm512_set1_ps(1.0f / 16777216.0f);
  const __m128i ones = _mm_set1_epi8(1);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 live = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    const uint64_t first = offset + static_cast<uint64_t>(i);
    const __m512i lo_base = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first)));
    __m512i c0 = _mm512_add_epi32(lo_base, iota);
    // Lanes whose low word wrapped past 2^32 carry into the high word.
    const __mmask16 wrapped = _mm512_cmplt_epu32_mask(c0, lo_base);
    __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32))), wrapped,
                                       _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32))),
                                       _mm512_set1_epi32(1));
    __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      // 32 x 32 -> 64-bit products of even and odd lanes, split into high and low words.
      const __m512i pe0 = _mm512_mul_epu32(c0, mul0), po0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), mul0);
      const __m512i pe1 = _mm512_mul_epu32(c2, mul1), po1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), mul1);
      const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe0, 32), po0);
      const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, pe0, _mm512_slli_epi64(po0, 32));
      const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe1, 32), po1);
      const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, pe1, _mm512_slli_epi64(po1, 32));
      const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
      const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c0, 8)), to_unit);
    const __mmask16 keep = _mm512_cmp_ps_mask(u, vp, _CMP_GE_OQ) & live;
    const __m512 scaled = _mm512_div_ps(_mm512_maskz_loadu_ps(live, x + i), keep_scale);
    _mm512_mask_storeu_ps(y + i, live, _mm512_maskz_mov_ps(keep, scaled));
    _mm_mask_storeu_epi8(mask + i, live, _mm_maskz_mov_epi8(keep, ones));
  }
}

}  // namespace avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {

inline void sqrt_block(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

#include "elementwise_body.inc"
}  // namespace avx2
#pragma GCC pop_options

namespace scalar {

inline void sqrt_block(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::sqrt(x[i]);
}

#include "elementwise_body.inc"
}  // namespace scalar

}  // namespace cpu

namespace kernels {


void relu_forward(const float* x, float* y, int64_t n) { PSRPC_DISPATCH(relu_forward, x, y, n) }

void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  PSRPC_DISPATCH(relu_backward, x, dy, dx, n)
}

void axpy(int64_t n, float alpha, const float* x, float* y) { PSRPC_DISPATCH(axpy, n, alpha, x, y) }

void scale(int64_t n, float alpha, float* x) { PSRPC_DISPATCH(scale, n, alpha, x) }

void add(int64_t n, const float* a, const float* b, float* out) { PSRPC_DISPATCH(add, n, a, b, out) }

void mul(int64_t n, const float* a, const float* b, float* out) { PSRPC_DISPATCH(mul, n, a, b, out) }

double sum(int64_t n, const float* x) { PSRPC_DISPATCH(sum, n, x) }

void bias_add(float* y, const float* bias, int64_t rows, int64_t cols) {
  PSRPC_DISPATCH(bias_add, y, bias, rows, cols)
}

void bias_grad(const float* dy, float* dbias, int64_t rows, int64_t cols, bool accumulate) {
  PSRPC_DISPATCH(bias_grad, dy, dbias, rows, cols, accumulate)
}

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float p, uint64_t seed,
                     uint64_t offset) {
  switch (cpu::simd_level()) {
    case cpu::SimdLevel::kAvx512: return cpu::avx512::dropout_forward_hw(x, y, mask, n, p, seed, offset);
    case cpu::SimdLevel::kAvx2: return cpu::avx2::dropout_forward(x, y, mask, n, p, seed, offset);
    default: return cpu::scalar::dropout_forward(x, y, mask, n, p, seed, offset);
  }
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float p) {
  PSRPC_DISPATCH(dropout_backward, dy, mask, dx, n, p)
}

float uniform_at(uint64_t seed, uint64_t index) { return rng::uniform_at(seed, index); }

void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov, bool first_step) {
  PSRPC_DISPATCH(sgd_update, param, grad, momentum_buf, n, lr, momentum, dampening, weight_decay,
                 nesterov, first_step)
}

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, bool decoupled_weight_decay,
                 int64_t step) {
  // The bias corrections in double, as torch computes them in Python floats.
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(static_cast<double>(lr) / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  PSRPC_DISPATCH(adam_update, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
                 decoupled_weight_decay, step_size, sqrt_bc2)
}

void f32_to_f16(const float* x, uint16_t* y, int64_t n) { 
  switch (cpu::simd_level()) {
    case cpu::SimdLevel::kAvx512: return cpu::avx512::f32_to_f16_hw(x, y, n);
    case cpu::SimdLevel::kAvx2: return cpu::avx2::f32_to_f16(x, y, n);
    default: return cpu::scalar::f32_to_f16(x, y, n);
  }
}

void f16_to_f32(const uint16_t* x, float* y, int64_t n) { 
  switch (cpu::simd_level()) {
    case cpu::SimdLevel::kAvx512: return cpu::avx512::f16_to_f32_hw(x, y, n);
    case cpu::SimdLevel::kAvx2: return cpu::avx2::f16_to_f32(x, y, n);
    default: return cpu::scalar::f16_to_f32(x, y, n);
  }
}

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) { PSRPC_DISPATCH(f32_to_bf16, x, y, n) }

void bf16_to_f32(const uint16_t* x, float* y, int64_t n) { PSRPC_DISPATCH(bf16_to_f32, x, y, n) }


}  // namespace kernels
}  // namespace psrpc
