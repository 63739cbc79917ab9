// Checkpoints of the `remote-forward` strategy: the model a RemoteModelHost serves, its buffers and
// the optimizer state its trainers' DistributedOptimizers keep on the host, written by the host in
// the servers' format (src/server/checkpoint.ts: safetensors + manifest, atomic, checksummed, the
// last K kept) as one shard, so the servers' reader reads it:
//
//   parameters                     the hosted model's parameters, flat, in layout order (F32)
//   buffer.<name>                  its buffers (batch-norm running statistics, moved by the forwards)
//   optimizer.trainer<r>.<name>    the state of trainer rank r's optimizer (SGD's momentumBuffer,
//                                  Adam's m and v): each trainer's DistributedOptimizer keeps its own
//                                  on the host (OptimizerHost: one optimizer per owner and
//                                  DistributedOptimizer), so the file holds one set per trainer
//   psrpc.scalars                  "trainer<r>.<name>": that optimizer's numbers (SGD's steps, Adam's
//                                  step), taken from its first parameter as ModelCheckpoints does;
//                                  "applied.trainer<r>": the steps the host applied with rank r's
//                                  gradients
//   psrpc.version, psrpc.id        the checkpoint's step: the host's count of optimizer steps, every
//                                  trainer's together (the sum of the applied.trainer<r>)
//
// Steps of several trainers reach the host Hogwild-style, in no fixed order; a checkpoint is the
// host's state right after one of them (copied inside that step's handler, so no forward or other
// step comes between). Each trainer resumes at its own applied count: every batch of its own whose
// step the checkpoint holds is not trained again, the one whose forward had run but whose step had
// not is. With one trainer that is exactly where the run stood, and a resumed run ends as the
// uninterrupted one, bit for bit; with several, the interleaving after the checkpoint is new.
//
// The copy is the only cost a step pays: writes run one after another in the background, and the
// checkpoints due while one is being written wait in memory, every one of them (so --checkpoint-steps
// writes the same set of checkpoints however slow the disk) up to `maxQueuedBytes` of copies; beyond
// that the oldest waiting ones are dropped (said once in the log; the newest is always kept), so a
// slow disk holds no step back and copies do not pile up without bound. At the end, the host writes
// one last checkpoint and waits for it.
import { RpcError, Status } from '../rpc/index.js';
import { layoutDifference, type Optimizer, type OptimizerState, type Tensor } from '../tensor/index.js';
import { CheckpointSchedule, faultAfterCheckpoint, openCheckpoints, type LoadedCheckpoint, type ShardSnapshot, type WriteResult } from './checkpoint.js';
import type { CheckpointSink } from './protocol.js';
import type { ParameterSpec } from './shard-plan.js';

/** How a RemoteModelHost checkpoints (RemoteModelHostOptions.checkpoints). */
export interface RemoteModelCheckpointOptions {
  /** Where the shard goes (a CheckpointStore; tests and fault hooks pass a double). */
  sink: CheckpointSink;
  /** The checkpoint to start from (--resume): the model, its buffers, step counts and optimizer state come from it. */
  restore?: LoadedCheckpoint;
  /** A checkpoint every `steps` of the host's steps (--checkpoint-steps; 0, the default: none by count). */
  steps?: number;
  /** A checkpoint once `everyMs` has passed since the last (--checkpoint-every, in ms; 0, the default: none by time). */
  everyMs?: number;
  /** The optimizer kind the trainers step with (--optimizer: sgd, adam): written in the manifest, checked on restore and at each trainer's rf.optimizer. */
  optimizer: string;
  /** Where checkpoint lines are said (default stderr). */
  log?: (line: string) => void;
  /**
   * Bytes of copies kept waiting for the disk (default 256 MiB): a checkpoint due beyond it drops
   * the oldest waiting ones; the newest is always kept.
   */
  maxQueuedBytes?: number;
}

const DEFAULT_QUEUED_BYTES = 256 * 1024 * 1024;

/** The checkpoint flags (a part of TrainOptions: the server layer does not import the trainer's). */
export interface RemoteModelCheckpointFlags {
  checkpointDir?: string;
  checkpointKeep: number;
  checkpointSteps: number;
  checkpointEvery: number;
  resume: boolean;
  optimizer: string;
}

/**
 * The `checkpoints` option of a RemoteModelHost from the command's flags: none without
 * --checkpoint-dir; with --resume, the latest complete checkpoint in it (none: from the beginning,
 * said in one line).
 *
 * PSRPC_FAULT_KILL_AFTER_CHECKPOINT=N (tests and bench:faults only): the process kills itself with
 * SIGKILL as soon as checkpoint N is on disk, in the first run of the job only (PSRPC_RESTART_COUNT
 * unset or 0), as a parameter server does.
 */
export async function openRemoteModelCheckpoints(flags: RemoteModelCheckpointFlags, name: string, log: (line: string) => void): Promise<{ checkpoints?: RemoteModelCheckpointOptions }> {
  if (flags.checkpointDir === undefined) return {};
  const { store, restore } = await openCheckpoints(flags.checkpointDir, { keep: flags.checkpointKeep, resume: flags.resume, name, log });
  return {
    checkpoints: {
      sink: faultAfterCheckpoint(store, name, log), ...(restore ? { restore } : {}),
      steps: flags.checkpointSteps, everyMs: flags.checkpointEvery * 1000, optimizer: flags.optimizer, log,
    },
  };
}

/** One trainer rank as the host counts it: the optimizer it bound (rf.optimizer) and the steps applied with its gradients. */
export interface TrainerSteps {
  trainer?: string;
  optimizer?: Optimizer<unknown>;
  applied: number;
}

/** The host's state a checkpoint copies: its steps, forwards and trainers by rank. */
export interface HostCounts {
  steps: number;
  forwards: number;
  trainers: readonly TrainerSteps[];
}

/** What a restored checkpoint gives the host: its step counts (the model and buffers are set in place already). */
export interface RestoredCounts {
  id: number;
  steps: number;
  /** Steps applied with each trainer rank's gradients: where it resumes. */
  applied: number[];
}

/** Every failure of the host's checkpoints and of rf.optimizer, built in one place. */
export const rfErrors = {
  another: (name: string, cp: LoadedCheckpoint, what: string) =>
    new RpcError(Status.FAILED_PRECONDITION, name, `--resume: checkpoint ${cp.id} (${cp.dir}) ${what}`),
  badBind: (name: string, what: string, value: unknown, why: string) =>
    new RpcError(Status.INVALID_ARGUMENT, name, `remote-forward host "${name}": rf.optimizer: invalid ${what} ${JSON.stringify(value)}: ${why}`),
  bind: (name: string, trainer: string, why: string) =>
    new RpcError(Status.FAILED_PRECONDITION, name, `remote-forward host "${name}": trainer "${trainer}"'s optimizer: ${why}`),
  unknownOptimizer: (name: string, id: string) =>
    new RpcError(Status.NOT_FOUND, name, `remote-forward host "${name}": rf.optimizer: no optimizer ${id} is kept here (create the DistributedOptimizer first, and wait for its ready())`),
  offCpu: (name: string, param: string, device: string) =>
    new RangeError(`--checkpoint-dir: parameter ${param} of the model hosted on "${name}" is on ${device}; checkpoints of a model off the CPU are not written yet`),
  badOption: (name: string, option: string, value: unknown, why: string) =>
    new RangeError(`remote-forward host "${name}": invalid checkpoints.${option}=${JSON.stringify(value)}: ${why}`),
  finalFailed: (name: string, id: number, why: string) =>
    new RpcError(Status.INTERNAL, name, `remote-forward host "${name}": the checkpoint at the end (${id}) could not be written: ${why}`),
};

const APPLIED = 'applied.trainer';
const describe = (layout: readonly ParameterSpec[]) => layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');

/** A RemoteModelHost's checkpoints: the format (snapshot, restore) and the write queue. */
export class RemoteModelCheckpoints {
  readonly optimizer: string;
  /** Checkpoints written, failed, dropped before their write began (the copies waiting held maxQueuedBytes), and the last written. */
  readonly counts = { written: 0, failed: 0, dropped: 0, lastId: -1 };
  private readonly total: number;
  private readonly schedule: CheckpointSchedule;
  private readonly log: (line: string) => void;
  /** The restored checkpoint's optimizer state of each rank, until that rank binds (rf.optimizer). */
  private readonly pendingState = new Map<number, OptimizerState>();
  /** Copies waiting for the disk, oldest first, and their bytes. */
  private readonly queued: Array<{ snap: ShardSnapshot; bytes: number; settle: (r: WriteResult | null) => void }> = [];
  private queuedBytes = 0;
  private readonly maxQueuedBytes: number;
  private writing = false;
  private idleWaiters: Array<() => void> = [];
  private last?: { id: number; forwards: number; done: Promise<WriteResult | null> };
  private lastError = '';
  private closed = false;
  readonly restored?: RestoredCounts;

  constructor(
    private readonly host: {
      name: string;
      trainers: number;
      params: readonly Tensor[];
      layout: ParameterSpec[];
      buffers: ReadonlyArray<[string, Tensor]>;
    },
    private readonly o: RemoteModelCheckpointOptions,
    now?: () => number,
  ) {
    for (const [i, p] of host.params.entries()) if (p.device !== 'cpu') throw rfErrors.offCpu(host.name, host.layout[i]?.name ?? String(i), p.device);
    for (const [n, b] of host.buffers) if (b.device !== 'cpu') throw rfErrors.offCpu(host.name, n, b.device);
    this.optimizer = o.optimizer;
    this.total = host.layout.reduce((n, p) => n + p.size, 0);
    this.log = o.log ?? ((line) => process.stderr.write(line + '\n'));
    this.schedule = new CheckpointSchedule(o.steps ?? 0, o.everyMs ?? 0, now);
    this.maxQueuedBytes = o.maxQueuedBytes ?? DEFAULT_QUEUED_BYTES;
    if (!(this.maxQueuedBytes >= 0)) throw rfErrors.badOption(host.name, 'maxQueuedBytes', o.maxQueuedBytes, 'expected a number >= 0');
    if (o.restore) this.restored = this.restore(o.restore);
  }

  /**
   * Checks checkpoint `cp` is this model's, this job size's and this optimizer's (refused naming
   * the difference, nothing set), then sets the model's parameters and buffers in place and keeps
   * each rank's optimizer state for its rf.optimizer.
   */
  private restore(cp: LoadedCheckpoint): RestoredCounts {
    const { name, trainers, params, layout, buffers } = this.host;
    const saved = cp.manifest.layout.map(({ offset: _o, ...p }) => p);
    const why = layoutDifference(saved, layout);
    if (why) throw rfErrors.another(name, cp, `was written for another model: ${why} (it has ${describe(saved)}; the hosted model has ${describe(layout)})`);
    if (cp.manifest.trainers !== trainers) {
      throw rfErrors.another(name, cp, `was written by a job of ${cp.manifest.trainers} trainer(s); resume it with as many (this one has ${trainers}): each trainer's optimizer state and data share are its rank's`);
    }
    if (cp.manifest.optimizer !== this.optimizer) throw rfErrors.another(name, cp, `holds ${cp.manifest.optimizer} state; this run uses --optimizer ${this.optimizer}`);
    const r = cp.read(0, this.total);
    const scalars = r.state?.scalars ?? {};
    const applied: number[] = [];
    for (let k = 0; k < trainers; k++) {
      const v = scalars[`${APPLIED}${k}`];
      if (!Number.isSafeInteger(v) || v! < 0) {
        throw rfErrors.another(name, cp, `was not written by a remote-forward host: it has no step count ${APPLIED}${k} of trainer rank ${k} (psrpc.scalars)`);
      }
      applied.push(v!);
    }
    const savedBuffers = cp.buffers();
    for (const [n, b] of buffers) {
      const v = savedBuffers.get(n);
      if (!v || v.length !== b.size) throw rfErrors.another(name, cp, `has no buffer ${n} of ${b.size} elements`);
    }
    // every rank's state, split out of the flat arrays (checked against the optimizer at its bind)
    for (let k = 0; k < trainers; k++) {
      const prefix = `trainer${k}.`;
      const state: OptimizerState = { arrays: {}, scalars: {} };
      let any = false;
      for (const [key, v] of Object.entries(r.state?.arrays ?? {})) if (key.startsWith(prefix)) { state.arrays[key.slice(prefix.length)] = v; any = true; }
      for (const [key, v] of Object.entries(scalars)) if (key.startsWith(prefix)) { state.scalars[key.slice(prefix.length)] = v; any = true; }
      if (any) this.pendingState.set(k, state);
    }
    let at = 0;
    for (const p of params) {
      (p.storage as Float32Array).set(r.values.subarray(at, at + p.size));
      at += p.size;
    }
    for (const [n, b] of buffers) (b.storage as Float32Array).set(savedBuffers.get(n)!);
    return { id: cp.id, steps: r.version, applied };
  }

  /**
   * Gives trainer rank `rank`'s optimizer the restored checkpoint's state of that rank (nothing
   * when the checkpoint has none: that rank had not stepped yet). Throws, setting nothing, when
   * the state is not this optimizer's (another kind, SGD with or without momentum).
   */
  importInto(rank: number, optimizer: Optimizer<unknown>, trainer: string): void {
    if (optimizer.name.toLowerCase() !== this.optimizer) {
      throw rfErrors.bind(this.host.name, trainer, `it is ${optimizer.name}, but this host checkpoints ${this.optimizer} state (--optimizer ${this.optimizer})`);
    }
    const state = this.pendingState.get(rank);
    if (!state) return;
    const { params } = this.host;
    // a refusal (importState checks names and lengths) puts back what was there: nothing is set
    const parts = params.map((p, i) => {
      const arrays: Record<string, Float32Array> = {};
      const from = this.offset(i);
      for (const [k, v] of Object.entries(state.arrays)) arrays[k] = v.subarray(from, from + p.size);
      return { arrays, scalars: state.scalars };
    });
    const saved = params.map((p) => optimizer.state.get(p));
    try {
      params.forEach((p, i) => optimizer.importState(p, parts[i]!));
    } catch (e) {
      params.forEach((p, i) => { const s = saved[i]; if (s === undefined) optimizer.state.delete(p); else optimizer.state.set(p, s); });
      throw rfErrors.bind(this.host.name, trainer, `the state of trainer rank ${rank} in checkpoint ${this.restored?.id} is not its own: ${(e as Error).message}`);
    }
    this.pendingState.delete(rank);
  }

  private offset(i: number): number {
    let at = 0;
    for (let k = 0; k < i; k++) at += this.host.params[k]!.size;
    return at;
  }

  /** The host's state now, copied: training goes on while it is written. */
  snapshot(id: number, c: HostCounts): ShardSnapshot {
    const { params, layout, buffers, trainers } = this.host;
    const total = this.total;
    const values = new Float32Array(total);
    let at = 0;
    for (const p of params) {
      values.set(p.storage as Float32Array, at);
      at += p.size;
    }
    const arrays: Record<string, Float32Array> = {};
    const scalars: Record<string, number> = {};
    for (let k = 0; k < trainers; k++) {
      const t = c.trainers[k];
      scalars[`${APPLIED}${k}`] = t?.applied ?? 0;
      if (!t?.optimizer) continue;
      const states = params.map((p) => t.optimizer!.exportState(p));
      const first = states.find((s) => s !== null);
      if (!first) continue;
      for (const [name, v] of Object.entries(first.scalars)) scalars[`trainer${k}.${name}`] = v;
      for (const name of Object.keys(first.arrays)) {
        const flat = new Float32Array(total);
        let off = 0;
        for (const [i, p] of params.entries()) {
          const s = states[i]?.arrays[name];
          if (s) flat.set(s, off);
          off += p.size;
        }
        arrays[`trainer${k}.${name}`] = flat;
      }
    }
    const bufs: Record<string, Float32Array> = {};
    for (const [n, b] of buffers) bufs[n] = (b.storage as Float32Array).slice();
    return {
      id, shard: 0, shards: 1, start: 0, length: total, total, version: c.steps, layout: layout.map((p) => ({ ...p })),
      consistency: 'async', trainers, optimizer: this.optimizer, values, state: { arrays, scalars }, buffers: bufs,
    };
  }

  /** After the host's step `c.steps`: when a checkpoint is due, copies it and queues its write. Never waits. */
  afterStep(c: HostCounts): void {
    if (this.closed || !this.schedule.isDue(c.steps)) return;
    try {
      void this.enqueue(c);
    } catch (e) {
      // the step itself was applied: a copy that fails costs this checkpoint only
      this.counts.failed++;
      this.log(`${this.host.name}: checkpoint ${c.steps} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`);
    }
  }

  /** The end of training: writes the last checkpoint (unless the newest queued one is this very state) and resolves once every write is on disk. */
  async final(c: HostCounts): Promise<void> {
    this.closed = true;
    const same = this.last && this.last.id === c.steps && this.last.forwards === c.forwards ? this.last.done : undefined;
    let r = same ? await same : null;
    if (!r) r = await this.enqueue(c);
    await this.flush();
    if (!r) throw rfErrors.finalFailed(this.host.name, c.steps, this.lastError || 'replaced before it was written');
  }

  /** Resolves once every queued write is on disk (or failed, and said so). */
  flush(): Promise<void> {
    if (!this.writing && this.queued.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private enqueue(c: HostCounts): Promise<WriteResult | null> {
    const snap = this.snapshot(c.steps, c);
    const size = snap.values.byteLength + Object.values(snap.state?.arrays ?? {}).reduce((n, a) => n + a.byteLength, 0)
      + Object.values(snap.buffers ?? {}).reduce((n, a) => n + a.byteLength, 0);
    const done = new Promise<WriteResult | null>((settle) => {
      while (this.queued.length > 0 && this.queuedBytes + size > this.maxQueuedBytes) {
        const old = this.queued.shift()!;
        this.queuedBytes -= old.bytes;
        this.counts.dropped++;
        if (this.counts.dropped === 1) {
          this.log(`${this.host.name}: checkpoint ${old.snap.id} is not written: ${snap.id} is due while the copies waiting for the disk hold ${this.maxQueuedBytes} bytes; the newest wait instead (steps never wait for the disk; a longer --checkpoint-every or --checkpoint-steps avoids this)`);
        }
        old.settle(null);
      }
      this.queued.push({ snap, bytes: size, settle });
      this.queuedBytes += size;
    });
    this.last = { id: c.steps, forwards: c.forwards, done };
    this.pump();
    return done;
  }

  private pump(): void {
    if (this.writing) return;
    const next = this.queued.shift();
    if (!next) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
      return;
    }
    this.queuedBytes -= next.bytes;
    this.writing = true;
    const { snap, settle } = next;
    void Promise.resolve().then(() => this.o.sink.writeShard(snap)).then((r) => {
      this.counts.written++;
      this.counts.lastId = snap.id;
      settle(r);
    }, (e: unknown) => {
      this.counts.failed++;
      this.lastError = e instanceof Error ? e.message : String(e);
      this.log(`${this.host.name}: checkpoint ${snap.id} failed: ${this.lastError} (training goes on; the previous checkpoint stays the latest)`);
      settle(null);
    }).finally(() => {
      this.writing = false;
      this.pump();
    });
  }
}
