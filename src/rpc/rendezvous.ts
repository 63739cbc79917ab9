// Rendezvous through the master: every worker joins with its name, rank and address; the master
// answers everyone at once when the world is complete. The same host runs the shutdown barrier.
//
// Nothing waits forever: the master fails every waiting joiner with the list of missing ranks when
// its deadline passes, duplicates are refused at once, and a joiner that cannot reach the master
// gives up at its own deadline.
//
// Rejoin (a process restarted in place of one that died, psrun --max-restarts): once the world is
// complete, a join marked `rejoin` with the name and rank of a member replaces that member's
// address and is answered with the world at once. Nobody is told: a peer that needs the new
// address asks with Lookup (Agent.awaitRejoin), which the master holds until the address differs
// from the one the peer knows or its wait runs out. The auth token is what keeps a stranger from
// taking a member's place.
//
// Elastic worlds (minSize < worldSize): the world is complete once minSize workers have joined;
// later joins take free ranks (< worldSize) and are answered with the world at once (late joins).
// A member leaves for good with Leave, or is lost (the master's heartbeats): the shutdown barrier
// then waits only for the members still there. World answers with the current members.
//
// Authentication: the host's methods are served on the agent's server, whose authInterceptor
// (service.ts) refuses a call without the world's auth token before join() or barrier() sees it,
// so such a caller never takes a slot. A MasterLink sends the token with every call.
//
// TLS (tls.ts): the host is served on the agent's TLS server and a MasterLink connects with the
// agent's TLS credentials, so a joiner that cannot complete the handshake never reaches join().
import * as grpc from '@grpc/grpc-js';
import { errors, RpcError, Status } from './errors.js';
import { AUTH_METADATA_KEY } from './options.js';
import type { WorkerInfo } from './peer.js';
import { RendezvousClient, channelOptions, type BarrierReply, type BarrierRequest, type JoinReply, type JoinRequest, type LeaveRequest, type LookupRequest, type WireWorkerInfo } from './proto.js';

type Reply<T> = (err: RpcError | null, value?: T) => void;

export class RendezvousHost {
  private readonly joined = new Map<string, { info: WorkerInfo; reply: Reply<WorkerInfo[]> }>();
  private readonly ranks = new Map<number, string>();
  private complete?: WorkerInfo[];
  private timer?: NodeJS.Timeout;
  private readonly rounds = new Map<number, { entries: Map<string, BarrierRequest>; replies: Reply<BarrierReply>[] }>();

  /**
   * @internal Called after each accepted join with the number of workers waiting. Why: a test of
   * the world deadline must know that a joiner has reached the master before the deadline starts;
   * the joiner's own promise cannot say so (it settles only when the world does).
   */
  onJoin: (worker: WorkerInfo, joined: number) => void = () => {};

  /** Called after a rejoin replaced a member's address, or a late join added one (the master's agent updates its own view). */
  onRejoin: (worker: WorkerInfo) => void = () => {};

  /** Lookups waiting for a member's address to change, by member name. */
  private readonly lookups = new Map<string, Set<{ stale: string; reply: Reply<WorkerInfo>; timer: NodeJS.Timeout }>>();

  /** Elastic worlds: members that left or were lost (the barrier does not wait for them). */
  private readonly departed = new Set<string>();

  constructor(private readonly self: string, private readonly worldSize: number, private readonly minSize = worldSize) {}

  /** Whether workers may join after the world is complete (minSize < worldSize). */
  get elastic(): boolean {
    return this.minSize < this.worldSize;
  }

  /** The world now and who of it departed (undefined before it is complete). */
  world(): { workers: WorkerInfo[]; departed: string[] } | undefined {
    return this.complete ? { workers: [...this.complete], departed: [...this.departed] } : undefined;
  }

  /** Elastic worlds: `name` left or was lost; barrier rounds stop waiting for it. */
  depart(name: string): void {
    if (!this.elastic || !this.complete?.some((w) => w.name === name) || this.departed.has(name)) return;
    this.departed.add(name);
    for (const [round, r] of this.rounds) this.finishRound(round, r);
  }

  /** Elastic worlds: a lost member was heard from again. */
  undepart(name: string): void {
    this.departed.delete(name);
  }

  /** Members the shutdown barrier waits for. */
  private members(): number {
    return this.complete ? this.complete.length - this.departed.size : this.worldSize;
  }

  /** Starts the deadline for the world to complete. */
  start(timeoutMs: number): void {
    if (this.timer || this.complete) return;
    this.timer = setTimeout(() => {
      if (this.complete) return;
      const missing: number[] = [];
      for (let r = 0; r < this.worldSize; r++) if (!this.ranks.has(r)) missing.push(r);
      const err = errors.worldIncomplete(this.self, this.joined.size, this.minSize, missing, timeoutMs);
      for (const j of this.joined.values()) j.reply(err);
      this.joined.clear();
      this.ranks.clear();
    }, timeoutMs);
  }

  join(req: JoinRequest, reply: Reply<WorkerInfo[]>): void {
    const w = req.worker;
    if (req.worldSize !== this.worldSize) return reply(errors.worldMismatch(this.self, 'worldSize', req.worldSize, this.worldSize));
    if (!Number.isInteger(w.rank) || w.rank < 0 || w.rank >= this.worldSize) {
      return reply(new RpcError(Status.INVALID_ARGUMENT, this.self, `rank ${w.rank} of "${w.name}" is outside [0, ${this.worldSize})`));
    }
    if (req.rejoin && this.complete && (!this.elastic || this.complete.some((x) => x.name === w.name))) return this.rejoin(w, reply);
    // a process restarted before the world completed replaces its predecessor's pending join
    const pending = req.rejoin && !this.complete ? this.joined.get(w.name) : undefined;
    if (pending && pending.info.rank === w.rank) {
      this.joined.delete(w.name);
      this.ranks.delete(w.rank);
      pending.reply(new RpcError(Status.ABORTED, this.self, `the join of "${w.name}" was taken over by a restarted process (rejoin) at ${w.address}`));
    }
    const byName = this.joined.get(w.name) ?? (this.complete?.find((x) => x.name === w.name) && { info: w });
    if (byName) return reply(errors.duplicateWorker(this.self, 'name', w.name, w.name));
    const holder = this.ranks.get(w.rank) ?? this.complete?.find((x) => x.rank === w.rank)?.name;
    if (holder !== undefined) return reply(errors.duplicateWorker(this.self, 'rank', w.rank, holder));
    if (this.complete && !this.elastic) return reply(new RpcError(Status.FAILED_PRECONDITION, this.self, `the world of ${this.worldSize} is already complete`));
    if (this.complete) {
      // a late join into a free rank of an elastic world
      const info: WorkerInfo = { name: w.name, rank: w.rank, address: w.address };
      this.complete.push(info);
      this.complete.sort((a, b) => a.rank - b.rank);
      this.onRejoin(info);
      return reply(null, [...this.complete]);
    }
    this.joined.set(w.name, { info: { name: w.name, rank: w.rank, address: w.address }, reply });
    this.ranks.set(w.rank, w.name);
    this.onJoin(w, this.joined.size);
    if (this.joined.size === this.minSize) {
      clearTimeout(this.timer);
      const all = [...this.joined.values()].map((j) => j.info).sort((a, b) => a.rank - b.rank);
      this.complete = all;
      for (const j of this.joined.values()) j.reply(null, all);
      this.joined.clear();
    }
  }

  /** A member of the complete world comes back at a new address (same name, same rank). */
  private rejoin(w: WireWorkerInfo, reply: Reply<WorkerInfo[]>): void {
    const all = this.complete!;
    const i = all.findIndex((x) => x.name === w.name);
    if (i < 0) return reply(new RpcError(Status.FAILED_PRECONDITION, this.self, `rejoin of "${w.name}": no worker of that name is in the world (${all.map((x) => x.name).join(', ')})`));
    if (all[i]!.rank !== w.rank) return reply(new RpcError(Status.FAILED_PRECONDITION, this.self, `rejoin of "${w.name}" as rank ${w.rank}: it is rank ${all[i]!.rank} of the world (a restarted process keeps its rank)`));
    const info: WorkerInfo = { name: w.name, rank: w.rank, address: w.address };
    all[i] = info;
    this.departed.delete(w.name);
    this.onRejoin(info);
    const waiting = this.lookups.get(w.name);
    if (waiting) {
      for (const l of waiting) if (l.stale !== info.address) { clearTimeout(l.timer); waiting.delete(l); l.reply(null, info); }
      if (waiting.size === 0) this.lookups.delete(w.name);
    }
    reply(null, [...all]);
  }

  /** The member's current address, once it differs from `staleAddress` or after `waitMs`. */
  lookup(req: LookupRequest, reply: Reply<WorkerInfo>): void {
    const w = this.complete?.find((x) => x.name === req.name);
    if (!w) return reply(new RpcError(Status.NOT_FOUND, this.self, `lookup of "${req.name}": ${this.complete ? 'no worker of that name is in the world' : 'the world is not complete yet'}`));
    const waitMs = Math.max(0, Math.min(req.waitMs | 0, 24 * 3600_000));
    if (w.address !== req.staleAddress || waitMs === 0) return reply(null, w);
    let set = this.lookups.get(req.name);
    if (!set) { set = new Set(); this.lookups.set(req.name, set); }
    const entry = {
      stale: req.staleAddress,
      reply,
      timer: setTimeout(() => {
        set!.delete(entry);
        reply(null, this.complete!.find((x) => x.name === req.name)!);
      }, waitMs),
    };
    set.add(entry);
  }

  barrier(req: BarrierRequest, reply: Reply<BarrierReply>): void {
    let round = this.rounds.get(req.round);
    if (!round) { round = { entries: new Map(), replies: [] }; this.rounds.set(req.round, round); }
    round.entries.set(req.name, req);
    round.replies.push(reply);
    this.finishRound(req.round, round);
  }

  private finishRound(n: number, round: { entries: Map<string, BarrierRequest>; replies: Reply<BarrierReply>[] }): void {
    let present = 0;
    for (const name of round.entries.keys()) if (!this.departed.has(name)) present++;
    if (present < this.members()) return;
    this.rounds.delete(n);
    let allIdle = true;
    let activity = 0;
    for (const e of round.entries.values()) { allIdle &&= e.idle; activity += e.activity; }
    for (const r of round.replies) r(null, { allIdle, activity });
  }

  implementation(): grpc.UntypedServiceImplementation {
    const toStatus = (err: RpcError) => ({ code: err.code, details: err.message });
    return {
      Join: (call: grpc.ServerUnaryCall<JoinRequest, JoinReply>, cb: grpc.sendUnaryData<JoinReply>) => {
        this.join(call.request, (err, workers) => (err ? cb(toStatus(err)) : cb(null, { workers: workers! })));
      },
      Barrier: (call: grpc.ServerUnaryCall<BarrierRequest, BarrierReply>, cb: grpc.sendUnaryData<BarrierReply>) => {
        this.barrier(call.request, (err, r) => (err ? cb(toStatus(err)) : cb(null, r!)));
      },
      World: (_call: grpc.ServerUnaryCall<object, JoinReply>, cb: grpc.sendUnaryData<JoinReply>) => {
        const w = this.world();
        if (!w) return cb(toStatus(new RpcError(Status.FAILED_PRECONDITION, this.self, 'the world is not complete yet')));
        cb(null, { workers: w.workers, departed: w.departed });
      },
      Leave: (call: grpc.ServerUnaryCall<LeaveRequest, object>, cb: grpc.sendUnaryData<object>) => {
        this.depart(call.request.name);
        cb(null, {});
      },
      Lookup: (call: grpc.ServerUnaryCall<LookupRequest, WireWorkerInfo>, cb: grpc.sendUnaryData<WireWorkerInfo>) => {
        this.lookup(call.request, (err, w) => (err ? cb(toStatus(err)) : cb(null, w!)));
      },
    };
  }

  close(): void {
    clearTimeout(this.timer);
    const err = errors.shutDown(this.self);
    for (const j of this.joined.values()) j.reply(err);
    this.joined.clear();
    for (const r of this.rounds.values()) for (const reply of r.replies) reply(err);
    this.rounds.clear();
    for (const set of this.lookups.values()) for (const l of set) { clearTimeout(l.timer); l.reply(err); }
    this.lookups.clear();
  }
}

/** A joiner's (or barrier participant's) connection to the master. */
export class MasterLink {
  private readonly client: grpc.Client & Record<string, Function>;

  /** Said after "unreachable" under TLS: grpc-js's waitForReady does not say why a connection failed. */
  private readonly tlsHint: string;

  /** `credentials`: TLS (tls.ts WorldTls.channel; the master's certificate must name `master`'s host); undefined: plain. */
  constructor(private readonly self: string, readonly master: string, private readonly authToken?: string, credentials?: grpc.ChannelCredentials) {
    const Ctor = RendezvousClient();
    this.client = new Ctor(master, credentials ?? grpc.credentials.createInsecure(), channelOptions(4 * 1024 * 1024)) as grpc.Client & Record<string, Function>;
    this.tlsHint = credentials ? ` (TLS is on: the master's certificate must chain to tls.ca and name the host of ${master}, and under mutual TLS the master must accept this worker's certificate)` : '';
  }

  private unary<Req, Res>(method: string, req: Req, deadline: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      const md = new grpc.Metadata();
      if (this.authToken !== undefined) md.set(AUTH_METADATA_KEY, this.authToken);
      this.client[method]!(req, md, { deadline }, (err: grpc.ServiceError | null, res: Res) => {
        if (!err) return resolve(res);
        reject(err);
      });
    });
  }

  private waitReady(deadline: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(deadline, (err) => {
        if (err) reject(errors.masterUnreachable(this.self, this.master, timeoutMs, err.message + this.tlsHint));
        else resolve();
      });
    });
  }

  async join(info: WorkerInfo, worldSize: number, timeoutMs: number, rejoin = false): Promise<WorkerInfo[]> {
    const deadline = Date.now() + timeoutMs;
    await this.waitReady(deadline, timeoutMs);
    try {
      const reply = await this.unary<JoinRequest, JoinReply>('Join', { worker: info, worldSize, rejoin }, deadline + 1000);
      return reply.workers.map((w) => ({ name: w.name, rank: w.rank, address: w.address }));
    } catch (e) {
      throw this.toRpcError(e as grpc.ServiceError, 'join', timeoutMs, deadline + 1000);
    }
  }

  /** The worker's address at the master: once it differs from `staleAddress`, or after `waitMs`. */
  async lookup(name: string, staleAddress: string, waitMs: number): Promise<WorkerInfo> {
    const deadline = Date.now() + waitMs + 10_000;
    try {
      const w = await this.unary<LookupRequest, WireWorkerInfo>('Lookup', { name, staleAddress, waitMs }, deadline);
      return { name: w.name, rank: w.rank, address: w.address };
    } catch (e) {
      throw this.toRpcError(e as grpc.ServiceError, 'lookup', waitMs + 10_000, deadline);
    }
  }

  /** The world as the master knows it now, and who of it departed. */
  async world(timeoutMs: number): Promise<{ workers: WorkerInfo[]; departed: string[] }> {
    const deadline = Date.now() + timeoutMs;
    try {
      const r = await this.unary<object, JoinReply>('World', {}, deadline);
      return { workers: r.workers.map((w) => ({ name: w.name, rank: w.rank, address: w.address })), departed: r.departed ?? [] };
    } catch (e) {
      throw this.toRpcError(e as grpc.ServiceError, 'world', timeoutMs, deadline);
    }
  }

  /** Leaves an elastic world for good. */
  async leave(name: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    try {
      await this.unary<LeaveRequest, object>('Leave', { name }, deadline);
    } catch (e) {
      throw this.toRpcError(e as grpc.ServiceError, 'leave', timeoutMs, deadline);
    }
  }

  async barrier(req: BarrierRequest, timeoutMs: number): Promise<BarrierReply> {
    const deadline = Date.now() + timeoutMs;
    try {
      return await this.unary<BarrierRequest, BarrierReply>('Barrier', req, deadline);
    } catch (e) {
      throw this.toRpcError(e as grpc.ServiceError, 'barrier', timeoutMs, deadline);
    }
  }

  private toRpcError(e: grpc.ServiceError, what: string, timeoutMs: number, deadline: number): RpcError {
    // a DEADLINE_EXCEEDED before our own deadline is the master's answer (world incomplete)
    if (e.code === Status.DEADLINE_EXCEEDED && Date.now() >= deadline - 50) {
      return new RpcError(Status.DEADLINE_EXCEEDED, this.self, `${what} through master ${this.master} got no answer within ${timeoutMs} ms`);
    }
    if (e.code === Status.UNAUTHENTICATED) return errors.authRejected(this.self, 'master', `master ${this.master}`, what);
    if (e.code === Status.UNAVAILABLE) return errors.masterUnreachable(this.self, this.master, timeoutMs, e.details + this.tlsHint);
    return new RpcError(e.code, 'master', e.details || e.message);
  }

  close(): void {
    this.client.close();
  }
}
