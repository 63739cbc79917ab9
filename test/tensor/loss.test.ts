import test from 'ava';
import { crossEntropy, nllLoss, logSoftmax, ShapeError, zeros, tensor, Tensor, randn } from '../../src/tensor/index.js';
import { gradCheck, refLogSoftmax } from './gradcheck.js';

const labels = Int32Array.from([2, 0, 4, 1, 3]);

function refNll(logp: Float64Array, rows: number, cols: number): Float64Array {
  let s = 0;
  for (let r = 0; r < rows; r++) s -= logp[r * cols + labels[r]!]!;
  return Float64Array.of(s / rows);
}

test('crossEntropy: mean loss and gradient of the logits match float64 finite differences', (t) => {
  gradCheck(t, { shapes: [[5, 6]], op: ([x]) => crossEntropy(x!, labels), ref: ([x]) => refNll(refLogSoftmax(x!, 5, 6), 5, 6), draw: (g) => g.uniformIn(-2, 2) });
});

test('nllLoss: loss and gradient match float64 finite differences', (t) => {
  gradCheck(t, { shapes: [[5, 6]], op: ([x]) => nllLoss(x!, tensor(labels)), ref: ([x]) => refNll(x!, 5, 6) });
});

test('crossEntropy equals nllLoss(logSoftmax(x)) and so do their gradients', (t) => {
  const a = randn([5, 6], { seed: 4, requiresGrad: true });
  const b = new Tensor(a.data.slice(), a.shape, { requiresGrad: true });
  const la = crossEntropy(a, labels);
  const lb = nllLoss(logSoftmax(b), labels);
  t.true(Math.abs(la.item() - lb.item()) < 1e-5);
  la.backward();
  lb.backward();
  for (let i = 0; i < a.size; i++) t.true(Math.abs(a.grad!.data[i]! - b.grad!.data[i]!) < 1e-5);
});

test('losses reject labels of the wrong count, dtype or range, naming the problem', (t) => {
  const x = zeros([5, 6], { requiresGrad: true });
  t.throws(() => crossEntropy(x, Int32Array.from([1, 2])), { instanceOf: ShapeError, message: /crossEntropy: got shapes \[5, 6\], \[2\]; expected 5 labels/ });
  t.throws(() => crossEntropy(x, Int32Array.from([0, 1, 2, 3, 6])), { instanceOf: RangeError, message: /labels\[4\] = 6 is invalid; expected a class index in \[0, 6\)/ });
  t.throws(() => nllLoss(x, Int32Array.from([0, 1, 2, 3, -1])), { instanceOf: RangeError });
  t.throws(() => crossEntropy(x, zeros([5]) as unknown as Tensor<'int32'>), { message: /labels has dtype float32; expected int32/ });
  t.is(x.grad, null);
});

test('crossEntropy copies its labels: reusing the label buffer before backward does not change the gradient', (t) => {
  const x = randn([5, 6], { seed: 8, requiresGrad: true });
  const l = labels.slice();
  const loss = crossEntropy(x, l);
  l.fill(0);
  loss.backward();
  const y = new Tensor(x.data.slice(), x.shape, { requiresGrad: true });
  crossEntropy(y, labels).backward();
  t.deepEqual(Array.from(x.grad!.data), Array.from(y.grad!.data));
});
