import test from 'ava';
import { RpcError, Status } from '../../src/rpc/index.js';
import { startWorld } from './world.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('graceful shutdown waits for outstanding calls on every worker, nested ones included', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world;
  w2!.register('slow', async (x: number) => { await sleep(150); return x * 2; });
  w1!.register('relay', async (x: number) => { await sleep(50); return (await w1!.call<number>('w2', 'slow', [x])) + 1; });
  const inFlight = Promise.all([w0!.call('w1', 'relay', [10]), w0!.call('w2', 'slow', [1])]);
  // everybody asks to stop right away; the calls must still complete
  const stops = world.map((a) => a.shutdown({ graceful: true }));
  t.deepEqual(await inFlight, [21, 2]);
  await Promise.all(stops);
  for (const a of world) t.is(a.stats().outstandingCalls, 0);
  await t.throwsAsync(w0!.call('w1', 'relay', [1]), { instanceOf: RpcError });
});

test('graceful shutdown waits for RRef deletes to reach the owner', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  w1!.register('box', (i: number) => ({ i }));
  const refs = Array.from({ length: 500 }, (_, i) => w0!.remote('w1', 'box', [i]));
  await refs[499]!.toHere();
  for (const r of refs) void r.release();
  await Promise.all(world.map((a) => a.shutdown()));
  t.is(w1!.stats().ownedRRefs, 0);
});

test('non-graceful shutdown stops at once and fails calls in flight', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  w1!.register('never', () => new Promise(() => {}));
  const p = w0!.call('w1', 'never', [], { timeoutMs: 60_000 });
  await sleep(50);
  const t0 = Date.now();
  await w0!.shutdown({ graceful: false });
  const e = await t.throwsAsync(p, { instanceOf: RpcError });
  t.is(e!.code, Status.CANCELLED);
  t.true(Date.now() - t0 < 5000);
  await w1!.shutdown({ graceful: false });
});

test('graceful shutdown with a worker that never arrives fails at its deadline', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  const e = await t.throwsAsync(w0!.shutdown({ graceful: true, timeoutMs: 300 }), { instanceOf: RpcError });
  t.is(e!.code, Status.DEADLINE_EXCEEDED);
  await w1!.shutdown({ graceful: false });
});
