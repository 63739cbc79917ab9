// Sequential containers and the MLP builder.
//
// Sequential is where the hot path saves its allocations: it fuses Linear + ReLU and Conv2d + ReLU
// (the stock classes only) into one op each, and hands its intermediate activations (never visible
// outside it) back to the buffer pool, at once when no graph saved them, or when the backward that
// used the graph releases it.
import { errors } from '../errors.js';
import { linearRelu } from '../ops/linear.js';
import { conv2dRelu } from '../ops/conv.js';
import { getBackend } from '../backend.js';
import { Generator } from '../random.js';
import type { Tensor } from '../tensor.js';
import { Conv2d } from './conv.js';
import { Dropout, Linear, ReLU } from './layers.js';
import { Module } from './module.js';

/** Runs its children in order; children are named "0", "1", ... as in torch. */
export class Sequential extends Module {
  private readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }

  get length(): number {
    return this.layers.length;
  }

  /** The i-th child. */
  at(i: number): Module {
    const m = this.layers[i];
    if (m === undefined) throw errors.argument('Sequential.at', 'index', i, `an index in [0, ${this.layers.length})`);
    return m;
  }

  /**
   * Runs the children in order. Intermediate activations belong to the container: a child must
   * not keep its input or output beyond the backward pass (none of the built-in layers does).
   */
  forward(x: Tensor): Tensor {
    const layers = this.layers;
    let cur = x;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!;
      const next = layers[i + 1];
      let out: Tensor;
      const fuse = next instanceof ReLU && next.forward === ReLU.prototype.forward;
      if (fuse && layer instanceof Linear && layer.forward === Linear.prototype.forward) {
        out = linearRelu(cur, layer.weight, layer.bias);
        i++;
      } else if (fuse && layer instanceof Conv2d && layer.forward === Conv2d.prototype.forward) {
        out = conv2dRelu(cur, layer.weight, layer.bias, layer);
        i++;
      } else {
        out = layer.forward(cur);
      }
      if (cur !== x && out.storage.buffer !== cur.storage.buffer) retire(cur, out);
      cur = out;
    }
    return cur;
  }
}

/**
 * Gives an intermediate's storage back to the pool now (no graph holds it) or with its graph.
 * An intermediate that needs no gradient but feeds a recorded op (a pooling in front of a Conv2d
 * whose weight trains) may be saved by that op's node, which the graph's release cannot see (it
 * walks inputs that need gradients): it is left to the garbage collector.
 */
function retire(t: Tensor, out: Tensor): void {
  const b = getBackend(t.device);
  if (!b.isPooled(t.storage)) return;
  if (t.requiresGrad) t.releaseWithGraph = true;
  else if (!out.requiresGrad) b.recycle(t.storage);
}

/** Options of `mlp`. */
export interface MlpOptions {
  /** Seed of the initial weights and of the dropout masks (default 0). */
  seed?: number;
  /** Dropout probability after each hidden activation (default 0: no Dropout layers). */
  dropout?: number;
}

/**
 * A multilayer perceptron: Linear(sizes[0], sizes[1]), ReLU, [Dropout,] ..., Linear(.., last).
 * It returns logits (no final log-softmax): train it with `crossEntropy`, the fused loss.
 * `mlp([784, 64, 64, 10])` has parameters "0.weight", "0.bias", "2.weight", ... like torch's
 * nn.Sequential of the same layers.
 */
export function mlp(sizes: readonly number[], options: MlpOptions = {}): Sequential {
  if (sizes.length < 2) throw errors.argument('mlp', 'sizes', `[${sizes.join(', ')}]`, 'at least an input and an output size');
  const seed = options.seed ?? 0;
  const p = options.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw errors.argument('mlp', 'dropout', p, 'a probability in [0, 1)');
  const generator = new Generator(seed);
  const layers: Module[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    layers.push(new Linear(sizes[i]!, sizes[i + 1]!, { generator }));
    if (i + 2 < sizes.length) {
      layers.push(new ReLU());
      if (p > 0) layers.push(new Dropout(p, { seed: (seed * 1000003 + i + 1) % Number.MAX_SAFE_INTEGER }));
    }
  }
  return new Sequential(...layers);
}
