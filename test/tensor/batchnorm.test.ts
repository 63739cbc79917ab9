// batchNorm2d: training and evaluation values and gradients against float64 definitions, the
// running statistics and momentum, the backend's kernels against the TypeScript reference, errors.
import test from 'ava';
import { batchNorm2d, getBackend, randn, ShapeError, Tensor, uniform, zeros } from '../../src/tensor/index.js';
import { jsKernels } from '../../src/tensor/backend-js.js';
import { close, gradCheck, refBatchNorm } from './gradcheck.js';

test('batchNorm2d training on [n, c, h, w]: forward and gradients of x, weight and bias match float64 finite differences', (t) => {
  gradCheck(t, {
    shapes: [[3, 2, 3, 2], [2], [2]],
    op: ([x, w, b]) => batchNorm2d(x!, w!, b!, null, null, { training: true }),
    ref: ([x, w, b]) => refBatchNorm(x!, w!, b!, 3, 2, 6, 1e-5),
  });
});

test('batchNorm2d training on [n, c] rows and without affine parameters', (t) => {
  gradCheck(t, {
    shapes: [[5, 3], [3], [3]],
    op: ([x, w, b]) => batchNorm2d(x!, w!, b!, null, null, { training: true, eps: 1e-3 }),
    ref: ([x, w, b]) => refBatchNorm(x!, w!, b!, 5, 3, 1, 1e-3),
    seed: 4,
  });
  gradCheck(t, {
    shapes: [[2, 3, 2, 2]],
    op: ([x]) => batchNorm2d(x!, null, null, null, null, { training: true }),
    ref: ([x]) => refBatchNorm(x!, null, null, 2, 3, 4, 1e-5),
    seed: 5,
  });
});

test('batchNorm2d evaluation normalises with the running statistics; gradients match finite differences', (t) => {
  const mean = Float32Array.from([0.3, -0.2]), variance = Float32Array.from([0.5, 2]);
  const rm = new Tensor(mean.slice()), rv = new Tensor(variance.slice());
  gradCheck(t, {
    shapes: [[2, 2, 3, 3], [2], [2]],
    op: ([x, w, b]) => batchNorm2d(x!, w!, b!, rm, rv, { training: false }),
    ref: ([x, w, b]) => refBatchNorm(x!, w!, b!, 2, 2, 9, 1e-5, { mean, var: variance }),
  });
  t.deepEqual(Array.from(rm.data), Array.from(mean), 'evaluation leaves the running mean alone');
  t.deepEqual(Array.from(rv.data), Array.from(variance), 'and the running variance');
});

test('batchNorm2d training folds the batch statistics into the running ones with momentum (unbiased variance)', (t) => {
  for (const momentum of [0.1, 0.5, 1]) {
    const x = uniform([4, 3, 2, 5], -2, 3, { seed: 9 });
    const rm = new Tensor(Float32Array.from([1, 2, 3])), rv = new Tensor(Float32Array.from([1, 0.5, 4]));
    const y = batchNorm2d(x, null, null, rm, rv, { training: true, momentum });
    close(t, y.data, refBatchNorm(x.data, null, null, 4, 3, 10, 1e-5), 1e-5, 'normalised with the batch statistics');
    const m = 4 * 10;
    for (let c = 0; c < 3; c++) {
      const vals: number[] = [];
      for (let b = 0; b < 4; b++) for (let i = 0; i < 10; i++) vals.push(x.data[(b * 3 + c) * 10 + i]!);
      const mu = vals.reduce((a, v) => a + v, 0) / m;
      const unbiased = vals.reduce((a, v) => a + (v - mu) ** 2, 0) / (m - 1);
      const wantMean = (1 - momentum) * [1, 2, 3][c]! + momentum * mu;
      const wantVar = (1 - momentum) * [1, 0.5, 4][c]! + momentum * unbiased;
      t.true(Math.abs(rm.data[c]! - wantMean) < 1e-5, `running mean ${c} at momentum ${momentum}: ${rm.data[c]} vs ${wantMean}`);
      t.true(Math.abs(rv.data[c]! - wantVar) < 1e-5, `running var ${c} at momentum ${momentum}: ${rv.data[c]} vs ${wantVar}`);
    }
  }
});

test('batchNorm2d gradients accumulate over two backwards', (t) => {
  const x = randn([3, 2, 2, 2], { seed: 1, requiresGrad: true });
  const w = randn([2], { seed: 2, requiresGrad: true });
  const b = randn([2], { seed: 3, requiresGrad: true });
  const g = randn([24], { seed: 4 }).data;
  batchNorm2d(x, w, b, null, null, { training: true }).backward(g);
  const once = [x, w, b].map((p) => p.grad!.data.slice());
  batchNorm2d(x, w, b, null, null, { training: true }).backward(g);
  [x, w, b].forEach((p, i) => close(t, p.grad!.data, once[i]!.map((v) => 2 * v), 1e-5, `input ${i}`));
});

test('the backend batch-norm kernels agree with the TypeScript reference kernels, in both modes and with accumulate flags', (t) => {
  const k = getBackend('cpu').kernels, js = jsKernels();
  const [n, c, hw] = [8, 16, 49];
  const x = uniform([n * c * hw], -1, 3, { seed: 1 }).data, dy = randn([n * c * hw], { seed: 2 }).data;
  const gamma = uniform([c], 0.5, 1.5, { seed: 3 }).data, beta = randn([c], { seed: 4 }).data;
  for (const training of [true, false]) {
    const run = (kern: typeof js): Float32Array[] => {
      const y = new Float32Array(x.length), sm = new Float32Array(c), si = new Float32Array(c);
      const rm = uniform([c], -0.5, 0.5, { seed: 5 }).data, rv = uniform([c], 0.5, 2, { seed: 6 }).data;
      kern.batchNormForward(x, y, gamma, beta, sm, si, rm, rv, n, c, hw, training, 0.1, 1e-5);
      const dx = new Float32Array(x.length).fill(0.5), dg = new Float32Array(c).fill(1), db = new Float32Array(c).fill(-1);
      kern.batchNormBackward(x, dy, gamma, sm, si, dx, dg, db, n, c, hw, training, true, true, true);
      const dx2 = new Float32Array(x.length).fill(NaN), dg2 = new Float32Array(c).fill(NaN), db2 = new Float32Array(c).fill(NaN);
      kern.batchNormBackward(x, dy, null, sm, si, dx2, dg2, db2, n, c, hw, training, false, false, false);
      return [y, sm, si, rm, rv, dx, dg, db, dx2, dg2, db2];
    };
    const got = run(k as typeof js), want = run(js);
    ['y', 'saveMean', 'saveInvstd', 'runningMean', 'runningVar', 'dx +=', 'dgamma +=', 'dbeta +=', 'dx', 'dgamma', 'dbeta']
      .forEach((what, i) => close(t, got[i]!, want[i]!, 1e-4, `training ${training}: ${what}`));
  }
});

test('batchNorm2d rejects bad shapes, missing statistics and bad options, naming them, and changes nothing', (t) => {
  const x = randn([2, 3, 2, 2], { seed: 1, requiresGrad: true });
  const rm = zeros([3]), rv = new Tensor(new Float32Array(3).fill(1));
  t.throws(() => batchNorm2d(zeros([3]), null, null, null, null, { training: true }), { instanceOf: ShapeError, message: /batchNorm2d: got shape \[3\]; expected input of shape \[batch, channels, \.\.\.\]/ });
  t.throws(() => batchNorm2d(x, zeros([2]), null, null, null, { training: true }), { instanceOf: ShapeError, message: /batchNorm2d: got shapes \[2, 3, 2, 2\], \[2\]; expected weight of shape \[3\]/ });
  t.throws(() => batchNorm2d(x, null, zeros([3, 1]), null, null, { training: true }), { instanceOf: ShapeError, message: /expected bias of shape \[3\]/ });
  t.throws(() => batchNorm2d(x, null, null, zeros([4]), zeros([4]), { training: true }), { instanceOf: ShapeError, message: /expected runningMean of shape \[3\]/ });
  t.throws(() => batchNorm2d(x, null, null, rm, null, { training: true }), { instanceOf: RangeError, message: /both be given or both be null/ });
  t.throws(() => batchNorm2d(x, null, null, null, null, { training: false }), { instanceOf: RangeError, message: /batchNorm2d: evaluation .* pass runningMean and runningVar/ });
  t.throws(() => batchNorm2d(zeros([1, 3, 1, 1]), null, null, null, null, { training: true }), { instanceOf: ShapeError, message: /more than one value per channel when training/ });
  t.notThrows(() => batchNorm2d(zeros([1, 3, 1, 1]), null, null, rm, rv, { training: false }));
  t.throws(() => batchNorm2d(x, null, null, rm, rv, { training: true, momentum: 1.5 }), { instanceOf: RangeError, message: /batchNorm2d: momentum = 1.5 is invalid/ });
  t.throws(() => batchNorm2d(x, null, null, rm, rv, { training: true, eps: -1 }), { instanceOf: RangeError, message: /batchNorm2d: eps = -1 is invalid/ });
  t.throws(() => batchNorm2d(x, null, null, rm, rv, { training: 1 as unknown as boolean }), { instanceOf: RangeError, message: /training = 1/ });
  t.throws(() => batchNorm2d(x, null, null, zeros([3], { requiresGrad: true }), rv, { training: true }), { instanceOf: RangeError, message: /runningMean requires grad/ });
  t.deepEqual(Array.from(rm.data), [0, 0, 0]);
  t.deepEqual(Array.from(rv.data), [1, 1, 1]);
  t.is(x.grad, null);
});
