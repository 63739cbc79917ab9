// The batches of an elastic job: handed out once each, given back by trainers that go, taken again
// before new ones; and the parameter server around it (pushes mark them done, a trainer that leaves
// gives its batch back, a late joiner takes it).
import test from 'ava';
import { ManualClock, RpcError, Status } from '../../src/rpc/index.js';
import { BatchQueue, ParameterServer, type ParameterSpec } from '../../src/server/index.js';

const SHAPE = { perEpoch: 3, epochs: 2 };

test('batches are handed out in order, once each; a batch given back is taken before new ones; the end is null for everyone', async (t) => {
  const q = new BatchQueue('ps0', SHAPE);
  t.is(q.total, 6);
  t.is(await q.take('a'), 0);
  t.is(await q.take('b'), 1);
  // a trainer asking while it holds a batch is its restarted process: the same batch again
  t.is(await q.take('a'), 0);
  q.complete('a');
  t.is(await q.take('a'), 2);
  q.release('b'); // b went: its batch 1 goes back
  t.is(await q.take('c'), 1, 'the batch given back comes first');
  q.complete('c');
  t.is(await q.take('c'), 3);
  q.complete('a');
  t.is(await q.take('a'), 4);
  q.complete('c');
  t.is(await q.take('c'), 5);
  q.complete('c');
  // every batch is out or done: a trainer that asks now waits, for a's may come back
  const waiting = q.take('c');
  q.release('a');
  t.is(await waiting, 4, 'a went: the waiting trainer takes its batch');
  const last = q.take('d');
  q.complete('c');
  t.is(await last, null, 'once all are done, a waiting trainer is told so');
  t.is(await q.take('e'), null);
  const s = q.stats();
  t.is(s.done, 6);
  t.is(s.requeued, 2);
  t.is(s.handed, 8);
  t.deepEqual(s.byTrainer, { a: 2, c: 4 });
});

test('a trainer that leaves while it waits takes nothing; a push for a batch it does not hold and a different shape are refused', (t) => {
  const q = new BatchQueue('ps0', { perEpoch: 1, epochs: 1 });
  void q.take('a');
  const waiting = q.take('b');
  q.release('b');
  return waiting.then((b) => {
    t.is(b, null);
    t.throws(() => q.checkHeld('a', 7), { instanceOf: RpcError, message: /trainer "a" pushed for batch 7, but holds batch 0/ });
    t.throws(() => q.checkHeld('b', 0), { message: /holds none/ });
    t.throws(() => q.check('c', { perEpoch: 2, epochs: 1 }), { message: /counts 2 batches an epoch for 1 epochs; the job's batches were numbered for 1 x 1/ });
  });
});

const LAYOUT: ParameterSpec[] = [{ name: 'w', size: 2 }];

test('the server: a push carrying its batch marks it done at the step; a trainer that leaves gives its batch to a late joiner', async (t) => {
  const ps = new ParameterServer({ name: 'ps0', shard: 0, shards: 1, trainers: 1, consistency: 'async', optimizer: { kind: 'sgd', lr: 1 } });
  t.teardown(() => ps.close());
  const g = () => new Float32Array([1, 1]);
  await ps.join('a', LAYOUT, new Float32Array(2));
  t.is(await ps.batch('a', SHAPE), 0);
  // a push for another batch is refused before anything changes
  const wrong = await ps.pushPull('a', 0, g(), 1, -1, 5).catch((e: unknown) => e);
  t.true(wrong instanceof RpcError);
  t.is((wrong as RpcError).code, Status.INVALID_ARGUMENT);
  t.is(ps.version, 0);
  await ps.pushPull('a', 0, g(), 1, -1, 0);
  t.is(ps.stats().batches!.done, 1);
  t.is(await ps.batch('a', SHAPE), 1);
  ps.leave('a');
  await ps.join('b', LAYOUT, new Float32Array(2));
  t.is(await ps.batch('b', SHAPE), 1, 'the late joiner takes the batch a left with');
  // a pushPull that asks for it brings the next batch with its reply (no round trip more)
  const r = await ps.pushPull('b', 1, g(), 1, -1, 1, true);
  t.is(r.batch, 2);
  t.is(await ps.batch('b', SHAPE), 2, 'it is the batch b holds now');
  t.deepEqual(ps.stats().batches!.byTrainer, { a: 1, b: 1 });
  t.is(ps.stats().batches!.requeued, 1);
  await t.throwsAsync(ps.batch('b', { perEpoch: 4, epochs: 2 }), { message: /numbered for 3 x 2/ });
  await t.throwsAsync(ps.batch('b', { perEpoch: 0, epochs: 2 } as never), { message: /batch queue shape/ });
});

test('the server, sync: a round\'s batches are done when it steps; a trainer that leaves with its push in the round keeps its batch done', async (t) => {
  const ps = new ParameterServer({ name: 'ps0', shard: 0, shards: 1, trainers: 2, consistency: 'sync', optimizer: { kind: 'sgd', lr: 1 } });
  t.teardown(() => ps.close());
  await Promise.all([ps.join('a', LAYOUT, new Float32Array(2)), ps.join('b', LAYOUT, new Float32Array(2))]);
  t.is(await ps.batch('a', SHAPE), 0);
  t.is(await ps.batch('b', SHAPE), 1);
  const pa = ps.pushPull('a', 0, new Float32Array([2, 2]), 1, -1, 0);
  t.is(ps.stats().batches!.done, 0, 'not before the round steps');
  await Promise.all([pa, ps.pushPull('b', 0, new Float32Array([4, 4]), 1, -1, 1)]);
  t.is(ps.stats().batches!.done, 2);
  t.deepEqual([...ps.values], [-3, -3]);
  t.is(await ps.batch('a', SHAPE), 2);
  t.is(await ps.batch('b', SHAPE), 3);
  const pushed = ps.pushPull('a', 1, new Float32Array([1, 1]), 1, -1, 2);
  ps.leave('b'); // b goes before pushing: its batch 3 goes back, the round steps with a
  await pushed;
  const s = ps.stats().batches!;
  t.is(s.done, 3);
  t.is(s.requeued, 1);
  t.is(await ps.batch('a', SHAPE), 3);
});

test('elastic joins: answered when the expected trainers have joined, or at the last call after the minimum; later joins at once', async (t) => {
  const clock = new ManualClock();
  const ps = new ParameterServer({ name: 'ps0', shard: 0, shards: 1, trainers: 1, expectedTrainers: 3, lastCallMs: 5000, consistency: 'async', optimizer: { kind: 'sgd', lr: 1 }, clock });
  t.teardown(() => ps.close());
  let answered = 0;
  const a = ps.join('a', LAYOUT, new Float32Array(2)).then(() => { answered++; });
  const b = ps.join('b', LAYOUT, new Float32Array(2)).then(() => { answered++; });
  clock.advance(4999);
  await new Promise((r) => setImmediate(r));
  t.is(answered, 0, 'the minimum joined, the last call is still on');
  clock.advance(1);
  await Promise.all([a, b]);
  t.is(answered, 2);
  await ps.join('c', LAYOUT, new Float32Array(2));
  t.deepEqual(ps.stats().live, ['a', 'b', 'c']);
  const all = new ParameterServer({ name: 'ps1', shard: 0, shards: 1, trainers: 1, expectedTrainers: 2, lastCallMs: 60_000, consistency: 'async', optimizer: { kind: 'sgd', lr: 1 }, clock });
  t.teardown(() => all.close());
  await Promise.all([all.join('a', LAYOUT, new Float32Array(2)), all.join('b', LAYOUT, new Float32Array(2))]);
  t.pass('every expected trainer joined: answered without the last call');
  t.throws(() => new ParameterServer({ name: 'ps2', shard: 0, shards: 1, trainers: 2, expectedTrainers: 1, consistency: 'async', optimizer: { kind: 'sgd', lr: 1 } }), { message: /expectedTrainers.*expected an integer >= trainers \(2\)/ });
});
