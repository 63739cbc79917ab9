// Loops of the batch-normalisation kernels: per-row sums in double and the per-element transforms,
// written as plain loops the compiler vectorises.
//
// Included three times by norm.cc, each time inside its own namespace and under its own
// `#pragma GCC target`, as elementwise_body.inc is. No include guard on purpose.

// sum x and sum (x - mean)^2 need two passes over the data (the second is the accurate variance);
// each row's sum uses eight double partial sums.
inline double row_sum(const float* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline double row_sq_dev(const float* x, int64_t n, double mean) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const double d = static_cast<double>(x[i + j]) - mean;
      acc[j] += d * d;
    }
  }
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    acc[0] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// s[0] += sum dy, s[1] += sum dy * (x - mean), in double.
inline void row_grad_sums(const float* x, const float* dy, int64_t n, double mean, double* s) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const double g = static_cast<double>(dy[i + j]);
      a[j] += g;
      b[j] += g * (static_cast<double>(x[i + j]) - mean);
    }
  }
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]);
    a[0] += g;
    b[0] += g * (static_cast<double>(x[i]) - mean);
  }
  s[0] += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  s[1] += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

// y = (x - mean) * scale + shift (y may be x).
inline void normalise_row(const float* x, float* y, int64_t n, float mean, float scale, float shift) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * scale + shift;
}

// dx (= or +=) k * (dy - mean_dy - (x - mean) * proj) in training, k * dy in eval (proj = mean_dy = 0).
inline void grad_row(const float* x, const float* dy, float* dx, int64_t n, float mean, float k, float mean_dy,
                     float proj, bool training, bool accumulate) {
  if (training) {
    if (accumulate) {
      for (int64_t i = 0; i < n; ++i) dx[i] = dx[i] + k * (dy[i] - mean_dy - (x[i] - mean) * proj);
    } else {
      for (int64_t i = 0; i < n; ++i) dx[i] = k * (dy[i] - mean_dy - (x[i] - mean) * proj);
    }
  } else if (accumulate) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dx[i] + k * dy[i];
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = k * dy[i];
  }
}
