// Conv2d: torch.nn.Conv2d's parameters, names and initialisation over the conv2d op.
import { errors } from '../errors.js';
import { conv2d } from '../ops/conv.js';
import { conv2dParams, pair, type Size2d } from '../ops/conv-shape.js';
import { Generator } from '../random.js';
import { zeros, type Tensor } from '../tensor.js';
import { Module } from './module.js';

/** Options of `Conv2d`. */
export interface Conv2dLayerOptions {
  /** Step of the window (default 1). */
  stride?: Size2d;
  /** Zeros added on each side (default 0). */
  padding?: Size2d;
  /** Spacing of the kernel's taps (default 1). */
  dilation?: Size2d;
  /** Channel groups; both channel counts must be divisible by it (default 1). */
  groups?: number;
  /** Add a learnable bias (default true). */
  bias?: boolean;
  /** Seed of the initialisation (default 0); ignored when `generator` is given. */
  seed?: number;
  /** Draw the initial values from this generator (advancing it), e.g. one per model. */
  generator?: Generator;
}

/**
 * 2-D convolution with `weight` [outChannels, inChannels / groups, kh, kw] and `bias`
 * [outChannels], initialised like torch.nn.Conv2d (kaiming-uniform with a = sqrt(5)): weight and
 * then bias uniform in (-1/sqrt(fanIn), 1/sqrt(fanIn)), fanIn = inChannels / groups * kh * kw.
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: readonly [number, number];
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly dilation: readonly [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Size2d, options: Conv2dLayerOptions = {}) {
    super();
    for (const [name, v] of [['inChannels', inChannels], ['outChannels', outChannels]] as const) {
      if (!Number.isInteger(v) || v < 1) throw errors.argument('Conv2d', name, v, 'a positive integer');
    }
    const [kh, kw] = pair('Conv2d', 'kernelSize', kernelSize, 1);
    const p = conv2dParams('Conv2d', options);
    if (inChannels % p.groups !== 0) throw errors.argument('Conv2d', 'groups', p.groups, `a divisor of inChannels (${inChannels})`);
    if (outChannels % p.groups !== 0) throw errors.argument('Conv2d', 'groups', p.groups, `a divisor of outChannels (${outChannels})`);
    this.kernelSize = [kh, kw];
    this.stride = p.stride;
    this.padding = p.padding;
    this.dilation = p.dilation;
    this.groups = p.groups;
    const g = options.generator ?? new Generator(options.seed ?? 0);
    const fanIn = (inChannels / p.groups) * kh * kw;
    const bound = 1 / Math.sqrt(fanIn);
    const w = zeros([outChannels, inChannels / p.groups, kh, kw]);
    g.fillUniform(w.data, -bound, bound);
    this.weight = this.registerParameter('weight', w);
    if (options.bias ?? true) {
      const b = zeros([outChannels]);
      g.fillUniform(b.data, -bound, bound);
      this.bias = this.registerParameter('bias', b);
    } else {
      this.bias = null;
    }
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this);
  }
}
