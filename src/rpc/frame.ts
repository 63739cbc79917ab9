// Frames: the unit of agent-to-agent traffic, and the batching writer that packs them into
// gRPC messages.
//
// Frame layout (little endian), 8-byte aligned so that a payload inside a message keeps the
// alignment its tensors need:
//   0  u8  kind          4  u32 callId        16 u32 inline payload length
//   1  u8  flags         8  f64 aux            20 u32 reserved
//   2  u16 name length   24 name (UTF-8), zero padding to 8, payload, zero padding to 8
// One Exchange message holds one or more frames back to back. On a Bulk stream the first message
// is one frame with CHUNKED set and aux = payload length; the payload follows as raw messages.
import { errors } from './errors.js';
import type { Encoded } from './codec.js';

export const enum Kind {
  Request = 1,
  Response = 2,
  Error = 3,
  /** The response is too large for the Exchange stream: fetch it over Bulk with aux as the id. */
  ResponseBulk = 4,
  /** Bulk request for a response parked by ResponseBulk (aux = id). */
  Fetch = 5,
  /** Caller asks for a bulk side channel (bulk-socket.ts); name = the host it reached the callee at. */
  SideOpen = 6,
  /** Callee's answer to SideOpen: aux = port (0: refused), payload = the token to connect with. */
  SideReady = 7,
  /** Heartbeat (heartbeat.ts), either direction on an Exchange stream: no call, no payload; only says "alive". */
  Ping = 8,
}

/** The part of a gRPC stream that frames are written to. */
export type Sink = NodeJS.EventEmitter & { write(chunk: Buffer): boolean; readonly destroyed: boolean; readonly writable: boolean };

export const CHUNKED = 1;
const HEAD = 24;
const pad8 = (n: number) => (8 - (n % 8)) % 8;
const ZEROS = Buffer.alloc(8);

export interface Frame {
  kind: Kind;
  flags: number;
  callId: number;
  aux: number;
  name: string;
  /** View into the received message (not a copy). */
  payload: Buffer;
}

/** Header + name (+ padding) of a frame whose payload has `payloadLen` bytes inline. */
export function frameHead(kind: Kind, callId: number, name: string, payloadLen: number, aux = 0, flags = 0): Buffer {
  const nameLen = Buffer.byteLength(name, 'utf8');
  const size = HEAD + nameLen + pad8(nameLen);
  const b = Buffer.allocUnsafe(size);
  b.writeUInt8(kind, 0);
  b.writeUInt8(flags, 1);
  b.writeUInt16LE(nameLen, 2);
  b.writeUInt32LE(callId >>> 0, 4);
  b.writeDoubleLE(aux, 8);
  b.writeUInt32LE(payloadLen, 16);
  b.writeUInt32LE(0, 20);
  b.write(name, HEAD, 'utf8');
  b.fill(0, HEAD + nameLen);
  return b;
}

/** Zero padding of 0..7 bytes, made once: a frame's trailing pad is one of these, not a new view. */
const PADS = Array.from({ length: 8 }, (_, n) => ZEROS.subarray(0, n));

/** All segments of one inline frame. */
export function frameSegments(kind: Kind, callId: number, name: string, payload: Encoded | Uint8Array | null, aux = 0): Uint8Array[] {
  const len = payload ? payload.byteLength : 0;
  const segs: Uint8Array[] = [frameHead(kind, callId, name, len, aux)];
  if (payload instanceof Uint8Array) segs.push(payload);
  else if (payload) for (const s of payload.segments) segs.push(s);
  const p = pad8(len);
  if (p) segs.push(PADS[p]!);
  return segs;
}

/** The one Ping frame, made once: every heartbeat pushes these same bytes. */
export const PING_FRAME: readonly Uint8Array[] = [frameHead(Kind.Ping, 0, '', 0)];

/**
 * A message that is one Ping frame and nothing else. Such a message says the peer is alive but is
 * not traffic: the shutdown barrier's quiescence count must not see heartbeats as activity.
 */
export function isPingOnly(msg: Buffer): boolean {
  return msg.length === HEAD && msg[0] === Kind.Ping;
}

export function parseFrames(msg: Buffer, worker: string): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  while (at < msg.length) {
    if (msg.length - at < HEAD) throw errors.codec(worker, `frame header truncated at byte ${at} of ${msg.length}`);
    const kind = msg.readUInt8(at);
    const nameLen = msg.readUInt16LE(at + 2);
    const payloadLen = msg.readUInt32LE(at + 16);
    const nameEnd = at + HEAD + nameLen;
    const payStart = nameEnd + pad8(nameLen);
    const end = payStart + payloadLen + pad8(payloadLen);
    if (kind < Kind.Request || kind > Kind.Ping) throw errors.codec(worker, `unknown frame kind ${kind}`);
    if (payStart + payloadLen > msg.length) throw errors.codec(worker, `frame truncated: needs ${payStart + payloadLen} bytes, message has ${msg.length}`);
    out.push({
      kind,
      flags: msg.readUInt8(at + 1),
      callId: msg.readUInt32LE(at + 4),
      aux: msg.readDoubleLE(at + 8),
      name: msg.toString('utf8', at + HEAD, nameEnd),
      payload: msg.subarray(payStart, payStart + payloadLen),
    });
    at = Math.min(end, msg.length);
  }
  return out;
}

/**
 * Packs the frames queued within one tick into as few gRPC messages as the message limit allows:
 * with thousands of calls in flight, one message (and one HTTP/2 DATA write) carries many frames.
 *
 * "One tick" is process.nextTick's: the flush runs once the code that queued the first frame, and
 * every promise reaction it set off, has run to its end, before the event loop moves on. Calls made
 * in one loop, or answered by handlers that settle together, still leave as one message. What it
 * saves over setImmediate is an event-loop turn per hop: grpc-js's HTTP/2 session schedules its
 * socket write with a native immediate of its own, which, queued from inside a setImmediate
 * callback, waits for the next turn. bench/rpc-tail.ts (2 vCPUs, median of 4-5 runs): small-call
 * p50 134 -> 126 us with the processes pinned to one vCPU each, 140 -> 134 us unpinned after
 * warm-up; calls/s with 5,000 in flight unchanged (50-60k either way).
 */
export class FrameBatcher {
  private queue: Uint8Array[] = [];
  private queued = 0;
  private scheduled = false;
  private readonly flushLater = () => this.flush();

  constructor(private readonly stream: Sink, private readonly maxBatchBytes: number) {}

  push(segments: readonly Uint8Array[]): void {
    for (const s of segments) { this.queue.push(s); this.queued += s.byteLength; }
    if (this.queued >= this.maxBatchBytes) { this.flush(); return; }
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushLater);
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.queued === 0) return;
    const q = this.queue;
    const msg = q.length === 1 ? Buffer.from(q[0]!.buffer, q[0]!.byteOffset, this.queued) : Buffer.concat(q, this.queued);
    // the segments are copied into msg (or msg is the one segment): the array can be reused
    q.length = 0;
    this.queued = 0;
    if (!this.stream.destroyed && this.stream.writable) this.stream.write(msg);
  }
}
