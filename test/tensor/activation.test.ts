import test from 'ava';
import { relu, dropout, getBackend, randn, zeros, add } from '../../src/tensor/index.js';
import { gradCheck } from './gradcheck.js';

test('relu: forward and gradient match float64 finite differences (away from the kink)', (t) => {
  gradCheck(t, {
    shapes: [[6, 5]],
    op: ([x]) => relu(x!),
    ref: ([x]) => x!.map((v) => Math.max(v, 0)),
    draw: (g) => (g.uniform() < 0.5 ? -1 : 1) * g.uniformIn(0.05, 1),
  });
});

test('dropout: mask follows the kernels generator (seed, offset); kept values are scaled by 1/(1-p); gradient matches', (t) => {
  const p = 0.3, seed = 42, offset = 1000;
  const k = getBackend('cpu').kernels;
  const keep = (i: number): number => (k.uniformAt(seed, offset + i) >= p ? 1 / (1 - p) : 0);
  gradCheck(t, {
    shapes: [[8, 9]],
    op: ([x]) => dropout(x!, { p, seed, offset }),
    ref: ([x]) => x!.map((v, i) => v * keep(i)),
  });
});

test('dropout drops about p of the elements, differs across offsets, and is the identity in eval mode or with p = 0', (t) => {
  const x = randn([100, 100], { seed: 3 });
  const y = dropout(x, { p: 0.25, seed: 9 });
  let dropped = 0;
  for (let i = 0; i < y.size; i++) if (y.data[i] === 0) dropped++;
  t.true(Math.abs(dropped / y.size - 0.25) < 0.02, `dropped fraction ${dropped / y.size}`);
  const y2 = dropout(x, { p: 0.25, seed: 9, offset: x.size });
  t.notDeepEqual(Array.from(y.data), Array.from(y2.data));
  t.deepEqual(Array.from(dropout(x, { p: 0.25, seed: 9 }).data), Array.from(y.data));
  t.is(dropout(x, { p: 0.5, training: false }), x);
  t.is(dropout(x, { p: 0 }), x);
});

test('dropout rejects p outside [0, 1) and bad seeds, naming the value', (t) => {
  t.throws(() => dropout(zeros([2]), { p: 1 }), { instanceOf: RangeError, message: /dropout: p = 1 is invalid/ });
  t.throws(() => dropout(zeros([2]), { p: -0.1 }), { instanceOf: RangeError });
  t.throws(() => dropout(zeros([2]), { p: 0.5, seed: -1 }), { instanceOf: RangeError, message: /seed = -1/ });
});

test('relu backward works in place without disturbing a second consumer of the same gradient', (t) => {
  // y = relu(x) + x: the gradient of the sum reaches relu and x; relu rewrites its copy in place.
  const x = randn([3, 4], { seed: 5, requiresGrad: true });
  add(relu(x), x).backward(new Float32Array(12).fill(1));
  for (let i = 0; i < 12; i++) t.is(x.grad!.data[i], x.data[i]! > 0 ? 2 : 1);
});

test('relu and dropout on rank-4 tensors: forward and gradients match float64 finite differences', (t) => {
  gradCheck(t, {
    shapes: [[2, 3, 4, 5]],
    op: ([x]) => relu(x!),
    ref: ([x]) => x!.map((v) => Math.max(v, 0)),
    draw: (g) => (g.uniform() < 0.5 ? -1 : 1) * g.uniformIn(0.05, 1),
  });
  const k = getBackend('cpu').kernels;
  const keep = (i: number): number => (k.uniformAt(3, i) >= 0.4 ? 1 / 0.6 : 0);
  gradCheck(t, {
    shapes: [[2, 3, 4, 5]],
    op: ([x]) => {
      const y = dropout(x!, { p: 0.4, seed: 3 });
      t.deepEqual(y.shape, [2, 3, 4, 5]);
      return y;
    },
    ref: ([x]) => x!.map((v, i) => v * keep(i)),
  });
});
