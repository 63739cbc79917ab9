import test from 'ava';
import { CollectiveError, ProcessGroup, segmentBounds, type GroupOptions, type WireDType } from '../../src/collective/index.js';
import { ManualClock, type Agent } from '../../src/rpc/index.js';
import { fromWire, toWire } from '../../src/tensor/index.js';
import { startWorld, stopWorld } from '../rpc/world.js';

// Small pieces and a small direct limit, so a few thousand elements exercise the ring's pieces.
const SMALL: GroupOptions = { pieceBytes: 4096, directBytes: 512 };

async function withGroups(n: number, options: GroupOptions, fn: (groups: ProcessGroup[], agents: Agent[]) => Promise<void>): Promise<void> {
  const agents = await startWorld(n);
  const groups = agents.map((a) => ProcessGroup.create(a, options));
  try {
    await fn(groups, agents);
  } finally {
    for (const g of groups) g.close();
    await stopWorld(agents, false);
  }
}

/** A deterministic pseudo-random buffer per (rank, length). */
function data(rank: number, length: number, scale = 1): Float32Array {
  const out = new Float32Array(length);
  let s = (rank + 1) * 2654435761 >>> 0;
  for (let i = 0; i < length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

/** What the wire makes of a buffer. */
function narrowed(dtype: WireDType, x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  fromWire(dtype, toWire(dtype, x, dtype === 'float32' ? new Float32Array(x.length) : undefined), out);
  return out;
}

function reference(inputs: Float32Array[], op: 'sum' | 'avg' | 'max'): Float64Array {
  const out = new Float64Array(inputs[0]!.length);
  for (let i = 0; i < out.length; i++) {
    let acc = op === 'max' ? -Infinity : 0;
    for (const x of inputs) acc = op === 'max' ? Math.max(acc, x[i]!) : acc + x[i]!;
    out[i] = op === 'avg' ? acc / inputs.length : acc;
  }
  return out;
}

function near(t: { fail(m: string): void; pass(): void }, got: Float32Array, want: Float64Array, tol: number, what: string): void {
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol * Math.max(1, Math.abs(want[i]!)))) {
      t.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]} (tolerance ${tol})`);
      return;
    }
  }
  t.pass();
}

function identical(t: { deepEqual(a: unknown, b: unknown, m: string): void }, bufs: Float32Array[], what: string): void {
  for (let r = 1; r < bufs.length; r++) t.deepEqual(Buffer.from(bufs[r]!.buffer, bufs[r]!.byteOffset, bufs[r]!.byteLength), Buffer.from(bufs[0]!.buffer, bufs[0]!.byteOffset, bufs[0]!.byteLength), `${what}: rank ${r} differs from rank 0`);
}

test('segmentBounds: equal counts, the first n % size one longer', (t) => {
  t.deepEqual(segmentBounds(10, 3), [0, 4, 7, 10]);
  t.deepEqual(segmentBounds(2, 3), [0, 1, 2, 2]);
  t.deepEqual(segmentBounds(0, 2), [0, 0, 0]);
});

for (const n of [2, 3]) {
  test(`allReduce sum, avg and max on ${n} ranks match a plain reference; every rank ends with the same bits`, async (t) => {
    await withGroups(n, SMALL, async (groups) => {
      // direct (<= 512 bytes), ring with one piece, ring with many pieces; lengths not divisible by n
      for (const length of [1, 7, 100, 1001, 10007]) {
        for (const op of ['sum', 'avg', 'max'] as const) {
          const inputs = groups.map((_, r) => data(r, length));
          const bufs = inputs.map((x) => x.slice());
          await Promise.all(groups.map((g, r) => g.allReduce(bufs[r]!, { op })));
          near(t, bufs[0]!, reference(inputs, op), 1e-6, `${op} of ${length}`);
          identical(t, bufs, `${op} of ${length}`);
        }
      }
    });
  });
}

test('allReduce in bf16 and fp16: fp32 sums of narrowed values, within the format\'s precision; identical on every rank', async (t) => {
  await withGroups(3, SMALL, async (groups) => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const eps = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11;
      for (const length of [5, 3001]) {
        const inputs = groups.map((_, r) => data(r, length));
        const bufs = inputs.map((x) => x.slice());
        await Promise.all(groups.map((g, r) => g.allReduce(bufs[r]!, { op: 'sum', dtype })));
        // each value is narrowed at most once per hop plus once at the end: a few ulps of the format
        near(t, bufs[0]!, reference(inputs, 'sum'), 8 * eps, `${dtype} sum of ${length}`);
        identical(t, bufs, `${dtype} sum of ${length}`);
        t.deepEqual(narrowed(dtype, bufs[0]!), bufs[0]!, 'the result is representable in the wire format');
        const sent = groups[0]!.stats().bytesSent;
        t.true(sent > 0);
      }
    }
  });
});

test('bf16 moves half the bytes of fp32', async (t) => {
  await withGroups(2, SMALL, async (groups) => {
    const before = groups[0]!.stats().bytesSent;
    await Promise.all(groups.map((g, r) => g.allReduce(data(r, 4000))));
    const fp32 = groups[0]!.stats().bytesSent - before;
    await Promise.all(groups.map((g, r) => g.allReduce(data(r, 4000), { dtype: 'bfloat16' })));
    const bf16 = groups[0]!.stats().bytesSent - before - fp32;
    t.is(fp32, 4000 * 4 / 2 * 2, 'ring on 2 ranks: half the buffer out in each phase');
    t.is(bf16 * 2, fp32);
  });
});

test('broadcast, allGather and reduceScatter match references, sizes not divisible by the rank count', async (t) => {
  await withGroups(3, SMALL, async (groups) => {
    for (const length of [2, 10, 5003]) {
      // broadcast from rank 1
      const bufs = groups.map((_, r) => (r === 1 ? data(7, length) : new Float32Array(length)));
      await Promise.all(groups.map((g, r) => g.broadcast(bufs[r]!, 1)));
      for (const b of bufs) t.deepEqual(b, data(7, length));

      // allGather: each rank fills its own segment
      const bounds = segmentBounds(length, 3);
      const full = data(9, length);
      const gather = groups.map((_, r) => {
        const b = new Float32Array(length).fill(NaN);
        b.set(full.subarray(bounds[r]!, bounds[r + 1]!), bounds[r]!);
        return b;
      });
      await Promise.all(groups.map((g, r) => g.allGather(gather[r]!)));
      for (const b of gather) t.deepEqual(b, full);

      // reduceScatter: rank r's segment holds the sum
      const inputs = groups.map((_, r) => data(r, length));
      const want = reference(inputs, 'sum');
      const outs = await Promise.all(groups.map((g, r) => g.reduceScatter(inputs[r]!.slice())));
      outs.forEach((seg, r) => {
        t.is(seg.length, bounds[r + 1]! - bounds[r]!);
        near(t, seg, want.subarray(bounds[r]!, bounds[r + 1]!), 1e-6, `reduceScatter segment ${r} of ${length}`);
      });
    }
  });
});

test('several ops in flight at once each get their own result; barrier and send/recv with tags', async (t) => {
  await withGroups(2, SMALL, async (groups) => {
    const a = groups.map((_, r) => data(r, 3000)), b = groups.map((_, r) => data(r + 5, 10)), c = groups.map((_, r) => data(r + 9, 2000));
    const wantA = reference(a, 'sum'), wantB = reference(b, 'max'), wantC = reference(c, 'avg');
    const bufs = [a, b, c].map((set) => set.map((x) => x.slice()));
    await Promise.all(groups.flatMap((g, r) => [g.allReduce(bufs[0]![r]!), g.allReduce(bufs[1]![r]!, { op: 'max' }), g.allReduce(bufs[2]![r]!, { op: 'avg' })]));
    near(t, bufs[0]![1]!, wantA, 1e-6, 'first');
    near(t, bufs[1]![1]!, wantB, 0, 'second');
    near(t, bufs[2]![1]!, wantC, 1e-6, 'third');
    await Promise.all(groups.map((g) => g.barrier()));

    // two tags, sent in one order and received in the other
    const x = data(1, 50), y = data(2, 70);
    const rx = new Float32Array(50), ry = new Float32Array(70);
    const sends = [groups[0]!.send(x, 1, 3), groups[0]!.send(y, 1, 4)];
    await groups[1]!.recv(ry, 0, 4);
    await groups[1]!.recv(rx, 0, 3);
    await Promise.all(sends);
    t.deepEqual(rx, x);
    t.deepEqual(ry, y);

    const s = groups[1]!.send(new Float32Array(5), 0);
    const e = await t.throwsAsync(groups[0]!.recv(new Float32Array(4), 1), { instanceOf: CollectiveError });
    t.regex(e!.message, /recv from rank 1 \(w1\), tag 0: it sent 5 elements, this rank's buffer holds 4/);
    await s;
    // a refused recv leaves the pair in step: the next send and recv match
    const z = new Float32Array(3);
    await Promise.all([groups[1]!.send(Float32Array.of(1, 2, 3), 0), groups[0]!.recv(z, 1)]);
    t.deepEqual(z, Float32Array.of(1, 2, 3));
  });
});

test('bad arguments are refused before anything is sent, and the group keeps working', async (t) => {
  await withGroups(2, SMALL, async (groups) => {
    const g = groups[0]!;
    await t.throwsAsync(g.allReduce([1, 2] as unknown as Float32Array), { instanceOf: TypeError, message: /allReduce: the buffer must be a Float32Array, got Array/ });
    await t.throwsAsync(g.allReduce(new Float32Array(2), { op: 'mean' as never }), { instanceOf: RangeError, message: /op must be sum, avg or max, got "mean"/ });
    await t.throwsAsync(g.allReduce(new Float32Array(2), { dtype: 'int8' as never }), { instanceOf: RangeError, message: /dtype must be float32, bfloat16 or float16/ });
    await t.throwsAsync(g.broadcast(new Float32Array(2), 2), { instanceOf: RangeError, message: /root 2 is not a rank of group world \(size 2\)/ });
    await t.throwsAsync(g.send(new Float32Array(2), 0), { instanceOf: RangeError, message: /rank 0 is this process/ });
    t.throws(() => g.newGroup([0, 0]), { message: /rank 0 is listed twice/ });
    const bufs = groups.map((_, r) => data(r, 9));
    const want = reference(bufs.map((b) => b.slice()), 'sum');
    await Promise.all(groups.map((gr, r) => gr.allReduce(bufs[r]!)));
    near(t, bufs[0]!, want, 1e-6, 'after the refusals');
  });
});

test('ranks that call different ops at the same sequence number fail at once, naming both', async (t) => {
  await withGroups(2, SMALL, async (groups) => {
    const [e0, e1] = await Promise.all([
      t.throwsAsync(groups[0]!.allReduce(new Float32Array(8)), { instanceOf: CollectiveError }),
      t.throwsAsync(groups[1]!.broadcast(new Float32Array(8), 0), { instanceOf: CollectiveError }),
    ]);
    for (const e of [e0!, e1!]) t.regex(e.message, /ranks called different ops at #1 in group world: rank \d \(w\d\) called (allReduce|broadcast), rank \d \(w\d\) called (allReduce|broadcast)/);
    // the group is broken: the ranks no longer agree where they are
    await t.throwsAsync(groups[0]!.barrier(), { message: /group world is broken by an earlier failure: .*ranks called different ops/ });
  });
});

test('a size mismatch fails naming both sizes', async (t) => {
  await withGroups(2, SMALL, async (groups) => {
    const [e0] = await Promise.all([
      t.throwsAsync(groups[0]!.allReduce(new Float32Array(8)), { instanceOf: CollectiveError }),
      t.throwsAsync(groups[1]!.allReduce(new Float32Array(9)), { instanceOf: CollectiveError }),
    ]);
    t.regex(e0!.message, /allReduce #1 in group world: rank 1 \(w1\) passed 9 elements, rank 0 \(w0\) passed 8/);
  });
});

test('a rank that never comes fails the op at its timeout (injected clock), naming the rank and what it last did', async (t) => {
  const clock = new ManualClock();
  await withGroups(3, { ...SMALL, clock, timeoutMs: 5000 }, async (groups) => {
    // all three reach #1; rank 2 never calls #2
    await Promise.all(groups.map((g) => g.barrier()));
    const pending = Promise.all([groups[0]!.allReduce(new Float32Array(4)), groups[1]!.allReduce(new Float32Array(4))]);
    const failed = t.throwsAsync(pending, { instanceOf: CollectiveError });
    // let the messages of ranks 0 and 1 arrive before the clock moves (an event, not a sleep)
    await new Promise<void>((resolve) => {
      const poll = () => (groups[2]!.stats().bytesReceived >= 32 ? resolve() : setImmediate(poll));
      poll();
    });
    clock.advance(5000);
    const e = await failed;
    t.regex(e!.message, /allReduce #2 in group world \(rank [01] of 3\) timed out after 5 s: no message from rank 2 \(w2, last seen at barrier #1\)/);
    t.is(e!.worker.startsWith('w'), true);
  });
});

test('a rank whose process is gone fails the op, naming it', async (t) => {
  const clock = new ManualClock();
  const agents = await startWorld(2);
  const groups = agents.map((a) => ProcessGroup.create(a, { ...SMALL, clock, timeoutMs: 5000 }));
  try {
    await Promise.all(groups.map((g) => g.barrier()));
    await agents[1]!.shutdown({ graceful: false });
    const op = groups[0]!.allReduce(new Float32Array(100));
    const failed = t.throwsAsync(op, { instanceOf: CollectiveError });
    clock.advance(5000); // a send that is not refused at once ends at the timeout; either way rank 1 is named
    const e = await failed;
    t.regex(e!.message, /rank 1 \(w1/);
  } finally {
    for (const g of groups) g.close();
    await agents[0]!.shutdown({ graceful: false });
  }
});

test('newGroup: a subset reduces among its members only; non-members get null', async (t) => {
  await withGroups(3, SMALL, async (groups) => {
    const subs = groups.map((g) => g.newGroup([2, 0]));
    t.is(subs[1], null);
    t.is(subs[0]!.rank, 1);
    t.is(subs[2]!.rank, 0);
    const a = data(0, 1000), c = data(2, 1000);
    const want = reference([a, c], 'sum');
    await Promise.all([subs[0]!.allReduce(a), subs[2]!.allReduce(c)]);
    near(t, a, want, 1e-6, 'subgroup sum');
    // the world group still works alongside
    const bufs = groups.map((_, r) => data(r, 10));
    const w = reference(bufs.map((b) => b.slice()), 'sum');
    await Promise.all(groups.map((g, r) => g.allReduce(bufs[r]!)));
    near(t, bufs[1]!, w, 1e-6, 'world after subgroup');
    subs[0]!.close();
    subs[2]!.close();
  });
});

test('abort: a rank that gives up outside any op stops the others\' ops at once, naming it; the group stays broken', async (t) => {
  await withGroups(3, {}, async (groups) => {
    const waiting = groups[1]!.recv(new Float32Array(4), 0, 7);
    const reducing = groups[2]!.allReduce(new Float32Array(4));
    groups[0]!.abort(new Error('its data loader failed'));
    for (const p of [waiting, reducing]) {
      const e = await t.throwsAsync(p, { instanceOf: CollectiveError });
      t.regex(e!.message, /rank 0 \(w0\) gave up on group world: rank 0 \(w0\) failed: its data loader failed/);
    }
    await t.throwsAsync(groups[0]!.barrier(), { message: /broken by an earlier failure: rank 0 \(w0\) failed: its data loader failed/ });
    groups[0]!.abort(new Error('again')); // a no-op once broken
  });
});
