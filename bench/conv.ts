// Convolution GFLOP/s of the CPU kernels at the cnn preset's two conv shapes (batch 64, one thread):
// forward, input gradient and weight (+ bias) gradient, each beside PyTorch's conv2d and
// aten::convolution_backward measured in the same run by bench/torch_conv.py.
//
//   node --import tsx bench/conv.ts      prints the table (bench:kernels prints it too and saves it)
//
// Every direction counts 2 * n * oc * oh * ow * (c / groups) * kh * kw flops, as the peer does.
// Each figure is the median of 7 timed repetitions of ~50 ms, after one untimed warm-up.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuKernels } from '../src/tensor/native.js';
import { median } from './peer.js';

export interface ConvShape { name: string; geometry: number[] }
export interface ConvDirections { forward: number; inputGrad: number; weightGrad: number }
export interface ConvResult extends ConvShape { psrpc: ConvDirections; torch: ConvDirections | null }
export interface ConvBench { torch: { version: string; mkldnnEnabled: boolean; kernels: string[] } | null; shapes: ConvResult[] }

const BATCH = 64;
/** [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups], the order of torch_conv.py's SHAPES. */
export const CONV_SHAPES: ConvShape[] = [
  { name: 'conv1 1->16 5x5 28x28', geometry: [BATCH, 1, 28, 28, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1] },
  { name: 'conv2 16->32 5x5 14x14', geometry: [BATCH, 16, 14, 14, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1] },
];

function outputSize(g: number[]): [number, number] {
  const [, , h, w, , kh, kw, sh, sw, ph, pw, dh, dw] = g as [number, number, number, number, number, number, number,
    number, number, number, number, number, number];
  return [Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1, Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1];
}

export function convFlops(g: number[]): number {
  const [n, c, , , oc, kh, kw] = g as [number, number, number, number, number, number, number];
  const [oh, ow] = outputSize(g);
  return 2 * n * oc * oh * ow * (c / g[13]!) * kh * kw;
}

function rate(run: () => void, flops: number): number {
  run();
  let inner = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) run();
    if (Number(process.hrtime.bigint() - t0) / 1e6 > 50) break;
    inner *= 2;
  }
  const rates: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) run();
    rates.push((flops * inner) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9);
  }
  return median(rates);
}

/** psrpc's three directions on one shape. */
export function timeConv(g: number[]): ConvDirections {
  const k = cpuKernels();
  const [n, c, h, w, oc, kh, kw] = g as [number, number, number, number, number, number, number];
  const [oh, ow] = outputSize(g);
  const fill = (len: number): Float32Array => Float32Array.from({ length: len }, () => Math.random() - 0.5);
  const x = fill(n * c * h * w), weight = fill(oc * (c / g[13]!) * kh * kw), bias = fill(oc), dy = fill(n * oc * oh * ow);
  const y = new Float32Array(dy.length), dx = new Float32Array(x.length), dweight = new Float32Array(weight.length);
  const dbias = new Float32Array(oc), col = new Float32Array(k.conv2dWorkspace(g));
  const flops = convFlops(g);
  return {
    forward: rate(() => k.conv2dForward(g, x, weight, bias, y, col), flops),
    inputGrad: rate(() => k.conv2dBackwardInput(g, dy, weight, dx, col, false), flops),
    weightGrad: rate(() => k.conv2dBackwardWeight(g, x, dy, dweight, dbias, col, false, false), flops),
  };
}

interface TorchConvOutput {
  torch: string; mkldnnEnabled: boolean;
  shapes: Array<{ forward: number; inputGrad: number; weightGrad: number; kernels: string[] }>;
}

/** PyTorch's figures from bench/torch_conv.py (one thread), or null without /usr/bin/python3 + torch. */
export function torchConv(): TorchConvOutput | null {
  const python = '/usr/bin/python3';
  if (!existsSync(python)) return null;
  const script = join(dirname(fileURLToPath(import.meta.url)), 'torch_conv.py');
  const r = spawnSync(python, [script, '--json', '--batch', String(BATCH)], {
    encoding: 'utf8', timeout: 300_000, env: { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
  });
  if (r.status !== 0) return null;
  try {
    return JSON.parse(r.stdout) as TorchConvOutput;
  } catch {
    return null;
  }
}

export function benchConv(): ConvBench {
  const ours = CONV_SHAPES.map((s) => timeConv(s.geometry));
  const peer = torchConv();
  return {
    torch: peer ? { version: peer.torch, mkldnnEnabled: peer.mkldnnEnabled, kernels: [...new Set(peer.shapes.flatMap((s) => s.kernels))] } : null,
    shapes: CONV_SHAPES.map((s, i) => {
      const p = peer?.shapes[i];
      return { ...s, psrpc: ours[i]!, torch: p ? { forward: p.forward, inputGrad: p.inputGrad, weightGrad: p.weightGrad } : null };
    }),
  };
}

export function printConv(b: ConvBench): void {
  const peer = b.torch ? `PyTorch ${b.torch.version} (mkldnn ${b.torch.mkldnnEnabled ? 'on' : 'off'})` : 'PyTorch not measured';
  console.log(`\nconv2d, batch ${BATCH}, one thread (GFLOP/s), psrpc beside ${peer}`);
  console.log('shape                     direction    psrpc  PyTorch  psrpc/PT');
  for (const s of b.shapes) {
    for (const d of ['forward', 'inputGrad', 'weightGrad'] as const) {
      const ours = s.psrpc[d], theirs = s.torch?.[d];
      console.log(`${s.name.padEnd(25)} ${d.padEnd(10)} ${ours.toFixed(1).padStart(8)} ${(theirs?.toFixed(1) ?? 'n/a').padStart(8)} ` +
        `${(theirs ? `${(ours / theirs).toFixed(2)}x` : 'n/a').padStart(9)}`);
    }
  }
  if (b.torch) console.log(`PyTorch kernels: ${b.torch.kernels.join(', ')}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) printConv(benchConv());
