// Row-wise log-softmax over the last dimension.
import { Node, tracks, type GradSink } from '../autograd.js';
import { getBackend, type FloatStorage } from '../backend.js';
import { Tensor } from '../tensor.js';
import { expectFloat, rowsCols } from './validate.js';

class LogSoftmaxNode extends Node {
  readonly name = 'logSoftmax';
  constructor(x: Tensor, private readonly y: FloatStorage, private readonly rows: number, private readonly cols: number) {
    super([x], x.shape);
  }

  backward(g: FloatStorage, sink: GradSink): void {
    getBackend(this.device).kernels.logSoftmaxBackward(this.y, g, g, this.rows, this.cols);
    sink.give(0, g);
  }
}

/** log(softmax(x)) over the last dimension of a 1-D or 2-D tensor, computed stably. */
export function logSoftmax(x: Tensor): Tensor {
  expectFloat('logSoftmax', 'input', x);
  const [rows, cols] = rowsCols('logSoftmax', x, 'input');
  const b = getBackend(x.device);
  const y = b.take(x.size);
  b.kernels.logSoftmaxForward(x.storage, y, rows, cols);
  const result = new Tensor(y, x.shape, { device: x.device });
  if (tracks(x)) new LogSoftmaxNode(x, y, rows, cols).attach(result);
  return result;
}
