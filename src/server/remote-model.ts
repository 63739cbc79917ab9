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
//   rf.join / rf.leave   the live set: the host is `done` once the expected trainers have joined
//              and every one of them has left, which is when ps-server shuts down.
// A trainer that dies never calls rf.leave: when no trainer has called the host (a forward or an
// rf.* function) for `liveTimeoutMs` while some are still live, or while fewer than expected have
// joined, the host drops them (named in `stats().dropped`) and is done, so nothing waits forever.
import type { Agent, RRef } from '../rpc/index.js';
import type { Tensor } from '../tensor/index.js';
import { errors } from './errors.js';

export const RF_FUNCTIONS = {
  model: 'rf.model',
  params: 'rf.params',
  join: 'rf.join',
  leave: 'rf.leave',
} as const;

/** What the host needs of a model: a forward pass and its parameters (an nn Module fits). */
export interface HostedModel {
  forward(x: Tensor): Tensor;
  parameters(): Tensor[];
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
}

export interface RemoteModelStats {
  name: string;
  joined: number;
  left: number;
  forwards: number;
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
  private lastCall = performance.now();
  private watchdog?: NodeJS.Timeout;
  private readonly liveTimeoutMs: number;
  private paramRefs?: RRef<Tensor>[];
  private doneResolve!: () => void;
  /** Resolves once the expected trainers have joined and every one of them has left. */
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
    this.liveTimeoutMs = liveTimeoutMs;
    this.name = name;
    this.expected = options.trainers;
    const counted = options.model;
    // counts forwards without a wrapper on the hot path beyond one increment
    this.shared = new SharedModel({ forward: (x) => { this.forwards++; this.lastCall = performance.now(); return counted.forward(x); }, parameters: () => counted.parameters() });
    this.done = new Promise((resolve) => { this.doneResolve = () => { clearInterval(this.watchdog); resolve(); }; });
  }

  /** Drops every trainer still awaited once no trainer has called for liveTimeoutMs. */
  private watch(): void {
    if (performance.now() - this.lastCall < this.liveTimeoutMs) return;
    this.dropped.push(...this.live);
    const missing = this.expected - this.joined;
    if (missing > 0) this.dropped.push(...Array.from({ length: missing }, (_, i) => `(trainer ${this.joined + i + 1} of ${this.expected}, never joined)`));
    this.live.clear();
    this.doneResolve();
  }

  /** Registers the `rf.*` functions on `agent` (before its rendezvous, so no call can miss them). */
  register(agent: Agent): this {
    this.shared.waitForStep = (id) => agent.distAutograd.whenStepped(id);
    this.lastCall = performance.now();
    this.watchdog = setInterval(() => this.watch(), Math.max(10, Math.min(1000, this.liveTimeoutMs / 4)));
    this.watchdog.unref();
    agent.register(RF_FUNCTIONS.model, () => { this.lastCall = performance.now(); return this.shared; });
    agent.register(RF_FUNCTIONS.params, () => {
      // one RRef per parameter, made once: forks to every trainer share the owner's entry
      this.paramRefs ??= this.shared.model.parameters().map((p) => agent.rref(p));
      return this.paramRefs;
    });
    agent.register(RF_FUNCTIONS.join, (trainer: unknown) => {
      this.lastCall = performance.now();
      if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
      if (!this.live.has(trainer)) {
        this.live.add(trainer);
        this.joined++;
      }
      return this.shared.model.parameters().length;
    });
    agent.register(RF_FUNCTIONS.leave, (trainer: unknown) => {
      this.lastCall = performance.now();
      if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
      if (this.live.delete(trainer)) {
        this.left++;
        if (this.joined >= this.expected && this.live.size === 0) this.doneResolve();
      }
      return null;
    });
    return this;
  }

  stats(): RemoteModelStats {
    return { name: this.name, joined: this.joined, left: this.left, forwards: this.forwards, dropped: [...this.dropped] };
  }
}
