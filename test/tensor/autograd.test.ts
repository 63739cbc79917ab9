import test from 'ava';
import { AutogradError, backward, crossEntropy, isGradEnabled, linear, mul, noGrad, enableGrad, randn, relu, ShapeError, sum, Tensor, zeros } from '../../src/tensor/index.js';

test('gradients accumulate across backward calls until zeroGrad', (t) => {
  const x = randn([4], { seed: 1, requiresGrad: true });
  sum(mul(x, x)).backward();
  const first = Array.from(x.grad!.data);
  sum(mul(x, x)).backward();
  x.grad!.data.forEach((v, i) => t.true(Math.abs(v - 2 * first[i]!) < 1e-6));
  x.zeroGrad();
  t.is(x.grad, null);
  sum(mul(x, x)).backward();
  x.grad!.data.forEach((v, i) => t.true(Math.abs(v - first[i]!) < 1e-6));
});

test('zeroGrad(false) keeps a zero-filled gradient; set-to-none reuses the storage', (t) => {
  const x = randn([3], { seed: 1, requiresGrad: true });
  sum(x).backward();
  const storage = x.grad!.data;
  x.zeroGrad(false);
  t.deepEqual(Array.from(x.grad!.data), [0, 0, 0]);
  x.zeroGrad();
  sum(x).backward();
  t.is(x.grad!.data, storage);
  t.deepEqual(Array.from(x.grad!.data), [1, 1, 1]);
});

test('noGrad records nothing and restores the mode, even when fn throws', (t) => {
  const x = randn([2, 3], { seed: 1, requiresGrad: true });
  const y = noGrad(() => relu(x));
  t.false(y.requiresGrad);
  t.is(y.gradFn, null);
  t.true(isGradEnabled());
  t.throws(() => noGrad(() => { throw new Error('boom'); }));
  t.true(isGradEnabled());
  noGrad(() => t.true(enableGrad(() => relu(x)).requiresGrad));
  t.false(relu(randn([2], { seed: 2 })).requiresGrad, 'no input requires grad: untracked');
});

test('backward from a non-scalar needs a gradient of the right size; errors leave grads untouched', (t) => {
  const x = randn([2, 3], { seed: 1, requiresGrad: true });
  const y = relu(x);
  t.throws(() => y.backward(), { instanceOf: AutogradError, message: /shape \[2, 3\]; a gradient is needed/ });
  t.throws(() => y.backward(new Float32Array(5)), { instanceOf: ShapeError, message: /backward/ });
  t.throws(() => zeros([1]).backward(), { instanceOf: AutogradError, message: /does not require grad/ });
  t.is(x.grad, null);
  y.backward(new Float32Array(6).fill(1));
  t.truthy(x.grad);
});

test('a released graph cannot be run twice; retainGraph keeps it', (t) => {
  const x = randn([3, 4], { seed: 1, requiresGrad: true });
  const loss = crossEntropy(x, Int32Array.from([0, 1, 2]));
  loss.backward();
  t.throws(() => loss.backward(), { instanceOf: AutogradError, message: /already used by a backward and released/ });
  const x2 = randn([3, 4], { seed: 1, requiresGrad: true });
  const loss2 = crossEntropy(x2, Int32Array.from([0, 1, 2]));
  backward([loss2], undefined, { retainGraph: true });
  const once = Array.from(x2.grad!.data);
  loss2.backward();
  x2.grad!.data.forEach((v, i) => t.true(Math.abs(v - 2 * once[i]!) < 1e-6));
});

test('backward into a map leaves .grad alone and sums per leaf (distributed autograd contexts)', (t) => {
  const x = randn([2, 3], { seed: 1, requiresGrad: true });
  const w = randn([4, 3], { seed: 2, requiresGrad: true });
  const y = linear(x, w);
  const g = new Float32Array(8).fill(1);
  const into = new Map<Tensor, Float32Array>();
  backward([y], [g], { into, retainGraph: true });
  t.is(x.grad, null);
  t.is(w.grad, null);
  t.is(into.size, 2);
  y.backward(g);
  t.deepEqual(Array.from(into.get(w)!), Array.from(w.grad!.data));
  t.deepEqual(Array.from(into.get(x)!), Array.from(x.grad!.data));
});

test('backward can start in the middle of a graph from several (tensor, gradient) roots', (t) => {
  // h = relu(x W^T); resume from h with a given gradient, as a worker does when gradients return over RPC.
  const x = randn([2, 3], { seed: 1, requiresGrad: true });
  const w = randn([4, 3], { seed: 2, requiresGrad: true });
  const h = relu(linear(x, w));
  const a = randn([2], { seed: 3, requiresGrad: true });
  const gh = randn([2, 4], { seed: 4 });
  const into = new Map<Tensor, Float32Array>();
  backward([h, a], [gh, Float32Array.of(1, 2)], { into });
  t.deepEqual(Array.from(into.get(a)!), [1, 2]);
  // Reference: dW = (gh * (h > 0))^T x
  const dW = new Float32Array(12);
  for (let r = 0; r < 2; r++) for (let o = 0; o < 4; o++) {
    const gz = h.data[r * 4 + o]! > 0 ? gh.data[r * 4 + o]! : 0;
    for (let i = 0; i < 3; i++) dW[o * 3 + i]! += gz * x.data[r * 3 + i]!;
  }
  into.get(w)!.forEach((v, i) => t.true(Math.abs(v - dW[i]!) < 1e-5));
});

test('the caller\'s gradient array is not modified by backward', (t) => {
  const x = randn([4], { seed: 1, requiresGrad: true });
  const g = Float32Array.of(1, -1, 2, -2);
  relu(x).backward(g);
  t.deepEqual(Array.from(g), [1, -1, 2, -2]);
});
