// The bulk side channel (src/rpc/bulk-socket.ts): negotiation, both link directions, errors,
// deadlines, garbage and dead peers over it, and the token check of an offer.
import test from 'ava';
import * as net from 'node:net';
import { connectSide, SideOffer } from '../../src/rpc/bulk-socket.js';
import { RpcError, Status } from '../../src/rpc/errors.js';
import { Kind } from '../../src/rpc/frame.js';
import { startWorld, stopWorld } from './world.js';
import type { Agent } from '../../src/rpc/index.js';

// white-box: the peer's links, to wait for them and to inject bytes
type SideView = { open: boolean; socket?: net.Socket; injectRaw?(bytes: Uint8Array): void; sharedMemory?: boolean };
type PeerView = { side?: SideView; sideOut?: SideView; sideLinksUp(): Promise<void> };
const peerOf = (a: Agent) => (a as unknown as { peers: Map<string, PeerView> }).peers.get('w1')!;
/** Resolves when both side links to w1 are open (an event from the peer, not a polling budget). */
async function linksUp(a: Agent): Promise<boolean> {
  await peerOf(a).sideLinksUp();
  return Boolean(peerOf(a).side?.open && peerOf(a).sideOut?.open);
}
/** Writes bytes that are not messages on a link (the native link's raw write, or the JS socket). */
function inject(side: SideView, bytes: Buffer): void {
  if (side.injectRaw) side.injectRaw(bytes);
  else side.socket!.write(bytes);
}
/** A promise and the function that resolves it (handlers say "I am running" through these). */
function signal(): { fired: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const fired = new Promise<void>((r) => { fire = r; });
  return { fired, fire };
}

test('large payloads, errors and deadlines over the side channel', async (t) => {
  const [a, b] = await startWorld(2);
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  try {
    b!.register('echo', (x: unknown) => x);
    b!.register('make', (n: number) => new Float64Array(n).fill(3));
    b!.register('boom', (x: Float32Array) => { throw new RangeError(`bad ${x.length}`); });
    b!.register('hang', (x: Float32Array) => gate.then(() => x.length));
    t.is(await a!.call('w1', 'echo', [1]), 1);
    t.true(await linksUp(a!));
    const big = Float32Array.from({ length: 1_000_000 }, (_, i) => i);
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
    const made = await a!.call<Float64Array>('w1', 'make', [500_000]); // small request, large response
    t.is(made.length, 500_000);
    t.is(made[499_999], 3);
    const e1 = await t.throwsAsync(a!.call('w1', 'boom', [big]), { instanceOf: RpcError });
    t.regex(e1!.message, /RangeError: bad 1000000/);
    const e2 = await t.throwsAsync(a!.call('w1', 'hang', [big], { timeoutMs: 150 }), { instanceOf: RpcError });
    t.is(e2!.code, Status.DEADLINE_EXCEEDED);
    release();
    const many = await Promise.all([1, 2, 3, 4].map((k) => a!.call<Float32Array>('w1', 'echo', [big.map((v) => v * k)])));
    t.deepEqual(many.map((m) => m[7]), [7, 14, 21, 28]);
  } finally {
    release();
    await stopWorld([a!, b!]);
  }
});

test('garbage on the side channel fails the calls in flight with UNAVAILABLE, and the next call reconnects', async (t) => {
  const [a, b] = await startWorld(2);
  // the slow handler runs until the test releases it, so the call is in flight when the garbage
  // arrives however long anything takes
  const running = signal();
  const gate = signal();
  try {
    b!.register('echo', (x: unknown) => x);
    b!.register('slow', () => { running.fire(); return gate.fired; });
    await a!.call('w1', 'echo', [1]);
    t.true(await linksUp(a!));
    const pending = a!.call('w1', 'slow', [], { timeoutMs: 60_000 });
    await running.fired;
    inject(peerOf(a!).side!, Buffer.alloc(64, 0xee));
    t.is((await t.throwsAsync(pending, { instanceOf: RpcError }))!.code, Status.UNAVAILABLE);
    gate.fire();
    const big = new Float32Array(300_000).fill(2);
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
    t.true(await linksUp(a!));
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
  } finally {
    gate.fire();
    await stopWorld([a!, b!]);
  }
});

test('a peer that dies during a large call fails it with UNAVAILABLE', async (t) => {
  const [a, b] = await startWorld(2);
  b!.register('echo', (x: unknown) => x);
  const running = signal();
  b!.register('never', () => { running.fire(); return new Promise(() => {}); });
  await a!.call('w1', 'echo', [1]);
  t.true(await linksUp(a!));
  // the deadline is far past the test's timeout: the call can only fail because the peer died
  const p = a!.call('w1', 'never', [new Float32Array(500_000)], { timeoutMs: 60_000 });
  await running.fired; // the large request has arrived and its handler runs
  await b!.shutdown({ graceful: false });
  t.is((await t.throwsAsync(p, { instanceOf: RpcError }))!.code, Status.UNAVAILABLE);
  await a!.shutdown({ graceful: false });
});

test('an offer drops a connection with the wrong token and accepts the right one', async (t) => {
  let accepted = 0;
  const offer = await SideOffer.listen('127.0.0.1', 'callee', (link) => {
    accepted++;
    link.onMessage = (h, payload) => { link.send(Kind.Response, h.callId, '', payload); };
  });
  try {
    const bad = net.connect(offer.port, '127.0.0.1');
    bad.on('error', () => {});
    bad.write(Buffer.alloc(40, 1));
    await new Promise((r) => bad.on('close', r));
    t.is(accepted, 0);
    const link = await connectSide('127.0.0.1', offer.port, offer.token, 'caller');
    const reply = new Promise<Buffer>((r) => { link.onMessage = (_h, payload) => r(payload); });
    link.send(Kind.Request, 5, 'f', Buffer.from('hello side'));
    t.is((await reply).toString(), 'hello side');
    t.is(accepted, 1);
    link.close();
  } finally {
    offer.close();
  }
});
