// maxPool2d, avgPool2d and globalAvgPool2d: values and gradients against float64 definitions
// (overlapping windows, padding, strides), the backend's kernels against the TypeScript reference
// kernels, torch's tie and NaN rules, and the errors.
import test from 'ava';
import { avgPool2d, getBackend, globalAvgPool2d, maxPool2d, randn, ShapeError, Tensor, zeros, type Pool2dOptions } from '../../src/tensor/index.js';
import { jsKernels } from '../../src/tensor/backend-js.js';
import { close, gradCheck, refPool2d, type RefPool } from './gradcheck.js';

const cases: [string, RefPool][] = [
  ['2x2, stride 2', { planes: 6, h: 6, w: 4, k: [2, 2] }],
  ['3x3 overlapping, stride 1', { planes: 2, h: 5, w: 6, k: [3, 3], stride: [1, 1] }],
  ['3x3, stride 2, padding 1 (overlapping)', { planes: 4, h: 7, w: 6, k: [3, 3], stride: [2, 2], padding: [1, 1] }],
  ['rectangular 2x3, stride [1, 2], padding [1, 0]', { planes: 4, h: 5, w: 7, k: [2, 3], stride: [1, 2], padding: [1, 0] }],
  ['odd sizes dropping the last row and column (floor)', { planes: 2, h: 7, w: 5, k: [2, 2] }],
];

function opts(g: RefPool): Pool2dOptions {
  return { stride: g.stride, padding: g.padding };
}

for (const [name, g] of cases) {
  const shape = [2, g.planes / 2, g.h, g.w];
  test(`maxPool2d (${name}): forward and gradient match float64 finite differences`, (t) => {
    gradCheck(t, { shapes: [shape], op: ([x]) => maxPool2d(x!, g.k, opts(g)), ref: ([x]) => refPool2d(x!, g, 'max') });
  });
  for (const countIncludePad of [true, false]) {
    test(`avgPool2d (${name}, countIncludePad ${countIncludePad}): forward and gradient match float64 finite differences`, (t) => {
      gradCheck(t, { shapes: [shape], op: ([x]) => avgPool2d(x!, g.k, { ...opts(g), countIncludePad }), ref: ([x]) => refPool2d(x!, g, 'avg', countIncludePad) });
    });
  }
}

test('globalAvgPool2d is the mean of each plane, [n, c, 1, 1]; gradient by finite differences', (t) => {
  gradCheck(t, {
    shapes: [[2, 3, 4, 5]],
    op: ([x]) => globalAvgPool2d(x!),
    ref: ([x]) => refPool2d(x!, { planes: 6, h: 4, w: 5, k: [4, 5] }, 'avg'),
  });
  t.deepEqual(globalAvgPool2d(zeros([2, 3, 4, 5])).shape, [2, 3, 1, 1]);
});

test('maxPool2d follows torch: first maximum on ties, padding never wins, a NaN wins; its gradient goes to that one position', (t) => {
  // One plane 2x3 with ties; windows 2x2 stride 1 padding 1 see padding everywhere on the border.
  const x = new Tensor(Float32Array.from([1, 1, -5, -3, 1, -5]), [1, 1, 2, 3], { requiresGrad: true });
  const y = maxPool2d(x, 2, { stride: 1, padding: 1 });
  t.deepEqual(y.shape, [1, 1, 3, 4]);
  t.deepEqual(Array.from(y.data), [1, 1, 1, -5, 1, 1, 1, -5, -3, 1, 1, -5]);
  y.backward(new Float32Array(12).fill(1));
  // Each window's gradient lands on its first maximum in row-major order.
  t.deepEqual(Array.from(x.grad!.data), [4, 2, 2, 1, 2, 1]);
  const xn = new Tensor(Float32Array.from([1, NaN, 3, NaN]), [1, 1, 2, 2], { requiresGrad: true });
  const nan = maxPool2d(xn, 2);
  t.true(Number.isNaN(nan.data[0]!));
  nan.backward(Float32Array.of(1));
  t.deepEqual(Array.from(xn.grad!.data), [0, 1, 0, 0], 'the first NaN holds the maximum');
  const neg = maxPool2d(new Tensor(Float32Array.from([-Infinity, -Infinity, -Infinity, -Infinity]), [1, 1, 2, 2]), 2);
  t.is(neg.data[0], -Infinity);
});

test('gradients of the poolings accumulate into an input that feeds both', (t) => {
  const x = randn([1, 2, 4, 4], { seed: 5, requiresGrad: true });
  maxPool2d(x, 2).backward(new Float32Array(8).fill(1));
  const maxOnly = x.grad!.data.slice();
  x.zeroGrad();
  avgPool2d(x, 2).backward(new Float32Array(8).fill(1));
  const avgOnly = x.grad!.data.slice();
  x.zeroGrad();
  const a = maxPool2d(x, 2), b = avgPool2d(x, 2);
  a.backward(new Float32Array(8).fill(1));
  b.backward(new Float32Array(8).fill(1));
  close(t, x.grad!.data, maxOnly.map((v, i) => v + avgOnly[i]!), 1e-6, 'sum of both');
});

test('the backend pooling kernels agree with the TypeScript reference kernels, accumulate flags included', (t) => {
  const k = getBackend('cpu').kernels, js = jsKernels();
  for (const geometry of [[32, 28, 28, 2, 2, 2, 2, 0, 0], [6, 9, 8, 3, 3, 2, 2, 1, 1], [4, 7, 9, 3, 2, 1, 2, 1, 1]]) {
    const [planes, h, w, kh, kw, sh, sw, ph, pw] = geometry as [number, number, number, number, number, number, number, number, number];
    const oh = Math.floor((h + 2 * ph - kh) / sh) + 1, ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
    const x = randn([planes * h * w], { seed: planes }).data, dy = randn([planes * oh * ow], { seed: 2 }).data;
    const run = (kern: typeof js): ArrayLike<number>[] => {
      const y = new Float32Array(dy.length), idx = new Int32Array(dy.length), a = new Float32Array(dy.length), b = new Float32Array(dy.length);
      kern.maxPool2dForward(geometry, x, y, idx);
      kern.avgPool2dForward(geometry, x, a, true);
      kern.avgPool2dForward(geometry, x, b, false);
      const dx = new Float32Array(x.length).fill(0.5), da = new Float32Array(x.length).fill(0.5), db = new Float32Array(x.length).fill(NaN);
      kern.maxPool2dBackward(geometry, dy, idx, dx, true);
      kern.avgPool2dBackward(geometry, dy, da, true, true);
      kern.avgPool2dBackward(geometry, dy, db, false, false);
      return [y, idx, a, b, dx, da, db];
    };
    const got = run(k as typeof js), want = run(js);
    ['max', 'indices', 'avg', 'avg without padding', 'max dx +=', 'avg dx +=', 'avg dx'].forEach((what, i) => close(t, got[i]!, want[i]!, 1e-5, `${geometry}: ${what}`));
  }
});

test('pooling rejects bad ranks, windows larger than the padded input and bad options, and records nothing', (t) => {
  const x = zeros([2, 3, 4, 4], { requiresGrad: true });
  t.throws(() => maxPool2d(zeros([3, 4, 4]), 2), { instanceOf: ShapeError, message: /maxPool2d: got shape \[3, 4, 4\]; expected input of shape \[batch, channels, height, width\]/ });
  t.throws(() => avgPool2d(zeros([2, 3, 4, 4, 1]), 2), { instanceOf: ShapeError, message: /avgPool2d: got shape \[2, 3, 4, 4, 1\]/ });
  t.throws(() => globalAvgPool2d(zeros([2, 3])), { instanceOf: ShapeError, message: /globalAvgPool2d: got shape \[2, 3\]/ });
  t.throws(() => maxPool2d(x, 5), { instanceOf: ShapeError, message: /maxPool2d: got shape \[2, 3, 4, 4\]; expected a padded input of at least 5x5 \(the window\); it is 4x4/ });
  t.throws(() => avgPool2d(x, [2, 7], { padding: [0, 1] }), { instanceOf: ShapeError, message: /at least 2x7 \(the window\); it is 4x6/ });
  t.throws(() => maxPool2d(x, 0), { instanceOf: RangeError, message: /maxPool2d: kernelSize = 0 is invalid/ });
  t.throws(() => maxPool2d(x, 2, { stride: 0 }), { instanceOf: RangeError, message: /maxPool2d: stride = 0 is invalid/ });
  t.throws(() => maxPool2d(x, 2, { padding: 2 }), { instanceOf: RangeError, message: /maxPool2d: padding = \[2, 2\] is invalid; expected at most half the kernel size \[2, 2\]/ });
  t.throws(() => avgPool2d(x, 3, { padding: -1 }), { instanceOf: RangeError, message: /avgPool2d: padding = -1 is invalid/ });
  t.throws(() => avgPool2d(x, 2, { countIncludePad: 'yes' as unknown as boolean }), { instanceOf: RangeError, message: /countIncludePad = yes/ });
  t.throws(() => maxPool2d(zeros([2, 0, 4, 4]), 2), { instanceOf: ShapeError, message: /no empty dimension/ });
  t.is(x.grad, null);
});
