// The CPU addon against the shared kernel conformance suite, plus what only the CPU binding promises.
//
// The suite runs in this process on the best vector path of the machine; the lower paths
// (PSRPC_SIMD=avx2, PSRPC_SIMD=scalar, read once at load) are covered by running this same file
// again in a child ava process per path.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuKernels, packageRoot } from '../../src/tensor/native.js';
import { kernelSuite } from './kernel-suite.js';

kernelSuite('cpu', cpuKernels);

const forcedPath = process.env.PSRPC_SIMD;
const paths = ['scalar', 'avx2', 'avx512'];

test('cpu: simd() is one of the compiled paths, and PSRPC_SIMD can only lower it', (t) => {
  const simd = cpuKernels().simd();
  t.true(paths.includes(simd));
  if (forcedPath === 'scalar' || forcedPath === 'avx2') t.true(paths.indexOf(simd) <= paths.indexOf(forcedPath));
});

test('cpu: gemm refuses a C that overlaps A or B, and partly overlapping in-place views', (t) => {
  const k = cpuKernels();
  const buffer = new Float32Array(32).fill(1);
  const a = buffer.subarray(0, 16), c = buffer.subarray(8, 24);
  t.throws(() => k.gemm(false, false, 4, 4, 4, 1, a, 4, new Float32Array(16), 4, 0, c, 4), { instanceOf: RangeError });
  t.throws(() => k.reluForward(buffer.subarray(0, 8), buffer.subarray(4, 12)), { instanceOf: RangeError });
  t.deepEqual(Array.from(buffer), new Array(32).fill(1));
});

if (!forcedPath) {
  const best = paths.indexOf(cpuKernels().simd());
  for (const path of ['avx2', 'scalar'].filter((p) => paths.indexOf(p) < best)) {
    test(`cpu: the ${path} path passes the same suite (child process with PSRPC_SIMD=${path})`, (t) => {
      const ava = join(packageRoot(), 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
      const self = fileURLToPath(import.meta.url);
      const child = spawnSync(process.execPath, [ava, self], {
        cwd: packageRoot(),
        env: { ...process.env, PSRPC_SIMD: path },
        encoding: 'utf8',
        timeout: 110_000,
      });
      const output = `${child.stdout}\n${child.stderr}`;
      t.is(child.status, 0, output);
      t.regex(output, /\d+ tests passed/, output);
    });
  }
}

test('cpu: shapes with no elements return at once, however many empty rows they claim', (t) => {
  const k = cpuKernels();
  const empty = new Float32Array(0);
  k.logSoftmaxForward(empty, empty, 2 ** 53, 0);
  k.logSoftmaxBackward(empty, empty, empty, 2 ** 53, 0);
  k.biasAdd(empty, empty, 2 ** 53, 0);
  k.biasGrad(empty, empty, 2 ** 53, 0, false);
  k.gemm(false, false, 2 ** 53, 0, 0, 1, empty, 1, empty, 1, 0, empty, 1);
  t.pass();
});
