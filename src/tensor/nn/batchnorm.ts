// BatchNorm2d: torch.nn.BatchNorm2d's parameters, buffers and modes over the batchNorm2d op.
//
// num_batches_tracked is a one-element float32 buffer (torch keeps an int64): every buffer is a
// float32 tensor, so stateDict, loadStateDict, to(device) and flattenBuffers treat it like the
// running statistics. float32 counts exactly up to 2^24 (16.7 million) batches.
import { errors } from '../errors.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { batchNorm2d } from '../ops/batchnorm.js';
import { ones, zeros, type Tensor } from '../tensor.js';
import { Module } from './module.js';

/** Options of `BatchNorm2d`. */
export interface BatchNorm2dOptions {
  /** Added to the variance before its square root (default 1e-5). */
  eps?: number;
  /**
   * Weight of each batch in the running statistics (default 0.1); null: a cumulative average
   * (1 / num_batches_tracked), as torch's momentum=None.
   */
  momentum?: number | null;
  /** Learnable per-channel `weight` (ones) and `bias` (zeros) (default true). */
  affine?: boolean;
  /** Keep `running_mean`, `running_var` and `num_batches_tracked` buffers for evaluation (default true). */
  trackRunningStats?: boolean;
}

/**
 * Batch normalisation of [n, numFeatures, h, w] images per channel. Training normalises with the
 * batch's statistics and updates the running ones; evaluation (after `eval()`) normalises with the
 * running statistics. Without trackRunningStats both modes use the batch's statistics.
 */
export class BatchNorm2d extends Module {
  readonly eps: number;
  readonly momentum: number | null;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  /** Training forwards seen so far (a one-element float32 buffer). */
  readonly numBatchesTracked: Tensor | null;

  constructor(readonly numFeatures: number, options: BatchNorm2dOptions = {}) {
    super();
    if (!Number.isInteger(numFeatures) || numFeatures < 1) throw errors.argument('BatchNorm2d', 'numFeatures', numFeatures, 'a positive integer');
    this.eps = options.eps ?? 1e-5;
    if (!(typeof this.eps === 'number' && this.eps >= 0 && Number.isFinite(this.eps))) throw errors.argument('BatchNorm2d', 'eps', this.eps, 'a finite number >= 0');
    this.momentum = options.momentum === undefined ? 0.1 : options.momentum;
    if (this.momentum !== null && !(typeof this.momentum === 'number' && this.momentum >= 0 && this.momentum <= 1)) {
      throw errors.argument('BatchNorm2d', 'momentum', this.momentum, 'a number in [0, 1] or null (cumulative average)');
    }
    const affine = options.affine ?? true;
    const track = options.trackRunningStats ?? true;
    if (affine) {
      this.weight = this.registerParameter('weight', ones([numFeatures]));
      this.bias = this.registerParameter('bias', zeros([numFeatures]));
    } else {
      this.weight = this.bias = null;
    }
    if (track) {
      this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures]));
      this.runningVar = this.registerBuffer('running_var', ones([numFeatures]));
      this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([1]));
    } else {
      this.runningMean = this.runningVar = this.numBatchesTracked = null;
    }
  }

  forward(x: Tensor): Tensor {
    if (x.shape.length !== 4 || x.shape[1] !== this.numFeatures) {
      throw errors.shape('BatchNorm2d', [x.shape], `input of shape [batch, ${this.numFeatures}, height, width]`);
    }
    const updating = this.training && this.numBatchesTracked !== null;
    let momentum = this.momentum ?? 0;
    if (updating) {
      // Counted before the forward, as torch: the cumulative average's factor is 1 / count.
      const count = this.numBatchesTracked!;
      const b = getBackend(count.device);
      if (this.momentum === null) momentum = 1 / (b.first(count.storage as FloatStorage) + 1);
    }
    // Without running statistics, evaluation too normalises with the batch's (torch's rule).
    const y = batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, {
      training: this.training || this.runningMean === null, momentum, eps: this.eps,
    });
    if (updating) getBackend(this.numBatchesTracked!.device).addScalar(this.numBatchesTracked!.storage as FloatStorage, 1);
    return y;
  }
}
