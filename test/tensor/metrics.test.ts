import test from 'ava';
import { accuracy, argmax, countCorrect, fromArray, ShapeError, zeros } from '../../src/tensor/index.js';

test('argmax picks the largest entry of each row, the first one on ties', (t) => {
  const x = fromArray([[0.1, 0.7, 0.2], [3, -1, 3], [-5, -4, -6]]);
  t.deepEqual(Array.from(argmax(x)), [1, 0, 1]);
});

test('accuracy and countCorrect compare argmax with the labels', (t) => {
  const x = fromArray([[0.1, 0.7, 0.2], [3, -1, 2], [-5, -4, -6], [0, 0, 1]]);
  const y = Int32Array.from([1, 0, 2, 2]);
  t.is(countCorrect(x, y), 3);
  t.is(accuracy(x, y), 0.75);
});

test('metrics reject mismatched label counts and out-of-range labels', (t) => {
  t.throws(() => accuracy(zeros([3, 2]), Int32Array.from([0, 1])), { instanceOf: ShapeError });
  t.throws(() => countCorrect(zeros([2, 2]), Int32Array.from([0, 2])), { instanceOf: RangeError, message: /labels\[1\] = 2/ });
  t.throws(() => argmax(zeros([2, 0])), { instanceOf: ShapeError });
});
