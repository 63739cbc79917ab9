// Remote references: `RRef` handles and the owner-side reference counting behind them.
//
// The protocol follows PyTorch's (docs/notes/rref): every handle is a fork (rrefId, forkId); the
// owner keeps the value while any fork is registered and frees it after the last delete.
//   - remote(): the caller picks the rrefId and the first forkId; the owner registers both before
//     it answers (the answer confirms the fork) and computes the value afterwards.
//   - passing a handle from a user A to B: A counts a pending child and keeps its own fork until B
//     says the owner has registered B's fork (B -> owner `fork`, then B -> A `accept`), so a
//     fork is always registered on the owner before its parent's fork can be deleted (G2).
//   - passing from the owner: the owner registers the child fork before sending (nothing to wait).
//   - a fork is deleted (G1) on `release()` or when its handle is garbage-collected
//     (FinalizationRegistry), after its own confirmation, and never while children are pending.
// Control messages travel as reserved function names over the ordinary Call path.
import { errors } from './errors.js';
import type { WorkerInfo } from './peer.js';

export const RREF_FN = {
  create: '__psrpc.rref.create',
  fetch: '__psrpc.rref.fetch',
  method: '__psrpc.rref.method',
  fork: '__psrpc.rref.fork',
  accept: '__psrpc.rref.accept',
  delete: '__psrpc.rref.delete',
} as const;

/** What the reference layer needs from its agent. */
export interface RRefHost {
  readonly name: string;
  workerInfo(name: string): WorkerInfo;
  /** Call over the normal path (counted as outstanding traffic); reserved names allowed. */
  callInternal(to: string, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown>;
  /** Runs a registered function locally. */
  runLocal(fn: string, args: unknown[]): Promise<unknown>;
}

/** A remote-creation target: a registered function, or a method of another RRef's value. */
type Target = { fn: string; args: unknown[] } | { rref: string; method: string; args: unknown[] };

interface ForkDesc { o: string; i: string; f: string; p: string; c: 0 | 1 }

/** One fork's bookkeeping; held by the FinalizationRegistry, so it must not point at its RRef. */
export class ForkState {
  released = false;
  deleted = false;
  pendingChildren = 0;
  confirmed: Promise<void>;
  readonly done: Promise<void>;
  finish!: () => void;
  constructor(readonly owner: string, readonly rrefId: string, readonly forkId: string, confirmed: Promise<void>) {
    this.confirmed = confirmed;
    confirmed.catch(() => {});
    this.done = new Promise((r) => { this.finish = r; });
  }
}

interface OwnerEntry {
  value: Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  created: boolean;
  settled: boolean;
  result?: unknown;
  forks: Set<string>;
}

const FORBIDDEN = new Set(['constructor', 'prototype', '__proto__', 'then']);

/** Own methods of a value (own properties or its class's prototypes), never Object/Function builtins or getters. */
export function findMethod(value: unknown, name: string): ((...a: unknown[]) => unknown) | undefined {
  if (typeof name !== 'string' || FORBIDDEN.has(name) || name.startsWith('__')) return undefined;
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  let o: object | null = value as object;
  while (o && o !== Object.prototype && o !== Function.prototype) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d) return typeof d.value === 'function' ? (d.value as (...a: unknown[]) => unknown) : undefined;
    o = Object.getPrototypeOf(o) as object | null;
  }
  return undefined;
}

type MethodProxy<R> = Record<string, (...args: unknown[]) => R>;
type Fn = (...args: never[]) => unknown;
/** The value's methods, each answering with a promise of its result (what rpcSync() returns). */
export type RemoteMethods<T> = unknown extends T ? MethodProxy<Promise<unknown>>
  : { [K in keyof T as T[K] extends Fn ? K : never]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never };
/** The value's methods, each answering at once with an RRef to its result (what remote() returns). */
export type RemoteRefMethods<T> = unknown extends T ? MethodProxy<RRef>
  : { [K in keyof T as T[K] extends Fn ? K : never]: T[K] extends (...args: infer A) => infer R ? (...args: A) => RRef<Awaited<R>> : never };

export class RRef<T = unknown> {
  /** @internal */
  constructor(private readonly ctx: RRefContext, /** @internal */ readonly state: ForkState) {}

  /** Globally unique id of the referenced value. */
  get id(): string { return this.state.rrefId; }
  /** Name of the owner worker. */
  get ownerName(): string { return this.state.owner; }
  owner(): WorkerInfo { return this.ctx.host.workerInfo(this.state.owner); }
  isOwner(): boolean { return this.state.owner === this.ctx.host.name; }
  /** Resolves once the owner has registered this fork. */
  confirmed(): Promise<void> { return this.state.confirmed; }

  private check(): void {
    if (this.state.released) throw errors.rrefReleased(this.ctx.host.name, this.id);
  }

  /** Copies the value here (from the owner; on the owner, the value itself). */
  async toHere(timeoutMs?: number): Promise<T> {
    this.check();
    if (this.isOwner()) return (await this.ctx.entry(this.id).value) as T;
    await this.state.confirmed;
    return (await this.ctx.host.callInternal(this.state.owner, RREF_FN.fetch, [this.id], timeoutMs)) as T;
  }

  /** The value itself; owner only, and only once it has been created. */
  localValue(): T {
    this.check();
    if (!this.isOwner()) throw errors.notOwner(this.ctx.host.name, this.state.owner, this.id);
    const e = this.ctx.entry(this.id);
    if (!e.settled) throw errors.rrefNotReady(this.ctx.host.name, this.id);
    return e.result as T;
  }

  private proxy<R>(run: (method: string, args: unknown[]) => R): MethodProxy<R> {
    return new Proxy({} as MethodProxy<R>, {
      get: (_t, prop) => (typeof prop === 'string' && prop !== 'then' ? (...args: unknown[]) => run(prop, args) : undefined),
    });
  }

  /** `ref.rpcSync().m(...args)` runs method m on the owner and resolves to its result. */
  rpcSync(timeoutMs?: number): RemoteMethods<T> {
    return this.proxy((m, args) => this.invoke(m, args, timeoutMs)) as unknown as RemoteMethods<T>;
  }

  /** Same as rpcSync (every call is a promise in Node); kept for torch's vocabulary. */
  rpcAsync(timeoutMs?: number): RemoteMethods<T> {
    return this.rpcSync(timeoutMs);
  }

  /** `ref.remote().m(...args)` runs method m on the owner and returns an RRef to its result at once. */
  remote(): RemoteRefMethods<T> {
    return this.proxy((m, args) => {
      this.check();
      return this.ctx.createRemote(this.state.owner, { rref: this.id, method: m, args }, this.state.confirmed);
    }) as unknown as RemoteRefMethods<T>;
  }

  private async invoke(method: string, args: unknown[], timeoutMs?: number): Promise<unknown> {
    this.check();
    if (this.isOwner()) return this.ctx.invokeLocal(this.id, method, args);
    await this.state.confirmed;
    return this.ctx.host.callInternal(this.state.owner, RREF_FN.method, [this.id, method, args], timeoutMs);
  }

  /** Drops this fork; resolves when the owner has processed the delete (or at once if there is nothing to send). */
  release(): Promise<void> {
    if (!this.state.released) {
      this.state.released = true;
      this.ctx.forget(this);
      this.ctx.maybeDelete(this.state);
    }
    return this.state.done;
  }
}

export class RRefContext {
  /** Values this worker owns, by rrefId. */
  readonly owned = new Map<string, OwnerEntry>();
  /** Child forks sent by this worker as a user and not yet accepted, to their parent's state. */
  private readonly childParents = new Map<string, ForkState>();
  private readonly registry = new FinalizationRegistry<ForkState>((s) => {
    if (this.closed || s.released) return;
    s.released = true;
    this.maybeDelete(s);
  });
  private seq = 0;
  private closed = false;

  constructor(readonly host: RRefHost) {}

  private newId(): string {
    return `${this.host.name}#${++this.seq}`;
  }

  /** The owner entry of rrefId; `create` makes a placeholder for a value not created yet. */
  entry(rrefId: string, create = false): OwnerEntry {
    let e = this.owned.get(rrefId);
    if (e) return e;
    if (!create) throw errors.unknownRRef(this.host.name, rrefId);
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const value = new Promise<unknown>((res, rej) => { resolve = res; reject = rej; });
    value.catch(() => {}); // a failed creation is reported by toHere/method calls, not as unhandled
    e = { value, resolve, reject, created: false, settled: false, forks: new Set() };
    const entry = e;
    value.then((v) => { entry.settled = true; entry.result = v; }, () => {});
    this.owned.set(rrefId, e);
    return e;
  }

  private handle<T>(state: ForkState): RRef<T> {
    const ref = new RRef<T>(this, state);
    this.registry.register(ref, state, ref);
    return ref;
  }

  /** @internal */
  forget(ref: object): void {
    this.registry.unregister(ref);
  }

  /** Owner side: register fork and start computing the value. */
  private createOwned(rrefId: string, forkId: string, run: () => Promise<unknown>): void {
    const e = this.entry(rrefId, true);
    e.forks.add(forkId);
    if (e.created) return;
    e.created = true;
    run().then(e.resolve, e.reject);
  }

  private removeFork(rrefId: string, forkId: string): void {
    const e = this.owned.get(rrefId);
    if (!e) return;
    e.forks.delete(forkId);
    if (e.forks.size === 0 && e.created) this.owned.delete(rrefId);
  }

  /** A local value wrapped as an owner RRef (torch's `RRef(value)`). */
  local<T>(value: T): RRef<T> {
    const id = this.newId();
    const fork = this.newId();
    this.createOwned(id, fork, () => Promise.resolve(value));
    const e = this.entry(id);
    e.settled = true; // known now, so localValue() works at once
    e.result = value;
    return this.handle<T>(new ForkState(this.host.name, id, fork, Promise.resolve()));
  }

  private runTarget(t: Target): Promise<unknown> {
    if ('fn' in t) return this.host.runLocal(t.fn, t.args);
    return this.invokeLocal(t.rref, t.method, t.args);
  }

  /** remote(): returns at once; the fork is confirmed when the owner has registered it. */
  createRemote<T>(owner: string, target: Target, after: Promise<void> = Promise.resolve()): RRef<T> {
    const id = this.newId();
    const fork = this.newId();
    if (owner === this.host.name) {
      this.createOwned(id, fork, () => after.then(() => this.runTarget(target)));
      return this.handle<T>(new ForkState(owner, id, fork, Promise.resolve()));
    }
    const confirmed = after.then(() => this.host.callInternal(owner, RREF_FN.create, [id, fork, target])).then(() => {});
    return this.handle<T>(new ForkState(owner, id, fork, confirmed));
  }

  async invokeLocal(rrefId: string, method: string, args: unknown[]): Promise<unknown> {
    const value = await this.entry(rrefId).value;
    const fn = findMethod(value, method);
    if (!fn) throw errors.noSuchMethod(this.host.name, rrefId, method);
    return fn.apply(value, Array.isArray(args) ? args : []);
  }

  /** @internal Sends the delete once the fork is released, confirmed and has no pending children. */
  maybeDelete(s: ForkState): void {
    if (!s.released || s.pendingChildren > 0 || s.deleted) return;
    s.deleted = true;
    if (this.closed) { s.finish(); return; }
    if (s.owner === this.host.name) {
      this.removeFork(s.rrefId, s.forkId);
      s.finish();
      return;
    }
    s.confirmed
      .then(() => this.host.callInternal(s.owner, RREF_FN.delete, [s.rrefId, s.forkId]))
      .catch(() => { /* owner gone or fork never confirmed: nothing left to free */ })
      .finally(() => s.finish());
  }

  // ---- codec hooks ----

  encodeRef(x: object): ForkDesc | undefined {
    if (!(x instanceof RRef)) return undefined;
    const s = x.state;
    if (s.released) throw errors.rrefReleased(this.host.name, s.rrefId);
    const child = this.newId();
    if (s.owner === this.host.name) {
      this.entry(s.rrefId).forks.add(child);
      return { o: s.owner, i: s.rrefId, f: child, p: this.host.name, c: 1 };
    }
    s.pendingChildren++;
    this.childParents.set(child, s);
    return { o: s.owner, i: s.rrefId, f: child, p: this.host.name, c: 0 };
  }

  decodeRef(raw: unknown): RRef {
    const d = raw as ForkDesc;
    if (typeof d !== 'object' || d === null || ![d.o, d.i, d.f, d.p].every((x) => typeof x === 'string')) {
      throw errors.codec(this.host.name, 'malformed RRef descriptor');
    }
    const self = this.host.name;
    if (d.o === self) {
      if (!d.c) {
        // The handle may arrive before the remote() that created it (its create message is sent a
        // microtask later than a call made right after remote()): make the placeholder entry, as
        // the fork handler does and as PyTorch's getOrCreateOwnerRRef does.
        this.entry(d.i, true).forks.add(d.f);
        this.notifyAccept(d.p, d.f);
      }
      return this.handle(new ForkState(self, d.i, d.f, Promise.resolve()));
    }
    const confirmed = d.c
      ? Promise.resolve()
      : this.host.callInternal(d.o, RREF_FN.fork, [d.i, d.f]).then(() => this.notifyAccept(d.p, d.f));
    return this.handle(new ForkState(d.o, d.i, d.f, confirmed));
  }

  private notifyAccept(parent: string, fork: string): void {
    this.host.callInternal(parent, RREF_FN.accept, [fork]).catch(() => { /* parent gone: its fork dies with it */ });
  }

  // ---- reserved functions, run on behalf of other workers ----

  internalFunctions(): Map<string, (...args: unknown[]) => unknown> {
    const str = (x: unknown, what: string) => {
      if (typeof x !== 'string') throw errors.codec(this.host.name, `${what} must be a string`);
      return x;
    };
    return new Map<string, (...args: unknown[]) => unknown>([
      [RREF_FN.create, (id, fork, target) => {
        const t = target as Target;
        if (typeof t !== 'object' || t === null || !Array.isArray(t.args)) throw errors.codec(this.host.name, 'malformed remote target');
        this.createOwned(str(id, 'rrefId'), str(fork, 'forkId'), () => this.runTarget(t));
        return null;
      }],
      [RREF_FN.fetch, (id) => this.entry(str(id, 'rrefId')).value],
      [RREF_FN.method, (id, m, args) => this.invokeLocal(str(id, 'rrefId'), str(m, 'method'), args as unknown[])],
      [RREF_FN.fork, (id, fork) => { this.entry(str(id, 'rrefId'), true).forks.add(str(fork, 'forkId')); return null; }],
      [RREF_FN.accept, (fork) => {
        const parent = this.childParents.get(str(fork, 'forkId'));
        if (parent) {
          this.childParents.delete(fork as string);
          parent.pendingChildren--;
          this.maybeDelete(parent);
        }
        return null;
      }],
      [RREF_FN.delete, (id, fork) => { this.removeFork(str(id, 'rrefId'), str(fork, 'forkId')); return null; }],
    ]);
  }

  close(): void {
    this.closed = true;
  }
}
