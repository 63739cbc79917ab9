import test from 'ava';
import { linear, linearRelu, ShapeError, zeros, Tensor, randn, tensor } from '../../src/tensor/index.js';
import { gradCheck, refLinear } from './gradcheck.js';

test('linear with bias: forward and gradients of x, W and b match float64 finite differences', (t) => {
  gradCheck(t, {
    shapes: [[5, 7], [3, 7], [3]],
    op: ([x, w, b]) => linear(x!, w!, b!),
    ref: ([x, w, b]) => refLinear(x!, w!, b!, 5, 7, 3),
  });
});

test('linear without bias and with a 1-D input', (t) => {
  gradCheck(t, {
    shapes: [[4], [6, 4]],
    op: ([x, w]) => linear(x!, w!),
    ref: ([x, w]) => refLinear(x!, w!, null, 1, 4, 6),
  });
});

test('linearRelu (fused) equals relu(linear): forward and gradients match float64 finite differences', (t) => {
  gradCheck(t, {
    shapes: [[6, 5], [4, 5], [4]],
    op: ([x, w, b]) => linearRelu(x!, w!, b!),
    ref: ([x, w, b]) => refLinear(x!, w!, b!, 6, 5, 4).map((v) => Math.max(v, 0)),
    seed: 3,
  });
});

test('linear output has shape [batch, out]; a 1-D input gives [out]', (t) => {
  t.deepEqual(linear(zeros([8, 3]), zeros([2, 3]), zeros([2])).shape, [8, 2]);
  t.deepEqual(linear(zeros([3]), zeros([2, 3])).shape, [2]);
});

test('linear accumulates weight gradients over two backwards', (t) => {
  const x = randn([4, 3], { seed: 1 });
  const w = randn([2, 3], { seed: 2, requiresGrad: true });
  linear(x, w).backward(new Float32Array(8).fill(1));
  const once = w.grad!.data.slice();
  linear(x, w).backward(new Float32Array(8).fill(1));
  for (let i = 0; i < once.length; i++) t.true(Math.abs(w.grad!.data[i]! - 2 * once[i]!) < 1e-5);
});

test('linear rejects mismatched shapes with a ShapeError naming op and shapes, and records nothing', (t) => {
  const x = zeros([4, 5], { requiresGrad: true });
  const w = zeros([3, 6], { requiresGrad: true });
  const err = t.throws(() => linear(x, w), { instanceOf: ShapeError });
  t.regex(err!.message, /linear: got shapes \[4, 5\], \[3, 6\]; expected input with 6 features/);
  t.throws(() => linear(zeros([4, 6]), w, zeros([4])), { instanceOf: ShapeError, message: /bias of shape \[3\]/ });
  t.throws(() => linear(zeros([2, 2, 6]), w), { instanceOf: ShapeError });
  t.throws(() => linear(zeros([4, 6]), zeros([6])), { instanceOf: ShapeError });
  t.is(x.grad, null);
  t.is(w.grad, null);
});

test('linear rejects int32 inputs', (t) => {
  t.throws(() => linear(tensor(new Int32Array(6), [2, 3]) as unknown as Tensor, zeros([2, 3])), { message: /linear: input has dtype int32; expected float32/ });
});
