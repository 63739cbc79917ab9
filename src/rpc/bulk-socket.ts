// The bulk side channel: plain TCP sockets between a (caller, callee) pair that carry large
// payloads, negotiated over the gRPC Exchange stream and living exactly as long as it.
//
// Why not gRPC: grpc-js pauses the HTTP/2 stream after every message it decodes and resumes it
// only when the application asks for the next one (subchannel-call.js tryPush/resume,
// server-interceptors.js startRead), so at every chunk boundary the receiver stops returning
// flow-control credit and the sender idles; both processes spent most of a 16 MB echo waiting
// (0.27-0.33 GB/s). A socket has no such turn-taking. gRPC keeps everything else (small calls,
// errors, rendezvous, shutdown) and stays the fallback when the side channel cannot be opened
// (PSRPC_BULK_SOCKET=0 turns it off).
//
// Negotiation: the caller sends SideOpen on its Exchange stream (name = the host it reached the
// callee at); the callee listens on that host, port 0, and answers SideReady (aux = port, payload
// = a random token). The caller connects (link A) and sends HELLO + token; the callee accepts the
// first connection with the right token, stops listening, and drops any other (wrong token,
// garbage, or none within ACCEPT_MS). The caller then offers the same way, over A, a reverse link
// B that the callee connects. Requests travel on B, responses on A: net can read straight into
// the destination buffer (onread) only on a socket its own side connected, so each direction uses
// the socket its receiver connected. Until B is up, requests travel on A too.
//
// Messages: a frame head (frame.ts, CHUNKED, aux = payload length, inline length 0), then the
// payload bytes raw. Writes are views of the sender's segments (no copy on send); the receiver
// reads into one buffer allocated at the announced length (in place on a connected socket, one
// copy on an accepted one), so decoded tensors view it in place. Bytes that are not a message
// close the link; a closed link fails, with the Exchange stream, every call in flight to that peer.
//
// Two implementations behind one interface (SideChannel): the native transport (native-link.ts:
// threads of the addon drive the sockets, shared memory on one host), used unless
// PSRPC_NATIVE_BULK=0, and SideLink below on node's net sockets. The connecting end of a link to a
// peer that is not certainly on this host (onThisHost) is always a SideLink: see connectSide. They speak the same bytes, so
// either end may run either; control frames of the native transport (kinds 0x40-0x43: the
// shared-memory offer and its requests) are skipped here, so a JS end simply never uses shm.
//
// TLS (an agent with InitOptions.tls, tls.ts): both ends are SideLinks on TLS sockets (tls.connect
// checking the peer's certificate against its published host; a tls.Server whose handshake asks
// for a client certificate under requireClientCert), so the native transport, and with it shared
// memory, is not used. The hello and its token travel inside the TLS session. No onread there:
// the receiving end copies each chunk into place, as an accepted socket does.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { networkInterfaces } from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { errors } from './errors.js';
import type { Encoded } from './codec.js';
import { CHUNKED, frameHead, Kind } from './frame.js';
import { connectNative, NativeOffer, nativeBulkEnabled } from './native-link.js';
import { sideServerOptions, type WorldTls } from './tls.js';

const HELLO_MAGIC = 0x53525350; // 'PSRS'
const HELLO_BYTES = 8 + 24;
const HEAD = 24;
const pad8 = (n: number) => (8 - (n % 8)) % 8;
/** How long an offered port waits for its caller to connect. */
const ACCEPT_MS = 30_000;
const EMPTY = Buffer.alloc(0);
/** The native transport's control kinds (include/psrpc/transport.h): skipped by this end. */
const CONTROL_FIRST = 0x40;
const CONTROL_LAST = 0x43;

/**
 * Payloads from this size on (and all that do not fit an Exchange message) take the side channel
 * when it is open: a 1 MB Exchange message through grpc-js moves at about 0.4 GB/s round trip.
 */
export const SIDE_MIN_BYTES = 32 * 1024; // measured: a 220 KB round trip 2.3 ms over gRPC, 0.45 ms here; 32 KB 720 vs 165 us

/** The side channel is on unless PSRPC_BULK_SOCKET=0 (then every large payload uses gRPC Bulk). */
export function sideChannelEnabled(): boolean {
  return process.env.PSRPC_BULK_SOCKET !== '0';
}

export interface SideHead {
  kind: Kind;
  callId: number;
  name: string;
}

/** A connected side channel (either end), native or JS. */
export interface SideChannel {
  onMessage: (head: SideHead, payload: Buffer) => void;
  /** Called once when the link closes, with why (for the UNAVAILABLE error of the calls on it). */
  onClose: (why: string) => void;
  readonly open: boolean;
  /** This end's and the other end's IP address (where a reverse link listens and connects). */
  readonly localAddress: string | undefined;
  readonly remoteAddress: string | undefined;
  /** Queues one message; its segments are referenced, not copied, until they are sent. */
  send(kind: Kind, callId: number, name: string, payload: Encoded | Uint8Array): boolean;
  close(why?: string): void;
}

/** A connected side channel on node's net sockets. */
export class SideLink implements SideChannel {
  private socket?: net.Socket;
  private stage: 'head' | 'name' | 'payload' = 'head';
  private target: Buffer = Buffer.allocUnsafe(HEAD);
  private filled = 0;
  private head?: SideHead;
  private nameLen = 0;
  private payloadLen = 0;
  private closed = false;
  /** Where reads land between payloads (heads, names, and whatever follows them in one read). */
  private scratch?: Buffer;
  onMessage: (head: SideHead, payload: Buffer) => void = () => {};
  /** Called once when the link closes, with why (for the UNAVAILABLE error of the calls on it). */
  onClose: (why: string) => void = () => {};

  constructor(private readonly worker: string) {}

  /**
   * Starts using `socket`. With `zeroCopy` the socket was created with onread hooked to
   * readTarget/readDone (possible only for sockets this side connects); otherwise bytes arrive
   * as 'data' chunks and are copied into place.
   */
  attach(socket: net.Socket, zeroCopy: boolean, first?: Buffer): this {
    this.socket = socket;
    socket.setNoDelay(true);
    if (!zeroCopy) socket.on('data', (chunk: Buffer) => this.feed(chunk));
    socket.on('error', (e) => this.close(`side channel: ${e.message}`));
    socket.on('close', () => this.close('side channel closed'));
    if (this.closed) socket.destroy();
    if (first && first.length) this.feed(first);
    return this;
  }

  /** onread: the buffer the next read fills; payload bytes are read straight into place. */
  readTarget(): Buffer {
    if (this.stage === 'payload') return this.target.subarray(this.filled);
    return (this.scratch ??= Buffer.allocUnsafe(64 * 1024));
  }

  /** onread: `n` bytes were read into `buf` (from readTarget). */
  readDone(n: number, buf: Buffer): void {
    if (this.closed) return;
    if (buf === this.scratch) { this.feed(buf.subarray(0, n)); return; }
    this.filled += n;
    if (this.filled === this.target.length) this.advance();
  }

  get open(): boolean {
    return !this.closed;
  }

  /** This end's and the other end's IP address (where a reverse link listens and connects). */
  get localAddress(): string | undefined {
    return this.socket?.localAddress;
  }

  get remoteAddress(): string | undefined {
    return this.socket?.remoteAddress;
  }

  /** Writes one message; its segments are referenced, not copied, until the socket has sent them. */
  send(kind: Kind, callId: number, name: string, payload: Encoded | Uint8Array): boolean {
    const socket = this.socket;
    if (this.closed || !socket || socket.destroyed) return false;
    const segs = payload instanceof Uint8Array ? [payload] : payload.segments;
    const len = payload.byteLength;
    socket.cork();
    socket.write(frameHead(kind, callId, name, 0, len, CHUNKED));
    for (const s of segs) if (s.byteLength) socket.write(s);
    socket.uncork();
    return true;
  }

  close(why = 'side channel closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    this.onClose(why);
  }

  /** Bytes that are not messages: the link cannot be trusted past them, so it closes. */
  private fail(what: string): void {
    this.close(errors.codec(this.worker, `side channel: ${what}`).message);
  }

  private feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.closed) {
      const n = Math.min(this.target.length - this.filled, chunk.length - at);
      chunk.copy(this.target, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === this.target.length) this.advance();
    }
  }

  /** The current part is complete: parse it and set up the next one. */
  private advance(): void {
    const t = this.target;
    if (this.stage === 'head') {
      const kind = t.readUInt8(0);
      const flags = t.readUInt8(1);
      this.nameLen = t.readUInt16LE(2);
      const len = t.readDoubleLE(8);
      const control = kind >= CONTROL_FIRST && kind <= CONTROL_LAST;
      if (!control && (kind < Kind.Request || kind > Kind.SideReady)) return this.fail(`unknown frame kind ${kind}`);
      if (!(flags & CHUNKED) || t.readUInt32LE(16) !== 0) return this.fail('frame head is not a side-channel head');
      if (!Number.isSafeInteger(len) || len < 0 || len > bufferConstants.MAX_LENGTH) return this.fail(`bad payload length ${len}`);
      this.head = { kind, callId: t.readUInt32LE(4), name: '' };
      this.payloadLen = len;
      const nameBytes = this.nameLen + pad8(this.nameLen);
      this.expect('name', nameBytes ? Buffer.allocUnsafe(nameBytes) : EMPTY);
      if (nameBytes) return;
    }
    if (this.stage === 'name') {
      this.head!.name = this.target.toString('utf8', 0, this.nameLen);
      // allocUnsafeSlow: an ArrayBuffer of its own, offset 0, so every tensor in it is aligned
      this.expect('payload', this.payloadLen ? Buffer.allocUnsafeSlow(this.payloadLen) : EMPTY);
      if (this.payloadLen) return;
    }
    const head = this.head!;
    const payload = this.target;
    this.head = undefined;
    this.expect('head', Buffer.allocUnsafe(HEAD));
    if (head.kind >= CONTROL_FIRST && head.kind <= CONTROL_LAST) return; // a native end's shm offer: not for us
    this.onMessage(head, payload);
  }

  private expect(stage: SideLink['stage'], target: Buffer): void {
    this.stage = stage;
    this.target = target;
    this.filled = 0;
  }
}

/** An offered port: accepts one connection that proves `token`, then stops listening. */
export interface Offer {
  readonly port: number;
  readonly token: Buffer;
  close(): void;
}

/** The callee's offer: a listener that accepts one connection carrying the right token. */
export class SideOffer implements Offer {
  readonly token = randomBytes(24);
  private readonly server: net.Server;
  private readonly timer: NodeJS.Timeout;
  private readonly waiting = new Set<net.Socket>();
  private done = false;

  private constructor(private readonly worker: string, private readonly onLink: (link: SideChannel) => void, tlsOptions?: WorldTls) {
    // under TLS the hello (and the token in it) is read only once the handshake has succeeded:
    // 'secureConnection' gets authorized sockets only (a client certificate too with requireClientCert)
    this.server = tlsOptions ? tls.createServer(sideServerOptions(tlsOptions, ACCEPT_MS), (s) => this.greet(s)) : net.createServer((s) => this.greet(s));
    this.server.on('error', () => this.close());
    this.timer = setTimeout(() => this.close(), ACCEPT_MS);
    this.timer.unref();
  }

  /**
   * Listens on `host`, port 0; resolves to the offer (rejects if the host is not local). The link
   * is native unless PSRPC_NATIVE_BULK=0 or the agent has TLS (`tlsOptions`: then a TLS listener).
   */
  static listen(host: string, worker: string, onLink: (link: SideChannel) => void, tlsOptions?: WorldTls): Promise<Offer> {
    if (nativeBulkEnabled() && !tlsOptions) return NativeOffer.listen(host, worker, randomBytes(24), ACCEPT_MS, onLink);
    const offer = new SideOffer(worker, onLink, tlsOptions);
    return new Promise((resolve, reject) => {
      offer.server.once('error', reject);
      offer.server.listen({ host, port: 0, exclusive: true }, () => resolve(offer));
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  private greet(s: net.Socket): void {
    if (this.done) { s.destroy(); return; }
    this.waiting.add(s);
    let got: Buffer = Buffer.alloc(0);
    const drop = () => { this.waiting.delete(s); s.destroy(); };
    s.on('error', drop);
    s.on('close', () => this.waiting.delete(s));
    const onData = (chunk: Buffer) => {
      got = got.length ? Buffer.concat([got, chunk]) : chunk;
      if (got.length < HELLO_BYTES) return;
      s.off('data', onData);
      s.off('error', drop);
      this.waiting.delete(s);
      const ok = !this.done && got.readUInt32LE(0) === HELLO_MAGIC && got.readUInt32LE(4) === 1 && timingSafeEqual(got.subarray(8, HELLO_BYTES), this.token);
      if (!ok) { s.destroy(); return; }
      this.close();
      // handlers first: bytes after the hello may already hold a message
      const link = new SideLink(this.worker);
      this.onLink(link);
      link.attach(s, false, got.subarray(HELLO_BYTES));
    };
    s.on('data', onData);
  }

  /** Stops listening and drops connections that have not proved their token. */
  close(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.server.close();
    for (const s of this.waiting) s.destroy();
    this.waiting.clear();
  }
}

/**
 * Whether `ip` is this network namespace's own (loopback, or an address of one of its
 * interfaces), i.e. the peer there certainly runs on this kernel. Peers elsewhere, including
 * other network namespaces of this machine, count as other hosts.
 */
export function onThisHost(ip: string): boolean {
  const plain = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (plain === '::1' || (net.isIPv4(plain) && plain.startsWith('127.'))) return true;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address === plain) return true;
  }
  return false;
}

/**
 * The caller's end: connects to an offer and proves the token; resolves when connected. `host`
 * (a name is resolved once, and the address found is the one connected to) decides the transport:
 * native only for a peer on this host (onThisHost). Why: two native ends try shared memory, and
 * the native handshake (transport.h) opens the `/proc/<pid>/fd/<fd>` the peer names, which on
 * another host is some unrelated process's file there; a JS end never offers or maps, so with a
 * JS end on every link to another host nothing there is ever opened. The other end stays native.
 */
export async function connectSide(host: string, port: number, token: Buffer, worker: string, tlsOptions?: WorldTls): Promise<SideChannel> {
  const address = net.isIP(host) ? host : (await lookup(host)).address;
  // under TLS never native: the addon's sockets are plain TCP (and its shared memory goes with it)
  if (nativeBulkEnabled() && !tlsOptions && onThisHost(address)) return connectNative(address, port, token, worker, ACCEPT_MS);
  return connectSocket(address, port, token, worker, tlsOptions && { tls: tlsOptions, name: net.isIP(host) ? undefined : host });
}

/**
 * connectSide's SideLink: node's net socket, read in place (onread); or, under TLS, a TLS socket
 * (read as 'data' chunks: tls.connect has no onread) whose peer certificate must chain to the
 * agent's CA and name `host` (the peer's published host; a name is checked as that name).
 */
function connectSocket(host: string, port: number, token: Buffer, worker: string, secure?: { tls: WorldTls; name: string | undefined }): Promise<SideChannel> {
  const link = new SideLink(worker);
  return new Promise((resolve, reject) => {
    const s = secure
      ? tls.connect({ host, port, secureContext: secure.tls.context, ...(secure.name !== undefined ? { servername: secure.name } : {}) })
      : net.connect({ host, port, onread: { buffer: () => link.readTarget(), callback: (n, buf) => { link.readDone(n, buf as Buffer); return true; } } });
    const fail = (e: Error) => { clearTimeout(timer); s.destroy(); reject(e); };
    const timer = setTimeout(() => fail(new Error(`side channel connect to ${host}:${port} timed out`)), ACCEPT_MS);
    timer.unref();
    s.once('error', fail);
    s.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      s.off('error', fail);
      const hello = Buffer.alloc(HELLO_BYTES);
      hello.writeUInt32LE(HELLO_MAGIC, 0);
      hello.writeUInt32LE(1, 4);
      token.copy(hello, 8, 0, 24);
      s.write(hello);
      resolve(link.attach(s, !secure));
    });
  });
}
