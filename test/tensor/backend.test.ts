// The backend registry and the TypeScript reference kernels, checked against the native ones.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { crossEntropy, getBackend, jsBackend, mlp, nativeCpuBackend, randn, setBackend, SGD, type Backend, type HostKernels } from '../../src/tensor/index.js';
import { cudaAvailable, cudaEmuKernels } from '../../src/tensor/cuda.js';
import { packageRoot } from '../../src/tensor/native.js';

test('the default cpu backend is the native addon (the TypeScript kernels under PSRPC_KERNELS=js)', (t) => {
  t.regex(getBackend('cpu').name, process.env.PSRPC_KERNELS === 'js' ? /^js$/ : /^native:(avx512|avx2|scalar)$/);
  if (cudaAvailable()) t.is(getBackend('cuda').device, 'cuda');
  else t.throws(() => getBackend('cuda'), { message: /CUDA is not available/ });
});

test('the TypeScript dropout generator draws the same numbers as the native one (Philox4x32-10)', (t) => {
  const js = jsBackend().kernels, native = nativeCpuBackend().kernels;
  for (const [seed, index] of [[0, 0], [1, 2], [42, 123456], [2 ** 40 + 7, 2 ** 33 + 5], [4294967295, 4294967296]] as const) {
    t.is(js.uniformAt(seed, index), native.uniformAt(seed, index), `seed ${seed}, index ${index}`);
  }
});

/** Two SGD steps of a small MLP with dropout; returns the parameters. */
function run(): Float32Array[] {
  const m = mlp([6, 5, 4], { seed: 3, dropout: 0.2 });
  const opt = new SGD(m.parameters(), { lr: 0.1, momentum: 0.9 });
  for (let s = 0; s < 2; s++) {
    opt.zeroGrad();
    crossEntropy(m.forward(randn([7, 6], { seed: s })), Int32Array.from([0, 1, 2, 3, 0, 1, 2])).backward();
    opt.step();
  }
  return m.parameters().map((p) => p.data);
}

/** Runs `run` with `backend` serving 'cpu', then puts the previous backend back. */
function withBackend<T>(backend: Backend | HostKernels, fn: () => T): T {
  const previous = getBackend('cpu');
  setBackend(backend);
  try {
    return fn();
  } finally {
    setBackend(previous);
  }
}

test('a training step on the TypeScript kernels matches the native kernels', (t) => {
  const native = run();
  const js = withBackend(jsBackend(), run);
  native.forEach((p, i) => p.forEach((v, j) => t.true(Math.abs(v - js[i]![j]!) < 1e-5, `param ${i}[${j}]: ${v} vs ${js[i]![j]}`)));
});

const emuBuilt = existsSync(join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda_emu.node'));
(emuBuilt ? test : test.skip)('ops run unchanged on another backend: the CUDA kernels (SIMT emulation) train like the CPU ones', (t) => {
  const native = run();
  const emu = withBackend({ device: 'cpu', name: 'cuda-emu', kernels: cudaEmuKernels() }, run);
  native.forEach((p, i) => p.forEach((v, j) => t.true(Math.abs(v - emu[i]![j]!) < 1e-5, `param ${i}[${j}]: ${v} vs ${emu[i]![j]}`)));
});
