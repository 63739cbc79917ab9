// Checkpoints of a model trained in one process (the `local` strategy): the parameters, buffers
// and optimizer state of the whole model as a one-shard checkpoint in the servers' format
// (src/server/checkpoint.ts: safetensors + manifest, atomic, checksummed, the last K kept), so one
// reader serves both, and the manifest names every parameter with its offset and shape.
//
// The checkpoint's number is the step count; a resumed run starts at that step's epoch and batch
// (the loader's order is a function of the seed and the epoch), so it ends where the run never
// interrupted ends, bit for bit.
import { CheckpointStore, type LoadedCheckpoint, type ShardSnapshot } from '../server/index.js';
import type { Module, Optimizer, OptimizerState, Tensor } from '../tensor/index.js';
import type { ParameterSpec } from '../server/index.js';
import type { TrainOptions } from './options.js';

export class ModelCheckpoints {
  readonly store: CheckpointStore;
  private readonly named: [string, Tensor][];
  private readonly total: number;
  /** The last queued write (one at a time: a checkpoint asked for meanwhile waits for it). */
  private writes: Promise<unknown> = Promise.resolve();
  private due: number;
  private pending = 0;
  private readonly everyMs: number;
  /** Checkpoints written, and the last one's figures. */
  readonly counts = { written: 0, lastId: -1, lastBytes: 0, lastMs: 0 };

  constructor(
    private readonly opts: Pick<TrainOptions, 'checkpointDir' | 'checkpointEvery' | 'checkpointSteps' | 'checkpointKeep' | 'optimizer'>,
    private readonly model: Module,
    private readonly optimizer: Optimizer<unknown>,
    private readonly log: (line: string) => void,
    /** Who trained: 'local' (one process), or 'sync' with the number of ddp ranks. */
    private readonly job: { consistency: string; trainers: number } = { consistency: 'local', trainers: 1 },
    private readonly now: () => number = () => performance.now(),
  ) {
    this.store = new CheckpointStore(opts.checkpointDir!, { keep: opts.checkpointKeep, log });
    this.named = model.namedParameters();
    for (const [name, p] of this.named) {
      if (p.device !== 'cpu') throw new RangeError(`--checkpoint-dir: parameter ${name} is on ${p.device}; checkpoints of a model off the CPU are not written yet (use --device cpu)`);
    }
    this.total = this.named.reduce((n, [, p]) => n + p.size, 0);
    this.everyMs = opts.checkpointEvery * 1000;
    this.due = this.now() + this.everyMs;
    // stopped by psrun (another process failed): the checkpoints already copied reach the disk
    // before this process goes, so a restart resumes from the newest one taken
    process.once('SIGTERM', this.onTerm);
  }

  private readonly onTerm = (sig: NodeJS.Signals): void => {
    void this.writes.finally(() => process.kill(process.pid, sig));
  };

  /** Stops flushing on SIGTERM (training is over: the final checkpoint was awaited). */
  dispose(): void {
    process.off('SIGTERM', this.onTerm);
  }

  /**
   * After step `step` (the count of steps taken): when a checkpoint is due, copies the model and
   * queues its write; returns a promise only when the previous write is still going (the step
   * waits for it rather than piling copies up), undefined otherwise.
   */
  afterStep(step: number): Promise<void> | undefined {
    const bySteps = this.opts.checkpointSteps > 0 && step % this.opts.checkpointSteps === 0;
    const byTime = this.everyMs > 0 && this.now() >= this.due;
    if (!bySteps && !byTime) return undefined;
    if (byTime) this.due = this.now() + this.everyMs;
    const busy = this.pending > 0;
    const before = this.writes;
    void this.write(step).catch(() => { /* said by write */ });
    return busy ? before.then(() => {}) : undefined;
  }

  /** Writes checkpoint `step` (after the queued ones) and resolves when it is on disk. */
  write(step: number): Promise<void> {
    const snap = this.snapshot(step);
    this.pending++;
    const done = this.writes.then(() => this.store.writeShard(snap)).then((r) => {
      Object.assign(this.counts, { written: this.counts.written + 1, lastId: step, lastBytes: r.bytes, lastMs: r.ms });
    }).finally(() => { this.pending--; });
    this.writes = done.catch((e: unknown) => this.log(`checkpoint ${step} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`));
    return done;
  }

  /** The model, its buffers and its optimizer state at step `step`, copied. */
  snapshot(step: number): ShardSnapshot {
    const values = new Float32Array(this.total);
    const states: Array<OptimizerState | null> = this.named.map(([, p]) => this.optimizer.exportState(p));
    const first = states.find((s) => s !== null) ?? null;
    const arrays: Record<string, Float32Array> = {};
    if (first) for (const k of Object.keys(first.arrays)) arrays[k] = new Float32Array(this.total);
    let at = 0;
    for (const [i, [, p]] of this.named.entries()) {
      values.set(p.storage as Float32Array, at);
      const s = states[i];
      if (s) for (const [k, v] of Object.entries(s.arrays)) arrays[k]?.set(v, at);
      at += p.size;
    }
    const buffers: Record<string, Float32Array> = {};
    for (const [name, b] of this.model.namedBuffers()) buffers[name] = (b.storage as Float32Array).slice();
    return {
      id: step, shard: 0, shards: 1, start: 0, length: this.total, total: this.total, version: step,
      layout: this.named.map(([name, p]) => ({ name, size: p.size, shape: [...p.shape] })),
      consistency: this.job.consistency, trainers: this.job.trainers, optimizer: this.opts.optimizer,
      values, state: first ? { arrays, scalars: first.scalars } : null, buffers,
    };
  }

  /** Loads checkpoint `cp` into the model and the optimizer; returns its step. Refuses another model, naming the difference. */
  restore(cp: LoadedCheckpoint): number {
    const saved = cp.manifest.layout;
    const mine = this.named.map(([name, p]) => `${name}[${p.shape.join('x')}]`).join(', ');
    const theirs = saved.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');
    if (mine !== theirs) throw new RangeError(`--resume: checkpoint ${cp.id} (${cp.dir}) was written for another model: it has ${theirs}; this model has ${mine}`);
    if (cp.manifest.trainers !== this.job.trainers) throw new RangeError(`--resume: checkpoint ${cp.id} was written by a job of ${cp.manifest.trainers} rank(s); resume it with as many (this one has ${this.job.trainers}): each rank's data share depends on it`);
    if (cp.manifest.optimizer !== this.opts.optimizer) throw new RangeError(`--resume: checkpoint ${cp.id} holds ${cp.manifest.optimizer} state; this run uses --optimizer ${this.opts.optimizer}`);
    const r = cp.read(0, this.total);
    const buffers = cp.buffers();
    const state = new Map<string, Float32Array>();
    let at = 0;
    for (const [name, p] of this.named) {
      state.set(name, r.values.subarray(at, at + p.size));
      at += p.size;
    }
    for (const [name, b] of this.model.namedBuffers()) {
      const v = buffers.get(name);
      if (!v || v.length !== b.size) throw new RangeError(`--resume: checkpoint ${cp.id} has no buffer ${name} of ${b.size} elements`);
      state.set(name, v);
    }
    // checked completely (importState throws before setting anything) before the model changes
    if (r.state) {
      at = 0;
      for (const [, p] of this.named) {
        const arrays: Record<string, Float32Array> = {};
        for (const [k, v] of Object.entries(r.state.arrays)) arrays[k] = v.subarray(at, at + p.size);
        this.optimizer.importState(p, { arrays, scalars: r.state.scalars });
        at += p.size;
      }
    }
    this.model.loadStateDict(state);
    return r.version;
  }

  /** Resolves once every queued write is on disk (or failed, and said so). */
  async flush(): Promise<void> {
    await this.writes;
  }
}

/**
 * Where a trainer starts, from the step count a checkpoint says was taken: `version` steps in
 * all, shared by `trainers` (sync and one process: every trainer took `version` steps; async and
 * ssp: the servers' steps shared evenly, so a trainer may repeat or skip the few batches by which
 * it was ahead or behind the others). Clamped to the end of training.
 */
export function resumePosition(opts: Pick<TrainOptions, 'consistency' | 'epochs'>, version: number, trainers: number, batches: number, local = false): { step: number; epoch: number; batch: number } {
  const done = local || opts.consistency === 'sync' ? version : Math.floor(version / trainers);
  const step = Math.min(done, batches * opts.epochs);
  return { step, epoch: Math.floor(step / batches), batch: step % batches };
}

/**
 * PSRPC_FAULT_KILL_TRAINER_AT_STEP=NAME:N (tests and bench:faults only): trainer NAME kills itself
 * with SIGKILL before pushing step N, in the first run of the job only (PSRPC_RESTART_COUNT unset
 * or 0): a trainer dying at a known step, without racing a clock. -1: no fault.
 */
export function faultStep(name: string): number {
  const spec = process.env.PSRPC_FAULT_KILL_TRAINER_AT_STEP;
  if (!spec || (process.env.PSRPC_RESTART_COUNT ?? '0') !== '0') return -1;
  const m = /^(.+):(\d+)$/.exec(spec);
  return m && m[1] === name ? Number(m[2]) : -1;
}

/** One segment of the flat parameters in a sharded checkpoint: [start, end), and its master tensor on the rank that owns it. */
export interface Segment {
  start: number;
  end: number;
  /** The owner's tensor of the segment (its optimizer's parameter); null on the other ranks. */
  master: Tensor | null;
}

/**
 * Checkpoints of zero (ZeRO) and fsdp: every rank owns the optimizer state of its segments of each bucket (fsdp: unit),
 * so every rank writes one shard file per segment it owns (the parameters and the state of that
 * range); the set is the segments of all ranks, tiling the flat parameters, and the manifest is
 * written by whichever rank completes it. Triggered by step count only (--checkpoint-steps): the
 * ranks must checkpoint the same step, which a clock of each rank's own cannot promise.
 */
export class SegmentCheckpoints {
  readonly store: CheckpointStore;
  private writes: Promise<unknown> = Promise.resolve();
  private pending = 0;

  constructor(
    private readonly opts: Pick<TrainOptions, 'checkpointDir' | 'checkpointSteps' | 'checkpointKeep' | 'optimizer'>,
    private readonly layout: ParameterSpec[],
    /** Every rank's segments, sorted by start, empty ones left out. */
    private readonly segments: readonly Segment[],
    private readonly optimizer: Optimizer<unknown>,
    private readonly log: (line: string) => void,
    private readonly job: { trainers: number },
    /** The model whose buffers (batch-norm statistics, the same on every rank) `writesBuffers` (rank 0) writes with its first segment. */
    private readonly model?: Module,
    private readonly writesBuffers = false,
  ) {
    this.store = new CheckpointStore(opts.checkpointDir!, { keep: opts.checkpointKeep, log });
    process.once('SIGTERM', this.onTerm);
  }

  private readonly onTerm = (sig: NodeJS.Signals): void => {
    void this.writes.finally(() => process.kill(process.pid, sig));
  };

  dispose(): void {
    process.off('SIGTERM', this.onTerm);
  }

  private get total(): number {
    return this.layout.reduce((n, p) => n + p.size, 0);
  }

  /** After step `step`: every --checkpoint-steps steps, this rank's segments are copied and queued (see ModelCheckpoints.afterStep). */
  afterStep(step: number): Promise<void> | undefined {
    if (!(this.opts.checkpointSteps > 0 && step % this.opts.checkpointSteps === 0)) return undefined;
    const busy = this.pending > 0;
    const before = this.writes;
    void this.write(step).catch(() => { /* said by write */ });
    return busy ? before.then(() => {}) : undefined;
  }

  /** Writes this rank's segments of checkpoint `step` and resolves when they are on disk. */
  write(step: number): Promise<void> {
    const snaps: ShardSnapshot[] = [];
    for (const [i, s] of this.segments.entries()) {
      if (!s.master) continue;
      snaps.push({
        id: step, shard: i, shards: this.segments.length, start: s.start, length: s.end - s.start, total: this.total, version: step,
        layout: this.layout, consistency: 'sync', trainers: this.job.trainers, optimizer: this.opts.optimizer,
        values: (s.master.storage as Float32Array).slice(), state: this.optimizer.exportState(s.master),
      });
    }
    if (this.writesBuffers && this.model && snaps.length > 0) {
      const buffers: Record<string, Float32Array> = {};
      for (const [name, b] of this.model.namedBuffers()) buffers[name] = (b.storage as Float32Array).slice();
      snaps[0]!.buffers = buffers;
    }
    this.pending++;
    const done = this.writes.then(async () => { for (const snap of snaps) await this.store.writeShard(snap); }).finally(() => { this.pending--; });
    this.writes = done.catch((e: unknown) => this.log(`checkpoint ${step} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`));
    return done;
  }

  /**
   * Loads checkpoint `cp`: all the parameters into `flat` (every rank holds them all), and this
   * rank's segments' masters and optimizer state. Returns its step.
   */
  restore(cp: LoadedCheckpoint, flat?: Float32Array): number {
    const mine = this.layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');
    const theirs = cp.manifest.layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');
    if (mine !== theirs) throw new RangeError(`--resume: checkpoint ${cp.id} (${cp.dir}) was written for another model: it has ${theirs}; this model has ${mine}`);
    if (cp.manifest.trainers !== this.job.trainers) throw new RangeError(`--resume: checkpoint ${cp.id} was written by a job of ${cp.manifest.trainers} rank(s); resume it with as many (this one has ${this.job.trainers}): each rank's data share depends on it`);
    if (cp.manifest.optimizer !== this.opts.optimizer) throw new RangeError(`--resume: checkpoint ${cp.id} holds ${cp.manifest.optimizer} state; this run uses --optimizer ${this.opts.optimizer}`);
    const all = cp.read(0, this.total);
    const saved = cp.buffers();
    for (const [name, b] of this.model?.namedBuffers() ?? []) {
      const v = saved.get(name);
      if (!v || v.length !== b.size) throw new RangeError(`--resume: checkpoint ${cp.id} has no buffer ${name} of ${b.size} elements`);
    }
    for (const s of this.segments) {
      if (!s.master) continue;
      const r = cp.read(s.start, s.end - s.start);
      if (r.state) this.optimizer.importState(s.master, r.state);
      (s.master.storage as Float32Array).set(r.values);
    }
    for (const [name, b] of this.model?.namedBuffers() ?? []) (b.storage as Float32Array).set(saved.get(name)!);
    flat?.set(all.values);
    return all.version;
  }

  async flush(): Promise<void> {
    await this.writes;
  }
}
