import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, init, RpcError, Status } from '../../src/rpc/index.js';
import type { RendezvousHost } from '../../src/rpc/rendezvous.js';
import { startWorld, stopWorld, WORLD_TIMEOUT_MS as LONG } from './world.js';

const childScript = fileURLToPath(new URL('./child-worker.ts', import.meta.url));

function spawnWorker(opts: object): { child: ChildProcess; exited: Promise<number | null>; out: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out };
}

/** Resolves when `n` workers have joined at the master's rendezvous host (white-box hook). */
function joinedAtMaster(master: Agent, n: number): Promise<void> {
  const host = (master as unknown as { host: RendezvousHost }).host;
  return new Promise((resolve) => { host.onJoin = (_w, joined) => { if (joined >= n) resolve(); }; });
}

test('a world of 4 in one process: everyone learns everyone', async (t) => {
  const world = await startWorld(4);
  try {
    for (const a of world) {
      t.deepEqual(a.workers().map((w) => w.name), ['w0', 'w1', 'w2', 'w3']);
      t.deepEqual(a.workerInfo('w2'), world[2]!.workerInfo());
      t.is(a.workerInfo(3).name, 'w3');
      t.regex(a.workerInfo('w1').address, /^127\.0\.0\.1:\d+$/);
    }
    t.not(world[0]!.address.split(':')[1], '0', 'the master reports its actual port');
    t.throws(() => world[0]!.workerInfo('nobody'), { instanceOf: RpcError, message: /unknown worker "nobody"/ });
  } finally {
    await stopWorld(world);
  }
});

test('a world of 1 completes at once', async (t) => {
  const a = await init({ name: 'solo', rank: 0, worldSize: 1, master: '127.0.0.1:0' });
  a.register('id', (x: number) => x);
  t.is(await a.call('solo', 'id', [7]), 7);
  await a.shutdown();
});

test('duplicate names and ranks are refused with ALREADY_EXISTS', async (t) => {
  // deadlines far past the test's timeout: the refusals must come at once, not at a deadline
  const master = await Agent.start({ name: 'm', rank: 0, worldSize: 3, master: '127.0.0.1:0', timeoutMs: LONG });
  const done = master.rendezvous().catch((e) => e);
  const dupName = await init({ name: 'm', rank: 1, worldSize: 3, master: master.address, timeoutMs: LONG }).catch((e) => e);
  t.true(dupName instanceof RpcError);
  t.is(dupName.code, Status.ALREADY_EXISTS);
  t.regex(dupName.message, /duplicate worker name "m"/);
  const dupRank = await init({ name: 'x', rank: 0, isMaster: false, worldSize: 3, master: master.address, timeoutMs: LONG }).catch((e) => e);
  t.is(dupRank.code, Status.ALREADY_EXISTS);
  t.regex(dupRank.message, /duplicate worker rank 0/);
  const wrongSize = await init({ name: 'y', rank: 1, worldSize: 5, master: master.address, timeoutMs: LONG }).catch((e) => e);
  t.is(wrongSize.code, Status.INVALID_ARGUMENT);
  // the world still completes with the right workers
  const [a, b] = await Promise.all([
    init({ name: 'a', rank: 1, worldSize: 3, master: master.address, timeoutMs: LONG }),
    init({ name: 'b', rank: 2, worldSize: 3, master: master.address, timeoutMs: LONG }),
  ]);
  t.is(await done, master);
  await Promise.all([master.shutdown(), a.shutdown(), b.shutdown()]);
});

test('a world that never completes fails everyone with DEADLINE_EXCEEDED naming the missing ranks', async (t) => {
  const master = await Agent.start({ name: 'm', rank: 0, worldSize: 3, master: '127.0.0.1:0', timeoutMs: 500 });
  // 'a' joins before the master's 500 ms world deadline starts (it starts at master.rendezvous()),
  // so a slow start of 'a' cannot make it miss the deadline; its own deadline is far past the
  // test's timeout, so what fails it is the master's answer
  const aJoined = joinedAtMaster(master, 1);
  const p1 = init({ name: 'a', rank: 1, worldSize: 3, master: master.address, timeoutMs: LONG }).catch((e) => e);
  await aJoined;
  const pm = master.rendezvous().catch((e) => e);
  const [em, e1] = await Promise.all([pm, p1]);
  for (const e of [em, e1]) {
    t.true(e instanceof RpcError);
    t.is(e.code, Status.DEADLINE_EXCEEDED);
    t.regex(e.message, /world incomplete after 500 ms: 2 of 3 workers joined \(missing ranks: 2\)/);
  }
});

test('an unreachable master gives UNAVAILABLE within the deadline', async (t) => {
  // a port that was just free: bind one, read it, shut it
  const probe = await Agent.start({ name: 'p', rank: 0, worldSize: 1, master: '127.0.0.1:0' });
  const port = probe.address;
  await probe.shutdown({ graceful: false });
  // it gives up (rather than waiting forever) and says it was its own 400 ms deadline that passed
  const e = await init({ name: 'a', rank: 1, worldSize: 2, master: port, timeoutMs: 400 }).catch((x) => x);
  t.true(e instanceof RpcError);
  t.is(e.code, Status.UNAVAILABLE);
  t.regex(e.message, /master .* unreachable from "a" within 400 ms/);
});

test('bad options are refused before anything starts', async (t) => {
  await t.throwsAsync(init({ name: '', rank: 0, worldSize: 1, master: '127.0.0.1:0' }), { message: /invalid option name/ });
  await t.throwsAsync(init({ name: 'a', rank: 2, worldSize: 2, master: '127.0.0.1:0' }), { message: /invalid option rank=2/ });
  await t.throwsAsync(init({ name: 'a', rank: 0, worldSize: 1, master: 'nohost' }), { message: /invalid option master="nohost"/ });
});

test('rendezvous and calls across child processes', async (t) => {
  // deadlines far past the test's timeout: a child's start-up under load must not decide the test
  const master = await Agent.start({ name: 'parent', rank: 0, worldSize: 3, master: '127.0.0.1:0', timeoutMs: LONG });
  const kids = [1, 2].map((rank) => spawnWorker({ name: `kid${rank}`, rank, worldSize: 3, master: master.address, timeoutMs: LONG }));
  try {
    await master.rendezvous();
    t.deepEqual(master.workers().map((w) => w.name), ['parent', 'kid1', 'kid2']);
    const pids = await Promise.all([master.call('kid1', 'pid'), master.call('kid2', 'pid')]);
    t.deepEqual(pids, kids.map((k) => k.child.pid));
    t.is(await master.call('kid2', 'add', [40, 2]), 42);
    const data = Float32Array.from({ length: 3_000_000 }, (_, i) => i % 251);
    const back = await master.call<Float32Array>('kid1', 'echo', [data]);
    t.deepEqual(back, data);
    await master.shutdown();
    const codes = await Promise.all(kids.map((k) => k.exited));
    t.deepEqual(codes, [0, 0], kids.map((k) => k.out()).join('\n'));
  } finally {
    for (const k of kids) if (k.child.exitCode === null) k.child.kill('SIGKILL');
    await master.shutdown({ graceful: false }).catch(() => {});
  }
});

test('a dead child is reported as UNAVAILABLE and shutdown does not hang', async (t) => {
  // rendezvous deadlines far past the test's timeout: the child's start-up under load must not decide the test
  const master = await Agent.start({ name: 'parent', rank: 0, worldSize: 2, master: '127.0.0.1:0', timeoutMs: LONG });
  const kid = spawnWorker({ name: 'kid', rank: 1, worldSize: 2, master: master.address, timeoutMs: LONG, crash: true });
  try {
    await master.rendezvous();
    t.is(await kid.exited, 3);
    // the call's deadline is far past the test's timeout too: it fails because the child is gone
    const e = (await master.call('kid', 'add', [1, 2], { timeoutMs: LONG }).catch((x) => x)) as RpcError;
    t.true(e instanceof RpcError);
    t.is(e.code, Status.UNAVAILABLE, String(e));
    t.is(e.worker, 'kid');
    // the barrier's 1000 ms deadline only makes it fail (later under load, never sooner)
    const s = await master.shutdown({ graceful: true, timeoutMs: 1000 }).catch((x) => x);
    t.true(s instanceof RpcError, 'the barrier reports the missing worker');
    t.is(s.code, Status.DEADLINE_EXCEEDED);
    t.regex(s.message, /not every worker reached the barrier within 1000 ms/);
  } finally {
    if (kid.child.exitCode === null) kid.child.kill('SIGKILL');
    await master.shutdown({ graceful: false }).catch(() => {});
  }
});
