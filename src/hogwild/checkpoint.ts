// Checkpoints of a Hogwild run, in the servers' format (src/server/checkpoint.ts: safetensors +
// manifest, atomic, checksummed, the last K kept), one shard holding the whole model:
//
//   parameters                        the shared weights
//   buffer.<name>                     the shared buffers (running statistics)
//   optimizer.worker<r>.<name>        worker r's own optimizer state (momentumBuffer; m and v)
//   scalars worker<r>.<name>          its optimizer's step counts (steps; step)
//   scalars worker<r>.batches         its position: the batches it had trained (resumes included)
//
// Rank 0 decides when: after every --checkpoint-steps N of its own steps (its position is a
// multiple of N) and every --checkpoint-every S seconds of its clock, except at its last step,
// which the checkpoint at the end covers.
//
// Hogwild is lock-free and asynchronous, so a checkpoint is a copy of the shared buffer at a
// moment, not a cut at one step of every worker: rank 0 takes it between two of its own steps
// (snapshot.ts), while the other workers go on, so their state and position are what they are at
// that moment, and a step of theirs in flight is in the copied weights in part or not at all, and
// not trained again after a resume. With one worker there is no such moment: the checkpoint is
// exact, and a resumed run ends as the uninterrupted one, bit for bit.
//
// The checkpoint's number (its version) is the steps the shared model took: the sum of the
// workers' positions. With one worker that is its step count, as the local strategy's. On --resume
// worker r goes on at its own position p_r, at batch p_r % B of epoch floor(p_r / B) (B batches
// per worker and epoch; the sampler's order is a function of the seed and the epoch). The workers
// meet at every epoch's end, so their positions are at most one epoch boundary apart: one that had
// finished the epoch waits at its end for the others, as it did when the checkpoint was copied.
//
// The workers never wait for the disk: rank 0 copies into the shared area, this thread copies
// the area out at once and writes its copy in the background, one write after another (a
// snapshot taken while a write is still going waits in memory, said once in the log). Always one
// at the end, of the finished run. On SIGTERM the queued writes reach the disk before the process goes.
//
// PSRPC_FAULT_KILL_AFTER_CHECKPOINT=N (tests and bench:faults only): the process kills itself with
// SIGKILL as soon as checkpoint N is on disk, in the first run only, as a parameter server does.
import { CheckpointStore, flushOnSigterm, type CheckpointSink, type LoadedCheckpoint, type ParameterSpec, type ShardSnapshot } from '../server/index.js';
import { faultAfterCheckpoint } from '../server/checkpoint.js';
import { layoutOf, Tensor, type Module } from '../tensor/index.js';
import type { TrainOptions } from '../trainer/options.js';
import { buildOptimizer } from '../trainer/setup.js';
import { MAX_SCALARS, waitAsync } from './control.js';
import { copySnapshot, createSnapshotBlock, OPEN, readFigures, TAKEN, type OptimizerStateNames, type SnapshotBlock, type SnapshotData } from './snapshot.js';

const CONSISTENCY = 'hogwild';

/**
 * The names of the state the options' optimizer keeps per parameter, read from one step of the
 * same optimizer on a one-element parameter (SGD without momentum keeps only its step count).
 */
export function optimizerStateNames(opts: TrainOptions): OptimizerStateNames {
  const p = new Tensor(new Float32Array(1), [1], { requiresGrad: true });
  const o = buildOptimizer([p], opts);
  o.update(p, p.storage as Float32Array, new Float32Array(1));
  const s = o.exportState(p) ?? { arrays: {}, scalars: {} };
  const names = { arrays: Object.keys(s.arrays), scalars: Object.keys(s.scalars) };
  if (names.scalars.length > MAX_SCALARS) throw new RangeError(`--checkpoint-dir: the ${opts.optimizer} optimizer keeps ${names.scalars.length} step counts; a hogwild worker's stats hold ${MAX_SCALARS}`);
  return names;
}

const describe = (layout: readonly ParameterSpec[]) => layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');

export interface HogwildCheckpointsSpec {
  opts: TrainOptions;
  /** The main thread's model (its layout and buffer names); its parameters and buffers are views of `params` and `buffers`. */
  model: Module;
  params: Float32Array;
  buffers: Float32Array;
  stats: Float64Array;
  workers: number;
  /** Batches each worker trains per epoch. */
  batchesPerEpoch: number;
  log: (line: string) => void;
}

export class HogwildCheckpoints {
  readonly store: CheckpointStore;
  /** The store, or the fault hook around it. */
  private readonly sink: CheckpointSink;
  /** Handed to every worker (WorkerTask.checkpoint). */
  readonly block: SnapshotBlock;
  private readonly layout: ParameterSpec[];
  private readonly bufferSpecs: Array<{ name: string; size: number }>;
  private writes: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private saidBehind = false;
  private taken = 0;
  private watching = false;
  private readonly unflush: () => void;

  constructor(private readonly spec: HogwildCheckpointsSpec) {
    const { opts, model, workers } = spec;
    this.store = new CheckpointStore(opts.checkpointDir!, { keep: opts.checkpointKeep, log: spec.log });
    this.sink = faultAfterCheckpoint(this.store, 'hogwild', spec.log);
    this.layout = layoutOf(model);
    this.bufferSpecs = model.namedBuffers().map(([name, b]) => ({ name, size: b.size }));
    this.block = createSnapshotBlock(optimizerStateNames(opts), workers, spec.params.length, spec.buffers.length);
    this.unflush = flushOnSigterm(() => this.writes);
  }

  /** Stops flushing on SIGTERM (the run is over). */
  dispose(): void {
    this.unflush();
  }

  /**
   * --resume: loads the latest complete checkpoint into the shared weights, buffers and optimizer
   * state and sets where each worker starts (`block.start`); none there: from the beginning, said
   * in one line. A checkpoint this run cannot go on from is refused before anything is set.
   */
  async resume(): Promise<void> {
    const cp = await this.store.latest();
    if (!cp) {
      this.spec.log(`hogwild: --resume: no complete checkpoint in ${this.spec.opts.checkpointDir}; starting from the beginning`);
      return;
    }
    this.restore(cp);
    const { epoch, positions } = this.block.start;
    this.spec.log(`hogwild: resuming from checkpoint ${cp.id} (${cp.dir}) in epoch ${Math.min(epoch + 1, this.spec.opts.epochs)}/${this.spec.opts.epochs}, the workers at batches ${positions.join(', ')} (${this.spec.batchesPerEpoch} an epoch)`);
  }

  private restore(cp: LoadedCheckpoint): void {
    const { opts, workers, batchesPerEpoch: perEpoch } = this.spec;
    const { names } = this.block;
    const refuse = (why: string) => new RangeError(`--resume: checkpoint ${cp.id} (${cp.dir}) ${why}`);
    const m = cp.manifest;
    if (m.consistency !== CONSISTENCY) throw refuse(`was not written by hogwild workers (it says consistency "${m.consistency}"); hogwild resumes only its own checkpoints, which hold each worker's optimizer state and position`);
    const mine = describe(this.layout);
    const theirs = describe(m.layout);
    if (mine !== theirs) throw refuse(`was written for another model: it has ${theirs}; this model has ${mine}`);
    if (m.trainers !== workers) throw refuse(`was written by ${m.trainers} hogwild worker(s); resume it with --workers ${m.trainers} (this run has ${workers}): each worker's data partition, position and optimizer state are its own`);
    if (m.optimizer !== opts.optimizer) throw refuse(`holds ${m.optimizer} state; this run uses --optimizer ${opts.optimizer}`);
    const r = cp.read(0, this.spec.params.length);
    const arrays = r.state?.arrays ?? {};
    const scalars = r.state?.scalars ?? {};
    const want = Array.from({ length: workers }, (_, w) => names.arrays.map((k) => `worker${w}.${k}`)).flat();
    const missing = want.filter((k) => !(k in arrays));
    const extra = Object.keys(arrays).filter((k) => !want.includes(k));
    const keeps = names.arrays.length > 0 ? names.arrays.join(', ') : 'no arrays';
    if (missing.length > 0) throw refuse(`has no optimizer state ${missing.join(', ')}: this run's ${opts.optimizer} keeps ${keeps} per worker (another --momentum?)`);
    if (extra.length > 0) throw refuse(`holds optimizer state ${extra.join(', ')}: this run's ${opts.optimizer} keeps ${keeps} per worker (another --momentum?)`);
    const figure = (w: number, k: string): number => {
      const v = scalars[`worker${w}.${k}`];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw refuse(`has ${v === undefined ? 'no' : `a bad (${String(v)})`} scalar worker${w}.${k}, expected an integer >= 0`);
      return v;
    };
    const end = perEpoch * opts.epochs;
    const positions = Array.from({ length: workers }, (_, w) => Math.min(figure(w, 'batches'), end));
    const counts = Array.from({ length: workers }, (_, w) => Object.fromEntries(names.scalars.map((k) => [k, figure(w, k)])));
    const epoch = Math.min(...positions.map((p) => Math.floor(p / perEpoch)));
    // Every worker waits for the others at each epoch's end: a position past the end of the first one's epoch
    // comes from a run with other epochs (another --batch-size or --train-samples).
    const ahead = positions.findIndex((p) => p > (epoch + 1) * perEpoch);
    if (ahead >= 0) throw refuse(`has worker ${ahead} at batch ${positions[ahead]} and another in epoch ${epoch + 1} of ${perEpoch} batches: more than an epoch apart, so it was written with other epochs (another --batch-size or --train-samples?)`);
    const saved = cp.buffers();
    for (const b of this.bufferSpecs) {
      if (saved.get(b.name)?.length !== b.size) throw refuse(`has no buffer ${b.name} of ${b.size} elements`);
    }

    // everything checked: set the shared memory and the start
    this.spec.params.set(r.values);
    let at = 0;
    for (const b of this.bufferSpecs) {
      this.spec.buffers.set(saved.get(b.name)!, at);
      at += b.size;
    }
    for (let w = 0; w < workers; w++) for (const k of names.arrays) this.block.live[w]![k]!.set(arrays[`worker${w}.${k}`]!);
    this.block.start = { epoch, positions, scalars: counts };
  }

  /**
   * Copies out every snapshot rank 0 takes, as soon as it is taken (Atomics.waitAsync on OPEN:
   * never blocks this thread), and queues its write; resolves after stop().
   */
  async watch(): Promise<void> {
    const { signal } = this.block;
    this.watching = true;
    while (this.watching) {
      const open = Atomics.load(signal, OPEN);
      if (open > this.taken) this.take(open);
      const w = waitAsync(signal, OPEN, open, 1000);
      if (w.async) await w.value;
    }
  }

  /** Takes the snapshot still in the area, if any, and ends watch(). */
  stop(): void {
    const open = Atomics.load(this.block.signal, OPEN);
    if (open > this.taken) this.take(open);
    this.watching = false;
    Atomics.notify(this.block.signal, OPEN);
  }

  private take(open: number): void {
    const copy = copySnapshot(this.block.area);
    this.taken = open;
    Atomics.store(this.block.signal, TAKEN, open);
    Atomics.notify(this.block.signal, TAKEN);
    void this.queue(copy).catch(() => { /* said by queue */ });
  }

  /** The checkpoint of the finished run (every worker done), on disk when it resolves; after the queued ones. */
  async writeFinal(): Promise<void> {
    const { params, buffers, stats, workers } = this.spec;
    const figures = new Float64Array(this.block.area.figures.length);
    readFigures(stats, workers, this.block.names, figures);
    await this.queue(copySnapshot({ params, buffers, states: this.block.live, figures }));
  }

  /** Resolves once every queued write is on disk (or failed, and said so). */
  async flush(): Promise<void> {
    await this.writes;
  }

  private queue(d: SnapshotData): Promise<void> {
    const snap = this.shardOf(d);
    if (this.pending > 0 && !this.saidBehind) {
      this.saidBehind = true;
      this.spec.log(`hogwild: checkpoint ${snap.id} waits in memory for the write of the previous one (the disk is slower than the checkpoints asked for; said once)`);
    }
    this.pending++;
    const done = this.writes.then(async () => { await this.sink.writeShard(snap); }).finally(() => { this.pending--; });
    this.writes = done.catch((e: unknown) => this.spec.log(`hogwild: checkpoint ${snap.id} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`));
    return done;
  }

  private shardOf(d: SnapshotData): ShardSnapshot {
    const { opts, workers } = this.spec;
    const { names } = this.block;
    const n = 1 + names.scalars.length;
    const arrays: Record<string, Float32Array> = {};
    const scalars: Record<string, number> = {};
    let id = 0;
    for (let w = 0; w < workers; w++) {
      for (const k of names.arrays) arrays[`worker${w}.${k}`] = d.states[w]![k]!;
      for (const [i, k] of names.scalars.entries()) scalars[`worker${w}.${k}`] = d.figures[w * n + 1 + i]!;
      const position = d.figures[w * n]!;
      scalars[`worker${w}.batches`] = position;
      id += position;
    }
    const buffers: Record<string, Float32Array> = {};
    let at = 0;
    for (const b of this.bufferSpecs) {
      buffers[b.name] = d.buffers.subarray(at, at + b.size);
      at += b.size;
    }
    const total = d.params.length;
    return {
      id, shard: 0, shards: 1, start: 0, length: total, total, version: id, layout: this.layout,
      consistency: CONSISTENCY, trainers: workers, optimizer: opts.optimizer,
      values: d.params, state: { arrays, scalars }, buffers,
    };
  }
}
