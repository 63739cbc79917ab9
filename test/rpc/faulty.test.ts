// The fault injector (src/rpc/faulty.ts): held messages leave when released and in order; failed
// ones reject as a lost connection would; rules match by function and destination.
import test from 'ava';
import { FaultInjector, RpcError, Status } from '../../src/rpc/index.js';
import { startWorld, stopWorld } from './world.js';

test('held calls reach the callee only after release, in the order they were held', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world;
  const seen: string[] = [];
  for (const w of [w1!, w2!]) w.register('note', (x: string) => { seen.push(`${w.name}:${x}`); return x; });
  const faults = new FaultInjector();
  w0!.faults = faults;
  try {
    const held = faults.hold({ fn: 'note', to: 'w1' });
    const a = w0!.call('w1', 'note', ['a']);
    const b = w0!.call('w1', 'note', ['b']);
    await held.arrived(2);
    t.is(await w0!.call('w2', 'note', ['other worker']), 'other worker', 'another destination is not held');
    t.deepEqual(seen, ['w2:other worker'], 'nothing reached w1 while held');
    held.release();
    t.deepEqual(await Promise.all([a, b]), ['a', 'b']);
    t.deepEqual(seen, ['w2:other worker', 'w1:a', 'w1:b']);
    t.is(await w0!.call('w1', 'note', ['c']), 'c', 'a released rule holds nothing more');
    t.is(held.count, 2);
  } finally {
    await stopWorld(world);
  }
});

test('failed calls reject with UNAVAILABLE naming the call, and only as many as asked', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  let calls = 0;
  w1!.register('count', () => ++calls);
  const faults = new FaultInjector();
  w0!.faults = faults;
  try {
    faults.fail({ fn: /^cou/ }, 1);
    const e = await t.throwsAsync<RpcError>(w0!.call('w1', 'count'));
    t.is(e!.code, Status.UNAVAILABLE);
    t.regex(e!.message, /call "count" from "w0" to "w1" dropped by the fault injector/);
    t.is(calls, 0, 'the callee never saw it');
    t.is(await w0!.call('w1', 'count'), 1, 'the next call goes through');
  } finally {
    await stopWorld(world);
  }
});
