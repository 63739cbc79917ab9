// Runs one cell of the strategy matrix as a user would (a whole `trainer` or `psrun` command from
// source, with --json) and turns its result object into the benchmark's row. Every figure of a
// row is read from, or computed only from, that command's own result.
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PlannedRun } from './strategies-matrix.js';

export interface CurvePoint { seconds: number; samples: number; accuracy: number }

export interface RunRow {
  strategy: string;
  workers: number;
  status: 'ok' | 'failed';
  /** The failed command's error line. */
  error?: string;
  /** Training loop samples/s, all trainers together (the result's samplesPerSecond). */
  samplesPerSecond: number | null;
  /** Seconds of training until the curve first reaches the target (null: never, or no curve). */
  timeToTarget: number | null;
  /** Test accuracy of the final model on the whole test split (or --test-samples). */
  finalAccuracy: number | null;
  /** Tensor payload bytes between processes per trained sample (null: the result does not say). */
  bytesPerSample: number | null;
  /** Where bytesPerSample comes from: the result's bytesSent, or 0 for one process. */
  bytesSource: 'result' | 'single-process' | null;
  samples: number | null;
  trainSeconds: number | null;
  /** The whole command, start-up and data loading included, measured here. */
  commandSeconds: number;
  curve: CurvePoint[] | null;
  /** The command line, as run. */
  command: string;
  /** The strategy's own --json result object, as written. */
  result: Record<string, unknown> | null;
  /** With --runs N: every repetition's main figures (the row itself is the median run's). */
  repeats?: RepeatFigures[];
}

export interface RepeatFigures {
  status: 'ok' | 'failed';
  samplesPerSecond: number | null;
  timeToTarget: number | null;
  finalAccuracy: number | null;
  commandSeconds: number;
  error?: string;
}

/**
 * The row of a cell run several times: the run with the median samples/s (the lower middle one
 * for an even count), so every figure of the row is one real run's own result; the others are
 * listed in `repeats`. A cell with no successful run is the first failure.
 */
export function medianRow(runs: readonly RunRow[]): RunRow {
  if (runs.length === 0) throw new RangeError('medianRow: no runs');
  const ok = runs.filter((r) => r.status === 'ok').sort((a, b) => (a.samplesPerSecond ?? 0) - (b.samplesPerSecond ?? 0));
  const chosen = ok.length > 0 ? ok[(ok.length - 1) >> 1]! : runs[0]!;
  const repeats = runs.map((r): RepeatFigures => ({
    status: r.status, samplesPerSecond: r.samplesPerSecond, timeToTarget: r.timeToTarget, finalAccuracy: r.finalAccuracy,
    commandSeconds: r.commandSeconds, ...(r.error ? { error: r.error } : {}),
  }));
  return { ...chosen, repeats };
}

export interface RunContext {
  root: string;
  /** Training and evaluation flags every run gets. */
  common: string[];
  targetAccuracy: number;
  tmpDir: string;
}

/** The command line of a run, from source: trainer's entry (src/cli/trainer-main.ts), or psrun's main through tsx. */
export function commandLine(ctx: RunContext, run: PlannedRun, json: string): string[] {
  const entry = run.strategy.command === 'trainer'
    ? join(ctx.root, 'src', 'cli', 'trainer-main.ts')
    : join(ctx.root, 'bench', 'strategies-psrun.ts');
  return ['--import', 'tsx', entry, ...run.strategy.args, ...run.strategy.workerArgs(run.workers), ...commonFlags(ctx.common, run.strategy.curve !== false), '--progress', 'none', '--json', json];
}

/** The common flags, without the curve's (--eval-every, --eval-samples) for a strategy that records none. */
export function commonFlags(common: readonly string[], curve: boolean): string[] {
  if (curve) return [...common];
  const out: string[] = [];
  for (let i = 0; i < common.length; i++) {
    if (common[i] === '--eval-every' || common[i] === '--eval-samples') i++;
    else out.push(common[i]!);
  }
  return out;
}

/**
 * Seconds at which the curve first reaches `target`, interpolated linearly between the last point
 * below and the first point at or above it (points come every --eval-every seconds).
 */
export function timeToTarget(curve: readonly CurvePoint[], target: number): number | null {
  for (let i = 0; i < curve.length; i++) {
    const p = curve[i]!;
    if (p.accuracy < target) continue;
    if (i === 0) return p.seconds;
    const q = curve[i - 1]!;
    const f = (target - q.accuracy) / (p.accuracy - q.accuracy);
    return q.seconds + f * (p.seconds - q.seconds);
  }
  return null;
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function lastErrorLine(stderr: string, code: number | null, signal: string | null): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const err = [...lines].reverse().find((l) => /error|fail/i.test(l)) ?? lines.at(-1);
  return err ?? `exited with ${code ?? signal}`;
}

/** Turns a result object into the row's figures (exported for the tests). */
export function rowFromResult(run: PlannedRun, r: Record<string, unknown>, target: number): Omit<RunRow, 'command' | 'commandSeconds'> {
  const curve = Array.isArray(r.curve) ? (r.curve as CurvePoint[]) : null;
  const samples = finite(r.samples);
  const bytes = finite(r.bytesSent);
  const single = run.strategy.id === 'local' || run.strategy.id === 'hogwild';
  return {
    strategy: run.strategy.id,
    workers: run.workers,
    status: 'ok',
    samplesPerSecond: finite(r.samplesPerSecond),
    timeToTarget: curve ? timeToTarget(curve, target) : null,
    finalAccuracy: finite(r.testAccuracy),
    // local and Hogwild run in one process: nothing crosses a process boundary
    bytesPerSample: bytes !== null && samples ? bytes / samples : single ? 0 : null,
    bytesSource: bytes !== null && samples ? 'result' : single ? 'single-process' : null,
    samples,
    trainSeconds: finite(r.trainSeconds),
    curve,
    result: r,
  };
}

/** Runs one cell; never throws for a failing command (the row says failed, with its error line). */
export async function runOne(ctx: RunContext, run: PlannedRun, index: number): Promise<RunRow> {
  const json = join(ctx.tmpDir, `run-${index}.json`);
  const args = commandLine(ctx, run, json);
  const command = `node ${args.join(' ')}`;
  const t0 = performance.now();
  const { code, signal, stderr } = await new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ctx.root, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { err = (err + d).slice(-20_000); });
    child.on('error', (e) => resolve({ code: null, signal: null, stderr: err + `\nerror: ${e.message}` }));
    child.on('close', (c, s) => resolve({ code: c, signal: s, stderr: err }));
  });
  const commandSeconds = (performance.now() - t0) / 1000;
  const failed = (error: string): RunRow => ({
    strategy: run.strategy.id, workers: run.workers, status: 'failed', error,
    samplesPerSecond: null, timeToTarget: null, finalAccuracy: null, bytesPerSample: null, bytesSource: null,
    samples: null, trainSeconds: null, commandSeconds, curve: null, command, result: null,
  });
  if (code !== 0) return failed(lastErrorLine(stderr, code, signal));
  let result: Record<string, unknown>;
  try {
    result = JSON.parse(await readFile(json, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    return failed(`no readable --json result: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await rm(json, { force: true });
  }
  return { ...rowFromResult(run, result, ctx.targetAccuracy), command, commandSeconds };
}
