// The CUDA kernels (native/cuda/*.cu) run under the SIMT emulation: the same sources as the GPU
// build, compiled by g++ against native/cuda/emu/cuda_emu.h, every CUDA thread a fiber and
// __syncthreads() a real barrier. Two layers are checked: the kernels behind the CPU addon's
// typed-array binding (psrpc_cuda_emu), through the very conformance suite the CPU backend
// passes, and the device-buffer binding of the CUDA addon (psrpc_cuda_device_emu), so
// everything but the GPU itself is exercised on any machine.
import test from 'ava';
import { cpuKernels } from '../../src/tensor/native.js';
import { cudaEmuKernels, cudaEmulatedDevice } from '../../src/tensor/cuda.js';
import { kernelSuite } from './kernel-suite.js';
import { deviceSuite } from './cuda-device-suite.js';

kernelSuite('cuda-emu', cudaEmuKernels);
deviceSuite('cuda-device-emu', cudaEmulatedDevice);

test('cuda-emu: the emulated kernels are the CUDA ones, not the CPU addon', (t) => {
  t.is(cudaEmuKernels().simd(), 'cuda-emu');
  t.is(cudaEmulatedDevice().probe().emulated, true);
});

test('cuda-emu: dropout draws the same mask and values as the CPU backend, bit for bit', (t) => {
  const n = 10_007, p = 0.4, seed = 2 ** 40 + 123, offset = 77;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
  const out = { cpu: new Float32Array(n), emu: new Float32Array(n) };
  const mask = { cpu: new Uint8Array(n), emu: new Uint8Array(n) };
  cpuKernels().dropoutForward(x, out.cpu, mask.cpu, p, seed, offset);
  cudaEmuKernels().dropoutForward(x, out.emu, mask.emu, p, seed, offset);
  t.deepEqual(mask.emu, mask.cpu);
  t.deepEqual(out.emu, out.cpu);
  for (const index of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) {
    t.is(cudaEmulatedDevice().uniformAt(seed, index), cpuKernels().uniformAt(seed, index));
  }
});
