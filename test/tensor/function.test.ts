import test from 'ava';
import { add, attachBackward, AutogradError, backward, customFunction, mul, randn, relu, ShapeError, sum, Tensor } from '../../src/tensor/index.js';

test('customFunction: forward runs untracked, backward closure supplies the input gradients', (t) => {
  const square = customFunction<Tensor>({
    name: 'square',
    forward: ([x], save) => {
      save(x!);
      const y = mul(x!, x!);
      t.false(y.requiresGrad, 'ops inside forward are not recorded');
      return y;
    },
    backward: (g, x) => [mul(add(x!, x!), g)],
  });
  const x = randn([5], { seed: 1, requiresGrad: true });
  const y = square(x);
  t.true(y.requiresGrad);
  t.is(y.gradFn!.name, 'square');
  sum(relu(y)).backward();
  x.grad!.data.forEach((v, i) => t.true(Math.abs(v - 2 * x.data[i]!) < 1e-6));
});

test('a custom backward may return null for an input and may keep the gradient it received', (t) => {
  const kept: Tensor[] = [];
  const send = customFunction({
    name: 'send',
    forward: ([a]) => a!.clone(),
    backward: (g) => {
      kept.push(g);
      return [null];
    },
  });
  const a = randn([3], { seed: 1, requiresGrad: true });
  const y = send(a);
  y.backward(Float32Array.of(1, 2, 3));
  t.deepEqual(Array.from(kept[0]!.data), [1, 2, 3]);
  t.is(a.grad, null);
});

test('a custom backward returning the wrong number or size of gradients fails with a clear error', (t) => {
  const bad = customFunction({ name: 'bad', forward: ([a]) => a!.clone(), backward: () => [] });
  t.throws(() => bad(randn([2], { requiresGrad: true })).backward(Float32Array.of(1, 1)), { instanceOf: AutogradError, message: /bad: backward returned 0 gradients; expected 1/ });
  const badSize = customFunction({ name: 'badSize', forward: ([a]) => a!.clone(), backward: () => [new Float32Array(3)] });
  t.throws(() => badSize(randn([2], { requiresGrad: true })).backward(Float32Array.of(1, 1)), { instanceOf: ShapeError, message: /badSize/ });
});

test('attachBackward connects a value computed elsewhere (an RPC result) to its inputs', (t) => {
  const x = randn([3], { seed: 2, requiresGrad: true });
  const remote = new Tensor(x.data.map((v) => 3 * v)); // computed "remotely": y = 3x
  const y = attachBackward(remote, [x], 'recv', (g) => [g.data.map((v) => 3 * v)]);
  t.is(y, remote);
  const into = new Map<Tensor, Float32Array>();
  backward([y], [Float32Array.of(1, 1, 1)], { into });
  t.deepEqual(Array.from(into.get(x)!), [3, 3, 3]);
});

test('a custom forward that returns its input is refused (it would rewire the input into the graph)', (t) => {
  const same = customFunction({ name: 'same', forward: ([a]) => a!, backward: (g) => [g] });
  const a = randn([2], { requiresGrad: true });
  t.throws(() => same(a), { instanceOf: AutogradError, message: /same: forward returned an input/ });
  t.true(a.isLeaf);
});
