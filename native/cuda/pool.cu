// 2-D max and average pooling over independent planes (torch.nn.MaxPool2d / AvgPool2d,
// ceil_mode=False). Forward passes run one thread per output; backward passes one thread per
// input element that gathers from the windows covering it, in a fixed order, so overlapping
// windows need no atomics and results are deterministic. A max-pool index that names no
// position of its window's plane is never matched by the gather, so stale or foreign indices
// cannot make the backward pass write out of bounds.
#include "cuda_compat.h"

namespace psrpc {
namespace cuda {
namespace {

// Geometry passed by value to the kernels.
struct PoolGeom {
  int64_t planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};

PoolGeom pool_geom(const kernels::Pool2dShape& s) {
  return PoolGeom{s.planes, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.oh, s.ow};
}

// The outputs whose window covers input row iy: [lo, hi] (empty when lo > hi). A window oy
// spans rows [oy * sh - ph, oy * sh - ph + kh).
__device__ __forceinline__ void covering(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t outputs,
                                         int64_t* lo, int64_t* hi) {
  const int64_t t = i + pad;  // >= 0
  const int64_t first = t - k + 1;
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = t / stride;
  *hi = last < outputs - 1 ? last : outputs - 1;
}

// Torch's divisor: the window clipped to the padded input (count_include_pad) or to the input.
__device__ __forceinline__ float pool_divisor(const PoolGeom& g, int64_t oy, int64_t ox, bool count_include_pad) {
  const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  int64_t y1 = y0 + g.kh, x1 = x0 + g.kw;
  if (count_include_pad) {
    if (y1 > g.h + g.ph) y1 = g.h + g.ph;
    if (x1 > g.w + g.pw) x1 = g.w + g.pw;
    return static_cast<float>((y1 - y0) * (x1 - x0));
  }
  const int64_t ya = y0 < 0 ? 0 : y0, xa = x0 < 0 ? 0 : x0;
  if (y1 > g.h) y1 = g.h;
  if (x1 > g.w) x1 = g.w;
  return static_cast<float>((y1 - ya) * (x1 - xa));
}

__global__ void max_pool_forward_kernel(PoolGeom g, const float* __restrict__ x, float* __restrict__ y,
                                        int32_t* __restrict__ indices) {
  const int64_t per_plane = g.oh * g.ow;
  const int64_t total = g.planes * per_plane;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t plane = e / per_plane, r = e - plane * per_plane;
    const int64_t oy = r / g.ow, ox = r - oy * g.ow;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    const int64_t ya = y0 < 0 ? 0 : y0, xa = x0 < 0 ? 0 : x0;
    const int64_t yb = y0 + g.kh < g.h ? y0 + g.kh : g.h, xb = x0 + g.kw < g.w ? x0 + g.kw : g.w;
    const float* xp = x + plane * g.h * g.w;
    // Padding never wins: start from the window's first input element. A later element replaces
    // the best only when strictly greater (ties keep the first) or when it is the first NaN.
    int64_t best_at = ya * g.w + xa;
    float best = xp[best_at];
    for (int64_t iy = ya; iy < yb; ++iy) {
      for (int64_t ix = xa; ix < xb; ++ix) {
        const float v = xp[iy * g.w + ix];
        if (v > best || (v != v && best == best)) {
          best = v;
          best_at = iy * g.w + ix;
        }
      }
    }
    y[e] = best;
    indices[e] = static_cast<int32_t>(best_at);
  }
}

__global__ void max_pool_backward_kernel(PoolGeom g, const float* __restrict__ dy, const int32_t* __restrict__ indices,
                                         float* __restrict__ dx, bool accumulate) {
  const int64_t per_plane = g.h * g.w, out_plane = g.oh * g.ow;
  const int64_t total = g.planes * per_plane;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t plane = e / per_plane, at = e - plane * per_plane;
    const int64_t iy = at / g.w, ix = at - iy * g.w;
    int64_t oy0, oy1, ox0, ox1;
    covering(iy, g.kh, g.sh, g.ph, g.oh, &oy0, &oy1);
    covering(ix, g.kw, g.sw, g.pw, g.ow, &ox0, &ox1);
    const int64_t base = plane * out_plane;
    float acc = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t o = base + oy * g.ow + ox;
        if (indices[o] == at) acc += dy[o];
      }
    dx[e] = accumulate ? dx[e] + acc : acc;
  }
}

__global__ void avg_pool_forward_kernel(PoolGeom g, const float* __restrict__ x, float* __restrict__ y,
                                        bool count_include_pad) {
  const int64_t per_plane = g.oh * g.ow;
  const int64_t total = g.planes * per_plane;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t plane = e / per_plane, r = e - plane * per_plane;
    const int64_t oy = r / g.ow, ox = r - oy * g.ow;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    const int64_t ya = y0 < 0 ? 0 : y0, xa = x0 < 0 ? 0 : x0;
    const int64_t yb = y0 + g.kh < g.h ? y0 + g.kh : g.h, xb = x0 + g.kw < g.w ? x0 + g.kw : g.w;
    const float* xp = x + plane * g.h * g.w;
    float acc = 0.0f;
    for (int64_t iy = ya; iy < yb; ++iy)
      for (int64_t ix = xa; ix < xb; ++ix) acc += xp[iy * g.w + ix];
    y[e] = acc / pool_divisor(g, oy, ox, count_include_pad);
  }
}

__global__ void avg_pool_backward_kernel(PoolGeom g, const float* __restrict__ dy, float* __restrict__ dx,
                                         bool count_include_pad, bool accumulate) {
  const int64_t per_plane = g.h * g.w, out_plane = g.oh * g.ow;
  const int64_t total = g.planes * per_plane;
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t plane = e / per_plane, at = e - plane * per_plane;
    const int64_t iy = at / g.w, ix = at - iy * g.w;
    int64_t oy0, oy1, ox0, ox1;
    covering(iy, g.kh, g.sh, g.ph, g.oh, &oy0, &oy1);
    covering(ix, g.kw, g.sw, g.pw, g.ow, &ox0, &ox1);
    const float* dyp = dy + plane * out_plane;
    float acc = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) acc += dyp[oy * g.ow + ox] / pool_divisor(g, oy, ox, count_include_pad);
    dx[e] = accumulate ? dx[e] + acc : acc;
  }
}

}  // namespace
}  // namespace cuda

namespace kernels {

// Host code: the CPU build has its own copy (native/cpu/).
bool pool2d_output(Pool2dShape& s) {
  if (s.kh < 1 || s.kw < 1 || s.sh < 1 || s.sw < 1 || s.ph < 0 || s.pw < 0) return false;
  const int64_t span_h = s.h + 2 * s.ph - s.kh, span_w = s.w + 2 * s.pw - s.kw;
  if (span_h < 0 || span_w < 0) return false;  // C++ division truncates toward zero, not floor
  s.oh = span_h / s.sh + 1;
  s.ow = span_w / s.sw + 1;
  return true;
}

void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int32_t* indices) {
  using namespace cuda;
  const int64_t total = s.planes * s.oh * s.ow;
  PSRPC_LAUNCH(blocks_for(total), kThreads, 0, max_pool_forward_kernel)(pool_geom(s), x, y, indices);
}

void max_pool2d_backward(const Pool2dShape& s, const float* dy, const int32_t* indices, float* dx, bool accumulate) {
  using namespace cuda;
  const int64_t total = s.planes * s.h * s.w;
  PSRPC_LAUNCH(blocks_for(total), kThreads, 0, max_pool_backward_kernel)(pool_geom(s), dy, indices, dx, accumulate);
}

void avg_pool2d_forward(const Pool2dShape& s, const float* x, float* y, bool count_include_pad) {
  using namespace cuda;
  const int64_t total = s.planes * s.oh * s.ow;
  PSRPC_LAUNCH(blocks_for(total), kThreads, 0, avg_pool_forward_kernel)(pool_geom(s), x, y, count_include_pad);
}

void avg_pool2d_backward(const Pool2dShape& s, const float* dy, float* dx, bool count_include_pad, bool accumulate) {
  using namespace cuda;
  const int64_t total = s.planes * s.h * s.w;
  PSRPC_LAUNCH(blocks_for(total), kThreads, 0, avg_pool_backward_kernel)(pool_geom(s), dy, dx, count_include_pad,
                                                                         accumulate);
}

}  // namespace kernels
}  // namespace psrpc
