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

test('an elastic world completes at minWorldSize; a late joiner takes a free rank, peers find it, and a member that leaves is not waited for at shutdown', async (t) => {
  const o = { worldSize: 4, minWorldSize: 2, heartbeatMs: 0, timeoutMs: LONG };
  const w0 = await Agent.start({ name: 'w0', rank: 0, master: '127.0.0.1:0', ...o });
  const agents: Agent[] = [w0];
  try {
    const w1 = await Agent.start({ name: 'w1', rank: 1, master: w0.address, ...o });
    agents.push(w1);
    await Promise.all([w0.rendezvous(), w1.rendezvous()]);
    t.deepEqual(w1.workers().map((w) => w.name), ['w0', 'w1'], 'complete with 2 of 4');
    // rank 3 joins late (rank 2 stays free) and is answered at once with the world as it is now
    const w3 = await Agent.start({ name: 'w3', rank: 3, master: w0.address, ...o });
    agents.push(w3);
    w3.register('hello', (from: string) => `hello ${from}`);
    await w3.rendezvous();
    t.deepEqual(w3.workers().map((w) => `${w.name}@${w.rank}`), ['w0@0', 'w1@1', 'w3@3']);
    t.is(w0.workerInfo('w3').address, w3.address, 'the master knows it at once');
    t.throws(() => w1.workerInfo('w3'), { message: /unknown worker "w3"/ }, 'the others until they ask');
    const world = await w1.refreshWorld();
    t.deepEqual(world.workers.map((w) => w.name), ['w0', 'w1', 'w3']);
    t.deepEqual(world.departed, []);
    t.is(await w1.call('w3', 'hello', ['w1']), 'hello w1');
    t.is(w1.workerInfo(3).name, 'w3');
    // a taken rank or name is still refused
    const dup = await init({ name: 'w9', rank: 3, worldSize: 4, minWorldSize: 2, master: w0.address, heartbeatMs: 0, timeoutMs: LONG }).catch((e: unknown) => e);
    t.is((dup as RpcError).code, Status.ALREADY_EXISTS);
    // w1 leaves for good; the barrier of the others completes without it
    await w1.shutdown({ leave: true });
    t.deepEqual((await w3.refreshWorld()).departed, ['w1']);
    await Promise.all([w0.shutdown(), w3.shutdown()]);
  } finally {
    await Promise.all(agents.map((a) => a.shutdown({ graceful: false }).catch(() => {})));
  }
});

test('leaving is for members of an elastic world; minWorldSize is checked', async (t) => {
  await t.throwsAsync(Agent.start({ name: 'x', rank: 0, worldSize: 2, minWorldSize: 3, master: '127.0.0.1:0' }), { message: /minWorldSize=3: expected an integer in \[1, worldSize = 2\]/ });
  const world = await startWorld(2, { heartbeatMs: 0 });
  try {
    await t.throwsAsync(world[1]!.shutdown({ leave: true }), { message: /only a member of an elastic world/ });
    world[1]!.register('still', () => 'here');
    t.is(await world[0]!.call('w1', 'still'), 'here', 'the refusal left the agent running');
  } finally {
    await stopWorld(world, false);
  }
});

test('a process restarted before the world completed takes over its predecessor\'s pending join', async (t) => {
  const master = await Agent.start({ name: 'w0', rank: 0, worldSize: 3, master: '127.0.0.1:0', heartbeatMs: 0, timeoutMs: LONG });
  const agents: Agent[] = [master];
  try {
    const done = master.rendezvous();
    const first = await Agent.start({ name: 'w1', rank: 1, worldSize: 3, master: master.address, heartbeatMs: 0, timeoutMs: LONG });
    agents.push(first);
    const joined = new Promise<void>((resolve) => { (master as unknown as { host: { onJoin: (w: unknown, n: number) => void } }).host.onJoin = (_w, n) => { if (n === 2) resolve(); }; });
    const firstJoin = first.rendezvous().catch((e: unknown) => e);
    await joined;
    const again = await Agent.start({ name: 'w1', rank: 1, worldSize: 3, master: master.address, rejoin: true, heartbeatMs: 0, timeoutMs: LONG });
    agents.push(again);
    const againJoin = again.rendezvous();
    const superseded = await firstJoin;
    t.true(superseded instanceof RpcError);
    t.is((superseded as RpcError).code, Status.ABORTED);
    t.regex((superseded as Error).message, /the join of "w1" was taken over by a restarted process/);
    const w2 = await Agent.start({ name: 'w2', rank: 2, worldSize: 3, master: master.address, heartbeatMs: 0, timeoutMs: LONG });
    agents.push(w2);
    await Promise.all([done, againJoin, w2.rendezvous()]);
    t.is(master.workerInfo('w1').address, again.address);
    again.register('who', () => 'again');
    t.is(await w2.call('w1', 'who'), 'again');
  } finally {
    await Promise.all(agents.map((a) => a.shutdown({ graceful: false }).catch(() => {})));
  }
});
