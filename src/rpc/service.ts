// The callee's side: the Agent service's Exchange and Bulk handlers.
//
// Each request frame is handed to the dispatcher and answered when its promise settles, in
// whatever order they settle: a handler that waits an hour holds up nothing but its own answer.
// A payload that cannot be decoded fails only its own call (DATA_LOSS); a stream whose frames
// cannot even be parsed is closed with DATA_LOSS; the agent keeps serving either way.
import * as grpc from '@grpc/grpc-js';
import { BulkReader, writeBulk } from './bulk.js';
import type { Encoded } from './codec.js';
import { errors, Status, toWireError } from './errors.js';
import { FrameBatcher, frameSegments, Kind, parseFrames, type Frame } from './frame.js';
import type { TransportLimits } from './peer.js';

export interface Dispatcher {
  readonly worker: string;
  /** Runs the named function on the encoded arguments; resolves to the encoded result. */
  dispatch(from: string, name: string, payload: Buffer): Promise<Encoded>;
  /** Counts a message in or out (for the shutdown barrier's quiescence check). */
  traffic(): void;
}

const PARK_MS = 5 * 60_000;

export function agentImplementation(d: Dispatcher, limits: TransportLimits): grpc.UntypedServiceImplementation {
  // responses too large for the Exchange stream wait here until the caller fetches them over Bulk
  const parked = new Map<number, { payload: Encoded; timer: NodeJS.Timeout }>();
  let nextPark = 1;
  const park = (payload: Encoded): number => {
    const id = nextPark++;
    const timer = setTimeout(() => parked.delete(id), PARK_MS);
    timer.unref();
    parked.set(id, { payload, timer });
    return id;
  };
  const errorPayload = (err: unknown) => Buffer.from(JSON.stringify(toWireError(err, d.worker)), 'utf8');
  const fromOf = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => String(call.metadata.get('psrpc-from')[0] ?? '?');

  const Exchange = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const from = fromOf(call);
    const out = new FrameBatcher(call, limits.inlineBytes);
    const answer = (f: Frame) => {
      d.dispatch(from, f.name, f.payload).then(
        (result) => {
          d.traffic();
          if (result.byteLength <= limits.inlineBytes) out.push(frameSegments(Kind.Response, f.callId, '', result));
          else out.push(frameSegments(Kind.ResponseBulk, f.callId, '', null, park(result)));
        },
        (err) => { d.traffic(); out.push(frameSegments(Kind.Error, f.callId, '', errorPayload(err))); },
      );
    };
    call.on('data', (msg: Buffer) => {
      d.traffic();
      let frames: Frame[];
      try {
        frames = parseFrames(msg, d.worker);
      } catch (e) {
        call.emit('error', { code: Status.DATA_LOSS, details: (e as Error).message });
        return;
      }
      for (const f of frames) {
        if (f.kind === Kind.Request) answer(f);
        else out.push(frameSegments(Kind.Error, f.callId, '', errorPayload(errors.codec(d.worker, `unexpected frame kind ${f.kind} in a request`))));
      }
    });
    call.on('end', () => { out.flush(); call.end(); });
    call.on('error', () => { /* the caller went away; its calls fail on its side */ });
  };

  const Bulk = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const from = fromOf(call);
    let reader: BulkReader | undefined;
    let started = false;
    const reply = async (result: Encoded) => {
      if (result.byteLength <= limits.inlineBytes) call.write(Buffer.concat(frameSegments(Kind.Response, 0, '', result)));
      else await writeBulk(call, Kind.Response, 0, '', result, limits.chunkBytes);
      call.end();
    };
    const replyError = (err: unknown) => {
      call.write(Buffer.concat(frameSegments(Kind.Error, 0, '', errorPayload(err))));
      call.end();
    };
    const run = () => {
      const head = reader!.head;
      if (head.kind === Kind.Request) {
        d.dispatch(from, head.name, reader!.payload).then(reply, replyError).catch(() => call.destroy());
      } else if (head.kind === Kind.Fetch) {
        const p = parked.get(head.aux);
        if (!p) { replyError(errors.codec(d.worker, `no parked response ${head.aux} (expired or fetched already)`)); return; }
        parked.delete(head.aux);
        clearTimeout(p.timer);
        reply(p.payload).catch(() => call.destroy());
      } else {
        replyError(errors.codec(d.worker, `unexpected bulk frame kind ${head.kind}`));
      }
    };
    call.on('data', (msg: Buffer) => {
      d.traffic();
      try {
        if (!reader) reader = new BulkReader(msg, d.worker);
        else reader.feed(msg);
      } catch (e) {
        replyError(e);
        return;
      }
      if (reader.done && !started) {
        started = true;
        run();
      }
    });
    call.on('error', () => { /* cancelled by the caller */ });
  };

  return { Exchange, Bulk };
}
