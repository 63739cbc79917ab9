// Distributed autograd: contexts, send/recv recording on calls made inside one, and the backward
// pass that runs across every worker the forward pass touched (torch.distributed.autograd).
//
// The design is PyTorch's FAST mode, fitted to a tape whose node backwards run synchronously:
// - A context has a globally unique id (rank * 2^32 + counter) and exists on every worker that
//   took part in a call made inside it. The current context follows the async call chain
//   (AsyncLocalStorage, one per agent), so handlers run inside the context of the call that
//   started them and their own calls carry it on.
// - A call made inside a context travels as `__psrpc.autograd.call(meta, fn, args)`. The caller
//   keeps the tracked tensors of `args` as a *send* entry under a message id of its own; the
//   callee turns the matching received tensors into leaves that require grad (*recv* leaves, which
//   remember the caller and that message id) and runs the handler in the context. Tracked tensors
//   in the handler's result are kept the same way on the callee and become recv leaves on the
//   caller. No ordinary tensor is modified, and no gradient ever lands in `.grad`: gradients go
//   to the context's own map, so concurrent trainers sharing one model never see each other's.
// - backward runs the local tape into the context's map. Gradients that reached recv leaves are
//   taken out of the map and sent, batched per peer, as `__psrpc.autograd.backward`; the peer
//   resumes its tape from the tensors of the named send entries, and so on. Each message is
//   awaited, so backward resolves when the whole pass is over, and a failure anywhere comes back
//   to the caller as an RpcError.
// - What records: user calls, RRef method calls and toHere(). remote() does not (its value stays
//   on the owner, outside any context), nor does anything run on the owner of an RRef locally.
// - FAST mode assumes each send entry gets its gradient once per pass. Here an entry reached by
//   several messages (several consumers on different workers) simply runs again: backward is
//   linear, so the sums equal those of one pass. That is why the graphs stay retained until the
//   context is released (the price is recomputing shared parts, never a wrong result).
// - Releasing a context frees it here and sends `__psrpc.autograd.release` to every worker it
//   exchanged messages with, which forward it on; a worker that no longer knows it stops there.
import { AsyncLocalStorage } from 'node:async_hooks';
import { backward as tapeBackward, isGradEnabled, Tensor } from '../tensor/index.js';
import { systemClock, type Clock } from './clock.js';
import { RpcError, Status } from './errors.js';
import { RREF_FN } from './rref.js';
import { isTensorView, isTypedArray } from './tensor-view.js';

export const AUTOGRAD_FN = {
  call: '__psrpc.autograd.call',
  backward: '__psrpc.autograd.backward',
  release: '__psrpc.autograd.release',
} as const;

/** What distributed autograd needs from its agent. */
export interface AutogradHost {
  readonly name: string;
  readonly rank: number;
  /** Sends a call over the normal path without recording anything; reserved names allowed. */
  sendRaw(to: string, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown>;
  /** Runs a registered function (or an RRef method call) for a call that arrived in a context. */
  runTarget(fn: string, args: unknown[]): Promise<unknown>;
}

/** Tensors that left this worker in one message; gradients for them come back under its id. */
interface SendEntry {
  peer: string;
  tensors: Tensor[];
}

/** Where a received tensor's gradient goes: the peer's send entry `mid`, position `index`. */
interface RecvInfo {
  peer: string;
  mid: number;
  index: number;
}

/** What a call made in a context carries besides its function and arguments. */
interface CallMeta {
  /** context id */
  c: number;
  /** caller's name */
  f: string;
  /** caller's send entry for the tracked arguments (0: none) */
  m: number;
  /** positions of the tracked tensors among the arguments' tensors */
  g: number[];
}

const fail = {
  unknownContext: (self: string, id: unknown) =>
    new RpcError(Status.NOT_FOUND, self, `distributed autograd context ${String(id)} is not known on worker "${self}" (released, or never reached it)`),
  released: (self: string, id: number) =>
    new RpcError(Status.FAILED_PRECONDITION, self, `distributed autograd context ${id} was released on worker "${self}"`),
  malformed: (self: string, what: string) =>
    new RpcError(Status.INVALID_ARGUMENT, self, `malformed distributed autograd message: ${what}`),
  argument: (self: string, what: string, value: unknown, why: string) =>
    new RpcError(Status.INVALID_ARGUMENT, self, `invalid ${what}=${describe(value)}: ${why}`),
};

function describe(x: unknown): string {
  if (x instanceof Tensor) return `Tensor[${x.shape.join(', ')}]`;
  if (typeof x === 'object' && x !== null) return x.constructor?.name ?? 'object';
  return typeof x === 'string' ? JSON.stringify(x) : String(x);
}

/**
 * The tensors of a value in the order the payload codec visits them (arrays in order, plain
 * objects by key, no look inside tensors, typed arrays or class instances), so that a caller and
 * its callee agree on "the k-th tensor" of the same arguments.
 */
function tensorSlots(value: unknown, out: unknown[] = []): unknown[] {
  if (typeof value !== 'object' || value === null) return out;
  if (Array.isArray(value)) {
    for (const x of value) tensorSlots(x, out);
    return out;
  }
  if (isTypedArray(value)) return out;
  if (isTensorView(value)) {
    out.push(value);
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return out; // RRefs: the codec sends no tensor inside
  for (const k of Object.keys(value)) tensorSlots((value as Record<string, unknown>)[k], out);
  return out;
}

const isIndex = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** One distributed autograd context as seen by one worker. */
export class DistAutogradContext {
  /** @internal Leaf gradients accumulated on this worker in this context. */
  readonly grads = new Map<Tensor, Float32Array>();
  /** @internal Send entries by message id. */
  readonly sends = new Map<number, SendEntry>();
  /** @internal Recv leaves and where their gradients go. */
  readonly recvs = new Map<Tensor, RecvInfo>();
  /** @internal Workers this context exchanged messages with. */
  readonly peers = new Set<string>();
  /** @internal */ releasing?: Promise<void>;
  /** @internal Optimizer steps applied here with this context's gradients. */
  steps = 0;
  /** @internal Waiters of `whenStepped`, settled by the next step or by the release. */
  stepWaiters: Array<() => void> = [];

  /** @internal */
  constructor(private readonly owner: DistAutograd, /** Globally unique id. */ readonly id: number) {}

  /** True once released on this worker. */
  get released(): boolean {
    return this.releasing !== undefined;
  }

  /** Runs `fn` with this context current: calls it makes (and their async continuations) record. */
  run<T>(fn: () => T): T {
    return this.owner.run(this, fn);
  }

  /** Releases the context on this worker and on every worker it reached; idempotent. */
  release(): Promise<void> {
    return this.owner.release(this);
  }
}

export class DistAutograd {
  private readonly contexts = new Map<number, DistAutogradContext>();
  private readonly store = new AsyncLocalStorage<DistAutogradContext>();
  private contextSeq = 0;
  private messageSeq = 0;
  /**
   * @internal Time source of `whenStepped`'s timeout. Writable so that a test can hand an agent's
   * DistAutograd a ManualClock and check "times out naming the context" by advancing it, instead
   * of waiting on a real timer (the agent builds this object and has no clock option to pass on).
   */
  clock: Clock = systemClock;

  /** @internal */
  constructor(private readonly host: AutogradHost) {}

  // ---- contexts ----

  /** Creates a context owned by this worker; release it with `ctx.release()`. Prefer `context(fn)`. */
  newContext(): DistAutogradContext {
    const id = this.host.rank * 2 ** 32 + ++this.contextSeq;
    const ctx = new DistAutogradContext(this, id);
    this.contexts.set(id, ctx);
    return ctx;
  }

  /**
   * Runs `fn(ctx)` in a new context and releases it on every worker it reached when `fn` settles
   * (a release failure is reported only when `fn` succeeded).
   */
  async context<T>(fn: (ctx: DistAutogradContext) => T | Promise<T>): Promise<T> {
    const ctx = this.newContext();
    let result: T;
    try {
      result = await ctx.run(() => fn(ctx));
    } catch (e) {
      await ctx.release().catch(() => { /* fn's own error is the one to report */ });
      throw e;
    }
    await ctx.release();
    return result;
  }

  /** The context the current async call chain runs in, if any (and not released). */
  current(): DistAutogradContext | undefined {
    const ctx = this.store.getStore();
    return ctx && !ctx.released ? ctx : undefined;
  }

  /** Contexts alive on this worker (for tests and monitoring). */
  activeContexts(): number {
    return this.contexts.size;
  }

  /** @internal */
  run<T>(ctx: DistAutogradContext, fn: () => T): T {
    if (ctx.released) throw fail.released(this.host.name, ctx.id);
    return this.store.run(ctx, fn);
  }

  private resolve(ctx: DistAutogradContext | number): DistAutogradContext {
    // by id: the same context is a different object on each worker (and agents may share a process)
    const id = ctx instanceof DistAutogradContext ? ctx.id : ctx;
    if (typeof id !== 'number') throw fail.argument(this.host.name, 'context', ctx, 'expected a DistAutogradContext or a context id');
    const c = this.contexts.get(id);
    if (c) return c;
    throw ctx instanceof DistAutogradContext && ctx.released ? fail.released(this.host.name, id) : fail.unknownContext(this.host.name, id);
  }

  /** @internal */
  release(ctx: DistAutogradContext, from?: string): Promise<void> {
    if (ctx.releasing) return ctx.releasing;
    if (this.contexts.get(ctx.id) === ctx) this.contexts.delete(ctx.id);
    const peers = [...ctx.peers].filter((p) => p !== from && p !== this.host.name);
    ctx.grads.clear();
    ctx.sends.clear();
    ctx.recvs.clear();
    const waiters = ctx.stepWaiters;
    ctx.stepWaiters = [];
    for (const w of waiters) w();
    ctx.releasing = Promise.allSettled(peers.map((p) => this.host.sendRaw(p, AUTOGRAD_FN.release, [ctx.id, this.host.name]))).then((all) => {
      const bad = all.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (bad) throw bad.reason;
    });
    return ctx.releasing;
  }

  // ---- gradients ----

  /**
   * The leaf gradients accumulated on this worker in `ctx` (a context or its id), keyed by leaf
   * (the parameters used here). The values share the context's storage: copy them to keep them
   * past the context's release.
   */
  getGradients(ctx: DistAutogradContext | number): Map<Tensor, Tensor> {
    const c = this.resolve(ctx);
    const out = new Map<Tensor, Tensor>();
    for (const [t, g] of c.grads) out.set(t, new Tensor(g, t.shape));
    return out;
  }

  /** @internal The raw gradient map of a context known here (the DistributedOptimizer's input). */
  gradientsOf(ctx: DistAutogradContext | number): Map<Tensor, Float32Array> {
    return this.resolve(ctx).grads;
  }

  /** @internal The DistributedOptimizer's owner side: a step with this context's gradients was applied here. */
  noteStepped(ctxId: number): void {
    const c = this.contexts.get(ctxId);
    if (!c) return;
    c.steps++;
    const waiters = c.stepWaiters;
    c.stepWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Resolves once an optimizer step with the gradients of context `id` has been applied on this
   * worker, or at once when the context is not (or no longer) known here; a release settles it
   * too. A caller that pipelines its steps (remote-forward: the next forward is sent before the
   * previous step's answer) makes the next forward wait on the owner for the step it must see,
   * whatever channel each message took. Rejects after `timeoutMs` with a message naming the
   * context (a step that never comes).
   */
  whenStepped(id: number, timeoutMs = 30_000): Promise<void> {
    const c = this.contexts.get(id);
    if (!c || c.steps > 0 || c.released) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.after(timeoutMs, () => {
        const i = c.stepWaiters.indexOf(done);
        if (i >= 0) c.stepWaiters.splice(i, 1);
        reject(fail.argument(this.host.name, 'context', id, `no optimizer step with its gradients was applied on "${this.host.name}" within ${timeoutMs} ms`));
      });
      const done = (): void => { timer.cancel(); resolve(); };
      c.stepWaiters.push(done);
    });
  }

  /**
   * Runs the backward pass from `roots` (one-element roots need no gradient) through every
   * worker the forward pass reached, accumulating leaf gradients in `ctx` on each worker.
   * Resolves when every worker has finished its part; a remote failure rejects with RpcError.
   * Graphs stay usable until the context is released, so a second backward adds to the sums.
   */
  async backward(ctx: DistAutogradContext | number, roots: readonly Tensor[], grads?: readonly (Tensor | Float32Array | null | undefined)[]): Promise<void> {
    const c = this.resolve(ctx);
    if (!Array.isArray(roots) || roots.length === 0 || !roots.every((r) => r instanceof Tensor)) {
      throw fail.argument(this.host.name, 'roots', roots, 'expected a non-empty array of tensors');
    }
    await this.propagate(c, roots, grads);
  }

  /** One local pass into the context's map, then the gradients of recv leaves to their peers. */
  private async propagate(ctx: DistAutogradContext, roots: readonly Tensor[], grads?: readonly (Tensor | Float32Array | null | undefined)[]): Promise<void> {
    tapeBackward(roots, grads as (Tensor<'float32'> | Float32Array | null | undefined)[] | undefined, { into: ctx.grads, retainGraph: true });
    const out = new Map<string, Map<number, [number, Float32Array][]>>();
    for (const [t, g] of ctx.grads) {
      const r = ctx.recvs.get(t);
      if (!r) continue;
      ctx.grads.delete(t);
      let byMid = out.get(r.peer);
      if (!byMid) out.set(r.peer, (byMid = new Map()));
      let pairs = byMid.get(r.mid);
      if (!pairs) byMid.set(r.mid, (pairs = []));
      pairs.push([r.index, g]);
    }
    await Promise.all([...out].map(([peer, byMid]) => this.host.sendRaw(peer, AUTOGRAD_FN.backward, [ctx.id, [...byMid]])));
  }

  // ---- calls ----

  /** @internal Whether a call to `fn` made inside a context records send/recv (user functions, RRef methods and toHere). */
  recordable(fn: string): boolean {
    return fn === RREF_FN.method || fn === RREF_FN.fetch || !fn.startsWith('__psrpc.');
  }

  /** @internal The caller's side of a call made inside `ctx`. */
  async call(ctx: DistAutogradContext, to: string, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown> {
    const g: number[] = [];
    const tensors: Tensor[] = [];
    if (isGradEnabled()) {
      tensorSlots(args).forEach((t, i) => {
        if (t instanceof Tensor && t.requiresGrad) { g.push(i); tensors.push(t); }
      });
    }
    let mid = 0;
    if (tensors.length > 0) {
      mid = ++this.messageSeq;
      ctx.sends.set(mid, { peer: to, tensors });
    }
    ctx.peers.add(to);
    const meta: CallMeta = { c: ctx.id, f: this.host.name, m: mid, g };
    const reply = (await this.host.sendRaw(to, AUTOGRAD_FN.call, [meta, fn, args], timeoutMs)) as { v: unknown; m: number; g: number[] };
    if (typeof reply !== 'object' || reply === null || !isIndex(reply.m) || !Array.isArray(reply.g)) {
      throw fail.malformed(this.host.name, `reply of "${fn}" from "${to}" has no autograd record`);
    }
    if (reply.g.length > 0 && !ctx.released) this.receive(ctx, to, reply.m, reply.g, reply.v);
    return reply.v;
  }

  /** Makes the tensors at positions `g` of `value` recv leaves of `ctx` (gradients go to peer's entry mid). */
  private receive(ctx: DistAutogradContext, peer: string, mid: number, g: unknown[], value: unknown): void {
    const slots = tensorSlots(value);
    const leaves = g.map((k) => {
      const t = isIndex(k) ? slots[k] : undefined;
      if (!(t instanceof Tensor) || t.dtype !== 'float32' || !t.isLeaf) {
        throw fail.malformed(this.host.name, `tracked tensor position ${JSON.stringify(k)} from "${peer}" is not a received float32 tensor`);
      }
      return t;
    });
    leaves.forEach((t, index) => {
      t.setRequiresGrad(true);
      ctx.recvs.set(t, { peer, mid, index });
    });
  }

  // ---- reserved functions, run on behalf of other workers ----

  /** @internal */
  internalFunctions(): Map<string, (...args: unknown[]) => unknown> {
    const self = this.host.name;
    return new Map<string, (...args: unknown[]) => unknown>([
      [AUTOGRAD_FN.call, async (metaRaw, fn, args) => {
        const meta = metaRaw as CallMeta;
        if (typeof meta !== 'object' || meta === null || typeof meta.c !== 'number' || typeof meta.f !== 'string' || !isIndex(meta.m) || !Array.isArray(meta.g)) {
          throw fail.malformed(self, 'call record');
        }
        if (typeof fn !== 'string' || !this.recordable(fn)) throw fail.malformed(self, `function ${JSON.stringify(fn)} cannot be called in a context`);
        if (!Array.isArray(args)) throw fail.malformed(self, 'call arguments are not an array');
        let ctx = this.contexts.get(meta.c);
        if (!ctx) {
          ctx = new DistAutogradContext(this, meta.c);
          this.contexts.set(meta.c, ctx);
        }
        ctx.peers.add(meta.f);
        if (meta.g.length > 0) this.receive(ctx, meta.f, meta.m, meta.g, args);
        const c = ctx;
        const result = await this.store.run(c, () => this.host.runTarget(fn, args));
        const tensors: Tensor[] = [];
        const g: number[] = [];
        tensorSlots(result).forEach((t, i) => {
          if (t instanceof Tensor && t.requiresGrad) { g.push(i); tensors.push(t); }
        });
        let mid = 0;
        if (tensors.length > 0 && !c.released) {
          mid = ++this.messageSeq;
          c.sends.set(mid, { peer: meta.f, tensors });
        }
        return { v: result, m: mid, g: mid ? g : [] };
      }],
      [AUTOGRAD_FN.backward, (id, items) => {
        const ctx = this.contexts.get(id as number);
        if (!ctx) throw fail.unknownContext(self, id);
        if (!Array.isArray(items)) throw fail.malformed(self, 'gradient list');
        const roots: Tensor[] = [];
        const grads: Float32Array[] = [];
        for (const item of items) {
          const [mid, pairs] = Array.isArray(item) ? item : [];
          const entry = ctx.sends.get(mid as number);
          if (!entry) throw fail.malformed(self, `context ${ctx.id} has no send entry ${JSON.stringify(mid)} on "${self}"`);
          if (!Array.isArray(pairs)) throw fail.malformed(self, 'gradient pairs');
          for (const pair of pairs) {
            const [i, g] = Array.isArray(pair) ? pair : [];
            const t = isIndex(i) ? entry.tensors[i] : undefined;
            if (!t) throw fail.malformed(self, `send entry ${mid as number} has no tensor ${JSON.stringify(i)}`);
            if (!(g instanceof Float32Array) || g.length !== t.size) {
              throw fail.malformed(self, `gradient for tensor ${i as number} of send entry ${mid as number} must be a Float32Array of ${t.size} elements`);
            }
            roots.push(t);
            grads.push(g);
          }
        }
        return this.propagate(ctx, roots, grads).then(() => null);
      }],
      [AUTOGRAD_FN.release, (id, from) => {
        const ctx = this.contexts.get(id as number);
        if (!ctx) return null;
        return this.release(ctx, typeof from === 'string' ? from : undefined).then(() => null);
      }],
    ]);
  }
}
