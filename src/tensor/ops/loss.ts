// Classification losses with mean reduction: nllLoss on log-probabilities, and crossEntropy on
// logits (log-softmax and NLL fused into one kernel each way; the fastest way to train).
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage, type IntStorage } from '../backend.js';
import { Tensor } from '../tensor.js';
import { expectFloat, labelsOn, rowsCols } from './validate.js';

/** Class labels: an int32 tensor or a bare Int32Array, one per row. */
export type Labels = Tensor<'int32'> | Int32Array;

class NllNode extends Node {
  readonly name = 'nllLoss';
  constructor(x: Tensor, private readonly labels: IntStorage, private readonly rows: number, private readonly cols: number) {
    super([x], []);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    const d = b.take(this.rows * this.cols);
    b.kernels.nllBackward(this.labels, d, this.rows, this.cols, b.first(g) / this.rows);
    sink.give(0, d);
  }
}

/** Mean negative log-likelihood: -mean_r logp[r, labels[r]]. `logp` is [batch, classes] (or [classes]). */
export function nllLoss(logp: Tensor, labels: Labels): Tensor {
  expectFloat('nllLoss', 'input', logp);
  const [rows, cols] = rowsCols('nllLoss', logp, 'input');
  const [l, own] = labelsOn('nllLoss', labels, rows, cols, logp);
  const loss = getBackend(logp.device).kernels.nllForward(logp.storage, l, rows, cols);
  const result = new Tensor(Float32Array.of(loss), [], { device: logp.device });
  if (tracks(logp)) new NllNode(logp, own ? l : (l as Int32Array).slice(), rows, cols).attach(result);
  return result;
}

class CrossEntropyNode extends Node {
  readonly name = 'crossEntropy';
  constructor(x: Tensor, private readonly logp: FloatStorage, private readonly labels: IntStorage, private readonly rows: number, private readonly cols: number) {
    super([x], []);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const b = getBackend(this.device);
    // The saved log-probabilities become the gradient unless the graph must survive.
    const d = sink.retainGraph ? b.take(this.logp.length) : this.logp;
    b.kernels.crossEntropyBackward(this.logp, this.labels, d, this.rows, this.cols, b.first(g) / this.rows);
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
  const [l, own] = labelsOn('crossEntropy', labels, rows, cols, logits);
  const b = getBackend(logits.device);
  const logp = b.take(logits.size);
  const loss = b.kernels.crossEntropyForward(logits.storage, l, logp, rows, cols);
  const result = new Tensor(Float32Array.of(loss), [], { device: logits.device });
  if (tracks(logits)) new CrossEntropyNode(logits, logp, own ? l : (l as Int32Array).slice(), rows, cols).attach(result);
  else b.recycle(logp);
  return result;
}
