// Pipeline benchmark: `psrun --strategy pipeline` against PyTorch's RPC pipeline
// (../shared/anchors/torch_more.py pipeline: a driver and S stage processes behind RRefs,
// distributed autograd, DistributedOptimizer), same model, data, batch and learning rate, same run.
//
// The model is the issue's: --hidden 512 --depth 4 (784-512-512-512-512-10), 2 stages, batch 128,
// SGD lr 0.05, one epoch of Fashion-MNIST, for M = 1, 4, 8 micro-batches (psrpc: 1f1b, and gpipe
// at M = 4). psrpc and PyTorch alternate, configuration by configuration, round after round (the
// machine is a shared, noisy VM); each row reports the medians over rounds. Every figure is the
// commands' own: psrpc's --json result, PyTorch's printed line.
//   node --import tsx bench/pipeline.ts [--quick] [--rounds 3] [--micro 1,4,8] [--no-torch] [--out bench/results/pipeline.json]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flagsOrExit, flagValue } from './peer.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TORCH = join(root, '..', 'shared', 'anchors', 'torch_more.py');
const PYTHON = '/usr/bin/python3';

export interface Flags { rounds: number; micro: number[]; torch: boolean; quick: boolean; out: string }

export function parseFlags(argv: string[]): Flags {
  const quick = argv.includes('--quick');
  const value = (name: string) => flagValue(argv, name);
  for (const a of argv) if (a.startsWith('--') && !['--quick', '--no-torch', '--rounds', '--micro', '--out'].includes(a)) throw new RangeError(`unknown flag ${a}`);
  const rounds = Number(value('--rounds') ?? (quick ? 1 : 3));
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be an integer >= 1, got '${value('--rounds')}'`);
  const microText = value('--micro') ?? (quick ? '4' : '1,4,8');
  const micro = microText.split(',').map(Number);
  if (micro.some((m) => !Number.isSafeInteger(m) || m < 1 || m > 128)) throw new RangeError(`--micro must be comma-separated integers in [1, 128], got '${microText}'`);
  return { rounds, micro, torch: !argv.includes('--no-torch'), quick, out: value('--out') ?? join(root, 'bench', 'results', 'pipeline.json') };
}

export interface Config { id: string; micro: number; schedule: '1f1b' | 'gpipe'; recompute: boolean }

export function configs(micro: readonly number[]): Config[] {
  const out: Config[] = micro.map((m) => ({ id: `1f1b M=${m}`, micro: m, schedule: '1f1b' as const, recompute: false }));
  if (micro.includes(4)) out.push({ id: 'gpipe M=4', micro: 4, schedule: 'gpipe', recompute: false }, { id: '1f1b M=4 recompute', micro: 4, schedule: '1f1b', recompute: true });
  return out;
}

export interface PsrpcFigures { samplesPerSecond: number; testAccuracy: number; bubblePerStage: number[]; theoreticalBubble: number; peakActivationBytesPerStage: number[] }
export interface TorchFigures { samplesPerSecond: number; testAccuracy: number }

/** The figures of PyTorch's `torch pipeline ... samples_per_s=N test_accuracy=A ...` line, or null. */
export function parseTorchLine(text: string): TorchFigures | null {
  const line = text.split('\n').find((l) => l.startsWith('torch pipeline '));
  if (!line) return null;
  const get = (k: string) => Number(new RegExp(`${k}=([0-9.]+)`).exec(line)?.[1]);
  const f = { samplesPerSecond: get('samples_per_s'), testAccuracy: get('test_accuracy') };
  return Number.isFinite(f.samplesPerSecond) && Number.isFinite(f.testAccuracy) ? f : null;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[(s.length - 1) >> 1]!;
}

const MODEL = ['--hidden', '512', '--depth', '4', '--batch-size', '128', '--lr', '0.05', '--epochs', '1'];

function runPsrpc(c: Config, dir: string, quick: boolean): PsrpcFigures | { error: string } {
  const json = join(dir, 'r.json');
  rmSync(json, { force: true });
  const args = [join(root, 'bin', 'psrun.js'), '--strategy', 'pipeline', '--stages', '2', '--micro-batches', String(c.micro), '--schedule', c.schedule,
    ...(c.recompute ? ['--recompute'] : []), ...MODEL, ...(quick ? ['--train-samples', '12800'] : []), '--progress', 'none', '--json', json];
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`) };
  return JSON.parse(readFileSync(json, 'utf8')) as PsrpcFigures;
}

function runTorch(micro: number, quick: boolean): TorchFigures | { error: string } {
  const r = spawnSync(PYTHON, [TORCH, 'pipeline', '--stages', '2', '--micro', String(micro), '--batch', '128', '--width', '512', ...(quick ? ['--train-samples', '12800'] : [])], { cwd: root, encoding: 'utf8' });
  return parseTorchLine(r.stdout) ?? { error: (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`) };
}

async function main(): Promise<void> {
  const flags = flagsOrExit(parseFlags);
  // the psrun bin runs the compiled dist/
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-bench-pipeline-'));
  const list = configs(flags.micro);
  const psrpc = new Map<string, (PsrpcFigures | { error: string })[]>();
  const torch = new Map<number, (TorchFigures | { error: string })[]>();
  try {
    for (let round = 1; round <= flags.rounds; round++) {
      for (const c of list) {
        const p = runPsrpc(c, dir, flags.quick);
        psrpc.set(c.id, [...(psrpc.get(c.id) ?? []), p]);
        process.stderr.write(`[round ${round}] psrpc ${c.id}: ${'error' in p ? `failed: ${p.error}` : `${Math.round(p.samplesPerSecond)} samples/s, accuracy ${p.testAccuracy}`}\n`);
        // PyTorch has one schedule (its driver runs every forward, then dist autograd's backward): once per M
        if (flags.torch && c.schedule === '1f1b' && !c.recompute) {
          const t = runTorch(c.micro, flags.quick);
          torch.set(c.micro, [...(torch.get(c.micro) ?? []), t]);
          process.stderr.write(`[round ${round}] torch M=${c.micro}: ${'error' in t ? `failed: ${t.error}` : `${Math.round(t.samplesPerSecond)} samples/s, accuracy ${t.testAccuracy}`}\n`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ok = <T extends object>(xs: (T | { error: string })[] | undefined): T[] => (xs ?? []).filter((x): x is T => !('error' in x));
  const rows = list.map((c) => {
    const p = ok<PsrpcFigures>(psrpc.get(c.id));
    const t = ok<TorchFigures>(torch.get(c.micro));
    const psrpcSps = median(p.map((x) => x.samplesPerSecond));
    const torchSps = median(t.map((x) => x.samplesPerSecond));
    return {
      config: c.id, micro: c.micro, schedule: c.schedule, recompute: c.recompute,
      psrpcSamplesPerSecond: psrpcSps, torchSamplesPerSecond: torchSps, ratio: psrpcSps / torchSps,
      psrpcAccuracy: median(p.map((x) => x.testAccuracy)), torchAccuracy: median(t.map((x) => x.testAccuracy)),
      bubblePerStage: [0, 1].map((s) => median(p.map((x) => x.bubblePerStage[s]!))), theoreticalBubble: p[0]?.theoreticalBubble ?? NaN,
      peakActivationBytesPerStage: p[0]?.peakActivationBytesPerStage ?? [],
      errors: [...(psrpc.get(c.id) ?? []), ...(torch.get(c.micro) ?? [])].filter((x): x is { error: string } => 'error' in x).map((x) => x.error),
    };
  });
  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
  const head = ['config', 'psrpc samples/s', 'torch samples/s', 'ratio', 'psrpc acc', 'torch acc', 'bubble (stage 0, 1)', 'theory', 'peak activations (KiB)'];
  const body = rows.map((r) => [r.config, f(r.psrpcSamplesPerSecond), f(r.torchSamplesPerSecond), f(r.ratio, 2), f(r.psrpcAccuracy, 4), f(r.torchAccuracy, 4),
    r.bubblePerStage.map((b) => f(b, 2)).join(', '), f(r.theoreticalBubble, 2), r.peakActivationBytesPerStage.map((b) => f(b / 1024)).join(', ')]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  process.stdout.write(`${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${body.map(line).join('\n')}\n`);
  for (const r of rows) if (r.errors.length > 0) process.stdout.write(`${r.config}: ${r.errors.length} failed run(s): ${r.errors[0]}\n`);
  const torchVersion = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim() || null;
  mkdirSync(dirname(flags.out), { recursive: true });
  writeFileSync(flags.out, JSON.stringify({
    date: new Date().toISOString(), command: `npm run bench:pipeline -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, torch: torchVersion },
    settings: { model: '784-512-512-512-512-10', stages: 2, batch: 128, lr: 0.05, epochs: 1, rounds: flags.rounds, quick: flags.quick },
    rows, raw: { psrpc: Object.fromEntries(psrpc), torch: Object.fromEntries(torch) },
  }, null, 2) + '\n');
  process.stderr.write(`wrote ${flags.out}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
