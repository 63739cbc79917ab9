import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { RpcError, Status } from '../../src/rpc/index.js';
import { frameSegments, Kind, parseFrames } from '../../src/rpc/frame.js';
import { startWorld, stopWorld } from './world.js';

test('call and callAsync carry values and tensors both ways', async (t) => {
  const [a, b] = await startWorld(2);
  try {
    b!.register('scale', (x: { shape: number[]; dtype: string; data: Float32Array }, k: number) => ({
      shape: x.shape, dtype: x.dtype, data: x.data.map((v) => v * k),
    }));
    b!.register('concat', (...parts: string[]) => parts.join('-'));
    t.is(await a!.call('w1', 'concat', ['a', 'b', 'c']), 'a-b-c');
    const p = a!.callAsync('w1', 'scale', [{ shape: [2, 2], dtype: 'float32', data: new Float32Array([1, 2, 3, 4]) }, 3]);
    t.true(p instanceof Promise);
    const r = (await p) as { shape: number[]; data: Float32Array };
    t.deepEqual(r.shape, [2, 2]);
    t.deepEqual(r.data, new Float32Array([3, 6, 9, 12]));
    t.is(await a!.call(1, 'concat', ['by rank']), 'by rank');
    t.is(await b!.call('w1', 'concat', ['self', 'call']), 'self-call');
  } finally {
    await stopWorld([a!, b!]);
  }
});

test('remote errors come back as RpcError with code, worker and message; unknown functions are NOT_FOUND', async (t) => {
  const [a, b] = await startWorld(2);
  try {
    b!.register('boom', () => { throw new TypeError('bad thing 42'); });
    b!.register('reject', async () => { throw new RpcError(Status.PERMISSION_DENIED, 'w1', 'not yours'); });
    b!.register('ok', () => 'fine');
    const e1 = await t.throwsAsync(a!.call('w1', 'boom'), { instanceOf: RpcError });
    t.is(e1!.code, Status.UNKNOWN);
    t.is(e1!.worker, 'w1');
    t.regex(e1!.message, /TypeError: bad thing 42/);
    const e2 = await t.throwsAsync(a!.call('w1', 'reject'), { instanceOf: RpcError });
    t.is(e2!.code, Status.PERMISSION_DENIED);
    const e3 = await t.throwsAsync(a!.call('w1', 'missing', [1]), { instanceOf: RpcError });
    t.is(e3!.code, Status.NOT_FOUND);
    t.regex(e3!.message, /function "missing" is not registered on worker "w1"/);
    t.is(await a!.call('w1', 'ok'), 'fine', 'the agent keeps serving');
    await t.throwsAsync(a!.call('w1', '__psrpc.rref.fetch', ['x']), { instanceOf: RpcError, message: /reserved/ });
    t.throws(() => b!.register('__psrpc.evil', () => 1), { message: /reserved/ });
    t.throws(() => b!.register('ok', () => 1), { message: /already registered/ });
    await t.throwsAsync(a!.call('nobody', 'ok'), { instanceOf: RpcError, message: /unknown worker "nobody"/ });
  } finally {
    await stopWorld([a!, b!]);
  }
});

test('a call past its deadline fails with DEADLINE_EXCEEDED and others continue', async (t) => {
  const [a, b] = await startWorld(2);
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  try {
    b!.register('hang', () => gate.then(() => 'late'));
    b!.register('ok', () => 'fine');
    const e = await t.throwsAsync(a!.call('w1', 'hang', [], { timeoutMs: 100 }), { instanceOf: RpcError });
    t.is(e!.code, Status.DEADLINE_EXCEEDED);
    t.is(e!.worker, 'w1');
    t.regex(e!.message, /call "hang" from "w0" to "w1" timed out after 100 ms/);
    t.is(await a!.call('w1', 'ok'), 'fine');
  } finally {
    release();
    await stopWorld([a!, b!]);
  }
});

test('1,000 pending async calls do not hold up other calls', async (t) => {
  const [a, b] = await startWorld(2);
  try {
    const waiting: Array<() => void> = [];
    // resolves when the 1,000th 'later' handler is running (every one of them is then pending)
    let allWaiting!: () => void;
    const allArrived = new Promise<void>((r) => { allWaiting = r; });
    b!.register('later', (i: number) => new Promise<number>((resolve) => {
      waiting.push(() => resolve(i * 2));
      if (waiting.length === 1000) allWaiting();
    }));
    b!.register('now', (i: number) => i + 1);
    const pending = Array.from({ length: 1000 }, (_, i) => a!.call<number>('w1', 'later', [i]));
    await allArrived;
    const quick = await Promise.all(Array.from({ length: 200 }, (_, i) => a!.call<number>('w1', 'now', [i])));
    t.deepEqual(quick, Array.from({ length: 200 }, (_, i) => i + 1));
    t.is(b!.stats().runningHandlers, 1000);
    waiting.reverse().forEach((go) => go());
    t.deepEqual(await Promise.all(pending), Array.from({ length: 1000 }, (_, i) => i * 2));
  } finally {
    await stopWorld([a!, b!]);
  }
});

test('payloads above the message limit are streamed in chunks, both ways', async (t) => {
  const [a, b] = await startWorld(2, { maxMessageBytes: 256 * 1024, chunkBytes: 64 * 1024 });
  try {
    b!.register('echo', (x: unknown) => x);
    b!.register('make', (n: number) => ({ shape: [n], dtype: 'float32', data: Float32Array.from({ length: n }, (_, i) => i) }));
    b!.register('sum', (x: Float64Array) => x.reduce((s, v) => s + v, 0));
    const big = Float64Array.from({ length: 700_001 }, (_, i) => i % 1000);
    t.deepEqual(await a!.call('w1', 'echo', [big]), big);
    const made = await a!.call<{ data: Float32Array }>('w1', 'make', [1_000_003]);
    t.is(made.data.length, 1_000_003);
    t.is(made.data[1_000_002], 1_000_002);
    t.is(await a!.call('w1', 'sum', [big]), big.reduce((s, v) => s + v, 0));
    const many = await Promise.all([1, 2, 3].map((k) => a!.call<Float64Array>('w1', 'echo', [big.map((v) => v * k)])));
    t.deepEqual(many.map((m) => m[999]), [999, 1998, 2997]);
  } finally {
    await stopWorld([a!, b!]);
  }
});

test('garbage frames and payloads fail cleanly and the agent keeps serving', async (t) => {
  const [a, b] = await startWorld(2);
  try {
    b!.register('ok', () => 'fine');
    const client = new grpc.Client(b!.address, grpc.credentials.createInsecure());
    const id = (x: Buffer) => x;
    // a well-formed frame with a garbage payload: that call fails with DATA_LOSS
    const s1 = client.makeBidiStreamRequest('/psrpc.Agent/Exchange', id, id, new grpc.Metadata());
    const reply = new Promise<Buffer>((resolve) => s1.once('data', resolve));
    s1.on('error', () => {});
    s1.write(Buffer.concat(frameSegments(Kind.Request, 9, 'ok', Buffer.from('garbage!garbage!garbage!'))));
    const [f] = parseFrames(await reply, 'test');
    t.is(f!.kind, Kind.Error);
    t.is(f!.callId, 9);
    const err = JSON.parse(f!.payload.toString());
    t.is(err.code, Status.DATA_LOSS);
    t.regex(err.message, /cannot decode payload/);
    s1.end();
    // bytes that are not frames at all: the stream is closed with DATA_LOSS
    const s2 = client.makeBidiStreamRequest('/psrpc.Agent/Exchange', id, id, new grpc.Metadata());
    const closed = new Promise<grpc.ServiceError>((resolve) => s2.on('error', resolve));
    s2.on('data', () => {});
    s2.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]));
    t.is((await closed).code, Status.DATA_LOSS);
    // a truncated bulk stream
    const s3 = client.makeBidiStreamRequest('/psrpc.Agent/Bulk', id, id, new grpc.Metadata());
    s3.on('error', () => {});
    s3.on('data', () => {});
    s3.write(Buffer.from([9, 9, 9]));
    s3.end();
    client.close();
    t.is(await a!.call('w1', 'ok'), 'fine');
  } finally {
    await stopWorld([a!, b!]);
  }
});

test('calls before rendezvous or after shutdown are refused', async (t) => {
  const [a, b] = await startWorld(2);
  b!.register('ok', () => 'fine');
  await stopWorld([a!, b!]);
  const e = await t.throwsAsync(a!.call('w1', 'ok'), { instanceOf: RpcError });
  t.is(e!.code, Status.FAILED_PRECONDITION);
});

test('a large (streamed) call past its deadline fails with DEADLINE_EXCEEDED', async (t) => {
  const [a, b] = await startWorld(2, { maxMessageBytes: 128 * 1024, chunkBytes: 32 * 1024 });
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  try {
    b!.register('hangBig', () => gate.then(() => 0));
    const e = await t.throwsAsync(a!.call('w1', 'hangBig', [new Float32Array(200_000)], { timeoutMs: 150 }), { instanceOf: RpcError });
    t.is(e!.code, Status.DEADLINE_EXCEEDED);
  } finally {
    release();
    await stopWorld([a!, b!]);
  }
});

test('a peer that goes away fails the calls in flight to it with UNAVAILABLE, before their deadline', async (t) => {
  const [a, b] = await startWorld(2);
  let running!: () => void;
  const arrived = new Promise<void>((r) => { running = r; });
  b!.register('never', () => { running(); return new Promise(() => {}); });
  // the deadline is far past the test's timeout: UNAVAILABLE (not DEADLINE_EXCEEDED) says the
  // call failed because the peer went away, not because its time ran out
  const p = a!.call('w1', 'never', [], { timeoutMs: 10 * 60_000 });
  await arrived; // the call is in flight: its handler runs on w1
  await b!.shutdown({ graceful: false });
  const e = await t.throwsAsync(p, { instanceOf: RpcError });
  t.is(e!.code, Status.UNAVAILABLE);
  t.is(e!.worker, 'w1');
  await a!.shutdown({ graceful: false });
});
