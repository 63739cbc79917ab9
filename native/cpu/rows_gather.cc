// Row gathers for the data layer (see include/psrpc/rows.h).
#include "psrpc/rows.h"

#include <cstring>

namespace psrpc {
namespace rows {

void gather_u8_lut(const uint8_t* src, const int32_t* index, int64_t count, int64_t row_len, const float* lut,
                   float* dst) {
  for (int64_t r = 0; r < count; r++) {
    const uint8_t* in = src + static_cast<int64_t>(index[r]) * row_len;
    float* out = dst + r * row_len;
    for (int64_t j = 0; j < row_len; j++) out[j] = lut[in[j]];
  }
}

void gather_f32(const float* src, const int32_t* index, int64_t count, int64_t row_len, float* dst) {
  const size_t bytes = static_cast<size_t>(row_len) * sizeof(float);
  for (int64_t r = 0; r < count; r++) {
    std::memcpy(dst + r * row_len, src + static_cast<int64_t>(index[r]) * row_len, bytes);
  }
}

}  // namespace rows
}  // namespace psrpc
