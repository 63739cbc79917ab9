import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  DataOptionError, FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnist, type LoadedSplit,
} from '../../src/data/index.js';

// One cache for the file: the cold parse (a few seconds) happens once, in before().
let cacheDir = '';
let base: LoadedSplit;
test.before(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'psrpc-fashion-'));
  base = await loadFashionMnist({ cacheDir });
});
test.after.always(async () => {
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

const PER_CLASS = 7000;

test('60,000 train and 10,000 test samples of 784 features, 10 classes', (t) => {
  const { train, test: held } = base;
  t.like(train, { length: 60_000, features: 784, classes: 10 });
  t.like(held, { length: 10_000, features: 784, classes: 10 });
  t.deepEqual(train.shape, [1, 28, 28]);
  t.deepEqual(held.shape, [1, 28, 28]);
  t.is(train.x.length, 60_000 * 784);
  t.is(held.x.length, 10_000 * 784);
  t.is(train.y.length, 60_000);
  t.true(train.x instanceof Float32Array && train.y instanceof Int32Array);
  t.false(base.source.cacheHit, 'the first load parsed the package');
});

test('labels are balanced: 7,000 per class overall, about 1,000 per class in test', (t) => {
  const total = new Array(10).fill(0);
  const held = new Array(10).fill(0);
  for (const v of base.train.y) total[v]++;
  for (const v of base.test.y) { total[v]++; held[v]++; }
  t.deepEqual(total, new Array(10).fill(PER_CLASS));
  for (const c of held) t.true(c > 850 && c < 1150, `test class count ${c}`);
});

test('pixels are normalised: range [(0-m)/s, (1-m)/s], mean ~0 and std ~1', (t) => {
  const lo = Math.fround((0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD);
  const hi = Math.fround((1 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD);
  let min = Infinity, max = -Infinity, sum = 0, sq = 0;
  for (const v of base.train.x) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sq += v * v;
  }
  t.is(min, lo);
  t.is(max, hi);
  const mean = sum / base.train.x.length;
  const std = Math.sqrt(sq / base.train.x.length - mean * mean);
  t.true(Math.abs(mean) < 0.02, `mean ${mean}`);
  t.true(Math.abs(std - 1) < 0.02, `std ${std}`);
});

test('the split is a seeded permutation: test and train disjoint, labels follow their source', (t) => {
  const perm = base.permutation;
  t.is(perm.length, 70_000);
  const seen = new Uint8Array(70_000);
  for (const i of perm) seen[i]++;
  t.true(seen.every((c) => c === 1), 'every source sample exactly once: test and train are disjoint and complete');
  // Source order is class by class, 7,000 each.
  for (let i = 0; i < 10_000; i += 97) t.is(base.test.y[i], Math.floor(perm[i]! / PER_CLASS));
  for (let i = 0; i < 60_000; i += 101) t.is(base.train.y[i], Math.floor(perm[10_000 + i]! / PER_CLASS));
  const firstLabels = new Set(base.test.y.subarray(0, 100));
  t.true(firstLabels.size > 5, 'shuffled, not class by class');
});

test('rows hold the package images (the empty entries of class 0 skipped)', async (t) => {
  const dir = dirname(createRequire(import.meta.url).resolve('fashion-mnist/package.json'));
  const class0 = (JSON.parse(await readFile(join(dir, 'src/clothes/0.json'), 'utf8')) as { data: number[][] }).data;
  t.is(class0.length, 7002);
  // data[1001] follows the empty data[1000], so it is source sample 1000; data[7001] is empty.
  const inverse = new Int32Array(70_000);
  base.permutation.forEach((src, pos) => { inverse[src] = pos; });
  const row = (src: number) => {
    const pos = inverse[src]!;
    const d = pos < 10_000 ? base.test : base.train;
    const i = pos < 10_000 ? pos : pos - 10_000;
    return d.x.subarray(i * 784, (i + 1) * 784);
  };
  for (const [jsonIndex, src] of [[0, 0], [999, 999], [1001, 1000], [7000, 6999]] as const) {
    const expected = class0[jsonIndex]!.map((v) => Math.fround((v / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD));
    t.deepEqual([...row(src)], expected, `json image ${jsonIndex}`);
  }
});

test('the same seed gives the same split; another seed another one', async (t) => {
  const again = await loadFashionMnist({ cacheDir });
  t.true(again.source.cacheHit);
  t.deepEqual(again.permutation, base.permutation);
  t.deepEqual(again.test.y, base.test.y);
  t.deepEqual(again.test.x.subarray(0, 784 * 50), base.test.x.subarray(0, 784 * 50));
  const other = await loadFashionMnist({ cacheDir, seed: 1 });
  t.notDeepEqual(other.permutation, base.permutation);
  t.notDeepEqual(other.test.y, base.test.y);
});

test('options: testSize, shared memory, no normalisation; bad ones refused', async (t) => {
  const d = await loadFashionMnist({ cacheDir, testSize: 5000, shared: true, normalize: false });
  t.is(d.test.length, 5000);
  t.is(d.train.length, 65_000);
  t.true(d.train.x.buffer instanceof SharedArrayBuffer);
  t.is(d.train.x.buffer, d.test.x.buffer, 'train and test are views of one buffer');
  let max = 0;
  for (const v of d.test.x) if (v > max) max = v;
  t.is(max, 1);
  await t.throwsAsync(loadFashionMnist({ cacheDir, testSize: 70_001 }), { instanceOf: DataOptionError, message: /testSize.*70000.*got 70001/ });
  await t.throwsAsync(loadFashionMnist({ cacheDir, seed: 1.5 }), { message: /seed must be an integer.*got 1\.5/ });
  await t.throwsAsync(loadFashionMnist({ cacheDir, normalize: { mean: 0, std: 0 } }), { message: /normalize\.std.*> 0, got 0/ });
  await t.throwsAsync(loadFashionMnist({ cachedir: cacheDir } as never), { message: /got 'cachedir'/ });
});
