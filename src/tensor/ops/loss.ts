// Classification losses with mean reduction: nllLoss on log-probabilities, and crossEntropy on
// logits (log-softmax and NLL fused into one kernel each way; the fastest way to train).
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend } from '../backend.js';
import { Tensor } from '../tensor.js';
import { recycleBuffer, takeBuffer } from '../pool.js';
import { expectFloat, labelsOf, rowsCols } from './validate.js';

/** Class labels: an int32 tensor or a bare Int32Array, one per row. */
export type Labels = Tensor<'int32'> | Int32Array;

class NllNode extends Node {
  readonly name = 'nllLoss';
  constructor(x: Tensor, private readonly labels: Int32Array, private readonly rows: number, private readonly cols: number) {
    super([x], []);
  }

  backward(g: Float32Array, sink: GradSink): void {
    const d = takeBuffer(this.rows * this.cols);
    getBackend(this.inputs[0]!.device).kernels.nllBackward(this.labels, d, this.rows, this.cols, g[0]! / this.rows);
    sink.give(0, d);
  }
}

/** Mean negative log-likelihood: -mean_r logp[r, labels[r]]. `logp` is [batch, classes] (or [classes]). */
export function nllLoss(logp: Tensor, labels: Labels): Tensor {
  expectFloat('nllLoss', 'input', logp);
  const [rows, cols] = rowsCols('nllLoss', logp, 'input');
  const l = labelsOf('nllLoss', labels, rows, cols, logp.shape);
  const loss = getBackend(logp.device).kernels.nllForward(logp.data, l, rows, cols);
  const result = new Tensor(Float32Array.of(loss), [], { device: logp.device });
  if (tracks(logp)) new NllNode(logp, l.slice(), rows, cols).attach(result);
  return result;
}

class CrossEntropyNode extends Node {
  readonly name = 'crossEntropy';
  constructor(x: Tensor, private readonly logp: Float32Array, private readonly labels: Int32Array, private readonly rows: number, private readonly cols: number) {
    super([x], []);
  }

  backward(g: Float32Array, sink: GradSink): void {
    // The saved log-probabilities become the gradient unless the graph must survive.
    const d = sink.retainGraph ? takeBuffer(this.logp.length) : this.logp;
    getBackend(this.inputs[0]!.device).kernels.crossEntropyBackward(this.logp, this.labels, d, this.rows, this.cols, g[0]! / this.rows);
    sink.give(0, d);
  }
}

/**
 * Mean cross-entropy of `logits` ([batch, classes] or [classes]) against integer labels:
 * nllLoss(logSoftmax(logits), labels) in one fused kernel each way.
 */
export function crossEntropy(logits: Tensor, labels: Labels): Tensor {
  expectFloat('crossEntropy', 'input', logits);
  const [rows, cols] = rowsCols('crossEntropy', logits, 'input');
  const l = labelsOf('crossEntropy', labels, rows, cols, logits.shape);
  const logp = takeBuffer(logits.size);
  const loss = getBackend(logits.device).kernels.crossEntropyForward(logits.data, l, logp, rows, cols);
  const result = new Tensor(Float32Array.of(loss), [], { device: logits.device });
  if (tracks(logits)) new CrossEntropyNode(logits, logp, l.slice(), rows, cols).attach(result);
  else recycleBuffer(logp);
  return result;
}
