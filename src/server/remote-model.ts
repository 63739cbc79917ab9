// RemoteModelHost: the `remote-forward` strategy's server side. One model lives in the server's
// process and every trainer reaches the same instance through an RRef (the exercise of the book's
// chapter 7, where torch's RPC trainers share one model on the parameter server).
//
// The host only hands out references and counts trainers; the work is the RPC layer's:
//   rf.model   the shared model (trainers take an RRef to it with `agent.remote(server, 'rf.model')`
//              and call `rref.rpcSync().forward(x)` inside a distributed autograd context, so the
//              forward's graph is kept here under that context)
//   rf.params  RRefs to the model's parameters, in `parameters()` order, for a DistributedOptimizer:
//              each trainer's optimizer steps them here with the gradients of its own context only,
//              so concurrent trainers never see each other's gradients (no shared `.grad`)
//   rf.buffers copies of the model's buffers (BatchNorm2d running statistics, updated by the
//              forwards run here), in `buffers()` order: what a trainer loads into its local twin
//              before it evaluates, so the result keeps the statistics of every trainer's batches
//   rf.optimizer the trainer binds its DistributedOptimizer (whose optimizer the rpc layer's
//              OptimizerHost keeps here, one per trainer) to its rank, before its first step: the
//              host counts the steps each rank's optimizer applies here (OptimizerHost.onStep), and
//              answers with the steps already applied for that rank, where the trainer starts (0,
//              or a restored checkpoint's count)
//   rf.join / rf.leave   the live set (a join may carry the trainer's model layout, names and
//              shapes: a trainer whose model differs from the hosted one is refused, naming the
//              first differing parameter): the host is `done` once the expected trainers have joined
//              and every one of them has left, which is when ps-server shuts down.
// A trainer that dies never calls rf.leave. The host watches its trainers with the liveness rule of
// src/rpc/liveness.ts: a trainer's silence clock starts at its rf.join and is reset by its rf.*
// calls and by every forward (a forward through the RRef does not say who sent it, so it counts for
// every live trainer); the trainers still expected to join are watched as one more peer whose clock
// starts at the end of the rendezvous. Once every watched peer is silent for `liveTimeoutMs` (no
// trainer is talking and some are still awaited), the host drops them (named in `stats().dropped`)
// and is done, so nothing waits forever.
//
// Checkpoints (`checkpoints`, src/server/remote-model-checkpoint.ts): the host's step count is the
// optimizer steps its trainers' optimizers applied here, all trainers together; when one is due
// (--checkpoint-steps, --checkpoint-every) the model, its buffers and every rank's optimizer state
// are copied inside that step's handler and written in the background. Once the trainers are done
// the host writes one last checkpoint, and `done` waits for it (rejects when it cannot be written).
// With `restore`, the model, buffers and step counts come from the checkpoint at construction,
// and each rank's optimizer state at its rf.optimizer.
import { Liveness, type Agent, type Clock, type RRef } from '../rpc/index.js';
import { layoutDifference, layoutOf, type Optimizer, type Tensor } from '../tensor/index.js';
import { errors } from './errors.js';
import { RemoteModelCheckpoints, rfErrors, type HostCounts, type RemoteModelCheckpointOptions, type TrainerSteps } from './remote-model-checkpoint.js';
import { checkSpecs, type ParameterSpec } from './shard-plan.js';

/** The liveness key of the trainers expected but not joined yet. */
const AWAITED = '(trainers not joined yet)';

export const RF_FUNCTIONS = {
  model: 'rf.model',
  params: 'rf.params',
  buffers: 'rf.buffers',
  join: 'rf.join',
  leave: 'rf.leave',
  optimizer: 'rf.optimizer',
} as const;

/** What rf.optimizer answers: where the trainer starts. */
export interface RemoteOptimizerBinding {
  /** Steps the host applied with this trainer rank's gradients (a restored checkpoint's count, or 0): the trainer goes on after them. */
  steps: number;
  /** The host's steps, every trainer's together. */
  version: number;
}

/** What the host needs of a model: a forward pass and its parameters (an nn Module fits). */
export interface HostedModel {
  forward(x: Tensor): Tensor;
  parameters(): Tensor[];
  /** Its buffers (running statistics), when it has any: what rf.buffers hands out. */
  buffers?(): Tensor[];
}

/** The object behind the trainers' RRef: its methods are what `rref.rpcSync()` can call. */
export class SharedModel {
  /** @internal Set by the host: resolves once a step with context `id`'s gradients was applied here. */
  waitForStep?: (id: number) => Promise<void>;

  constructor(readonly model: HostedModel) {}

  /**
   * The forward pass on the server; in a context, its graph stays here for the backward.
   * `afterStep`: the id of the caller's previous distributed autograd context; the forward then
   * runs only once the optimizer step with that context's gradients has been applied here, so a
   * trainer may send its next forward without waiting for the previous step's answer (see
   * src/trainer/remote-forward.ts) and still gets exactly the sequential result.
   */
  forward(x: Tensor, afterStep?: number): Tensor | Promise<Tensor> {
    if (afterStep === undefined || afterStep === 0 || !this.waitForStep) return this.model.forward(x);
    if (typeof afterStep !== 'number' || !Number.isSafeInteger(afterStep) || afterStep < 0) {
      throw errors.badOption('model', 'afterStep', afterStep, 'expected the id of a distributed autograd context');
    }
    return this.waitForStep(afterStep).then(() => this.model.forward(x));
  }

  /** Parameter count (a cheap remote call for checks). */
  parameterCount(): number {
    return this.model.parameters().length;
  }
}

export interface RemoteModelHostOptions {
  /** The server's worker name (for messages). */
  name: string;
  model: HostedModel;
  /** Trainers expected: `done` waits for this many joins and as many leaves. */
  trainers: number;
  /** Silence (no call from any trainer) after which the host stops waiting, in ms (default 60,000). */
  liveTimeoutMs?: number;
  /** Time source of the liveness watchdog and of --checkpoint-every (default: the system clock; tests pass a ManualClock). */
  clock?: Clock;
  /** Checkpoints of the model and its optimizer state (openRemoteModelCheckpoints builds them from the flags). */
  checkpoints?: RemoteModelCheckpointOptions;
}

export interface RemoteModelStats {
  name: string;
  joined: number;
  left: number;
  forwards: number;
  /** Optimizer steps applied here by the trainers' optimizers, all together (a restored checkpoint's count included). */
  steps: number;
  /** Trainers dropped after `liveTimeoutMs` of silence (joined but never left, or never joined). */
  dropped: string[];
}

export class RemoteModelHost {
  readonly name: string;
  readonly shared: SharedModel;
  private readonly expected: number;
  private readonly live = new Set<string>();
  private joined = 0;
  private left = 0;
  private forwards = 0;
  private readonly dropped: string[] = [];
  private readonly liveness: Liveness;
  /** The model as given (the shared one wraps it to count forwards). */
  private readonly hosted: HostedModel;
  private paramRefs?: RRef<Tensor>[];
  /** Optimizer steps applied here, every rank's together. */
  private steps = 0;
  /** Each trainer rank's optimizer and steps; the ranks of the bound optimizers by their DistributedOptimizer id. */
  private readonly ranks: TrainerSteps[];
  private readonly rankOf = new Map<string, number>();
  private readonly checkpoints?: RemoteModelCheckpoints;
  private finished = false;
  private doneResolve!: () => void;
  private doneReject!: (e: unknown) => void;
  /**
   * Resolves once the expected trainers have joined and every one of them has left (or were
   * dropped); with checkpoints, once the last checkpoint is on disk too (rejects when it cannot be written).
   */
  readonly done: Promise<void>;

  constructor(options: RemoteModelHostOptions) {
    const name = typeof options?.name === 'string' && options.name.length > 0 ? options.name : '';
    if (!name) throw errors.badOption('?', 'name', options?.name, 'expected a non-empty string');
    if (!options.model || typeof options.model.forward !== 'function' || typeof options.model.parameters !== 'function') {
      throw errors.badOption(name, 'model', typeof options.model, 'expected an object with forward(x) and parameters()');
    }
    if (!Number.isSafeInteger(options.trainers) || options.trainers < 1) throw errors.badOption(name, 'trainers', options.trainers, 'expected an integer >= 1');
    const liveTimeoutMs = options.liveTimeoutMs ?? 60_000;
    if (!(liveTimeoutMs > 0)) throw errors.badOption(name, 'liveTimeoutMs', liveTimeoutMs, 'expected a number > 0');
    this.liveness = new Liveness({ timeoutMs: liveTimeoutMs, clock: options.clock, onSilent: (silent) => this.dropSilent(silent) });
    this.name = name;
    this.expected = options.trainers;
    const counted = options.model;
    this.hosted = counted;
    // counts forwards without a wrapper on the hot path beyond one increment
    this.shared = new SharedModel({ forward: (x) => { this.forwards++; this.heardFromTrainers(); return counted.forward(x); }, parameters: () => counted.parameters() });
    this.ranks = Array.from({ length: this.expected }, () => ({ applied: 0 }));
    if (options.checkpoints) {
      const named = (counted as HostedModel & { namedBuffers?: () => [string, Tensor][] }).namedBuffers?.()
        ?? (counted.buffers?.() ?? []).map((b, i): [string, Tensor] => [`buffer${i}`, b]);
      const now = options.clock ? () => options.clock!.now() : undefined;
      // a checkpoint of another model, job size or optimizer throws here, before anything is served
      this.checkpoints = new RemoteModelCheckpoints({ name, trainers: this.expected, params: counted.parameters(), layout: this.layout(), buffers: named }, options.checkpoints, now);
      const r = this.checkpoints.restored;
      if (r) {
        this.steps = r.steps;
        r.applied.forEach((n, k) => { this.ranks[k]!.applied = n; });
      }
    }
    this.done = new Promise((resolve, reject) => { this.doneResolve = resolve; this.doneReject = reject; });
    this.done.catch(() => { /* the caller of done hears it */ });
  }

  /** The trainers are done (all left, or dropped): the last checkpoint is written, then `done` settles. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.liveness.stop();
    if (!this.checkpoints) {
      this.doneResolve();
      return;
    }
    this.checkpoints.final(this.counts()).then(this.doneResolve, this.doneReject);
  }

  private counts(): HostCounts {
    return { steps: this.steps, forwards: this.forwards, trainers: this.ranks };
  }

  /** Resolves once every checkpoint already copied is on disk (or failed, and said so): a SIGTERM handler's flush. */
  async flushCheckpoints(): Promise<void> {
    await this.checkpoints?.flush();
  }

  /** A step of DistributedOptimizer `id` was applied here: counted when it is a trainer's (bound with rf.optimizer), and checkpointed when one is due. */
  private stepped(id: string): void {
    const rank = this.rankOf.get(id);
    if (rank === undefined) return;
    this.steps++;
    this.ranks[rank]!.applied++;
    this.checkpoints?.afterStep(this.counts());
  }

  /** rf.optimizer: binds trainer `trainer`'s DistributedOptimizer `id` (kept here by the OptimizerHost) to trainer rank `rank`. */
  private bindOptimizer(agent: Agent, trainer: unknown, rank: unknown, id: unknown): RemoteOptimizerBinding {
    if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
    if (!this.live.has(trainer)) throw rfErrors.bind(this.name, trainer, 'the trainer has not joined (call rf.join first) or has left');
    if (!Number.isSafeInteger(rank) || (rank as number) < 0 || (rank as number) >= this.expected) {
      throw rfErrors.badBind(this.name, 'rank', rank, `expected the trainer's rank in [0, ${this.expected})`);
    }
    if (typeof id !== 'string') throw rfErrors.badBind(this.name, 'optimizer id', id, 'expected a DistributedOptimizer\'s id');
    const r = rank as number;
    const optimizer: Optimizer<unknown> | undefined = agent.optimizerHost.optimizer(id);
    if (!optimizer) throw rfErrors.unknownOptimizer(this.name, id);
    const slot = this.ranks[r]!;
    if (slot.optimizer && slot.optimizer !== optimizer) throw rfErrors.bind(this.name, trainer, `trainer rank ${r} is already bound to trainer "${slot.trainer}"'s optimizer`);
    const params = this.hosted.parameters();
    if (optimizer.params.length !== params.length || optimizer.params.some((p, i) => p !== params[i])) {
      throw rfErrors.bind(this.name, trainer, `it steps ${optimizer.params.length} tensors; it must step the hosted model's ${params.length} parameters, in rf.params order`);
    }
    if (!slot.optimizer) {
      this.checkpoints?.importInto(r, optimizer, trainer);
      slot.optimizer = optimizer;
      slot.trainer = trainer;
      this.rankOf.set(id, r);
    }
    this.liveness.seen(trainer);
    return { steps: slot.applied, version: this.steps };
  }

  /**
   * Starts watching: the trainers not yet joined are awaited from now on. `register` calls it when
   * the agent's rendezvous completes; call it yourself when the host serves without `register`.
   */
  start(): this {
    if (this.joined < this.expected && !this.liveness.has(AWAITED)) this.liveness.seen(AWAITED);
    this.liveness.start();
    return this;
  }

  /** Traffic that names no trainer (a forward, an RRef request) resets every live trainer's silence clock. */
  private heardFromTrainers(): void {
    for (const t of this.live) this.liveness.seen(t);
  }

  /** The liveness policy: once every watched peer is silent, drops every trainer still awaited. */
  private dropSilent(silent: string[]): void {
    if (silent.length < this.liveness.size) return;
    this.dropped.push(...this.live);
    const missing = this.expected - this.joined;
    if (missing > 0) this.dropped.push(...Array.from({ length: missing }, (_, i) => `(trainer ${this.joined + i + 1} of ${this.expected}, never joined)`));
    this.live.clear();
    this.finish();
  }

  /** Registers the `rf.*` functions on `agent` (before its rendezvous, so no call can miss them). */
  register(agent: Agent): this {
    this.shared.waitForStep = (id) => agent.distAutograd.whenStepped(id);
    agent.optimizerHost.onStep((id) => this.stepped(id));
    void agent.ready.then(() => this.start());
    agent.register(RF_FUNCTIONS.model, () => { this.heardFromTrainers(); return this.shared; });
    agent.register(RF_FUNCTIONS.params, () => {
      // one RRef per parameter, made once: forks to every trainer share the owner's entry
      this.paramRefs ??= this.shared.model.parameters().map((p) => agent.rref(p));
      return this.paramRefs;
    });
    agent.register(RF_FUNCTIONS.buffers, () => {
      this.heardFromTrainers();
      return (this.hosted.buffers?.() ?? []).map((b) => b.toTypedArray());
    });
    agent.register(RF_FUNCTIONS.join, (trainer: unknown, layout?: ParameterSpec[]) => {
      if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
      if (layout !== undefined) {
        checkSpecs(layout, `rf.join on "${this.name}"`);
        const why = layoutDifference(this.layout(), layout);
        if (why) throw errors.modelMismatch(this.name, trainer, why);
      }
      if (!this.live.has(trainer)) {
        this.live.add(trainer);
        this.joined++;
        if (this.joined >= this.expected) this.liveness.forget(AWAITED);
      }
      this.liveness.seen(trainer);
      this.start();
      return this.shared.model.parameters().length;
    });
    agent.register(RF_FUNCTIONS.leave, (trainer: unknown) => {
      if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
      if (this.live.delete(trainer)) {
        this.left++;
        this.liveness.forget(trainer);
        if (this.joined >= this.expected && this.live.size === 0) this.finish();
      }
      return null;
    });
    agent.register(RF_FUNCTIONS.optimizer, (trainer: unknown, rank: unknown, id: unknown) => this.bindOptimizer(agent, trainer, rank, id));
    return this;
  }

  /** The hosted model's parameters as trainers describe theirs at rf.join (names when it has them, and shapes). */
  layout(): ParameterSpec[] {
    const m = this.hosted as HostedModel & { namedParameters?: () => [string, Tensor][] };
    const named = m.namedParameters?.() ?? m.parameters().map((p, i): [string, Tensor] => [`parameter${i}`, p]);
    return layoutOf({ namedParameters: () => named });
  }

  stats(): RemoteModelStats {
    return { name: this.name, joined: this.joined, left: this.left, forwards: this.forwards, steps: this.steps, dropped: [...this.dropped] };
  }
}
