// Fused optimizer steps (torch.optim.SGD, torch.optim.Adam / AdamW semantics): one pass over
// param, grad and the state buffers. Scalars that depend only on the step (bias corrections)
// are computed once on the host in double.
#include <cmath>

#include "cuda_compat.h"

namespace psrpc {
namespace cuda {
namespace {

__global__ void sgd_kernel(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                           float dampening, float weight_decay, bool nesterov, bool first_step) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    float g = grad[i];
    if (weight_decay != 0.0f) g += weight_decay * param[i];
    if (momentum != 0.0f) {
      const float buf = first_step ? g : momentum * momentum_buf[i] + (1.0f - dampening) * g;
      momentum_buf[i] = buf;
      g = nesterov ? g + momentum * buf : buf;
    }
    param[i] -= lr * g;
  }
}

__global__ void adam_kernel(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                            float beta2, float eps, float weight_decay, bool decoupled, float step_size,
                            float bias_correction2_sqrt) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    float p = param[i];
    float g = grad[i];
    if (weight_decay != 0.0f) {
      if (decoupled)
        p *= 1.0f - lr * weight_decay;
      else
        g += weight_decay * p;
    }
    // m.lerp_(g, 1 - beta1), written as torch and the CPU backend write it.
    const float mi = m[i] + (1.0f - beta1) * (g - m[i]);
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
    param[i] = p - step_size * (mi / denom);
  }
}

}  // namespace
}  // namespace cuda

namespace kernels {

void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step) {
  using namespace cuda;
  if (n <= 0) return;
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, sgd_kernel)(param, grad, momentum_buf, n, lr, momentum, dampening,
                                                        weight_decay, nesterov, first_step);
}

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, bool decoupled_weight_decay, int64_t step) {
  using namespace cuda;
  if (n <= 0) return;
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  PSRPC_LAUNCH(blocks_for(n), kThreads, 0, adam_kernel)(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                                         decoupled_weight_decay, step_size, bias_correction2_sqrt);
}

}  // namespace kernels
}  // namespace psrpc
