// The parameter servers' 16-bit wire (--precision bf16|fp16): pushes widened into fp32 and averaged
// as fp32 ones, replies the fp32 master rounded to 16 bits, the precision fixed by the join, the
// loss scale of an fp16 push divided out, and an overflowing fp16 push skipped without touching the
// master weights. Every expectation is computed here with the plain conversions of src/tensor.
import test from 'ava';
import type { Agent } from '../../src/rpc/index.js';
import { PS_FUNCTIONS as PS, PsClient } from '../../src/server/index.js';
import { roundToWire, toWire, type WireDType } from '../../src/tensor/index.js';
import { LossScaler } from '../../src/trainer/data-parallel.js';
import { startPsWorld } from './ps-world.js';

const layout = [{ name: 'w', size: 7 }, { name: 'b', size: 4 }];
const N = 11;
const lr = 0.5;
/** Values that bf16 and fp16 both round (so narrowing is visible), deterministic. */
const values = (seed: number, mag = 1) => Float32Array.from({ length: N }, (_, i) => mag * Math.sin(seed * 7.1 + i * 1.37) * (1 + i / 3));
const rounded = (dtype: WireDType, x: Float32Array, scale = 1) => {
  const y = Float32Array.from(x, (v) => v * scale);
  roundToWire(dtype, y);
  return Float32Array.from(y, (v) => v / scale);
};

function close(t: { true(c: boolean, m?: string): void }, got: Float32Array, want: Float32Array, tol = 1e-6): void {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  t.true(got.length === want.length && worst <= tol, `max difference ${worst} over ${want.length} elements`);
}

/** Two sync servers, two trainers with PsClients of `dtype`, joined. */
async function world(dtype: WireDType) {
  const w = await startPsWorld(2, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr } });
  const init = values(1);
  const clients = w.trainerAgents.map((a, r) => new PsClient(a, w.serverAgents.map((s) => s.name), layout, r === 0 ? init.slice() : new Float32Array(N), new Float32Array(N), a.name, dtype));
  await Promise.all(clients.map((c) => c.join()));
  const master = () => {
    const out = new Float32Array(N);
    for (const s of w.servers) out.set(s.values, s.shard!.start);
    return out;
  };
  return { w, init, clients, master };
}

for (const [dtype, scale] of [['bfloat16', 1], ['float16', 1], ['float16', 1024]] as const) {
  test(`${dtype}${scale !== 1 ? ` with loss scale ${scale}` : ''}: one sync step equals params - lr * mean(widen(narrow(g))) in fp32; pulls are the master narrowed`, async (t) => {
    const { w, init, clients, master } = await world(dtype);
    try {
      t.deepEqual(w.servers.map((s) => s.precision), [dtype, dtype]);
      // the join: fp32 master from trainer0's values, every trainer's copy the master narrowed
      t.deepEqual([...master()], [...init]);
      for (const c of clients) t.deepEqual([...c.params], [...rounded(dtype, init)]);
      const g = [values(2), values(3, 4)];
      clients.forEach((c, i) => c.grads.set(g[i]!));
      const ok = await Promise.all(clients.map((c) => c.pushPull(scale)));
      t.deepEqual(ok, [true, true]);
      const r = g.map((x) => rounded(dtype, x, scale));
      const want = Float32Array.from(init, (p, i) => Math.fround(p - Math.fround(lr * Math.fround(Math.fround(r[0]![i]! + r[1]![i]!) / 2))));
      close(t, master(), want);
      t.notDeepEqual([...master()], [...Float32Array.from(init, (p, i) => p - lr * (g[0]![i]! + g[1]![i]!) / 2)], 'the narrowing is visible');
      for (const c of clients) t.deepEqual([...c.params], [...rounded(dtype, master())]);
      // real bytes: the join sends fp32 values and receives 16-bit ones, every step 2 + 2 bytes per element
      const joinBytes = N * 4 + N * 2;
      for (const c of clients) t.is(c.bytes, joinBytes + N * 2 * 2);
    } finally {
      await w.stop();
    }
  });
}

test('float32 clients keep the fp32 wire: values pass exactly, 4 + 4 bytes per element a step', async (t) => {
  const { w, init, clients, master } = await world('float32');
  try {
    const g = [values(2), values(3, 4)];
    clients.forEach((c, i) => c.grads.set(g[i]!));
    await Promise.all(clients.map((c) => c.pushPull()));
    const want = Float32Array.from(init, (p, i) => Math.fround(p - Math.fround(lr * Math.fround(Math.fround(g[0]![i]! + g[1]![i]!) / 2))));
    close(t, master(), want);
    for (const c of clients) t.deepEqual([...c.params], [...master()]);
    for (const c of clients) t.is(c.bytes, 2 * N * 4 + N * 4 * 2);
  } finally {
    await w.stop();
  }
});

test('a join with another precision is refused, naming both', async (t) => {
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr } });
  const [a, b] = w.trainerAgents as [Agent, Agent];
  const server = w.serverAgents[0]!.name;
  try {
    const first = a.call(server, PS.join, [a.name, layout, values(1), 'bfloat16']);
    first.catch(() => {});
    const e = await t.throwsAsync(b.call(server, PS.join, [b.name, layout, values(1), 'float16']));
    t.regex(e!.message, /trainer "trainer1" joined with precision float16, but trainer "trainer0" initialised it with precision bfloat16/);
    // an fp32 join (no precision argument, as before) is refused too, and a bad name is named
    const e2 = await t.throwsAsync(b.call(server, PS.join, [b.name, layout, values(1)]));
    t.regex(e2!.message, /precision float32.*precision bfloat16/);
    const e3 = await t.throwsAsync(b.call(server, PS.join, [b.name, layout, values(1), 'int8']));
    t.regex(e3!.message, /precision.*"int8".*float32, bfloat16, float16/);
    // state intact: the right precision still joins and both joins answer
    await b.call(server, PS.join, [b.name, layout, values(1), 'bfloat16']);
    await first;
    t.is(w.servers[0]!.precision, 'bfloat16');
    // a 16-bit server refuses an fp32 push, naming what it expects
    const e4 = await t.throwsAsync(w.servers[0]!.push(a.name, 0, new Float32Array(N)));
    t.regex(e4!.message, /Float32Array.*expects a Uint16Array of bfloat16 values/);
    const e5 = await t.throwsAsync(w.servers[0]!.push(a.name, 0, new Uint16Array(N), -2));
    t.regex(e5!.message, /loss scale/);
  } finally {
    await w.stop();
  }
});

test('fp16: an overflowing push is skipped (zeros pushed, counted, scale halves); the master weights stay finite', async (t) => {
  const { w, init, clients, master } = await world('float16');
  try {
    const scalers = clients.map(() => new LossScaler(true));
    t.is(scalers[0]!.scale, 2 ** 16);
    // fault injection: trainer0's gradient times 2^16 is beyond fp16's 65504
    const g0 = values(2);
    g0[3] = 2;
    const g1 = values(3, 1e-3);
    clients[0]!.grads.set(g0);
    clients[1]!.grads.set(g1);
    await Promise.all(clients.map(async (c, i) => { scalers[i]!.update(!(await c.pushPull(scalers[i]!.scale))); }));
    t.is(scalers[0]!.skipped, 1);
    t.is(scalers[0]!.scale, 2 ** 15);
    t.is(scalers[1]!.skipped, 0);
    t.is(scalers[1]!.scale, 2 ** 16);
    const m = master();
    t.true(m.every((v) => Number.isFinite(v)), 'no inf or NaN in the master weights');
    // the round's mean is over trainer0's zeros and trainer1's (scaled, narrowed, unscaled) gradient
    const r1 = rounded('float16', g1, 2 ** 16);
    close(t, m, Float32Array.from(init, (p, i) => Math.fround(p - Math.fround(lr * Math.fround(r1[i]! / 2)))));
    // the next step at the halved scale goes through
    clients[0]!.grads.set(values(4, 0.01));
    clients[1]!.grads.set(g1);
    const ok = await Promise.all(clients.map((c, i) => c.pushPull(scalers[i]!.scale)));
    t.deepEqual(ok, [true, true]);
    t.true(master().every((v) => Number.isFinite(v)));
  } finally {
    await w.stop();
  }
});

test('a refused double push leaves the 16-bit sync round intact', async (t) => {
  const w = await startPsWorld(1, 2, { consistency: 'sync', optimizer: { kind: 'sgd', lr: 1 } });
  const [a, b] = w.trainerAgents as [Agent, Agent];
  const ps = w.servers[0]!;
  const wire = (v: number) => toWire('bfloat16', new Float32Array(N).fill(v)) as Uint16Array;
  try {
    await Promise.all([a, b].map((x) => x.call('ps0', PS.join, [x.name, layout, new Float32Array(N), 'bfloat16'])));
    const first = ps.pushPull(a.name, 0, wire(1));
    await t.throwsAsync(ps.pushPull(a.name, 0, wire(100)), { message: /pushed twice in sync round 0/ });
    await Promise.all([first, ps.pushPull(b.name, 0, wire(3))]);
    t.deepEqual([...ps.values], new Array(N).fill(-2), 'p - lr * mean(1, 3): the refused push changed nothing');
  } finally {
    await w.stop();
  }
});

test('ssp in 16 bits: pushes of one trainer waiting their turn each apply their own gradient', async (t) => {
  const w = await startPsWorld(1, 2, { consistency: 'ssp', staleness: 0, optimizer: { kind: 'sgd', lr: 1 } });
  const [a, b] = w.trainerAgents as [Agent, Agent];
  const ps = w.servers[0]!;
  const wire = (v: number) => toWire('bfloat16', new Float32Array(N).fill(v)) as Uint16Array;
  try {
    await Promise.all([a, b].map((x) => x.call('ps0', PS.join, [x.name, layout, new Float32Array(N), 'bfloat16'])));
    await ps.push(a.name, 0, wire(1));
    // a is one step ahead with staleness 0: both of its next pushes wait for b
    const waiting = [ps.push(a.name, 1, wire(8)), ps.push(a.name, 1, wire(64))];
    await ps.push(b.name, 0, wire(0));
    await ps.push(b.name, 1, wire(0));
    await Promise.all(waiting);
    t.deepEqual([...ps.values], new Array(N).fill(-(1 + 8 + 64)));
  } finally {
    await w.stop();
  }
});
