// ParameterServer over RPC: the ps.* functions, sync/async/ssp semantics, leaving and dead
// trainers, bad pushes, and the metrics endpoint.
import test from 'ava';
import { ManualClock, RpcError, Status, type Agent } from '../../src/rpc/index.js';
import { ParameterServer, PS_FUNCTIONS as PS, type PullReply, type PushReply } from '../../src/server/index.js';
import { startPsWorld, type ServerTemplate } from './ps-world.js';

const layout = [{ name: 'w', size: 6 }, { name: 'b', size: 3 }];
const init = () => Float32Array.from({ length: 9 }, (_, i) => i);
const sgd = { kind: 'sgd', lr: 0.5 } as const;
/** One turn of the event loop: every promise callback that is already due has run after it. */
const turn = () => new Promise((r) => setImmediate(r));
/** Waits, turn by turn and without a time limit of its own, until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await turn();
}

async function joined(nTrainers: number, template: ServerTemplate) {
  const w = await startPsWorld(1, nTrainers, template);
  const [a, b] = w.trainerAgents as [Agent, Agent];
  await Promise.all(w.trainerAgents.map((x) => x.call(w.serverAgents[0]!.name, PS.join, [x.name, layout, init()])));
  return { w, a, b, ps: w.servers[0]!, name: w.serverAgents[0]!.name };
}

const fill = (v: number) => new Float32Array(9).fill(v);

test('sync: a push waits for every live trainer, then one step with the averaged gradient', async (t) => {
  const { w, a, b, ps, name } = await joined(2, { consistency: 'sync', optimizer: sgd });
  try {
    let answered = false;
    // trainer0's push straight into the server, so it has certainly arrived before trainer1's
    const pa = ps.pushPull(a.name, 0, fill(1)).then((r) => { answered = true; return r; });
    await turn();
    t.false(answered, 'the first push waits for the second trainer');
    t.is(ps.version, 0);
    const rb = await b.call<PullReply>(name, PS.pushPull, [b.name, 0, fill(3)]);
    const ra = await pa;
    t.is(ra.version, 1);
    t.is(rb.version, 1);
    // p - lr * mean(1, 3) = p - 0.5 * 2
    t.deepEqual([...ra.values], [...init()].map((p) => p - 1));
    t.deepEqual([...rb.values], [...ra.values]);
  } finally {
    await w.stop();
  }
});

test('async: every push is a step at once', async (t) => {
  const { w, a, b, name } = await joined(2, { consistency: 'async', optimizer: sgd });
  try {
    const r1 = await a.call<PushReply>(name, PS.push, [a.name, 0, fill(2)]);
    const r2 = await a.call<PushReply>(name, PS.push, [a.name, 1, fill(2)]);
    t.deepEqual([r1.version, r2.version], [1, 2]);
    const pulled = await b.call<PullReply>(name, PS.pull, [b.name]);
    t.is(pulled.version, 2);
    t.deepEqual([...pulled.values], [...init()].map((p) => p - 2));
  } finally {
    await w.stop();
  }
});

for (const [consistency, staleness] of [['ssp', 1], ['ssp', 0], ['async', 1]] as const) {
  test(`${consistency}${consistency === 'ssp' ? ` staleness ${staleness}` : ''}: a fast trainer ${consistency === 'ssp' ? 'never runs more than the bound ahead of a slow one' : 'is not held back'}`, async (t) => {
    const { w, a, b, ps, name } = await joined(2, { consistency, staleness, optimizer: sgd });
    try {
      const steps = 8;
      const fastVersions: number[] = [];
      const fast = (async () => {
        for (let k = 0; k < steps; k++) {
          fastVersions.push((await a.call<PullReply>(name, PS.pushPull, [a.name, 0, fill(0.01)])).version);
        }
      })();
      // the slow trainer makes its (k+1)-th push only once the fast one's push that would take it
      // past the bound has reached the server (async: once it has finished), so the bound is always
      // reached
      const slow = (async () => {
        for (let k = 0; k < steps; k++) {
          const wanted = consistency === 'ssp' ? Math.min(steps, k + staleness + 2) : steps;
          // counted where it matters: pushes that have reached the server (k of them are the slow one's)
          await until(() => ps.stats().pushes - k >= wanted && (consistency !== 'async' || fastVersions.length === steps));
          await b.call(name, PS.pushPull, [b.name, 0, fill(0.01)]);
        }
      })();
      await Promise.all([fast, slow]);
      t.is(ps.version, 2 * steps);
      if (consistency === 'ssp') {
        // the fast trainer's k-th push (k from 1) waited until the slow one had pushed k-1-staleness times
        fastVersions.forEach((v, i) => t.true(v >= 2 * (i + 1) - 1 - staleness, `push ${i + 1} applied at version ${v}`));
        t.is(ps.stats().maxLead, staleness, 'the bound was reached and held');
      } else {
        t.is(ps.stats().maxLead, steps - 1, 'the fast trainer finished before the slow one started');
        t.deepEqual(fastVersions, Array.from({ length: steps }, (_, i) => i + 1));
      }
    } finally {
      await w.stop();
    }
  });
}

test('a trainer that leaves early does not leave a sync server waiting', async (t) => {
  const { w, a, b, ps, name } = await joined(2, { consistency: 'sync', optimizer: sgd });
  try {
    // the push is in the server's round before the leave is sent (a leave that overtook it would
    // make the round trivially complete, and the test would not check that the leave releases it)
    let answered = false;
    const pending = ps.pushPull(a.name, 0, fill(1)).then((r) => { answered = true; return r; });
    await turn();
    t.false(answered, 'the round waits for trainer1');
    await b.call(name, PS.leave, [b.name]);
    const r = await pending;
    t.is(r.version, 1, 'the round completed with the trainer that stayed');
    t.deepEqual([...r.values], [...init()].map((p) => p - 0.5));
    const r2 = await a.call<PullReply>(name, PS.pushPull, [a.name, 1, fill(1)]);
    t.is(r2.version, 2, 'later rounds need only the live trainer');
    t.deepEqual(ps.stats().live, [a.name]);
    const err = await t.throwsAsync<RpcError>(b.call(name, PS.push, [b.name, 1, fill(1)]));
    t.is(err.code, Status.FAILED_PRECONDITION);
    t.regex(err.message, /trainer "trainer1" has not joined.*or has left/);
    await a.call(name, PS.leave, [a.name]);
    await ps.done;
  } finally {
    await w.stop();
  }
});

test('a trainer that goes silent is dropped after liveTimeoutMs from its join, so sync rounds go on', async (t) => {
  const clock = new ManualClock();
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: sgd, liveTimeoutMs: 1000, clock });
  try {
    const [a, b] = w.trainerAgents as [Agent, Agent];
    const ps = w.servers[0]!;
    clock.advance(60_000); // a long start (rendezvous, data loading) is nobody's silence
    await Promise.all([a, b].map((x) => x.call('ps0', PS.join, [x.name, layout, init()])));
    await b.shutdown({ graceful: false }); // trainer1 dies without leaving
    clock.advance(500);
    let answered = false;
    const pending = a.call<PullReply>('ps0', PS.pushPull, [a.name, 0, fill(1)]).then((r) => { answered = true; return r; });
    await until(() => ps.stats().pushes === 1);
    clock.advance(499);
    t.deepEqual(ps.stats().dropped, [], 'trainer1 is not dropped before 1000 ms of silence');
    t.false(answered);
    clock.advance(1);
    t.deepEqual(ps.stats().dropped, [b.name], 'dropped at 1000 ms of silence since its join');
    t.deepEqual(ps.stats().live, [a.name], 'trainer0 (silent too, but waiting in the round) stays');
    const r = await pending;
    t.is(r.version, 1);
    t.deepEqual([...r.values], [...init()].map((p) => p - 0.5), 'the round stepped with trainer0\'s gradient alone');
  } finally {
    await w.stop();
  }
});

test('async: a silent trainer nobody waits on is not dropped', async (t) => {
  const clock = new ManualClock();
  const { w, a, b, ps } = await joined(2, { consistency: 'async', optimizer: sgd, liveTimeoutMs: 1000, clock });
  try {
    await a.call('ps0', PS.push, [a.name, 0, fill(1)]);
    clock.advance(5000);
    t.deepEqual(ps.stats().dropped, [], 'no push waits on anybody, so silence alone drops nobody');
    t.deepEqual(ps.stats().live, [a.name, b.name]);
  } finally {
    await w.stop();
  }
});

test('ssp: the slowest trainer is dropped after liveTimeoutMs since its last call while a push waits on it', async (t) => {
  const clock = new ManualClock();
  const { w, a, b, ps, name } = await joined(2, { consistency: 'ssp', staleness: 0, optimizer: sgd, liveTimeoutMs: 1000, clock });
  try {
    // trainer0 runs one step ahead, then blocks on trainer1 (staleness 0)
    await a.call(name, PS.pushPull, [a.name, 0, fill(1)]);
    clock.advance(900);
    await b.call(name, PS.pull, [b.name]); // trainer1 is heard from: its clock starts again
    const blocked = a.call<PullReply>(name, PS.pushPull, [a.name, 1, fill(1)]);
    await until(() => ps.stats().pushes === 2);
    clock.advance(999); // 1899 ms after the join: past the join's deadline, not past the pull's
    t.deepEqual(ps.stats().dropped, [], 'trainer1 was heard from 999 ms ago');
    clock.advance(1);
    t.deepEqual(ps.stats().dropped, [b.name], 'the slowest trainer, silent for 1000 ms while trainer0 waits on it');
    t.is((await blocked).version, 2);
  } finally {
    await w.stop();
  }
});

test('joins fail after joinTimeoutMs, counted from the first join, naming how many came', async (t) => {
  const clock = new ManualClock();
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: sgd, joinTimeoutMs: 3000, clock });
  try {
    const a = w.trainerAgents[0]!;
    clock.advance(10_000);
    let settled = false;
    const first = a.call('ps0', PS.join, [a.name, layout, init()]).finally(() => { settled = true; });
    await until(() => w.servers[0]!.stats().joined === 1);
    clock.advance(2999);
    await a.call('ps0', PS.stats, []); // a round trip: a rejection sent at 2999 ms would be here by now
    t.false(settled, 'still waiting at 2999 ms');
    clock.advance(1);
    const e = await t.throwsAsync<RpcError>(first);
    t.is(e.code, Status.DEADLINE_EXCEEDED);
    t.regex(e.message, /server "ps0": only 1 of 2 trainers joined within 3000 ms/);
  } finally {
    await w.stop();
  }
});

test('bad pushes get clear errors and leave the server state intact', async (t) => {
  const { w, a, ps, name } = await joined(1, { consistency: 'async', optimizer: { kind: 'adam', lr: 0.1 } });
  try {
    const before = ps.values.slice();
    const cases: Array<[unknown[], Status, RegExp]> = [
      [[a.name, 0, new Float32Array(8)], Status.INVALID_ARGUMENT, /pushed gradient has 8 elements; server "ps0" expects 9/],
      [[a.name, 0, { w: new Float32Array(6), nope: new Float32Array(3) }], Status.NOT_FOUND, /parameter 'nope' is not held by server "ps0" \(it holds: w, b\)/],
      [[a.name, 0, { w: new Float32Array(6), b: new Float32Array(4) }], Status.INVALID_ARGUMENT, /gradient of 'b' .* has 4 elements; server "ps0" expects 3/],
      [[a.name, 0, { w: new Float32Array(6) }], Status.INVALID_ARGUMENT, /lacks a gradient for parameter 'b'/],
      [[a.name, 0, { w: new Float64Array(6), b: new Float32Array(3) }], Status.INVALID_ARGUMENT, /gradient of 'w' is Float64Array; .* expects a Float32Array/],
      [[a.name, 0, 'grads'], Status.INVALID_ARGUMENT, /pushed gradient is string/],
      [['stranger', 0, new Float32Array(9)], Status.FAILED_PRECONDITION, /trainer "stranger" has not joined server "ps0"/],
      [[a.name, -1, new Float32Array(9)], Status.INVALID_ARGUMENT, /pushed version is number/],
    ];
    for (const [args, code, message] of cases) {
      const err = await t.throwsAsync<RpcError>(a.call(name, PS.push, args));
      t.is(err.code, code, err.message);
      t.is(err.worker, 'ps0');
      t.regex(err.message, message);
    }
    t.deepEqual([...ps.values], [...before], 'no bad push changed a value');
    t.is(ps.version, 0);
    // a named push in the right shape is accepted
    const ok = await a.call<PushReply>(name, PS.push, [a.name, 0, { b: new Float32Array(3).fill(1), w: new Float32Array(6).fill(1) }]);
    t.is(ok.version, 1);
    t.true(ps.values.every((v, i) => v < before[i]!), 'Adam stepped every element down');
    const mismatch = await t.throwsAsync<RpcError>(a.call(name, PS.join, [a.name, [{ name: 'w', size: 7 }, { name: 'b', size: 2 }], new Float32Array(9)]));
    t.regex(mismatch.message, /layout differs .* parameter 0 is 'w' \(7\) instead of 'w' \(6\)/);
  } finally {
    await w.stop();
  }
});

test('join refuses initial values of the wrong length for its shard', async (t) => {
  const w = await startPsWorld(2, 1, { consistency: 'sync', optimizer: sgd });
  try {
    const err = await t.throwsAsync<RpcError>(w.trainerAgents[0]!.call('ps1', PS.join, ['trainer0', layout, new Float32Array(9)]));
    t.regex(err.message, /initial values for shard 1 of 2 \(9 elements in all\) has 9 elements; server "ps1" expects 5/);
    t.is(w.servers[1]!.layout(), null, 'the server stays uninitialised');
  } finally {
    await w.stop();
  }
});

test('bad server options are refused at construction', (t) => {
  const base = { name: 'ps0', shard: 0, shards: 1, trainers: 1, consistency: 'sync', optimizer: sgd } as const;
  t.throws(() => new ParameterServer({ ...base, shard: 1 }), { message: /shard=1: expected an integer in \[0, 1\)/ });
  t.throws(() => new ParameterServer({ ...base, consistency: 'eventual' as 'sync' }), { message: /consistency="eventual"/ });
  t.throws(() => new ParameterServer({ ...base, optimizer: { kind: 'sgd', lr: -1 } }), { message: /lr/ });
  t.throws(() => new ParameterServer({ ...base, staleness: -2 }), { message: /staleness=-2/ });
});

test('metrics count pushes, pulls, bytes and steps per server and are served on /metrics', async (t) => {
  const w = await startPsWorld(2, 1, { consistency: 'async', optimizer: sgd });
  try {
    const a = w.trainerAgents[0]!;
    const shards = [4, 5];
    await Promise.all(['ps0', 'ps1'].map((s, i) => a.call(s, PS.join, [a.name, layout, new Float32Array(shards[i]!)])));
    await a.call('ps0', PS.pushPull, [a.name, 0, new Float32Array(4)]);
    await a.call('ps0', PS.push, [a.name, 1, new Float32Array(4)]);
    const port = await w.servers[0]!.metrics.listen(0);
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    t.regex(body, /ps_pushes_total\{server="ps0"\} 2/);
    t.regex(body, /ps_pulls_total\{server="ps0"\} 2/); // the join and the pushPull
    t.regex(body, /ps_received_bytes_total\{server="ps0"\} 32/);
    t.regex(body, /ps_steps_total\{server="ps0"\} 2/);
    t.regex(body, /ps_staleness_steps_count\{server="ps0"\} 2/);
    const other = await w.servers[1]!.metrics.text();
    t.regex(other, /ps_pushes_total\{server="ps1"\} 0/, 'the second server keeps its own counts');
    t.is((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
  } finally {
    await w.stop();
  }
});
