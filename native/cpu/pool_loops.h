// Loops of the pooling kernels, written so the compiler vectorises the common windows.
//
// Included three times by pool.cc, each time inside its own namespace and under its own
// `#pragma GCC target`, as elementwise_body.inc is. Only compares, selects, + and / appear, so the
// three paths agree bit for bit. No include guard on purpose.

// Does value v at a later window position replace the current maximum? Strictly greater (ties keep
// the first position), or the first NaN (a NaN in the window wins, as in torch).
inline bool takes(float v, float best) { return v > best || (v != v && best == best); }

// Windows 2 wide, stride 2 across, no padding across (the cnn's MaxPool2d(2), and any kh, sh, ph):
// each output column reads input columns 2 ox and 2 ox + 1, so a row of outputs is one pass of
// vector compares and selects, row after row of the window.
inline void max_pool_w2(const Pool2dShape& s, const float* x, float* y, int32_t* idx) {
  for (int64_t p = 0; p < s.planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * s.sh - s.ph);
      const int64_t y1 = std::min<int64_t>(s.h, oy * s.sh - s.ph + s.kh);
      float* best = y + (p * s.oh + oy) * s.ow;
      int32_t* where = idx + (p * s.oh + oy) * s.ow;
      const float* r0 = xp + y0 * s.w;
      const int32_t base0 = static_cast<int32_t>(y0 * s.w);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const float a = r0[2 * ox], b = r0[2 * ox + 1];
        const bool tb = takes(b, a);
        best[ox] = tb ? b : a;
        where[ox] = base0 + static_cast<int32_t>(2 * ox) + (tb ? 1 : 0);
      }
      for (int64_t iy = y0 + 1; iy < y1; ++iy) {
        const float* r = xp + iy * s.w;
        const int32_t base = static_cast<int32_t>(iy * s.w);
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          const float a = r[2 * ox], b = r[2 * ox + 1];
          float m = best[ox];
          int32_t i = where[ox];
          const bool ta = takes(a, m);
          m = ta ? a : m;
          i = ta ? base + static_cast<int32_t>(2 * ox) : i;
          const bool tb = takes(b, m);
          best[ox] = tb ? b : m;
          where[ox] = tb ? base + static_cast<int32_t>(2 * ox + 1) : i;
        }
      }
    }
  }
}

// Any window: the clipped window of each output in row-major order.
inline void max_pool_any(const Pool2dShape& s, const float* x, float* y, int32_t* idx) {
  for (int64_t p = 0; p < s.planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * s.sh - s.ph);
      const int64_t y1 = std::min<int64_t>(s.h, oy * s.sh - s.ph + s.kh);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * s.sw - s.pw);
        const int64_t x1 = std::min<int64_t>(s.w, ox * s.sw - s.pw + s.kw);
        int64_t at = y0 * s.w + x0;  // never padding: ph <= kh / 2 keeps every window non-empty
        float m = xp[at];
        for (int64_t iy = y0; iy < y1; ++iy) {
          for (int64_t ix = x0; ix < x1; ++ix) {
            const float v = xp[iy * s.w + ix];
            if (takes(v, m)) {
              m = v;
              at = iy * s.w + ix;
            }
          }
        }
        y[(p * s.oh + oy) * s.ow + ox] = m;
        idx[(p * s.oh + oy) * s.ow + ox] = static_cast<int32_t>(at);
      }
    }
  }
}

inline void max_pool_backward(const Pool2dShape& s, const float* dy, const int32_t* idx, float* dx,
                              bool accumulate) {
  const int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  for (int64_t p = 0; p < s.planes; ++p) {
    float* dxp = dx + p * hw;
    if (!accumulate) {
      for (int64_t i = 0; i < hw; ++i) dxp[i] = 0.0f;
    }
    const float* dyp = dy + p * ohw;
    const int32_t* ip = idx + p * ohw;
    for (int64_t o = 0; o < ohw; ++o) dxp[ip[o]] += dyp[o];
  }
}

// The divisor of window (oy, ox), torch's avg_pool2d: the window clipped to the padded input, or
// to the input itself without count_include_pad.
inline float avg_divisor(const Pool2dShape& s, int64_t oy, int64_t ox, bool count_include_pad) {
  const int64_t ys = oy * s.sh - s.ph, xs = ox * s.sw - s.pw;
  if (count_include_pad) {
    const int64_t ye = std::min<int64_t>(ys + s.kh, s.h + s.ph), xe = std::min<int64_t>(xs + s.kw, s.w + s.pw);
    return static_cast<float>((ye - ys) * (xe - xs));
  }
  const int64_t y0 = std::max<int64_t>(0, ys), y1 = std::min<int64_t>(s.h, ys + s.kh);
  const int64_t x0 = std::max<int64_t>(0, xs), x1 = std::min<int64_t>(s.w, xs + s.kw);
  return static_cast<float>((y1 - y0) * (x1 - x0));
}

inline void avg_pool_forward(const Pool2dShape& s, const float* x, float* y, bool count_include_pad) {
  for (int64_t p = 0; p < s.planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * s.sh - s.ph);
      const int64_t y1 = std::min<int64_t>(s.h, oy * s.sh - s.ph + s.kh);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * s.sw - s.pw);
        const int64_t x1 = std::min<int64_t>(s.w, ox * s.sw - s.pw + s.kw);
        float acc = 0.0f;
        for (int64_t iy = y0; iy < y1; ++iy) {
          for (int64_t ix = x0; ix < x1; ++ix) acc += xp[iy * s.w + ix];
        }
        y[(p * s.oh + oy) * s.ow + ox] = acc / avg_divisor(s, oy, ox, count_include_pad);
      }
    }
  }
}

inline void avg_pool_backward(const Pool2dShape& s, const float* dy, float* dx, bool count_include_pad,
                              bool accumulate) {
  const int64_t hw = s.h * s.w;
  for (int64_t p = 0; p < s.planes; ++p) {
    float* dxp = dx + p * hw;
    if (!accumulate) {
      for (int64_t i = 0; i < hw; ++i) dxp[i] = 0.0f;
    }
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * s.sh - s.ph);
      const int64_t y1 = std::min<int64_t>(s.h, oy * s.sh - s.ph + s.kh);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * s.sw - s.pw);
        const int64_t x1 = std::min<int64_t>(s.w, ox * s.sw - s.pw + s.kw);
        const float g = dy[(p * s.oh + oy) * s.ow + ox] / avg_divisor(s, oy, ox, count_include_pad);
        for (int64_t iy = y0; iy < y1; ++iy) {
          for (int64_t ix = x0; ix < x1; ++ix) dxp[iy * s.w + ix] += g;
        }
      }
    }
  }
}
