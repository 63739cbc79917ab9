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
  constructor(readonly model: HostedModel) {}

  /** The forward pass on the server; in a context, its graph stays here for the backward. */
  forward(x: Tensor): Tensor {
    return this.model.forward(x);
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
}

export interface RemoteModelStats {
  name: string;
  joined: number;
  left: number;
  forwards: number;
}

export class RemoteModelHost {
  readonly name: string;
  readonly shared: SharedModel;
  private readonly expected: number;
  private readonly live = new Set<string>();
  private joined = 0;
  private left = 0;
  private forwards = 0;
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
    this.name = name;
    this.expected = options.trainers;
    const counted = options.model;
    // counts forwards without a wrapper on the hot path beyond one increment
    this.shared = new SharedModel({ forward: (x) => { this.forwards++; return counted.forward(x); }, parameters: () => counted.parameters() });
    this.done = new Promise((resolve) => { this.doneResolve = resolve; });
  }

  /** Registers the `rf.*` functions on `agent` (before its rendezvous, so no call can miss them). */
  register(agent: Agent): this {
    agent.register(RF_FUNCTIONS.model, () => this.shared);
    agent.register(RF_FUNCTIONS.params, () => {
      // one RRef per parameter, made once: forks to every trainer share the owner's entry
      this.paramRefs ??= this.shared.model.parameters().map((p) => agent.rref(p));
      return this.paramRefs;
    });
    agent.register(RF_FUNCTIONS.join, (trainer: unknown) => {
      if (typeof trainer !== 'string' || trainer.length === 0) throw errors.badTrainer(this.name, trainer);
      if (!this.live.has(trainer)) {
        this.live.add(trainer);
        this.joined++;
      }
      return this.shared.model.parameters().length;
    });
    agent.register(RF_FUNCTIONS.leave, (trainer: unknown) => {
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
    return { name: this.name, joined: this.joined, left: this.left, forwards: this.forwards };
  }
}
