import test from 'ava';
import { logSoftmax, ShapeError, zeros } from '../../src/tensor/index.js';
import { gradCheck, refLogSoftmax } from './gradcheck.js';

test('logSoftmax: forward and gradient match float64 finite differences', (t) => {
  gradCheck(t, { shapes: [[4, 6]], op: ([x]) => logSoftmax(x!), ref: ([x]) => refLogSoftmax(x!, 4, 6), draw: (g) => g.uniformIn(-3, 3) });
});

test('logSoftmax of a 1-D tensor is one row', (t) => {
  gradCheck(t, { shapes: [[5]], op: ([x]) => logSoftmax(x!), ref: ([x]) => refLogSoftmax(x!, 1, 5) });
});

test('logSoftmax is stable for large logits', (t) => {
  const x = zeros([1, 3]);
  x.data.set([1000, 1001, 1002]);
  const y = logSoftmax(x);
  for (const v of y.data) t.true(Number.isFinite(v));
  t.true(Math.abs(y.data[2]! - Math.log(1 / (1 + Math.exp(-1) + Math.exp(-2)))) < 1e-4);
});

test('logSoftmax rejects 3-D input', (t) => {
  t.throws(() => logSoftmax(zeros([2, 2, 2])), { instanceOf: ShapeError, message: /logSoftmax/ });
});
