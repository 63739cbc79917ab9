// The CPU pooling kernels of the contract (max and average, NCHW planes), each compiled for
// AVX-512, AVX2 and the baseline and dispatched at run time. The loops live in pool_loops.h.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {

using kernels::Pool2dShape;

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
namespace avx512 {
#include "pool_loops.h"

// The 2-wide, stride-2 window by hand: GCC turns max_pool_w2's strided loads into ~80 ns of scalar
// code per output row (pool1 and pool2 were 20% of a cnn step). Here 16 outputs take two loads per
// window row, an even/odd split by permutes, and masked compares and blends: the same decisions as
// takes() (strictly greater, or the first NaN), so the paths agree bit for bit.
inline void max_pool_w2_hw(const Pool2dShape& s, const float* x, float* y, int32_t* idx) {
  const int64_t h = s.h, w = s.w, oh = s.oh, ow = s.ow, kh = s.kh, sh = s.sh, ph = s.ph, planes = s.planes;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i two_ox = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * sh - ph);
      const int64_t y1 = std::min<int64_t>(h, oy * sh - ph + kh);
      float* yr = y + (p * oh + oy) * ow;
      int32_t* ir = idx + (p * oh + oy) * ow;
      for (int64_t o0 = 0; o0 < ow; o0 += 16) {
        const int64_t n = std::min<int64_t>(16, ow - o0);  // outputs in this chunk: 2 n inputs per row
        const __mmask16 lo = n >= 8 ? 0xFFFF : static_cast<__mmask16>((1u << (2 * n)) - 1u);
        const __mmask16 hi = n <= 8 ? 0 : static_cast<__mmask16>((1u << (2 * n - 16)) - 1u);
        const __m512i col0 = _mm512_add_epi32(two_ox, _mm512_set1_epi32(static_cast<int>(2 * o0)));
        __m512 best = _mm512_setzero_ps();
        __m512i at = _mm512_setzero_si512();
        for (int64_t iy = y0; iy < y1; ++iy) {
          const float* r = xp + iy * w + 2 * o0;
          const __m512 a = _mm512_maskz_loadu_ps(lo, r), b = _mm512_maskz_loadu_ps(hi, r + 16);
          const __m512 e = _mm512_permutex2var_ps(a, even, b), d = _mm512_permutex2var_ps(a, odd, b);
          const __m512i pos = _mm512_add_epi32(col0, _mm512_set1_epi32(static_cast<int>(iy * w)));
          if (iy == y0) {
            best = e;
            at = pos;
          } else {
            const __mmask16 t = _mm512_cmp_ps_mask(e, best, _CMP_GT_OQ) |
                                (_mm512_cmp_ps_mask(e, e, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
            best = _mm512_mask_blend_ps(t, best, e);
            at = _mm512_mask_blend_epi32(t, at, pos);
          }
          const __mmask16 t = _mm512_cmp_ps_mask(d, best, _CMP_GT_OQ) |
                              (_mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
          best = _mm512_mask_blend_ps(t, best, d);
          at = _mm512_mask_blend_epi32(t, at, _mm512_add_epi32(pos, one));
        }
        const __mmask16 out = static_cast<__mmask16>((1u << n) - 1u);
        _mm512_mask_storeu_ps(yr + o0, out, best);
        _mm512_mask_storeu_epi32(ir + o0, out, at);
      }
    }
  }
}

}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "pool_loops.h"
}  // namespace avx2
#pragma GCC pop_options

namespace scalar {
#include "pool_loops.h"
}  // namespace scalar

}  // namespace cpu

namespace kernels {


bool pool2d_output(Pool2dShape& s) {
  const int64_t eh = s.h + 2 * s.ph - s.kh, ew = s.w + 2 * s.pw - s.kw;
  if (eh < 0 || ew < 0 || s.sh < 1 || s.sw < 1) return false;
  s.oh = eh / s.sh + 1;
  s.ow = ew / s.sw + 1;
  return true;
}

void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* indices) {
  // The 2-wide path reads columns 2 ox + 1 <= 2 (ow - 1) + 1 <= w - 1: inside every row.
  if (s.kw == 2 && s.sw == 2 && s.pw == 0) {
    if (cpu::simd_level() == cpu::SimdLevel::kAvx512) return cpu::avx512::max_pool_w2_hw(s, x, y, indices);
    PSRPC_DISPATCH(max_pool_w2, s, x, y, indices)
  }
  PSRPC_DISPATCH(max_pool_any, s, x, y, indices)
}

void max_pool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* indices, float* dx,
                         bool accumulate) {
  PSRPC_DISPATCH(max_pool_backward, s, dy, indices, dx, accumulate)
}

void avg_pool2d_forward(const Pool2dShape& s, const float* x, float* y, bool count_include_pad) {
  PSRPC_DISPATCH(avg_pool_forward, s, x, y, count_include_pad)
}

void avg_pool2d_backward(const Pool2dShape& s, const float* dy, float* dx, bool count_include_pad,
                         bool accumulate) {
  PSRPC_DISPATCH(avg_pool_backward, s, dy, dx, count_include_pad, accumulate)
}


}  // namespace kernels
}  // namespace psrpc
