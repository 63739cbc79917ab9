// ParameterServer: one server's shard of the model, its optimizer state and its consistency model.
//
// The shard is one contiguous range of the flat parameter vector (see shard-plan.ts), held as one
// Float32Array and stepped by one fused optimizer kernel: SGD and Adam are element-wise, so one
// update over the whole range equals one update per parameter slice, with a single native call.
//
// Consistency, per server (every trainer pushes to every server once per step, so the servers'
// rounds stay aligned without talking to each other):
//   sync  bulk-synchronous: a push waits (async execution: the handler's promise) until every live
//         trainer has pushed in this round; then the averaged gradient makes one step and every
//         waiting push is answered with the new parameters.
//   async every push is one step, at once.
//   ssp   as async, but a trainer's push (and pull) waits while it is more than `staleness` steps
//         ahead of the slowest live trainer (steps = pushes applied, its "clock").
// Every reply carries `version`, the number of steps this shard has taken.
//
// Replies carry a view of the shard, not a copy. In sync mode it cannot change while a reply is
// being written (the next step needs every answered trainer's next push); in async and ssp a
// large reply may see a later step's values part-way, as Hogwild readers do.
//
// Precision: the join that initialises the server fixes what gradients and parameters travel as
// (float32, bfloat16 or float16; a later join naming another is refused, naming both). The shard
// and the optimizer state stay fp32: a 16-bit push is widened into that trainer's own fp32 buffer
// (divided by the push's loss scale, if any) and averaged exactly as an fp32 one; a reply carries
// the fp32 shard rounded to 16 bits, converted once per version whatever the number of trainers.
//
// Liveness: `leave` removes a trainer from the live set. A trainer that stops talking while others
// wait on it (its agent died) is dropped after `liveTimeoutMs` of silence, counted from its join or
// its last call (src/rpc/liveness.ts), so nothing waits forever. Trainers that never join fail
// the joins after `joinTimeoutMs`, counted from the first join.
//
// Restarts: with `restartTimeoutMs`, a trainer the heartbeats report lost is waited for that long
// (a restarted process is on its way) before it is dropped. A trainer that joins again under its
// name is the restarted process: it is taken back where the old one stopped. In sync mode, if the
// old one had pushed in the open round, the join answers once that round has stepped, so the new
// process goes on with the next batch; in async and ssp the reply's clock is the number of its
// pushes applied, where it goes on. Nothing is applied twice and nothing is skipped.
import { Liveness, releaseReceived, RpcError, Status, systemClock, type Agent, type Clock, type ClockTimer } from '../rpc/index.js';
import { createOptimizer, fromWire, getBackend, layoutDifference, Tensor, toWire, type Optimizer } from '../tensor/index.js';
import { BatchQueue, type BatchQueueShape } from './batch-queue.js';
import type { ShardSnapshot, WriteResult } from './checkpoint.js';
import { errors } from './errors.js';
import { ServerMetrics } from './metrics.js';
import { CONSISTENCY_MODELS, PS_FUNCTIONS, WIRE_PRECISIONS, type WirePrecision, type Gradients, type ParameterServerOptions, type PullReply, type PushReply, type ServerOptimizerOptions, type ServerStats } from './protocol.js';
import { checkSpecs, planShards, type ParameterSpec, type Placement, type Shard } from './shard-plan.js';

interface TrainerState {
  name: string;
  live: boolean;
  /** Pushes applied (ssp/async); sync rounds it took part in. */
  clock: number;
  /** Sync round in which it last pushed (-1: none). */
  pushedRound: number;
  /** 16-bit precision (or a loss-scaled push): its pushes widened into fp32, one buffer reused. */
  wide?: Float32Array;
  /**
   * Elastic jobs: waiting for a batch (every batch is out with others). Rounds and the ssp gate do
   * not wait for it meanwhile: it has nothing to push until one comes back.
   */
  idle?: boolean;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class ParameterServer {
  readonly name: string;
  readonly options: Required<Omit<ParameterServerOptions, 'optimizer' | 'placement' | 'clock' | 'checkpoints' | 'restore' | 'log'>> & Pick<ParameterServerOptions, 'placement'> & { optimizer: ServerOptimizerOptions };
  readonly metrics: ServerMetrics;
  /** Steps taken. */
  version = 0;
  private layoutSpecs?: ParameterSpec[];
  /** The trainer whose join initialised the server (named when another's model differs). */
  private initialisedBy?: string;
  private placement?: Placement;
  /** Settles once the placement is known (undefined when the default placement is used). */
  private placementReady?: Promise<void>;
  private shardInfo?: Shard;
  private data = new Float32Array(0);
  private param?: Tensor;
  private optimizer?: Optimizer<unknown>;
  /** What gradients and parameters travel as, fixed by the initialising join. */
  private wire: WirePrecision = 'float32';
  /** 16-bit replies: the shard in the wire format, and the version it was converted at (-1: never). */
  private wireValues?: Uint16Array;
  private wireVersion = -1;
  private readonly trainers = new Map<string, TrainerState>();
  private joinedCount = 0;
  private leftCount = 0;
  private readonly droppedNames: string[] = [];
  private joinWaiters: Waiter[] = [];
  private joinTimer?: ClockTimer;
  /** Joins are answered at once from now on (the trainers expected joined, or the last call passed). */
  private joinsOpen = false;
  private lastCall?: ClockTimer;
  private readonly clock: Clock;
  private readonly liveness: Liveness;
  // sync round state: each push's gradient with its trainer (averaged in name order: the sum is
  // the same whatever order the pushes arrived in)
  private roundGrads: Array<{ trainer: string; grad: Float32Array }> = [];
  /** The checkpoint a push of this round asked for (-1: none). */
  private roundCheckpoint = -1;
  private readonly sink?: ParameterServerOptions['checkpoints'];
  private readonly restore?: ParameterServerOptions['restore'];
  private readonly log: (line: string) => void;
  /** The last queued checkpoint write (they run one after the other), and how many are queued. */
  private writes: Promise<unknown> = Promise.resolve();
  private queuedWrites = 0;
  /** Checkpoints written and failed, steps that waited for a write, and the last write's figures. */
  readonly checkpointCounts = { written: 0, failed: 0, waited: 0, lastId: -1, lastBytes: 0, lastMs: 0, copyMs: 0 };
  private roundWaiters: Waiter[] = [];
  private scratch?: Float32Array;
  // ssp state
  private blocked: Array<{ trainer: TrainerState; waiter: Waiter }> = [];
  private counts = { pushes: 0, pulls: 0, maxLead: 0 };
  /** Trainers whose agents the RPC layer's heartbeats report lost (dropped as soon as anyone waits on them). */
  private readonly lost = new Set<string>();
  /** Elastic jobs: the batches handed out to the trainers (on the server they ask: the first). */
  private queue?: BatchQueue;
  /** sync: the trainers whose push in the open round carried their batch (done when it steps). */
  private roundBatches: string[] = [];
  /** Lost trainers still waited for (restartTimeoutMs): the timer that drops each one. */
  private readonly awaited = new Map<string, ClockTimer>();
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;
  private doneResolve!: () => void;
  /** Resolves once the expected trainers have joined and every one of them has left (or was dropped). */
  readonly done: Promise<void>;

  constructor(options: ParameterServerOptions) {
    const o = options;
    const name = typeof o?.name === 'string' && o.name.length > 0 ? o.name : '';
    if (!name) throw errors.badOption('?', 'name', o?.name, 'expected a non-empty string');
    if (!Number.isSafeInteger(o.shards) || o.shards < 1) throw errors.badOption(name, 'shards', o.shards, 'expected an integer >= 1');
    if (!Number.isSafeInteger(o.shard) || o.shard < 0 || o.shard >= o.shards) throw errors.badOption(name, 'shard', o.shard, `expected an integer in [0, ${o.shards})`);
    if (!Number.isSafeInteger(o.trainers) || o.trainers < 1) throw errors.badOption(name, 'trainers', o.trainers, 'expected an integer >= 1');
    if (!(CONSISTENCY_MODELS as readonly string[]).includes(o.consistency)) throw errors.badOption(name, 'consistency', o.consistency, `expected one of ${CONSISTENCY_MODELS.join(', ')}`);
    const staleness = o.staleness ?? 2;
    if (!Number.isSafeInteger(staleness) || staleness < 0) throw errors.badOption(name, 'staleness', staleness, 'expected an integer >= 0');
    const joinTimeoutMs = o.joinTimeoutMs ?? 60_000;
    const liveTimeoutMs = o.liveTimeoutMs ?? 60_000;
    const restartTimeoutMs = o.restartTimeoutMs ?? 0;
    if (!(restartTimeoutMs >= 0) || !Number.isFinite(restartTimeoutMs)) throw errors.badOption(name, 'restartTimeoutMs', restartTimeoutMs, 'expected a finite number >= 0');
    if (!(joinTimeoutMs > 0)) throw errors.badOption(name, 'joinTimeoutMs', joinTimeoutMs, 'expected a number > 0');
    if (!(liveTimeoutMs > 0)) throw errors.badOption(name, 'liveTimeoutMs', liveTimeoutMs, 'expected a number > 0');
    const kind: unknown = o.optimizer?.kind;
    if (kind !== 'sgd' && kind !== 'adam') throw errors.badOption(name, 'optimizer.kind', kind, "expected 'sgd' or 'adam'");
    // build a throwaway optimizer now so bad hyper-parameters fail at construction, not at the first push
    createOptimizer([new Tensor(new Float32Array(1), [1])], o.optimizer);
    this.name = name;
    const { clock: _clock, checkpoints: _c, restore: _r, log: _l, ...rest } = o;
    this.sink = o.checkpoints;
    this.restore = o.restore;
    this.log = o.log ?? ((line) => process.stderr.write(line + '\n'));
    const expectedTrainers = o.expectedTrainers ?? o.trainers;
    const lastCallMs = o.lastCallMs ?? 0;
    const elastic = o.elastic ?? false;
    if (!Number.isSafeInteger(expectedTrainers) || expectedTrainers < o.trainers) throw errors.badOption(name, 'expectedTrainers', expectedTrainers, `expected an integer >= trainers (${o.trainers})`);
    if (!(lastCallMs >= 0) || !Number.isFinite(lastCallMs)) throw errors.badOption(name, 'lastCallMs', lastCallMs, 'expected a finite number >= 0');
    this.options = { ...rest, name, staleness, joinTimeoutMs, liveTimeoutMs, restartTimeoutMs, expectedTrainers, lastCallMs, elastic };
    this.clock = o.clock ?? systemClock;
    this.liveness = new Liveness({ timeoutMs: liveTimeoutMs, clock: this.clock, onSilent: (silent) => this.dropSilent(silent) });
    this.metrics = new ServerMetrics(name);
    this.done = new Promise((r) => { this.doneResolve = r; });
    if (o.placement !== undefined) {
      this.placementReady = Promise.resolve(o.placement).then((p) => { this.placement = p; });
      this.placementReady.catch(() => { /* reported to every join and ps.placement call */ });
    }
  }

  /** What gradients and parameters travel as (float32 until a join says otherwise). */
  get precision(): WirePrecision {
    return this.wire;
  }

  /** The custom placement the servers share (null: equal ranges); waits for a pending one. */
  async placementPlan(): Promise<Placement | null> {
    await this.placementReady;
    return this.placement ?? null;
  }

  /** The parameter layout and this server's shard, once a trainer has initialised the server. */
  get shard(): Shard | undefined {
    return this.shardInfo;
  }

  /** This server's values (a view of its buffer; empty before initialisation). */
  get values(): Float32Array {
    return this.data;
  }

  // ---- the API (each method is also an RPC function, see register) ----

  /**
   * Joins `trainer` to the live set. The first join initialises the server with `layout` (all
   * parameters, in flat order) and `values` (this server's shard of them); later joins must send
   * the same layout (their values are ignored) and the same `precision` (default float32: what
   * gradients and parameters travel as). Resolves, with the current parameters, once `trainers`
   * trainers have joined.
   */
  async join(trainer: string, layout: ParameterSpec[], values: Float32Array, precision: WirePrecision = 'float32'): Promise<PullReply> {
    this.checkOpen();
    this.checkTrainerName(trainer);
    this.lost.delete(trainer);
    this.awaited.get(trainer)?.cancel();
    this.awaited.delete(trainer);
    if (!WIRE_PRECISIONS.includes(precision)) throw errors.badOption(this.name, `precision (of trainer "${trainer}"'s join)`, precision, `expected one of ${WIRE_PRECISIONS.join(', ')}`);
    if (this.placementReady) await this.placementReady;
    this.initialise(trainer, layout, values, precision);
    let t = this.trainers.get(trainer);
    if (!t) {
      t = { name: trainer, live: true, clock: this.slowestClock(), pushedRound: -1 };
      this.trainers.set(trainer, t);
      this.joinedCount++;
    } else if (!t.live) {
      t.live = true;
      t.clock = Math.max(t.clock, this.slowestClock());
      this.leftCount--;
    } else if (this.options.consistency === 'sync' && t.pushedRound === this.version && this.roundGrads.length > 0) {
      // joined again while live: a restarted process. Its predecessor's push is in the open round;
      // the answer waits for that round's step, and the new process goes on with the next batch.
      await new Promise<void>((resolve, reject) => this.roundWaiters.push({ resolve, reject }));
    }
    this.liveness.seen(trainer);
    this.liveness.start();
    this.metrics.liveTrainers.set(this.liveCount());
    const expected = this.options.expectedTrainers;
    if (this.joinsOpen || this.joinedCount >= expected) {
      this.joinsOpen = true;
      this.releaseJoins();
    } else {
      // elastic: the minimum has joined; the others get the last call's time to come
      if (this.joinedCount >= this.options.trainers) {
        this.lastCall ??= this.clock.after(this.options.lastCallMs, () => { this.joinsOpen = true; this.releaseJoins(); });
      }
      await new Promise<void>((resolve, reject) => {
        this.joinWaiters.push({ resolve, reject });
        this.joinTimer ??= this.clock.after(this.options.joinTimeoutMs, () => {
          const e = errors.joinTimeout(this.name, this.joinedCount, this.options.trainers, this.options.joinTimeoutMs);
          const ws = this.joinWaiters;
          this.joinWaiters = [];
          this.joinTimer = undefined;
          for (const w of ws) w.reject(e);
        });
      });
    }
    return this.reply(t);
  }

  /** The current parameters of this shard. In ssp, waits while `trainer` is too far ahead. */
  async pull(trainer?: string): Promise<PullReply> {
    this.checkOpen();
    if (!this.shardInfo) throw errors.notInitialised(this.name);
    if (trainer === undefined || trainer === null) return this.reply(undefined);
    const t = this.liveTrainer(trainer);
    this.liveness.seen(trainer);
    if (this.options.consistency === 'ssp') await this.sspGate(t);
    return this.reply(t);
  }

  /**
   * Pushes `trainer`'s gradient, computed on parameters of version `version`. Resolves when it has
   * been applied (sync: when the round's step is taken). `grads` is only read until then. `scale`:
   * the loss scale the trainer multiplied its gradient by (fp16); the server divides by it.
   */
  async push(trainer: string, version: number, grads: Gradients, scale = 1, checkpoint = -1, batch = -1): Promise<PushReply> {
    const t = await this.apply(trainer, version, grads, scale, checkpoint, batch);
    return { version: this.version, clock: t.clock };
  }

  /** push, then pull: one round trip per server per step. */
  async pushPull(trainer: string, version: number, grads: Gradients, scale = 1, checkpoint = -1, batch = -1, next = false): Promise<PullReply> {
    const t = await this.apply(trainer, version, grads, scale, checkpoint, batch);
    const r = this.reply(t);
    // elastic: the next batch goes with the reply when it can be handed out at once
    if (next && this.queue && t.live && this.queue.ready(trainer)) r.batch = await this.queue.take(trainer);
    return r;
  }

  /**
   * Elastic jobs (BatchQueue): the number of the next batch `trainer` trains, or null when every
   * batch of the job is done. `shape` is the trainer's count of batches per epoch and of epochs;
   * the first call numbers the job's batches with it, later ones must agree. The push of that
   * batch's gradient carries its number (push / pushPull `batch`).
   */
  async batch(trainer: string, shape: BatchQueueShape): Promise<number | null> {
    this.checkOpen();
    const t = this.liveTrainer(trainer);
    const ok = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 1;
    if (shape === null || typeof shape !== 'object' || !ok(shape.perEpoch) || !ok(shape.epochs)) {
      throw errors.wrongType(this.name, 'batch queue shape', shape, '{ perEpoch, epochs }, integers >= 1');
    }
    if (this.queue) this.queue.check(trainer, shape);
    else this.queue = new BatchQueue(this.name, { perEpoch: shape.perEpoch, epochs: shape.epochs });
    this.liveness.seen(trainer);
    if (this.queue.ready(t.name)) return this.queue.take(t.name);
    // nothing to hand out now: the others' rounds and ssp waits go on without this trainer until
    // a batch comes back (one held by a trainer that goes) or the job ends
    t.idle = true;
    this.maybeFinishRound();
    this.wakeBlocked();
    const b = await this.queue.take(t.name);
    t.idle = false;
    t.clock = Math.max(t.clock, this.slowestClock());
    return t.live ? b : null;
  }

  /**
   * sync: `trainer` takes no part in the open round, which steps without its gradient; resolves,
   * like pushPull, with the parameters once it has stepped. For a restarted trainer whose
   * predecessor died between its pushes to different servers: the servers it had pushed to are a
   * round ahead, and this brings the others level (that one batch is missing from their shards'
   * round, the only sample a restart can lose).
   */
  async skip(trainer: string): Promise<PullReply> {
    this.checkOpen();
    if (!this.shardInfo) throw errors.notInitialised(this.name);
    const t = this.liveTrainer(trainer);
    if (this.options.consistency !== 'sync') throw new RpcError(Status.FAILED_PRECONDITION, this.name, `parameter server "${this.name}": ps.skip is for sync rounds (this server is ${this.options.consistency})`);
    if (t.pushedRound === this.version) throw errors.doublePush(this.name, trainer, this.version);
    t.pushedRound = this.version;
    const answered = new Promise<void>((resolve, reject) => this.roundWaiters.push({ resolve, reject }));
    this.maybeFinishRound();
    await answered;
    return this.reply(t);
  }

  /**
   * Writes checkpoint `id` of this shard now (after the writes queued before it) and resolves when
   * it is on disk: the end of training's checkpoint. Refused without a checkpoint directory.
   */
  async checkpoint(id: number): Promise<WriteResult> {
    this.checkOpen();
    if (!this.sink) throw new RpcError(Status.FAILED_PRECONDITION, this.name, `parameter server "${this.name}": no checkpoint directory (--checkpoint-dir) was given`);
    if (!this.shardInfo) throw errors.notInitialised(this.name);
    if (!Number.isSafeInteger(id) || id < 0) throw errors.wrongType(this.name, 'checkpoint number', id, 'an integer >= 0');
    const r = await this.enqueueWrite(id).done;
    if (!r) throw new RpcError(Status.INTERNAL, this.name, `parameter server "${this.name}": checkpoint ${id} could not be written (see its log)`);
    return r;
  }

  /** This shard, its optimizer state and version, copied (a memory copy: training goes on meanwhile). */
  snapshot(id: number): ShardSnapshot {
    const shard = this.shardInfo;
    if (!shard || !this.layoutSpecs) throw errors.notInitialised(this.name);
    return {
      id, shard: this.options.shard, shards: this.options.shards, start: shard.start, length: shard.length,
      total: this.layoutSpecs.reduce((n, p) => n + p.size, 0), version: this.version, layout: this.layoutSpecs.map((p) => ({ ...p })),
      consistency: this.options.consistency, trainers: this.options.trainers, optimizer: this.options.optimizer.kind,
      values: this.data.slice(), state: this.optimizer!.exportState(this.param!),
      ...(this.queue ? { batches: this.queue.state() } : {}),
    };
  }

  /**
   * Checkpoint `id` was asked for by a push whose step was just taken: the shard is copied now and
   * written in the background. Resolves at once, unless an earlier checkpoint is still being
   * written: then once that one is on disk (checkpoints asked for faster than the disk takes them
   * hold the steps back rather than pile up copies in memory).
   */
  private requestCheckpoint(id: number): Promise<void> | undefined {
    if (!this.sink || id < 0) return undefined;
    const { before } = this.enqueueWrite(id);
    if (this.queuedWrites <= 1) return undefined;
    this.checkpointCounts.waited++;
    if (this.checkpointCounts.waited === 1) {
      this.log(`${this.name}: checkpoint ${id} is asked for while the previous one is still being written; steps wait for it (a longer --checkpoint-every or --checkpoint-steps avoids this)`);
    }
    return before.then(() => {});
  }

  /** Copies the shard as checkpoint `id` and queues its write after the ones before it. */
  private enqueueWrite(id: number): { before: Promise<unknown>; done: Promise<WriteResult | null> } {
    const t0 = performance.now();
    const snap = this.snapshot(id);
    this.checkpointCounts.copyMs = performance.now() - t0;
    const before = this.writes;
    this.queuedWrites++;
    const done = before.then(() => this.sink!.writeShard(snap)).then((r) => {
      const c = this.checkpointCounts;
      c.written++;
      c.lastId = id;
      c.lastBytes = r.bytes;
      c.lastMs = r.ms;
      return r;
    }, (e: unknown) => {
      this.checkpointCounts.failed++;
      this.log(`${this.name}: checkpoint ${id} failed: ${e instanceof Error ? e.message : String(e)} (training goes on; the previous checkpoint stays the latest)`);
      return null;
    }).finally(() => { this.queuedWrites--; });
    this.writes = done;
    return { before, done };
  }

  /** Resolves once every queued checkpoint is on disk (or failed). */
  async flushCheckpoints(): Promise<void> {
    await this.writes;
  }

  /** Removes `trainer` from the live set; a sync round or ssp wait no longer waits for it. */
  leave(trainer: string): PushReply {
    this.checkTrainerName(trainer);
    const t = this.trainers.get(trainer);
    if (!t) throw errors.notJoined(this.name, trainer);
    if (t.live) this.remove(t);
    return { version: this.version, clock: t.clock };
  }

  /** The layout the server was initialised with and its shard (null before). */
  layout(): { layout: ParameterSpec[]; shard: Shard } | null {
    return this.layoutSpecs && this.shardInfo ? { layout: this.layoutSpecs, shard: this.shardInfo } : null;
  }

  stats(): ServerStats {
    return {
      name: this.name,
      version: this.version,
      pushes: this.counts.pushes,
      pulls: this.counts.pulls,
      steps: this.version,
      live: [...this.trainers.values()].filter((t) => t.live).map((t) => t.name),
      joined: this.joinedCount,
      left: this.leftCount,
      dropped: [...this.droppedNames],
      maxLead: this.counts.maxLead,
      ...(this.queue ? { batches: this.queue.stats() } : {}),
    };
  }

  /** Registers the `ps.*` functions on `agent`. */
  register(agent: Agent): this {
    agent.register(PS_FUNCTIONS.join, (trainer: string, layout: ParameterSpec[], values: Float32Array, precision?: WirePrecision) => this.join(trainer, layout, values, precision ?? 'float32'));
    agent.register(PS_FUNCTIONS.pull, (trainer?: string) => this.pull(trainer));
    agent.register(PS_FUNCTIONS.push, (trainer: string, version: number, grads: Gradients, scale?: number, checkpoint?: number, batch?: number) => this.push(trainer, version, grads, scale ?? 1, checkpoint ?? -1, batch ?? -1));
    agent.register(PS_FUNCTIONS.pushPull, (trainer: string, version: number, grads: Gradients, scale?: number, checkpoint?: number, batch?: number, next?: boolean) => this.pushPull(trainer, version, grads, scale ?? 1, checkpoint ?? -1, batch ?? -1, next === true));
    agent.register(PS_FUNCTIONS.batch, (trainer: string, shape: BatchQueueShape) => this.batch(trainer, shape));
    agent.register(PS_FUNCTIONS.checkpoint, (id: number) => this.checkpoint(id));
    agent.register(PS_FUNCTIONS.skip, (trainer: string) => this.skip(trainer));
    agent.register(PS_FUNCTIONS.leave, (trainer: string) => this.leave(trainer));
    agent.register(PS_FUNCTIONS.layout, () => this.layout());
    agent.register(PS_FUNCTIONS.placement, () => this.placementPlan());
    agent.register(PS_FUNCTIONS.stats, () => this.stats());
    // heartbeats (src/rpc/heartbeat.ts) say within seconds that a trainer's process is gone or
    // silent; liveTimeoutMs stays the backstop for agents without them
    this.unsubscribe.push(
      agent.onPeerLost((w) => { if (this.trainers.has(w)) this.peerLost(w); }),
      agent.onPeerRecovered((w) => { this.lost.delete(w); this.awaited.get(w)?.cancel(); this.awaited.delete(w); }),
    );
    return this;
  }

  /** Fails every waiting call and stops the timers (and the metrics endpoint). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const e = errors.closed(this.name);
    for (const w of this.joinWaiters) w.reject(e);
    for (const w of this.roundWaiters) w.reject(e);
    for (const b of this.blocked) b.waiter.reject(e);
    this.joinWaiters = [];
    this.roundWaiters = [];
    this.roundGrads = [];
    this.blocked = [];
    this.joinTimer?.cancel();
    this.lastCall?.cancel();
    for (const timer of this.awaited.values()) timer.cancel();
    this.awaited.clear();
    await this.flushCheckpoints();
    this.liveness.stop();
    for (const u of this.unsubscribe.splice(0)) u();
    this.doneResolve();
    await this.metrics.close();
  }

  // ---- internals ----

  private checkOpen(): void {
    if (this.closed) throw errors.closed(this.name);
  }

  private checkTrainerName(trainer: unknown): asserts trainer is string {
    if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
  }

  private liveTrainer(trainer: string): TrainerState {
    this.checkTrainerName(trainer);
    const t = this.trainers.get(trainer);
    if (!t || !t.live) throw errors.notJoined(this.name, trainer);
    return t;
  }

  private initialise(trainer: string, layout: ParameterSpec[], values: Float32Array, precision: WirePrecision): void {
    const total = checkSpecs(layout, `ps.join on "${this.name}"`);
    if (this.layoutSpecs) {
      const why = layoutDifference(this.layoutSpecs, layout);
      if (why) throw errors.layoutMismatch(this.name, trainer, this.initialisedBy!, why);
      if (precision !== this.wire) {
        throw new RpcError(Status.FAILED_PRECONDITION, this.name,
          `parameter server "${this.name}": trainer "${trainer}" joined with precision ${precision}, but trainer "${this.initialisedBy}" initialised it with precision ${this.wire}`);
      }
      return;
    }
    const shard = planShards(layout, this.options.shards, this.placement)[this.options.shard]!;
    if (!(values instanceof Float32Array)) throw errors.wrongType(this.name, 'initial values', values, 'a Float32Array');
    if (values.length !== shard.length) {
      throw errors.wrongLength(this.name, `initial values for shard ${this.options.shard} of ${this.options.shards} (${total} elements in all)`, values.length, shard.length);
    }
    // checked before anything is set: a refused join leaves the server uninitialised
    const restored = this.restore ? this.restoredRange(trainer, layout, shard) : undefined;
    const data = restored ? restored.values as Float32Array<ArrayBuffer> : Float32Array.from(values);
    const param = new Tensor(data, [data.length]);
    const optimizer = createOptimizer([param], this.options.optimizer);
    if (restored?.state) optimizer.importState(param, restored.state);
    this.layoutSpecs = layout.map((p) => ({ name: p.name, size: p.size, ...(p.shape ? { shape: [...p.shape] } : {}) }));
    this.initialisedBy = trainer;
    this.wire = precision;
    if (precision !== 'float32') this.wireValues = new Uint16Array(shard.length);
    this.shardInfo = shard;
    this.data = data;
    this.param = param;
    this.optimizer = optimizer;
    if (restored) {
      this.version = restored.version;
      this.metrics.version.set(this.version);
      // elastic: the batch queue goes on from the checkpoint's (on the server whose shard kept it)
      const q = this.restore!.batches();
      if (q && this.options.shard === 0) this.queue = BatchQueue.restore(this.name, q);
    }
  }

  /** This shard's range of the checkpoint to start from, after checking it is this model's. */
  private restoredRange(trainer: string, layout: ParameterSpec[], shard: Shard) {
    const cp = this.restore!;
    const saved = cp.manifest.layout.map(({ offset: _o, ...p }) => p);
    const why = layoutDifference(saved, layout);
    if (why) {
      throw new RpcError(Status.FAILED_PRECONDITION, this.name,
        `parameter server "${this.name}": trainer "${trainer}"'s model is not the one checkpoint ${cp.id} (${cp.dir}) was written for: ${why}`);
    }
    // an elastic job's checkpoint holds the batch queue it goes on from; one of fixed shares holds none
    const elastic = cp.batches() !== undefined;
    if (elastic !== this.options.elastic) {
      throw new RpcError(Status.FAILED_PRECONDITION, this.name, elastic
        ? `parameter server "${this.name}": checkpoint ${cp.id} was written by an elastic job (--min-trainers), whose batches are handed out; resume it with --min-trainers (psrun --trainers MIN:MAX)`
        : `parameter server "${this.name}": checkpoint ${cp.id} was written by a job whose trainers had fixed shares of the data, not by an elastic one (--min-trainers): it records no batch queue to go on from; resume it without --min-trainers`);
    }
    // an elastic job's batches are numbered whatever the number of trainers: any number may resume it
    if (!elastic && cp.manifest.trainers !== this.options.trainers) {
      // a trainer's data share and its steps per epoch depend on the number of trainers: the step
      // count the checkpoint holds would put each trainer at another point of its epochs
      throw new RpcError(Status.FAILED_PRECONDITION, this.name,
        `parameter server "${this.name}": checkpoint ${cp.id} was written by a job of ${cp.manifest.trainers} trainer(s); resume it with as many (this one has ${this.options.trainers}; the number of servers may change)`);
    }
    if (cp.manifest.optimizer !== this.options.optimizer.kind) {
      throw new RpcError(Status.FAILED_PRECONDITION, this.name,
        `parameter server "${this.name}": checkpoint ${cp.id} holds ${cp.manifest.optimizer} state, this server runs ${this.options.optimizer.kind}`);
    }
    return cp.read(shard.start, shard.length);
  }

  private releaseJoins(): void {
    this.lastCall?.cancel();
    this.joinTimer?.cancel();
    this.joinTimer = undefined;
    const ws = this.joinWaiters;
    this.joinWaiters = [];
    for (const w of ws) w.resolve();
  }

  /**
   * Checks `grads` and `scale` completely (before any state changes) and returns the push's
   * gradient as one shard-long fp32 array, to be called when the gradient is used: a 16-bit push
   * (or a loss-scaled one) is widened into `t`'s own buffer, divided by `scale`, only then, so a
   * refused push or a second push of `t` arriving while its first waits never overwrites it.
   */
  private gradientOf(t: TrainerState, grads: unknown, scale: number): () => Float32Array {
    const shard = this.shardInfo!;
    if (typeof scale !== 'number' || !Number.isFinite(scale) || !(scale > 0)) throw errors.wrongType(this.name, 'push loss scale', scale, 'a finite number > 0');
    if (this.wire !== 'float32') {
      if (!(grads instanceof Uint16Array)) throw errors.wrongType(this.name, 'pushed gradient', grads, `a Uint16Array of ${this.wire} values (the precision it was joined with)`);
      if (grads.length !== shard.length) throw errors.wrongLength(this.name, 'pushed gradient', grads.length, shard.length);
      const wire = this.wire;
      return () => {
        const wide = t.wide ??= new Float32Array(shard.length);
        fromWire(wire, grads, wide);
        if (scale !== 1) getBackend('cpu').kernels.scale(1 / scale, wide);
        return wide;
      };
    }
    if (scale !== 1) {
      const g = this.gradientOf(t, grads, 1);
      return () => {
        const wide = t.wide ??= new Float32Array(shard.length);
        wide.set(g());
        getBackend('cpu').kernels.scale(1 / scale, wide);
        return wide;
      };
    }
    if (grads instanceof Float32Array) {
      if (grads.length !== shard.length) throw errors.wrongLength(this.name, 'pushed gradient', grads.length, shard.length);
      return () => grads;
    }
    if (grads === null || typeof grads !== 'object' || ArrayBuffer.isView(grads) || Array.isArray(grads)) {
      throw errors.wrongType(this.name, 'pushed gradient', grads, 'a Float32Array or an object of Float32Arrays by parameter name');
    }
    const byName = grads as Record<string, unknown>;
    const held = new Map(shard.slices.map((s) => [s.name, s]));
    for (const key of Object.keys(byName)) {
      const s = held.get(key);
      if (!s) throw errors.unknownParameter(this.name, key, [...held.keys()]);
      const g = byName[key];
      if (!(g instanceof Float32Array)) throw errors.wrongType(this.name, `gradient of '${key}'`, g, 'a Float32Array');
      if (g.length !== s.length) throw errors.wrongLength(this.name, `gradient of '${key}' (elements ${s.offset}..${s.offset + s.length} of it are held here)`, g.length, s.length);
    }
    for (const s of shard.slices) if (!(s.name in byName)) throw errors.missingParameter(this.name, s.name);
    const out = new Float32Array(shard.length);
    let at = 0;
    for (const s of shard.slices) {
      out.set(byName[s.name] as Float32Array, at);
      at += s.length;
    }
    return () => out;
  }

  private async apply(trainer: string, version: number, grads: Gradients, scale: number, checkpoint: number, batch = -1): Promise<TrainerState> {
    this.checkOpen();
    if (!this.shardInfo) throw errors.notInitialised(this.name);
    const t = this.liveTrainer(trainer);
    if (!Number.isSafeInteger(version) || version < 0) throw errors.wrongType(this.name, 'pushed version', version, 'an integer >= 0');
    // refused before anything is read or counted: the round keeps the first push's gradient
    if (this.options.consistency === 'sync' && t.pushedRound === this.version) throw errors.doublePush(this.name, trainer, this.version);
    const gradient = this.gradientOf(t, grads, scale);
    if (!Number.isSafeInteger(checkpoint) || checkpoint < -1) throw errors.wrongType(this.name, 'checkpoint number of a push', checkpoint, 'an integer >= 0 (or absent)');
    if (!Number.isSafeInteger(batch) || batch < -1) throw errors.wrongType(this.name, 'batch number of a push', batch, 'an integer >= 0 (or absent)');
    if (batch >= 0) {
      if (!this.queue) throw new RpcError(Status.FAILED_PRECONDITION, this.name, `parameter server "${this.name}": a push for batch ${batch}, but no batch was handed out here (ps.batch)`);
      this.queue.checkHeld(trainer, batch);
    }
    this.liveness.seen(trainer);
    this.counts.pushes++;
    this.metrics.pushes.inc();
    this.metrics.bytesIn.inc(ArrayBuffer.isView(grads) ? grads.byteLength : this.shardInfo.length * 4);
    this.metrics.staleness.observe(Math.max(0, this.version - version));
    if (this.options.consistency === 'sync') {
      t.pushedRound = this.version;
      this.roundGrads.push({ trainer, grad: gradient() });
      if (batch >= 0) this.roundBatches.push(trainer);
      if (checkpoint > this.roundCheckpoint) this.roundCheckpoint = checkpoint;
      const answered = new Promise<void>((resolve, reject) => this.roundWaiters.push({ resolve, reject }));
      this.maybeFinishRound();
      if (this.lost.size > 0) this.dropSilent([...this.lost]);
      await answered;
      // the round has stepped: the pushed gradient is dead, and its payload can be reused now
      if (ArrayBuffer.isView(grads)) releaseReceived(grads);
      return t;
    }
    if (this.options.consistency === 'ssp') await this.sspGate(t);
    if (!t.live) throw errors.notJoined(this.name, trainer);
    const lead = t.clock - this.slowestClock();
    if (lead > this.counts.maxLead) this.counts.maxLead = lead;
    this.step(gradient());
    if (ArrayBuffer.isView(grads)) releaseReceived(grads);
    t.clock++;
    if (batch >= 0) this.queue!.complete(trainer);
    const wait = this.requestCheckpoint(checkpoint);
    if (wait) await wait;
    this.wakeBlocked();
    return t;
  }

  private step(grad: Float32Array): void {
    this.optimizer!.update(this.param!, this.data, grad);
    this.version++;
    this.metrics.steps.inc();
    this.metrics.version.set(this.version);
  }

  /** sync: steps when every live trainer has pushed in this round. */
  private maybeFinishRound(): void {
    if (this.roundGrads.length === 0) return;
    if (this.joinedCount < this.options.trainers) return;
    for (const t of this.trainers.values()) if (t.live && !t.idle && t.pushedRound !== this.version) return;
    const grads = this.roundGrads.sort((a, b) => (a.trainer < b.trainer ? -1 : a.trainer > b.trainer ? 1 : 0)).map((p) => p.grad);
    const waiters = this.roundWaiters;
    const checkpoint = this.roundCheckpoint;
    const batched = this.roundBatches;
    this.roundBatches = [];
    this.roundGrads = [];
    this.roundWaiters = [];
    this.roundCheckpoint = -1;
    let g: Float32Array;
    if (grads.length === 1) {
      g = grads[0]!;
    } else {
      g = this.scratch ??= new Float32Array(this.data.length);
      average(g, grads);
    }
    try {
      this.step(g);
    } catch (e) {
      for (const w of waiters) w.reject(e);
      return;
    }
    for (const t of this.trainers.values()) if (t.pushedRound === this.version - 1) t.clock++;
    for (const name of batched) this.queue!.complete(name);
    // the round's state, before any trainer sees it: every server takes the same round's
    const wait = this.requestCheckpoint(checkpoint);
    if (wait) void wait.then(() => { for (const w of waiters) w.resolve(); });
    else for (const w of waiters) w.resolve();
  }

  private slowestClock(): number {
    let min = Infinity;
    for (const t of this.trainers.values()) if (t.live && !t.idle && t.clock < min) min = t.clock;
    return min === Infinity ? 0 : min;
  }

  private async sspGate(t: TrainerState): Promise<void> {
    while (t.live && t.clock - this.slowestClock() > this.options.staleness) {
      const woken = new Promise<void>((resolve, reject) => this.blocked.push({ trainer: t, waiter: { resolve, reject } }));
      if (this.lost.size > 0) this.dropSilent([...this.lost]);
      await woken;
    }
  }

  private wakeBlocked(): void {
    if (this.blocked.length === 0) return;
    const slowest = this.slowestClock();
    const still: typeof this.blocked = [];
    for (const b of this.blocked) {
      if (!b.trainer.live || b.trainer.clock - slowest <= this.options.staleness) b.waiter.resolve();
      else still.push(b);
    }
    this.blocked = still;
  }

  private liveCount(): number {
    let n = 0;
    for (const t of this.trainers.values()) if (t.live) n++;
    return n;
  }

  private remove(t: TrainerState): void {
    t.live = false;
    // its batch (elastic jobs) goes to the live trainers, unless its push is in the open round
    if (!this.roundBatches.includes(t.name)) this.queue?.release(t.name);
    this.liveness.forget(t.name);
    this.leftCount++;
    this.metrics.liveTrainers.set(this.liveCount());
    this.maybeFinishRound();
    this.wakeBlocked();
    if (this.joinedCount >= this.options.trainers && this.liveCount() === 0) this.doneResolve();
  }

  /**
   * A trainer's agent is lost: dropped now if anyone waits on it, or, with restartTimeoutMs, once
   * that long has passed without it joining again.
   */
  private peerLost(w: string): void {
    this.lost.add(w);
    const t = this.trainers.get(w);
    // elastic: a lost trainer's batch is waited on by the others (the end of the job), so it is
    // dropped whether or not a round waits on it, and its batch goes back to the queue
    const drop = () => {
      const lost = this.trainers.get(w);
      if (this.queue && lost?.live) {
        this.droppedNames.push(w);
        this.remove(lost);
      } else this.dropSilent([w]);
    };
    if (this.options.restartTimeoutMs > 0 && t?.live && !this.awaited.has(w)) {
      const s = (this.options.restartTimeoutMs / 1000).toFixed(1);
      this.log(`${this.name}: trainer "${w}" is lost; waiting up to ${s} s for it to rejoin (--restart-timeout) before rounds go on without it`);
      this.awaited.set(w, this.clock.after(this.options.restartTimeoutMs, () => {
        this.awaited.delete(w);
        if (!this.lost.has(w)) return;
        this.log(`${this.name}: trainer "${w}" did not rejoin within ${s} s; rounds go on without it`);
        drop();
      }));
      return;
    }
    drop();
  }

  /**
   * The liveness watchdog's policy: of the trainers silent for liveTimeoutMs, drops those that
   * others wait on (sync: not yet pushed in this round; ssp: at the slowest clock). A silent
   * trainer nobody waits on stays (it is looked at again on the watchdog's next round).
   */
  private dropSilent(silent: string[]): void {
    const waiting = this.roundWaiters.length > 0 || this.blocked.length > 0;
    if (!waiting) return;
    const slowest = this.slowestClock();
    for (const name of silent) {
      const t = this.trainers.get(name);
      if (!t || !t.live || this.awaited.has(name)) continue;
      const blocking = this.options.consistency === 'sync' ? t.pushedRound !== this.version : t.clock === slowest;
      if (blocking) {
        this.droppedNames.push(t.name);
        this.remove(t);
      }
    }
  }

  private reply(t: TrainerState | undefined): PullReply {
    this.counts.pulls++;
    this.metrics.pulls.inc();
    let values: Float32Array | Uint16Array = this.data;
    if (this.wireValues) {
      // once per version, however many trainers pull it
      if (this.wireVersion !== this.version) {
        toWire(this.wire, this.data, this.wireValues);
        this.wireVersion = this.version;
      }
      values = this.wireValues;
    }
    this.metrics.bytesOut.inc(values.byteLength);
    return { version: this.version, values, clock: t?.clock ?? 0 };
  }
}


/** out = mean of `grads` (all the same length), with the native vector kernels. */
function average(out: Float32Array, grads: Float32Array[]): void {
  const k = getBackend('cpu').kernels;
  if (grads.length >= 2) k.add(grads[0]!, grads[1]!, out);
  else out.set(grads[0]!);
  for (let i = 2; i < grads.length; i++) k.axpy(1, grads[i]!, out);
  k.scale(1 / grads.length, out);
}
