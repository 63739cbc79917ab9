// Row-wise kernels: log-softmax, fused cross entropy, NLL.
//
// The baseline does each row with std::exp and sums the exponentials in double. On AVX-512 a row
// is processed in 16-lane chunks (masked at the row's end, so 10 classes are one chunk) with a
// vector exp (Cephes' polynomial, about 1 ulp) and float partial sums; the N-API layer has
// already checked every label.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "psrpc/kernels.h"
#include "simd.h"

namespace psrpc {
namespace cpu {
namespace avx512_rows {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
// GCC 12 reports the intrinsics' own placeholder operands (__Y) as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

inline __mmask16 lanes(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// e^x for x <= 88.7; tends to 0 as x goes to -infinity. NaN stays NaN: max/min return their
// second operand when either is NaN, so x goes second.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.7f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n, underflowing to 0 cleanly
}

// log(sum(exp(row))), stably around the row maximum.
inline float log_sum_exp(const float* row, int64_t cols) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t c = 0; c < cols; c += 16) {
    const __mmask16 m = lanes(cols - c);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, row + c));
  }
  const float max = _mm512_reduce_max_ps(vmax);
  if (std::isinf(max) || std::isnan(max)) return max;
  const __m512 vm = _mm512_set1_ps(max);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < cols; c += 16) {
    const __mmask16 m = lanes(cols - c);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + c), vm));
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
  }
  return max + std::log(_mm512_reduce_add_ps(sum));
}

// out = in - lse for one row; in and out may be the same row.
inline void subtract(const float* in, float* out, int64_t cols, float lse) {
  const __m512 v = _mm512_set1_ps(lse);
  for (int64_t c = 0; c < cols; c += 16) {
    const __mmask16 m = lanes(cols - c);
    _mm512_mask_storeu_ps(out + c, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, in + c), v));
  }
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) subtract(x + r * cols, y + r * cols, cols, log_sum_exp(x + r * cols, cols));
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols; c += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(lanes(cols - c), dyr + c));
    const __m512 s = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes(cols - c);
      const __m512 g = _mm512_maskz_loadu_ps(m, dyr + c);
      const __m512 e = exp16(_mm512_maskz_loadu_ps(m, yr + c));
      _mm512_mask_storeu_ps(dxr + c, m, _mm512_fnmadd_ps(e, s, g));
    }
  }
}

float cross_entropy_forward(const float* logits, const int32_t* labels, float* logp, int64_t rows,
                            int64_t cols) {
  double loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = log_sum_exp(logits + r * cols, cols);
    subtract(logits + r * cols, logp + r * cols, cols, lse);
    loss -= static_cast<double>(logp[r * cols + labels[r]]);
  }
  return static_cast<float>(loss / static_cast<double>(rows));
}

void cross_entropy_backward(const float* logp, const int32_t* labels, float* dlogits, int64_t rows,
                            int64_t cols, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = logp + r * cols;
    float* out = dlogits + r * cols;
    const int64_t label = labels[r];
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = lanes(cols - c);
      __m512 e = exp16(_mm512_maskz_loadu_ps(m, in + c));
      // Lanes that are the label lose the one-hot 1 (label - c may be outside [0, 16): no lane).
      const int64_t at = label - c;
      if (at >= 0 && at < 16) {
        const __mmask16 hot = _mm512_cmpeq_epi32_mask(iota, _mm512_set1_epi32(static_cast<int>(at)));
        e = _mm512_mask_sub_ps(e, hot, e, _mm512_set1_ps(1.0f));
      }
      _mm512_mask_storeu_ps(out + c, m, _mm512_mul_ps(e, vs));
    }
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace avx512_rows
}  // namespace cpu

namespace kernels {
namespace {

bool use_avx512() { return cpu::simd_level() == cpu::SimdLevel::kAvx512; }

// log(sum(exp(row))) computed stably around the row maximum.
inline float log_sum_exp(const float* row, int64_t cols) {
  float max = -INFINITY;
  for (int64_t c = 0; c < cols; ++c) max = row[c] > max ? row[c] : max;
  if (std::isinf(max)) return max;  // all -inf (or some +inf): the subtraction would make NaN
  double s = 0.0;
  for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(std::exp(row[c] - max));
  return static_cast<float>(static_cast<double>(max) + std::log(s));
}

}  // namespace

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  if (use_avx512()) return cpu::avx512_rows::log_softmax_forward(x, y, rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* out = y + r * cols;
    const float lse = log_sum_exp(in, cols);
    for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - lse;
  }
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  if (use_avx512()) return cpu::avx512_rows::log_softmax_backward(y, dy, dx, rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    double s = 0.0;
    for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(dyr[c]);
    const float sf = static_cast<float>(s);
    for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - std::exp(yr[c]) * sf;
  }
}

float cross_entropy_forward(const float* logits, const int32_t* labels, float* logp, int64_t rows,
                            int64_t cols) {
  if (use_avx512()) return cpu::avx512_rows::cross_entropy_forward(logits, labels, logp, rows, cols);
  double loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = logits + r * cols;
    float* out = logp + r * cols;
    const float lse = log_sum_exp(in, cols);
    for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - lse;
    loss -= static_cast<double>(out[labels[r]]);
  }
  return static_cast<float>(loss / static_cast<double>(rows));
}

void cross_entropy_backward(const float* logp, const int32_t* labels, float* dlogits, int64_t rows,
                            int64_t cols, float scale) {
  if (use_avx512()) return cpu::avx512_rows::cross_entropy_backward(logp, labels, dlogits, rows, cols, scale);
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = logp + r * cols;
    float* out = dlogits + r * cols;
    const int32_t label = labels[r];
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = (std::exp(in[c]) - (c == label ? 1.0f : 0.0f)) * scale;
    }
  }
}

float nll_forward(const float* logp, const int32_t* labels, int64_t rows, int64_t cols) {
  double loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) loss -= static_cast<double>(logp[r * cols + labels[r]]);
  return static_cast<float>(loss / static_cast<double>(rows));
}

void nll_backward(const int32_t* labels, float* dlogp, int64_t rows, int64_t cols, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* out = dlogp + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = 0.0f;
    out[labels[r]] = -scale;
  }
}

}  // namespace kernels
}  // namespace psrpc
