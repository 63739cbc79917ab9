import test from 'ava';
import { matmul, ShapeError, zeros } from '../../src/tensor/index.js';
import { gradCheck } from './gradcheck.js';

function refMatmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) y[i * n + j]! += a[i * k + p]! * b[p * n + j]!;
  return y;
}

test('matmul: forward and both gradients match float64 finite differences', (t) => {
  gradCheck(t, { shapes: [[3, 5], [5, 4]], op: ([a, b]) => matmul(a!, b!), ref: ([a, b]) => refMatmul(a!, b!, 3, 5, 4) });
});

test('matmul rejects inner-dimension mismatch with a ShapeError', (t) => {
  t.throws(() => matmul(zeros([3, 5]), zeros([4, 2])), { instanceOf: ShapeError, message: /matmul: got shapes \[3, 5\], \[4, 2\]; expected \[m, k\] and \[k, n\]/ });
  t.throws(() => matmul(zeros([3]), zeros([3, 2])), { instanceOf: ShapeError });
});
