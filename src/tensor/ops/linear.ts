// linear(x, W, b) = x W^T + b with W stored [out, in] as in torch.nn.Linear.
//
// Forward and backward are three GEMMs with transpose flags (no transposed copies) plus the
// bias kernels; the weight and bias gradients accumulate straight into the parameters'
// gradient storage (beta = 1 / accumulate) instead of going through temporaries.
// linearRelu fuses the following relu (in place on the output): one node, one buffer.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { errors } from '../errors.js';
import { Tensor } from '../tensor.js';
import { expectFloat, expectSameDevice, rowsCols } from './validate.js';

class LinearNode extends Node {
  readonly name: string;
  override consumesGradOut = true;
  constructor(
    private readonly x: Tensor,
    private readonly w: Tensor,
    private readonly b: Tensor | null,
    private readonly rows: number,
    outputShape: readonly number[],
    /** The output when a relu was fused in (its backward masks g first); null otherwise. */
    private readonly reluOut: FloatStorage | null,
  ) {
    super([x, w, b], outputShape);
    this.name = reluOut ? 'linearRelu' : 'linear';
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const k = getBackend(this.device).kernels;
    if (this.reluOut !== null) k.reluBackward(this.reluOut, g, g);
    const rows = this.rows;
    const out = this.w.shape[0]!, inF = this.w.shape[1]!;
    const inputs = this.inputs;
    if (inputs[2] !== null) {
      const db = sink.target(2);
      k.biasGrad(g, db, rows, out, !sink.fresh);
    }
    if (inputs[1] !== null) {
      const dw = sink.target(1);
      // dW[out, in] = g^T[out, rows] . x[rows, in]
      k.gemm(true, false, out, inF, rows, 1, g, out, this.x.storage, inF, sink.fresh ? 0 : 1, dw, inF);
    }
    if (inputs[0] !== null) {
      const dx = sink.target(0);
      // dx[rows, in] = g[rows, out] . W[out, in]
      k.gemm(false, false, rows, inF, out, 1, g, out, this.w.storage, inF, sink.fresh ? 0 : 1, dx, inF);
    }
  }
}

/**
 * Affine map of the rows of `x` ([batch, in] or [in]) by `weight` ([out, in]) and an optional
 * `bias` ([out]): y = x W^T + b, shape [batch, out] (or [out]). A batch of samples of any shape
 * with `in` elements each ([batch, c, h, w], ...) is flattened first (a view), as by a Flatten.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return affine('linear', x, weight, bias ?? null, false);
}

/** relu(linear(x, weight, bias)) as one op: same values and gradients, one buffer and one node less. */
export function linearRelu(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return affine('linearRelu', x, weight, bias ?? null, true);
}

function affine(op: string, x: Tensor, weight: Tensor, bias: Tensor | null, withRelu: boolean): Tensor {
  expectFloat(op, 'input', x);
  expectFloat(op, 'weight', weight);
  if (bias) expectFloat(op, 'bias', bias);
  expectSameDevice(op, x, weight, bias);
  if (weight.shape.length !== 2) throw errors.shape(op, [x.shape, weight.shape], 'weight of shape [out, in]');
  const out = weight.shape[0]!, inF = weight.shape[1]!;
  // [batch, ...sample] with inF elements per sample (images into an MLP) is read as [batch, inF]:
  // the view a Flatten in front would make, so a dense model trains on any dataset's samples.
  if (x.shape.length > 2 && x.shape[x.shape.length - 1] !== inF && x.size === x.shape[0]! * inF) x = x.reshape([x.shape[0]!, inF]);
  const [rows, cols] = rowsCols(op, x, 'input');
  if (cols !== inF) throw errors.shape(op, [x.shape, weight.shape], `input with ${inF} features (last dimension) to match weight [${out}, ${inF}]`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) throw errors.shape(op, [x.shape, weight.shape, bias.shape], `bias of shape [${out}]`);
  const b = getBackend(x.device);
  const k = b.kernels;
  const y = b.take(rows * out);
  k.gemm(false, true, rows, out, inF, 1, x.storage, inF, weight.storage, inF, 0, y, out);
  if (bias) k.biasAdd(y, bias.storage, rows, out);
  if (withRelu) k.reluForward(y, y);
  const shape = x.shape.length === 2 ? [rows, out] : [out];
  const result = new Tensor(y, shape, { device: x.device });
  if (tracks(x, weight, bias)) new LinearNode(x, weight, bias, rows, shape, withRelu ? y : null).attach(result);
  return result;
}
