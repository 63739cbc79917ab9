// GEMM throughput of the CPU kernels at the shapes of the MLP 784-64-64-10 (batch 64) and 1024^3.
//
//   node --import tsx bench/gemm.ts            prints a table, writes bench/results/gemm.json
//   /usr/bin/python3 bench/openblas_gemm.py    the same shapes through OpenBLAS (numpy), one thread
//
// When /usr/bin/python3 with numpy is there, the table also shows OpenBLAS (one thread, measured by
// bench/openblas_gemm.py right after psrpc, in the same run) and psrpc's share of it.
// Each figure is the median of several timed repetitions, each long enough (~25 ms) for the timer.
// Everything runs on one core: the kernels are single-threaded by design.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuKernels } from '../src/tensor/native.js';

export interface GemmShape { name: string; m: number; n: number; k: number; transA: boolean; transB: boolean }
export interface GemmResult { m: number; n: number; k: number; transA: boolean; transB: boolean; gflops: number }

/** The layer products of one training step of the MLP (batch 64), then a large square product. */
export const GEMM_SHAPES: GemmShape[] = [
  { name: 'fc1 forward  X·W1^T', m: 64, n: 64, k: 784, transA: false, transB: true },
  { name: 'fc1 dW1 = dY^T·X', m: 64, n: 784, k: 64, transA: true, transB: false },
  { name: 'fc1 dX = dY·W1', m: 64, n: 784, k: 64, transA: false, transB: false },
  { name: 'fc2 forward  H·W2^T', m: 64, n: 64, k: 64, transA: false, transB: true },
  { name: 'fc2 dW2 = dY^T·H', m: 64, n: 64, k: 64, transA: true, transB: false },
  { name: 'fc2 dH = dY·W2', m: 64, n: 64, k: 64, transA: false, transB: false },
  { name: 'fc3 forward  H·W3^T', m: 64, n: 10, k: 64, transA: false, transB: true },
  { name: 'fc3 dW3 = dY^T·H', m: 10, n: 64, k: 64, transA: true, transB: false },
  { name: 'fc3 dH = dY·W3', m: 64, n: 64, k: 10, transA: false, transB: false },
  { name: 'square 1024^3', m: 1024, n: 1024, k: 1024, transA: false, transB: false },
];

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

/** GFLOP/s of one shape: median over `reps` timed runs. */
export function timeGemm(shape: GemmShape, reps = 7): number {
  const k = cpuKernels();
  const { m, n, k: kk, transA, transB } = shape;
  const a = Float32Array.from({ length: m * kk }, () => Math.random() - 0.5);
  const b = Float32Array.from({ length: kk * n }, () => Math.random() - 0.5);
  const c = new Float32Array(m * n);
  const lda = transA ? m : kk, ldb = transB ? kk : n;
  const run = (): void => k.gemm(transA, transB, m, n, kk, 1, a, lda, b, ldb, 0, c, n);
  const flops = 2 * m * n * kk;
  // Calibrate the inner count so one repetition lasts about 25 ms.
  let inner = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) run();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms > 25) break;
    inner *= ms < 1 ? 8 : 2;
  }
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) run();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push((flops * inner) / s / 1e9);
  }
  return median(rates);
}

/** Runs every shape of GEMM_SHAPES; the lead's bench/kernels.ts calls this. */
export async function benchGemm(): Promise<GemmResult[]> {
  const out: GemmResult[] = [];
  for (const s of GEMM_SHAPES) {
    out.push({ m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB, gflops: timeGemm(s) });
    await new Promise((resolve) => setImmediate(resolve));  // let the event loop breathe between shapes
  }
  return out;
}

export interface OpenBlasResult { numpy: number; cblas: number | null }

/** OpenBLAS figures for GEMM_SHAPES from bench/openblas_gemm.py, or null when python/numpy is missing. */
export function openBlas(): OpenBlasResult[] | null {
  const python = '/usr/bin/python3';
  const script = join(dirname(fileURLToPath(import.meta.url)), 'openblas_gemm.py');
  if (!existsSync(python)) return null;
  const run = spawnSync(python, [script, '--json'], {
    encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '1' }, timeout: 300_000,
  });
  if (run.status !== 0) return null;
  try {
    return JSON.parse(run.stdout) as OpenBlasResult[];
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const simd = cpuKernels().simd();
  const results = await benchGemm();
  const blas = openBlas();
  const cell = (v: number | null | undefined): string => (v == null ? 'n/a' : v.toFixed(1)).padStart(9);
  console.log(`GEMM GFLOP/s, one thread; psrpc simd path: ${simd}` +
    (blas ? '; OpenBLAS via numpy matmul and via cblas_sgemm (ctypes)' : '; OpenBLAS not measured (no python3/numpy)'));
  console.log('shape                        m     n     k  op     psrpc  OB-numpy  OB-cblas  psrpc/OB');
  results.forEach((r, i) => {
    const op = `${r.transA ? 'T' : 'N'}${r.transB ? 'T' : 'N'}`;
    const ob = blas?.[i];
    const best = ob ? Math.max(ob.numpy, ob.cblas ?? 0) : null;
    console.log(`${GEMM_SHAPES[i].name.padEnd(24)} ${String(r.m).padStart(5)} ${String(r.n).padStart(5)} ` +
      `${String(r.k).padStart(5)}  ${op} ${cell(r.gflops)} ${cell(ob?.numpy)} ${cell(ob?.cblas)} ` +
      `${best ? `${Math.round((100 * r.gflops) / best)}%`.padStart(9) : '      n/a'}`);
  });
  const file = join(dirname(fileURLToPath(import.meta.url)), 'results', 'gemm.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), simd, results, openblas: blas }, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
