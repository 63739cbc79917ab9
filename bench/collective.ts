// Collective benchmark: psrpc's ProcessGroup (src/collective/) against gloo (torch 1.13), same run.
// For each world size W it starts W node processes (one agent each, rendezvous on 127.0.0.1) and
// times allReduce (sum), broadcast (root 0), allGather, reduceScatter and barrier over total buffer
// sizes of 1 KB .. 64 MB in float32 and bfloat16 (and float16 for allReduce); then it runs
// bench/torch_collective.py with the same W, sizes and dtypes. psrpc and gloo alternate, round
// after round (the machine is shared and noisy); each row reports the median over rounds.
//
// Measuring (both sides alike): one warmup op, one estimate, then reps = max(3, minSeconds / the
// slowest rank's estimate) capped at 300, each rep a barrier then one timed op; the row's time is
// rank 0's median rep. Conventions are nccl-tests': bytes is the total buffer (allGather: the
// gathered result; reduceScatter: the full input), bytes count the dtype's own width (a bf16 row of
// 1 MB is 512 Ki values; psrpc holds them in a Float32Array and sends 16 bits each), algbw =
// bytes / time, busbw = algbw * 2(W-1)/W (allReduce), (W-1)/W (allGather, reduceScatter), 1
// (broadcast); GB = 1e9 bytes. After the timed reps every (op, dtype, size) runs once more on a
// known pattern (rank r holds (r + 1) + (i % 5)) and is checked element by element, so a fast wrong
// answer fails the bench instead of being reported.
//   node --import tsx bench/collective.ts [--quick] [--no-torch] [--processes 2,4] [--ops allReduce,...]
//        [--sizes 1024,...] [--rounds 2] [--min-seconds 0.2] [--out bench/results/collective.json]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../src/rpc/index.js';
import { attachCollectives, ProcessGroup, segmentBounds, type WireDType } from '../src/collective/index.js';
import { flagValue } from './peer.js';

const here = dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);

export const OPS = ['allReduce', 'broadcast', 'allGather', 'reduceScatter', 'barrier'] as const;
export type Op = (typeof OPS)[number];
const TORCH_OP: Record<Op, string> = { allReduce: 'all_reduce', broadcast: 'broadcast', allGather: 'all_gather', reduceScatter: 'reduce_scatter', barrier: 'barrier' };
const SIZES = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20];
const DTYPES: WireDType[] = ['float32', 'bfloat16'];
const ALL_REDUCE_DTYPES: WireDType[] = ['float32', 'bfloat16', 'float16'];
const MAX_REPS = 300;

export interface Flags {
  processes: number[];
  ops: Op[];
  sizes: number[];
  dtypes: WireDType[];
  allReduceDtypes: WireDType[];
  torch: boolean;
  rounds: number;
  minSeconds: number;
  out: string;
}

/** The command line's settings; a bad value throws naming the flag and the value. */
export function parseFlags(argv: string[]): Flags {
  const quick = argv.includes('--quick');
  const value = (name: string) => flagValue(argv, name);
  const ints = (name: string, min: number, fallback: number[]): number[] => {
    const v = value(name);
    if (v === undefined) return fallback;
    const out = v.split(',').filter((s) => s !== '').map((s) => {
      const n = Number(s);
      if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`${name}: ${JSON.stringify(s)} is not an integer >= ${min}`);
      return n;
    });
    if (out.length === 0) throw new RangeError(`${name}: no values in ${JSON.stringify(v)}`);
    return [...new Set(out)].sort((a, b) => a - b);
  };
  const opsArg = value('--ops');
  const ops = opsArg === undefined ? (quick ? ['allReduce'] as Op[] : [...OPS]) : opsArg.split(',').filter((s) => s).map((s) => {
    if (!(OPS as readonly string[]).includes(s)) throw new RangeError(`--ops: unknown op ${JSON.stringify(s)} (known: ${OPS.join(', ')})`);
    return s as Op;
  });
  const num = (name: string, fallback: number, ok: (n: number) => boolean, what: string): number => {
    const v = value(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!ok(n)) throw new RangeError(`${name}: ${JSON.stringify(v)} is not ${what}`);
    return n;
  };
  return {
    processes: ints('--processes', 2, quick ? [2] : [2, 4]),
    ops,
    sizes: ints('--sizes', 4, quick ? [1 << 20, 16 << 20, 64 << 20] : SIZES),
    dtypes: DTYPES,
    allReduceDtypes: quick ? DTYPES : ALL_REDUCE_DTYPES,
    torch: !argv.includes('--no-torch'),
    rounds: num('--rounds', 2, (n) => Number.isSafeInteger(n) && n >= 1, 'an integer >= 1'),
    minSeconds: num('--min-seconds', 0.2, (n) => n > 0 && Number.isFinite(n), 'a positive number'),
    out: value('--out') ?? join(here, 'results', 'collective.json'),
  };
}

export function busFactor(op: Op, w: number): number {
  return op === 'allReduce' ? (2 * (w - 1)) / w : op === 'allGather' || op === 'reduceScatter' ? (w - 1) / w : op === 'broadcast' ? 1 : 0;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const wireBytesOf = (d: WireDType) => (d === 'float32' ? 4 : 2);

/** Elements of a case: bytes in the dtype's width, a multiple of W for the segmented ops (as in torch_collective.py). */
export function elementsOf(op: Op, bytes: number, dtype: WireDType, w: number): number {
  let n = Math.max(1, Math.floor(bytes / wireBytesOf(dtype)));
  if (op === 'allGather' || op === 'reduceScatter') n = Math.max(w, n - (n % w));
  return n;
}

/** One measured row of one implementation: median microseconds of an op. */
interface Timing { op: Op; bytes: number; dtype: string; us: number; reps: number }
type Measured = Timing | { op: Op; bytes: number; dtype: string; unsupported: string };

// ---- the child: one rank ----

const pattern = (i: number, r: number) => r + 1 + (i % 5);

class Case {
  readonly n: number;
  readonly buf: Float32Array;
  constructor(readonly op: Op, readonly dtype: WireDType, bytes: number, readonly rank: number, readonly w: number) {
    this.n = op === 'barrier' ? 0 : elementsOf(op, bytes, dtype, w);
    this.buf = new Float32Array(this.n);
  }

  get bytes(): number { return this.n * wireBytesOf(this.dtype); }

  /** Prepares the inputs outside the timer; timed reps refill the reductions with rank + 1 (sums would grow rep by rep). */
  fill(checked: boolean): void {
    const { buf, rank } = this;
    if (this.op === 'allReduce' || this.op === 'reduceScatter') {
      if (checked) for (let i = 0; i < buf.length; i++) buf[i] = pattern(i, rank);
      else buf.fill(rank + 1);
    } else if (checked && this.op === 'broadcast') {
      for (let i = 0; i < buf.length; i++) buf[i] = rank === 0 ? pattern(i, 0) : -1;
    } else if (checked && this.op === 'allGather') {
      const b = segmentBounds(buf.length, this.w);
      buf.fill(-1);
      for (let i = b[rank]!; i < b[rank + 1]!; i++) buf[i] = pattern(i, rank);
    }
  }

  async run(pg: ProcessGroup): Promise<unknown> {
    const o = { dtype: this.dtype };
    switch (this.op) {
      case 'allReduce': return pg.allReduce(this.buf, { ...o, op: 'sum' });
      case 'broadcast': return pg.broadcast(this.buf, 0, o);
      case 'allGather': return pg.allGather(this.buf, o);
      case 'reduceScatter': return pg.reduceScatter(this.buf, { ...o, op: 'sum' });
      case 'barrier': return pg.barrier();
    }
  }

  /** The first wrong element after a checked run, or null. `out` is what the op resolved to. */
  check(out: unknown): string | null {
    const { w, buf } = this;
    const sum = (i: number) => { let s = 0; for (let r = 0; r < w; r++) s += pattern(i, r); return s; };
    let got: Float32Array = buf, want: (i: number) => number, offset = 0;
    if (this.op === 'allReduce') want = sum;
    else if (this.op === 'broadcast') want = (i) => pattern(i, 0);
    else if (this.op === 'allGather') {
      const b = segmentBounds(buf.length, w);
      want = (i) => { let r = 0; while (i >= b[r + 1]!) r++; return pattern(i, r); };
    } else if (this.op === 'reduceScatter') {
      const b = segmentBounds(buf.length, w);
      if (!(out instanceof Float32Array) || out.length !== b[this.rank + 1]! - b[this.rank]!) return `reduceScatter resolved to ${Object.prototype.toString.call(out)} of length ${(out as Float32Array)?.length}, not this rank's segment`;
      got = out; offset = b[this.rank]!; want = sum;
    } else return null;
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== want(i + offset)) return `${this.op} ${this.dtype} ${this.bytes} B, ${w} ranks, on rank ${this.rank}: element ${i + offset} is ${got[i]}, expected ${want(i + offset)}`;
    }
    return null;
  }
}

async function measure(pg: ProcessGroup, c: Case, minSeconds: number): Promise<{ us: number; reps: number }> {
  c.fill(false); await c.run(pg);
  c.fill(false); await pg.barrier();
  let t0 = performance.now(); await c.run(pg);
  const est = new Float32Array([(performance.now() - t0) / 1000]);
  await pg.allReduce(est, { op: 'max' });
  const reps = Math.floor(Math.min(MAX_REPS, Math.max(3, minSeconds / Math.max(est[0]!, 1e-7))));
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    c.fill(false); await pg.barrier();
    t0 = performance.now(); await c.run(pg); times.push((performance.now() - t0) * 1000);
  }
  return { us: median(times), reps };
}

interface ChildConfig { rank: number; w: number; master: string; flags: Flags }

async function child(cfg: ChildConfig): Promise<void> {
  const { rank, w, flags } = cfg;
  const agent = await Agent.start({ name: `r${rank}`, rank, worldSize: w, master: cfg.master, timeoutMs: 120_000 });
  attachCollectives(agent); // before the rendezvous: a peer's first barrier may come before this rank's create()
  if (rank === 0) process.send!({ address: agent.address });
  await agent.rendezvous();
  const pg = ProcessGroup.create(agent, { timeoutMs: 120_000 });
  const rows: Timing[] = [];
  let where = 'setup';
  try {
    for (const op of flags.ops) {
      if (op === 'barrier') {
        where = 'barrier';
        const { us, reps } = await measure(pg, new Case('barrier', 'float32', 0, rank, w), flags.minSeconds);
        rows.push({ op, bytes: 0, dtype: 'none', us, reps });
        continue;
      }
      for (const dtype of op === 'allReduce' ? flags.allReduceDtypes : flags.dtypes) {
        for (const size of flags.sizes) {
          where = `${op} ${dtype} ${size} B`;
          const c = new Case(op, dtype, size, rank, w);
          const { us, reps } = await measure(pg, c, flags.minSeconds);
          c.fill(true); await pg.barrier();
          const bad = c.check(await c.run(pg));
          // a wrong answer leaves the group intact: report it instead of the row and go on
          if (bad) process.send!({ wrong: `wrong result: ${bad}` });
          else rows.push({ op, bytes: c.bytes, dtype, us, reps });
        }
      }
    }
    await pg.barrier();
    if (rank === 0) process.send!({ rows });
  } catch (e) {
    process.send!({ error: `rank ${rank}, during ${where}: ${(e as Error).message}`, rows: rank === 0 ? rows : undefined });
    pg.close();
    await agent.shutdown({ graceful: false }).catch(() => {});
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  pg.close();
  await agent.shutdown({ graceful: true, timeoutMs: 60_000 });
  process.disconnect();
}

// ---- the parent ----

function startRank(cfg: ChildConfig): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, self, '--child', JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/**
 * One psrpc run of every case at W processes: rank 0's rows, and every wrong result any rank saw.
 * Rejects with the first error a rank reported (op, size, message) and the rows rank 0 had by then.
 */
async function runPsrpc(flags: Flags, w: number, wrong: string[]): Promise<Timing[]> {
  const kids: ChildProcess[] = [];
  const exits: Promise<number | null>[] = [];
  let fail!: (e: Error) => void;
  let done!: (rows: Timing[]) => void;
  const result = new Promise<Timing[]>((resolve, reject) => { done = resolve; fail = reject; });
  const start = (rank: number, master: string) => {
    const k = startRank({ rank, w, master, flags });
    kids.push(k);
    exits.push(new Promise((r) => k.on('exit', (code, signal) => {
      // a rank that dies without a word fails the run at once (the others would wait out their timeout)
      if (code !== 0) fail(new Error(`rank ${rank} exited with ${code ?? signal}`));
      r(code);
    })));
    k.on('message', (m: { address?: string; rows?: Timing[]; error?: string; wrong?: string }) => {
      if (m.wrong) wrong.push(m.wrong);
      else if (m.error) fail(Object.assign(new Error(m.error), { rows: m.rows }));
      else if (m.address) for (let r = 1; r < w; r++) start(r, m.address);
      else if (m.rows) done(m.rows);
    });
  };
  try {
    start(0, '127.0.0.1:0');
    const rows = await result;
    const codes = await Promise.all(exits);
    if (codes.some((c) => c !== 0)) throw new Error(`psrpc ranks exited with ${codes.join(', ')}`);
    return rows;
  } finally {
    for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
  }
}

function torchAvailable(): string | null {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch, torch.distributed; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function runTorch(flags: Flags, w: number): Measured[] {
  const ops = flags.ops.map((o) => TORCH_OP[o]).join(',');
  const args = [join(here, 'torch_collective.py'), '--processes', String(w), '--sizes', flags.sizes.join(','), '--ops', ops,
    '--dtypes', flags.dtypes.join(','), '--all-reduce-dtypes', flags.allReduceDtypes.join(','), '--min-seconds', String(flags.minSeconds)];
  const r = spawnSync('/usr/bin/python3', args, { encoding: 'utf8', timeout: 1_200_000, maxBuffer: 64 << 20, env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } });
  if (r.status !== 0) throw new Error(`torch_collective.py (W=${w}) exited with ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  const out = JSON.parse(r.stdout) as { rows: (Measured & { op: string })[] };
  const back = Object.fromEntries(Object.entries(TORCH_OP).map(([k, v]) => [v, k])) as Record<string, Op>;
  return out.rows.map((row) => ({ ...row, op: back[row.op]! }));
}

export interface Row {
  op: Op; bytes: number; dtype: string; processes: number;
  us: number; algGBps: number; busGBps: number;
  gloo: { us: number; algGBps: number; busGBps: number } | { unsupported: string } | null;
  /** Each round's median microseconds, psrpc and gloo. */
  rounds: { psrpc: number[]; gloo: number[] };
}

const keyOf = (m: { op: string; bytes: number; dtype: string }) => `${m.op}|${m.dtype}|${m.bytes}`;
const rates = (op: Op, bytes: number, us: number, w: number) => {
  const alg = bytes === 0 ? 0 : bytes / (us / 1e6) / 1e9;
  return { algGBps: alg, busGBps: alg * busFactor(op, w) };
};

/** The rows of one W from its rounds: per case the median time over rounds of each side. */
export function combine(w: number, psrpc: Timing[][], gloo: Measured[][] | null): Row[] {
  const rows: Row[] = [];
  const cases = new Map<string, Timing>();
  for (const round of psrpc) for (const m of round) if (!cases.has(keyOf(m))) cases.set(keyOf(m), m);
  for (const [k, first] of cases) {
    const ours = psrpc.map((round) => round.find((m) => keyOf(m) === k)).filter((m): m is Timing => !!m).map((m) => m.us);
    const us = median(ours);
    let g: Row['gloo'] = null;
    const theirs: number[] = [];
    if (gloo) {
      const found = gloo.map((round) => round.find((m) => keyOf(m) === k)).filter((m): m is Measured => !!m);
      const refused = found.find((m): m is Measured & { unsupported: string } => 'unsupported' in m);
      for (const m of found) if ('us' in m) theirs.push(m.us);
      if (refused) g = { unsupported: refused.unsupported };
      else if (theirs.length) { const gu = median(theirs); g = { us: gu, ...rates(first.op, first.bytes, gu, w) }; }
    }
    rows.push({ op: first.op, bytes: first.bytes, dtype: first.dtype, processes: w, us, ...rates(first.op, first.bytes, us, w), gloo: g, rounds: { psrpc: ours, gloo: theirs } });
  }
  return rows;
}

const size = (b: number) => (b === 0 ? '-' : b >= 1 << 20 ? `${b / (1 << 20)} MB` : `${b / 1024} KB`);

function printTable(rows: Row[]): void {
  const head = ['W', 'op', 'dtype', 'bytes', 'psrpc us', 'psrpc busGB/s', 'gloo us', 'gloo busGB/s', 'psrpc/gloo'];
  const lines = rows.map((r) => {
    const g = r.gloo && 'us' in r.gloo ? r.gloo : null;
    const ratio = g ? (r.op === 'barrier' ? g.us / r.us : r.busGBps / g.busGBps) : null;
    return [String(r.processes), r.op, r.dtype, size(r.bytes), r.us.toFixed(0), r.op === 'barrier' ? '-' : r.busGBps.toFixed(3),
      g ? g.us.toFixed(0) : r.gloo ? 'unsupported' : '-', g ? (r.op === 'barrier' ? '-' : g.busGBps.toFixed(3)) : '-', ratio === null ? '-' : `${ratio.toFixed(2)}x`];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(fmt(head));
  for (const l of lines) console.log(fmt(l));
  console.log('psrpc/gloo: bus bandwidth ratio (barrier: gloo time / psrpc time); > 1 means psrpc is faster');
}

async function parent(flags: Flags): Promise<void> {
  const torch = flags.torch ? torchAvailable() : null;
  if (flags.torch && !torch) console.error('torch is not importable by /usr/bin/python3: gloo figures left out');
  const rows: Row[] = [];
  const errors: string[] = [];
  for (const w of flags.processes) {
    const ours: Timing[][] = [];
    const theirs: Measured[][] = [];
    for (let round = 1; round <= flags.rounds; round++) {
      let t0 = performance.now();
      const wrong: string[] = [];
      try {
        ours.push(await runPsrpc(flags, w, wrong));
        console.error(`W=${w} round ${round}: psrpc ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      } catch (e) {
        const partial = (e as { rows?: Timing[] }).rows;
        if (partial?.length) ours.push(partial);
        errors.push(`psrpc W=${w} round ${round}: ${(e as Error).message}`);
        console.error(errors.at(-1));
      }
      for (const m of wrong) { errors.push(`psrpc W=${w} round ${round}: ${m}`); console.error(errors.at(-1)); }
      if (!torch) continue;
      t0 = performance.now();
      try {
        theirs.push(runTorch(flags, w));
        console.error(`W=${w} round ${round}: gloo ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      } catch (e) {
        errors.push(`gloo W=${w} round ${round}: ${(e as Error).message}`);
        console.error(errors.at(-1));
      }
    }
    rows.push(...combine(w, ours, torch ? theirs : null));
  }
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version, torch: torch ?? null },
    settings: { rounds: flags.rounds, minSeconds: flags.minSeconds, maxReps: MAX_REPS, GB: 1e9, bytes: 'total buffer bytes in the dtype\'s width', allGather: 'gloo: dist.all_gather into a list of W tensors (no all_gather_into_tensor in torch 1.13)' },
    rows,
    errors,
  };
  printTable(rows);
  mkdirSync(dirname(flags.out), { recursive: true });
  writeFileSync(flags.out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${flags.out}`);
  if (errors.length) {
    console.log(`${errors.length} error(s), also in the JSON's errors:`);
    for (const e of errors) console.log(`  ${e}`);
    process.exitCode = 1;
  }
}

if (process.argv[1] === self) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) await child(JSON.parse(process.argv[i + 1]!) as ChildConfig);
  else await parent(parseFlags(process.argv.slice(2)));
}
