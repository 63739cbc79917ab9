// conv2d(x, weight, bias) over NCHW images, torch.nn.functional.conv2d semantics (zero padding,
// cross-correlation, stride, dilation, groups).
//
// The backend's kernels do the work (im2col + GEMM natively; the TypeScript reference loops
// directly). Their `col` workspace comes from the buffer pool and goes back as soon as the kernel
// returns, so a training step allocates nothing for it. Weight and bias gradients accumulate
// straight into the parameters' gradient storage (the kernels' accumulate flags), as linear's do.
// conv2dRelu fuses the following relu (in place on the output): one node, one buffer.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { conv2dOutput, conv2dParams, type Conv2dGeometry, type Conv2dOptions } from './conv-shape.js';
import { expectFloat, expectSameDevice } from './validate.js';

export type { Conv2dOptions } from './conv-shape.js';

class Conv2dNode extends Node {
  readonly name: string;
  override consumesGradOut = true;
  constructor(
    private readonly x: Tensor,
    private readonly w: Tensor,
    b: Tensor | null,
    private readonly geometry: Conv2dGeometry,
    outputShape: readonly number[],
    /** The output when a relu was fused in (its backward masks g first); null otherwise. */
    private readonly reluOut: FloatStorage | null,
  ) {
    super([x, w, b], outputShape);
    this.name = reluOut ? 'conv2dRelu' : 'conv2d';
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const be = getBackend(this.device);
    const k = be.kernels;
    if (this.reluOut !== null) k.reluBackward(this.reluOut, g, g);
    const [wantX, wantW, wantB] = [this.inputs[0] !== null, this.inputs[1] !== null, this.inputs[2] !== null];
    const ws = k.conv2dWorkspace(this.geometry);
    const col = ws > 0 ? be.take(ws) : be.empty;
    try {
      if (wantW || wantB) {
        // The kernel computes both in one pass over dy; a weight that needs no gradient still
        // needs somewhere to write (a pooled scratch buffer, only when just the bias trains).
        const dw = wantW ? sink.target(1) : be.take(this.w.size);
        const freshW = wantW ? sink.fresh : true;
        const db = wantB ? sink.target(2) : null;
        const freshB = wantB ? sink.fresh : true;
        k.conv2dBackwardWeight(this.geometry, this.x.storage, g, dw, db, col, !freshW, !freshB);
        if (!wantW) be.recycle(dw);
      }
      if (wantX) {
        const dx = sink.target(0);
        k.conv2dBackwardInput(this.geometry, g, this.w.storage, dx, col, !sink.fresh);
      }
    } finally {
      if (ws > 0) be.recycle(col);
    }
  }
}

/**
 * 2-D convolution of `x` [n, c, h, w] with `weight` [oc, c / groups, kh, kw] plus an optional
 * `bias` [oc]: y [n, oc, oh, ow], oh = floor((h + 2 padding - dilation (kh - 1) - 1) / stride) + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: Conv2dOptions = {}): Tensor {
  return convolve('conv2d', x, weight, bias ?? null, options, false);
}

/** relu(conv2d(x, weight, bias, options)) as one op: same values and gradients, one buffer and one node less. */
export function conv2dRelu(x: Tensor, weight: Tensor, bias?: Tensor | null, options: Conv2dOptions = {}): Tensor {
  return convolve('conv2dRelu', x, weight, bias ?? null, options, true);
}

/** Checks a convolution's inputs and options; returns its geometry and output shape. */
export function conv2dGeometry(op: string, x: Tensor, weight: Tensor, bias: Tensor | null, options: Conv2dOptions): [Conv2dGeometry, number[]] {
  expectFloat(op, 'input', x);
  expectFloat(op, 'weight', weight);
  if (bias) expectFloat(op, 'bias', bias);
  expectSameDevice(op, x, weight, bias);
  const { stride, padding, dilation, groups } = conv2dParams(op, options);
  if (x.shape.length !== 4) throw errors.shape(op, [x.shape, weight.shape], 'input of shape [batch, channels, height, width]');
  if (weight.shape.length !== 4) throw errors.shape(op, [x.shape, weight.shape], 'weight of shape [outChannels, inChannels / groups, kh, kw]');
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [oc, cg, kh, kw] = weight.shape as [number, number, number, number];
  if (n < 1 || c < 1 || h < 1 || w < 1) throw errors.shape(op, [x.shape, weight.shape], 'an input with no empty dimension');
  if (oc < 1 || cg < 1 || kh < 1 || kw < 1) throw errors.shape(op, [x.shape, weight.shape], 'a weight with no empty dimension');
  if (c % groups !== 0 || oc % groups !== 0) {
    throw errors.shape(op, [x.shape, weight.shape], `input channels (${c}) and output channels (${oc}) divisible by groups = ${groups}`);
  }
  if (cg * groups !== c) {
    throw errors.shape(op, [x.shape, weight.shape], `input with ${cg * groups} channels (weight [${oc}, ${cg}, ${kh}, ${kw}] with groups = ${groups})`);
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== oc)) throw errors.shape(op, [x.shape, weight.shape, bias.shape], `bias of shape [${oc}]`);
  const geometry = [n, c, h, w, oc, kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups];
  const out = conv2dOutput(geometry);
  if (out === null) {
    const eh = dilation[0] * (kh - 1) + 1, ew = dilation[1] * (kw - 1) + 1;
    throw errors.shape(op, [x.shape, weight.shape], `a padded input of at least ${eh}x${ew} (the dilated kernel); it is ${h + 2 * padding[0]}x${w + 2 * padding[1]}`);
  }
  return [geometry, [n, oc, out[0], out[1]]];
}

function convolve(op: string, x: Tensor, weight: Tensor, bias: Tensor | null, options: Conv2dOptions, withRelu: boolean): Tensor {
  const [geometry, shape] = conv2dGeometry(op, x, weight, bias, options);
  const b = getBackend(x.device);
  const k = b.kernels;
  const y = b.take(shape[0]! * shape[1]! * shape[2]! * shape[3]!);
  const ws = k.conv2dWorkspace(geometry);
  const col = ws > 0 ? b.take(ws) : b.empty;
  try {
    k.conv2dForward(geometry, x.storage, weight.storage, bias ? bias.storage : null, y, col);
  } catch (e) {
    b.recycle(y);
    throw e;
  } finally {
    if (ws > 0) b.recycle(col);
  }
  if (withRelu) k.reluForward(y, y);
  const result = new Tensor(y, shape, { device: x.device });
  if (tracks(x, weight, bias)) new Conv2dNode(x, weight, bias, geometry, shape, withRelu ? y : null).attach(result);
  return result;
}
