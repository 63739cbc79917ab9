// The parameter server and the RPC layer's heartbeats: a trainer whose process is gone is dropped
// from the sync round deadAfterMs after its last message (5 s by default), not liveTimeoutMs
// (60 s) later, so the live trainers go on. Time is a ManualClock shared by every agent and the
// server: the test moves it, nothing waits on the wall clock.
import test from 'ava';
import { Agent, FaultInjector, ManualClock } from '../../src/rpc/index.js';
import { ParameterServer, PsClient, type ParameterSpec } from '../../src/server/index.js';

const LAYOUT: ParameterSpec[] = [{ name: 'w', size: 4 }];

test('a trainer that dies mid-round is dropped at deadAfterMs and the round steps with the live one', async (t) => {
  const clock = new ManualClock();
  const o = { worldSize: 3, timeoutMs: 20_000, clock, heartbeatMs: 1000, deadAfterMs: 5000 };
  const ps = await Agent.start({ name: 'ps0', rank: 0, master: '127.0.0.1:0', ...o });
  const server = new ParameterServer({ name: 'ps0', shard: 0, shards: 1, trainers: 2, consistency: 'sync', optimizer: { kind: 'sgd', lr: 1 }, clock }).register(ps);
  const [a, b] = await Promise.all([
    Agent.start({ name: 'trainer1', rank: 1, master: ps.address, ...o }),
    Agent.start({ name: 'trainer2', rank: 2, master: ps.address, ...o }),
  ]);
  const faults = new FaultInjector();
  ps.faults = faults;
  await Promise.all([ps.rendezvous(), a!.rendezvous(), b!.rendezvous()]);
  t.teardown(async () => {
    await server.close();
    await Promise.all([ps, a!, b!].map((x) => x.shutdown({ graceful: false })));
  });
  const clients = [a!, b!].map((agent) => new PsClient(agent, ['ps0'], LAYOUT, new Float32Array(4), new Float32Array(4)));
  await Promise.all(clients.map((c) => c.join()));
  // round 0 with both
  clients.forEach((c) => c.grads.fill(1));
  await Promise.all(clients.map((c) => c.pushPull()));
  t.deepEqual([...clients[0]!.params], [-1, -1, -1, -1]);
  // trainer2's process dies; trainer1 pushes round 1, which waits for trainer2
  const lost = new Promise<string>((resolve) => ps.onPeerLost(resolve));
  await b!.shutdown({ graceful: false });
  clients[0]!.grads.fill(2);
  const pushed = clients[0]!.pushPull();
  // each second of manual time waits for trainer1's ping to reach ps0 (trainer1 stays alive)
  const fromLive = faults.tap('trainer1');
  for (let s = 1; s <= 4; s++) {
    const ping = fromLive.next();
    clock.advance(1000);
    await ping;
  }
  t.deepEqual(server.stats().dropped, [], 'not dropped before deadAfterMs');
  const ping = fromLive.next();
  clock.advance(1000);
  await ping;
  t.is(await lost, 'trainer2');
  await pushed;
  t.deepEqual(server.stats().dropped, ['trainer2']);
  t.is(server.version, 2);
  t.deepEqual([...clients[0]!.params], [-3, -3, -3, -3], 'round 1 stepped with trainer1\'s gradient alone');
});
