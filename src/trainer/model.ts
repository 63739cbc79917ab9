// The model contract: how every strategy gets the user's model.
//
// A model is a module (a path relative to the working directory, a file URL, or the name of a
// preset such as `mlp`) whose `createModel(ctx)` (or default export) returns a `Module`. Optional
// exports: `loss(output, labels)` (default: cross-entropy on logits) and `metric(output, labels)`
// (the number of samples of the batch counted correct; default: argmax equals the label). API
// callers may pass such a module object directly, for the strategies that build the model in
// their own process.
//
// Every call with the same context must build the same architecture (parameter names, shapes
// and order): processes and threads each build their own instance, and the initial values that
// count are those of one of them (the first trainer's, the server's, the main thread's). The
// processes of a world compare layouts when they join (layoutOf, layoutDifference in src/tensor/nn/layout.ts).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Conv2d, countCorrect, crossEntropy, Linear, Module, noGrad, Sequential, Tensor, type Labels } from '../tensor/index.js';
import { ModelError } from './errors.js';

/** What a model factory is told about the run. */
export interface ModelContext {
  /** Shape of one sample as the model receives it, batch dimension excluded (e.g. [784]). */
  inputShape: number[];
  /** Elements of one sample (the product of inputShape). */
  features: number;
  /** Classes of the dataset: the model's output is [batch, classes] logits. */
  classes: number;
  /** --seed of the run: initialise from it, so every process builds the same initial values. */
  seed: number;
  /** Rank of the process or worker thread building this instance (null: the main instance). */
  rank: number | null;
  /** What the instance is for. */
  role: 'local' | 'trainer' | 'server' | 'worker';
  /** Trainers of the run (Hogwild: worker threads). */
  workers: number;
  /** --hidden and --depth (the mlp preset's sizes; other models may read them or not). */
  hidden: number;
  depth: number;
  /** --model-options (or the API's modelOptions), as given. */
  options: Record<string, unknown>;
}

export type ModelFactory = (ctx: ModelContext) => Module | Promise<Module>;
/** A scalar loss of the batch's output and labels, to be minimised. */
export type LossFunction = (output: Tensor, labels: Labels) => Tensor;
/** How many samples of the batch count as correct (test accuracy = the sum over the test split / its size). */
export type MetricFunction = (output: Tensor, labels: Labels) => number;

/** A model module's exports (also what an API caller may pass instead of a path). */
export interface ModelModule {
  createModel?: ModelFactory;
  default?: ModelFactory | unknown;
  loss?: LossFunction;
  metric?: MetricFunction;
}

/** A model given by name, path or URL, or as a module object (API only). */
export type ModelRef = string | URL | ModelModule;

/** The presets: model modules shipped with psrpc, chosen by name. */
/** Running from src/ under a TypeScript loader (tsx), not from the compiled dist/. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
export const MODEL_PRESETS: Readonly<Record<string, string>> = {
  mlp: new URL(`./presets/mlp${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url).href,
  cnn: new URL(`./presets/cnn${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url).href,
};

export interface ResolvedModel {
  /** What results and messages name: the preset's name, the path as given, or '(module object)'. */
  name: string;
  /** An importable URL of the module (threads and other processes import it themselves); absent for a module object. */
  url?: string;
  factory: ModelFactory;
  loss: LossFunction;
  metric: MetricFunction;
}

/** Loads the model `ref` (default: the mlp preset); every failure is a ModelError naming it. */
export async function resolveModel(ref: ModelRef = 'mlp'): Promise<ResolvedModel> {
  if (ref !== null && typeof ref === 'object' && !(ref instanceof URL)) return fromModule('(module object)', undefined, ref as ModelModule);
  const name = ref instanceof URL ? ref.href : ref;
  if (typeof name !== 'string' || name.trim() === '') throw new ModelError(String(name), 'expected a preset name (mlp, cnn) or the path or URL of a module exporting createModel');
  const url = modelUrl(name);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(url);
  } catch (e) {
    // plain Node has no TypeScript loader: say so instead of its require() error
    if (/\.[cm]?ts$/.test(url) && !FROM_SOURCE) {
      throw new ModelError(name, 'is a TypeScript module and this process has no TypeScript loader: compile it to JavaScript (an ES module), or run under `node --import tsx`');
    }
    throw new ModelError(name, `cannot be imported (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`);
  }
  return fromModule(name, url, mod as ModelModule);
}

/** The URL a model name stands for: a preset's module, a URL as it is, or a path (relative to the working directory). */
export function modelUrl(name: string): string {
  const preset = MODEL_PRESETS[name];
  if (preset) return preset;
  if (/^[a-z][a-z0-9+.-]*:/i.test(name) && !/^[a-z]:[\\/]/i.test(name)) {
    if (name.startsWith('file:') && !existsSync(fileURLToPath(name))) throw new ModelError(name, `no such file (${fileURLToPath(name)})`);
    return name;
  }
  const path = isAbsolute(name) ? name : resolve(name);
  if (!existsSync(path)) {
    const bare = !/[\\/.]/.test(name);
    throw new ModelError(name, bare
      ? `is neither a preset (${Object.keys(MODEL_PRESETS).join(', ')}) nor a file (${path} does not exist)`
      : `no such file (${path})`);
  }
  return pathToFileURL(path).href;
}

function fromModule(name: string, url: string | undefined, mod: ModelModule): ResolvedModel {
  const factory = typeof mod.createModel === 'function' ? mod.createModel : typeof mod.default === 'function' ? mod.default as ModelFactory : undefined;
  if (!factory) throw new ModelError(name, 'exports no function createModel (nor a default function)');
  if (mod.loss !== undefined && typeof mod.loss !== 'function') throw new ModelError(name, `exports loss as ${typeof mod.loss}; expected a function (output, labels) => scalar Tensor`);
  if (mod.metric !== undefined && typeof mod.metric !== 'function') throw new ModelError(name, `exports metric as ${typeof mod.metric}; expected a function (output, labels) => number correct`);
  return { name, ...(url ? { url } : {}), factory, loss: mod.loss ?? crossEntropy, metric: mod.metric ?? countCorrect };
}

/**
 * import(), except for a TypeScript file the ESM loader cannot read. On Node 20, tsx's ESM hooks
 * are not active in worker threads, but its require hook is (piscina loads the Hogwild worker
 * through require), so the model module is required there: that also gives it the same instances
 * of the tensor layer as the worker, which `instanceof Module` and `instanceof Tensor` depend on.
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

/**
 * Builds one instance and checks it: a Module with parameters whose output for a batch of two
 * zero samples is [2, classes] and whose loss on it is a finite scalar. The check runs before
 * anything trains, without recording a graph, in eval mode (the instance is left in train mode).
 */
export async function buildModel(model: ResolvedModel, ctx: ModelContext): Promise<Module> {
  let built: unknown;
  try {
    built = await model.factory(ctx);
  } catch (e) {
    throw new ModelError(model.name, `createModel threw: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!(built instanceof Module)) {
    const what = built === null ? 'null' : typeof built === 'object' ? `an object (${(built as object).constructor?.name ?? 'no class'})` : typeof built;
    throw new ModelError(model.name, `createModel returned ${what}; expected a Module (Sequential, Linear, ... from psrpc)`);
  }
  if (built.parameters().length === 0) throw new ModelError(model.name, 'createModel returned a Module with no parameters');
  checkOutput(model, built, ctx);
  return built;
}

function checkOutput(model: ResolvedModel, m: Module, ctx: ModelContext): void {
  const forward = (m as { forward?: unknown }).forward;
  if (typeof forward !== 'function') throw new ModelError(model.name, 'createModel returned a Module without forward(x)');
  const batch = 2;
  const wasTraining = m.training;
  m.eval();
  try {
    noGrad(() => {
      const x = new Tensor(new Float32Array(batch * ctx.features), [batch, ...ctx.inputShape]);
      let out: unknown;
      try {
        out = (forward as (x: Tensor) => unknown).call(m, x);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        const first = firstLayerInput(m, ctx.inputShape);
        if (first && !first.fits) throw new ModelError(model.name, `does not fit the data: the dataset's samples have shape [${ctx.inputShape.join(', ')}], while ${first.expects} (${why})`);
        throw new ModelError(model.name, `the model's forward fails on a batch of shape [${batch}, ${ctx.inputShape.join(', ')}]: ${why}`);
      }
      if (!(out instanceof Tensor)) throw new ModelError(model.name, `the model's forward returned ${typeof out}; expected a Tensor`);
      if (out.shape.length !== 2 || out.shape[0] !== batch || out.shape[1] !== ctx.classes) {
        throw new ModelError(model.name, `the model's output for a batch of shape [${batch}, ${ctx.inputShape.join(', ')}] has shape [${out.shape.join(', ')}]; expected [${batch}, ${ctx.classes}] (one logit per class of the dataset)`);
      }
      let loss: unknown;
      try {
        loss = model.loss(out, new Int32Array(batch));
      } catch (e) {
        throw new ModelError(model.name, `its loss fails on the model's output: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (!(loss instanceof Tensor) || loss.size !== 1) throw new ModelError(model.name, `its loss returned ${loss instanceof Tensor ? `a tensor of shape [${loss.shape.join(', ')}]` : typeof loss}; expected a scalar Tensor`);
    });
  } finally {
    if (wasTraining) m.train();
  }
}

/**
 * What the model's first layer says of the samples it takes, when it is a layer whose input is
 * known (Linear, Conv2d), and whether the data's sample shape fits it.
 */
function firstLayerInput(m: Module, sample: readonly number[]): { expects: string; fits: boolean } | null {
  let first: Module = m;
  while (first instanceof Sequential && first.length > 0) first = first.at(0);
  const elements = sample.reduce((a, b) => a * b, 1);
  if (first instanceof Linear) {
    return { expects: `its first layer, Linear(${first.inFeatures} -> ${first.outFeatures}), expects samples of shape [${first.inFeatures}]`, fits: elements === first.inFeatures };
  }
  if (first instanceof Conv2d) {
    return { expects: `its first layer, Conv2d(${first.inChannels} -> ${first.outChannels}), expects images of shape [${first.inChannels}, height, width]`, fits: sample.length === 3 && sample[0] === first.inChannels };
  }
  return null;
}

/** What a model is told of its data: one sample's shape (absent: [features]) and the classes. */
export interface DataShape {
  readonly shape?: readonly number[];
  readonly features: number;
  readonly classes: number;
}

/** The context a strategy hands the factory: the dataset's shapes, the run's options, and who builds. */
export function modelContext(
  opts: { seed: number; hidden: number; depth: number; modelOptions: Record<string, unknown> },
  data: DataShape,
  place: { rank: number | null; role: ModelContext['role']; workers: number },
): ModelContext {
  return {
    inputShape: [...(data.shape ?? [data.features])], features: data.features, classes: data.classes,
    seed: opts.seed, rank: place.rank, role: place.role, workers: place.workers,
    hidden: opts.hidden, depth: opts.depth, options: opts.modelOptions,
  };
}

/** resolveModel, then buildModel with the context of `place`: the usual way a strategy gets its instance. */
export async function loadModel(opts: { model: ModelRef; seed: number; hidden: number; depth: number; modelOptions: Record<string, unknown> },
  data: DataShape, place: { rank: number | null; role: ModelContext['role']; workers: number }): Promise<{ resolved: ResolvedModel; model: Module; ctx: ModelContext }> {
  const resolved = await resolveModel(opts.model);
  const ctx = modelContext(opts, data, place);
  return { resolved, model: await buildModel(resolved, ctx), ctx };
}
