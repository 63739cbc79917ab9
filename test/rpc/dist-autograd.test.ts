import test, { type ExecutionContext } from 'ava';
import * as rpc from '../../src/rpc/index.js';
import { RpcError, Status, type Agent, type RRef } from '../../src/rpc/index.js';
import {
  add, backward, crossEntropy, SGD, customFunction, fromArray, Linear, mean, mlp, mul, relu, sum, Tensor, type Module,
} from '../../src/tensor/index.js';
import { startWorld, stopWorld } from './world.js';

const BATCH = 5;

function input(cols: number, shift = 0): Tensor {
  return fromArray(Array.from({ length: BATCH * cols }, (_, i) => Math.sin(i * 0.7 + shift)), [BATCH, cols]);
}
const LABELS = Int32Array.from([0, 2, 1, 2, 0]);

function close(t: ExecutionContext, got: Float32Array | undefined, want: Float32Array | undefined, what: string): void {
  if (!got || !want) { t.fail(`${what}: missing gradient (got ${!!got}, want ${!!want})`); return; }
  t.is(got.length, want.length, what);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1e-6 + Math.abs(want[i]!)));
  t.true(worst < 1e-4, `${what}: relative error ${worst}`);
}

/** Gradients of `model`'s parameters in a context, as arrays (registered on the model's worker). */
function exposeGrads(agent: Agent, name: string, model: () => Module): void {
  agent.register(name, (ctxId: number) => {
    const g = agent.distAutograd.getGradients(ctxId);
    return model().parameters().map((p) => g.get(p)?.data ?? null);
  });
}

test('two workers: layer 1 here, layers 2-3 behind an RRef; gradients equal the local model\'s', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world as [Agent, Agent];
  let head: Module | undefined;
  w1.register('makeHead', (seed: number) => (head = mlp([8, 6, 3], { seed })));
  exposeGrads(w1, 'headGrads', () => head!);
  try {
    const layer1 = new Linear(4, 8, { seed: 1 });
    const ref = w0.remote<Module>('w1', 'makeHead', [2]) as RRef<Module>;
    const x = input(4);
    let remoteLoss = 0;
    let headGrads: (Float32Array | null)[] = [];
    let mine = new Map<Tensor, Tensor>();
    await w0.distAutograd.context(async (ctx) => {
      const h = relu(layer1.forward(x));
      const out = (await ref.rpcSync().forward(h)) as Tensor;
      t.true(out.requiresGrad, 'a tracked result comes back tracked');
      const loss = crossEntropy(out, LABELS);
      remoteLoss = loss.item();
      await w0.distAutograd.backward(ctx, [loss]);
      mine = w0.distAutograd.getGradients(ctx);
      headGrads = (await w0.call('w1', 'headGrads', [ctx.id])) as (Float32Array | null)[];
      t.is(w1.distAutograd.activeContexts(), 1);
    });

    const l1 = new Linear(4, 8, { seed: 1 });
    const h2 = mlp([8, 6, 3], { seed: 2 });
    const loss = crossEntropy(h2.forward(relu(l1.forward(x))), LABELS);
    backward([loss]);
    t.true(Math.abs(loss.item() - remoteLoss) < 1e-5);
    t.is(mine.size, 2, 'only the parameters used here');
    close(t, mine.get(layer1.weight)?.data, l1.weight.grad?.data, 'layer1.weight');
    close(t, mine.get(layer1.bias!)?.data, l1.bias!.grad?.data, 'layer1.bias');
    const want = h2.parameters();
    t.is(headGrads.length, want.length);
    want.forEach((p, i) => close(t, headGrads[i] ?? undefined, p.grad?.data, `head param ${i}`));
    t.is(layer1.weight.grad, null, 'never written into .grad');
    t.true(head!.parameters().every((p) => p.grad === null), 'never written into .grad on the owner');
    t.is(w0.distAutograd.activeContexts(), 0);
    t.is(w1.distAutograd.activeContexts(), 0);
    await ref.release();
  } finally {
    await stopWorld(world);
  }
});

test('a chain through three workers, a tensor with two consumers, and an echoed tensor; released everywhere after', async (t) => {
  const world = await startWorld(3);
  const [w0, w1, w2] = world as [Agent, Agent, Agent];
  const b = new Linear(6, 5, { seed: 11 });
  const c = new Linear(5, 3, { seed: 12 });
  const d = new Linear(6, 3, { seed: 13 });
  w1.register('stage1', async (h: Tensor) => w1.call('w2', 'stage2', [relu(b.forward(h))]));
  w1.register('echo', (h: Tensor) => h);
  w2.register('stage2', (h: Tensor) => c.forward(h));
  w2.register('side', (h: Tensor) => d.forward(h));
  for (const [agent, lin] of [[w1, b], [w2, c]] as const) exposeGrads(agent, 'grads', () => ({ parameters: () => lin.parameters() }) as Module);
  w2.register('sideGrads', (id: number) => {
    const g = w2.distAutograd.getGradients(id);
    return d.parameters().map((p) => g.get(p)?.data ?? null);
  });
  try {
    const a = new Linear(4, 6, { seed: 10 });
    const x = input(4, 1);
    const got: Record<string, (Float32Array | null)[]> = {};
    await w0.distAutograd.context(async (ctx) => {
      const h = a.forward(x);
      const [out, side, echoed] = (await Promise.all([
        w0.call('w1', 'stage1', [h]), w0.call('w2', 'side', [h]), w0.call('w1', 'echo', [{ nested: [h] }]),
      ])) as [Tensor, Tensor, { nested: Tensor[] }];
      const loss = add(crossEntropy(add(out, side), LABELS), mean(mul(echoed.nested[0]!, echoed.nested[0]!)));
      await w0.distAutograd.backward(ctx, [loss]);
      const g = w0.distAutograd.getGradients(ctx);
      got.a = a.parameters().map((p) => g.get(p)?.data ?? null);
      got.b = (await w0.call('w1', 'grads', [ctx.id])) as (Float32Array | null)[];
      got.c = (await w0.call('w2', 'grads', [ctx.id])) as (Float32Array | null)[];
      got.d = (await w0.call('w2', 'sideGrads', [ctx.id])) as (Float32Array | null)[];
      t.deepEqual(world.map((w) => w.distAutograd.activeContexts()), [1, 1, 1]);
    });
    t.deepEqual(world.map((w) => w.distAutograd.activeContexts()), [0, 0, 0], 'released on every worker');

    const [la, lb, lc, ld] = [new Linear(4, 6, { seed: 10 }), new Linear(6, 5, { seed: 11 }), new Linear(5, 3, { seed: 12 }), new Linear(6, 3, { seed: 13 })];
    const h = la.forward(x);
    const loss = add(crossEntropy(add(lc.forward(relu(lb.forward(h))), ld.forward(h)), LABELS), mean(mul(h, h)));
    backward([loss]);
    for (const [k, lin] of [['a', la], ['b', lb], ['c', lc], ['d', ld]] as const) {
      lin.parameters().forEach((p, i) => close(t, got[k]![i] ?? undefined, p.grad?.data, `${k} param ${i}`));
    }
  } finally {
    await stopWorld(world);
  }
});

test('two concurrent trainers with their own contexts on one shared remote model both get their own gradients', async (t) => {
  const world = await startWorld(3);
  const [server, ...trainers] = world as [Agent, Agent, Agent];
  const model = mlp([4, 7, 3], { seed: 5 });
  server.register('forward', (x: Tensor) => model.forward(x));
  exposeGrads(server, 'grads', () => model);
  try {
    let arrived = 0;
    let go!: () => void;
    const bothForwarded = new Promise<void>((r) => { go = r; });
    const results = await Promise.all(trainers.map((tr, k) => tr.distAutograd.context(async (ctx) => {
      const out = (await tr.call('w0', 'forward', [input(4, 3 * k)])) as Tensor;
      // both forward passes are on the server's tape before either backward runs
      if (++arrived === 2) go();
      await bothForwarded;
      await tr.distAutograd.backward(ctx, [crossEntropy(out, LABELS)]);
      return (await tr.call('w0', 'grads', [ctx.id])) as (Float32Array | null)[];
    })));
    for (const [k, grads] of results.entries()) {
      const local = mlp([4, 7, 3], { seed: 5 });
      backward([crossEntropy(local.forward(input(4, 3 * k)), LABELS)]);
      local.parameters().forEach((p, i) => close(t, grads[i] ?? undefined, p.grad?.data, `trainer ${k} param ${i}`));
    }
    t.true(model.parameters().every((p) => p.grad === null));
    t.is(server.distAutograd.activeContexts(), 0);
  } finally {
    await stopWorld(world);
  }
});

test('an error in the remote backward rejects the caller\'s backward with RpcError; the context is still released', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world as [Agent, Agent];
  const fragile = customFunction({
    name: 'fragile',
    forward: ([x]) => x!.clone(),
    backward: () => { throw new Error('backward exploded'); },
  });
  w1.register('fragile', (x: Tensor) => fragile(x));
  try {
    const p = fromArray([1, 2, 3], [3], { requiresGrad: true });
    await w0.distAutograd.context(async (ctx) => {
      const y = (await w0.call('w1', 'fragile', [p])) as Tensor;
      const e = await t.throwsAsync(w0.distAutograd.backward(ctx, [sum(y)]), { instanceOf: RpcError });
      t.is(e!.worker, 'w1');
      t.regex(e!.message, /backward exploded/);
    });
    t.is(w0.distAutograd.activeContexts(), 0);
    t.is(w1.distAutograd.activeContexts(), 0);
  } finally {
    await stopWorld(world);
  }
});

test('calls outside a context record nothing; bad contexts and roots are clear errors', async (t) => {
  const world = await startWorld(2);
  const [w0, w1] = world as [Agent, Agent];
  w1.register('double', (x: Tensor) => mul(x, fromArray([2, 2], [2])));
  try {
    const p = fromArray([1, 2], [2], { requiresGrad: true });
    const y = (await w0.call('w1', 'double', [p])) as Tensor;
    t.false(y.requiresGrad);
    t.is(w1.distAutograd.activeContexts(), 0);

    // toHere() of a parameter inside a context: its gradient goes to the owner's context
    const owned = fromArray([3, -1], [2], { requiresGrad: true });
    w1.register('paramRef', () => w1.rref(owned));
    const pref = (await w0.call('w1', 'paramRef')) as RRef<Tensor>;
    await w0.distAutograd.context(async (c) => {
      const v = await pref.toHere();
      t.true(v.requiresGrad);
      await w0.distAutograd.backward(c, [sum(mul(v, v))]);
      t.deepEqual([...w1.distAutograd.getGradients(c.id).get(owned)!.data], [6, -2]);
    });
    await pref.release();

    const e1 = t.throws(() => w0.distAutograd.getGradients(12345), { instanceOf: RpcError });
    t.is(e1!.code, Status.NOT_FOUND);
    const ctx = w0.distAutograd.newContext();
    t.true(ctx.id >= 2 ** 32 * w0.rank);
    const other = w1.distAutograd.newContext();
    t.not(ctx.id, other.id, 'ids are unique across workers');
    await other.release();
    await t.throwsAsync(w0.distAutograd.backward(ctx, []), { instanceOf: RpcError, message: /roots/ });
    const z = await ctx.run(async () => {
      t.is(w0.distAutograd.current(), ctx);
      return (await w0.call('w1', 'double', [p])) as Tensor;
    });
    t.true(z.requiresGrad);
    t.is(w0.distAutograd.current(), undefined);
    await w0.distAutograd.backward(ctx, [sum(z)]);
    t.deepEqual([...w0.distAutograd.getGradients(ctx).get(p)!.data], [2, 2]);
    await w0.distAutograd.backward(ctx, [sum(z)]);
    t.deepEqual([...w0.distAutograd.getGradients(ctx.id).get(p)!.data], [4, 4], 'a second backward adds to the sums');
    t.is(p.grad, null);
    await ctx.release();
    await ctx.release();
    t.is(w1.distAutograd.activeContexts(), 0);
    await t.throwsAsync(w0.distAutograd.backward(ctx, [sum(z)]), { instanceOf: RpcError, message: /released/ });
    t.throws(() => ctx.run(() => 1), { instanceOf: RpcError, message: /released/ });
    t.is(w0.distAutograd.activeContexts(), 0);
  } finally {
    await stopWorld(world);
  }
});

test('module-level wrappers over the default agent; a call to oneself inside a context', async (t) => {
  const agent = await rpc.initDefault({ name: 'solo', rank: 0, worldSize: 1, master: '127.0.0.1:0' });
  try {
    const lin = new Linear(3, 2, { seed: 4 });
    rpc.register('apply', (x: Tensor) => relu(lin.forward(x)));
    const p = fromArray([0.5, -1, 2, 1, 0.25, -0.5], [2, 3], { requiresGrad: true });
    const opt = rpc.distributedOptimizer(SGD, lin.parameters().map((w) => agent.rref(w)), { lr: 0.5 });
    const before = lin.weight.data.slice();
    const grads = await rpc.distAutograd.context(async (ctx) => {
      t.is(rpc.distAutograd.current(), ctx);
      const y = (await rpc.call<Tensor>('solo', 'apply', [p]));
      await rpc.distAutograd.backward(ctx, [sum(y)]);
      await opt.step(ctx);
      return new Map([...rpc.distAutograd.getGradients(ctx)].map(([k, v]) => [k, v.data.slice()]));
    });
    const lp = p.detach().setRequiresGrad(true);
    const ll = new Linear(3, 2, { seed: 4 });
    backward([sum(relu(ll.forward(lp)))]);
    close(t, grads.get(p), lp.grad?.data, 'input');
    close(t, grads.get(lin.weight), ll.weight.grad?.data, 'weight (used on the same worker, through the wire)');
    const want = before.map((w, i) => w - 0.5 * ll.weight.grad!.data[i]!);
    close(t, lin.weight.data, want, 'weight after the optimizer step');
    t.is(agent.distAutograd.activeContexts(), 0);
    await opt.release();
  } finally {
    await rpc.shutdown();
  }
});
