// The layers of an MLP: Linear, ReLU, Dropout, LogSoftmax, and Flatten (images to rows).
import { errors } from '../errors.js';
import { relu, dropout } from '../ops/activation.js';
import { linear } from '../ops/linear.js';
import { logSoftmax } from '../ops/softmax.js';
import { Generator } from '../random.js';
import { zeros, type Tensor } from '../tensor.js';
import { Module } from './module.js';

/** Options of `Linear`. */
export interface LinearOptions {
  /** Add a learnable bias (default true). */
  bias?: boolean;
  /** Seed of the initialisation (default 0); ignored when `generator` is given. */
  seed?: number;
  /** Draw the initial values from this generator (advancing it), e.g. one per model. */
  generator?: Generator;
}

/**
 * y = x W^T + b with `weight` [out, in] and `bias` [out], initialised like torch.nn.Linear
 * (kaiming-uniform with a = sqrt(5)): both uniform in (-1/sqrt(in), 1/sqrt(in)).
 */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: LinearOptions = {}) {
    super();
    for (const [name, v] of [['inFeatures', inFeatures], ['outFeatures', outFeatures]] as const) {
      if (!Number.isInteger(v) || v < 1) throw errors.argument('Linear', name, v, 'a positive integer');
    }
    const g = options.generator ?? new Generator(options.seed ?? 0);
    const bound = 1 / Math.sqrt(inFeatures);
    const w = zeros([outFeatures, inFeatures]);
    g.fillUniform(w.data, -bound, bound);
    this.weight = this.registerParameter('weight', w);
    if (options.bias ?? true) {
      const b = zeros([outFeatures]);
      g.fillUniform(b.data, -bound, bound);
      this.bias = this.registerParameter('bias', b);
    } else {
      this.bias = null;
    }
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/** Options of `Dropout`. */
export interface DropoutLayerOptions {
  /** Seed of the mask stream (default 0). Each forward draws the next x.size values of it. */
  seed?: number;
}

/** Inverted dropout with probability p while training; identity in eval mode. */
export class Dropout extends Module {
  readonly seed: number;
  /** Position in the mask stream; advances by x.size per training forward. */
  offset = 0;

  constructor(readonly p = 0.5, options: DropoutLayerOptions = {}) {
    super();
    if (!(p >= 0 && p < 1)) throw errors.argument('Dropout', 'p', p, 'a probability in [0, 1)');
    this.seed = options.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw errors.argument('Dropout', 'seed', this.seed, 'a non-negative safe integer');
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const y = dropout(x, { p: this.p, training: true, seed: this.seed, offset: this.offset });
    this.offset += x.size;
    return y;
  }
}

/** Log-softmax over the last dimension. */
export class LogSoftmax extends Module {
  forward(x: Tensor): Tensor {
    return logSoftmax(x);
  }
}

/**
 * Merges dimensions startDim..endDim into one, as torch.nn.Flatten (default: [n, ...] to
 * [n, rest]). A view of the same storage (Tensor.reshape), no copy; negative dims count from the end.
 */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) {
    super();
    for (const [name, v] of [['startDim', startDim], ['endDim', endDim]] as const) {
      if (!Number.isInteger(v)) throw errors.argument('Flatten', name, v, 'an integer dimension');
    }
  }

  forward(x: Tensor): Tensor {
    const rank = x.shape.length;
    const start = this.startDim < 0 ? this.startDim + rank : this.startDim;
    const end = this.endDim < 0 ? this.endDim + rank : this.endDim;
    if (rank === 0 || start < 0 || start >= rank || end < 0 || end >= rank || start > end) {
      throw errors.shape('Flatten', [x.shape], `an input whose dimensions ${this.startDim}..${this.endDim} exist (startDim <= endDim)`);
    }
    if (start === end) return x;
    let merged = 1;
    for (let d = start; d <= end; d++) merged *= x.shape[d]!;
    return x.reshape([...x.shape.slice(0, start), merged, ...x.shape.slice(end + 1)]);
  }
}
