// Dataset modules: `--dataset ./my-data.mjs`, the user's own data as code.
//
// The contract (docs/DATA.md): the module exports `createDataset(ctx)`, ctx = { seed, rank,
// worldSize }, returning (or resolving to) { train, test }, each { x: Float32Array, y: Int32Array,
// shape, classes }: x holds the samples row-major (its length a multiple of the shape's product,
// which gives the sample count), y one label in [0, classes) per sample; train and test share the
// shape and the classes. Everything is checked before anything trains, and each breach is one
// DatasetModuleError naming the module and the field.
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkShape, type Dataset } from './dataset.js';
import { DatasetModuleError } from './errors.js';
import { floatSplitRows, type SplitRows } from './split-rows.js';

/** What a dataset module's factory is called with. */
export interface DatasetModuleContext {
  /** The run's seed (`--seed`), for a module that shuffles or generates. */
  seed: number;
  /** This process's rank and the number of ranks; a module may load only its share. */
  rank: number;
  worldSize: number;
}

/** One split as a module returns it. */
export interface DatasetModulePart {
  x: Float32Array;
  y: Int32Array;
  shape: readonly number[];
  classes: number;
}

export interface DatasetModuleResult {
  train: DatasetModulePart;
  test: DatasetModulePart;
}

export type CreateDataset = (ctx: DatasetModuleContext) => DatasetModuleResult | Promise<DatasetModuleResult>;

/** The module's URL: a path is resolved against the working directory. */
export function moduleUrl(path: string): string {
  return path.startsWith('file://') ? path : pathToFileURL(isAbsolute(path) ? path : resolve(path)).href;
}

/** Imports a dataset module and returns its `createDataset`. */
export async function importDatasetModule(path: string): Promise<CreateDataset> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(moduleUrl(path))) as Record<string, unknown>;
  } catch (err) {
    throw new DatasetModuleError(`cannot import the dataset module: ${(err as Error).message ?? String(err)}`, path, { cause: err });
  }
  const factory = mod['createDataset'] ?? (mod['default'] as Record<string, unknown> | undefined)?.['createDataset'];
  if (typeof factory !== 'function') {
    throw new DatasetModuleError('the dataset module exports no createDataset function (export function createDataset(ctx) { return { train, test } })', path);
  }
  return factory as CreateDataset;
}

const describe = (v: unknown): string => (v === null ? 'null' : ArrayBuffer.isView(v) ? `${v.constructor.name}(${(v as unknown as ArrayLike<number>).length})` : Array.isArray(v) ? 'an array' : typeof v);

function checkPart(path: string, which: 'train' | 'test', part: unknown): Dataset {
  const at = `createDataset(ctx).${which}`;
  if (part === null || typeof part !== 'object') throw new DatasetModuleError(`${at} must be { x, y, shape, classes }, got ${describe(part)}`, path);
  const { x, y, shape, classes } = part as Partial<DatasetModulePart>;
  if (!(x instanceof Float32Array)) throw new DatasetModuleError(`${at}.x must be a Float32Array, got ${describe(x)}`, path);
  if (!(y instanceof Int32Array)) throw new DatasetModuleError(`${at}.y must be an Int32Array, got ${describe(y)}`, path);
  let dims: readonly number[];
  try {
    dims = checkShape(`${at}.shape`, shape);
  } catch (err) {
    throw new DatasetModuleError((err as Error).message, path);
  }
  if (typeof classes !== 'number' || !Number.isSafeInteger(classes) || classes < 1) {
    throw new DatasetModuleError(`${at}.classes must be an integer >= 1, got ${String(classes)}`, path);
  }
  const features = dims.reduce((a, b) => a * b, 1);
  if (x.length % features !== 0) {
    throw new DatasetModuleError(`${at}.x has ${x.length} values, not a multiple of the shape [${dims.join(', ')}] (${features} per sample)`, path);
  }
  const length = x.length / features;
  if (y.length !== length) throw new DatasetModuleError(`${at}.y has ${y.length} labels for ${length} samples`, path);
  for (let i = 0; i < length; i++) {
    const label = y[i]!;
    if (label < 0 || label >= classes) throw new DatasetModuleError(`${at}.y[${i}] is ${label}, outside [0, ${classes}) (classes is ${classes})`, path);
  }
  return { x, y, length, shape: dims, features, classes };
}

/** Calls a dataset module's factory and checks what it returns against the contract. */
export async function loadModuleDataset(path: string, ctx: DatasetModuleContext): Promise<{ train: Dataset; test: Dataset }> {
  const createDataset = await importDatasetModule(path);
  let result: unknown;
  try {
    result = await createDataset({ ...ctx });
  } catch (err) {
    throw new DatasetModuleError(`createDataset(ctx) failed: ${(err as Error)?.message ?? String(err)}`, path, { cause: err });
  }
  if (result === null || typeof result !== 'object') {
    throw new DatasetModuleError(`createDataset(ctx) must return { train, test }, got ${describe(result)}`, path);
  }
  const train = checkPart(path, 'train', (result as { train?: unknown }).train);
  const test = checkPart(path, 'test', (result as { test?: unknown }).test);
  if (train.shape.join() !== test.shape.join()) {
    throw new DatasetModuleError(`train and test shapes differ: [${train.shape.join(', ')}] and [${test.shape.join(', ')}]`, path);
  }
  if (train.classes !== test.classes) throw new DatasetModuleError(`train and test classes differ: ${train.classes} and ${test.classes}`, path);
  return { train, test };
}

/** A module's dataset as float32 rows (what `psdata convert` writes and `loadDataset` materialises). */
export async function loadModuleRows(path: string, ctx: DatasetModuleContext): Promise<SplitRows> {
  return floatSplitRows(await loadModuleDataset(path, ctx));
}
