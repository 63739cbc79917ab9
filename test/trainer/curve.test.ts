// The accuracy-over-time curve recorded with --eval-every.
import test from 'ava';
import { trainLocal } from '../../src/trainer/local.js';

const quiet = { log: () => {} };

test('local training with evalEvery records a curve from 0 samples to the end, in time order, on the fixed slice', async (t) => {
  const r = await trainLocal({ dataset: 'fashion-mnist', trainSamples: 6000, testSamples: 2000, epochs: 2, evalEvery: 0.001, evalSamples: 500, progress: 'none' }, quiet);
  const curve = r.curve!;
  t.truthy(curve);
  t.true(curve.length >= 3, `${curve.length} points`);
  t.is(curve[0]!.samples, 0);
  t.is(curve.at(-1)!.samples, r.samples);
  for (let i = 1; i < curve.length; i++) {
    t.true(curve[i]!.seconds >= curve[i - 1]!.seconds);
    t.true(curve[i]!.samples >= curve[i - 1]!.samples);
  }
  // Training time excludes the evaluations, and the last point is taken at its end.
  t.true(Math.abs(curve.at(-1)!.seconds - r.trainSeconds) < 0.05);
  // Learning shows on the curve: from chance (10 classes) to well above it.
  t.true(curve[0]!.accuracy < 0.3, `start ${curve[0]!.accuracy}`);
  t.true(curve.at(-1)!.accuracy > 0.6, `end ${curve.at(-1)!.accuracy}`);
});

test('without evalEvery there is no curve', async (t) => {
  const r = await trainLocal({ dataset: 'synthetic', trainSamples: 1000, testSamples: 200, progress: 'none' }, quiet);
  t.is(r.curve, undefined);
});
