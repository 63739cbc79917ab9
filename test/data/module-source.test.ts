// Dataset modules (`--dataset ./my-data.mjs`): the contract's happy paths and one clear error per breach.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { datasetShape, DatasetModuleError, loadDataset, parseDatasetSpec } from '../../src/data/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const TINY = fixture('tiny-dataset.mjs');
const BAD = fixture('bad-dataset.mjs');

test('a module\'s train and test arrive as datasets with its shape, classes and ctx', async (t) => {
  const split = await loadDataset(TINY, { seed: 2, rank: 1, worldSize: 3 });
  t.deepEqual(split.train.shape, [2, 3, 2]);
  t.like(split.train, { length: 10, features: 12, classes: 3 });
  t.like(split.test, { length: 4, features: 12, classes: 3 });
  // value = offset + i + j/100 + seed*1000 + rank*10000
  t.is(split.train.x[5 * 12 + 7], Math.fround(5 + 0.07 + 2000 + 10000));
  t.is(split.test.x[3 * 12], Math.fround(503 + 2000 + 10000));
  t.deepEqual([...split.test.y], [2, 0, 1, 2]);
  t.is(split.permutation.length, 14);
});

test('a module\'s arrays are used in place, or copied into shared memory when asked', async (t) => {
  const plain = await loadDataset(TINY);
  t.false(plain.train.x.buffer instanceof SharedArrayBuffer);
  const shared = await loadDataset(TINY, { shared: true });
  t.true(shared.train.x.buffer instanceof SharedArrayBuffer);
  t.deepEqual([...shared.train.x], [...plain.train.x]);
  t.deepEqual([...shared.test.y], [...plain.test.y]);
});

test('an async factory and a module given as a file:// URL work too', async (t) => {
  const url = new URL('fixtures/async-dataset.mjs', import.meta.url).href;
  t.deepEqual(parseDatasetSpec(url), { kind: 'module', path: fixture('async-dataset.mjs') });
  const split = await loadDataset(url);
  t.like(split.train, { length: 3, features: 2, classes: 2 });
  t.deepEqual([...split.test.x], [7, 8]);
  t.deepEqual(await datasetShape(url), { shape: [2], features: 2, classes: 2 });
});

test('a module without createDataset is refused naming the module', async (t) => {
  const path = fixture('no-factory-dataset.mjs');
  await t.throwsAsync(loadDataset(path), { instanceOf: DatasetModuleError, message: new RegExp(`exports no createDataset function .*\\(${path}\\)$`) });
});

test('a module that cannot be imported is refused naming it', async (t) => {
  await t.throwsAsync(loadDataset('./nowhere/missing-dataset.mjs'), { instanceOf: DatasetModuleError, message: /cannot import the dataset module: .*\(\.\/nowhere\/missing-dataset\.mjs\)$/ });
});

const breaches: Array<[number, RegExp]> = [
  [1, /createDataset\(ctx\) must return \{ train, test \}, got number/],
  [2, /createDataset\(ctx\)\.test must be \{ x, y, shape, classes \}, got undefined/],
  [3, /createDataset\(ctx\)\.train\.x must be a Float32Array, got an array/],
  [4, /createDataset\(ctx\)\.train\.y\[2\] is 3, outside \[0, 3\) \(classes is 3\)/],
  [5, /createDataset\(ctx\)\.train\.y\[1\] is -1, outside \[0, 3\)/],
  [6, /createDataset\(ctx\)\.train\.x has 8 values, not a multiple of the shape \[3\]/],
  [7, /train and test shapes differ: \[2\] and \[1, 2\]/],
  [8, /createDataset\(ctx\)\.train\.y has 3 labels for 4 samples/],
  [9, /createDataset\(ctx\)\.train\.shape must be an array of 1 to 8 positive integers, got \[0,2\]/],
  [10, /createDataset\(ctx\)\.train\.classes must be an integer >= 1, got 0/],
  [11, /createDataset\(ctx\) failed: the data server is down/],
];

for (const [seed, message] of breaches) {
  test(`a module breaking the contract is refused with one line naming it: ${message.source.slice(0, 60)}`, async (t) => {
    const err = await t.throwsAsync(loadDataset(BAD, { seed }), { instanceOf: DatasetModuleError, message });
    t.true(err!.message.endsWith(`(${BAD})`), err!.message);
    t.false(err!.message.includes('\n'));
  });
}

test('options a module cannot honour are refused', async (t) => {
  await t.throwsAsync(loadDataset(TINY, { normalize: false }), { message: /loadDataset\.normalize must be absent for module datasets/ });
  await t.throwsAsync(loadDataset(TINY, { shard: { rank: 0, worldSize: 2 } }), { message: /a module gets ctx\.rank and ctx\.worldSize/ });
  await t.throwsAsync(loadDataset(TINY, { rank: 3, worldSize: 3 }), { message: /rank must be an integer in \[0, 2\], got 3/ });
});
