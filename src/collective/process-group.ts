// A process group: collective communication among the agents of a world (or a subset of them)
// over the RPC layer's data plane. Payloads are typed arrays that the codec sends raw from their
// own memory (large ones over the bulk side channel, src/rpc/bulk-socket.ts) and that arrive as
// views of the receive buffer, so a reduction adds straight from the wire into the destination and
// a gather copies once (widening 16-bit values on the way). No JSON touches the data.
//
// Algorithms (n ranks, N elements; see the nccl-tests conventions in bench/collective.ts):
// - allReduce on two ranks: each sends its buffer to the other, in pieces, and adds the other's in
//   place (the ring's bytes in one phase). On more ranks, small buffers (N * wire bytes <= `directBytes`) go to every other rank at once and
//   every rank reduces the n contributions in rank order (one round of latency); larger ones take
//   the ring: a reduce-scatter phase (n - 1 steps) then an all-gather phase (n - 1 steps), each
//   rank sending 2 (n - 1) / n of the buffer in all. Every segment is cut into pieces that run their
//   chains concurrently, so the two phases and both directions of every link overlap.
// - reduceScatter and allGather are the ring's two phases on their own; broadcast sends the root's
//   pieces to every rank; barrier is an empty message from every rank to every rank.
// - bf16 / fp16: each hop narrows its values to 16 bits and the receiver widens them into fp32
//   sums. A rank's own reduced segment is rounded the same way before it is sent, so every rank
//   ends with identical values (all representable in the wire format).
//
// Ordering and failures: every op takes the group's next sequence number when it is called, so
// several ops may be in flight and all ranks must call them in the same order (as with gloo and
// NCCL). Each message carries (sequence number, op, element count); a rank that called another op
// or another size at the same number fails the op at once, naming both. An op waits at most its
// timeout for the other ranks and then fails naming the ranks that did not send, and what each was
// last seen doing; a failed send (a dead peer) fails it naming that rank. After a failure the group
// is broken: later ops fail at once with the first failure, because the ranks no longer agree on
// where they are.
import { releaseReceived, RpcError, Status, systemClock, type Agent, type Clock, type ClockTimer } from '../rpc/index.js';
import { accumulateWire, fromWire, getBackend, roundToWire, toWire, wireBytes, type WireDType } from '../tensor/index.js';

export type ReduceOp = 'sum' | 'avg' | 'max';
export type { WireDType };

export interface CollectiveOptions {
  /** What the values travel as (default float32). 16-bit formats are accumulated in fp32. */
  dtype?: WireDType;
  /** This op's timeout in ms (default: the group's). */
  timeoutMs?: number;
}

export interface ReduceOptions extends CollectiveOptions {
  /** default sum */
  op?: ReduceOp;
}

export interface GroupOptions {
  /** How long an op waits for the other ranks, in ms (default 30 s). */
  timeoutMs?: number;
  /** allReduce buffers of at most this many wire bytes use the direct algorithm (default 64 KiB). */
  directBytes?: number;
  /** Wire bytes of one ring piece (default 1 MiB): smaller pieces overlap more, larger ones cost fewer messages. */
  pieceBytes?: number;
  /** Time source of the timeouts (tests pass a ManualClock). */
  clock?: Clock;
}

export interface GroupStats {
  /** Payload bytes this rank sent and received in this group's ops. */
  bytesSent: number;
  bytesReceived: number;
  /** Ops started. */
  ops: number;
}

/** Offsets of `size` segments of `n` elements: equal counts, the first `n % size` one longer. size + 1 entries. */
export function segmentBounds(n: number, size: number): number[] {
  const base = Math.floor(n / size), extra = n % size;
  const out = [0];
  for (let i = 0; i < size; i++) out.push(out[i]! + base + (i < extra ? 1 : 0));
  return out;
}

const FN = '__psrpc.collective';
type Payload = Float32Array | Uint16Array;

interface Message {
  op: string;
  n: number;
  data: Payload;
}

interface Waiter {
  from: number;
  resolve(m: Message): void;
}

/** One running op: what it is, whom it waits for, and how it ends. */
class OpRun {
  readonly waiting = new Map<string, Waiter>();
  timer?: ClockTimer;
  failed = false;
  reject!: (e: Error) => void;
  constructor(readonly name: string, readonly seq: number, readonly n: number, readonly timeoutMs: number) {}
  /** "allReduce #12" */
  get label(): string {
    return `${this.name} #${this.seq}`;
  }
}

/** The per-agent router: one internal function for all groups, and messages for groups not created yet. */
class Router {
  readonly groups = new Map<string, ProcessGroup>();
  /** Messages of groups not created here yet: ProcessGroup.deliver's arguments, in arrival order. */
  readonly early = new Map<string, Parameters<ProcessGroup['deliver']>[]>();
  created = 0;
  constructor(readonly agent: Agent) {
    agent.registerInternal(FN, (group, seq, op, n, key, from, data) => {
      this.deliver(group as string, seq as number, op as string, n as number, key as string, from as number, data as Payload);
    });
  }

  deliver(group: string, seq: number, op: string, n: number, key: string, from: number, data: Payload): void {
    if (typeof group !== 'string' || !Number.isSafeInteger(seq) || typeof op !== 'string' || !Number.isSafeInteger(n)
      || typeof key !== 'string' || !Number.isSafeInteger(from) || !(data instanceof Float32Array || data instanceof Uint16Array)) {
      throw new RpcError(Status.INVALID_ARGUMENT, this.agent.name, `malformed collective message (group ${JSON.stringify(group)}, seq ${JSON.stringify(seq)}, op ${JSON.stringify(op)})`);
    }
    const g = this.groups.get(group);
    if (g) return g.deliver(seq, op, n, key, from, data);
    let list = this.early.get(group);
    if (!list) this.early.set(group, (list = []));
    list.push([seq, op, n, key, from, data]);
  }
}

const routers = new WeakMap<Agent, Router>();

function routerOf(agent: Agent): Router {
  let r = routers.get(agent);
  if (!r) routers.set(agent, (r = new Router(agent)));
  return r;
}

/**
 * Makes `agent` receive collective messages from now on, before any group exists here (a peer's
 * first message may arrive before this rank creates its group; it is kept for the group). Call it
 * before the world's rendezvous completes; ProcessGroup.create does it too.
 */
export function attachCollectives(agent: Agent): void {
  routerOf(agent);
}

/** The error every failure of a group's op is. */
export class CollectiveError extends RpcError {}

export class ProcessGroup {
  /** This process's rank in the group, in [0, size). */
  readonly rank: number;
  readonly size: number;
  /** The agents' world ranks of the group's ranks, in group-rank order. */
  readonly ranks: readonly number[];
  readonly name: string;
  private readonly agent: Agent;
  private readonly router: Router;
  private readonly names: string[];
  private readonly timeoutMs: number;
  private readonly directBytes: number;
  private readonly pieceBytes: number;
  private readonly clock: Clock;
  private readonly options: GroupOptions;
  private seq = 0;
  private readonly running = new Map<number, OpRun>();
  private readonly mailbox = new Map<string, Message>();
  /** Every pending receive, by message id (`seq|key|from`); also in its op's `waiting`, for the timeout's message. */
  private readonly waiters = new Map<string, Waiter>();
  /** Point-to-point ops running (sequence number 0: matched by peer, tag and count). */
  private readonly p2p = new Set<OpRun>();
  /** Per peer, the highest sequence number and op seen from it (for timeout messages). */
  private readonly lastSeen = new Map<number, string>();
  private readonly p2pCount = new Map<string, number>();
  private broken?: Error;
  private closed = false;
  private readonly counters: GroupStats = { bytesSent: 0, bytesReceived: 0, ops: 0 };

  private constructor(agent: Agent, router: Router, name: string, ranks: readonly number[], options: GroupOptions) {
    this.agent = agent;
    this.router = router;
    this.name = name;
    this.ranks = ranks;
    this.size = ranks.length;
    this.rank = ranks.indexOf(agent.rank);
    this.options = options;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.directBytes = options.directBytes ?? envBytes('PSRPC_COLLECTIVE_DIRECT_BYTES') ?? 64 * 1024;
    this.pieceBytes = options.pieceBytes ?? envBytes('PSRPC_COLLECTIVE_PIECE_BYTES') ?? 1 << 20;
    this.clock = options.clock ?? systemClock;
    for (const [key, v] of [['timeoutMs', this.timeoutMs], ['pieceBytes', this.pieceBytes]] as const) {
      if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`ProcessGroup: option ${key} must be a positive number, got ${v}`);
    }
    if (!(this.directBytes >= 0)) throw new RangeError(`ProcessGroup: option directBytes must be >= 0, got ${this.directBytes}`);
    const infos = agent.workers();
    this.names = ranks.map((r) => {
      const w = infos.find((i) => i.rank === r);
      if (!w) throw new RangeError(`ProcessGroup: rank ${r} is not in the world of ${agent.name} (world size ${agent.worldSize})`);
      return w.name;
    });
    router.groups.set(name, this);
    const early = router.early.get(name);
    if (early) {
      router.early.delete(name);
      for (const args of early) this.deliver(...args);
    }
  }

  /**
   * The group of the whole world (every agent's rank), after the agent's rendezvous. Every rank
   * creates it; one per agent.
   */
  static create(agent: Agent, options: GroupOptions = {}): ProcessGroup {
    const router = routerOf(agent);
    if (router.groups.has('world')) throw new RangeError(`ProcessGroup.create: agent ${agent.name} has a world group already (close it first)`);
    return new ProcessGroup(agent, router, 'world', Array.from({ length: agent.worldSize }, (_, i) => i), options);
  }

  /**
   * A group of some of this group's ranks (group ranks, listed in the new group's rank order).
   * Every rank of this group must call it, in the same order as its other newGroup calls (the
   * groups are told apart by that order); a rank outside `ranks` gets null.
   */
  newGroup(ranks: readonly number[], options: GroupOptions = {}): ProcessGroup | null {
    if (!Array.isArray(ranks) || ranks.length === 0) throw new RangeError(`newGroup: ranks must be a non-empty array of ranks of group ${this.name}, got ${JSON.stringify(ranks)}`);
    const seen = new Set<number>();
    for (const r of ranks) {
      if (!Number.isSafeInteger(r) || r < 0 || r >= this.size) throw new RangeError(`newGroup: rank ${JSON.stringify(r)} is not a rank of group ${this.name} (size ${this.size})`);
      if (seen.has(r)) throw new RangeError(`newGroup: rank ${r} is listed twice`);
      seen.add(r);
    }
    const id = ++this.router.created;
    const name = `${this.name}/${id}:${ranks.join(',')}`;
    if (!seen.has(this.rank)) return null;
    return new ProcessGroup(this.agent, this.router, name, ranks.map((r) => this.ranks[r]!), { ...this.options, ...options });
  }

  stats(): GroupStats {
    return { ...this.counters };
  }

  /**
   * Gives up on the group because of `reason` (this rank's own failure, outside any op): the other
   * ranks are told, so their ops fail at once naming this rank instead of at their timeouts, and
   * the group is broken here too. No-op once the group is broken or closed.
   */
  abort(reason: Error): void {
    if (this.broken || this.closed) return;
    const e = reason instanceof CollectiveError ? reason : this.error(Status.ABORTED, `rank ${this.rank} (${this.agent.name}) failed: ${reason.message}`);
    this.notifyAbort(e);
    this.fail(e);
  }

  /** Stops routing messages to this group; ops still running fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fail(new CollectiveError(Status.CANCELLED, this.agent.name, `process group ${this.name} was closed`));
    this.router.groups.delete(this.name);
    // the router stays: a group created later (or a peer's late message for it) still finds it
  }

  // ---- the ops ----

  /** Reduces `buf` across the ranks, in place on every rank. Resolves to `buf`. */
  allReduce(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    let op: ReduceOp, dtype: WireDType;
    try { op = reduceOpOf(options.op, 'allReduce'); dtype = dtypeOf(options.dtype, 'allReduce'); } catch (e) { return Promise.reject(e); }
    return this.run('allReduce', buf, options, async (run) => {
      if (this.size === 1) {
        roundToWire(dtype, buf);
        return buf;
      }
      if (this.size === 2) await this.pairReduce(run, buf, op, dtype);
      else if (buf.length * wireBytes(dtype) <= this.directBytes) await this.directReduce(run, buf, op, dtype);
      else {
        const bounds = segmentBounds(buf.length, this.size);
        await this.ring(run, buf, bounds, dtype, op, true, true);
      }
      return buf;
    });
  }

  /**
   * Reduces `buf` (the full input on every rank) so that this rank's segment
   * (`segmentBounds(buf.length, size)[rank]`) holds the reduced values; the rest of `buf` holds
   * partial sums afterwards. Resolves to that segment's view.
   */
  reduceScatter(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    let op: ReduceOp, dtype: WireDType;
    try { op = reduceOpOf(options.op, 'reduceScatter'); dtype = dtypeOf(options.dtype, 'reduceScatter'); } catch (e) { return Promise.reject(e); }
    return this.run('reduceScatter', buf, options, async (run) => {
      const bounds = segmentBounds(buf.length, this.size);
      if (this.size > 1) await this.ring(run, buf, bounds, dtype, op, true, false);
      else if (op === 'avg') { /* one rank: the average is the value */ }
      return buf.subarray(bounds[this.rank]!, bounds[this.rank + 1]!);
    });
  }

  /**
   * Fills every rank's segment of `buf` (`segmentBounds(buf.length, size)`) with that rank's
   * values; this rank's own segment holds its input. Resolves to `buf`.
   */
  allGather(buf: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
    let dtype: WireDType;
    try { dtype = dtypeOf(options.dtype, 'allGather'); } catch (e) { return Promise.reject(e); }
    return this.run('allGather', buf, options, async (run) => {
      const bounds = segmentBounds(buf.length, this.size);
      roundToWire(dtype, buf.subarray(bounds[this.rank]!, bounds[this.rank + 1]!));
      if (this.size > 1) await this.ring(run, buf, bounds, dtype, 'sum', false, true);
      return buf;
    });
  }

  /** Copies the root's `buf` into every rank's `buf`. Resolves to `buf`. */
  broadcast(buf: Float32Array, root: number, options: CollectiveOptions = {}): Promise<Float32Array> {
    let dtype: WireDType;
    try { dtype = dtypeOf(options.dtype, 'broadcast'); } catch (e) { return Promise.reject(e); }
    if (!Number.isSafeInteger(root) || root < 0 || root >= this.size) {
      return Promise.reject(new RangeError(`broadcast: root ${JSON.stringify(root)} is not a rank of group ${this.name} (size ${this.size})`));
    }
    return this.run('broadcast', buf, options, async (run) => {
      const pieces = this.pieces(buf.length, dtype);
      if (this.rank === root) {
        roundToWire(dtype, buf);
        const sends: Promise<void>[] = [];
        for (let p = 0; p < pieces; p++) {
          const [a, b] = pieceRange(0, buf.length, p, pieces);
          const wire = toWire(dtype, buf.subarray(a, b));
          for (let r = 0; r < this.size; r++) if (r !== root) sends.push(this.sendPiece(run, r, `b${p}`, wire));
        }
        await Promise.all(sends);
      } else {
        const recvs: Promise<void>[] = [];
        for (let p = 0; p < pieces; p++) {
          const [a, b] = pieceRange(0, buf.length, p, pieces);
          recvs.push(this.recvPiece(run, root, `b${p}`).then((m) => { fromWire(dtype, m.data, buf.subarray(a, b)); releaseReceived(m.data); }));
        }
        await Promise.all(recvs);
      }
      return buf;
    });
  }

  /** Resolves once every rank of the group has called barrier (the same call, by sequence number). */
  barrier(options: { timeoutMs?: number } = {}): Promise<void> {
    return this.run('barrier', EMPTY, options, async (run) => {
      const all: Promise<unknown>[] = [];
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) continue;
        // every rank has called barrier once this rank has heard from all; the sends carry no buffer to protect
        this.sendPiece(run, r, 'x', EMPTY).catch(() => {});
        all.push(this.recvPiece(run, r, 'x'));
      }
      await Promise.all(all);
    });
  }

  /** Sends `buf` to rank `dst`, matched with its `recv(_, this rank, tag)` in order. Do not modify `buf` until it resolves. */
  send(buf: Float32Array, dst: number, tag = 0, options: CollectiveOptions = {}): Promise<void> {
    let dtype: WireDType;
    try { dtype = dtypeOf(options.dtype, 'send'); } catch (e) { return Promise.reject(e); }
    const check = this.peerCheck('send', dst, tag);
    if (check) return Promise.reject(check);
    const k = this.nextP2p(`s${dst}.${tag}`);
    return this.run('send', buf, options, async (run) => {
      await this.sendPiece(run, dst, `p${tag}.${k}`, toWire(dtype, buf));
    }, 0);
  }

  /** Receives into `buf` what rank `src` sent with `send(_, this rank, tag)`; the sizes must match. */
  recv(buf: Float32Array, src: number, tag = 0, options: CollectiveOptions = {}): Promise<Float32Array> {
    let dtype: WireDType;
    try { dtype = dtypeOf(options.dtype, 'recv'); } catch (e) { return Promise.reject(e); }
    const check = this.peerCheck('recv', src, tag);
    if (check) return Promise.reject(check);
    const k = this.nextP2p(`r${src}.${tag}`);
    return this.run('recv', buf, options, async (run) => {
      const m = await this.recvPiece(run, src, `p${tag}.${k}`);
      if (m.data.length !== buf.length) {
        // fails this recv only: the pair's (tag, count) numbering stays in step on both sides
        this.failRun(run, this.error(Status.INVALID_ARGUMENT, `recv from rank ${src} (${this.names[src]}), tag ${tag}: it sent ${m.data.length} elements, this rank's buffer holds ${buf.length}`), false);
        return buf;
      }
      fromWire(dtype, m.data, buf);
      releaseReceived(m.data); // copied out: its memory goes back to the transport now
      return buf;
    }, 0);
  }

  // ---- algorithms ----

  /**
   * Two ranks: each sends its buffer, in pieces, to the other and adds the other's into its own.
   * The same bytes as the ring (N per rank) in one phase instead of two. a + b is b + a in IEEE
   * arithmetic, so both ranks end with the same bits.
   */
  private async pairReduce(run: OpRun, buf: Float32Array, op: ReduceOp, dtype: WireDType): Promise<void> {
    const other = 1 - this.rank;
    const pieces = this.pieces(buf.length, dtype);
    const reduceOp = wireOp(op);
    const piece = async (p: number): Promise<void> => {
      const [a, b] = pieceRange(0, buf.length, p, pieces);
      const view = buf.subarray(a, b);
      // what is sent must stay unchanged until it is on the wire: 16-bit values are a fresh array
      // anyway, a small fp32 buffer is copied (cheaper than waiting for the acknowledgement: the
      // latency-bound case), a large one is sent in place and its acknowledgement awaited
      const wire = dtype === 'float32' && buf.length * 4 <= SMALL_COPY_BYTES ? view.slice() : toWire(dtype, view);
      const send = this.sendPiece(run, other, `d${p}`, wire);
      let m: Message;
      if (wire === view) [, m] = await Promise.all([send, this.recvPiece(run, other, `d${p}`)]);
      else {
        send.catch(() => {});
        m = await this.recvPiece(run, other, `d${p}`);
      }
      if (dtype !== 'float32') fromWire(dtype, wire, view); // the own contribution as the other rank sees it
      accumulateWire(dtype, reduceOp, view, m.data);
      releaseReceived(m.data);
      if (op === 'avg') getBackend('cpu').kernels.scale(0.5, view);
      roundToWire(dtype, view);
    };
    const all: Promise<void>[] = [];
    for (let p = 0; p < pieces; p++) all.push(piece(p));
    await Promise.all(all);
  }

  private async directReduce(run: OpRun, buf: Float32Array, op: ReduceOp, dtype: WireDType): Promise<void> {
    const wire = toWire(dtype, buf, dtype === 'float32' ? new Float32Array(buf.length) : undefined);
    const sends: Promise<void>[] = [];
    const recvs: Promise<Message>[] = [];
    for (let r = 0; r < this.size; r++) {
      if (r === this.rank) continue;
      sends.push(this.sendPiece(run, r, 'd', wire));
      recvs.push(this.recvPiece(run, r, 'd'));
    }
    // the sends are of a copy: the op need not wait for their acknowledgements (a failed send
    // still fails the op if it is running, and breaks the group for the next ones)
    for (const p of sends) p.catch(() => {});
    const got = await Promise.all(recvs);
    // every rank reduces the same n contributions in rank order: identical results everywhere
    const contribution = (r: number): Payload => (r === this.rank ? wire : got[r < this.rank ? r : r - 1]!.data);
    fromWire(dtype, contribution(0), buf);
    for (let r = 1; r < this.size; r++) accumulateWire(dtype, wireOp(op), buf, contribution(r));
    for (const m of got) releaseReceived(m.data);
    if (op === 'avg') getBackend('cpu').kernels.scale(1 / this.size, buf);
    roundToWire(dtype, buf);
  }

  /**
   * The ring on segments `bounds`: a reduce-scatter phase leaving rank r's segment r reduced,
   * then an all-gather phase spreading every rank's own segment. Each piece of the segments runs
   * its chain of steps on its own; a step awaits its send and its receive, so a segment is never
   * overwritten while a send of it is in flight.
   */
  private async ring(run: OpRun, buf: Float32Array, bounds: number[], dtype: WireDType, op: ReduceOp, scatter: boolean, gather: boolean): Promise<void> {
    const n = this.size, r = this.rank;
    const right = (r + 1) % n, left = (r - 1 + n) % n;
    let longest = 0;
    for (let s = 0; s < n; s++) longest = Math.max(longest, bounds[s + 1]! - bounds[s]!);
    const pieces = this.pieces(longest, dtype);
    const reduceOp = wireOp(op);
    const view = (seg: number, p: number): Float32Array => {
      const [a, b] = pieceRange(bounds[seg]!, bounds[seg + 1]!, p, pieces);
      return buf.subarray(a, b);
    };
    const chain = async (p: number): Promise<void> => {
      if (scatter) {
        for (let step = 0; step < n - 1; step++) {
          const out = view(((r - step - 1) % n + n) % n, p);
          const into = view(((r - step - 2) % n + n) % n, p);
          const [, m] = await Promise.all([this.sendPiece(run, right, `s${step}.${p}`, toWire(dtype, out)), this.recvPiece(run, left, `s${step}.${p}`)]);
          accumulateWire(dtype, reduceOp, into, m.data);
          releaseReceived(m.data);
        }
        const mine = view(r, p);
        if (op === 'avg') getBackend('cpu').kernels.scale(1 / n, mine);
        if (gather) roundToWire(dtype, mine);
      }
      if (gather) {
        for (let step = 0; step < n - 1; step++) {
          const out = view(((r - step) % n + n) % n, p);
          const into = view(((r - step - 1) % n + n) % n, p);
          const [, m] = await Promise.all([this.sendPiece(run, right, `g${step}.${p}`, toWire(dtype, out)), this.recvPiece(run, left, `g${step}.${p}`)]);
          fromWire(dtype, m.data, into);
          releaseReceived(m.data);
        }
      }
    };
    const chains: Promise<void>[] = [];
    for (let p = 0; p < pieces; p++) chains.push(chain(p));
    await Promise.all(chains);
  }

  /** How many pieces a segment of `elems` elements is cut into. */
  private pieces(elems: number, dtype: WireDType): number {
    return Math.max(1, Math.ceil((elems * wireBytes(dtype)) / this.pieceBytes));
  }

  // ---- the op machinery ----

  private run<T>(name: string, buf: Float32Array, options: { timeoutMs?: number }, body: (run: OpRun) => Promise<T>, seq?: number): Promise<T> {
    if (!(buf instanceof Float32Array)) return Promise.reject(new TypeError(`${name}: the buffer must be a Float32Array, got ${describe(buf)}`));
    if (this.rank < 0) return Promise.reject(new RangeError(`${name}: this process (world rank ${this.agent.rank}) is not in group ${this.name}`));
    if (this.closed) return Promise.reject(new CollectiveError(Status.CANCELLED, this.agent.name, `${name}: process group ${this.name} is closed`));
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    if (!(timeoutMs > 0)) return Promise.reject(new RangeError(`${name}: timeoutMs must be > 0, got ${timeoutMs}`));
    if (this.broken) return Promise.reject(new CollectiveError(Status.ABORTED, this.agent.name, `${name}: process group ${this.name} is broken by an earlier failure: ${this.broken.message}`));
    // point-to-point ops are matched by (peer, tag, count), not by the group's sequence
    const s = seq ?? ++this.seq;
    const run = new OpRun(name, s, buf.length, timeoutMs);
    this.counters.ops++;
    return new Promise<T>((resolve, reject) => {
      run.reject = reject;
      if (s > 0) this.running.set(s, run);
      else this.p2p.add(run);
      run.timer = this.clock.after(timeoutMs, () => this.timeout(run, timeoutMs));
      if (s > 0) {
        // a message that came before this op started, from a rank at another op or size
        for (const [key, m] of this.mailbox) {
          if (key.startsWith(`${s}|`)) {
            const problem = this.mismatch(run, m, Number(key.split('|')[2]));
            if (problem) return this.failRun(run, problem, true);
          }
        }
      }
      body(run).then(
        (v) => {
          if (run.failed) return;
          this.finish(run);
          resolve(v);
        },
        (e: Error) => this.failRun(run, e instanceof CollectiveError ? e : this.error(Status.INTERNAL, `${run.label} in group ${this.name}: ${e.message}`), true),
      );
    });
  }

  private finish(run: OpRun): void {
    run.timer?.cancel();
    if (this.running.get(run.seq) === run) this.running.delete(run.seq);
    this.p2p.delete(run);
  }

  /** Fails one op; `breaks` also breaks the group (every other op fails, later ones at once). */
  private failRun(run: OpRun, e: Error, breaks: boolean): void {
    if (run.failed) return;
    run.failed = true;
    this.finish(run);
    run.reject(e);
    if (breaks) {
      // tell the other ranks, so they fail now instead of at their timeouts
      if (!this.broken) this.notifyAbort(e);
      this.fail(e);
    }
  }

  private notifyAbort(e: Error): void {
    for (let r = 0; r < this.size; r++) {
      if (r === this.rank) continue;
      this.agent.sendInternal(this.names[r]!, FN, [this.name, 0, e.message, 0, ABORT, this.rank, EMPTY], 5000).catch(() => {});
    }
  }

  private fail(e: Error): void {
    if (!this.broken) this.broken = e;
    this.mailbox.clear();
    this.waiters.clear();
    for (const run of [...this.running.values(), ...this.p2p]) this.failRun(run, new CollectiveError(Status.ABORTED, this.agent.name, `${run.label} in group ${this.name} failed: ${e.message}`), false);
  }

  private timeout(run: OpRun, ms: number): void {
    const missing = [...new Set([...run.waiting.values()].map((w) => w.from))].sort((a, b) => a - b);
    const who = missing.length === 0
      ? 'the other ranks acknowledged nothing in time'
      : `no message from ${missing.map((m) => `rank ${m} (${this.names[m]}${this.lastSeen.has(m) ? `, last seen at ${this.lastSeen.get(m)}` : ', nothing received from it yet'})`).join(', ')}`;
    this.failRun(run, this.error(Status.DEADLINE_EXCEEDED, `${run.label} in group ${this.name} (rank ${this.rank} of ${this.size}) timed out after ${seconds(ms)}: ${who}`), true);
  }

  private error(code: Status, message: string): CollectiveError {
    return new CollectiveError(code, this.agent.name, message);
  }

  private mismatch(run: OpRun, m: Message, from: number): CollectiveError | null {
    if (m.op !== run.name) {
      return this.error(Status.FAILED_PRECONDITION, `ranks called different ops at #${run.seq} in group ${this.name}: rank ${this.rank} (${this.names[this.rank]}) called ${run.name}, rank ${from} (${this.names[from]}) called ${m.op}`);
    }
    if (m.n !== run.n) {
      return this.error(Status.INVALID_ARGUMENT, `${run.label} in group ${this.name}: rank ${from} (${this.names[from]}) passed ${m.n} elements, rank ${this.rank} (${this.names[this.rank]}) passed ${run.n}`);
    }
    return null;
  }

  /** The router hands every message of this group here. */
  deliver(seq: number, op: string, n: number, key: string, from: number, data: Payload): void {
    if (this.closed || from < 0 || from >= this.size || from === this.rank) return;
    if (key === ABORT) {
      if (!this.broken) this.fail(this.error(Status.ABORTED, `rank ${from} (${this.names[from]}) gave up on group ${this.name}: ${op}`));
      return;
    }
    this.counters.bytesReceived += data.byteLength;
    if (seq > 0) this.lastSeen.set(from, `${op} #${seq}`);
    const m: Message = { op, n, data };
    const id = `${seq}|${key}|${from}`;
    const run = seq > 0 ? this.running.get(seq) : undefined;
    if (run) {
      const problem = this.mismatch(run, m, from);
      if (problem) return this.failRun(run, problem, true);
    }
    const waiter = this.waiters.get(id);
    if (waiter) {
      waiter.resolve(m);
      return;
    }
    this.mailbox.set(id, m);
  }

  private sendPiece(run: OpRun, to: number, key: string, data: Payload): Promise<void> {
    if (run.failed) return Promise.reject(new Error('op failed'));
    this.counters.bytesSent += data.byteLength;
    return this.agent.sendInternal(this.names[to]!, FN, [this.name, run.seq, run.name, run.n, key, this.rank, data], run.timeoutMs).then(
      () => undefined,
      (e: Error) => {
        const err = this.error(e instanceof RpcError ? e.code : Status.UNAVAILABLE, `${run.label} in group ${this.name}: sending to rank ${to} (${this.names[to]}) failed: ${e.message}`);
        this.failRun(run, err, true);
        throw err;
      },
    );
  }

  private recvPiece(run: OpRun, from: number, key: string): Promise<Message> {
    const id = `${run.seq}|${key}|${from}`;
    const m = this.mailbox.get(id);
    if (m) {
      this.mailbox.delete(id);
      return Promise.resolve(m);
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        from,
        resolve: (msg) => {
          run.waiting.delete(id);
          this.waiters.delete(id);
          resolve(msg);
        },
      };
      run.waiting.set(id, waiter);
      this.waiters.set(id, waiter);
    });
  }

  private peerCheck(name: string, peer: number, tag: number): Error | null {
    if (!Number.isSafeInteger(peer) || peer < 0 || peer >= this.size) return new RangeError(`${name}: rank ${JSON.stringify(peer)} is not a rank of group ${this.name} (size ${this.size})`);
    if (peer === this.rank) return new RangeError(`${name}: rank ${peer} is this process; send and recv go to another rank`);
    if (!Number.isSafeInteger(tag) || tag < 0) return new RangeError(`${name}: tag must be an integer >= 0, got ${JSON.stringify(tag)}`);
    return null;
  }

  private nextP2p(key: string): number {
    const k = this.p2pCount.get(key) ?? 0;
    this.p2pCount.set(key, k + 1);
    return k;
  }
}

const EMPTY = new Float32Array(0);
/** Two-rank allReduce: fp32 buffers up to this size are sent from a copy, without waiting for acknowledgements. */
const SMALL_COPY_BYTES = 1 << 20;
/** The key of the message a failing rank sends the others (its error in the op field). */
const ABORT = '!abort';

/** A byte count from the environment (tuning without code: bench runs), or undefined. */
function envBytes(key: string): number | undefined {
  const v = process.env[key];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`env ${key}='${v}' must be a byte count (an integer >= 0)`);
  return n;
}

function pieceRange(start: number, end: number, p: number, pieces: number): [number, number] {
  const len = end - start;
  return [start + Math.floor((p * len) / pieces), start + Math.floor(((p + 1) * len) / pieces)];
}

/** The wire kernels' reduction for an op (avg is a sum, scaled afterwards). */
function wireOp(op: ReduceOp): 'sum' | 'max' {
  return op === 'max' ? 'max' : 'sum';
}

function reduceOpOf(op: unknown, fn: string): ReduceOp {
  if (op === undefined) return 'sum';
  if (op === 'sum' || op === 'avg' || op === 'max') return op;
  throw new RangeError(`${fn}: op must be sum, avg or max, got ${JSON.stringify(op)}`);
}

function dtypeOf(dtype: unknown, fn: string): WireDType {
  if (dtype === undefined) return 'float32';
  if (dtype === 'float32' || dtype === 'bfloat16' || dtype === 'float16') return dtype;
  throw new RangeError(`${fn}: dtype must be float32, bfloat16 or float16, got ${JSON.stringify(dtype)}`);
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'an object';
  return typeof x;
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}
