// Host-side data preparation: gathering dataset rows into contiguous batches. Not part of the
// kernel contract (kernels.h): datasets live in host memory on every backend, so these run on the
// CPU only and have no CUDA twin. Like the kernels, they never allocate and never throw; the N-API
// layer checks every index before the call.
#pragma once

#include <cstdint>

namespace psrpc {
namespace rows {

// dst[r * row_len + j] = lut[src[index[r] * row_len + j]] for r < count, j < row_len.
// The 256-entry table makes the result bit-identical to the same lookup done in JS.
void gather_u8_lut(const uint8_t* src, const int32_t* index, int64_t count, int64_t row_len, const float* lut,
                   float* dst);
// dst[r * row_len + j] = src[index[r] * row_len + j]: a memcpy per row (fast also when src is a
// SharedArrayBuffer, where V8's TypedArray.set copies byte by byte).
void gather_f32(const float* src, const int32_t* index, int64_t count, int64_t row_len, float* dst);

}  // namespace rows
}  // namespace psrpc
