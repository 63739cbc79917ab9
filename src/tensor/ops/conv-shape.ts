// Geometry of convolution and pooling: output sizes (kernels.h's conv2d_output / pool2d_output in
// TypeScript) and the checks of the [h, w] options shared by the ops and the modules.
//
// The ops check every size here before any kernel runs, so the kernels (native, TypeScript,
// CUDA) only ever see geometries they accept, and a bad option is one error naming the op.
import type { Conv2dGeometry, Pool2dGeometry } from '../native.js';
import { errors } from '../errors.js';

export type { Conv2dGeometry, Pool2dGeometry } from '../native.js';

/** A size given once for both spatial dimensions, or as [height, width]. */
export type Size2d = number | readonly [number, number];

/**
 * `value` as [h, w]: a number counts for both, a pair is taken as is. Each entry must be an
 * integer >= `min`; otherwise a RangeError naming the op, the option and the value.
 */
export function pair(op: string, name: string, value: Size2d, min: number): [number, number] {
  const ok = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;
  if (typeof value === 'number') {
    if (!ok(value)) throw errors.argument(op, name, value, `an integer >= ${min} or a pair [h, w] of them`);
    return [value, value];
  }
  if (!Array.isArray(value) || value.length !== 2 || !ok(value[0]) || !ok(value[1])) {
    const shown = Array.isArray(value) ? `[${value.join(', ')}]` : String(value);
    throw errors.argument(op, name, shown, `an integer >= ${min} or a pair [h, w] of them`);
  }
  return [value[0], value[1]];
}

/** One output size: floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1 (may be < 1). */
export function outputSize(input: number, kernel: number, stride: number, pad: number, dilation = 1): number {
  return Math.floor((input + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1;
}

/**
 * [oh, ow] of a convolution's geometry [n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups],
 * or null when either is < 1 (the dilated kernel is larger than the padded input).
 */
export function conv2dOutput(g: Conv2dGeometry): [number, number] | null {
  const oh = outputSize(g[2]!, g[5]!, g[7]!, g[9]!, g[11]!);
  const ow = outputSize(g[3]!, g[6]!, g[8]!, g[10]!, g[12]!);
  return oh >= 1 && ow >= 1 ? [oh, ow] : null;
}

/** [oh, ow] of a pooling's geometry [planes, h, w, kh, kw, sh, sw, ph, pw], or null when either is < 1. */
export function pool2dOutput(g: Pool2dGeometry): [number, number] | null {
  const oh = outputSize(g[1]!, g[3]!, g[5]!, g[7]!);
  const ow = outputSize(g[2]!, g[4]!, g[6]!, g[8]!);
  return oh >= 1 && ow >= 1 ? [oh, ow] : null;
}

/** Options of the 2-D convolution, as torch.nn.functional.conv2d takes them. */
export interface Conv2dOptions {
  /** Step of the window (default 1). */
  stride?: Size2d;
  /** Zeros added on each side (default 0). */
  padding?: Size2d;
  /** Spacing of the kernel's taps (default 1). */
  dilation?: Size2d;
  /** Channel groups: input and output channels are split into this many independent convolutions (default 1). */
  groups?: number;
}

/** Conv2dOptions checked and expanded to pairs. */
export interface Conv2dParams {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

/** Checks a convolution's options (RangeError naming op, option and value) and fills in the defaults. */
export function conv2dParams(op: string, options: Conv2dOptions): Conv2dParams {
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw errors.argument(op, 'groups', groups, 'a positive integer');
  return {
    stride: pair(op, 'stride', options.stride ?? 1, 1),
    padding: pair(op, 'padding', options.padding ?? 0, 0),
    dilation: pair(op, 'dilation', options.dilation ?? 1, 1),
    groups,
  };
}

/** Options of max and average pooling. */
export interface Pool2dOptions {
  /** Step of the window (default: the kernel size, as torch). */
  stride?: Size2d;
  /** Implicit padding on each side, at most half the kernel (default 0). Max pooling pads with -inf, average pooling with zeros. */
  padding?: Size2d;
}

/** A pooling's window, stride and padding, checked: each [h, w]. */
export interface Pool2dParams {
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
}

/** Checks a pooling's kernel size and options (torch's rules: padding <= kernel / 2) and fills in the defaults. */
export function pool2dParams(op: string, kernelSize: Size2d, options: Pool2dOptions): Pool2dParams {
  const kernel = pair(op, 'kernelSize', kernelSize, 1);
  const stride = options.stride === undefined ? kernel : pair(op, 'stride', options.stride, 1);
  const padding = pair(op, 'padding', options.padding ?? 0, 0);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
    throw errors.argument(op, 'padding', `[${padding.join(', ')}]`, `at most half the kernel size [${kernel.join(', ')}]`);
  }
  return { kernel, stride, padding };
}
