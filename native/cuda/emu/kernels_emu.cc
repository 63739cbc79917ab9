// The emulation build of the CUDA backend: every .cu source of native/cuda/, compiled as C++
// against emu/cuda_emu.h (PSRPC_CUDA_EMU is defined by the build). Keeping this list equal to
// the nvcc build's is checked by test/native/cuda-build.test.ts.
#include "../gemm.cu"
#include "../elementwise.cu"
#include "../reduce.cu"
#include "../rows.cu"
#include "../random.cu"
#include "../optim.cu"
#include "../convert.cu"
#include "../conv.cu"
#include "../pool.cu"
#include "../norm.cu"
