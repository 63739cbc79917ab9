import test from 'ava';
import { DataOptionError, loadDataset, syntheticDataset, syntheticSplit } from '../../src/data/index.js';

test('shape, balanced labels, and the same seed gives the same data', (t) => {
  const a = syntheticDataset({ samples: 1000, features: 20, classes: 4, seed: 3 });
  t.like(a, { length: 1000, features: 20, classes: 4 });
  t.deepEqual(a.shape, [20]);
  t.is(a.x.length, 20_000);
  const counts = [0, 0, 0, 0];
  for (const v of a.y) counts[v]!++;
  t.deepEqual(counts, [250, 250, 250, 250]);
  t.deepEqual(syntheticDataset({ samples: 1000, features: 20, classes: 4, seed: 3 }), a);
  t.notDeepEqual(syntheticDataset({ samples: 1000, features: 20, classes: 4, seed: 4 }).x, a.x);
  t.true(a.x.every(Number.isFinite));
});

// Nearest class mean fitted on train, scored on test: the clusters must be learnable, not trivial.
function nearestMeanAccuracy(separation: number): number {
  const s = syntheticSplit({ trainSamples: 4000, testSamples: 1000, features: 64, classes: 10, seed: 1, separation });
  const F = 64;
  const mu = new Float64Array(10 * F);
  const n = new Float64Array(10);
  for (let i = 0; i < s.train.length; i++) {
    const c = s.train.y[i]!;
    n[c]++;
    for (let j = 0; j < F; j++) mu[c * F + j] += s.train.x[i * F + j]!;
  }
  for (let c = 0; c < 10; c++) for (let j = 0; j < F; j++) mu[c * F + j] /= n[c]!;
  let ok = 0;
  for (let i = 0; i < s.test.length; i++) {
    let best = -1, bestD = Infinity;
    for (let c = 0; c < 10; c++) {
      let d = 0;
      for (let j = 0; j < F; j++) { const e = s.test.x[i * F + j]! - mu[c * F + j]!; d += e * e; }
      if (d < bestD) { bestD = d; best = c; }
    }
    if (best === s.test.y[i]) ok++;
  }
  return ok / s.test.length;
}

test('clusters are learnable and separation sets the difficulty', (t) => {
  const easy = nearestMeanAccuracy(8);
  const normal = nearestMeanAccuracy(4);
  const none = nearestMeanAccuracy(0);
  t.true(easy > 0.97, `separation 8: ${easy}`);
  t.true(normal > 0.6 && normal < 0.99, `separation 4: ${normal}`);
  t.true(none < 0.2, `separation 0 is chance: ${none}`);
});

test('split shares centres between train and test and has the requested sizes', (t) => {
  const s = syntheticSplit({ trainSamples: 300, testSamples: 100, features: 8, seed: 2 });
  t.is(s.train.length, 300);
  t.is(s.test.length, 100);
  t.is(s.train.x.buffer, s.test.x.buffer);
  t.is(s.permutation.length, 400);
});

test('loadDataset("synthetic") maps testSize and trainSamples; bad names and options refused', async (t) => {
  const s = await loadDataset('synthetic', { trainSamples: 200, testSize: 50, seed: 1 });
  t.is(s.train.length, 200);
  t.is(s.test.length, 50);
  t.is(s.train.features, 784);
  await t.throwsAsync(loadDataset('cifar' as never), { instanceOf: DataOptionError, message: /dataset must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path .*got 'cifar'/ });
  await t.throwsAsync(loadDataset('mnist', { trainSamples: 10 }), { message: /trainSamples/ });
});

test('bad options throw naming the option', (t) => {
  t.throws(() => syntheticDataset({ samples: -1 }), { instanceOf: DataOptionError, message: /samples.*got -1/ });
  t.throws(() => syntheticDataset({ samples: 10, classes: 0 }), { message: /classes.*got 0/ });
  t.throws(() => syntheticDataset({ samples: 10, separation: Number.NaN }), { message: /separation.*got NaN/ });
  t.throws(() => syntheticDataset({ samples: 10, sample: 3 } as never), { message: /got 'sample'/ });
});
