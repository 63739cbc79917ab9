// conv2d and conv2dRelu: values and gradients against float64 definitions, the backend's kernels
// against the TypeScript reference kernels, accumulation, and the errors.
import test from 'ava';
import { conv2d, conv2dRelu, conv2dOutput, getBackend, randn, ShapeError, Tensor, tensor, zeros, type Conv2dOptions } from '../../src/tensor/index.js';
import { jsKernels } from '../../src/tensor/backend-js.js';
import { close, gradCheck, refConv2d, refConvOut, type RefConv } from './gradcheck.js';

const cases: [string, RefConv][] = [
  ['plain 3x3', { n: 2, c: 3, h: 5, w: 6, oc: 4, kh: 3, kw: 3 }],
  ['padding and stride 2', { n: 2, c: 2, h: 7, w: 6, oc: 3, kh: 3, kw: 3, stride: [2, 2], padding: [1, 1] }],
  ['rectangular kernel, stride and padding', { n: 1, c: 2, h: 6, w: 7, oc: 2, kh: 2, kw: 3, stride: [1, 2], padding: [1, 0] }],
  ['dilation 2 with padding', { n: 2, c: 2, h: 7, w: 7, oc: 3, kh: 3, kw: 3, dilation: [2, 2], padding: [2, 1] }],
  ['groups 2', { n: 2, c: 4, h: 5, w: 5, oc: 6, kh: 3, kw: 3, groups: 2, padding: [1, 1] }],
  ['depthwise (groups = channels), stride 2', { n: 1, c: 3, h: 6, w: 6, oc: 3, kh: 3, kw: 3, groups: 3, stride: [2, 2] }],
  ['kernel as large as the padded input', { n: 2, c: 1, h: 3, w: 2, oc: 2, kh: 5, kw: 4, padding: [1, 1] }],
  ['1x1 kernel', { n: 3, c: 4, h: 2, w: 3, oc: 5, kh: 1, kw: 1 }],
];

function optionsOf(g: RefConv): Conv2dOptions {
  return { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
}

function wShape(g: RefConv): number[] {
  return [g.oc, g.c / (g.groups ?? 1), g.kh, g.kw];
}

for (const [name, g] of cases) {
  test(`conv2d (${name}): forward and gradients of x, weight and bias match float64 finite differences`, (t) => {
    gradCheck(t, {
      shapes: [[g.n, g.c, g.h, g.w], wShape(g), [g.oc]],
      op: ([x, w, b]) => conv2d(x!, w!, b!, optionsOf(g)),
      ref: ([x, w, b]) => refConv2d(x!, w!, b!, g),
    });
  });
}

test('conv2d without bias, and the output shape', (t) => {
  const g: RefConv = { n: 2, c: 2, h: 5, w: 4, oc: 3, kh: 2, kw: 2, stride: [2, 1] };
  gradCheck(t, {
    shapes: [[2, 2, 5, 4], wShape(g)],
    op: ([x, w]) => conv2d(x!, w!, null, { stride: [2, 1] }),
    ref: ([x, w]) => refConv2d(x!, w!, null, g),
  });
  t.deepEqual(conv2d(zeros([2, 2, 5, 4]), zeros(wShape(g)), null, { stride: [2, 1] }).shape, [2, 3, ...refConvOut(g)]);
  t.deepEqual(conv2dOutput([2, 2, 5, 4, 3, 2, 2, 2, 1, 0, 0, 1, 1, 1]), [2, 3]);
  t.is(conv2dOutput([1, 1, 2, 2, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1]), null);
});

test('conv2dRelu (fused) equals relu(conv2d): forward and gradients match float64 finite differences', (t) => {
  const g: RefConv = { n: 2, c: 4, h: 6, w: 5, oc: 4, kh: 3, kw: 3, padding: [1, 1], groups: 2, dilation: [1, 2] };
  gradCheck(t, {
    shapes: [[g.n, g.c, g.h, g.w], wShape(g), [g.oc]],
    op: ([x, w, b]) => conv2dRelu(x!, w!, b!, optionsOf(g)),
    ref: ([x, w, b]) => refConv2d(x!, w!, b!, g).map((v) => Math.max(v, 0)),
    seed: 11,
  });
});

test('the backend conv kernels agree with the TypeScript reference kernels on the cnn preset\'s second layer, accumulate flags included', (t) => {
  const k = getBackend('cpu').kernels, js = jsKernels();
  const geometry = [3, 16, 14, 14, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1];
  const x = randn([3, 16, 14, 14], { seed: 1 }).data, w = randn([32, 16, 5, 5], { seed: 2, std: 0.1 }).data, b = randn([32], { seed: 3 }).data;
  const dy = randn([3, 32, 14, 14], { seed: 4 }).data;
  const col = new Float32Array(Math.max(1, k.conv2dWorkspace(geometry)));
  const run = (kern: typeof js, c: Float32Array): Float32Array[] => {
    const y = new Float32Array(dy.length);
    kern.conv2dForward(geometry, x, w, b, y, c);
    const dx = new Float32Array(x.length).fill(0.5), dw = new Float32Array(w.length).fill(-0.25), db = new Float32Array(32).fill(2);
    kern.conv2dBackwardInput(geometry, dy, w, dx, c, true);
    kern.conv2dBackwardWeight(geometry, x, dy, dw, db, c, true, true);
    const dx2 = new Float32Array(x.length).fill(NaN), dw2 = new Float32Array(w.length).fill(NaN), db2 = new Float32Array(32).fill(NaN);
    kern.conv2dBackwardInput(geometry, dy, w, dx2, c, false);
    kern.conv2dBackwardWeight(geometry, x, dy, dw2, db2, c, false, false);
    return [y, dx, dw, db, dx2, dw2, db2];
  };
  const got = run(k as typeof js, col), want = run(js, new Float32Array(0));
  ['y', 'dx +=', 'dweight +=', 'dbias +=', 'dx', 'dweight', 'dbias'].forEach((what, i) => close(t, got[i]!, want[i]!, 1e-4, what));
});

test('conv2d gradients accumulate: over two backwards, and when x feeds two convolutions', (t) => {
  const x = randn([2, 2, 5, 5], { seed: 1, requiresGrad: true });
  const w = randn([3, 2, 3, 3], { seed: 2, requiresGrad: true });
  const b = randn([3], { seed: 3, requiresGrad: true });
  const ones = new Float32Array(2 * 3 * 3 * 3).fill(1);
  conv2d(x, w, b).backward(ones);
  const [gx, gw, gb] = [x, w, b].map((p) => p.grad!.data.slice());
  conv2d(x, w, b).backward(ones);
  for (const [p, once] of [[x, gx], [w, gw], [b, gb]] as const) close(t, p.grad!.data, once!.map((v) => 2 * v), 1e-5, 'twice');
  for (const p of [x, w, b]) p.zeroGrad();
  const y1 = conv2d(x, w, b), y2 = conv2d(x, w, b);
  y1.backward(ones);
  y2.backward(ones);
  close(t, x.grad!.data, gx!.map((v) => 2 * v), 1e-5, 'x through two convolutions');
});

test('conv2d trains a bias whose weight is frozen, and an input with frozen parameters', (t) => {
  const x = randn([2, 2, 4, 4], { seed: 1 });
  const w = randn([3, 2, 3, 3], { seed: 2 });
  const b = zeros([3], { requiresGrad: true });
  conv2d(x, w, b).backward(new Float32Array(2 * 3 * 2 * 2).fill(1));
  t.deepEqual(Array.from(b.grad!.data), [8, 8, 8]);
  t.is(w.grad, null);
  const xi = randn([1, 2, 4, 4], { seed: 3, requiresGrad: true });
  const g: RefConv = { n: 1, c: 2, h: 4, w: 4, oc: 3, kh: 3, kw: 3, padding: [1, 1] };
  conv2d(xi, w, null, { padding: 1 }).backward(new Float32Array(3 * 16).fill(1));
  // d/dx of sum(conv) at each pixel = the sum of the weights whose taps reach it, by finite differences of the reference.
  const base = refConv2d(xi.data, w.data, null, g).reduce((a, v) => a + v, 0);
  const num = Array.from(xi.data, (v, i) => {
    const xs = Float64Array.from(xi.data);
    xs[i] = v + 1;
    return refConv2d(xs, w.data, null, g).reduce((a, s) => a + s, 0) - base;
  });
  close(t, xi.grad!.data, num, 1e-4, 'input gradient');
});

test('conv2d rejects bad ranks, channel mismatches, oversized kernels and bad options, naming the shapes, and records nothing', (t) => {
  const x = zeros([2, 3, 8, 8], { requiresGrad: true });
  const w = zeros([4, 3, 3, 3], { requiresGrad: true });
  t.throws(() => conv2d(zeros([3, 8, 8]), w), { instanceOf: ShapeError, message: /conv2d: got shapes \[3, 8, 8\], \[4, 3, 3, 3\]; expected input of shape \[batch, channels, height, width\]/ });
  t.throws(() => conv2d(x, zeros([4, 3, 3])), { instanceOf: ShapeError, message: /\[2, 3, 8, 8\], \[4, 3, 3\]; expected weight of shape/ });
  t.throws(() => conv2d(zeros([2, 2, 8, 8]), w), { instanceOf: ShapeError, message: /conv2d: got shapes \[2, 2, 8, 8\], \[4, 3, 3, 3\]; expected input with 3 channels/ });
  t.throws(() => conv2d(x, w, null, { groups: 3 }), { instanceOf: ShapeError, message: /\[2, 3, 8, 8\], \[4, 3, 3, 3\]; expected input channels \(3\) and output channels \(4\) divisible by groups = 3/ });
  t.throws(() => conv2d(x, zeros([4, 1, 3, 3]), null, { groups: 3 }), { instanceOf: ShapeError, message: /divisible by groups/ });
  t.throws(() => conv2d(x, w, zeros([3])), { instanceOf: ShapeError, message: /\[2, 3, 8, 8\], \[4, 3, 3, 3\], \[3\]; expected bias of shape \[4\]/ });
  t.throws(() => conv2d(zeros([1, 3, 2, 2]), w), { instanceOf: ShapeError, message: /conv2d: got shapes \[1, 3, 2, 2\], \[4, 3, 3, 3\]; expected a padded input of at least 3x3 \(the dilated kernel\); it is 2x2/ });
  t.throws(() => conv2d(x, w, null, { dilation: 4 }), { instanceOf: ShapeError, message: /at least 9x9 \(the dilated kernel\); it is 8x8/ });
  t.notThrows(() => conv2d(zeros([1, 3, 2, 2]), w, null, { padding: 1 }));
  t.throws(() => conv2d(x, w, null, { stride: 0 }), { instanceOf: RangeError, message: /conv2d: stride = 0 is invalid; expected an integer >= 1/ });
  t.throws(() => conv2d(x, w, null, { padding: -1 }), { instanceOf: RangeError, message: /conv2d: padding = -1 is invalid; expected an integer >= 0/ });
  t.throws(() => conv2d(x, w, null, { stride: [1, 1.5] as unknown as [number, number] }), { instanceOf: RangeError, message: /stride = \[1, 1.5\]/ });
  t.throws(() => conv2d(x, w, null, { dilation: [1] as unknown as [number, number] }), { instanceOf: RangeError, message: /dilation = \[1\]/ });
  t.throws(() => conv2d(x, w, null, { groups: 0 }), { instanceOf: RangeError, message: /conv2d: groups = 0 is invalid/ });
  t.throws(() => conv2d(zeros([0, 3, 8, 8]), w), { instanceOf: ShapeError, message: /no empty dimension/ });
  t.throws(() => conv2d(tensor(new Int32Array(2 * 3 * 64), [2, 3, 8, 8]) as unknown as Tensor, w), { message: /conv2d: input has dtype int32; expected float32/ });
  t.throws(() => conv2dRelu(zeros([2, 2, 8, 8]), w), { instanceOf: ShapeError, message: /^conv2dRelu: / });
  t.is(x.grad, null);
  t.is(w.grad, null);
});
