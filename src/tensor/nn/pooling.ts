// Pooling layers over NCHW images: MaxPool2d, AvgPool2d and GlobalAvgPool2d (torch's
// AdaptiveAvgPool2d(1)). They have no parameters; options are checked once, at construction.
import { avgPool2d, globalAvgPool2d, maxPool2d } from '../ops/pool2d.js';
import { pool2dParams, type Pool2dOptions, type Size2d } from '../ops/conv-shape.js';
import { errors } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { Module } from './module.js';

/** Max over kernelSize windows (stride defaults to the kernel size), as torch.nn.MaxPool2d. */
export class MaxPool2d extends Module {
  readonly kernelSize: readonly [number, number];
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];

  constructor(kernelSize: Size2d, options: Pool2dOptions = {}) {
    super();
    const p = pool2dParams('MaxPool2d', kernelSize, options);
    this.kernelSize = p.kernel;
    this.stride = p.stride;
    this.padding = p.padding;
  }

  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernelSize, this);
  }
}

/** Options of `AvgPool2d`. */
export interface AvgPool2dLayerOptions extends Pool2dOptions {
  /** Count the padding in each window's divisor (default true, as torch). */
  countIncludePad?: boolean;
}

/** Mean over kernelSize windows (stride defaults to the kernel size), as torch.nn.AvgPool2d. */
export class AvgPool2d extends Module {
  readonly kernelSize: readonly [number, number];
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly countIncludePad: boolean;

  constructor(kernelSize: Size2d, options: AvgPool2dLayerOptions = {}) {
    super();
    const p = pool2dParams('AvgPool2d', kernelSize, options);
    this.kernelSize = p.kernel;
    this.stride = p.stride;
    this.padding = p.padding;
    this.countIncludePad = options.countIncludePad ?? true;
    if (typeof this.countIncludePad !== 'boolean') throw errors.argument('AvgPool2d', 'countIncludePad', this.countIncludePad, 'a boolean');
  }

  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernelSize, this);
  }
}

/** Mean over each whole plane: [n, c, h, w] to [n, c, 1, 1], as torch.nn.AdaptiveAvgPool2d(1). */
export class GlobalAvgPool2d extends Module {
  forward(x: Tensor): Tensor {
    return globalAvgPool2d(x);
  }
}
