// Reductions: sum (in double), bias gradient (column sums), and the two-pass machinery the
// losses share. Partials are written per block and summed by one final block in a fixed order,
// so every result is deterministic (no floating-point atomics).
#include "block_reduce.cuh"

namespace psrpc {
namespace cuda {
namespace {

__global__ void sum_partials_kernel(int64_t n, const float* x, double* partials) {
  __shared__ double shared[kMaxReduceThreads];
  double acc = 0.0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) acc += static_cast<double>(x[i]);
  const double total = block_reduce(acc, shared, SumOp<double>());
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void finish_kernel(const double* partials, int count, double* out) {
  __shared__ double shared[kMaxReduceThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double total = block_reduce(acc, shared, SumOp<double>());
  if (threadIdx.x == 0) *out = total;
}

// Column sums: a 32 x 8 block owns 32 columns; its 8 row lanes stride down the rows and meet in
// shared memory. Reads are coalesced along each row.
constexpr int kColLanes = 32, kRowLanes = 8;

__global__ void bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ dbias, int64_t rows,
                                 int64_t cols, bool accumulate) {
  __shared__ float shared[kRowLanes][kColLanes];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColLanes + threadIdx.x;
  float acc = 0.0f;
  if (col < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) acc += dy[r * cols + col];
  shared[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) total += shared[lane][threadIdx.x];
    dbias[col] = accumulate ? dbias[col] + total : total;
  }
}

}  // namespace

double* reduction_scratch() {
  // Per host thread, so two threads reducing at once never share partials.
  static thread_local double* scratch = nullptr;
  if (!scratch && cudaMalloc(reinterpret_cast<void**>(&scratch), sizeof(double) * (kMaxBlocks + 1)) != cudaSuccess) {
    scratch = nullptr;
    cudaGetLastError();  // the failure is reported through the NaN result, not left pending
  }
  return scratch;
}

double finish_reduction(const double* partials, int count, double* out) {
  PSRPC_LAUNCH(1, kMaxReduceThreads, 0, finish_kernel)(partials, count, out);
  double host = 0.0;
  if (cudaMemcpy(&host, out, sizeof host, cudaMemcpyDeviceToHost) != cudaSuccess) return __builtin_nan("");
  return host;
}

}  // namespace cuda

namespace kernels {

double sum(int64_t n, const float* x) {
  using namespace cuda;
  if (n <= 0) return 0.0;
  double* scratch = reduction_scratch();
  if (!scratch) return __builtin_nan("");
  const int blocks = blocks_for(n);
  PSRPC_LAUNCH(blocks, kMaxReduceThreads, 0, sum_partials_kernel)(n, x, scratch);
  return finish_reduction(scratch, blocks, scratch + kMaxBlocks);
}

void bias_grad(const float* dy, float* dbias, int64_t rows, int64_t cols, bool accumulate) {
  using namespace cuda;
  if (cols <= 0) return;
  if (rows <= 0) {
    if (!accumulate) cudaMemset(dbias, 0, sizeof(float) * static_cast<size_t>(cols));
    return;
  }
  const dim3 grid(static_cast<unsigned>((cols + kColLanes - 1) / kColLanes));
  PSRPC_LAUNCH(grid, dim3(kColLanes, kRowLanes), 0, bias_grad_kernel)(dy, dbias, rows, cols, accumulate);
}

}  // namespace kernels
}  // namespace psrpc
