import test from 'ava';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FaultInjector, RpcError, RRef, Status, type Agent } from '../../src/rpc/index.js';
import { RREF_FN } from '../../src/rpc/rref.js';
import { startWorld, stopWorld } from './world.js';

class Counter {
  secret = 'field, not a method';
  constructor(public n: number) {}
  inc(by = 1) { this.n += by; return this.n; }
  get value() { return this.n; }
  async later() { return this.n * 10; }
}

// No test waits on the wall clock for the owner to free values: `release()` resolves once the owner
// has processed the delete (and a fork whose children are pending sends it only after they are
// accepted), so once every release a test made has resolved, the owner's count is final and is
// read at once. A fork dropped by the garbage collector is awaited through its ForkState's `done`
// (the same promise release() returns), which the test keeps without keeping the RRef alive.

function setup(agents: Agent[]) {
  const [, w1, w2] = agents;
  let made = 0;
  // slowValue computes nothing until the test opens the gate, so "remote() returns before the
  // value exists" is an ordering the test controls, not a 50 ms head start.
  let openSlow!: () => void;
  const slowGate = new Promise<void>((r) => { openSlow = r; });
  for (const a of agents) {
    a.register('counter', (n: number) => { made++; return new Counter(n); });
    a.register('slowValue', async (v: unknown) => { await slowGate; return v; });
    a.register('fail', () => { throw new Error('creation failed'); });
  }
  // w2 keeps refs it is given, and can read or release them
  const kept: RRef<Counter>[] = [];
  w2!.register('keep', (ref: RRef<Counter>) => { kept.push(ref); return ref.ownerName; });
  w2!.register('readKept', async () => Promise.all(kept.map((r) => r.rpcSync().inc(0))));
  w2!.register('releaseKept', async () => { await Promise.all(kept.splice(0).map((r) => r.release())); return true; });
  // handlers release the refs they do not keep (otherwise only the garbage collector would)
  w2!.register('passOn', async (ref: RRef<Counter>) => {
    const n = await w2!.call('w1', 'readRef', [ref]);
    await ref.release();
    return n;
  });
  w1!.register('readRef', async (ref: RRef<Counter>) => {
    const c = await ref.toHere();
    await ref.release();
    return c.n;
  });
  return { made: () => made, openSlow };
}

test('remote() returns at once; toHere, owner, isOwner, localValue', async (t) => {
  const world = await startWorld(3);
  const [w0, w1] = world;
  const { openSlow } = setup(world);
  try {
    const ref = w0!.remote<number>('w1', 'slowValue', [41]);
    t.true(ref instanceof RRef);
    t.is(ref.owner().name, 'w1');
    t.false(ref.isOwner());
    openSlow(); // only now can the value exist: everything above ran while remote() had no value
    t.is(await ref.toHere(), 41);
    const e = t.throws(() => ref.localValue(), { instanceOf: RpcError });
    t.is(e!.code, Status.FAILED_PRECONDITION);
    const own = w1!.remote<number>('w1', 'slowValue', [7]);
    t.true(own.isOwner());
    t.is(await own.toHere(), 7);
    t.is(own.localValue(), 7);
    const local = w0!.rref({ a: 1 });
    t.deepEqual(local.localValue(), { a: 1 });
    const bad = w0!.remote('w1', 'fail');
    await t.throwsAsync(bad.toHere(), { instanceOf: RpcError, message: /creation failed/ });
    const missing = w0!.remote('w1', 'noSuchFunction');
    await t.throwsAsync(missing.toHere(), { instanceOf: RpcError, message: /"noSuchFunction" is not registered/ });
    await Promise.all([ref.release(), own.release(), local.release(), bad.release(), missing.release()]);
    t.is(w1!.stats().ownedRRefs, 0);
    await t.throwsAsync(ref.toHere(), { message: /was released/ });
  } finally {
    await stopWorld(world);
  }
});

test('method proxies run own methods on the owner, and nothing else', async (t) => {
  const world = await startWorld(3);
  const [w0, w1] = world;
  setup(world);
  try {
    const ref = w0!.remote<Counter>('w1', 'counter', [5]);
    t.is(await ref.rpcSync().inc(2), 7);
    t.is(await ref.rpcAsync().inc(), 8);
    t.is(await ref.rpcSync().later(), 80);
    const sub = ref.remote().inc(10);
    t.true(sub instanceof RRef);
    t.is(await sub.toHere(), 18);
    for (const m of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'value', 'secret', '__defineGetter__']) {
      const e = await t.throwsAsync((ref.rpcSync() as unknown as Record<string, () => Promise<unknown>>)[m]!(), { instanceOf: RpcError }, m);
      t.is(e!.code, Status.NOT_FOUND, m);
    }
    const onOwner = w1!.remote<Counter>('w1', 'counter', [1]);
    t.is(await onOwner.rpcSync().inc(1), 2);
    t.is(onOwner.localValue().n, 2);
    await Promise.all([ref.release(), sub.release(), onOwner.release()]);
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('forks passed through a third worker keep the value alive until the last release', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world;
  setup(world);
  try {
    const ref = w0!.remote<Counter>('w1', 'counter', [100]);
    t.is(await w0!.call('w2', 'keep', [ref]), 'w1');
    // the user's fork goes away (release() resolves once the owner has processed its delete); w2's
    // fork keeps the value, still after a round trip through w2 to the owner, right before w2 lets go
    await ref.release();
    t.is(w1!.stats().ownedRRefs, 1);
    t.deepEqual(await w0!.call('w2', 'readKept'), [100]);
    t.is(w1!.stats().ownedRRefs, 1);
    await w0!.call('w2', 'releaseKept');
    t.is(w1!.stats().ownedRRefs, 0);

    // owner hands its own ref to a user, user hands it back to the owner
    const own = w1!.remote<Counter>('w1', 'counter', [3]);
    t.is(await w1!.call('w2', 'passOn', [own]), 3);
    t.is(await w1!.call('w2', 'keep', [own]), 'w1');
    await own.release();
    t.is(w1!.stats().ownedRRefs, 1);
    await w1!.call('w2', 'releaseKept');
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('a fork sent before its parent is confirmed, and the parent released at once', async (t) => {
  const world = await startWorld(3);
  const [w0, w1] = world;
  setup(world);
  try {
    // each parent's delete goes out only once w2 has accepted its child (possibly after w2's own
    // deletes), so the test awaits the parents' releases too before reading the owner's count
    const parents: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      const ref = w0!.remote<Counter>('w1', 'counter', [i]);
      const kept = w0!.call('w2', 'keep', [ref]);
      parents.push(ref.release());
      await kept;
    }
    t.deepEqual(await w0!.call('w2', 'readKept'), Array.from({ length: 50 }, (_, i) => i));
    await w0!.call('w2', 'releaseKept');
    await Promise.all(parents);
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('a parent\'s delete waits until the owner has registered its child fork (the child\'s fork message held)', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world;
  setup(world);
  w1!.register('ping', () => null);
  const faults = new FaultInjector();
  w2!.faults = faults;
  try {
    const held = faults.hold({ fn: RREF_FN.fork, to: 'w1' });
    const ref = w0!.remote<Counter>('w1', 'counter', [7]);
    t.is(await w0!.call('w2', 'keep', [ref]), 'w1');
    await held.arrived(); // w2 holds a fork the owner does not know of yet
    let released = false;
    const release = ref.release().then(() => { released = true; });
    // every message the release could send without waiting is on its way after one turn of the
    // event loop; the ping behind it on the same stream is answered after the owner handled it
    await new Promise((r) => setImmediate(r));
    await w0!.call('w1', 'ping');
    t.false(released, 'the parent\'s delete waits for its child to be accepted');
    t.is(w1!.stats().ownedRRefs, 1, 'the owner still holds the value');
    held.release();
    await release;
    t.deepEqual(await w0!.call('w2', 'readKept'), [7], 'the child reads the value after its parent let go');
    await w0!.call('w2', 'releaseKept');
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('an RRef passed back to its owner right after remote() resolves there, and is freed after release', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  w1!.register('box', (i: number) => ({ i }));
  w1!.register('unbox', async (ref: RRef<{ i: number }>) => {
    const v = await ref.toHere();
    await ref.release();
    return v.i;
  });
  try {
    for (let i = 0; i < 20; i++) {
      const ref = w0!.remote<{ i: number }>('w1', 'box', [i]);
      // Sent in the same tick as remote(): this call may reach the owner before the creation.
      t.is(await w0!.call('w1', 'unbox', [ref]), i);
      await ref.release();
    }
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('no value is left on the owner after 10,000 released remote() calls', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world;
  w1!.register('box', (i: number) => ({ i }));
  try {
    const refs: RRef<{ i: number }>[] = [];
    for (let i = 0; i < 10_000; i++) refs.push(w0!.remote('w1', 'box', [i]));
    t.deepEqual(await refs[9999]!.toHere(), { i: 9999 });
    t.is(w1!.stats().ownedRRefs, 10_000);
    await Promise.all(refs.map((r) => r.release()));
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});

test('an RRef collected by the garbage collector is deleted on the owner', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const world = await startWorld(2);
  const [w0, w1] = world;
  w1!.register('box', (i: number) => ({ i }));
  try {
    // Keep each fork's bookkeeping, never its handle: the registry holds the state too, and the
    // state does not point at its RRef, so the handles stay collectable.
    const states = await (async () => {
      const refs = Array.from({ length: 100 }, (_, i) => w0!.remote('w1', 'box', [i]));
      await Promise.all(refs.map((r) => r.confirmed()));
      return refs.map((r) => r.state);
    })();
    t.is(w1!.stats().ownedRRefs, 100);
    // Rounds of gc, each followed by a turn of the event loop for the finalizers to run, until every
    // collected fork has sent its delete; bounded by a count (not a time) far above the two rounds
    // it takes, so handles that are never collected fail the assertion below instead of hanging.
    for (let round = 0; round < 100 && !states.every((s) => s.deleted); round++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    t.true(states.every((s) => s.released && s.deleted), 'every handle was collected and its fork deleted');
    await Promise.all(states.map((s) => s.done)); // each delete answered by the owner
    t.is(w1!.stats().ownedRRefs, 0);
  } finally {
    await stopWorld(world);
  }
});
