// Rejoin: a process restarted in place of a worker that died takes the dead one's name and rank at
// a new address; the master answers peers' lookups as soon as the address changes.
import test from 'ava';
import { Agent, init, RpcError, Status } from '../../src/rpc/index.js';
import { startWorld, stopWorld, WORLD_TIMEOUT_MS as LONG } from './world.js';

test('a worker that died rejoins at a new address; a peer waiting for it calls the new process', async (t) => {
  const world = await startWorld(3, { heartbeatMs: 0 });
  const [w0, w1, w2] = world as [Agent, Agent, Agent];
  let replacement: Agent | undefined;
  try {
    w2.register('who', () => 'first');
    t.is(await w1.call('w2', 'who'), 'first');
    const oldAddress = w2.address;
    await w2.shutdown({ graceful: false });
    // the old process is gone: a call to it fails, and nothing is retried behind the caller's back
    const failed = await w1.call('w2', 'who').catch((e: unknown) => e);
    t.true(failed instanceof RpcError);
    t.is((failed as RpcError).code, Status.UNAVAILABLE);
    // the lookup is asked before the replacement exists: the master holds it until the rejoin
    const waiting = w1.awaitRejoin('w2', LONG);
    const fromMaster = w0.awaitRejoin('w2', LONG);
    replacement = await Agent.start({ name: 'w2', rank: 2, worldSize: 3, master: w0.address, rejoin: true, heartbeatMs: 0, timeoutMs: LONG });
    replacement.register('who', () => 'second');
    await replacement.rendezvous();
    t.true(replacement.rejoined);
    t.deepEqual(replacement.workers().map((w) => w.name), ['w0', 'w1', 'w2']);
    t.true(await waiting);
    t.true(await fromMaster);
    t.not(w1.workerInfo('w2').address, oldAddress);
    t.is(w1.workerInfo('w2').address, replacement.address);
    t.is(await w1.call('w2', 'who'), 'second');
    t.is(await w0.call('w2', 'who'), 'second');
    t.is(await replacement.call('w1', 'who').catch((e: RpcError) => e.code), Status.NOT_FOUND, 'the replacement calls the others by their known addresses');
    // asked again with nothing changed and no wait: false at once
    t.false(await w1.awaitRejoin('w2', 0));
    await Promise.all([w0.shutdown(), w1.shutdown(), replacement.shutdown()]);
  } finally {
    await Promise.all([w0, w1, w2, ...(replacement ? [replacement] : [])].map((a) => a.shutdown({ graceful: false }).catch(() => {})));
  }
});

test('a rejoin must name a member with its own rank; without rejoin the complete world refuses the name', async (t) => {
  const world = await startWorld(2, { heartbeatMs: 0 });
  try {
    const master = world[0]!.address;
    const stranger = await init({ name: 'w9', rank: 1, worldSize: 2, master, rejoin: true, heartbeatMs: 0, timeoutMs: LONG }).catch((e: unknown) => e);
    t.true(stranger instanceof RpcError);
    t.is((stranger as RpcError).code, Status.FAILED_PRECONDITION);
    t.regex((stranger as Error).message, /rejoin of "w9": no worker of that name is in the world \(w0, w1\)/);
    const otherRank = await init({ name: 'w1', rank: 0, isMaster: false, worldSize: 2, master, rejoin: true, heartbeatMs: 0, timeoutMs: LONG }).catch((e: unknown) => e);
    t.regex((otherRank as Error).message, /rejoin of "w1" as rank 0: it is rank 1 of the world/);
    const plain = await init({ name: 'w1', rank: 1, worldSize: 2, master, heartbeatMs: 0, timeoutMs: LONG }).catch((e: unknown) => e);
    t.is((plain as RpcError).code, Status.ALREADY_EXISTS);
    // the refusals changed nothing
    t.is(world[0]!.workerInfo('w1').address, world[1]!.address);
    t.false(await world[0]!.awaitRejoin('w1', 0));
  } finally {
    await stopWorld(world);
  }
});

test('a rejoin needs the world auth token like every other call', async (t) => {
  const world = await startWorld(2, { heartbeatMs: 0, authToken: 'secret-1' });
  try {
    const bad = await init({ name: 'w1', rank: 1, worldSize: 2, master: world[0]!.address, rejoin: true, heartbeatMs: 0, authToken: 'wrong', timeoutMs: LONG }).catch((e: unknown) => e);
    t.true(bad instanceof RpcError);
    t.is((bad as RpcError).code, Status.UNAUTHENTICATED);
    t.is(world[0]!.workerInfo('w1').address, world[1]!.address);
  } finally {
    await stopWorld(world);
  }
});
