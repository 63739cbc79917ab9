// The parameter server and the RPC layer's heartbeats: a trainer whose process is gone is dropped
// from the sync round deadAfterMs after its last message (5 s by default), not liveTimeoutMs
// (60 s) later, so the live trainers go on. Time is a ManualClock shared by every agent and the
// server: the test moves it, nothing waits on the wall clock.
import test from 'ava';
import { Agent, FaultInjector, ManualClock } from '../../src/rpc/index.js';
import { ParameterServer, PsClient, type ParameterSpec } from '../../src/server/index.js';

const LAYOUT: ParameterSpec[] = [{ name: 'w', size: 4 }];

test('a trainer that dies mid-round is dropped at deadAfterMs and the round steps with the live one', async (t) => {
  const { server, clients, seconds, killSecondThenPush } = await restartWorld(t, 0);
  // round 0 with both
  clients.forEach((c) => c.grads.fill(1));
  await Promise.all(clients.map((c) => c.pushPull()));
  t.deepEqual([...clients[0]!.params], [-1, -1, -1, -1]);
  // trainer2's process dies; trainer1 pushes round 1, which waits for trainer2
  const { lost, pushed } = await killSecondThenPush();
  // each second of manual time waits for trainer1's ping to reach ps0 (trainer1 stays alive)
  await seconds(4);
  t.deepEqual(server.stats().dropped, [], 'not dropped before deadAfterMs');
  await seconds(1);
  t.is(await lost, 'trainer2');
  await pushed;
  t.deepEqual(server.stats().dropped, ['trainer2']);
  t.is(server.version, 2);
  t.deepEqual([...clients[0]!.params], [-3, -3, -3, -3], 'round 1 stepped with trainer1\'s gradient alone');
});

/** A world of ps0 and two trainers on one ManualClock, the server waiting `restartTimeoutMs` for a lost trainer. */
async function restartWorld(t: import('ava').ExecutionContext, restartTimeoutMs: number) {
  const clock = new ManualClock();
  const o = { worldSize: 3, timeoutMs: 20_000, clock, heartbeatMs: 1000, deadAfterMs: 5000 };
  const lines: string[] = [];
  const ps = await Agent.start({ name: 'ps0', rank: 0, master: '127.0.0.1:0', ...o });
  const server = new ParameterServer({ name: 'ps0', shard: 0, shards: 1, trainers: 2, consistency: 'sync', optimizer: { kind: 'sgd', lr: 1 }, clock, restartTimeoutMs, log: (l) => lines.push(l) }).register(ps);
  const [a, b] = await Promise.all([
    Agent.start({ name: 'trainer1', rank: 1, master: ps.address, ...o }),
    Agent.start({ name: 'trainer2', rank: 2, master: ps.address, ...o }),
  ]);
  const faults = new FaultInjector();
  ps.faults = faults;
  await Promise.all([ps.rendezvous(), a!.rendezvous(), b!.rendezvous()]);
  const agents = [ps, a!, b!];
  t.teardown(async () => {
    await server.close();
    await Promise.all(agents.map((x) => x.shutdown({ graceful: false })));
  });
  const clients = [a!, b!].map((agent) => new PsClient(agent, ['ps0'], LAYOUT, new Float32Array(4), new Float32Array(4)));
  await Promise.all(clients.map((c) => c.join()));
  const fromLive = faults.tap('trainer1');
  /** Moves the clock `s` seconds, a second at a time, each after trainer1's ping reached ps0. */
  const seconds = async (s: number) => {
    for (let i = 0; i < s; i++) {
      const ping = fromLive.next();
      clock.advance(1000);
      await ping;
    }
  };
  const restart = async () => {
    const agent = await Agent.start({ name: 'trainer2', rank: 2, master: ps.address, rejoin: true, ...o });
    agents.push(agent);
    await agent.rendezvous();
    return new PsClient(agent, ['ps0'], LAYOUT, new Float32Array(4), new Float32Array(4));
  };
  /** trainer2's process dies, then trainer1 pushes a gradient of 2s (its round waits for trainer2); `lost`: ps0's verdict on trainer2. */
  const killSecondThenPush = async () => {
    const lost = new Promise<string>((resolve) => ps.onPeerLost(resolve));
    await b!.shutdown({ graceful: false });
    clients[0]!.grads.fill(2);
    return { lost, pushed: clients[0]!.pushPull() };
  };
  return { ps, server, clients, b: b!, lines, seconds, restart, killSecondThenPush };
}

test('restartTimeoutMs: a lost trainer is waited for; its restarted process rejoins and the round steps with both', async (t) => {
  const { server, clients, lines, seconds, restart, killSecondThenPush } = await restartWorld(t, 10_000);
  const { lost, pushed } = await killSecondThenPush();
  await seconds(5);
  t.is(await lost, 'trainer2');
  t.deepEqual(server.stats().dropped, [], 'lost, but waited for');
  t.regex(lines.join('\n'), /trainer "trainer2" is lost; waiting up to 10\.0 s for it to rejoin/);
  await seconds(3);
  const again = await restart();
  await again.join();
  t.is(again.version, 0, 'the restarted process goes on at round 0, which its predecessor never pushed');
  again.grads.fill(4);
  await Promise.all([pushed, again.pushPull()]);
  t.deepEqual(server.stats().dropped, []);
  t.is(server.version, 1);
  t.deepEqual([...clients[0]!.params], [-3, -3, -3, -3], 'round 0 averaged both trainers\' gradients');
});

test('restartTimeoutMs: a restarted trainer whose predecessor had pushed in the open round is answered after that round steps', async (t) => {
  const { server, clients, b, restart } = await restartWorld(t, 10_000);
  clients[1]!.grads.fill(4);
  // trainer2's push waits for trainer1's; then its process dies
  const orphan = clients[1]!.pushPull().catch(() => 'lost');
  // the process dies once its push is in the server's round (the server's own count, no clock)
  while (server.stats().pushes < 1) await new Promise((r) => setImmediate(r));
  await b.shutdown({ graceful: false });
  t.is(await orphan, 'lost');
  const again = await restart();
  const joined = again.join();
  clients[0]!.grads.fill(2);
  await clients[0]!.pushPull();
  await joined;
  t.is(again.version, 1, 'its next step is round 1: round 0 has its predecessor\'s gradient');
  t.deepEqual([...again.params], [-3, -3, -3, -3]);
  t.is(server.version, 1);
  // round 1 needs both again: the restarted process is a full member
  again.grads.fill(1);
  clients[0]!.grads.fill(1);
  await Promise.all([again.pushPull(), clients[0]!.pushPull()]);
  t.is(server.version, 2);
  t.deepEqual([...clients[0]!.params], [-4, -4, -4, -4]);
});

test('restartTimeoutMs: a lost trainer that does not rejoin in time is dropped then, and the round steps without it', async (t) => {
  const { server, clients, lines, seconds, killSecondThenPush } = await restartWorld(t, 10_000);
  const { lost, pushed } = await killSecondThenPush();
  await seconds(5);
  t.is(await lost, 'trainer2');
  await seconds(9);
  t.deepEqual(server.stats().dropped, [], 'still waited for 9 s after the loss');
  await seconds(1);
  await pushed;
  t.deepEqual(server.stats().dropped, ['trainer2']);
  t.regex(lines.join('\n'), /trainer "trainer2" did not rejoin within 10\.0 s; rounds go on without it/);
  t.deepEqual([...clients[0]!.params], [-2, -2, -2, -2]);
});

test('ps.skip (a restarted trainer whose predecessor died between its pushes): the round steps without its gradient; refused twice in a round and outside sync', async (t) => {
  const ps = new ParameterServer({ name: 'ps1', shard: 0, shards: 1, trainers: 2, consistency: 'sync', optimizer: { kind: 'sgd', lr: 1 } });
  t.teardown(() => ps.close());
  await Promise.all([ps.join('a', LAYOUT, new Float32Array(4)), ps.join('b', LAYOUT, new Float32Array(4))]);
  const pushed = ps.pushPull('a', 0, new Float32Array([2, 2, 2, 2]));
  const skipped = await ps.skip('b');
  t.is(skipped.version, 1, 'answered once the round stepped');
  t.deepEqual([...skipped.values], [-2, -2, -2, -2], 'with a\'s gradient alone');
  t.is((await pushed).version, 1);
  // round 1: b skips first (its answer waits for a's push); a second skip in the same round is refused
  const first = ps.skip('b');
  await t.throwsAsync(ps.skip('b'), { message: /round 1/ });
  await ps.pushPull('a', 1, new Float32Array([1, 1, 1, 1]));
  t.is((await first).version, 2);
  t.deepEqual([...ps.values], [-3, -3, -3, -3]);
  const async = new ParameterServer({ name: 'ps2', shard: 0, shards: 1, trainers: 1, consistency: 'async', optimizer: { kind: 'sgd', lr: 1 } });
  t.teardown(() => async.close());
  await async.join('a', LAYOUT, new Float32Array(4));
  await t.throwsAsync(async.skip('a'), { message: /ps\.skip is for sync rounds \(this server is async\)/ });
});
