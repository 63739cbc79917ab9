import test from 'ava';
import { crossEntropy, mlp, onGradReady, Tensor, type Labels } from '../../src/tensor/index.js';

test('onGradReady fires once per leaf as soon as its gradient is complete, last layer first, while backward goes on', (t) => {
  const model = mlp([6, 5, 4, 3], { seed: 1 });
  const named = model.namedParameters();
  const order: string[] = [];
  const atFire = new Map<string, Float32Array>();
  const removers = named.map(([name, p]) => onGradReady(p, (leaf) => {
    t.is(leaf, p);
    order.push(name);
    atFire.set(name, (p.grad!.data as Float32Array).slice());
  }));
  const x = new Tensor(Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)), [2, 6]);
  crossEntropy(model.forward(x), Int32Array.of(0, 2) as Labels).backward();
  t.is(order.length, named.length, 'every parameter fired once');
  // the output layer's gradients are complete before the first layer's are computed
  t.true(order.indexOf(named[named.length - 1]![0]) < order.indexOf(named[0]![0]));
  for (const [name, p] of named) t.deepEqual(atFire.get(name), p.grad!.data, `${name}: the gradient at the hook is the final one`);
  // a leaf that a pass does not reach gets no call
  order.length = 0;
  const lone = new Tensor(Float32Array.of(1, 2), [2], { requiresGrad: true });
  const remove = onGradReady(lone, () => order.push('lone'));
  crossEntropy(model.forward(x), Int32Array.of(1, 1) as Labels).backward();
  t.false(order.includes('lone'));
  t.throws(() => onGradReady(lone, () => {}), { message: /has a hook already/ });
  remove();
  for (const r of removers) r();
  order.length = 0;
  crossEntropy(model.forward(x), Int32Array.of(1, 1) as Labels).backward();
  t.is(order.length, 0, 'removed hooks stay silent');
});
