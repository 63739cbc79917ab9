// The data layer's public API: datasets with a sample shape (built-in, IDX folders, dataset modules,
// the paged dataset file), their binary cache, distributed sampling and batching.
export type { Dataset, DatasetShape, DatasetSplit, RawDataset, SplitOptions } from './dataset.js';
export { take, checkDataset, checkShape, splitRaw } from './dataset.js';
export type { LoadOptions, LoadedSplit } from './package-source.js';
export { loadFashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, FASHION_MNIST_SHAPE } from './fashion-mnist.js';
export { loadMnist, MNIST_MEAN, MNIST_STD, MNIST_SHAPE } from './mnist.js';
export { syntheticDataset, syntheticSplit, type SyntheticOptions, type SyntheticSplitOptions } from './synthetic.js';
export { parseDatasetSpec, formatDatasetSpec, looksLikeModule, type DatasetSpec } from './spec.js';
export {
  builtinShape, datasetShape, datasetRows, loadDataset, DATASET_NAMES,
  type DatasetName, type DatasetRowsOptions, type LoadDatasetOptions, type LoadedDataset,
} from './load-dataset.js';
export { encodeIdx, pixelStats, readIdx, readIdxHeader, type IdxHeader } from './idx.js';
export type { DatasetModuleContext, DatasetModulePart, DatasetModuleResult, CreateDataset } from './module-source.js';
export type { RowChunk, SplitRows } from './split-rows.js';
export { DATASET_FILE_MAGIC, DATASET_FILE_VERSION, type DatasetFileHeader } from './dataset-file-format.js';
export { writeDatasetFile, DEFAULT_PAGE_SAMPLES, type WriteDatasetFileOptions } from './dataset-file-write.js';
export {
  loadDatasetFile, readDatasetFileHeader, shardPages, verifyDatasetFile,
  type DatasetFileLoad, type DatasetFileLoadOptions, type DatasetFileReadInfo, type DatasetFileShard,
} from './dataset-file-read.js';
export { resolveCacheDir, encodeCache, decodeCache, CACHE_MAGIC, CACHE_VERSION, type CacheLoad } from './cache.js';
export { DistributedSampler, type DistributedSamplerOptions, type Sampler } from './sampler.js';
export { shardStream, type ShardOptions } from './shard-stream.js';
export { DataLoader, type Batch, type DataLoaderOptions } from './loader.js';
export { SeededRandom, permutation } from './random.js';
export { DataOptionError, DatasetSourceError, DatasetFileError, DatasetModuleError, CacheError } from './errors.js';
