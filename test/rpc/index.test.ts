import test from 'ava';
import * as rpc from '../../src/rpc/index.js';

test('module-level functions act on the default agent', async (t) => {
  t.throws(() => rpc.register('x', () => 1), { instanceOf: rpc.RpcError, message: /not started/ });
  const agent = await rpc.initDefault({ name: 'solo', rank: 0, worldSize: 1, master: '127.0.0.1:0' });
  try {
    await t.throwsAsync(rpc.initDefault({ name: 'again', rank: 0, worldSize: 1, master: '127.0.0.1:0' }), { message: /already running/ });
    rpc.register('twice', (x: number) => x * 2);
    t.is(await rpc.call('solo', 'twice', [21]), 42);
    t.is(await rpc.callAsync('solo', 'twice', [2]), 4);
    t.is(rpc.workerInfo().name, 'solo');
    t.deepEqual(rpc.workers().map((w) => w.name), ['solo']);
    const ref = rpc.remote<number>('solo', 'twice', [5]);
    t.is(await ref.toHere(), 10);
    await ref.release();
    t.is(agent.stats().ownedRRefs, 0);
  } finally {
    await rpc.shutdown();
  }
  t.throws(() => rpc.workers(), { message: /not started/ });
});
