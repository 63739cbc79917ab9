// A synthetic classification dataset: Gaussian clusters, one per class, generated from a seed.
//
// Each class c has a centre mu_c ~ N(0, s^2 I) and its samples are mu_c + N(0, I). Classes with a
// shared isotropic covariance are separated by linear boundaries, so an MLP (or a linear model)
// learns them, and `separation` sets how hard that is: it is the expected distance between two
// centres in units of the noise's standard deviation (s = separation / sqrt(2 * features)). With
// the default 4 a pair of classes overlaps about as much as two unit normals 4 apart (Bayes error
// per pair ~2%), so accuracy climbs over an epoch instead of being 100% at once.
// Needs no files and no cache: handy for tests and for `--dataset synthetic`. A sample is a flat
// vector: shape [features].
import { checkBoolean, checkFinite, checkInteger, DataOptionError } from './errors.js';
import type { Dataset, DatasetSplit } from './dataset.js';
import { SeededRandom } from './random.js';

export interface SyntheticOptions {
  /** Number of samples. */
  samples: number;
  /** Features per sample (default 784, like the image datasets). */
  features?: number;
  /** Number of classes (default 10). */
  classes?: number;
  /** Seed of the centres, labels and noise (default 0). */
  seed?: number;
  /** Expected distance between two class centres, in noise standard deviations (default 4). */
  separation?: number;
  /** Allocate `x` over a SharedArrayBuffer (default false). */
  shared?: boolean;
}

const KNOWN = new Set(['samples', 'features', 'classes', 'seed', 'separation', 'shared']);

/**
 * Generates `samples` samples; labels are balanced (sample i has class i mod classes before a
 * seeded shuffle). The same options give the same dataset, bit for bit.
 */
export function syntheticDataset(options: SyntheticOptions): Dataset {
  if (options === null || typeof options !== 'object') throw new DataOptionError('syntheticDataset options', options, 'an object');
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new DataOptionError('syntheticDataset options', key, `one of ${[...KNOWN].join(', ')}`);
  }
  const samples = checkInteger('syntheticDataset.samples', options.samples, 0);
  const features = checkInteger('syntheticDataset.features', options.features ?? 784, 1);
  const classes = checkInteger('syntheticDataset.classes', options.classes ?? 10, 1);
  const seed = checkInteger('syntheticDataset.seed', options.seed ?? 0, Number.MIN_SAFE_INTEGER);
  const separation = checkFinite('syntheticDataset.separation', options.separation ?? 4);
  if (separation < 0) throw new DataOptionError('syntheticDataset.separation', separation, 'a number >= 0');
  const shared = checkBoolean('syntheticDataset.shared', options.shared ?? false);
  if (samples * features > 2 ** 31) throw new DataOptionError('syntheticDataset.samples', samples, `at most ${Math.floor(2 ** 31 / features)} for ${features} features`);

  const rng = new SeededRandom(seed);
  const scale = separation / Math.sqrt(2 * features);
  const centres = new Float64Array(classes * features);
  for (let i = 0; i < centres.length; i++) centres[i] = rng.normal() * scale;
  const y = new Int32Array(samples);
  for (let i = 0; i < samples; i++) y[i] = i % classes;
  rng.shuffle(y);
  const bytes = samples * features * 4;
  const x = new Float32Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  for (let i = 0; i < samples; i++) {
    const c = y[i]! * features;
    const row = i * features;
    for (let j = 0; j < features; j++) x[row + j] = centres[c + j]! + rng.normal();
  }
  return { x, y, length: samples, shape: Object.freeze([features]), features, classes };
}

export interface SyntheticSplitOptions extends Omit<SyntheticOptions, 'samples'> {
  /** Training samples (default 60,000, like Fashion-MNIST). */
  trainSamples?: number;
  /** Test samples (default 10,000). */
  testSamples?: number;
}

/**
 * A train/test split drawn from the same clusters: the first `testSamples` generated samples are
 * the test set. `permutation` is the identity (the samples are generated in random order).
 */
export function syntheticSplit(options: SyntheticSplitOptions = {}): DatasetSplit {
  const { trainSamples = 60_000, testSamples = 10_000, ...rest } = options ?? {};
  checkInteger('syntheticSplit.trainSamples', trainSamples, 0);
  checkInteger('syntheticSplit.testSamples', testSamples, 0);
  const all = syntheticDataset({ ...rest, samples: trainSamples + testSamples });
  const f = all.features;
  const part = (from: number, to: number): Dataset => ({
    x: all.x.subarray(from * f, to * f), y: all.y.subarray(from, to), length: to - from, shape: all.shape, features: f, classes: all.classes,
  });
  const permutation = new Int32Array(all.length);
  for (let i = 0; i < permutation.length; i++) permutation[i] = i;
  return { test: part(0, testSamples), train: part(testSamples, all.length), permutation };
}
