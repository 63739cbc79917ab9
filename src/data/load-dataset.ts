// One entry point for the `--dataset` flag: any dataset spec (spec.ts), split into train and test.
//
// Built-in datasets keep their behaviour (a seeded permutation split through the binary cache);
// IDX folders, dataset modules and dataset files bring their own split, so `seed` only reaches a
// module (as ctx.seed) and `testSize` is refused for them. `datasetRows` is the same dispatch
// stopping one step earlier, at the stored rows, which is what `psdata convert` writes.
import { checkInteger, DataOptionError } from './errors.js';
import type { DatasetShape, DatasetSplit } from './dataset.js';
import { readDatasetFileHeader, readDatasetFileRows, loadDatasetFile, type DatasetFileReadInfo, type DatasetFileShard } from './dataset-file-read.js';
import { FASHION_MNIST_SHAPE, FASHION_MNIST_SOURCE, loadFashionMnist } from './fashion-mnist.js';
import { idxShape, loadIdxRows } from './idx.js';
import { MNIST_SHAPE, MNIST_SOURCE, loadMnist } from './mnist.js';
import { loadModuleDataset, loadModuleRows, type DatasetModuleContext } from './module-source.js';
import { loadPackageRaw, type LoadOptions, type LoadedSplit } from './package-source.js';
import { DATASET_NAMES, parseDatasetSpec, type DatasetName, type DatasetSpec } from './spec.js';
import { floatSplitRows, materialize, rawSplitRows, type SplitRows } from './split-rows.js';
import { syntheticSplit } from './synthetic.js';

export { DATASET_NAMES, type DatasetName } from './spec.js';

const SYNTHETIC_SHAPE: readonly number[] = Object.freeze([784]);

/** A built-in dataset's shapes: constants, nothing read. */
export function builtinShape(name: DatasetName): DatasetShape {
  switch (name) {
    case 'fashion-mnist': return { shape: FASHION_MNIST_SHAPE, features: 784, classes: 10 };
    case 'mnist': return { shape: MNIST_SHAPE, features: 784, classes: 10 };
    case 'synthetic': return { shape: SYNTHETIC_SHAPE, features: 784, classes: 10 };
    default: throw new DataOptionError('dataset', name, `one of ${DATASET_NAMES.join(', ')}`);
  }
}

/**
 * A dataset's sample shape, features and classes with as little reading as its kind allows (a
 * process that only hosts a model needs the shapes, not the samples): built-in ones are constants,
 * an IDX folder reads its image headers and label files, a dataset file its header; a module is
 * loaded (its factory is the only thing that knows), with `options` as its context.
 */
export async function datasetShape(spec: string | DatasetSpec, options: Partial<DatasetModuleContext> = {}): Promise<DatasetShape> {
  const s = parseDatasetSpec(spec);
  switch (s.kind) {
    case 'builtin': return builtinShape(s.name);
    case 'idx': return idxShape(s.path);
    case 'file': {
      const h = await readDatasetFileHeader(s.path);
      return { shape: h.shape, features: h.features, classes: h.classes };
    }
    case 'module': {
      const { train } = await loadModuleDataset(s.path, moduleContext(options));
      return { shape: train.shape, features: train.features, classes: train.classes };
    }
  }
}

export interface LoadDatasetOptions extends LoadOptions {
  /** synthetic only: training samples (default 60,000); `testSize` sets the test samples (default 10,000). */
  trainSamples?: number;
  /** A dataset module's ctx.rank and ctx.worldSize (default 0 and 1); other kinds ignore them. */
  rank?: number;
  worldSize?: number;
  /** file: only: read only this rank's page-aligned share of the training split (and all the test split). */
  shard?: DatasetFileShard;
}

export type LoadedDataset = DatasetSplit & {
  /** Set for the built-in datasets read through the cache. */
  source?: LoadedSplit['source'];
  /** Set for dataset files: what was read. */
  file?: DatasetFileReadInfo;
};

const KNOWN = new Set(['seed', 'testSize', 'normalize', 'shared', 'cacheDir', 'trainSamples', 'rank', 'worldSize', 'shard']);
/** Options each kind refuses, with the reason. */
const REFUSED: Record<string, Partial<Record<keyof LoadDatasetOptions, string>>> = {
  idx: { testSize: 'the IDX files are the split', cacheDir: 'IDX files are read directly', trainSamples: 'only synthetic data has a chosen size', shard: 'only dataset files (file:) are read by share' },
  file: { testSize: 'the file holds its split', cacheDir: 'the file is read directly', trainSamples: 'only synthetic data has a chosen size' },
  module: { testSize: 'the module returns its split', cacheDir: 'the module is loaded directly', trainSamples: 'only synthetic data has a chosen size', normalize: 'the module returns float32 values as they are to be used', shard: 'only dataset files (file:) are read by share; a module gets ctx.rank and ctx.worldSize' },
  builtin: { shard: 'only dataset files (file:) are read by share; the sampler partitions a built-in dataset' },
};

function checkOptions(s: DatasetSpec, options: LoadDatasetOptions): void {
  if (options === null || typeof options !== 'object') throw new DataOptionError('loadDataset options', options, 'an object');
  for (const key of Object.keys(options) as Array<keyof LoadDatasetOptions>) {
    if (!KNOWN.has(key)) throw new DataOptionError('loadDataset options', key, `one of ${[...KNOWN].join(', ')}`);
    if (options[key] === undefined) continue;
    const why = REFUSED[s.kind]![key];
    if (why !== undefined) {
      const what = s.kind === 'builtin' ? `'${s.name}'` : `${s.kind} datasets`;
      throw new DataOptionError(`loadDataset.${key}`, options[key], `absent for ${what} (${why})`);
    }
  }
  if (s.kind === 'builtin' && s.name !== 'synthetic' && options.trainSamples !== undefined) {
    throw new DataOptionError('loadDataset.trainSamples', options.trainSamples, `absent for '${s.name}' (only synthetic data has a chosen size)`);
  }
}

function moduleContext(options: { seed?: number; rank?: number; worldSize?: number }): DatasetModuleContext {
  const worldSize = checkInteger('loadDataset.worldSize', options.worldSize ?? 1, 1);
  return {
    seed: checkInteger('loadDataset.seed', options.seed ?? 0, Number.MIN_SAFE_INTEGER),
    rank: checkInteger('loadDataset.rank', options.rank ?? 0, 0, worldSize - 1),
    worldSize,
  };
}

/**
 * Loads a dataset spec: 'fashion-mnist' (60,000 / 10,000), 'mnist' (8,000 / 2,000), 'synthetic'
 * (Gaussian clusters, 784 features, 10 classes; 60,000 / 10,000 by default), `idx:FOLDER`,
 * `file:PATH` (optionally one rank's share: `shard`) or a dataset module's path.
 */
export async function loadDataset(spec: string | DatasetSpec, options: LoadDatasetOptions = {}): Promise<LoadedDataset> {
  const s = parseDatasetSpec(spec);
  options ??= {};
  checkOptions(s, options);
  const { trainSamples, rank: _rank, worldSize: _worldSize, shard, ...rest } = options;
  switch (s.kind) {
    case 'builtin':
      switch (s.name) {
        case 'fashion-mnist': return loadFashionMnist(rest);
        case 'mnist': return loadMnist(rest);
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
      }
      break;
    case 'idx':
      return materialize(await loadIdxRows(s.path, rest.normalize !== undefined ? { normalize: rest.normalize } : {}),
        rest.shared !== undefined ? { shared: rest.shared } : {});
    case 'file':
      return loadDatasetFile(s.path, {
        ...(shard !== undefined ? { shard } : {}),
        ...(rest.shared !== undefined ? { shared: rest.shared } : {}),
        ...(rest.normalize !== undefined ? { normalize: rest.normalize } : {}),
      });
    case 'module': {
      const ctx = moduleContext(options);
      if (rest.shared) return materialize(await loadModuleRows(s.path, ctx), { shared: true });
      // the module's own arrays, no copy
      const { train, test } = await loadModuleDataset(s.path, ctx);
      const permutation = new Int32Array(test.length + train.length);
      for (let i = 0; i < permutation.length; i++) permutation[i] = i;
      return { train, test, permutation };
    }
  }
  throw new DataOptionError('dataset', spec, `one of ${DATASET_NAMES.join(', ')}`);
}

export interface DatasetRowsOptions {
  /** Built-in datasets: the split's seed (default 0), as `--seed` gives `loadDataset`; a module's ctx.seed. */
  seed?: number;
  /** Built-in datasets: the cache directory. */
  cacheDir?: string;
  /** synthetic only: training samples (default 60,000). */
  trainSamples?: number;
}

/**
 * A dataset's rows in split order, in their stored element type: the built-in image datasets as
 * uint8 pixels with their normalisation (the samples and order `loadDataset` gives with the same
 * seed), synthetic data and modules as float32, IDX folders and dataset files as stored.
 */
export async function datasetRows(spec: string | DatasetSpec, options: DatasetRowsOptions = {}): Promise<SplitRows> {
  const s = parseDatasetSpec(spec);
  if (options.trainSamples !== undefined && !(s.kind === 'builtin' && s.name === 'synthetic')) {
    throw new DataOptionError('datasetRows.trainSamples', options.trainSamples, 'absent except for synthetic data (only synthetic data has a chosen size)');
  }
  switch (s.kind) {
    case 'builtin': {
      if (s.name === 'synthetic') {
        return floatSplitRows(syntheticSplit({
          ...(options.seed !== undefined ? { seed: options.seed } : {}),
          ...(options.trainSamples !== undefined ? { trainSamples: options.trainSamples } : {}),
        }));
      }
      const source = s.name === 'fashion-mnist' ? FASHION_MNIST_SOURCE : MNIST_SOURCE;
      const { cached, split } = await loadPackageRaw(source, {
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
        ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      });
      return rawSplitRows(cached.raw, split);
    }
    case 'idx': return loadIdxRows(s.path);
    case 'file': return (await readDatasetFileRows(s.path)).rows;
    case 'module': return loadModuleRows(s.path, moduleContext({ ...(options.seed !== undefined ? { seed: options.seed } : {}) }));
  }
}
