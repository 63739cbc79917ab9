// One entry point for the `--dataset` flag: a dataset by name, split into train and test.
import { DataOptionError } from './errors.js';
import type { DatasetSplit } from './dataset.js';
import { loadFashionMnist } from './fashion-mnist.js';
import { loadMnist } from './mnist.js';
import type { LoadOptions, LoadedSplit } from './package-source.js';
import { syntheticSplit } from './synthetic.js';

export const DATASET_NAMES = ['fashion-mnist', 'mnist', 'synthetic'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

/**
 * A named dataset's sample shape without loading it (a process that only hosts a model needs the
 * shapes, not the samples): every built-in one is 28x28 images flattened to 784 features, 10 classes.
 */
export function datasetShape(name: DatasetName): { features: number; classes: number } {
  if (!(DATASET_NAMES as readonly string[]).includes(name)) throw new DataOptionError('dataset', name, `one of ${DATASET_NAMES.join(', ')}`);
  return { features: 784, classes: 10 };
}

export interface LoadDatasetOptions extends LoadOptions {
  /** synthetic only: training samples (default 60,000); `testSize` sets the test samples (default 10,000). */
  trainSamples?: number;
}

/**
 * Loads 'fashion-mnist' (60,000 / 10,000), 'mnist' (8,000 / 2,000) or 'synthetic' (Gaussian
 * clusters, 784 features, 10 classes; 60,000 / 10,000 by default). `source` is set for the
 * datasets read through the cache.
 */
export async function loadDataset(name: DatasetName, options: LoadDatasetOptions = {}): Promise<DatasetSplit & { source?: LoadedSplit['source'] }> {
  const { trainSamples, ...rest } = options ?? {};
  if (name !== 'synthetic' && trainSamples !== undefined) {
    throw new DataOptionError('loadDataset.trainSamples', trainSamples, `absent for '${name}' (only synthetic data has a chosen size)`);
  }
  switch (name) {
    case 'fashion-mnist':
      return loadFashionMnist(rest);
    case 'mnist':
      return loadMnist(rest);
    case 'synthetic': {
      if (rest.normalize !== undefined || rest.cacheDir !== undefined) {
        throw new DataOptionError('loadDataset options', rest.normalize !== undefined ? 'normalize' : 'cacheDir', "absent for 'synthetic'");
      }
      return syntheticSplit({
        ...(rest.seed !== undefined ? { seed: rest.seed } : {}),
        ...(rest.shared !== undefined ? { shared: rest.shared } : {}),
        ...(trainSamples !== undefined ? { trainSamples } : {}),
        ...(rest.testSize !== undefined ? { testSamples: rest.testSize } : {}),
      });
    }
    default:
      throw new DataOptionError('dataset', name, `one of ${DATASET_NAMES.join(', ')}`);
  }
}
