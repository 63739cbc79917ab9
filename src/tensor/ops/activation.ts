// Elementwise activations: relu and (inverted, seeded) dropout.
//
// Their backwards work in place on the incoming gradient, which the engine owns, and hand it
// on: no allocation on the way back.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage, type MaskStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { expectFloat } from './validate.js';

class ReluNode extends Node {
  readonly name = 'relu';
  constructor(x: Tensor, private readonly y: FloatStorage) {
    super([x], x.shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    getBackend(this.device).kernels.reluBackward(this.y, g, g);
    sink.give(0, g);
  }
}

/** max(x, 0) elementwise. */
export function relu(x: Tensor): Tensor {
  expectFloat('relu', 'input', x);
  const b = getBackend(x.device);
  const y = b.take(x.size);
  b.kernels.reluForward(x.storage, y);
  const result = new Tensor(y, x.shape, { device: x.device });
  if (tracks(x)) new ReluNode(x, y).attach(result);
  return result;
}

/** Options of `dropout`. */
export interface DropoutOptions {
  /** Probability of zeroing an element, in [0, 1). */
  p: number;
  /** Identity when false (evaluation). Default true. */
  training?: boolean;
  /** Seed of the counter-based generator (Philox): the same (seed, offset) gives the same mask on every backend. */
  seed?: number;
  /** Index of this call's first draw in the seed's stream; advance it by x.size per call for fresh masks. */
  offset?: number;
}

class DropoutNode extends Node {
  readonly name = 'dropout';
  constructor(x: Tensor, private readonly mask: MaskStorage, private readonly p: number) {
    super([x], x.shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    getBackend(this.device).kernels.dropoutBackward(g, this.mask, g, this.p);
    sink.give(0, g);
  }
}

/**
 * Inverted dropout: zeroes each element with probability p and scales the rest by 1 / (1 - p),
 * so evaluation needs no rescaling. Returns `x` itself when not training or when p is 0.
 */
export function dropout(x: Tensor, options: DropoutOptions): Tensor {
  expectFloat('dropout', 'input', x);
  const { p, training = true, seed = 0, offset = 0 } = options;
  if (!(p >= 0 && p < 1)) throw errors.argument('dropout', 'p', p, 'a probability in [0, 1)');
  if (!Number.isSafeInteger(seed) || seed < 0) throw errors.argument('dropout', 'seed', seed, 'a non-negative safe integer');
  if (!Number.isSafeInteger(offset) || offset < 0) throw errors.argument('dropout', 'offset', offset, 'a non-negative safe integer');
  if (!training || p === 0) return x;
  const b = getBackend(x.device);
  const y = b.take(x.size);
  const mask = b.allocMask(x.size);
  b.kernels.dropoutForward(x.storage, y, mask, p, seed, offset);
  const result = new Tensor(y, x.shape, { device: x.device });
  if (tracks(x)) new DropoutNode(x, mask, p).attach(result);
  return result;
}
