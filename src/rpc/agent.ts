// An RPC agent: one worker's gRPC server, its connections to the other workers, its registry of
// callable functions, its RRefs, and its part in rendezvous and shutdown.
//
// Several agents can live in one process (tests run whole worlds in one process), so everything
// hangs off the Agent object; src/rpc/index.ts adds module-level functions over a default agent.
import * as grpc from '@grpc/grpc-js';
import { decode, encode, flatten, type CodecContext, type Encoded } from './codec.js';
import { DistAutograd } from './dist-autograd.js';
import { OptimizerHost } from './dist-optimizer.js';
import { errors, RpcError, Status } from './errors.js';
import type { FaultInjector } from './faulty.js';
import { Heartbeat, type PingSink } from './heartbeat.js';
import { resolveOptions, type InitOptions, type ResolvedOptions } from './options.js';
import { Peer, type WorkerInfo } from './peer.js';
import { agentService, channelOptions, rendezvousService } from './proto.js';
import { MasterLink, RendezvousHost } from './rendezvous.js';
import { RRef, RRefContext } from './rref.js';
import { agentImplementation, authInterceptor, type Dispatcher } from './service.js';



export type RemoteFunction = (...args: any[]) => unknown;

export interface CallOptions {
  /** Deadline for this call in ms (default: the agent's timeoutMs). */
  timeoutMs?: number;
}

export interface ShutdownOptions {
  /** Wait for every worker to finish its outstanding calls and RRef traffic (default true). */
  graceful?: boolean;
  /** Deadline for the graceful barrier (default: the agent's timeoutMs). */
  timeoutMs?: number;
  /**
   * An elastic world's member leaving for good (InitOptions.minWorldSize): the master is told, the
   * barrier is not entered (the others' shutdown no longer waits for this one), then the agent stops.
   */
  leave?: boolean;
}

/** Where a call goes: a worker name, a rank, or a WorkerInfo. */
export type WorkerRef = string | number | WorkerInfo;

const RESERVED = '__psrpc.';

function bindServer(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

export class Agent implements Dispatcher {
  readonly name: string;
  readonly rank: number;
  readonly worldSize: number;
  /**
   * host:port peers reach this agent's server at, as published at the rendezvous: the advertised
   * host (InitOptions.advertise; default: the listen host, for the master `master`'s) and the bound port.
   */
  address = '';
  /** The host part of the address the server is bound to (a wildcard possibly): see listenHost. */
  private bindHost = '';
  private readonly opts: ResolvedOptions;
  private readonly server: grpc.Server;
  private host?: RendezvousHost;
  private link?: MasterLink;
  private readonly peers = new Map<string, Peer>();
  private readonly infos = new Map<string, WorkerInfo>();
  private byRank: WorkerInfo[] = [];
  private readonly fns = new Map<string, RemoteFunction>();
  private readonly internal: Map<string, (...args: unknown[]) => unknown>;
  private readonly rrefs: RRefContext;
  /** Distributed autograd: contexts, and the backward pass across workers. */
  readonly distAutograd: DistAutograd;
  /** @internal The owner side of DistributedOptimizers (one local optimizer per parameter group). */
  readonly optimizerHost: OptimizerHost;
  private readonly codec: CodecContext;
  private state: 'listening' | 'ready' | 'stopping' | 'stopped' = 'listening';
  private stopping?: Promise<void>;
  private running = 0;
  private localCalls = 0;
  private activity = 0;
  private markReady!: () => void;
  /**
   * Resolves once the rendezvous has completed (every worker is known). Components registered
   * before the rendezvous start their clocks here (a liveness watchdog that started earlier would
   * count the rendezvous itself as the peers' silence). Never settles if the rendezvous fails.
   */
  readonly ready: Promise<void> = new Promise((resolve) => { this.markReady = resolve; });
  /**
   * @internal Testing: every outgoing message passes through this injector first, which may hold
   * or fail it (see FaultInjector). Unset in production: one property check per message.
   */
  faults?: FaultInjector;
  /** Failure detection (heartbeat.ts); undefined with heartbeatMs 0. */
  private readonly heartbeat?: Heartbeat;
  private readonly lostListeners = new Set<(worker: string, silentMs: number) => void>();
  private readonly recoveredListeners = new Set<(worker: string) => void>();

  private constructor(opts: ResolvedOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    // with an auth token, one interceptor guards every method of every service on this server
    const interceptors = opts.authToken === undefined ? [] : [authInterceptor(opts.name, opts.authToken)];
    this.server = new grpc.Server({ ...channelOptions(opts.maxMessageBytes + 64 * 1024), interceptors });
    this.rrefs = new RRefContext({
      name: this.name,
      workerInfo: (n) => this.workerInfo(n),
      callInternal: (to, fn, args, t) => this.send(to, fn, args, t),
      runLocal: (fn, args) => this.runLocal(fn, args),
    });
    this.distAutograd = new DistAutograd({
      name: this.name,
      rank: this.rank,
      sendRaw: (to, fn, args, t) => this.transmit(to, fn, args, t),
      runTarget: (fn, args) => (fn.startsWith(RESERVED) ? this.runInternal(fn, args) : this.runLocal(fn, args)),
    });
    this.optimizerHost = new OptimizerHost({
      name: this.name,
      sendRaw: (to, fn, args, t) => this.transmit(to, fn, args, t),
      gradients: (ctxId) => this.distAutograd.gradientsOf(ctxId),
      stepped: (ctxId) => this.distAutograd.noteStepped(ctxId),
    });
    this.internal = new Map([
      ...this.rrefs.internalFunctions(),
      ...this.distAutograd.internalFunctions(),
      ...this.optimizerHost.internalFunctions(),
    ]);
    if (opts.heartbeatMs > 0) {
      this.heartbeat = new Heartbeat({
        heartbeatMs: opts.heartbeatMs, deadAfterMs: opts.deadAfterMs, clock: opts.clock,
        onLost: (worker, silentMs) => this.peerLost(worker, silentMs),
        onFound: (worker) => { this.host?.undepart(worker); for (const cb of [...this.recoveredListeners]) cb(worker); },
        probe: (worker) => this.peers.get(worker)?.probe(),
      });
    }
    this.codec = {
      worker: this.name,
      encodeRef: (x) => this.rrefs.encodeRef(x),
      decodeRef: (d) => this.rrefs.decodeRef(d),
    };
  }

  get worker(): string {
    return this.name;
  }

  /** The host part of the address this agent's server is bound to (0.0.0.0 or [::] when a wildcard). */
  get listenHost(): string {
    return this.bindHost;
  }

  /** @internal Dispatcher: the host `worker` published at the rendezvous (brackets removed); undefined if unknown. */
  peerHost(worker: string): string | undefined {
    const a = this.infos.get(worker)?.address;
    if (a === undefined) return undefined;
    return a.slice(0, a.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
  }

  /** Starts the server (and, on the master, the rendezvous host) without joining the world yet. */
  static async start(options: InitOptions): Promise<Agent> {
    const opts = resolveOptions(options);
    const agent = new Agent(opts);
    const limits = { maxMessageBytes: opts.maxMessageBytes, inlineBytes: opts.inlineBytes, chunkBytes: opts.chunkBytes };
    agent.server.addService(agentService(), agentImplementation(agent, limits, opts.tls));
    const listen = opts.isMaster ? opts.master : opts.listen;
    if (opts.isMaster) {
      agent.host = new RendezvousHost(opts.name, opts.worldSize, opts.minWorldSize);
      agent.host.onRejoin = (w) => agent.replaceWorker(w);
      agent.server.addService(rendezvousService(), agent.host.implementation());
    }
    let port: number;
    try {
      port = await bindServer(agent.server, listen, opts.tls?.server ?? grpc.ServerCredentials.createInsecure());
    } catch (e) {
      agent.server.forceShutdown();
      throw new RpcError(Status.UNAVAILABLE, opts.name, `cannot listen on ${listen}: ${(e as Error).message}`, { cause: e });
    }
    agent.bindHost = listen.slice(0, listen.lastIndexOf(':'));
    agent.address = `${opts.advertise ?? agent.bindHost}:${port}`;
    return agent;
  }

  /** Joins the world through the master; resolves when every worker is known. */
  async rendezvous(): Promise<this> {
    if (this.state !== 'listening') throw errors.notRunning(this.name, this.state);
    const me: WorkerInfo = { name: this.name, rank: this.rank, address: this.address };
    let all: WorkerInfo[];
    try {
      if (this.host) {
        this.host.start(this.opts.timeoutMs);
        all = await new Promise<WorkerInfo[]>((resolve, reject) => this.host!.join({ worker: me, worldSize: this.worldSize }, (e, w) => (e ? reject(e) : resolve(w!))));
      } else {
        this.link = new MasterLink(this.name, this.opts.master, this.opts.authToken, this.opts.tls?.channel);
        all = await this.link.join(me, this.worldSize, this.opts.timeoutMs, this.opts.rejoin);
      }
    } catch (e) {
      await this.shutdown({ graceful: false });
      throw e;
    }
    for (const w of all) { this.infos.set(w.name, w); this.byRank[w.rank] = w; }
    this.state = 'ready';
    this.markReady();
    // pings and verdicts start with the world: the rendezvous itself is nobody's silence
    this.heartbeat?.start();
    return this;
  }

  // ---- world ----

  workerInfo(name?: WorkerRef): WorkerInfo {
    if (name === undefined) return this.infos.get(this.name) ?? { name: this.name, rank: this.rank, address: this.address };
    if (typeof name === 'object' && name !== null) name = name.name;
    const w = typeof name === 'number' ? this.byRank[name] : this.infos.get(name);
    if (!w) throw errors.unknownWorker(this.name, String(name));
    return w;
  }

  workers(): WorkerInfo[] {
    return this.byRank.filter((w) => w !== undefined);
  }

  /**
   * The world as the master knows it now (an elastic world grows with late joins), and the members
   * that departed: this agent's view is updated to it (new workers, new addresses).
   */
  async refreshWorld(): Promise<{ workers: WorkerInfo[]; departed: string[] }> {
    if (this.state !== 'ready' && this.state !== 'stopping') throw errors.notRunning(this.name, this.state);
    const w = this.host ? this.host.world()! : await this.link!.world(this.opts.timeoutMs);
    for (const info of w.workers) this.replaceWorker(info);
    return w;
  }

  /** Whether this agent joined as a restarted process in place of a worker that died (InitOptions.rejoin). */
  get rejoined(): boolean {
    return this.opts.rejoin && !this.host;
  }

  /**
   * Waits (at most `timeoutMs`) for `worker` to rejoin the world at a new address (a restarted
   * process, InitOptions.rejoin) and resolves to true once this agent sends to the new address;
   * false if its address is still the one this agent knows when the wait runs out. The master is
   * asked, and answers as soon as the address changes. The calls that failed on the old process
   * are not repeated: the caller decides what to send again.
   */
  async awaitRejoin(worker: WorkerRef, timeoutMs: number): Promise<boolean> {
    if (this.state !== 'ready') throw errors.notRunning(this.name, this.state);
    const known = this.workerInfo(worker);
    const waitMs = Math.max(0, Math.floor(timeoutMs));
    const now = this.host
      ? await new Promise<WorkerInfo>((resolve, reject) => this.host!.lookup({ name: known.name, staleAddress: known.address, waitMs }, (e, w) => (e ? reject(e) : resolve(w!))))
      : await this.link!.lookup(known.name, known.address, waitMs);
    if (now.address === known.address) return false;
    this.replaceWorker(now);
    return true;
  }

  /** A worker rejoined at a new address, or joined an elastic world late: later calls go there (an old connection is closed). */
  private replaceWorker(w: WorkerInfo): void {
    if (w.name === this.name) return;
    const old = this.infos.get(w.name);
    if (old && old.address === w.address) return;
    this.infos.set(w.name, w);
    if (this.byRank[w.rank] === undefined || this.byRank[w.rank]!.name === w.name) this.byRank[w.rank] = w;
    const p = this.peers.get(w.name);
    if (p) {
      this.peers.delete(w.name);
      p.close();
    }
  }

  // ---- functions ----

  /** Makes `fn` callable by other workers under `name`; it may return a promise. */
  register(name: string, fn: RemoteFunction): this {
    if (typeof name !== 'string' || name.length === 0) throw errors.invalidOption('name', name, 'expected a non-empty string');
    if (name.startsWith(RESERVED)) throw errors.reservedName(this.name, name);
    if (typeof fn !== 'function') throw errors.invalidOption('fn', typeof fn, 'expected a function');
    if (this.fns.has(name)) throw errors.duplicateFunction(this.name, name);
    this.fns.set(name, fn);
    return this;
  }

  unregister(name: string): boolean {
    return this.fns.delete(name);
  }

  /**
   * For the layers built on the RPC layer (src/collective): registers a reserved `__psrpc.*`
   * function, which user code cannot register or call with `call`. Its traffic goes through
   * `sendInternal`, outside distributed autograd's recording.
   */
  registerInternal(name: string, fn: (...args: unknown[]) => unknown): void {
    if (!name.startsWith(RESERVED)) throw errors.invalidOption('name', name, `an internal function's name starts with "${RESERVED}"`);
    if (this.internal.has(name)) throw errors.duplicateFunction(this.name, name);
    this.internal.set(name, fn);
  }

  /** Removes a function registered with `registerInternal`. */
  unregisterInternal(name: string): boolean {
    return name.startsWith(RESERVED) && this.internal.delete(name);
  }

  /** Calls an internal function (`registerInternal`) on worker `to`; tensors in `args` are sent from their own memory. */
  sendInternal(to: WorkerRef, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown> {
    if (!fn.startsWith(RESERVED)) return Promise.reject(errors.invalidOption('fn', fn, `an internal function's name starts with "${RESERVED}"`));
    return this.transmit(to, fn, args, timeoutMs);
  }

  private runLocal(fn: string, args: unknown[]): Promise<unknown> {
    const f = this.fns.get(fn);
    if (!f) return Promise.reject(errors.unknownFunction(this.name, fn));
    try {
      return Promise.resolve(f(...args));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private runInternal(fn: string, args: unknown[]): Promise<unknown> {
    const f = this.internal.get(fn);
    if (!f) return Promise.reject(errors.unknownFunction(this.name, fn));
    try {
      return Promise.resolve(f(...args));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---- calls ----

  /** Runs `fn(...args)` on worker `to` and resolves to its result (rejects with RpcError). */
  call<R = unknown>(to: WorkerRef, fn: string, args: unknown[] = [], options: CallOptions = {}): Promise<R> {
    return this.callAsync<R>(to, fn, args, options);
  }

  /**
   * Same as call: returns the pending result as a promise. Tensors in `args` are sent from their
   * own memory: do not modify them until the promise settles.
   */
  callAsync<R = unknown>(to: WorkerRef, fn: string, args: unknown[] = [], options: CallOptions = {}): Promise<R> {
    if (typeof fn === 'string' && fn.startsWith(RESERVED)) return Promise.reject(errors.reservedName(this.name, fn));
    if (!Array.isArray(args)) return Promise.reject(errors.invalidOption('args', typeof args, 'expected an array of arguments'));
    return this.send(to, fn, args, options.timeoutMs) as Promise<R>;
  }

  /** Every outgoing call: inside a distributed autograd context, user calls and RRef methods record send/recv. */
  private async send(to: WorkerRef, fn: string, args: unknown[], timeoutMs?: number): Promise<unknown> {
    const ctx = this.distAutograd.current();
    if (ctx && this.distAutograd.recordable(fn)) return this.distAutograd.call(ctx, this.workerInfo(to).name, fn, args, timeoutMs);
    return this.transmit(to, fn, args, timeoutMs);
  }

  private async transmit(to: WorkerRef, fn: string, args: unknown[], timeoutMs = this.opts.timeoutMs): Promise<unknown> {
    if (this.state !== 'ready' && this.state !== 'stopping') throw errors.notRunning(this.name, this.state);
    const target = this.workerInfo(to);
    const silentMs = this.heartbeat?.lostFor(target.name);
    if (silentMs !== undefined) throw errors.peerSilent(this.name, target.name, silentMs, fn);
    if (this.faults) await this.faults.intercept(this.name, target.name, fn);
    const payload = encode(args, this.codec);
    if (target.name === this.name) {
      // a call to oneself takes the same encode/decode path, so that it means the same thing
      this.localCalls++;
      try {
        return decode(flatten(await this.dispatch(this.name, fn, flatten(payload))), this.codec);
      } finally {
        this.localCalls--;
      }
    }
    const result = await this.peer(target).call(fn, payload, timeoutMs);
    return decode(result, this.codec);
  }

  private peer(w: WorkerInfo): Peer {
    let p = this.peers.get(w.name);
    if (!p) {
      const limits = { maxMessageBytes: this.opts.maxMessageBytes, inlineBytes: this.opts.inlineBytes, chunkBytes: this.opts.chunkBytes };
      const hooks = { beating: this.heartbeat !== undefined, heard: () => this.heard(w.name), link: (out: PingSink) => this.linkExchange(w.name, out) };
      p = new Peer(this.name, w, limits, () => this.traffic(), this.opts.authToken, this.bindHost, hooks, this.opts.tls);
      this.peers.set(w.name, p);
    }
    return p;
  }

  /** @internal Dispatcher: runs one incoming call. */
  async dispatch(_from: string, name: string, payload: Buffer): Promise<Encoded> {
    this.running++;
    try {
      const fn = name.startsWith(RESERVED) ? this.internal.get(name) : this.fns.get(name);
      if (!fn) throw errors.unknownFunction(this.name, name);
      const args = decode(payload, this.codec);
      if (!Array.isArray(args)) throw errors.codec(this.name, 'call arguments are not an array');
      const result = await fn(...args);
      return encode(result, this.codec);
    } finally {
      this.running--;
    }
  }

  /** @internal Dispatcher and peers: something arrived from `from`; false: the fault injector drops it. */
  heard(from: string): boolean {
    if (this.faults && !this.faults.receive(from)) return false;
    this.heartbeat?.heard(from);
    return true;
  }

  /** @internal Dispatcher: an Exchange stream with `peer` opened (either direction); it carries pings. */
  linkExchange(peer: string, out: PingSink): () => void {
    return this.heartbeat ? this.heartbeat.link(peer, out) : () => {};
  }

  // ---- failure detection ----

  /**
   * Runs `cb(worker, silentMs)` each time heartbeats declare a worker lost (InitOptions.deadAfterMs):
   * once per loss, after the calls in flight to it have failed. Returns the function that removes
   * `cb`. Loss is not final: see onPeerRecovered.
   */
  onPeerLost(cb: (worker: string, silentMs: number) => void): () => void {
    this.lostListeners.add(cb);
    return () => { this.lostListeners.delete(cb); };
  }

  /** Runs `cb(worker)` when a lost worker is heard from again: calls to it go through again from then on. */
  onPeerRecovered(cb: (worker: string) => void): () => void {
    this.recoveredListeners.add(cb);
    return () => { this.recoveredListeners.delete(cb); };
  }

  /** Workers lost now (silent for deadAfterMs and not heard from since). */
  lostPeers(): string[] {
    return this.heartbeat?.lost() ?? [];
  }

  private peerLost(worker: string, silentMs: number): void {
    // an elastic world's master counts a lost member as gone (its barrier stops waiting for it)
    this.host?.depart(worker);
    this.peers.get(worker)?.failSilent((fn) => errors.peerSilent(this.name, worker, silentMs, fn));
    for (const cb of [...this.lostListeners]) cb(worker, silentMs);
  }

  /** @internal */
  traffic(): void {
    this.activity++;
  }

  // ---- remote references ----

  /** Creates `fn(...args)` on worker `to` and returns a reference to it at once. */
  remote<T = unknown>(to: WorkerRef, fn: string, args: unknown[] = []): RRef<T> {
    if (this.state !== 'ready' && this.state !== 'stopping') throw errors.notRunning(this.name, this.state);
    if (fn.startsWith(RESERVED)) throw errors.reservedName(this.name, fn);
    if (!Array.isArray(args)) throw errors.invalidOption('args', typeof args, 'expected an array of arguments');
    return this.rrefs.createRemote<T>(this.workerInfo(to).name, { fn, args });
  }

  /** Wraps a local value as an RRef owned by this worker. */
  rref<T>(value: T): RRef<T> {
    return this.rrefs.local(value);
  }

  /** Counters for tests and monitoring. */
  stats(): { ownedRRefs: number; outstandingCalls: number; runningHandlers: number; activity: number } {
    let outstanding = this.localCalls;
    for (const p of this.peers.values()) outstanding += p.outstanding;
    return { ownedRRefs: this.rrefs.owned.size, outstandingCalls: outstanding, runningHandlers: this.running, activity: this.activity };
  }

  private idle(): boolean {
    const s = this.stats();
    return s.outstandingCalls === 0 && s.runningHandlers === 0;
  }

  private async waitIdle(deadline: number): Promise<void> {
    while (!this.idle()) {
      if (Date.now() > deadline) {
        const s = this.stats();
        throw errors.barrier(this.name, `still ${s.outstandingCalls} calls out and ${s.runningHandlers} handlers running at the deadline`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  // ---- shutdown ----

  /**
   * Stops the agent. Graceful (default): waits until every worker is idle (no calls out, no
   * handlers running, two barrier rounds without new traffic), then all stop together. Not
   * graceful: stops at once, failing calls in flight. Rejects (after stopping) if the barrier
   * missed its deadline, e.g. because a peer died.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    if (this.stopping) return this.stopping;
    // refused before anything stops: the agent goes on as it was
    if (options.leave === true && this.opts.minWorldSize === this.worldSize) {
      return Promise.reject(errors.invalidOption('leave', true, 'only a member of an elastic world (minWorldSize < worldSize) can leave it'));
    }
    this.stopping = this.stop(options.graceful ?? true, options.timeoutMs ?? this.opts.timeoutMs, options.leave === true);
    return this.stopping;
  }

  private async stop(graceful: boolean, timeoutMs: number, leave = false): Promise<void> {
    const wasReady = this.state === 'ready';
    this.state = 'stopping';
    let failure: unknown;
    if (leave && wasReady) {
      try {
        await this.waitIdle(Date.now() + timeoutMs);
        if (this.host) this.host.depart(this.name);
        else await this.link!.leave(this.name, timeoutMs);
      } catch (e) {
        failure = e;
      }
    } else if (graceful && wasReady) {
      try {
        await this.barrier(Date.now() + timeoutMs, timeoutMs);
      } catch (e) {
        failure = e;
      }
    }
    this.state = 'stopped';
    // heartbeats run through the barrier (a peer dying then fails the calls it holds up), not after
    this.heartbeat?.stop();
    this.rrefs.close();
    for (const p of this.peers.values()) p.close();
    this.link?.close();
    if (graceful && failure === undefined) {
      // let the last barrier answers and responses leave before the sockets close
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.server.forceShutdown(); resolve(); }, 2000);
        this.server.tryShutdown(() => { clearTimeout(t); resolve(); });
      });
    } else {
      this.server.forceShutdown();
    }
    this.host?.close();
    if (failure !== undefined) throw failure;
  }

  private async barrier(deadline: number, timeoutMs: number): Promise<void> {
    let previous = -1;
    for (let round = 0; ; round++) {
      await this.waitIdle(deadline);
      const req = { name: this.name, round, idle: this.idle(), activity: this.activity };
      const left = Math.max(1, deadline - Date.now());
      const reply = this.host
        ? await new Promise<{ allIdle: boolean; activity: number }>((resolve, reject) => {
          const t = setTimeout(() => reject(errors.barrier(this.name, `not every worker reached the barrier within ${timeoutMs} ms`)), left);
          this.host!.barrier(req, (e, r) => { clearTimeout(t); if (e) reject(e); else resolve(r!); });
        })
        : await this.link!.barrier(req, left);
      if (reply.allIdle && reply.activity === previous) return;
      previous = reply.allIdle ? reply.activity : -1;
    }
  }
}

/** Starts an agent and joins the world: `const agent = await init({ name, rank, worldSize, master })`. */
export async function init(options: InitOptions): Promise<Agent> {
  const agent = await Agent.start(options);
  return agent.rendezvous();
}
