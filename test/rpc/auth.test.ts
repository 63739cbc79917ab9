// Authentication (InitOptions.authToken): a world with one shared secret works end to end; a
// caller without it (an agent with another token or none, a raw gRPC client) is refused with
// UNAUTHENTICATED before anything runs; a bad token option is refused without being shown; and
// an offered side-channel port gives nothing to a connection with the wrong offer token.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { Agent, init, RpcError, Status } from '../../src/rpc/index.js';
import { SideOffer } from '../../src/rpc/bulk-socket.js';
import { encode, flatten } from '../../src/rpc/codec.js';
import { frameSegments, Kind, parseFrames } from '../../src/rpc/frame.js';
import { AUTH_METADATA_KEY, resolveOptions } from '../../src/rpc/options.js';
import { RendezvousClient } from '../../src/rpc/proto.js';
import type { RendezvousHost } from '../../src/rpc/rendezvous.js';
import { startWorld, stopWorld, WORLD_TIMEOUT_MS as LONG } from './world.js';

const TOKEN = 'psrpc-test-secret-0123456789';
const REFUSED = 'call refused: missing or wrong auth token';

type PeerView = { side?: { open: boolean }; sideOut?: { open: boolean }; sideLinksUp(): Promise<void> };
const peerOf = (a: Agent, to: string) => (a as unknown as { peers: Map<string, PeerView> }).peers.get(to)!;
const hostOf = (master: Agent) => (master as unknown as { host: RendezvousHost }).host;

const id = (b: Buffer) => b;
const metadata = (token?: string) => {
  const md = new grpc.Metadata();
  md.set('psrpc-from', 'raw');
  if (token !== undefined) md.set(AUTH_METADATA_KEY, token);
  return md;
};
/** The payload of a call with no arguments, as an agent would send it. */
const noArgs = () => flatten(encode([], { worker: 'raw' }));

/**
 * Opens a raw stream on `path`, writes `frames`, and resolves with the call's final status and how
 * many messages came back before it: the refusal is an event (the status), not a quiet interval.
 */
function rawStream(client: grpc.Client, path: string, md: grpc.Metadata, frames: Uint8Array[][]): Promise<{ status: grpc.StatusObject; messages: number }> {
  const s = client.makeBidiStreamRequest(path, id, id, md);
  let messages = 0;
  s.on('data', () => { messages++; });
  s.on('error', () => { /* the status below says it */ });
  const done = new Promise<{ status: grpc.StatusObject; messages: number }>((resolve) => s.on('status', (status: grpc.StatusObject) => resolve({ status, messages })));
  for (const f of frames) s.write(Buffer.concat(f));
  return done;
}

test('two agents with the same token: calls, RRefs, a 2 MiB tensor over the side channel, and the shutdown barrier', async (t) => {
  const [a, b] = await startWorld(2, { authToken: TOKEN });
  try {
    b!.register('echo', (x: unknown) => x);
    b!.register('make', (n: number) => new Float32Array(n).fill(1.5));
    t.is(await a!.call('w1', 'echo', ['hello']), 'hello');
    await peerOf(a!, 'w1').sideLinksUp();
    t.true(peerOf(a!, 'w1').side!.open && peerOf(a!, 'w1').sideOut!.open, 'both side links are up');
    const big = Float32Array.from({ length: 512 * 1024 }, (_, i) => i); // 2 MiB
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
    const ref = a!.remote<Float32Array>('w1', 'make', [4]);
    t.deepEqual(await ref.toHere(), new Float32Array(4).fill(1.5));
    a!.register('ping', () => 'pong');
    t.is(await b!.call('w0', 'ping'), 'pong', 'the other direction carries the token too');
  } finally {
    await stopWorld([a!, b!]); // graceful: the barrier runs through the master with the token
  }
});

test('a worker with another token, or none, is refused at the rendezvous and takes no slot; the right worker then completes the world', async (t) => {
  const master = await Agent.start({ name: 'm', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: LONG, authToken: 'token-A' });
  const joined: string[] = [];
  hostOf(master).onJoin = (w) => { joined.push(w.name); };
  const world = master.rendezvous();
  let right: Agent | undefined;
  try {
    for (const authToken of ['token-B', undefined]) {
      const e = await init({ name: 'intruder', rank: 1, worldSize: 2, master: master.address, timeoutMs: LONG, authToken }).catch((x: unknown) => x);
      t.true(e instanceof RpcError, String(e));
      t.is((e as RpcError).code, Status.UNAUTHENTICATED);
      t.is((e as RpcError).codeName, 'UNAUTHENTICATED');
      t.is((e as RpcError).message,
        `UNAUTHENTICATED: join from "intruder" refused by master ${master.address}: missing or wrong auth token (every worker of a world needs the same authToken)`);
      t.false((e as RpcError).message.includes('token-A'));
    }
    // a raw Join for the free rank with a wrong token: refused before the host sees it
    const client = new (RendezvousClient())(master.address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const raw = await new Promise<grpc.ServiceError | null>((resolve) => client.Join!({ worker: { name: 'raw', rank: 1, address: '127.0.0.1:1' }, worldSize: 2 }, metadata('token-B'), (err: grpc.ServiceError | null) => resolve(err)));
    client.close();
    t.is(raw?.code, Status.UNAUTHENTICATED);
    t.is(raw?.details, `worker "m": ${REFUSED}`);
    t.deepEqual(joined, ['m'], 'no refused worker took a slot');
    right = await init({ name: 'w1', rank: 1, worldSize: 2, master: master.address, timeoutMs: LONG, authToken: 'token-A' });
    t.is(await world, master);
    t.deepEqual(master.workers().map((w) => w.name), ['m', 'w1']);
    t.deepEqual(joined, ['m', 'w1']);
  } finally {
    await Promise.all([master.shutdown(), right?.shutdown() ?? world.then(() => {}, () => {})]);
  }
});

test('a raw gRPC client without the token, or with a wrong one, gets UNAUTHENTICATED, learns no side-channel offer, and runs nothing', async (t) => {
  const [a, b] = await startWorld(2, { authToken: TOKEN });
  let counter = 0;
  b!.register('count', () => ++counter);
  const client = new grpc.Client(b!.address, grpc.credentials.createInsecure());
  try {
    const request = frameSegments(Kind.Request, 7, 'count', noArgs());
    const sideOpen = frameSegments(Kind.SideOpen, 0, '127.0.0.1', null);
    const attempts: Array<[string, string, string | undefined]> = [
      ['Exchange', '/psrpc.Agent/Exchange', undefined],
      ['Exchange', '/psrpc.Agent/Exchange', 'wrong'],
      ['Exchange', '/psrpc.Agent/Exchange', `${TOKEN}x`], // a longer token that starts with the right one
      ['Exchange', '/psrpc.Agent/Exchange', TOKEN.slice(0, -1)],
      ['Bulk', '/psrpc.Agent/Bulk', 'wrong'],
      ['Bulk', '/psrpc.Agent/Bulk', undefined],
    ];
    for (const [what, path, token] of attempts) {
      const frames = what === 'Exchange' ? [sideOpen, request] : [request];
      const { status, messages } = await rawStream(client, path, metadata(token), frames);
      t.is(status.code, Status.UNAUTHENTICATED, `${what} with ${token === undefined ? 'no token' : 'a wrong token'}`);
      t.is(status.details, `worker "w1": ${REFUSED}`);
      t.is(messages, 0, 'not a frame came back (no SideReady: no offer port, no offer token)');
    }
    // the master's barrier refuses a stranger too (it would otherwise count in a shutdown round)
    const rdv = new (RendezvousClient())(a!.address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const barrier = await new Promise<grpc.ServiceError | null>((resolve) => rdv.Barrier!({ name: 'raw', round: 0, idle: true, activity: 0 }, metadata(), (err: grpc.ServiceError | null) => resolve(err)));
    rdv.close();
    t.is(barrier?.code, Status.UNAUTHENTICATED);
    t.is(barrier?.details, `worker "w0": ${REFUSED}`);
    t.is(counter, 0, 'the registered function never ran');

    // the right token over the same raw client: the call runs, state intact
    const s = client.makeBidiStreamRequest('/psrpc.Agent/Exchange', id, id, metadata(TOKEN));
    s.on('error', () => {});
    const reply = new Promise<Buffer>((resolve) => s.once('data', resolve));
    s.write(Buffer.concat(request));
    const [f] = parseFrames(await reply, 'raw');
    t.is(f!.kind, Kind.Response);
    t.is(f!.callId, 7);
    s.end();
    t.is(counter, 1);
    t.is(await a!.call('w1', 'count'), 2);
  } finally {
    client.close();
    await stopWorld([a!, b!]);
  }
});

test('an agent whose peer has another token gets UNAUTHENTICATED naming that peer', async (t) => {
  // two one-worker worlds with different tokens: b's address is reached from a's Peer directly
  const a = await init({ name: 'a', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, authToken: 'token-A' });
  const b = await init({ name: 'b', rank: 0, worldSize: 1, master: '127.0.0.1:0', timeoutMs: LONG, authToken: 'token-B' });
  let ran = 0;
  b.register('f', () => ++ran);
  try {
    const peer = (a as unknown as { peer(w: { name: string; rank: number; address: string }): { call(fn: string, p: unknown, ms: number): Promise<Buffer> } })
      .peer({ name: 'b', rank: 0, address: b.address });
    const small = await t.throwsAsync(peer.call('f', encode([], { worker: 'a' }), LONG), { instanceOf: RpcError });
    t.is(small!.code, Status.UNAUTHENTICATED);
    t.is(small!.worker, 'b');
    t.regex(small!.message, /^UNAUTHENTICATED: calls from "a" refused by worker "b": missing or wrong auth token/);
    // a request too large for the Exchange stream goes over Bulk before any side channel exists
    const big = await t.throwsAsync(peer.call('f', encode([new Float32Array(2 * 1024 * 1024)], { worker: 'a' }), LONG), { instanceOf: RpcError });
    t.is(big!.code, Status.UNAUTHENTICATED);
    t.is(big!.worker, 'b');
    t.is(ran, 0);
  } finally {
    await Promise.all([a.shutdown(), b.shutdown()]);
  }
});

test('a bad authToken is refused with an error that names the option and never shows the token', async (t) => {
  const base = { name: 'x', rank: 0, worldSize: 1, master: '127.0.0.1:0' };
  const cases: Array<[unknown, RegExp]> = [
    ['', /expected a non-empty string/],
    ['sécret-ünicode', /printable ASCII/],
    ['tab\tsecret', /printable ASCII/],
    [`long-secret-${'k'.repeat(1013)}`, /at most 1024 characters, got 1025/],
    [' spaced-secret ', /no space at either end/],
    [12345, /expected a string, got number/],
  ];
  for (const [authToken, why] of cases) {
    const e = t.throws(() => resolveOptions({ ...base, authToken: authToken as string }), { instanceOf: RpcError });
    t.is(e!.code, Status.INVALID_ARGUMENT);
    t.regex(e!.message, /^invalid option authToken \(value not shown\): /);
    t.regex(e!.message, why);
    if (typeof authToken === 'string' && authToken.length > 0) t.false(e!.message.includes(authToken.trim().slice(0, 8)), e!.message);
    t.false(e!.message.includes('12345'));
  }
  // the agent's entry point refuses it before listening
  const e = await t.throwsAsync(Agent.start({ ...base, authToken: 'bad\u0000secret' }), { instanceOf: RpcError });
  t.false(e!.message.includes('secret'));
  t.is(resolveOptions({ ...base, authToken: '~'.repeat(1024) }).authToken, '~'.repeat(1024));
  t.is(resolveOptions(base).authToken, undefined, 'default: no authentication');
});

test('an offered side-channel port drops a connection with the wrong offer token without sending it a byte', async (t) => {
  // the offer token travels only on an (authenticated) Exchange stream: the port alone is useless
  let accepted = 0;
  const offer = await SideOffer.listen('127.0.0.1', 'callee', () => { accepted++; });
  try {
    const hello = Buffer.alloc(32);
    hello.writeUInt32LE(0x53525350, 0); // 'PSRS', version 1: a well-formed hello, so the token itself is what is checked
    hello.writeUInt32LE(1, 4);
    let wrong = randomBytes(24);
    while (wrong.equals(offer.token)) wrong = randomBytes(24);
    wrong.copy(hello, 8);
    const s = net.connect(offer.port, '127.0.0.1');
    let received = 0;
    s.on('data', (d: Buffer) => { received += d.length; });
    s.on('error', () => {});
    s.write(hello);
    s.write(Buffer.alloc(64, 0x11)); // and a would-be message after it
    await new Promise((r) => s.on('close', r));
    t.is(received, 0);
    t.is(accepted, 0);
  } finally {
    offer.close();
  }
});
