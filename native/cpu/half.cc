// The 16-bit wire-format kernels of the contract (kernels.h, "16-bit wire formats"): bf16 / fp16
// narrowing and widening, fp32 accumulation of wire values, rounding in place and the non-finite
// count. AVX-512 and AVX2 (+F16C for fp16) loops by hand, plain C++ for the baseline and for the
// AVX2 tails; the path is picked at run time (simd.h). Every path equals the scalar helpers below,
// which are a transcription of src/tensor/half.ts's TypeScript fallback, bit for bit.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {
namespace {

// Every NaN an accumulation produces is this one (JS's NaN): which NaN x86 returns for NaN + NaN
// depends on operand order, which compilers (GCC, V8) may swap, so the kernels pick it themselves.
constexpr uint32_t kQuietNaN = 0x7fc00000u;

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// half.ts bf16Of: round to nearest even on the pattern; a NaN keeps its top bits, made quiet.
inline uint16_t bf16_of(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // no wrap: only NaNs are that large
}

// half.ts f16Of: IEEE binary16, nearest even, overflow to inf, subnormals, quiet NaN.
inline uint16_t f16_of(uint32_t u) {
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((u >> 23) & 0xffu);
  uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant != 0 ? 0x200u | (mant >> 13) : 0u));
  const int32_t e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    mant |= 0x800000u;
    const int32_t shift = 14 - e;  // 14..24
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rest = mant & ((1u << shift) - 1u);
    uint32_t h = mant >> shift;
    if (rest > half || (rest == half && (h & 1u) != 0)) h++;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0)) h++;  // may carry up to inf: correct
  return static_cast<uint16_t>(sign | h);
}

// Exact widening; a signalling NaN comes out quiet, as vcvtph2ps makes it.
inline float f16_widen(uint16_t h16) {
  const uint32_t h = h16;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return float_of(sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u));
  if (exp != 0) return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
  return float_of(sign | bits_of(static_cast<float>(mant) * 0x1.0p-24f));  // subnormal or zero: exact
}

inline float bf16_widen(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

// half.ts maxNaN: either NaN gives NaN; otherwise a when a > b, else b (so max(+0, -0) is -0).
inline float max_nan(float a, float b) {
  if (a != a || b != b) return float_of(kQuietNaN);
  return a > b ? a : b;
}

// a + b, a NaN result made kQuietNaN.
inline float sum_nan(float a, float b) {
  const float r = a + b;
  return r != r ? float_of(kQuietNaN) : r;
}

inline bool nonfinite(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u; }

}  // namespace

namespace scalar {

inline void wire_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_of(bits_of(src[i]));
}
inline void wire_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_widen(src[i]);
}
inline void wire_to_f16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_of(bits_of(src[i]));
}
inline void wire_from_f16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_widen(src[i]);
}
inline void acc_bf16(float* acc, const uint16_t* src, int64_t n, int op) {
  if (op == kernels::kWireMax) for (int64_t i = 0; i < n; ++i) acc[i] = max_nan(acc[i], bf16_widen(src[i]));
  else for (int64_t i = 0; i < n; ++i) acc[i] = sum_nan(acc[i], bf16_widen(src[i]));
}
inline void acc_f16(float* acc, const uint16_t* src, int64_t n, int op) {
  if (op == kernels::kWireMax) for (int64_t i = 0; i < n; ++i) acc[i] = max_nan(acc[i], f16_widen(src[i]));
  else for (int64_t i = 0; i < n; ++i) acc[i] = sum_nan(acc[i], f16_widen(src[i]));
}
inline void acc_f32(float* acc, const float* src, int64_t n, int op) {
  if (op == kernels::kWireMax) for (int64_t i = 0; i < n; ++i) acc[i] = max_nan(acc[i], src[i]);
  else for (int64_t i = 0; i < n; ++i) acc[i] = sum_nan(acc[i], src[i]);
}
inline void round_bf16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_widen(bf16_of(bits_of(x[i])));
}
inline void round_f16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = f16_widen(f16_of(bits_of(x[i])));
}
inline size_t nonfinite_count(const float* x, int64_t n) {
  size_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += nonfinite(bits_of(x[i])) ? 1 : 0;
  return c;
}

}  // namespace scalar

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c,prefer-vector-width=512")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace avx512 {

// Every loop: full vectors of 16, then one masked vector for the tail (masked-off lanes are neither
// read nor written, so no access past either end).
inline __mmask16 first(int64_t k) { return static_cast<__mmask16>((1u << k) - 1u); }

inline __m512i ld16(const uint16_t* p) { return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512i ld16(const uint16_t* p, __mmask16 m) { return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)); }

// bf16 patterns (in the low half of each lane) of 16 fp32 patterns. NaN lanes take the quiet bit
// by a masked or instead of a second result and a blend (7 instructions, not 10: twice as fast in cache).
inline __m512i bf16_of(__m512i u) {
  const __m512 x = _mm512_castsi512_ps(u);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_srli_epi32(_mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x400000)), 16);
}

inline __m512 bf16_widen(__m512i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)); }

inline __m512 qnan() { return _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kQuietNaN))); }

inline __m512 max_nan(__m512 a, __m512 b) {
  return _mm512_mask_mov_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q), qnan());
}

inline __m512 sum_nan(__m512 a, __m512 b) {
  const __m512 r = _mm512_add_ps(a, b);
  return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q), qnan());
}

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline void wire_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i h = bf16_of(_mm512_castps_si512(_mm512_loadu_ps(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(h));
  }
  if (i < n) {
    const __mmask16 m = first(n - i);
    const __m512i h = bf16_of(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, src + i)));
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(h));
  }
}

inline void wire_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, bf16_widen(ld16(src + i)));
  if (i < n) {
    const __mmask16 m = first(n - i);
    _mm512_mask_storeu_ps(dst + i, m, bf16_widen(ld16(src + i, m)));
  }
}

inline void wire_to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), kNearest));
  }
  if (i < n) {
    const __mmask16 m = first(n - i);
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), kNearest));
  }
}

inline void wire_from_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  if (i < n) {
    const __mmask16 m = first(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

// acc op= widen(src): full(i) widens the 16 wire elements at i, part(i, m) those of mask m.
template <typename Full, typename Part>
inline void accumulate(float* acc, int64_t n, int op, Full full, Part part) {
  int64_t i = 0;
  if (op == kernels::kWireMax) {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(acc + i, max_nan(_mm512_loadu_ps(acc + i), full(i)));
  } else {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(acc + i, sum_nan(_mm512_loadu_ps(acc + i), full(i)));
  }
  if (i < n) {
    const __mmask16 m = first(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(m, acc + i), x = part(i, m);
    _mm512_mask_storeu_ps(acc + i, m, op == kernels::kWireMax ? max_nan(a, x) : sum_nan(a, x));
  }
}

inline void acc_bf16(float* acc, const uint16_t* src, int64_t n, int op) {
  accumulate(acc, n, op, [src](int64_t i) { return bf16_widen(ld16(src + i)); },
             [src](int64_t i, __mmask16 m) { return bf16_widen(ld16(src + i, m)); });
}

inline void acc_f16(float* acc, const uint16_t* src, int64_t n, int op) {
  accumulate(acc, n, op,
             [src](int64_t i) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))); },
             [src](int64_t i, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)); });
}

inline void acc_f32(float* acc, const float* src, int64_t n, int op) {
  accumulate(acc, n, op, [src](int64_t i) { return _mm512_loadu_ps(src + i); },
             [src](int64_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, src + i); });
}

inline void round_bf16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, bf16_widen(bf16_of(_mm512_castps_si512(_mm512_loadu_ps(x + i)))));
  if (i < n) {
    const __mmask16 m = first(n - i);
    _mm512_mask_storeu_ps(x + i, m, bf16_widen(bf16_of(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i)))));
  }
}

inline void round_f16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), kNearest)));
  if (i < n) {
    const __mmask16 m = first(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), kNearest)));
  }
}

inline size_t nonfinite_count(const float* x, int64_t n) {
  const __m512i expo = _mm512_set1_epi32(0x7f800000);
  size_t c = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i e = _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + i)), expo);
    c += static_cast<size_t>(__builtin_popcount(_mm512_cmpeq_epi32_mask(e, expo)));
  }
  if (i < n) {
    const __mmask16 m = first(n - i);
    const __m512i e = _mm512_and_si512(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i)), expo);
    c += static_cast<size_t>(__builtin_popcount(_mm512_mask_cmpeq_epi32_mask(m, e, expo)));
  }
  return c;
}

}  // namespace avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {

// Vectors of 8; the rest by the scalar loops (same results by construction).
inline __m256i ld16(const uint16_t* p) { return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

inline void st16(uint16_t* p, __m256i h) {  // the low halves of 8 lanes (each <= 0xffff)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
}

inline __m256i bf16_of(__m256i u) {
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));  // abs >= 0: signed compare is enough
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet = _mm256_srli_epi32(_mm256_or_si256(u, _mm256_set1_epi32(0x400000)), 16);
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

inline __m256 bf16_widen(__m256i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)); }

inline __m256 qnan() { return _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kQuietNaN))); }

inline __m256 max_nan(__m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_max_ps(a, b), qnan(), _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
}

inline __m256 sum_nan(__m256 a, __m256 b) {
  const __m256 r = _mm256_add_ps(a, b);
  return _mm256_blendv_ps(r, qnan(), _mm256_cmp_ps(r, r, _CMP_UNORD_Q));
}

inline void wire_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) st16(dst + i, bf16_of(_mm256_castps_si256(_mm256_loadu_ps(src + i))));
  scalar::wire_to_bf16(src + i, dst + i, n - i);
}

inline void wire_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16_widen(ld16(src + i)));
  scalar::wire_from_bf16(src + i, dst + i, n - i);
}

template <typename Widen, typename Tail>
inline void accumulate(float* acc, int64_t n, int op, Widen widen, Tail tail) {
  int64_t i = 0;
  if (op == kernels::kWireMax) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, max_nan(_mm256_loadu_ps(acc + i), widen(i)));
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, sum_nan(_mm256_loadu_ps(acc + i), widen(i)));
  }
  tail(i);
}

inline void acc_bf16(float* acc, const uint16_t* src, int64_t n, int op) {
  accumulate(acc, n, op, [src](int64_t i) { return bf16_widen(ld16(src + i)); },
             [=](int64_t i) { scalar::acc_bf16(acc + i, src + i, n - i, op); });
}

inline void acc_f32(float* acc, const float* src, int64_t n, int op) {
  accumulate(acc, n, op, [src](int64_t i) { return _mm256_loadu_ps(src + i); },
             [=](int64_t i) { scalar::acc_f32(acc + i, src + i, n - i, op); });
}

inline void round_bf16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, bf16_widen(bf16_of(_mm256_castps_si256(_mm256_loadu_ps(x + i)))));
  scalar::round_bf16(x + i, n - i);
}

inline size_t nonfinite_count(const float* x, int64_t n) {
  const __m256i expo = _mm256_set1_epi32(0x7f800000);
  size_t c = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i e = _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(x + i)), expo);
    c += static_cast<size_t>(__builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(e, expo))))));
  }
  return c + scalar::nonfinite_count(x + i, n - i);
}

}  // namespace avx2
#pragma GCC pop_options

// fp16 on the AVX2 path needs F16C (vcvtps2ph / vcvtph2ps), checked apart: without it, scalar.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2_f16c {

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m256 widen(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

inline void wire_to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kNearest));
  scalar::wire_to_f16(src + i, dst + i, n - i);
}

inline void wire_from_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, widen(src + i));
  scalar::wire_from_f16(src + i, dst + i, n - i);
}

inline void acc_f16(float* acc, const uint16_t* src, int64_t n, int op) {
  int64_t i = 0;
  if (op == kernels::kWireMax) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, avx2::max_nan(_mm256_loadu_ps(acc + i), widen(src + i)));
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, avx2::sum_nan(_mm256_loadu_ps(acc + i), widen(src + i)));
  }
  scalar::acc_f16(acc + i, src + i, n - i, op);
}

inline void round_f16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), kNearest)));
  scalar::round_f16(x + i, n - i);
}

}  // namespace avx2_f16c
#pragma GCC pop_options

namespace {

bool has_f16c() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("f16c") != 0;
  }();
  return yes;
#else
  return false;
#endif
}

}  // namespace

// AVX-512 machines have F16C (it comes with AVX-512F's vcvtps2ph); AVX2 ones are asked.
#define PSRPC_DISPATCH_F16(NAME, ...)                                                    \
  switch (cpu::simd_level()) {                                                           \
    case cpu::SimdLevel::kAvx512: return cpu::avx512::NAME(__VA_ARGS__);                 \
    case cpu::SimdLevel::kAvx2:                                                          \
      if (cpu::has_f16c()) return cpu::avx2_f16c::NAME(__VA_ARGS__);                     \
      return cpu::scalar::NAME(__VA_ARGS__);                                             \
    default: return cpu::scalar::NAME(__VA_ARGS__);                                      \
  }

}  // namespace cpu

namespace kernels {

void wire_to_bf16(const float* src, uint16_t* dst, int64_t n) { PSRPC_DISPATCH(wire_to_bf16, src, dst, n) }
void wire_from_bf16(const uint16_t* src, float* dst, int64_t n) { PSRPC_DISPATCH(wire_from_bf16, src, dst, n) }
void wire_to_f16(const float* src, uint16_t* dst, int64_t n) { PSRPC_DISPATCH_F16(wire_to_f16, src, dst, n) }
void wire_from_f16(const uint16_t* src, float* dst, int64_t n) { PSRPC_DISPATCH_F16(wire_from_f16, src, dst, n) }
void acc_bf16(float* acc, const uint16_t* src, int64_t n, int op) { PSRPC_DISPATCH(acc_bf16, acc, src, n, op) }
void acc_f16(float* acc, const uint16_t* src, int64_t n, int op) { PSRPC_DISPATCH_F16(acc_f16, acc, src, n, op) }
void acc_f32(float* acc, const float* src, int64_t n, int op) { PSRPC_DISPATCH(acc_f32, acc, src, n, op) }
void round_bf16(float* x, int64_t n) { PSRPC_DISPATCH(round_bf16, x, n) }
void round_f16(float* x, int64_t n) { PSRPC_DISPATCH_F16(round_f16, x, n) }
size_t nonfinite_count(const float* x, int64_t n) { PSRPC_DISPATCH(nonfinite_count, x, n) }

}  // namespace kernels
}  // namespace psrpc
