// Loops of the convolution kernels around the GEMM (im2col, col2im, bias rows, bias sums), written
// as plain loops the compiler vectorises.
//
// Included three times by conv.cc, each time inside its own namespace and under its own
// `#pragma GCC target` (AVX-512, AVX2 + FMA, baseline), as elementwise_body.inc is. Indices are
// formed only for elements inside x (no pointer is ever moved before an array's start).
// No include guard on purpose.

// col[(ci * kh + ky) * kw + kx][oy * ow + ox] = x[ci][oy sh - ph + ky dh][ox sw - pw + kx dw],
// zero where that position lies in the padding. x is one image's group [cg, h, w].
inline void im2col(const Conv2dShape& s, int64_t cg, const float* x, float* col) {
  const int64_t p_len = s.oh * s.ow;
  for (int64_t ci = 0; ci < cg; ++ci) {
    const float* xc = x + ci * s.h * s.w;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        float* dst = col + ((ci * s.kh + ky) * s.kw + kx) * p_len;
        const int64_t off = kx * s.dw - s.pw;
        // The output columns whose input column ox * sw + off lies inside [0, w).
        const int64_t lo = off >= 0 ? 0 : std::min(s.ow, (-off + s.sw - 1) / s.sw);
        const int64_t hi = off >= s.w ? lo : std::max(lo, std::min(s.ow, (s.w - 1 - off) / s.sw + 1));
        for (int64_t oy = 0; oy < s.oh; ++oy) {
          float* d = dst + oy * s.ow;
          const int64_t iy = oy * s.sh - s.ph + ky * s.dh;
          if (iy < 0 || iy >= s.h) {
            for (int64_t ox = 0; ox < s.ow; ++ox) d[ox] = 0.0f;
            continue;
          }
          const float* xr = xc + iy * s.w;
          for (int64_t ox = 0; ox < lo; ++ox) d[ox] = 0.0f;
          if (s.sw == 1) {
            const float* src = xr + (lo + off);  // lo + off >= 0: inside the row
            float* out = d + lo;
            const int64_t len = hi - lo;
            for (int64_t j = 0; j < len; ++j) out[j] = src[j];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) d[ox] = xr[ox * s.sw + off];
          }
          for (int64_t ox = hi; ox < s.ow; ++ox) d[ox] = 0.0f;
        }
      }
    }
  }
}

// dx = (accumulate ? dx : 0) + col2im(col): the adjoint of im2col, padding positions dropped.
// dx is one image's group.
inline void col2im(const Conv2dShape& s, int64_t cg, const float* col, float* dx, bool accumulate) {
  const int64_t p_len = s.oh * s.ow;
  if (!accumulate) {
    for (int64_t i = 0; i < cg * s.h * s.w; ++i) dx[i] = 0.0f;
  }
  for (int64_t ci = 0; ci < cg; ++ci) {
    float* dc = dx + ci * s.h * s.w;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const float* src = col + ((ci * s.kh + ky) * s.kw + kx) * p_len;
        const int64_t off = kx * s.dw - s.pw;
        const int64_t lo = off >= 0 ? 0 : std::min(s.ow, (-off + s.sw - 1) / s.sw);
        const int64_t hi = off >= s.w ? lo : std::max(lo, std::min(s.ow, (s.w - 1 - off) / s.sw + 1));
        for (int64_t oy = 0; oy < s.oh; ++oy) {
          const int64_t iy = oy * s.sh - s.ph + ky * s.dh;
          if (iy < 0 || iy >= s.h) continue;
          float* xr = dc + iy * s.w;
          const float* d = src + oy * s.ow;
          if (s.sw == 1) {
            float* out = xr + (lo + off);
            const float* in = d + lo;
            const int64_t len = hi - lo;
            for (int64_t j = 0; j < len; ++j) out[j] = out[j] + in[j];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) xr[ox * s.sw + off] += d[ox];
          }
        }
      }
    }
  }
}

// rows x len block: row r = value[r] (the bias, before the GEMM adds W . col with beta = 1).
inline void fill_rows(float* y, const float* value, int64_t rows, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * len;
    const float v = value[r];
    for (int64_t j = 0; j < len; ++j) row[j] = v;
  }
}

// Sum of a row in double, eight partial sums (vectorises without reassociating anything).
inline double row_sum(const float* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// dw[o][k] = (accumulate ? dw[o][k] : 0) + dwt[k][o]: the weight gradient, computed transposed.
inline void transpose_add(const float* dwt, float* dw, int64_t og, int64_t k_len, bool accumulate) {
  for (int64_t o = 0; o < og; ++o) {
    float* row = dw + o * k_len;
    if (accumulate) {
      for (int64_t k = 0; k < k_len; ++k) row[k] = row[k] + dwt[k * og + o];
    } else {
      for (int64_t k = 0; k < k_len; ++k) row[k] = dwt[k * og + o];
    }
  }
}
