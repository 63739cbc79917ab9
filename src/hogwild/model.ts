// How a Hogwild run gets its model: a module (path or URL) exporting a factory, imported by the
// main thread and by every worker, since a closure cannot cross into a worker thread.
//
// The main thread's instance is built first and its parameters are copied into the shared buffer;
// each worker then builds its own instance (its own graph, activations and gradients) and points
// its parameters at that buffer without copying, so all of them train the same weights.
import { isAbsolute, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Module, Tensor } from '../tensor/index.js';
import { HogwildOptionError } from './errors.js';

/** A model Hogwild can train: a module whose forward maps a [batch, features] input to logits. */
export interface HogwildModel extends Module {
  forward(x: Tensor): Tensor;
}

/** What a model factory is told about the run. */
export interface ModelContext {
  /** Input features and classes of the dataset. */
  features: number;
  classes: number;
  /** --hidden and --seed of the run. */
  hidden: number;
  seed: number;
  /** The worker building this instance, or null for the main thread's (the one evaluated). */
  rank: number | null;
  workers: number;
  /** `modelOptions` of hogwild.train, as given (structured-cloned into the workers). */
  options: unknown;
}

/**
 * The factory a model module exports, as `createModel` or as its default export. Every call with
 * the same context must build the same architecture (same parameter names, shapes and order);
 * initial values only matter in the main thread's call.
 */
export type ModelFactory = (ctx: ModelContext) => HogwildModel | Promise<HogwildModel>;

/** The default model module: the MLP features-H-H-classes of the trainer. */
export const DEFAULT_MODEL_URL = new URL(`./mlp${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

/** A URL string for a model module given as a path (relative to the working directory), file URL or URL. */
export function modelModuleUrl(model: string | URL | undefined): string {
  if (model === undefined) return DEFAULT_MODEL_URL;
  if (model instanceof URL) return model.href;
  if (typeof model !== 'string' || model === '') throw new HogwildOptionError('model', model, 'a module path or URL exporting createModel');
  if (/^[a-z][a-z0-9+.-]*:/i.test(model) && !/^[a-z]:[\\/]/i.test(model)) return model;
  return pathToFileURL(isAbsolute(model) ? model : resolve(model)).href;
}

/** Imports a model module and returns its factory. */
export async function loadModelFactory(url: string): Promise<ModelFactory> {
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(url);
  } catch (e) {
    throw new HogwildOptionError('model', url, `an importable module (${e instanceof Error ? e.message : String(e)})`);
  }
  const factory = typeof mod.createModel === 'function' ? mod.createModel : mod.default;
  if (typeof factory !== 'function') throw new HogwildOptionError('model', url, 'a module exporting a function createModel (or a default function)');
  return factory as ModelFactory;
}

/**
 * import(), except for a TypeScript file the ESM loader cannot read. On Node 20, tsx's ESM hooks
 * are not active in worker threads, but its require hook is (piscina loads worker.ts through
 * require), so the model module is required too: that also gives it the same instances of the
 * tensor layer as the worker, which `instanceof Module` and `instanceof Tensor` depend on.
 */
async function importModule(url: string): Promise<Record<string, unknown>> {
  try {
    return await import(url) as Record<string, unknown>;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code !== 'ERR_UNKNOWN_FILE_EXTENSION' || !url.startsWith('file:') || !/\.[cm]?ts$/.test(url)) throw e;
    return createRequire(import.meta.url)(fileURLToPath(url)) as Record<string, unknown>;
  }
}

/** Calls the factory and checks that it returned a model with parameters. */
export async function buildFromFactory(factory: ModelFactory, ctx: ModelContext, url: string): Promise<HogwildModel> {
  const model = await factory(ctx);
  if (model === null || typeof model !== 'object' || typeof model.forward !== 'function' || typeof model.parameters !== 'function') {
    throw new HogwildOptionError('model', url, 'a factory returning a Module with forward()');
  }
  if (model.parameters().length === 0) throw new HogwildOptionError('model', url, 'a factory returning a model with parameters');
  return model;
}
