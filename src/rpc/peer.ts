// The caller's side of the connection to one remote worker.
//
// Small calls share one long-lived Exchange stream (opened on first use, reopened after a failure),
// multiplexed by call id; frames queued in the same tick go out as one message. Opening that stream
// also negotiates the bulk side channel (bulk-socket.ts): once it is up, every payload from
// SIDE_MIN_BYTES on (request or response) travels over it. Until then, or if it cannot be opened,
// a call whose request is too large for the stream gets a Bulk stream of its own, and a response
// too large for the stream is parked by the callee and fetched over Bulk. The side channel and
// the Exchange stream fail together. Every call has a deadline: a peer that
// stops answering fails the call with DEADLINE_EXCEEDED, a broken connection fails every call in
// flight on it with UNAVAILABLE, and so does a peer that heartbeats find silent (heartbeat.ts:
// failSilent; the stream stays open for it to be heard again). With an auth token, every stream this peer opens carries it in its
// metadata (AUTH_METADATA_KEY); a callee that refuses it fails the calls with UNAUTHENTICATED.
// With TLS (tls.ts) the channel and both side links are TLS; a failed handshake (no TLS, another
// CA, a certificate that does not name the callee's published host, no accepted client
// certificate) fails the calls with UNAVAILABLE naming the callee, as an unreachable peer does.
import * as grpc from '@grpc/grpc-js';
import { BulkReader, writeBulk } from './bulk.js';
import { connectSide, SIDE_MIN_BYTES, sideChannelEnabled, SideOffer, type Offer, type SideChannel, type SideHead } from './bulk-socket.js';
import type { Encoded } from './codec.js';
import { errors, fromWireError, type RpcError, type WireError } from './errors.js';
import { FrameBatcher, frameSegments, isPingOnly, Kind, parseFrames, type Frame } from './frame.js';
import type { PingSink } from './heartbeat.js';
import { AUTH_METADATA_KEY } from './options.js';
import { BULK_PATH, channelOptions, EXCHANGE_PATH } from './proto.js';
import type { WorldTls } from './tls.js';

export interface WorkerInfo {
  name: string;
  rank: number;
  address: string;
}

export interface TransportLimits {
  /** Largest gRPC message either side accepts. */
  maxMessageBytes: number;
  /** Payloads up to this size travel inline on the Exchange stream. */
  inlineBytes: number;
  /** Chunk size on Bulk streams. */
  chunkBytes: number;
}

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: RpcError): void;
  timer?: NodeJS.Timeout;
  /** The function called (for the errors of calls failed as a whole, see failSilent). */
  name: string;
}

/** How a peer reports what it receives to its agent's failure detection (heartbeat.ts). */
export interface PeerHooks {
  /** Whether heartbeats are on: then an Exchange stream is kept open for the pings even for calls that travel over Bulk. */
  readonly beating: boolean;
  /** Something arrived from the peer; false: drop it unread (a FaultInjector silences the peer). */
  heard(): boolean;
  /** An Exchange stream opened: `out` gets the heartbeat's pings until the returned function runs. */
  link(out: PingSink): () => void;
}

const identity = (b: Buffer) => b;

export function decodeErrorFrame(payload: Buffer, worker: string): RpcError {
  try {
    return fromWireError(JSON.parse(payload.toString('utf8')) as WireError);
  } catch {
    return errors.codec(worker, 'error frame is not valid JSON');
  }
}

export class Peer {
  private readonly client: grpc.Client;
  private exchange?: grpc.ClientDuplexStream<Buffer, Buffer>;
  private batcher?: FrameBatcher;
  private readonly pending = new Map<number, Pending>();
  private readonly bulk = new Set<grpc.ClientDuplexStream<Buffer, Buffer>>();
  private nextId = 1;
  private closed = false;
  /** Bulk side channel of the current Exchange stream, once connected (bulk-socket.ts). */
  private side?: SideChannel;
  /**
   * The reverse link, connected by the callee, that carries requests: a socket's reader can land
   * bytes straight in their final buffer only at the end that connected it (net's onread), so
   * each direction gets the socket its receiver connected. Until it is up, requests use `side`.
   */
  private sideOut?: SideChannel;
  private sideOffer?: Offer;
  /** @internal Waiting in sideLinksUp() for both side links; set only while someone waits. */
  private sideWaiters?: Array<() => void>;
  /** Unlinks the current Exchange stream from the heartbeat. */
  private unlink?: () => void;

  constructor(
    private readonly self: string,
    readonly info: WorkerInfo,
    private readonly limits: TransportLimits,
    private readonly onTraffic: () => void,
    /** The world's shared secret (InitOptions.authToken), sent with every stream; undefined: none. */
    private readonly authToken?: string,
    /**
     * The host this agent's own server is bound to (Agent.listenHost; a wildcard: every interface):
     * the reverse link's listener binds it, never wider. Undefined: the local address of link A.
     */
    private readonly bindHost?: string,
    /** Failure detection and inbound fault injection (heartbeat.ts, faulty.ts); undefined: neither. */
    private readonly hooks?: PeerHooks,
    /**
     * TLS (tls.ts): the channel and both side links use it, the callee's certificate checked
     * against the host in `info.address`; undefined: plain TCP.
     */
    private readonly tls?: WorldTls,
  ) {
    this.client = new grpc.Client(info.address, tls?.channel ?? grpc.credentials.createInsecure(), channelOptions(limits.maxMessageBytes + 64 * 1024));
  }

  /** Calls in flight to this peer. */
  get outstanding(): number {
    return this.pending.size;
  }

  /**
   * @internal Resolves once both side links (`side` and `sideOut`) are open; never if they do not
   * come up. Why: negotiation runs in the background after the first call returns, and tests that
   * assert on the side channel must wait for it; an event is exact where polling the fields
   * against a wall-clock budget fails on a loaded machine. Costs nothing unless someone waits.
   */
  sideLinksUp(): Promise<void> {
    if (this.side?.open && this.sideOut?.open) return Promise.resolve();
    return new Promise((resolve) => (this.sideWaiters ??= []).push(resolve));
  }

  private noteSideLinks(): void {
    if (!this.sideWaiters || !(this.side?.open && this.sideOut?.open)) return;
    const waiters = this.sideWaiters;
    this.sideWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  call(name: string, payload: Encoded, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(errors.shutDown(this.self));
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    return new Promise<Buffer>((resolve, reject) => {
      const p: Pending = { resolve, reject, name };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        p.timer = setTimeout(() => {
          if (this.pending.delete(id)) reject(errors.timeout(this.self, this.info.name, `call "${name}"`, timeoutMs));
        }, timeoutMs);
      }
      this.pending.set(id, p);
      this.onTraffic();
      if (this.side?.open && (payload.byteLength >= SIDE_MIN_BYTES || payload.byteLength > this.limits.inlineBytes)) {
        (this.sideOut?.open ? this.sideOut : this.side).send(Kind.Request, id, name, payload);
      } else if (payload.byteLength <= this.limits.inlineBytes) {
        this.openExchange().push(frameSegments(Kind.Request, id, name, payload));
      } else {
        // opening the Exchange stream negotiates the side channel for the large calls that follow
        // and carries the heartbeat's pings both ways, which must flow while this upload runs
        if (sideChannelEnabled() || this.hooks?.beating) this.openExchange();
        this.bulkCall(Kind.Request, id, name, payload, timeoutMs);
      }
    });
  }

  private settle(id: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    fn(p);
  }

  private onFrame(f: Frame, stream: grpc.ClientDuplexStream<Buffer, Buffer>): void {
    switch (f.kind) {
      case Kind.SideReady: this.connectSide(stream, f); break;
      case Kind.Response: this.settle(f.callId, (p) => p.resolve(f.payload)); break;
      case Kind.Error: this.settle(f.callId, (p) => p.reject(decodeErrorFrame(f.payload, this.info.name))); break;
      case Kind.Ping: break; // heard already: the message arrived
      case Kind.ResponseBulk: {
        if (!this.pending.has(f.callId)) return;
        this.bulkCall(Kind.Fetch, f.callId, '', null, 0, f.aux);
        break;
      }
      default:
        this.settle(f.callId, (p) => p.reject(errors.codec(this.info.name, `unexpected frame kind ${f.kind} in a response`)));
    }
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('psrpc-from', this.self);
    if (this.authToken !== undefined) md.set(AUTH_METADATA_KEY, this.authToken);
    return md;
  }

  private openExchange(): FrameBatcher {
    if (this.exchange && this.batcher) return this.batcher;
    const stream = this.client.makeBidiStreamRequest(EXCHANGE_PATH, identity, identity, this.metadata());
    const batcher = new FrameBatcher(stream, this.limits.inlineBytes);
    this.exchange = stream;
    this.batcher = batcher;
    this.unlink = this.hooks?.link(batcher);
    stream.on('data', (msg: Buffer) => {
      if (this.hooks && !this.hooks.heard()) return;
      if (!isPingOnly(msg)) this.onTraffic();
      let frames: Frame[];
      try {
        frames = parseFrames(msg, this.info.name);
      } catch (e) {
        this.failExchange(stream, (e as Error).message);
        return;
      }
      for (const f of frames) this.onFrame(f, stream);
    });
    const lost = (why: string, err?: RpcError) => this.failExchange(stream, why, err);
    stream.on('error', (e: grpc.ServiceError) => {
      if (e.code === grpc.status.UNAUTHENTICATED) lost('refused', this.refused('calls'));
      else lost(`${grpc.status[e.code] ?? e.code}: ${e.details ?? e.message}`);
    });
    stream.on('end', () => lost('stream ended by the peer'));
    if (sideChannelEnabled()) batcher.push(frameSegments(Kind.SideOpen, 0, this.host(), null));
    return batcher;
  }

  /** The callee's host as it published it (its advertised host; brackets of an IPv6 literal removed). */
  private host(): string {
    const a = this.info.address;
    const h = a.slice(0, a.lastIndexOf(':'));
    return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  }

  /** SideReady arrived: connect; until connected (or if refused) large calls go over Bulk. */
  private connectSide(stream: grpc.ClientDuplexStream<Buffer, Buffer>, f: Frame): void {
    if (f.aux === 0 || this.side) return;
    connectSide(this.host(), f.aux, Buffer.from(f.payload), this.self, this.tls).then((link) => {
      if (this.closed || this.exchange !== stream || this.side) { link.close(); return; }
      this.side = link;
      link.onMessage = (h, payload) => this.onSideMessage(h, payload);
      // the side channel and the Exchange stream stand or fall together, like one connection
      link.onClose = (why) => { if (this.side === link) this.failExchange(stream, why); };
      this.offerReverse(link);
    }, () => { /* unreachable port: large calls keep using Bulk streams */ });
  }

  /** Offers the callee a reverse link for requests (see sideOut); without it, requests use `side`. */
  private offerReverse(link: SideChannel): void {
    // the callee connects to the host we published (service.ts connectReverse): listen where our
    // server listens, which covers it
    const host = this.bindHost !== undefined ? this.bindHost.replace(/^\[(.*)\]$/, '$1') : link.localAddress;
    if (!host) return;
    // This offer's port and token travel on link A, which itself was opened with the token the
    // callee sent on our (authenticated) Exchange stream: see the callee's openSide (service.ts).
    SideOffer.listen(host, this.self, (out) => {
      if (this.side !== link) { out.close(); return; }
      this.sideOut = out;
      out.onMessage = (h, payload) => this.onSideMessage(h, payload);
      out.onClose = (why) => link.close(why);
      this.noteSideLinks();
    }, this.tls).then((offer) => {
      if (this.side !== link) { offer.close(); return; }
      this.sideOffer = offer;
      link.send(Kind.SideReady, 0, String(offer.port), offer.token);
    }, () => { /* no reverse link: requests share `side` */ });
  }

  private onSideMessage(h: SideHead, payload: Buffer): void {
    if (this.hooks && !this.hooks.heard()) return;
    this.onTraffic();
    switch (h.kind) {
      case Kind.Response: this.settle(h.callId, (p) => p.resolve(payload)); break;
      case Kind.Error: this.settle(h.callId, (p) => p.reject(decodeErrorFrame(payload, this.info.name))); break;
      default: this.settle(h.callId, (p) => p.reject(errors.codec(this.info.name, `unexpected side-channel frame kind ${h.kind} in a response`)));
    }
  }

  /** The callee refused our auth token (or our lack of one). */
  private refused(what: string): RpcError {
    return errors.authRejected(this.self, this.info.name, `worker "${this.info.name}"`, what);
  }

  /**
   * The Exchange stream broke: every call in flight on this peer fails (with `failure`, or as a
   * lost connection); the next call reopens it.
   */
  private failExchange(stream: grpc.ClientDuplexStream<Buffer, Buffer>, why: string, failure?: RpcError): void {
    if (this.exchange !== stream) return;
    this.exchange = undefined;
    this.batcher = undefined;
    this.unlink?.();
    this.unlink = undefined;
    const side = this.side;
    const out = this.sideOut;
    this.side = undefined;
    this.sideOut = undefined;
    this.sideOffer?.close();
    this.sideOffer = undefined;
    side?.close();
    out?.close();
    stream.cancel();
    const err = this.closed ? errors.shutDown(this.self) : failure ?? errors.peerLost(this.self, this.info.name, why);
    for (const id of [...this.pending.keys()]) this.settle(id, (p) => p.reject(err));
  }

  private bulkCall(kind: Kind, id: number, name: string, payload: Encoded | null, timeoutMs: number, fetchId = 0): void {
    const options: grpc.CallOptions = timeoutMs > 0 && Number.isFinite(timeoutMs) ? { deadline: Date.now() + timeoutMs } : {};
    const stream = this.client.makeBidiStreamRequest(BULK_PATH, identity, identity, this.metadata(), options);
    this.bulk.add(stream);
    let reader: BulkReader | undefined;
    const fail = (err: RpcError) => { this.settle(id, (p) => p.reject(err)); stream.cancel(); };
    stream.on('data', (msg: Buffer) => {
      if (this.hooks && !this.hooks.heard()) return;
      this.onTraffic();
      try {
        if (!reader) reader = new BulkReader(msg, this.info.name);
        else reader.feed(msg);
      } catch (e) {
        fail(e as RpcError);
        return;
      }
      if (!reader.done) return;
      const head = reader.head;
      if (head.kind === Kind.Response) this.settle(id, (p) => p.resolve(reader!.payload));
      else if (head.kind === Kind.Error) this.settle(id, (p) => p.reject(decodeErrorFrame(reader!.payload, this.info.name)));
      else fail(errors.codec(this.info.name, `unexpected bulk frame kind ${head.kind}`));
    });
    stream.on('error', (e: grpc.ServiceError) => {
      const err = e.code === grpc.status.DEADLINE_EXCEEDED
        ? errors.timeout(this.self, this.info.name, `call "${name}"`, timeoutMs)
        : e.code === grpc.status.UNAUTHENTICATED ? this.refused(kind === Kind.Fetch ? 'a bulk fetch' : `call "${name}"`)
        : this.closed ? errors.shutDown(this.self) : errors.peerLost(this.self, this.info.name, `${grpc.status[e.code] ?? e.code}: ${e.details ?? e.message}`);
      this.settle(id, (p) => p.reject(err));
    });
    stream.on('close', () => this.bulk.delete(stream));
    const send = payload
      ? writeBulk(stream, kind, id, name, payload, this.limits.chunkBytes)
      : new Promise<void>((resolve) => { stream.write(Buffer.concat(frameSegments(kind, id, name, null, fetchId))); resolve(); });
    send.then(() => stream.end(), (e: Error) => fail(errors.peerLost(this.self, this.info.name, e.message)));
  }

  /**
   * Heartbeats found this peer silent: every call in flight fails with `err(its function)` and its
   * Bulk streams are cancelled. The Exchange stream stays open: a peer that was only stalled is
   * heard on it again, and its late answers to the failed calls are dropped (settle ignores them).
   */
  failSilent(err: (fn: string) => RpcError): void {
    for (const [id, p] of [...this.pending]) this.settle(id, (q) => q.reject(err(p.name)));
    for (const s of this.bulk) s.cancel();
  }

  /** Opens the Exchange stream if there is none (heartbeat.ts probes a watched peer this way). */
  probe(): void {
    if (!this.closed && !this.exchange) this.openExchange();
  }

  /** Fails every call in flight and closes the channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.exchange) this.failExchange(this.exchange, 'agent shut down');
    for (const id of [...this.pending.keys()]) this.settle(id, (p) => p.reject(errors.shutDown(this.self)));
    for (const s of this.bulk) s.cancel();
    this.client.close();
  }
}
