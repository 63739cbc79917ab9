// The native bulk transport (native/transport/, include/psrpc/transport.h) behind the side
// channel's interface (bulk-socket.ts): the same negotiation, hello, token and framing, but the
// sockets are driven by threads of the addon instead of the JavaScript thread. Writes go straight
// from the tensors' memory (sendmsg); payloads are received straight into pooled, page-aligned
// blocks handed over as external ArrayBuffers; on one host, payloads from 256 KiB go through the
// receiver's shared-memory arena instead (one copy; PSRPC_SHM=0 turns it off). A JS end and a
// native end interoperate over TCP (the JS end skips the control frames that offer shared memory);
// the connecting end of a link to a peer not on this host is always JS (bulk-socket.ts
// connectSide), so the shared-memory handshake only ever runs between processes of one host.
import { loadAddon } from '../tensor/native.js';
import type { Encoded } from './codec.js';
import { errors } from './errors.js';
import { CHUNKED, frameHead, type Kind } from './frame.js';
import type { SideChannel, SideHead } from './bulk-socket.js';

interface NativeLinkHandle {
  start(onEvent: (type: number, a: unknown, b: unknown, c?: unknown, d?: unknown, e?: unknown) => void): void;
  send(head: Uint8Array, segments: Uint8Array[]): number;
  sendRaw(bytes: Uint8Array): number;
  close(why: string): void;
  join(): void;
  readonly peerShm: boolean;
  readonly localAddress: string;
  readonly remoteAddress: string;
}

interface NativeListenerHandle {
  readonly port: number;
  accept(token: Uint8Array, timeoutMs: number, cb: (err: Error | null, link?: NativeLinkHandle) => void): void;
  close(): void;
}

interface TransportAddon {
  listen(host: string): NativeListenerHandle;
  connect(host: string, port: number, token: Uint8Array, timeoutMs: number, cb: (err: Error | null, link?: NativeLinkHandle) => void): void;
  release(buffer: ArrayBufferLike): boolean;
  pooledBytes(): number;
  trimPool(): void;
}

let addon: TransportAddon | null | undefined;

/** The addon, or null where it cannot be loaded (then the JS side channel is used). */
export function transportAddon(): TransportAddon | null {
  if (addon === undefined) {
    try {
      addon = loadAddon<TransportAddon>('psrpc_transport');
    } catch {
      addon = null;
    }
  }
  return addon;
}

/** The native transport is used unless PSRPC_NATIVE_BULK=0 (or its addon is missing). */
export function nativeBulkEnabled(): boolean {
  return process.env.PSRPC_NATIVE_BULK !== '0' && transportAddon() !== null;
}

/**
 * Gives the memory of a received payload back to the transport now, instead of when the garbage
 * collector gets to it: the next payloads reuse warm pages (a fresh 16 MB block costs 4,096 page
 * faults) and a shared-memory arena stays small. The payload's ArrayBuffer is detached first, so
 * `view` and every other view of the same message (all its tensors) become empty: call it only
 * when nothing of that message is needed any more. Returns false, and does nothing, for memory
 * that did not arrive on the native transport (a local call's arguments, the JS side channel).
 */
export function releaseReceived(view: ArrayBufferView): boolean {
  const a = addon;
  return a ? a.release(view.buffer) : false;
}

/** A side channel over a native link. */
export class NativeSideLink implements SideChannel {
  onMessage: (head: SideHead, payload: Buffer) => void = () => {};
  onClose: (why: string) => void = () => {};
  private closed = false;
  /** Segments of messages the addon is still sending from, by sequence number (kept alive here). */
  private readonly inFlight = new Map<number, Uint8Array[]>();

  constructor(private readonly handle: NativeLinkHandle, private readonly worker: string) {
    handle.start((type, a, b, c, d) => {
      if (type === 0) this.deliver(a as number, b as number, c as string, d as ArrayBuffer);
      else if (type === 1) this.inFlight.delete(a as number);
      else this.ended(a as string, b as boolean);
    });
  }

  get open(): boolean {
    return !this.closed;
  }

  get localAddress(): string | undefined {
    return this.handle.localAddress || undefined;
  }

  get remoteAddress(): string | undefined {
    return this.handle.remoteAddress || undefined;
  }

  /** Whether payloads to the peer go through its shared-memory arena (the handshake succeeded). */
  get sharedMemory(): boolean {
    return this.handle.peerShm;
  }

  /** Queues one message; its segments are referenced, not copied, until the addon has sent them. */
  send(kind: Kind, callId: number, name: string, payload: Encoded | Uint8Array): boolean {
    if (this.closed) return false;
    const segs = payload instanceof Uint8Array ? [payload] : payload.segments;
    const seq = this.handle.send(frameHead(kind, callId, name, 0, payload.byteLength, CHUNKED), segs);
    if (seq === 0) return false;
    this.inFlight.set(seq, segs);
    return true;
  }

  /** @internal Writes raw bytes on the link (tests: garbage that is not a message). */
  injectRaw(bytes: Uint8Array): void {
    const seq = this.handle.sendRaw(bytes);
    if (seq) this.inFlight.set(seq, [bytes]);
  }

  close(why = 'side channel closed'): void {
    if (this.closed) return;
    this.handle.close(why);
    // the addon reports 'closed' next; ended() joins its threads
  }

  private deliver(kind: number, callId: number, name: string, payload: ArrayBuffer): void {
    if (this.closed) return;
    this.onMessage({ kind: kind as Kind, callId, name }, Buffer.from(payload));
  }

  private ended(why: string, protocol: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.handle.join(); // both threads are done: nothing reads the segments any more
    this.inFlight.clear();
    this.onClose(protocol ? errors.codec(this.worker, why).message : why);
  }
}

/** The callee's offer over the native transport (see SideOffer). */
export class NativeOffer {
  private done = false;

  private constructor(private readonly listener: NativeListenerHandle, readonly token: Buffer) {}

  static listen(host: string, worker: string, token: Buffer, acceptMs: number, onLink: (link: NativeSideLink) => void): Promise<NativeOffer> {
    let listener: NativeListenerHandle;
    try {
      listener = transportAddon()!.listen(host);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const offer = new NativeOffer(listener, token);
    listener.accept(token, acceptMs, (err, link) => {
      offer.close();
      if (err || !link) return; // timed out or cancelled: the caller keeps using Bulk streams
      onLink(new NativeSideLink(link, worker));
    });
    return Promise.resolve(offer);
  }

  get port(): number {
    return this.listener.port;
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.listener.close();
  }
}

export function connectNative(host: string, port: number, token: Buffer, worker: string, timeoutMs: number): Promise<NativeSideLink> {
  return new Promise((resolve, reject) => {
    transportAddon()!.connect(host, port, token, timeoutMs, (err, link) => {
      if (err || !link) reject(err ?? new Error('side channel connect failed'));
      else resolve(new NativeSideLink(link, worker));
    });
  });
}
