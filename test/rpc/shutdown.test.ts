// Agent shutdown (src/rpc/agent.ts): the graceful barrier waits for every worker's calls and RRef
// traffic; a non-graceful stop fails what is in flight at once; a barrier with a worker missing
// fails at its deadline. Handlers run until the test releases them, so "in flight" is a fact
// the test establishes, not a bet on how long a sleep lasts.
import test from 'ava';
import { RpcError, Status } from '../../src/rpc/index.js';
import { startWorld } from './world.js';

/** A promise and the function that resolves it. */
function signal(): { fired: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const fired = new Promise<void>((r) => { fire = r; });
  return { fired, fire };
}

test('graceful shutdown waits for outstanding calls on every worker, nested ones included', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world;
  const slowRunning = [signal(), signal()]; // the 1st and 2nd 'slow' handler to start on w2
  let slowStarted = 0;
  const slowGate = signal();
  const relayRunning = signal();
  const relayGate = signal();
  w2!.register('slow', async (x: number) => { slowRunning[slowStarted++]?.fire(); await slowGate.fired; return x * 2; });
  w1!.register('relay', async (x: number) => { relayRunning.fire(); await relayGate.fired; return (await w1!.call<number>('w2', 'slow', [x])) + 1; });
  const inFlight = Promise.all([w0!.call('w1', 'relay', [10]), w0!.call('w2', 'slow', [1])]);
  // every worker has work in flight: w0 two calls out, w1 a relay running, w2 a slow one running
  await Promise.all([relayRunning.fired, slowRunning[0]!.fired]);
  // everybody asks to stop now; the calls must still complete
  let stopped = 0;
  const stops = world.map((a) => a.shutdown({ graceful: true }).finally(() => { stopped++; }));
  // the relay makes its nested call only now, after w1 and w2 were asked to stop
  relayGate.fire();
  await slowRunning[1]!.fired;
  t.is(stopped, 0, 'no worker stopped while a nested call was on its way');
  slowGate.fire();
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
  const running = signal();
  w1!.register('never', () => { running.fire(); return new Promise(() => {}); });
  // the call's deadline is far past the test's timeout: only the shutdown can end it
  const p = w0!.call('w1', 'never', [], { timeoutMs: 10 * 60_000 });
  await running.fired; // the call is in flight: its handler runs on w1
  // "at once": it resolves although w1 never gets idle nor reaches a barrier, and the barrier
  // deadline it would wait for is far past the test's timeout
  await t.notThrowsAsync(w0!.shutdown({ graceful: false, timeoutMs: 10 * 60_000 }));
  const e = await t.throwsAsync(p, { instanceOf: RpcError });
  t.is(e!.code, Status.CANCELLED);
  t.regex(e!.message, /agent "w0" was shut down/);
  await w1!.shutdown({ graceful: false });
});

test('graceful shutdown with a worker that never arrives fails at its deadline', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  const e = await t.throwsAsync(w0!.shutdown({ graceful: true, timeoutMs: 300 }), { instanceOf: RpcError });
  t.is(e!.code, Status.DEADLINE_EXCEEDED);
  t.regex(e!.message, /not every worker reached the barrier within 300 ms/);
  await w1!.shutdown({ graceful: false });
});
