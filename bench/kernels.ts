// npm run bench:kernels — GEMM GFLOP/s at the MLP's shapes and 1024^3, conv2d GFLOP/s at the cnn's
// two conv shapes (forward, input grad, weight grad), and local training samples/s, each beside its
// peer measured in the same run (OpenBLAS sgemm, PyTorch's conv2d and its local loop, one thread).
// Writes bench/results/kernels.json:
//   { gemm: [{ m, n, k, transA, transB, gflops }], conv: { torch, shapes: [{ name, geometry,
//     psrpc: { forward, inputGrad, weightGrad }, torch: {...} | null }] }, localSamplesPerSecond,
//     localTestAccuracy, openblas: [...] | null, torch: { localSamplesPerSecond, testAccuracy } | null, ... }
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuKernels } from '../src/tensor/native.js';
import { benchConv, printConv } from './conv.js';
import { benchGemm, GEMM_SHAPES, openBlas } from './gemm.js';
import { median, runAnchor } from './peer.js';

const here = dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** One whole `trainer --strategy local` run in its own process, as a user runs it. */
function localRun(extra: string[] = []): { samplesPerSecond: number; testAccuracy: number; wallSeconds: number } {
  const out = join(tmpdir(), `psrpc-bench-local-${process.pid}.json`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, '..', 'src', 'cli', 'trainer-main.ts'),
    '--strategy', 'local', '--epochs', '1', '--progress', 'none', '--json', out, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`local training failed: ${r.stderr}`);
  const res = JSON.parse(readFileSync(out, 'utf8'));
  rmSync(out, { force: true });
  return res;
}

const simd = cpuKernels().simd();
console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? '?'}; psrpc simd path: ${simd}`);
const gemm = await benchGemm();
const blas = openBlas();
console.log('\nGEMM, one thread (GFLOP/s)');
console.log('shape                        m     n     k  op     psrpc  OpenBLAS  psrpc/OB');
gemm.forEach((g, i) => {
  const ob = blas?.[i] ? Math.max(blas[i]!.numpy, blas[i]!.cblas ?? 0) : null;
  const op = `${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'}`;
  console.log(`${GEMM_SHAPES[i]!.name.padEnd(24)} ${String(g.m).padStart(5)} ${String(g.n).padStart(5)} ${String(g.k).padStart(5)}  ${op} ` +
    `${g.gflops.toFixed(1).padStart(9)} ${(ob?.toFixed(1) ?? 'n/a').padStart(9)} ${(ob ? `${Math.round((100 * g.gflops) / ob)}%` : 'n/a').padStart(9)}`);
});

const conv = benchConv();
printConv(conv);

// Local cnn training (the issue's target): `--model cnn` with SGD lr 0.05 momentum 0.9, batch 64,
// 1 epoch, beside torch_more.py cnn on the same data, runs interleaved so both see the same machine.
const cnnOurs: ReturnType<typeof localRun>[] = [];
const cnnTorch: Record<string, number>[] = [];
for (let i = 0; i < RUNS; i++) {
  cnnOurs.push(localRun(['--model', 'cnn', '--momentum', '0.9']));
  const t = runAnchor('torch_more.py', ['cnn', '--momentum', '0.9']);
  if (t) cnnTorch.push(t);
}
const cnnLocal = median(cnnOurs.map((r) => r.samplesPerSecond));
const cnnTorchLocal = cnnTorch.length ? median(cnnTorch.map((r) => r.samples_per_s!)) : null;
console.log(`\nlocal training, cnn (215,370 parameters), batch 64, SGD momentum 0.9, 1 epoch Fashion-MNIST (median of ${RUNS}, interleaved)`);
console.log(`  psrpc   ${Math.round(cnnLocal)} samples/s, test accuracy ${median(cnnOurs.map((r) => r.testAccuracy)).toFixed(4)}`);
if (cnnTorchLocal) {
  console.log(`  PyTorch ${Math.round(cnnTorchLocal)} samples/s, test accuracy ${median(cnnTorch.map((r) => r.test_accuracy!)).toFixed(4)}`);
  console.log(`  ratio   ${(cnnLocal / cnnTorchLocal).toFixed(2)}x`);
}

const ours = Array.from({ length: RUNS }, localRun);
const torchRuns = Array.from({ length: RUNS }, () => runAnchor('torch_train.py', ['local'])).filter((x) => x !== null);
const local = median(ours.map((r) => r.samplesPerSecond));
const torchLocal = torchRuns.length ? median(torchRuns.map((r) => r.samples_per_s!)) : null;
console.log(`\nlocal training, MLP 784-64-64-10, batch 64, 1 epoch Fashion-MNIST (median of ${RUNS})`);
console.log(`  psrpc   ${Math.round(local)} samples/s, test accuracy ${median(ours.map((r) => r.testAccuracy)).toFixed(4)}, whole command ${median(ours.map((r) => r.wallSeconds)).toFixed(2)} s`);
if (torchLocal) {
  console.log(`  PyTorch ${Math.round(torchLocal)} samples/s, test accuracy ${median(torchRuns.map((r) => r.test_acc!)).toFixed(4)}`);
  console.log(`  ratio   ${(local / torchLocal).toFixed(2)}x`);
} else {
  console.log('  PyTorch not measured (needs /usr/bin/python3 with torch and ../shared/anchors)');
}

const file = join(here, 'results', 'kernels.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, JSON.stringify({
  date: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? null },
  simd,
  gemm,
  openblas: blas,
  conv,
  localSamplesPerSecond: local,
  localTestAccuracy: median(ours.map((r) => r.testAccuracy)),
  localRuns: ours,
  torch: torchLocal ? { localSamplesPerSecond: torchLocal, testAccuracy: median(torchRuns.map((r) => r.test_acc!)), runs: torchRuns } : null,
  localVsTorch: torchLocal ? local / torchLocal : null,
  cnn: {
    samplesPerSecond: cnnLocal, testAccuracy: median(cnnOurs.map((r) => r.testAccuracy)), runs: cnnOurs,
    torch: cnnTorchLocal ? { samplesPerSecond: cnnTorchLocal, testAccuracy: median(cnnTorch.map((r) => r.test_accuracy!)), runs: cnnTorch } : null,
    vsTorch: cnnTorchLocal ? cnnLocal / cnnTorchLocal : null,
  },
}, null, 2) + '\n');
console.log(`\nwrote ${file}`);
