import test from 'ava';
import { ManualClock } from '../../src/rpc/clock.js';
import { DistributedOptimizer, RpcError, type Agent, type RRef } from '../../src/rpc/index.js';
import { Adam, backward, crossEntropy, fromArray, Linear, mlp, relu, SGD, Tensor, type Module } from '../../src/tensor/index.js';
import { startWorld, stopWorld } from './world.js';

const LABELS = Int32Array.from([1, 0, 2, 1]);
const input = (shift: number) => fromArray(Array.from({ length: 4 * 3 }, (_, i) => Math.cos(i * 0.9 + shift)), [4, 3]);

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** w1 holds the head; it hands out RRefs to its parameters. */
function serveHead(w1: Agent): Module {
  const head = mlp([5, 6, 3], { seed: 8 });
  w1.register('forward', (h: Tensor) => head.forward(h));
  w1.register('paramRefs', () => head.parameters().map((p) => w1.rref(p)));
  return head;
}

const CASES: [string, typeof SGD | 'adam', { lr: number; momentum?: number }][] = [
  ['SGD with momentum', SGD, { lr: 0.1, momentum: 0.9 }],
  ['Adam (by name)', 'adam', { lr: 0.01 }],
];

for (const [name, kind, options] of CASES) {
  test(`DistributedOptimizer (${name}) over two owners gives the parameters of local steps`, async (t) => {
    const world = await startWorld(2);
    const [w0, w1] = world as [Agent, Agent];
    const head = serveHead(w1);
    try {
      const body = new Linear(3, 5, { seed: 7 });
      const refs = [...body.parameters().map((p) => w0.rref(p)), ...((await w0.call('w1', 'paramRefs')) as RRef<Tensor>[])];
      const opt = new DistributedOptimizer(w0, kind, refs, options);
      await opt.ready();
      t.deepEqual([...opt.owners].sort(), ['w0', 'w1']);
      t.is(w1.optimizerHost.size, 1);

      const lBody = new Linear(3, 5, { seed: 7 });
      const lHead = mlp([5, 6, 3], { seed: 8 });
      const lParams = [...lBody.parameters(), ...lHead.parameters()];
      const local = kind === SGD ? new SGD(lParams, options) : new Adam(lParams, { lr: options.lr });
      for (let step = 0; step < 3; step++) {
        await w0.distAutograd.context(async (ctx) => {
          const out = (await w0.call('w1', 'forward', [relu(body.forward(input(step)))])) as Tensor;
          await w0.distAutograd.backward(ctx, [crossEntropy(out, LABELS)]);
          await opt.step(ctx);
        });
        local.zeroGrad();
        backward([crossEntropy(lHead.forward(relu(lBody.forward(input(step)))), LABELS)]);
        local.step();
      }
      const got = [...body.parameters(), ...head.parameters()];
      t.is(got.length, lParams.length);
      got.forEach((p, i) => t.true(maxDiff(p.data, lParams[i]!.data) < 1e-5, `param ${i}: ${maxDiff(p.data, lParams[i]!.data)}`));
      t.true(maxDiff(head.parameters()[0]!.data, mlp([5, 6, 3], { seed: 8 }).parameters()[0]!.data) > 1e-4, 'the remote parameters did move');
      t.true(got.every((p) => p.grad === null), 'no .grad used');
      await opt.release();
      t.is(w0.optimizerHost.size, 0);
      t.is(w1.optimizerHost.size, 0);
      await t.throwsAsync(opt.step(1), { instanceOf: RpcError, message: /released/ });
      await Promise.all(refs.map((r) => r.release()));
    } finally {
      await stopWorld(world);
    }
  });
}

test('DistributedOptimizer reports bad kinds, bad refs and unknown contexts', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world as [Agent, Agent];
  serveHead(w1);
  try {
    const refs = (await w0.call('w1', 'paramRefs')) as RRef<Tensor>[];
    t.throws(() => new DistributedOptimizer(w0, class Nope {} as never, refs), { instanceOf: RpcError, message: /optimizer/ });
    t.throws(() => new DistributedOptimizer(w0, SGD, []), { instanceOf: RpcError, message: /paramRRefs/ });
    const unknown = new DistributedOptimizer(w0, 'lion', refs, { lr: 1 });
    await t.throwsAsync(unknown.ready(), { instanceOf: RpcError, message: /"lion".*not registered on worker "w1"/ });
    const notTensor = new DistributedOptimizer(w0, SGD, [w0.rref({ not: 'a tensor' }) as unknown as RRef<Tensor>], { lr: 1 });
    await t.throwsAsync(notTensor.ready(), { instanceOf: RpcError, message: /does not hold a Tensor/ });
    const badLr = new DistributedOptimizer(w0, SGD, refs, { lr: -1 });
    await t.throwsAsync(badLr.ready(), { message: /lr/ });

    w1.optimizerHost.register('plain-sgd', (params, o) => new SGD(params, { lr: o.lr as number }));
    const opt = new DistributedOptimizer(w0, 'plain-sgd', refs, { lr: 0.5 });
    await opt.ready();
    await t.throwsAsync(opt.step(987654321), { instanceOf: RpcError, message: /context 987654321 is not known on worker "w1"/ });
    await opt.release();
    await Promise.all(refs.map((r) => r.release()));
    t.is(w1.optimizerHost.size, 0);
  } finally {
    await stopWorld(world);
  }
});

/** Follows a promise without awaiting it: whether it has settled so far, how, and why it failed. */
function watch(p: Promise<unknown>): { state: 'pending' | 'fulfilled' | 'rejected'; reason?: unknown } {
  const w: { state: 'pending' | 'fulfilled' | 'rejected'; reason?: unknown } = { state: 'pending' };
  p.then(() => { w.state = 'fulfilled'; }, (e: unknown) => { w.state = 'rejected'; w.reason = e; });
  return w;
}

test('whenStepped on the owner: waits for the step with that context\'s gradients, or its release; at once for an unknown context; times out naming it', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world as [Agent, Agent];
  serveHead(w1);
  w1.register('ping', () => null);
  // No wall clock: whenStepped's timeouts run on a clock only this test moves, and "settled" or "not
  // yet" is read right after a message to w1 has been answered. Its handler ran on w1 before the
  // answer left, and the answer crosses the network, so every promise reaction queued on w1 by then
  // (a wrong or a right settle) has already run when the test reads the state.
  const clock = new ManualClock();
  w1.distAutograd.clock = clock;
  const roundTrip = () => w0.call('w1', 'ping');
  try {
    const refs = (await w0.call('w1', 'paramRefs')) as RRef<Tensor>[];
    const opt = new DistributedOptimizer(w0, SGD, refs, { lr: 0.1 });
    await opt.ready();
    const unknown = watch(w1.distAutograd.whenStepped(12345));
    await roundTrip();
    t.is(unknown.state, 'fulfilled', 'unknown here: no wait');

    const ctx = w0.distAutograd.newContext();
    const out = (await ctx.run(() => w0.call('w1', 'forward', [fromArray(Array.from({ length: 20 }, (_, i) => i / 20), [4, 5])]))) as Tensor;
    const waiting = watch(w1.distAutograd.whenStepped(ctx.id));
    await w0.distAutograd.backward(ctx, [crossEntropy(out, LABELS)]);
    await roundTrip();
    t.is(waiting.state, 'pending', 'a backward alone does not settle it');
    await opt.step(ctx); // resolves once w1 has applied the step
    t.is(waiting.state, 'fulfilled', 'the step settles it');
    const after = watch(w1.distAutograd.whenStepped(ctx.id));
    await roundTrip();
    t.is(after.state, 'fulfilled', 'already stepped: at once');
    await ctx.release();

    const ctx2 = w0.distAutograd.newContext();
    await ctx2.run(() => w0.call('w1', 'forward', [fromArray(Array.from({ length: 20 }, () => 0.5), [4, 5])]));
    const released = watch(w1.distAutograd.whenStepped(ctx2.id));
    await roundTrip();
    t.is(released.state, 'pending');
    await ctx2.release(); // resolves once w1 has released it
    t.is(released.state, 'fulfilled', 'a release settles it too');

    const ctx3 = w0.distAutograd.newContext();
    await ctx3.run(() => w0.call('w1', 'forward', [fromArray(Array.from({ length: 20 }, () => 0.25), [4, 5])]));
    const timeout = watch(w1.distAutograd.whenStepped(ctx3.id, 50));
    clock.advance(49);
    await roundTrip();
    t.is(timeout.state, 'pending', 'not timed out before 50 ms');
    clock.advance(1);
    await roundTrip();
    t.is(timeout.state, 'rejected', 'timed out at 50 ms');
    t.true(timeout.reason instanceof Error);
    t.regex((timeout.reason as Error | undefined)?.message ?? '', new RegExp(`${ctx3.id}.*no optimizer step`));
    await ctx3.release();
    await opt.release();
  } finally {
    await stopWorld(world);
  }
});
