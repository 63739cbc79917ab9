// The data layer's public API: datasets, their binary cache, distributed sampling and batching.
export type { Dataset, DatasetSplit, RawDataset, SplitOptions } from './dataset.js';
export { take, checkDataset, splitRaw } from './dataset.js';
export type { LoadOptions, LoadedSplit } from './package-source.js';
export { loadFashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD } from './fashion-mnist.js';
export { loadMnist, MNIST_MEAN, MNIST_STD } from './mnist.js';
export { syntheticDataset, syntheticSplit, type SyntheticOptions, type SyntheticSplitOptions } from './synthetic.js';
export { datasetShape, loadDataset, DATASET_NAMES, type DatasetName, type LoadDatasetOptions } from './load-dataset.js';
export { resolveCacheDir, encodeCache, decodeCache, CACHE_MAGIC, CACHE_VERSION, type CacheLoad } from './cache.js';
export { DistributedSampler, type DistributedSamplerOptions, type Sampler } from './sampler.js';
export { shardStream, type ShardOptions } from './shard-stream.js';
export { DataLoader, type Batch, type DataLoaderOptions } from './loader.js';
export { SeededRandom, permutation } from './random.js';
export { DataOptionError, DatasetSourceError, CacheError } from './errors.js';
