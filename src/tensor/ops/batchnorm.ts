// batchNorm2d: batch normalisation per channel of x [n, c, ...] (NCHW images, or [n, c] rows),
// torch.nn.functional.batch_norm semantics.
//
// Training normalises with the batch's mean and biased variance and, when running statistics are
// given, folds them in with `momentum` (the unbiased variance, as torch). Evaluation normalises
// with the running statistics. The per-channel mean and 1/std the backward needs live in two
// pooled buffers that go back when the backward releases the graph.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { expectFloat, expectSameDevice } from './validate.js';

/** Options of `batchNorm2d`. */
export interface BatchNormOptions {
  /** Normalise with the batch's statistics (and update the running ones), else with the running statistics. */
  training: boolean;
  /** Weight of the batch in the running statistics' update (default 0.1). */
  momentum?: number;
  /** Added to the variance before its square root (default 1e-5). */
  eps?: number;
}

class BatchNormNode extends Node {
  readonly name = 'batchNorm2d';
  override consumesGradOut = true;
  constructor(
    private readonly x: Tensor,
    private readonly gamma: Tensor | null,
    beta: Tensor | null,
    private readonly saveMean: FloatStorage,
    private readonly saveInvstd: FloatStorage,
    private readonly dims: readonly [number, number, number],
    private readonly training: boolean,
  ) {
    super([x, gamma, beta], x.shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    const [n, c, hw] = this.dims;
    const dg = this.inputs[1] !== null ? sink.target(1) : null;
    const freshG = sink.fresh;
    const db = this.inputs[2] !== null ? sink.target(2) : null;
    const freshB = sink.fresh;
    const dx = this.inputs[0] !== null ? sink.target(0) : null;
    const freshX = sink.fresh;
    b.kernels.batchNormBackward(this.x.storage, g, this.gamma ? this.gamma.storage : null, this.saveMean, this.saveInvstd,
      dx, dg, db, n, c, hw, this.training, dx !== null && !freshX, dg !== null && !freshG, db !== null && !freshB);
    if (!sink.retainGraph) {
      b.recycle(this.saveMean);
      b.recycle(this.saveInvstd);
    }
  }
}

function checkStat(what: string, t: Tensor | null, c: number, x: Tensor): void {
  if (t === null) return;
  expectFloat('batchNorm2d', what, t);
  if (t.shape.length !== 1 || t.shape[0] !== c) throw errors.shape('batchNorm2d', [x.shape, t.shape], `${what} of shape [${c}] (one per channel)`);
}

/**
 * Normalises each channel of `x` [n, c, ...] to zero mean and unit variance, then scales by
 * `weight` and shifts by `bias` (each [c], or null: 1 and 0). Training uses the batch's statistics
 * and updates `runningMean` / `runningVar` in place when given (running = (1 - momentum) running
 * + momentum batch); evaluation uses them (then both are required).
 */
export function batchNorm2d(
  x: Tensor, weight: Tensor | null, bias: Tensor | null, runningMean: Tensor | null, runningVar: Tensor | null, options: BatchNormOptions,
): Tensor {
  const op = 'batchNorm2d';
  expectFloat(op, 'input', x);
  expectSameDevice(op, x, weight, bias, runningMean, runningVar);
  const { training, momentum = 0.1, eps = 1e-5 } = options;
  if (typeof training !== 'boolean') throw errors.argument(op, 'training', training, 'a boolean');
  if (!(typeof momentum === 'number' && momentum >= 0 && momentum <= 1)) throw errors.argument(op, 'momentum', momentum, 'a number in [0, 1]');
  if (!(typeof eps === 'number' && eps >= 0 && Number.isFinite(eps))) throw errors.argument(op, 'eps', eps, 'a finite number >= 0');
  if (x.shape.length < 2) throw errors.shape(op, [x.shape], 'input of shape [batch, channels, ...] (e.g. [n, c, h, w] or [n, c])');
  const n = x.shape[0]!, c = x.shape[1]!;
  const hw = c === 0 || n === 0 ? 0 : x.size / (n * c);
  if (n < 1 || c < 1 || hw < 1) throw errors.shape(op, [x.shape], 'an input with no empty dimension');
  checkStat('weight', weight, c, x);
  checkStat('bias', bias, c, x);
  checkStat('runningMean', runningMean, c, x);
  checkStat('runningVar', runningVar, c, x);
  if ((runningMean === null) !== (runningVar === null)) throw errors.range(op, 'runningMean and runningVar must both be given or both be null');
  if (!training && runningMean === null) throw errors.range(op, 'evaluation (training: false) normalises with the running statistics; pass runningMean and runningVar');
  if (training && n * hw === 1) throw errors.shape(op, [x.shape], 'more than one value per channel when training');
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const) {
    if (t !== null && t.requiresGrad) throw errors.range(op, `${what} requires grad; running statistics are buffers, updated in place`);
  }
  const b = getBackend(x.device);
  const y = b.take(x.size);
  const saveMean = b.take(c), saveInvstd = b.take(c);
  b.kernels.batchNormForward(x.storage, y, weight ? weight.storage : null, bias ? bias.storage : null, saveMean, saveInvstd,
    runningMean ? runningMean.storage : null, runningVar ? runningVar.storage : null, n, c, hw, training, momentum, eps);
  const result = new Tensor(y, x.shape, { device: x.device });
  if (tracks(x, weight, bias)) new BatchNormNode(x, weight, bias, saveMean, saveInvstd, [n, c, hw], training).attach(result);
  else {
    b.recycle(saveMean);
    b.recycle(saveInvstd);
  }
  return result;
}
