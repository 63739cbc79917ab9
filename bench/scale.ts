// Scale benchmark (issue 16): the parameter server's push/pull and ddp's all-reduce as the model
// grows, beside PyTorch's batch PS and DDP on the same models in the same run. MLPs 784-H-H-10
// (`--model mlp --depth 2`, H chosen for about 0.1M, 1M, 10M and 50M parameters), batch 64 per
// trainer, SGD lr 0.05, 2 trainers (PS: 1 server more), synthetic data, a fixed number of steps
// per size (fewer for the bigger models). psrpc: `node bin/psrun.js --strategy centralized
// --servers 1` (sync) and `--strategy ddp`; PyTorch: bench/torch_scale.py --mode ps|ddp.
// psrpc and PyTorch alternate run by run (the order flips each round), round after round; each
// row reports medians over rounds. Writes bench/results/scale.json and docs/charts/scale.svg.
//
// Step time: the first trainer's training loop divided by its steps (psrpc: the job result's
// trainSeconds; PyTorch: the same loop, timed in torch_scale.py, which also keeps each step's
// time). bytes/s: what one trainer's link carries per step, sent + received, over the step time:
// PS 2 x 4P (push the gradient, pull the parameters), ddp 2 x 2(W-1)/W x 4P (ring all-reduce).
// Peak memory: the kernel's RSS high-water mark of every process. This file reads VmHWM in
// /proc/<pid>/status of the whole process tree every 50 ms while a run lasts (VmHWM only grows, so
// the last reading is the peak, short only of growth in a process's last 50 ms). PyTorch's figures
// are its processes' own getrusage ru_maxrss (the same counter), the readings kept beside in the
// JSON. The largest RssShmem read is kept too: shared pages count in every mapping process's RSS.
//   node --import tsx bench/scale.ts [--rounds 2] [--sizes 0.1M,1M,10M,50M] [--steps N] [--no-torch]
//        [--no-build] [--out bench/results/scale.json] [--chart docs/charts/scale.svg]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TopLevelSpec } from 'vega-lite';
import type { JobResult } from '../src/launch/job-result.js';
import { flagsOrExit, flagValue, median } from './peer.js';
import { renderChart } from './strategies-charts.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PYTHON = '/usr/bin/python3';
const TRAINERS = 2;
const DEPTH = 2;
const BATCH = 64;

export type Strategy = 'ps' | 'ddp';
export const STRATEGIES: readonly Strategy[] = ['ps', 'ddp'];

/** The sizes the issue names, and the steps each runs (a 50M step is about a second here). */
export const SIZES = [
  { label: '0.1M', target: 1e5, steps: 200 },
  { label: '1M', target: 1e6, steps: 100 },
  { label: '10M', target: 1e7, steps: 30 },
  { label: '50M', target: 5e7, steps: 10 },
] as const;

export interface Size { label: string; hidden: number; depth: number; parameters: number; steps: number }

/** Parameters of the mlp preset 784-H x depth-10 (weights and biases). */
export function mlpParameters(hidden: number, depth: number, features = 784, classes = 10): number {
  const widths = [features, ...Array.from({ length: depth }, () => hidden), classes];
  let n = 0;
  for (let i = 0; i + 1 < widths.length; i++) n += widths[i]! * widths[i + 1]! + widths[i + 1]!;
  return n;
}

/** The hidden width whose model comes closest to `target` parameters (the smaller one on a tie). */
export function widthFor(target: number, depth = DEPTH): number {
  if (depth < 1) throw new RangeError(`widthFor: depth must be >= 1, got ${depth}`);
  let lo = 1, hi = 1;
  while (mlpParameters(hi, depth) < target) hi *= 2;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (mlpParameters(mid, depth) < target) lo = mid + 1; else hi = mid;
  }
  return lo > 1 && target - mlpParameters(lo - 1, depth) <= mlpParameters(lo, depth) - target ? lo - 1 : lo;
}

export interface Flags { rounds: number; sizes: Size[]; torch: boolean; build: boolean; out: string; chart: string }

export function parseFlags(argv: string[]): Flags {
  const known = ['--rounds', '--sizes', '--steps', '--no-torch', '--no-build', '--out', '--chart'];
  for (const a of argv) if (a.startsWith('--') && !known.includes(a)) throw new RangeError(`unknown flag ${a} (known: ${known.join(', ')})`);
  const value = (name: string) => flagValue(argv, name);
  const int = (name: string, fallback: number | undefined): number | undefined => {
    const v = value(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1) throw new RangeError(`${name} must be an integer >= 1, got '${v}'`);
    return n;
  };
  const rounds = int('--rounds', 2)!;
  const steps = int('--steps', undefined);
  const labels = (value('--sizes') ?? SIZES.map((s) => s.label).join(',')).split(',').filter((s) => s !== '');
  const sizes = labels.map((l): Size => {
    const s = SIZES.find((x) => x.label.toLowerCase() === l.toLowerCase());
    if (!s) throw new RangeError(`--sizes: unknown size '${l}' (known: ${SIZES.map((x) => x.label).join(', ')})`);
    const hidden = widthFor(s.target);
    return { label: s.label, hidden, depth: DEPTH, parameters: mlpParameters(hidden, DEPTH), steps: steps ?? s.steps };
  });
  if (sizes.length === 0) throw new RangeError('--sizes names no size');
  return {
    rounds, sizes, torch: !argv.includes('--no-torch'), build: !argv.includes('--no-build'),
    out: value('--out') ?? join(root, 'bench', 'results', 'scale.json'), chart: value('--chart') ?? join(root, 'docs', 'charts', 'scale.svg'),
  };
}

/** Bytes one trainer's link carries per step, sent + received (see the header). */
export function bytesPerStep(strategy: Strategy, parameters: number, trainers = TRAINERS): number {
  return strategy === 'ps' ? 2 * 4 * parameters : 2 * ((2 * (trainers - 1)) / trainers) * 4 * parameters;
}

/** psrun's command line (after `node`) for one run. */
export function psrpcArgs(strategy: Strategy, size: Size, json: string): string[] {
  return [join(root, 'bin', 'psrun.js'), '--strategy', strategy === 'ps' ? 'centralized' : 'ddp', '--servers', strategy === 'ps' ? '1' : '0',
    '--trainers', String(TRAINERS), ...(strategy === 'ps' ? ['--consistency', 'sync'] : []),
    '--dataset', 'synthetic', '--model', 'mlp', '--hidden', String(size.hidden), '--depth', String(size.depth),
    '--batch-size', String(BATCH), '--lr', '0.05', '--train-samples', String(size.steps * BATCH * TRAINERS), '--test-samples', String(BATCH),
    '--progress', 'none', '--json', json];
}

export function torchArgs(strategy: Strategy, size: Size): string[] {
  return [join(root, 'bench', 'torch_scale.py'), '--mode', strategy, '--hidden', String(size.hidden), '--depth', String(size.depth),
    '--steps', String(size.steps), '--batch', String(BATCH), '--trainers', String(TRAINERS)];
}

// ---- peak memory ----

/**
 * A process seen while a run lasted: its command line, its last VmHWM reading, and the most
 * RssShmem any reading showed (shared-memory pages: they count in the RSS of every process that
 * maps them, e.g. a same-host transport's arena; sampled, so a lower bound of its peak).
 */
export interface SeenProcess { pid: number; cmdline: string[]; peakRssBytes: number; shmemBytes?: number }

function readStatus(pid: number): { hwm: number; shmem: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    const hwm = kb('VmHWM');
    return Number.isFinite(hwm) ? { hwm, shmem: kb('RssShmem') || 0 } : null;
  } catch {
    return null; // gone
  }
}

function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(' ').map(Number));
      }
    } catch { /* exited between two reads */ }
  }
  return out;
}

/** Samples VmHWM of `pid` and its descendants every `intervalMs` until stop() (which samples once more). */
export function watchPeaks(pid: number, intervalMs = 50): { stop(): SeenProcess[] } {
  const seen = new Map<number, SeenProcess>();
  const sample = () => {
    for (const p of tree(pid)) {
      // the command line before the high-water mark: an exec between the two reads leaves a small mark under the old line
      let cmdline: string[];
      try { cmdline = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter((x) => x !== ''); } catch { continue; }
      const st = readStatus(p);
      if (st === null) continue;
      // a child caught between fork and exec still shows its parent's command line (and memory): exec starts a new record
      const s = seen.get(p);
      if (!s || s.cmdline.join('\0') !== cmdline.join('\0')) seen.set(p, { pid: p, cmdline, peakRssBytes: st.hwm, shmemBytes: st.shmem });
      else { s.peakRssBytes = Math.max(s.peakRssBytes, st.hwm); s.shmemBytes = Math.max(s.shmemBytes ?? 0, st.shmem); }
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return { stop() { clearInterval(timer); sample(); return [...seen.values()]; } };
}

export interface RolePeaks {
  server: number | null; trainers: number[]; launcher: number | null;
  /** Of those peaks, shared memory (RssShmem, sampled), server then trainers in the same order; absent: not read. */
  shmem?: { server: number | null; trainers: number[] };
}

/** psrun's tree: the ps-server and trainer entry points by their command lines (trainers in name order), psrun itself the launcher. */
export function psrpcRoles(seen: readonly SeenProcess[], launcherPid: number): RolePeaks {
  const is = (p: SeenProcess, role: string) => p.cmdline.some((a) => a.endsWith(`bin/${role}.js`) || a.endsWith(`cli/${role}-main.ts`));
  const name = (p: SeenProcess) => p.cmdline[p.cmdline.indexOf('--name') + 1] ?? '';
  const server = seen.filter((p) => is(p, 'ps-server')).sort((a, b) => b.peakRssBytes - a.peakRssBytes)[0];
  const trainers = seen.filter((p) => is(p, 'trainer')).sort((a, b) => name(a).localeCompare(name(b), 'en', { numeric: true }));
  return {
    server: server?.peakRssBytes ?? null,
    trainers: trainers.map((p) => p.peakRssBytes),
    launcher: seen.find((p) => p.pid === launcherPid)?.peakRssBytes ?? null,
    shmem: { server: server ? server.shmemBytes ?? 0 : null, trainers: trainers.map((p) => p.shmemBytes ?? 0) },
  };
}

// ---- one run ----

export interface RunFigures {
  stepSeconds: number;
  peaks: RolePeaks;
  /** What the command said of itself, kept for the cross-checks (bytesSent, ddp's peakRssBytes, ru_maxrss, per-step medians). */
  own: Record<string, unknown>;
}
export type RunOutcome = RunFigures | { error: string };

/** The step time and own figures of psrun's job result, checked against the run asked for. */
export function psrpcFigures(r: JobResult, size: Size): Omit<RunFigures, 'peaks'> {
  const want = size.steps * BATCH * TRAINERS;
  if (r.parameters !== size.parameters) throw new Error(`psrun trained ${r.parameters} parameters, expected ${size.parameters}`);
  if (r.samples !== want) throw new Error(`psrun trained ${r.samples} samples, expected ${want} (${size.steps} steps x ${BATCH} x ${TRAINERS} trainers)`);
  return { stepSeconds: r.trainSeconds / size.steps, own: { trainSeconds: r.trainSeconds, wallSeconds: r.wallSeconds, bytesSent: r.bytesSent ?? null, peakRssBytes: r.peakRssBytes ?? null, simd: r.simd } };
}

export interface TorchOutput {
  parameters: number; steps: number; stepSeconds: number; stepSecondsMedian: number; launcherPid: number;
  processes: Array<{ role: 'server' | 'trainer'; rank: number; pid: number; peakRssBytes: number }>;
}

/** torch_scale.py's JSON line (its last line starting with '{'), or null. */
export function parseTorch(stdout: string): TorchOutput | null {
  const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) return null;
  try {
    const o = JSON.parse(line) as TorchOutput;
    return Number.isFinite(o.stepSeconds) && Array.isArray(o.processes) ? o : null;
  } catch {
    return null;
  }
}

/** PyTorch's figures: its own ru_maxrss per role, the poller's reading of the same pids beside them. */
export function torchFigures(o: TorchOutput, seen: readonly SeenProcess[], size: Size): RunFigures {
  if (o.parameters !== size.parameters) throw new Error(`torch_scale.py built ${o.parameters} parameters, expected ${size.parameters}`);
  const polled = (pid: number) => seen.find((p) => p.pid === pid)?.peakRssBytes ?? null;
  const shmem = (pid: number) => seen.find((p) => p.pid === pid)?.shmemBytes ?? 0;
  const server = o.processes.find((p) => p.role === 'server');
  const trainers = o.processes.filter((p) => p.role === 'trainer');
  return {
    stepSeconds: o.stepSeconds,
    peaks: {
      server: server?.peakRssBytes ?? null, trainers: trainers.map((p) => p.peakRssBytes), launcher: polled(o.launcherPid),
      shmem: { server: server ? shmem(server.pid) : null, trainers: trainers.map((p) => shmem(p.pid)) },
    },
    own: { stepSecondsMedian: o.stepSecondsMedian, polledPeakRssBytes: o.processes.map((p) => ({ role: p.role, rank: p.rank, ruMaxrss: p.peakRssBytes, polled: polled(p.pid) })) },
  };
}

function lastError(text: string, code: number | null, signal: string | null): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.filter((l) => /error|fail|exited/i.test(l)).slice(-3).join(' | ') || lines.at(-1) || `exited with ${code ?? signal}`;
}

// Each run has its own process group, killed whole on a timeout or when this bench is stopped.
const groups = new Set<number>();
const killGroup = (pid: number) => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } };

/** Runs a command in its own process group, watching its tree's peaks. */
function run(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; pid: number; seen: SeenProcess[] }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' } });
    groups.add(child.pid!);
    const watch = watchPeaks(child.pid!);
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-50_000); });
    const timer = setTimeout(() => killGroup(child.pid!), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      killGroup(child.pid!); // whatever of the group outlived its leader (nothing, normally)
      groups.delete(child.pid!);
      resolve({ code, signal, stdout, stderr, pid: child.pid!, seen: watch.stop() });
    });
  });
}

async function runPsrpc(strategy: Strategy, size: Size, dir: string): Promise<RunOutcome> {
  const json = join(dir, 'job.json');
  rmSync(json, { force: true });
  const r = await run(process.execPath, psrpcArgs(strategy, size, json), 600_000);
  if (r.code !== 0) return { error: lastError(r.stderr, r.code, r.signal) };
  try {
    return { ...psrpcFigures(JSON.parse(readFileSync(json, 'utf8')) as JobResult, size), peaks: psrpcRoles(r.seen, r.pid) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

async function runTorch(strategy: Strategy, size: Size): Promise<RunOutcome> {
  const r = await run(PYTHON, torchArgs(strategy, size), 600_000);
  const o = parseTorch(r.stdout);
  if (r.code !== 0 || !o) return { error: lastError(r.stderr, r.code, r.signal) };
  try {
    return torchFigures(o, r.seen, size);
  } catch (e) {
    return { error: (e as Error).message };
  }
}

// ---- rows ----

export interface Side {
  stepMs: number; gbps: number; serverPeakBytes: number | null; trainerPeakBytes: number | null;
  /** Shared memory within those peaks (RssShmem, sampled; the largest trainer's), medians. */
  serverShmemBytes: number | null; trainerShmemBytes: number | null;
  rounds: number[]; errors: string[];
}
export interface Row { size: string; parameters: number; hidden: number; depth: number; steps: number; strategy: Strategy; bytesPerStep: number; psrpc: Side | null; torch: Side | null; speedup: number | null }

/** One side's medians over its rounds (null when it did not run); a round that failed is listed in errors. */
export function side(outcomes: readonly RunOutcome[] | undefined, bytes: number): Side | null {
  if (!outcomes || outcomes.length === 0) return null;
  const ok = outcomes.filter((o): o is RunFigures => !('error' in o));
  const stepMs = median(ok.map((o) => o.stepSeconds * 1000));
  const peak = (xs: (number | null)[]) => { const v = xs.filter((x): x is number => x !== null); return v.length ? median(v) : null; };
  return {
    stepMs, gbps: ok.length ? bytes / (stepMs / 1000) / 1e9 : NaN,
    serverPeakBytes: peak(ok.map((o) => o.peaks.server)),
    trainerPeakBytes: peak(ok.map((o) => (o.peaks.trainers.length ? Math.max(...o.peaks.trainers) : null))),
    serverShmemBytes: peak(ok.map((o) => o.peaks.shmem?.server ?? null)),
    trainerShmemBytes: peak(ok.map((o) => (o.peaks.shmem?.trainers.length ? Math.max(...o.peaks.shmem.trainers) : null))),
    rounds: ok.map((o) => o.stepSeconds * 1000), errors: outcomes.filter((o): o is { error: string } => 'error' in o).map((o) => o.error),
  };
}

export function makeRow(size: Size, strategy: Strategy, psrpc: readonly RunOutcome[] | undefined, torch: readonly RunOutcome[] | undefined): Row {
  const bytes = bytesPerStep(strategy, size.parameters);
  const p = side(psrpc, bytes), t = side(torch, bytes);
  const speedup = p && t && p.rounds.length && t.rounds.length ? t.stepMs / p.stepMs : null;
  return { size: size.label, parameters: size.parameters, hidden: size.hidden, depth: size.depth, steps: size.steps, strategy, bytesPerStep: bytes, psrpc: p, torch: t, speedup };
}

/** Bytes of server (or trainer) peak RSS per parameter between the smallest and the largest model. */
export function growthPerParameter(rows: readonly Row[], strategy: Strategy, which: 'psrpc' | 'torch', role: 'server' | 'trainer'): number | null {
  const pts = rows.filter((r) => r.strategy === strategy).map((r) => ({ n: r.parameters, b: r[which]?.[role === 'server' ? 'serverPeakBytes' : 'trainerPeakBytes'] ?? null }))
    .filter((p): p is { n: number; b: number } => p.b !== null).sort((a, b) => a.n - b.n);
  if (pts.length < 2) return null;
  return (pts.at(-1)!.b - pts[0]!.b) / (pts.at(-1)!.n - pts[0]!.n);
}

const f = (n: number | null | undefined, d = 0) => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const mb = (b: number | null) => (b === null ? 'n/a' : f(b / 2 ** 20));
const NAME: Record<Strategy, [string, string]> = { ps: ['PS', 'batch PS'], ddp: ['ddp', 'DDP'] };

export function formatTable(rows: readonly Row[]): string {
  const head = ['params', 'strategy', 'steps', 'psrpc ms', 'torch ms', 'torch/psrpc', 'psrpc GB/s', 'torch GB/s', 'psrpc RSS srv/trainer MiB', 'torch RSS srv/trainer MiB'];
  const rss = (s: Side | null) => (s ? `${s.serverPeakBytes === null ? '-' : mb(s.serverPeakBytes)} / ${mb(s.trainerPeakBytes)}` : 'n/a');
  const body = rows.map((r) => [f(r.parameters), `${NAME[r.strategy][0]} vs ${NAME[r.strategy][1]}`, String(r.steps), f(r.psrpc?.stepMs, 1), f(r.torch?.stepMs, 1),
    r.speedup === null ? 'n/a' : `${r.speedup.toFixed(2)}x`, f(r.psrpc?.gbps, 2), f(r.torch?.gbps, 2), rss(r.psrpc), rss(r.torch)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

// ---- chart ----

export function chartSpec(rows: readonly Row[]): TopLevelSpec {
  const time: object[] = [], memory: object[] = [];
  for (const r of rows) {
    for (const [which, label] of [['psrpc', 'psrpc'], ['torch', 'PyTorch']] as const) {
      const s = r[which];
      if (!s || s.rounds.length === 0) continue;
      const series = `${label} ${NAME[r.strategy][which === 'psrpc' ? 0 : 1]}`;
      time.push({ series, parameters: r.parameters, ms: s.stepMs });
      if (s.serverPeakBytes !== null) memory.push({ series, role: 'server', parameters: r.parameters, mib: s.serverPeakBytes / 2 ** 20 });
      if (s.trainerPeakBytes !== null) memory.push({ series, role: 'trainer', parameters: r.parameters, mib: s.trainerPeakBytes / 2 ** 20 });
    }
  }
  const x = { field: 'parameters', type: 'quantitative', title: 'model parameters', scale: { type: 'log' }, axis: { values: rows.map((r) => r.parameters), format: '.2~s' } };
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: ['psrpc PS', 'PyTorch batch PS', 'psrpc ddp', 'PyTorch DDP'], range: ['#4c78a8', '#9ecae9', '#f58518', '#ffbf79'] } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: 'Parameter server and ddp as the model grows (1 server + 2 trainers)', subtitle: ['MLP 784-H-H-10, batch 64 per trainer, synthetic data; medians over rounds; both axes logarithmic',
      'right: peak RSS (VmHWM) of the server (solid) and of the largest trainer (dashed); ddp has no server'], anchor: 'start' },
    hconcat: [
      { width: 340, height: 260, data: { values: time }, mark: { type: 'line', point: true },
        encoding: { x, y: { field: 'ms', type: 'quantitative', title: 'step time (ms)', scale: { type: 'log', nice: false, padding: 12 } }, color } },
      { width: 340, height: 260, data: { values: memory }, mark: { type: 'line', point: true },
        encoding: { x, y: { field: 'mib', type: 'quantitative', title: 'peak RSS per process (MiB)', scale: { type: 'log', nice: false, padding: 12 } }, color,
          strokeDash: { field: 'role', type: 'nominal', title: 'process', scale: { domain: ['server', 'trainer'], range: [[1, 0], [5, 3]] }, legend: null } } },
    ],
    config: { font: 'DejaVu Sans, Liberation Sans, Arial, sans-serif', axis: { gridColor: '#e5e5e5' }, view: { stroke: '#ccc' } },
  } as TopLevelSpec;
}

// ---- main ----

async function main(): Promise<void> {
  const flags = flagsOrExit(parseFlags);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { for (const g of groups) killGroup(g); process.exit(130); });
  if (flags.build) {
    // psrun's bin runs the compiled dist/
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { encoding: 'utf8' });
    if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
  }
  const torchVersion = flags.torch ? spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout?.trim() || null : null;
  if (flags.torch && !torchVersion) process.stderr.write(`torch is not importable by ${PYTHON}: PyTorch figures left out\n`);
  for (const s of flags.sizes) process.stderr.write(`${s.label}: --hidden ${s.hidden} --depth ${s.depth} = ${s.parameters.toLocaleString('en-US')} parameters, ${s.steps} steps\n`);
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-bench-scale-'));
  const psrpc = new Map<string, RunOutcome[]>(), torch = new Map<string, RunOutcome[]>();
  const push = (m: Map<string, RunOutcome[]>, k: string, o: RunOutcome) => m.set(k, [...(m.get(k) ?? []), o]);
  const say = (o: RunOutcome) => ('error' in o ? `FAILED: ${o.error}` : `${(o.stepSeconds * 1000).toFixed(1)} ms/step, peak RSS server ${mb(o.peaks.server)} MiB, trainers ${o.peaks.trainers.map(mb).join(', ')} MiB`);
  const t0 = performance.now();
  try {
    for (let round = 1; round <= flags.rounds; round++) {
      for (const size of flags.sizes) {
        for (const strategy of STRATEGIES) {
          const key = `${size.label}|${strategy}`;
          // the order flips each round, so neither side always runs on a machine the other just warmed
          const order = round % 2 === 1 ? ['psrpc', 'torch'] as const : ['torch', 'psrpc'] as const;
          for (const which of order) {
            if (which === 'torch' && !torchVersion) continue;
            const o = which === 'psrpc' ? await runPsrpc(strategy, size, dir) : await runTorch(strategy, size);
            push(which === 'psrpc' ? psrpc : torch, key, o);
            process.stderr.write(`[round ${round}, ${Math.round((performance.now() - t0) / 1000)} s] ${which} ${strategy} ${size.label}: ${say(o)}\n`);
          }
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = flags.sizes.flatMap((s) => STRATEGIES.map((st) => makeRow(s, st, psrpc.get(`${s.label}|${st}`), torchVersion ? torch.get(`${s.label}|${st}`) : undefined)));
  process.stdout.write(`${formatTable(rows)}\n`);
  process.stdout.write('torch/psrpc: PyTorch step time over psrpc\'s (> 1: psrpc faster); GB/s: one trainer\'s link, sent + received, per second\n');
  const growth: Record<string, number | null> = {};
  for (const st of STRATEGIES) for (const which of ['psrpc', 'torch'] as const) for (const role of ['server', 'trainer'] as const) {
    if (st === 'ddp' && role === 'server') continue;
    growth[`${which} ${st} ${role}`] = growthPerParameter(rows, st, which, role);
  }
  process.stdout.write(`peak RSS growth, bytes per parameter (smallest to largest model): ${Object.entries(growth).map(([k, v]) => `${k} ${f(v, 1)}`).join('; ')}\n`);
  const shared = rows.flatMap((r) => (['psrpc', 'torch'] as const).filter((w) => (r[w]?.serverShmemBytes ?? 0) + (r[w]?.trainerShmemBytes ?? 0) >= 2 ** 20)
    .map((w) => `${w} ${r.strategy} ${r.size} ${r[w]!.serverShmemBytes === null ? '' : `${mb(r[w]!.serverShmemBytes)} / `}${mb(r[w]!.trainerShmemBytes)}`));
  if (shared.length) process.stdout.write(`of which shared memory (RssShmem, counted in every process mapping it), server / trainer MiB: ${shared.join('; ')}\n`);
  for (const r of rows) for (const which of ['psrpc', 'torch'] as const) {
    const errs = r[which]?.errors ?? [];
    if (errs.length) process.stdout.write(`${which} ${r.strategy} ${r.size}: ${errs.length} failed run(s): ${errs[0]}\n`);
  }
  mkdirSync(dirname(flags.chart), { recursive: true });
  writeFileSync(flags.chart, (await renderChart(chartSpec(rows))).svg);
  mkdirSync(dirname(flags.out), { recursive: true });
  writeFileSync(flags.out, JSON.stringify({
    date: new Date().toISOString(), command: `node --import tsx bench/scale.ts ${process.argv.slice(2).join(' ')}`.trim(), totalSeconds: (performance.now() - t0) / 1000,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, torch: torchVersion },
    settings: { trainers: TRAINERS, batch: BATCH, lr: 0.05, dataset: 'synthetic (psrpc: --dataset synthetic; PyTorch: torch.randn inputs, uniform labels)', rounds: flags.rounds, sizes: flags.sizes,
      stepTime: 'first trainer\'s training loop / steps', bytesPerStep: 'one trainer, sent + received: PS 2 x 4P, ddp 2 x 2(W-1)/W x 4P', peakRss: 'VmHWM of each process (psrpc: polled every 50 ms; PyTorch: its own ru_maxrss)' },
    rows, peakRssGrowthBytesPerParameter: growth, chart: relative(root, flags.chart),
    raw: { psrpc: Object.fromEntries(psrpc), torch: Object.fromEntries(torch) },
  }, null, 2) + '\n');
  process.stderr.write(`wrote ${relative(root, flags.out)} and ${relative(root, flags.chart)} (${Math.round((performance.now() - t0) / 1000)} s)\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
