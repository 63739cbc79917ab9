// Chunked transfer of one large payload over a Bulk stream (client- and server-side alike): the
// fallback for when the bulk side channel (bulk-socket.ts) is not (yet) open.
//
// The sender writes one header frame (CHUNKED, aux = payload length), then the payload's segments
// cut into chunks no larger than the chunk size. Chunks are views of the caller's arrays (grpc-js
// copies each once into its own framing buffer), and writing waits for 'drain', so a 1 GB tensor
// never needs a second 1 GB buffer on the sending side. The receiver copies chunks into one
// buffer allocated up front at the announced length, so decoded tensors can view it in place.
import { once } from 'node:events';
import { errors } from './errors.js';
import type { Encoded } from './codec.js';
import { CHUNKED, frameHead, parseFrames, type Frame, type Kind, type Sink } from './frame.js';

/** Small segments are packed together; big ones are cut into views of `chunkBytes`. */
function* chunks(payload: Encoded, chunkBytes: number): Generator<Buffer> {
  let pack: Uint8Array[] = [];
  let packed = 0;
  const flushPack = () => {
    const b = pack.length === 1 ? Buffer.from(pack[0]!.buffer, pack[0]!.byteOffset, packed) : Buffer.concat(pack, packed);
    pack = []; packed = 0;
    return b;
  };
  for (const seg of payload.segments) {
    if (seg.byteLength < 64 * 1024 && packed + seg.byteLength <= chunkBytes) {
      pack.push(seg); packed += seg.byteLength;
      continue;
    }
    if (packed) yield flushPack();
    for (let at = 0; at < seg.byteLength; at += chunkBytes) {
      const n = Math.min(chunkBytes, seg.byteLength - at);
      yield Buffer.from(seg.buffer, seg.byteOffset + at, n);
    }
  }
  if (packed) yield flushPack();
}

export async function writeBulk(stream: Sink, kind: Kind, callId: number, name: string, payload: Encoded, chunkBytes: number): Promise<void> {
  const write = async (b: Buffer) => {
    if (stream.destroyed) throw new Error('stream closed while sending');
    if (!stream.write(b)) await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
  };
  await write(frameHead(kind, callId, name, 0, payload.byteLength, CHUNKED));
  for (const c of chunks(payload, chunkBytes)) await write(c);
}

/** Reassembles one chunked payload; feed it every message after the header frame. */
export class BulkReader {
  readonly head: Frame;
  private readonly buf: Buffer;
  private filled = 0;

  constructor(first: Buffer, private readonly worker: string) {
    const frames = parseFrames(first, worker);
    if (frames.length !== 1) throw errors.codec(worker, `bulk stream must open with one header frame, got ${frames.length}`);
    this.head = frames[0]!;
    const total = this.head.flags & CHUNKED ? this.head.aux : 0;
    if (!Number.isSafeInteger(total) || total < 0) throw errors.codec(worker, `bad bulk payload length ${total}`);
    // allocUnsafeSlow: an ArrayBuffer of its own, offset 0, so every tensor in it is aligned
    this.buf = this.head.flags & CHUNKED ? Buffer.allocUnsafeSlow(total) : this.head.payload;
    if (!(this.head.flags & CHUNKED)) this.filled = this.buf.length;
  }

  get done(): boolean {
    return this.filled === this.buf.length;
  }

  feed(chunk: Buffer): void {
    if (this.filled + chunk.length > this.buf.length) {
      throw errors.codec(this.worker, `bulk payload overflow: ${this.filled + chunk.length} bytes, announced ${this.buf.length}`);
    }
    chunk.copy(this.buf, this.filled);
    this.filled += chunk.length;
  }

  get payload(): Buffer {
    return this.buf;
  }

  get received(): number {
    return this.filled;
  }
}
