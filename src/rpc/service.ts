// The callee's side: the Agent service's Exchange and Bulk handlers, and the callee's end of the
// bulk side channel an Exchange stream negotiates (bulk-socket.ts).
//
// Each request frame is handed to the dispatcher and answered when its promise settles, in
// whatever order they settle: a handler that waits an hour holds up nothing but its own answer.
// A payload that cannot be decoded fails only its own call (DATA_LOSS); a stream whose frames
// cannot even be parsed is closed with DATA_LOSS; the agent keeps serving either way.
//
// With an auth token, authInterceptor guards every method of the agent's server (these handlers
// and, on the master, the rendezvous host) before any of them starts.
import * as grpc from '@grpc/grpc-js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { BulkReader, writeBulk } from './bulk.js';
import { connectSide, SIDE_MIN_BYTES, SideOffer, type Offer, type SideChannel, type SideHead } from './bulk-socket.js';
import type { Encoded } from './codec.js';
import { errors, Status, toWireError } from './errors.js';
import { FrameBatcher, frameSegments, isPingOnly, Kind, parseFrames, type Frame } from './frame.js';
import type { PingSink } from './heartbeat.js';
import { AUTH_METADATA_KEY } from './options.js';
import type { TransportLimits } from './peer.js';
import type { WorldTls } from './tls.js';

export interface Dispatcher {
  readonly worker: string;
  /** Host this agent's gRPC server listens on; side-channel listeners never bind wider than it. */
  readonly listenHost: string;
  /** The host `worker` published at the rendezvous (its advertised host, no brackets); undefined if unknown. */
  peerHost(worker: string): string | undefined;
  /** Runs the named function on the encoded arguments; resolves to the encoded result. */
  dispatch(from: string, name: string, payload: Buffer): Promise<Encoded>;
  /** Counts a message in or out (for the shutdown barrier's quiescence check). */
  traffic(): void;
  /**
   * Something arrived from worker `from` (failure detection, heartbeat.ts); false: drop it unread
   * (a FaultInjector silences `from`). Absent: everything is kept.
   */
  heard?(from: string): boolean;
  /** An Exchange stream from `from` opened: `out` gets the heartbeat's pings until the returned function runs. */
  linkExchange?(from: string, out: PingSink): () => void;
}

const PARK_MS = 5 * 60_000;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * The server's side of authentication: a grpc-js server interceptor that checks a call's auth
 * token when the call's metadata arrives, that is before grpc-js has read (let alone decoded) a
 * single message and before the method's handler starts. A call without the token, or with
 * another one, ends there with UNAUTHENTICATED: no handler runs, no state changes. One sha256 and
 * one constant-time compare per call (an Exchange stream is one call however many frames it
 * carries); the digests make the compare equal-length whatever the caller sent. The token is
 * removed from the metadata before the handler sees it, so nothing downstream can log it.
 */
export function authInterceptor(worker: string, token: string): grpc.ServerInterceptor {
  const expected = sha256(token);
  const refused = errors.authRefused(worker);
  const status = { code: refused.code, details: refused.message };
  const authorized = (md: grpc.Metadata) => {
    const got = md.get(AUTH_METADATA_KEY);
    return got.length === 1 && typeof got[0] === 'string' && timingSafeEqual(sha256(got[0]), expected);
  };
  return (_method, call) => new grpc.ServerInterceptingCall(call, {
    start: (next) => next({
      onReceiveMetadata: (md, pass) => {
        if (!authorized(md)) { call.sendStatus(status); return; }
        md.remove(AUTH_METADATA_KEY);
        pass(md);
      },
    }),
  });
}

/** `tls`: the agent's TLS settings (tls.ts), which its side-channel listeners and reverse links use too; undefined: plain TCP. */
export function agentImplementation(d: Dispatcher, limits: TransportLimits, tls?: WorldTls): grpc.UntypedServiceImplementation {
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
    // pings go back to the caller on this stream, so that it hears us while its calls run
    const unlink = d.linkExchange?.(from, out);
    // the bulk side channel of this stream (bulk-socket.ts): large requests arrive on it and
    // large responses leave on it; it lives and dies with this stream
    let side: SideChannel | undefined;
    // the reverse link the caller offers (peer.ts sideOut): requests arrive on it, zero-copy
    let sideIn: SideChannel | undefined;
    let offer: Offer | undefined;
    let gone = false;
    const answerOn = (link: SideChannel, callId: number, name: string, payload: Buffer) => {
      d.dispatch(from, name, payload).then(
        (result) => { d.traffic(); link.send(Kind.Response, callId, '', result); },
        (err) => { d.traffic(); link.send(Kind.Error, callId, '', errorPayload(err)); },
      );
    };
    const attach = (link: SideChannel) => {
      if (gone) { link.close(); return; }
      side = link;
      const onMessage = (h: SideHead, payload: Buffer) => {
        if (d.heard && !d.heard(from)) return;
        d.traffic();
        if (h.kind === Kind.Request) answerOn(link, h.callId, h.name, payload);
        else if (h.kind === Kind.SideReady && !sideIn) connectReverse(link, h.name, payload);
        else link.send(Kind.Error, h.callId, '', errorPayload(errors.codec(d.worker, `unexpected frame kind ${h.kind} in a request`)));
      };
      const connectReverse = (link: SideChannel, port: string, token: Buffer) => {
        // the caller's published (advertised) host, where its reverse listener is reachable; its
        // address as seen on link A only for a caller this agent does not know yet
        const host = d.peerHost(from) ?? link.remoteAddress;
        if (!host || !/^\d{1,5}$/.test(port)) return;
        connectSide(host, Number(port), Buffer.from(token), d.worker, tls).then((rev) => {
          if (gone || side !== link || sideIn) { rev.close(); return; }
          sideIn = rev;
          rev.onMessage = onMessage;
          rev.onClose = (why) => link.close(why);
        }, () => { /* requests keep arriving on the link itself */ });
      };
      link.onMessage = onMessage;
      link.onClose = () => { if (side === link) { side = undefined; sideIn?.close(); } };
    };
    // The offer (a port and a random 24-byte token) travels only on this Exchange stream, and a
    // connection to the port is accepted only with that token (bulk-socket.ts SideOffer, the
    // native accept_one: constant-time compares). With an auth token, authInterceptor admitted this
    // stream only after checking it, so a caller without the auth token never learns an offer.
    const openSide = () => {
      if (offer || side) { out.push(frameSegments(Kind.SideReady, 0, '', null, 0)); return; }
      // Bind where our gRPC server already listens, not wherever the caller says (SideOpen names
      // the host it reached us at; unused): a caller must not be able to open a listener on an
      // interface this agent was not exposed on. A wildcard server gets a wildcard listener: the
      // caller connects to our advertised host, which may be any of our interfaces.
      SideOffer.listen(d.listenHost.replace(/^\[(.*)\]$/, '$1'), d.worker, attach, tls).then(
        (o) => {
          if (gone) { o.close(); return; }
          offer = o;
          out.push(frameSegments(Kind.SideReady, 0, '', o.token, o.port));
        },
        () => out.push(frameSegments(Kind.SideReady, 0, '', null, 0)),
      );
    };
    const cleanup = () => {
      gone = true;
      unlink?.();
      offer?.close();
      side?.close();
      sideIn?.close();
    };
    const answer = (f: Frame) => {
      d.dispatch(from, f.name, f.payload).then(
        (result) => {
          d.traffic();
          if (side?.open && (result.byteLength >= SIDE_MIN_BYTES || result.byteLength > limits.inlineBytes)) side.send(Kind.Response, f.callId, '', result);
          else if (result.byteLength <= limits.inlineBytes) out.push(frameSegments(Kind.Response, f.callId, '', result));
          else out.push(frameSegments(Kind.ResponseBulk, f.callId, '', null, park(result)));
        },
        (err) => { d.traffic(); out.push(frameSegments(Kind.Error, f.callId, '', errorPayload(err))); },
      );
    };
    call.on('data', (msg: Buffer) => {
      if (d.heard && !d.heard(from)) return;
      // a heartbeat alone is not activity: the shutdown barrier waits for traffic to stop
      if (!isPingOnly(msg)) d.traffic();
      let frames: Frame[];
      try {
        frames = parseFrames(msg, d.worker);
      } catch (e) {
        call.emit('error', { code: Status.DATA_LOSS, details: (e as Error).message });
        return;
      }
      for (const f of frames) {
        if (f.kind === Kind.Request) answer(f);
        else if (f.kind === Kind.Ping) continue; // heard already: the message arrived
        else if (f.kind === Kind.SideOpen) openSide();
        else out.push(frameSegments(Kind.Error, f.callId, '', errorPayload(errors.codec(d.worker, `unexpected frame kind ${f.kind} in a request`))));
      }
    });
    call.on('end', () => { out.flush(); call.end(); cleanup(); });
    call.on('error', () => { cleanup(); /* the caller went away; its calls fail on its side */ });
    call.on('cancelled', cleanup);
    call.on('close', cleanup);
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
      if (d.heard && !d.heard(from)) return;
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
