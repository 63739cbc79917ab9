// Splitting a model into pipeline stages: contiguous runs of the children of its top-level
// Sequential, one run per stage.
//
// A unit is a child with parameters and the parameterless children after it (a Linear and its
// ReLU stay together, so Sequential still fuses them); stages are cut between units. The cut is
// chosen to minimise the most expensive stage, by one of two costs (torchgpipe's balance_by_size
// and, in place of its measured balance_by_time, a count that every process computes alike):
// - 'params': the parameters of the stage;
// - 'flops': the multiply-adds of a forward and backward of one sample. Linear and Conv2d children
//   are counted exactly from their shapes (a dry forward of one sample gives them); any other
//   child with parameters counts as a Linear of as many weights; parameterless children count
//   their output elements. A backward costs two forwards, one for the model's first layers whose
//   input needs no gradient (only their weights' gradients are computed).
// `split` gives the cut by hand: the child index at which each stage after the first starts.
//
// The dry forward also gives the shape of one sample at every stage boundary, so a stage knows
// the size of every activation and gradient it receives before the first one arrives.
import { Conv2d, Linear, Module, noGrad, Sequential, Tensor } from '../tensor/index.js';

import { BALANCES, type Balance } from './schedule-names.js';

export { BALANCES, type Balance };

/** A refused split (too many stages, an empty stage, a model that is not a Sequential). */
export class PipelineSplitError extends RangeError {
  override name = 'PipelineSplitError';
}

export interface StagePlan {
  /** Children [first, end) of the top-level Sequential. */
  first: number;
  end: number;
  parameters: number;
  /** Multiply-adds (x2: FLOPs) of one sample's forward and backward through the stage. */
  flops: number;
}

export interface PipelinePlan {
  stages: StagePlan[];
  /** Shape of one sample entering stage i (`[K]`: leaving the last stage); batch dimension excluded. */
  shapes: number[][];
  /** The balance the cut was chosen by ('split': given by hand). */
  balance: Balance | 'split';
}

export interface PipelineSplitOptions {
  /** The shape of one input sample (batch dimension excluded). */
  inputShape: readonly number[];
  balance?: Balance;
  /** The child index at which each stage after the first starts (K - 1 increasing indices). */
  split?: readonly number[];
}

interface ChildCost {
  parameters: number;
  flops: number;
  outShape: number[];
}

function describeChild(model: Sequential, i: number): string {
  return `${i}: ${model.at(i).constructor.name}`;
}

/** Per child: parameters, forward-and-backward FLOPs per sample, and its output shape (one dry forward of a sample). */
function childCosts(model: Sequential, inputShape: readonly number[]): ChildCost[] {
  const out: ChildCost[] = [];
  const training = model.training;
  model.eval();
  try {
    noGrad(() => {
      let x = new Tensor(new Float32Array(inputShape.reduce((a, b) => a * b, 1)), [1, ...inputShape]);
      let paramsBefore = false;
      for (let i = 0; i < model.length; i++) {
        const m = model.at(i);
        const inShape = x.shape;
        let y: Tensor;
        try {
          y = m.forward(x);
        } catch (e) {
          throw new PipelineSplitError(`pipeline: child ${describeChild(model, i)} fails on a sample of shape [${inShape.slice(1).join(', ')}]: ${e instanceof Error ? e.message : String(e)}`);
        }
        const parameters = m.parameterCount();
        const outElems = y.size;
        let forward: number;
        if (m instanceof Linear) forward = 2 * outElems * m.inFeatures;
        else if (m instanceof Conv2d) forward = 2 * outElems * (m.inChannels / m.groups) * m.kernelSize[0] * m.kernelSize[1];
        else if (parameters > 0) forward = 2 * parameters;
        else forward = outElems;
        // a backward computes the weights' gradients (one forward's work) and, where the input
        // needs one, the input's gradient (another)
        const backward = parameters === 0 ? outElems : paramsBefore ? 2 * forward : forward;
        out.push({ parameters, flops: forward + backward, outShape: y.shape.slice(1) as number[] });
        if (parameters > 0) paramsBefore = true;
        x = y;
      }
    });
  } finally {
    model.train(training);
  }
  return out;
}

/** Unit starts: every child with parameters (the first unit also takes the leading parameterless children). */
function unitStarts(costs: readonly ChildCost[]): number[] {
  const starts: number[] = [];
  costs.forEach((c, i) => {
    if (c.parameters > 0) starts.push(i);
  });
  if (starts.length > 0) starts[0] = 0;
  return starts;
}

/** Cuts `weights` (one per unit) into `k` contiguous groups minimising the largest group's sum; returns the first unit of each group. */
function balancedCut(weights: readonly number[], k: number): number[] {
  const n = weights.length;
  const prefix = [0];
  for (const w of weights) prefix.push(prefix[prefix.length - 1]! + w);
  // best[j][i]: the smallest possible largest sum cutting units [0, i) into j groups
  const best = Array.from({ length: k + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const from = Array.from({ length: k + 1 }, () => new Array<number>(n + 1).fill(0));
  best[0]![0] = 0;
  for (let j = 1; j <= k; j++) {
    for (let i = j; i <= n; i++) {
      for (let s = j - 1; s < i; s++) {
        const v = Math.max(best[j - 1]![s]!, prefix[i]! - prefix[s]!);
        if (v < best[j]![i]!) {
          best[j]![i] = v;
          from[j]![i] = s;
        }
      }
    }
  }
  const firsts: number[] = [];
  let i = n;
  for (let j = k; j >= 1; j--) {
    const s = from[j]![i]!;
    firsts.unshift(s);
    i = s;
  }
  return firsts;
}

/**
 * Plans `stages` stages of `model`. Throws a PipelineSplitError with one line saying what is wrong:
 * a model that is not a Sequential, more stages than layers with parameters, a `split` that leaves
 * a stage empty or without parameters.
 */
export function planPipeline(model: Module, stages: number, options: PipelineSplitOptions): PipelinePlan {
  if (!Number.isSafeInteger(stages) || stages < 1) throw new PipelineSplitError(`--stages must be an integer >= 1, got ${stages}`);
  if (!(model instanceof Sequential)) {
    throw new PipelineSplitError(`pipeline: the model must be a Sequential (its children are cut into stages), got ${model.constructor.name}: return a Sequential from createModel`);
  }
  if (model.length === 0) throw new PipelineSplitError('pipeline: the model is an empty Sequential');
  const costs = childCosts(model, options.inputShape);
  const starts = unitStarts(costs);
  const units = starts.length;
  let firsts: number[];
  let balance: Balance | 'split';
  if (options.split !== undefined) {
    const split = options.split;
    balance = 'split';
    if (split.length !== stages - 1) {
      throw new PipelineSplitError(`--split gives ${split.length} index(es) for --stages ${stages}: give ${stages - 1}, the child index at which each stage after the first starts`);
    }
    let prev = 0;
    split.forEach((s, k) => {
      if (!Number.isSafeInteger(s) || s <= prev || s >= model.length) {
        const why = !Number.isSafeInteger(s) ? 'not an integer' : s <= prev ? (s === prev ? `stage ${k} would be empty` : 'the indices must increase') : `the model has children 0..${model.length - 1}, so stage ${k + 1} would be empty`;
        throw new PipelineSplitError(`--split ${split.join(',')}: ${s} is not a valid start of stage ${k + 1} (${why})`);
      }
      prev = s;
    });
    firsts = [0, ...split];
  } else {
    balance = options.balance ?? 'flops';
    if (stages > units) {
      throw new PipelineSplitError(`--stages ${stages}: the model has ${units} layer(s) with parameters (children ${costs.flatMap((c, i) => (c.parameters > 0 ? [describeChild(model, i)] : [])).join(', ')}), so at most ${units} stage(s)`);
    }
    const weights = starts.map((s, u) => {
      const end = starts[u + 1] ?? costs.length;
      let w = 0;
      for (let i = s; i < end; i++) w += balance === 'params' ? costs[i]!.parameters : costs[i]!.flops;
      return w;
    });
    firsts = balancedCut(weights, stages).map((u) => starts[u]!);
  }
  const plans: StagePlan[] = firsts.map((first, k) => {
    const end = firsts[k + 1] ?? model.length;
    let parameters = 0, flops = 0;
    for (let i = first; i < end; i++) {
      parameters += costs[i]!.parameters;
      flops += costs[i]!.flops;
    }
    return { first, end, parameters, flops };
  });
  plans.forEach((p, k) => {
    if (p.parameters === 0) {
      const children = Array.from({ length: p.end - p.first }, (_, j) => describeChild(model, p.first + j)).join(', ');
      throw new PipelineSplitError(`pipeline: stage ${k} (children ${children}) has no parameters: move its cut so every stage has a layer with parameters`);
    }
  });
  const shapes = [options.inputShape.slice(), ...plans.map((p) => costs[p.end - 1]!.outShape)];
  return { stages: plans, shapes, balance };
}

/** The children of stage `k` of `plan`, as a Sequential of the model's own modules (sharing their parameters). */
export function stageModule(model: Sequential, plan: PipelinePlan, k: number): Sequential {
  const p = plan.stages[k];
  if (!p) throw new RangeError(`stageModule: stage ${k} is not in the plan (${plan.stages.length} stages)`);
  const children: Module[] = [];
  for (let i = p.first; i < p.end; i++) children.push(model.at(i));
  return new Sequential(...children);
}
