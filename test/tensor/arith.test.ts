import test from 'ava';
import { add, conv2d, mul, relu, sum, mean, ShapeError, zeros, randn, Tensor } from '../../src/tensor/index.js';
import { gradCheck, refConv2d } from './gradcheck.js';

test('add (equal shapes): forward and gradients', (t) => {
  gradCheck(t, { shapes: [[3, 4], [3, 4]], op: ([a, b]) => add(a!, b!), ref: ([a, b]) => a!.map((v, i) => v + b![i]!) });
});

test('add with a row vector broadcast over rows: forward and gradients', (t) => {
  gradCheck(t, { shapes: [[3, 4], [4]], op: ([a, b]) => add(a!, b!), ref: ([a, b]) => a!.map((v, i) => v + b![i % 4]!) });
});

test('mul: forward and gradients', (t) => {
  gradCheck(t, { shapes: [[3, 4], [3, 4]], op: ([a, b]) => mul(a!, b!), ref: ([a, b]) => a!.map((v, i) => v * b![i]!) });
});

test('sum and mean: forward and gradients', (t) => {
  gradCheck(t, { shapes: [[3, 4]], op: ([a]) => sum(a!), ref: ([a]) => Float64Array.of(a!.reduce((s, v) => s + v, 0)) });
  gradCheck(t, { shapes: [[3, 4]], op: ([a]) => mean(a!), ref: ([a]) => Float64Array.of(a!.reduce((s, v) => s + v, 0) / 12) });
});

test('the same tensor used twice gets both gradients: d(x*x)/dx = 2x, d(x+x)/dx = 2', (t) => {
  const x = randn([5], { seed: 2, requiresGrad: true });
  sum(mul(x, x)).backward();
  for (let i = 0; i < 5; i++) t.true(Math.abs(x.grad!.data[i]! - 2 * x.data[i]!) < 1e-6);
  x.zeroGrad();
  sum(add(x, x)).backward();
  t.deepEqual(Array.from(x.grad!.data), [2, 2, 2, 2, 2]);
});

test('add and mul reject incompatible shapes with ShapeError', (t) => {
  t.throws(() => add(zeros([3, 4]), zeros([3])), { instanceOf: ShapeError, message: /add: got shapes \[3, 4\], \[3\]/ });
  t.throws(() => mul(zeros([3, 4]), zeros([4])), { instanceOf: ShapeError, message: /mul/ });
  t.throws(() => mean(zeros([0])), { instanceOf: ShapeError });
});

test('a tensor that requires no grad gets none', (t) => {
  const a = randn([3], { seed: 1, requiresGrad: true });
  const b = new Tensor(Float32Array.of(1, 2, 3));
  sum(mul(a, b)).backward();
  t.deepEqual(Array.from(a.grad!.data), [1, 2, 3]);
  t.is(b.grad, null);
});

test('add on rank-4 tensors of equal shape (images): forward and gradients', (t) => {
  gradCheck(t, { shapes: [[2, 3, 4, 5], [2, 3, 4, 5]], op: ([a, b]) => add(a!, b!), ref: ([a, b]) => a!.map((v, i) => v + b![i]!) });
  t.throws(() => add(zeros([2, 3, 4, 5]), zeros([2, 3, 20])), { instanceOf: ShapeError, message: /add: got shapes \[2, 3, 4, 5\], \[2, 3, 20\]/ });
});

test('a residual block relu(conv2d(x) + x): forward and the gradients of x (two paths), weight and bias', (t) => {
  const g = { n: 2, c: 2, h: 4, w: 4, oc: 2, kh: 3, kw: 3, padding: [1, 1] as [number, number] };
  gradCheck(t, {
    shapes: [[2, 2, 4, 4], [2, 2, 3, 3], [2]],
    op: ([x, w, b]) => relu(add(conv2d(x!, w!, b!, { padding: 1 }), x!)),
    ref: ([x, w, b]) => refConv2d(x!, w!, b!, g).map((v, i) => Math.max(v + x![i]!, 0)),
    seed: 13,
  });
});
