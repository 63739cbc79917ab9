import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist, MNIST_MEAN, MNIST_STD, type LoadedSplit } from '../../src/data/index.js';

let cacheDir = '';
let base: LoadedSplit;
test.before(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'psrpc-mnist-'));
  base = await loadMnist({ cacheDir });
});
test.after.always(async () => {
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

// Images per digit in the `mnist` package (its files' lengths / 784).
const PER_DIGIT = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

test('10,000 digits split 8,000 train / 2,000 test, 784 features, 10 classes', (t) => {
  t.like(base.train, { length: 8000, features: 784, classes: 10 });
  t.like(base.test, { length: 2000, features: 784, classes: 10 });
  t.deepEqual(base.train.shape, [1, 28, 28]);
  t.is(base.train.x.length, 8000 * 784);
  t.is(base.test.y.length, 2000);
});

test('every digit is present with its package count, and in both sets', (t) => {
  const total = new Array(10).fill(0);
  const held = new Array(10).fill(0);
  for (const v of base.train.y) total[v]++;
  for (const v of base.test.y) { total[v]++; held[v]++; }
  t.deepEqual(total, PER_DIGIT);
  for (let d = 0; d < 10; d++) t.true(held[d] > PER_DIGIT[d]! * 0.1 && held[d] < PER_DIGIT[d]! * 0.3, `digit ${d}: ${held[d]} in test`);
});

test('pixels normalised with MNIST constants', (t) => {
  let min = Infinity, max = -Infinity;
  for (const v of base.test.x) { if (v < min) min = v; if (v > max) max = v; }
  t.is(min, Math.fround(-MNIST_MEAN / MNIST_STD));
  t.is(max, Math.fround((1 - MNIST_MEAN) / MNIST_STD));
});

test('split is deterministic per seed and disjoint', async (t) => {
  const seen = new Uint8Array(10_000);
  for (const i of base.permutation) seen[i]++;
  t.true(seen.every((c) => c === 1));
  const again = await loadMnist({ cacheDir, seed: 0 });
  t.deepEqual(again.test.x, base.test.x);
  const other = await loadMnist({ cacheDir, seed: 9 });
  t.notDeepEqual(other.permutation, base.permutation);
});
