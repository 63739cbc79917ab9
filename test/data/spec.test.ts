// The `--dataset` grammar and the sample shape every dataset carries.
import test from 'ava';
import {
  builtinShape, checkDataset, checkShape, DataOptionError, datasetShape, formatDatasetSpec, loadDataset,
  parseDatasetSpec, syntheticDataset, take,
} from '../../src/data/index.js';

test('built-in names, idx:, file: and module paths parse to their kinds', (t) => {
  t.deepEqual(parseDatasetSpec('fashion-mnist'), { kind: 'builtin', name: 'fashion-mnist' });
  t.deepEqual(parseDatasetSpec('synthetic'), { kind: 'builtin', name: 'synthetic' });
  t.deepEqual(parseDatasetSpec('idx:./data'), { kind: 'idx', path: './data' });
  t.deepEqual(parseDatasetSpec('idx:/abs/x.mjs'), { kind: 'idx', path: '/abs/x.mjs' });
  t.deepEqual(parseDatasetSpec('file:fashion.psds'), { kind: 'file', path: 'fashion.psds' });
  for (const m of ['./x.mjs', '../y/z.js', '/abs/x.js', 'data.cjs', 'loader.ts', './data', 'C:\\d\\x.mjs']) {
    t.deepEqual(parseDatasetSpec(m), { kind: 'module', path: m }, m);
  }
  t.deepEqual(parseDatasetSpec('file:///tmp/d.mjs'), { kind: 'module', path: '/tmp/d.mjs' });
  for (const s of ['mnist', 'idx:./data', 'file:x.psds', './x.mjs']) t.is(formatDatasetSpec(parseDatasetSpec(s)), s);
});

test('anything else is one error naming the flag and the accepted forms', (t) => {
  for (const s of ['cifar', '', 'idx:', 'file:', 'MNIST']) {
    t.throws(() => parseDatasetSpec(s), { instanceOf: DataOptionError, message: /^dataset must be/ }, s);
  }
  t.throws(() => parseDatasetSpec('cifar'), {
    message: "dataset must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path (./my-data.mjs), got 'cifar'",
  });
  t.throws(() => parseDatasetSpec('idx:'), { message: "dataset must be idx:FOLDER with a non-empty path, got 'idx:'" });
  t.throws(() => parseDatasetSpec({ kind: 'builtin', name: 'nope' } as never), { instanceOf: DataOptionError });
});

test('built-in shapes are constants: images [1, 28, 28], synthetic [784]', async (t) => {
  t.deepEqual(builtinShape('fashion-mnist'), { shape: [1, 28, 28], features: 784, classes: 10 });
  t.deepEqual(await datasetShape('mnist'), { shape: [1, 28, 28], features: 784, classes: 10 });
  t.deepEqual(await datasetShape('synthetic'), { shape: [784], features: 784, classes: 10 });
  await t.throwsAsync(datasetShape('cifar'), { instanceOf: DataOptionError });
});

test('checkShape wants positive integers whose product is the features', (t) => {
  t.deepEqual(checkShape('s', [3, 4, 4], 48), [3, 4, 4]);
  t.true(Object.isFrozen(checkShape('s', [2, 2])));
  t.throws(() => checkShape('s', [3, 4], 13), { message: 's must be a shape whose product is features = 13 (its product is 12), got [3,4]' });
  for (const bad of [[], [0], [2, -1], [1.5], 'x', [1, 1, 1, 1, 1, 1, 1, 1, 1]]) {
    t.throws(() => checkShape('s', bad), { instanceOf: DataOptionError, message: /^s must be an array of 1 to 8 positive integers/ });
  }
});

test('checkDataset refuses a shape that disagrees with the features; take keeps the shape', (t) => {
  const d = syntheticDataset({ samples: 10, features: 6, classes: 2 });
  t.deepEqual(d.shape, [6]);
  t.deepEqual(take(d, 4).shape, [6]);
  t.notThrows(() => checkDataset('d', { ...d, shape: [1, 2, 3] }));
  t.throws(() => checkDataset('d', { ...d, shape: [5] }), { message: /^d\.shape must be a shape whose product is features = 6/ });
  t.throws(() => checkDataset('d', { ...d, shape: undefined as never }), { message: /^d\.shape must be an array/ });
});

test('loadDataset takes a spec string and refuses options a kind cannot honour', async (t) => {
  const s = await loadDataset('synthetic', { trainSamples: 20, testSize: 5, seed: 1 });
  t.deepEqual(s.train.shape, [784]);
  t.is(s.train.length, 20);
  await t.throwsAsync(loadDataset('mnist', { trainSamples: 5 }), { message: /trainSamples must be absent for 'mnist'/ });
  await t.throwsAsync(loadDataset('mnist', { shard: { rank: 0, worldSize: 2 } }), { message: /loadDataset\.shard must be absent for 'mnist'/ });
  await t.throwsAsync(loadDataset('synthetic', { frob: 1 } as never), { message: /loadDataset options must be one of/ });
  await t.throwsAsync(loadDataset('cifar'), { instanceOf: DataOptionError });
});
