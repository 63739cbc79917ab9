// DistributedOptimizer: steps parameters that live on other workers, each on its owner, with the
// gradients a distributed autograd context accumulated there (torch.distributed.optim).
//
// The parameters are given as RRefs to tensors. They are grouped by owner; each owner builds one
// local optimizer over its group (once, at construction, by `__psrpc.optim.create`) and keeps it
// with its state (momentum, moments) under the DistributedOptimizer's id. `step(ctx)` asks every
// owner at once to update its parameters with the gradients of that context found in its own
// gradient map: gradients never go through `.grad`, so trainers with separate contexts can share
// one model. Optimizer classes cannot travel over the wire, so they are named: the built-in SGD,
// Adam and AdamW by class or as 'sgd' / 'adam' / 'adamw', others by a name registered on every
// owner with `OptimizerHost.register`.
import { Adam, AdamW, SGD, Tensor, type Optimizer } from '../tensor/index.js';
import type { Agent } from './agent.js';
import type { DistAutogradContext } from './dist-autograd.js';
import { RpcError, Status } from './errors.js';
import { RRef } from './rref.js';

export const OPTIM_FN = {
  create: '__psrpc.optim.create',
  step: '__psrpc.optim.step',
  release: '__psrpc.optim.release',
} as const;

/** Builds a local optimizer over `params` from JSON-able options. */
export type OptimizerFactory = (params: Tensor[], options: Record<string, unknown>) => Optimizer<unknown>;

/** An optimizer class with the tensor layer's constructor shape `(params, options)`. */
export type OptimizerClass = new (params: Iterable<Tensor>, options: any) => Optimizer<unknown>;

const BUILTIN: ReadonlyArray<readonly [string, OptimizerClass]> = [['sgd', SGD], ['adam', Adam], ['adamw', AdamW]];

/** What the owner side needs from its agent. */
export interface OptimizerHostLink {
  readonly name: string;
  /** Sends a call over the normal path without autograd recording; reserved names allowed. */
  sendRaw(to: string, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown>;
  /** The gradient map of a distributed autograd context known on this worker (throws otherwise). */
  gradients(ctxId: number): Map<Tensor, Float32Array>;
  /** Tells the context that a step with its gradients was applied (`DistAutograd.whenStepped`). */
  stepped?(ctxId: number): void;
}

const bad = (self: string, what: string, value: unknown, why: string) =>
  new RpcError(Status.INVALID_ARGUMENT, self, `invalid ${what}=${typeof value === 'string' ? JSON.stringify(value) : String(value)}: ${why}`);

/** Hears each step an OptimizerHost applies: DistributedOptimizer `id`'s `optimizer` with context `ctxId`'s gradients. */
export type OptimizerStepListener = (id: string, ctxId: number, optimizer: Optimizer<unknown>) => void;

/** One worker's side: the optimizers it keeps for DistributedOptimizers, and the kinds it knows. */
export class OptimizerHost {
  private readonly kinds = new Map<string, OptimizerFactory>(BUILTIN.map(([n, C]) => [n, (p, o) => new C(p, o)]));
  private readonly live = new Map<string, { optimizer: Optimizer<unknown>; refs: RRef[] }>();
  private readonly stepListeners = new Set<OptimizerStepListener>();
  private seq = 0;

  /** @internal */
  constructor(readonly link: OptimizerHostLink) {}

  /** Makes `name` usable as a DistributedOptimizer kind whose parameters this worker owns. */
  register(name: string, factory: OptimizerFactory): void {
    if (typeof name !== 'string' || name.length === 0) throw bad(this.link.name, 'optimizer name', name, 'expected a non-empty string');
    if (typeof factory !== 'function') throw bad(this.link.name, 'optimizer factory', typeof factory, 'expected a function');
    if (this.kinds.has(name)) throw new RpcError(Status.ALREADY_EXISTS, this.link.name, `optimizer kind "${name}" is already registered on worker "${this.link.name}"`);
    this.kinds.set(name, factory);
  }

  /** Optimizers kept here for DistributedOptimizers (for tests and monitoring). */
  get size(): number {
    return this.live.size;
  }

  /**
   * The local optimizer kept here for DistributedOptimizer `id` (its parameters and state: what a
   * host that checkpoints the model it owns copies and restores), or undefined when none is.
   */
  optimizer(id: string): Optimizer<unknown> | undefined {
    return this.live.get(id)?.optimizer;
  }

  /**
   * Calls `listener` inside every step's handler, right after its updates and before its answer
   * and before any `whenStepped` waiter runs: what it copies is the state after exactly that step
   * (src/server/remote-model.ts counts the steps and checkpoints there). It must not throw or
   * block. Returns the function that removes it.
   */
  onStep(listener: OptimizerStepListener): () => void {
    this.stepListeners.add(listener);
    return () => { this.stepListeners.delete(listener); };
  }

  /** @internal A globally unique id for a new DistributedOptimizer. */
  newId(): string {
    return `${this.link.name}/optim#${++this.seq}`;
  }

  /** @internal */
  internalFunctions(): Map<string, (...args: unknown[]) => unknown> {
    const self = this.link.name;
    return new Map<string, (...args: unknown[]) => unknown>([
      [OPTIM_FN.create, async (id, kind, options, refs) => {
        if (typeof id !== 'string') throw bad(self, 'optimizer id', id, 'expected a string');
        if (this.live.has(id)) throw new RpcError(Status.ALREADY_EXISTS, self, `optimizer ${id} already exists on "${self}"`);
        const factory = typeof kind === 'string' ? this.kinds.get(kind) : undefined;
        if (!factory) throw bad(self, 'optimizer kind', kind, `not registered on worker "${self}" (known: ${[...this.kinds.keys()].join(', ')})`);
        if (!Array.isArray(refs) || !refs.every((r) => r instanceof RRef)) throw bad(self, 'parameter refs', typeof refs, 'expected an array of RRefs');
        const held = refs as RRef[];
        try {
          const params = await Promise.all(held.map(async (r, i) => {
            if (!r.isOwner()) throw bad(self, `parameter ${i}`, r.id, `owned by "${r.ownerName}", not "${self}"`);
            const v = await r.toHere();
            if (!(v instanceof Tensor)) throw bad(self, `parameter ${i}`, r.id, 'the RRef does not hold a Tensor');
            return v as Tensor;
          }));
          const optimizer = factory(params, (typeof options === 'object' && options !== null ? options : {}) as Record<string, unknown>);
          this.live.set(id, { optimizer, refs: held });
        } catch (e) {
          await Promise.all(held.map((r) => r.release()));
          throw e;
        }
        return null;
      }],
      [OPTIM_FN.step, (id, ctxId) => {
        const entry = this.live.get(id as string);
        if (!entry) throw new RpcError(Status.NOT_FOUND, self, `optimizer ${String(id)} is not known on "${self}" (released?)`);
        if (typeof ctxId !== 'number') throw bad(self, 'context id', ctxId, 'expected a number');
        const grads = this.link.gradients(ctxId);
        let stepped = 0;
        const { optimizer } = entry;
        for (const p of optimizer.params) {
          const g = grads.get(p);
          if (g === undefined) continue;
          optimizer.update(p, p.data, g);
          stepped++;
        }
        for (const l of this.stepListeners) l(id as string, ctxId, optimizer);
        this.link.stepped?.(ctxId);
        return stepped;
      }],
      [OPTIM_FN.release, async (id) => {
        const entry = this.live.get(id as string);
        if (!entry) return null;
        this.live.delete(id as string);
        await Promise.all(entry.refs.map((r) => r.release()));
        return null;
      }],
    ]);
  }
}

/**
 * Steps parameters on their owners: `new DistributedOptimizer(agent, SGD, paramRRefs, { lr })`,
 * then `await opt.step(ctx)` inside the distributed autograd context whose backward ran.
 */
export class DistributedOptimizer {
  /** Globally unique id under which every owner keeps its local optimizer. */
  readonly id: string;
  /** Owners of the parameters, one local optimizer each. */
  readonly owners: readonly string[];
  private readonly host: OptimizerHost;
  private readonly created: Promise<void>;
  private released?: Promise<void>;

  constructor(agent: Agent, optimizer: string | OptimizerClass, paramRRefs: readonly RRef<Tensor>[], options: Record<string, unknown> = {}) {
    this.host = agent.optimizerHost;
    const self = this.host.link.name;
    let kind: string | undefined;
    if (typeof optimizer === 'string') kind = optimizer;
    else kind = BUILTIN.find(([, C]) => C === optimizer)?.[0];
    if (!kind) {
      throw bad(self, 'optimizer', (optimizer as { name?: string })?.name ?? typeof optimizer,
        'expected SGD, Adam, AdamW or the name of a kind registered on the owners (optimizerHost.register)');
    }
    if (!Array.isArray(paramRRefs) || paramRRefs.length === 0 || !paramRRefs.every((r) => r instanceof RRef)) {
      throw bad(self, 'paramRRefs', Array.isArray(paramRRefs) ? `${paramRRefs.length} items` : typeof paramRRefs, 'expected a non-empty array of RRefs to tensors');
    }
    if (typeof options !== 'object' || options === null) throw bad(self, 'options', typeof options, 'expected an object');
    const groups = new Map<string, RRef<Tensor>[]>();
    for (const r of paramRRefs) {
      let g = groups.get(r.ownerName);
      if (!g) groups.set(r.ownerName, (g = []));
      g.push(r);
    }
    this.id = this.host.newId();
    this.owners = [...groups.keys()];
    const k = kind;
    this.created = Promise.all([...groups].map(([owner, refs]) => this.host.link.sendRaw(owner, OPTIM_FN.create, [this.id, k, options, refs]))).then(() => {});
    this.created.catch(() => { /* reported by step() and ready() */ });
  }

  /** Resolves once every owner has built its optimizer; rejects with the first owner's failure. */
  ready(): Promise<void> {
    return this.created;
  }

  /** Updates every parameter on its owner with its gradient in context `ctx`; parameters without one are skipped. */
  async step(ctx: DistAutogradContext | number): Promise<void> {
    const id = typeof ctx === 'number' ? ctx : ctx?.id;
    if (typeof id !== 'number') throw bad(this.host.link.name, 'context', typeof ctx, 'expected a DistAutogradContext or a context id');
    if (this.released) throw new RpcError(Status.FAILED_PRECONDITION, this.host.link.name, `DistributedOptimizer ${this.id} was released`);
    await this.created;
    await Promise.all(this.owners.map((o) => this.host.link.sendRaw(o, OPTIM_FN.step, [this.id, id])));
  }

  /** Drops the owners' optimizers (and their parameter references); idempotent. */
  release(): Promise<void> {
    this.released ??= this.created
      .catch(() => {})
      .then(() => Promise.all(this.owners.map((o) => this.host.link.sendRaw(o, OPTIM_FN.release, [this.id]))))
      .then(() => {});
    return this.released;
  }
}
