// Checkpoints the trainers write themselves, in the servers' format (src/server/checkpoint.ts:
// safetensors + manifest, atomic, checksummed, the last K kept), so one reader serves all:
//   ModelCheckpoints    a whole model in one shard: local, and ddp's rank 0 (every replica is the same);
//   SegmentCheckpoints  the segments of the flat parameters a rank owns (zero's optimizer shards,
//                       fsdp's unit shards): every rank writes its own, the set tiles the model.
//
// The checkpoint's number is the step count; a resumed run starts at that step's epoch and batch
// (the loader's order is a function of the seed and the epoch), so it ends where the run never
// interrupted ends, bit for bit.
//
// Writes are queued one after another off the hot path: a step copies what it writes and goes on,
// and waits only when the previous write is still going (rather than piling copies up). On SIGTERM
// (psrun stopping the survivors of a failure) the queued writes reach the disk before the process
// goes, so a restart resumes from the newest checkpoint taken.
import { existsSync } from 'node:fs';
import { CheckpointSchedule, CheckpointStore, flushOnSigterm, type LoadedCheckpoint, type ParameterSpec, type ShardSnapshot } from '../server/index.js';
import { Dropout, type Module, type Optimizer, type OptimizerState, type Tensor } from '../tensor/index.js';
import type { TrainOptions } from './options.js';

type CheckpointOptions = Pick<TrainOptions, 'checkpointDir' | 'checkpointEvery' | 'checkpointSteps' | 'checkpointKeep' | 'optimizer'>;

const describe = (layout: readonly ParameterSpec[]) => layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');

abstract class TrainerCheckpoints {
  readonly store: CheckpointStore;
  /** The last queued write (they run one after another). */
  private writes: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private readonly schedule: CheckpointSchedule;
  private readonly unflush: () => void;

  constructor(
    protected readonly opts: CheckpointOptions,
    protected readonly layout: ParameterSpec[],
    protected readonly optimizer: Optimizer<unknown>,
    protected readonly log: (line: string) => void,
    /** Who trained: 'local' (one process) or 'sync', and the number of ranks (their data shares depend on it). */
    protected readonly job: { consistency: string; trainers: number },
    now: () => number = () => performance.now(),
  ) {
    this.store = new CheckpointStore(opts.checkpointDir!, { keep: opts.checkpointKeep, log });
    this.schedule = new CheckpointSchedule(opts.checkpointSteps, opts.checkpointEvery * 1000, now);
    this.unflush = flushOnSigterm(() => this.writes);
  }

  /** Stops flushing on SIGTERM (training is over). */
  dispose(): void {
    this.unflush();
  }

  protected get total(): number {
    return this.layout.reduce((n, p) => n + p.size, 0);
  }

  /** What this process writes of checkpoint `step`, copied now. */
  protected abstract snapshots(step: number): ShardSnapshot[];

  /**
   * After step `step` (the count of steps taken): when a checkpoint is due (--checkpoint-steps,
   * --checkpoint-every), copies and queues it; returns a promise only when the previous write is
   * still going, undefined otherwise.
   */
  afterStep(step: number): Promise<void> | undefined {
    if (!this.schedule.isDue(step)) return undefined;
    const busy = this.pending > 0;
    const before = this.writes;
    void this.write(step).catch(() => { /* said by write */ });
    return busy ? before.then(() => {}) : undefined;
  }

  /** Writes checkpoint `step` (after the queued ones) and resolves when it is on disk. */
  write(step: number): Promise<void> {
    const snaps = this.snapshots(step);
    this.pending++;
    const done = this.writes.then(async () => { for (const s of snaps) await this.store.writeShard(s); }).finally(() => { this.pending--; });
    this.writes = done.catch((e: unknown) => this.log(`checkpoint ${step} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`));
    return done;
  }

  /** Resolves once every queued write is on disk (or failed, and said so). */
  async flush(): Promise<void> {
    await this.writes;
  }

  /**
   * --resume: loads the latest complete checkpoint (restore) and returns its step, or 0 when
   * there is none; `name` says which, on the process that `speaks`.
   */
  async resume(name: string, speaks: boolean): Promise<number> {
    const cp = await this.store.latest();
    const step = cp ? this.restore(cp) : 0;
    if (speaks) this.log(cp ? `${name}: resuming from checkpoint ${cp.id} (${cp.dir})` : `${name}: --resume: no complete checkpoint in ${this.opts.checkpointDir}; starting from the beginning`);
    return step;
  }

  /** Loads checkpoint `cp`; returns its step. */
  abstract restore(cp: LoadedCheckpoint): number;

  /** Refuses a checkpoint of another model, job size or optimizer, naming the difference. */
  protected checkCompatible(cp: LoadedCheckpoint): void {
    const mine = describe(this.layout);
    const theirs = describe(cp.manifest.layout);
    if (mine !== theirs) throw new RangeError(`--resume: checkpoint ${cp.id} (${cp.dir}) was written for another model: it has ${theirs}; this model has ${mine}`);
    if (cp.manifest.trainers !== this.job.trainers) throw new RangeError(`--resume: checkpoint ${cp.id} was written by a job of ${cp.manifest.trainers} rank(s); resume it with as many (this one has ${this.job.trainers}): each rank's data share depends on it`);
    if (cp.manifest.optimizer !== this.opts.optimizer) throw new RangeError(`--resume: checkpoint ${cp.id} holds ${cp.manifest.optimizer} state; this run uses --optimizer ${this.opts.optimizer}`);
  }

  /**
   * Copies of `model`'s buffers by name (batch-norm statistics), and its RNG state: the position of
   * each Dropout layer's mask stream, as `rng.<path>.offset` (two F32 values, offset / 2^24 and
   * offset % 2^24, each exact), so a resumed run draws the masks the uninterrupted one would have.
   */
  protected static buffersOf(model: Module): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const [name, b] of model.namedBuffers()) out[name] = (b.storage as Float32Array).slice();
    for (const [path, d] of dropoutsOf(model)) out[`rng.${path}.offset`] = new Float32Array([Math.floor(d.offset / 2 ** 24), d.offset % 2 ** 24]);
    return out;
  }

  /** Sets `model`'s Dropout positions from `cp` (a layer the checkpoint has no position for starts its stream at 0, as before). */
  protected static restoreRng(cp: LoadedCheckpoint, model: Module): void {
    const saved = cp.buffers();
    for (const [path, d] of dropoutsOf(model)) {
      const v = saved.get(`rng.${path}.offset`);
      if (v && v.length === 2) d.offset = v[0]! * 2 ** 24 + v[1]!;
    }
  }

  /** `cp`'s buffers for `model`, checked (every one present, of its length) before anything is set. */
  protected static savedBuffers(cp: LoadedCheckpoint, model: Module): Map<string, Float32Array> {
    const saved = cp.buffers();
    const out = new Map<string, Float32Array>();
    for (const [name, b] of model.namedBuffers()) {
      const v = saved.get(name);
      if (!v || v.length !== b.size) throw new RangeError(`--resume: checkpoint ${cp.id} has no buffer ${name} of ${b.size} elements`);
      out.set(name, v);
    }
    return out;
  }
}

/** A whole model in one process: its parameters, buffers and optimizer state as a one-shard checkpoint. */
export class ModelCheckpoints extends TrainerCheckpoints {
  private readonly named: [string, Tensor][];

  constructor(opts: CheckpointOptions, private readonly model: Module, optimizer: Optimizer<unknown>, log: (line: string) => void,
    job: { consistency: string; trainers: number } = { consistency: 'local', trainers: 1 }, now?: () => number) {
    const named = model.namedParameters();
    for (const [name, p] of named) {
      if (p.device !== 'cpu') throw new RangeError(`--checkpoint-dir: parameter ${name} is on ${p.device}; checkpoints of a model off the CPU are not written yet (use --device cpu)`);
    }
    super(opts, named.map(([name, p]) => ({ name, size: p.size, shape: [...p.shape] })), optimizer, log, job, now);
    this.named = named;
  }

  protected snapshots(step: number): ShardSnapshot[] {
    const total = this.total;
    const values = new Float32Array(total);
    const states: Array<OptimizerState | null> = this.named.map(([, p]) => this.optimizer.exportState(p));
    const first = states.find((s) => s !== null) ?? null;
    const arrays: Record<string, Float32Array> = {};
    if (first) for (const k of Object.keys(first.arrays)) arrays[k] = new Float32Array(total);
    let at = 0;
    for (const [i, [, p]] of this.named.entries()) {
      values.set(p.storage as Float32Array, at);
      const s = states[i];
      if (s) for (const [k, v] of Object.entries(s.arrays)) arrays[k]?.set(v, at);
      at += p.size;
    }
    return [{
      id: step, shard: 0, shards: 1, start: 0, length: total, total, version: step, layout: this.layout,
      consistency: this.job.consistency, trainers: this.job.trainers, optimizer: this.opts.optimizer,
      values, state: first ? { arrays, scalars: first.scalars } : null, buffers: TrainerCheckpoints.buffersOf(this.model),
    }];
  }

  restore(cp: LoadedCheckpoint): number {
    this.checkCompatible(cp);
    const r = cp.read(0, this.total);
    const state = new Map<string, Float32Array>();
    let at = 0;
    for (const [name, p] of this.named) {
      state.set(name, r.values.subarray(at, at + p.size));
      at += p.size;
    }
    for (const [name, v] of TrainerCheckpoints.savedBuffers(cp, this.model)) state.set(name, v);
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
    TrainerCheckpoints.restoreRng(cp, this.model);
    return r.version;
  }
}

/** One segment of the flat parameters in a sharded checkpoint: [start, end), and its master tensor on the rank that owns it. */
export interface Segment {
  start: number;
  end: number;
  /** The owner's tensor of the segment (its optimizer's parameter); null on the other ranks. */
  master: Tensor | null;
}

/**
 * zero and fsdp: every rank owns the optimizer state (fsdp: and the values) of its segments of each
 * bucket (fsdp: unit), so every rank writes one shard file per segment it owns; the set is the
 * segments of all ranks, tiling the flat parameters, and the rank that completes it writes the
 * manifest. Triggered by step count only (--checkpoint-steps, checked by the strategies): the
 * ranks must checkpoint the same step, which a clock of each rank's own cannot promise.
 */
export class SegmentCheckpoints extends TrainerCheckpoints {
  constructor(opts: CheckpointOptions, layout: ParameterSpec[],
    /** Every rank's segments, sorted by start, empty ones left out. */
    private readonly segments: readonly Segment[],
    optimizer: Optimizer<unknown>, log: (line: string) => void, trainers: number,
    /** The model whose buffers (the same on every rank) rank 0 (`writesBuffers`) writes with its first segment, and every rank reads back. */
    private readonly model: Module,
    private readonly writesBuffers: boolean,
    /** zero: every rank holds all the parameters in this flat buffer, set whole on restore. */
    private readonly flat?: Float32Array,
  ) {
    super({ ...opts, checkpointEvery: 0 }, layout, optimizer, log, { consistency: 'sync', trainers });
  }

  protected snapshots(step: number): ShardSnapshot[] {
    const snaps: ShardSnapshot[] = [];
    for (const [i, s] of this.segments.entries()) {
      if (!s.master) continue;
      snaps.push({
        id: step, shard: i, shards: this.segments.length, start: s.start, length: s.end - s.start, total: this.total, version: step,
        layout: this.layout, consistency: 'sync', trainers: this.job.trainers, optimizer: this.opts.optimizer,
        values: (s.master.storage as Float32Array).slice(), state: this.optimizer.exportState(s.master),
      });
    }
    if (this.writesBuffers && snaps.length > 0) snaps[0]!.buffers = TrainerCheckpoints.buffersOf(this.model);
    return snaps;
  }

  restore(cp: LoadedCheckpoint): number {
    this.checkCompatible(cp);
    const saved = TrainerCheckpoints.savedBuffers(cp, this.model);
    const all = cp.read(0, this.total);
    for (const s of this.segments) {
      if (!s.master) continue;
      const r = cp.read(s.start, s.end - s.start);
      if (r.state) this.optimizer.importState(s.master, r.state);
      (s.master.storage as Float32Array).set(r.values);
    }
    for (const [name, b] of this.model.namedBuffers()) (b.storage as Float32Array).set(saved.get(name)!);
    TrainerCheckpoints.restoreRng(cp, this.model);
    this.flat?.set(all.values);
    return all.version;
  }
}

/** `model`'s Dropout layers by path ("2", "features.3"), in the order of its children. */
function dropoutsOf(model: Module, prefix = '', out: Array<[string, Dropout]> = []): Array<[string, Dropout]> {
  if (prefix === '' && model instanceof Dropout) out.push(['', model]);
  for (const [name, child] of model.namedChildren()) {
    if (child instanceof Dropout) out.push([`${prefix}${name}`, child]);
    dropoutsOf(child, `${prefix}${name}.`, out);
  }
  return out;
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
 * PSRPC_FAULT_KILL_TRAINER_AT_STEP=NAME:N (tests and bench:faults only): the returned function
 * kills trainer NAME with SIGKILL when it is called with step N (before that step's gradient leaves
 * it), in the first run of the job only (PSRPC_RESTART_COUNT unset or 0): a trainer dying at a
 * known step, without racing a clock. Without the variable it does nothing.
 */
export function faultAtStep(name: string): (step: number) => void {
  const spec = process.env.PSRPC_FAULT_KILL_TRAINER_AT_STEP;
  if (!spec || (process.env.PSRPC_RESTART_COUNT ?? '0') !== '0') return () => {};
  const m = /^(.+):(\d+)$/.exec(spec);
  const at = m && m[1] === name ? Number(m[2]) : -1;
  return (step) => {
    if (step !== at) return;
    process.stderr.write(`${name}: PSRPC_FAULT_KILL_TRAINER_AT_STEP: killing this process before step ${step}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}

/**
 * PSRPC_FAULT_HOLD_TRAINER_AT_STEP=NAME:N:FILE (tests only): trainer NAME stops before step N's
 * gradient leaves it, says so on stderr ("holding at step N"), stays alive (its heartbeats go on)
 * until FILE exists, then kills itself with SIGKILL. A test can act while the trainer holds its
 * batch (start another trainer, say) and decide when it dies, without racing a clock. First run of
 * a job only. Without the variable the returned function resolves at once.
 */
export function holdAtStep(name: string): (step: number) => Promise<void> | undefined {
  const spec = process.env.PSRPC_FAULT_HOLD_TRAINER_AT_STEP;
  if (!spec || (process.env.PSRPC_RESTART_COUNT ?? '0') !== '0') return () => undefined;
  const m = /^([^:]+):(\d+):(.+)$/.exec(spec);
  const at = m && m[1] === name ? Number(m[2]) : -1;
  return (step) => {
    if (step !== at) return undefined;
    process.stderr.write(`${name}: PSRPC_FAULT_HOLD_TRAINER_AT_STEP: holding at step ${step} until ${m![3]} exists\n`);
    return new Promise<void>(() => {
      const look = () => {
        if (existsSync(m![3]!)) {
          process.stderr.write(`${name}: PSRPC_FAULT_HOLD_TRAINER_AT_STEP: killing this process\n`);
          process.kill(process.pid, 'SIGKILL');
        }
        setTimeout(look, 20);
      };
      look();
    });
  };
}
