// Non-differentiable readouts of a classifier's output: argmax per row and accuracy.
import { errors } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { type Labels } from './loss.js';
import { expectFloat, hostLabels, labelsOf, rowsCols } from './validate.js';

/** Index of the largest value of each row (first on ties), one per row. */
export function argmax(x: Tensor, out?: Int32Array): Int32Array {
  expectFloat('argmax', 'input', x);
  const [rows, cols] = rowsCols('argmax', x, 'input');
  if (cols === 0) throw errors.shape('argmax', [x.shape], 'at least one column');
  const result = out ?? new Int32Array(rows);
  if (result.length !== rows) throw errors.shape('argmax', [x.shape, [result.length]], `an output of ${rows} entries`);
  // A read: a device tensor's values come to the host.
  const d = x.device === 'cpu' ? x.data : x.toTypedArray();
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let best = 0, bestV = d[o]!;
    for (let c = 1; c < cols; c++) {
      const v = d[o + c]!;
      if (v > bestV) {
        bestV = v;
        best = c;
      }
    }
    result[r] = best;
  }
  return result;
}

/** Number of rows whose argmax equals the label (divide by the row count for accuracy). */
export function countCorrect(logits: Tensor, labels: Labels): number {
  expectFloat('countCorrect', 'input', logits);
  const [rows, cols] = rowsCols('countCorrect', logits, 'input');
  const l = labelsOf('countCorrect', hostLabels(labels), rows, cols, logits.shape);
  const pred = argmax(logits);
  let ok = 0;
  for (let r = 0; r < rows; r++) if (pred[r] === l[r]) ok++;
  return ok;
}

/** Fraction of rows whose argmax equals the label. */
export function accuracy(logits: Tensor, labels: Labels): number {
  const [rows] = rowsCols('accuracy', logits, 'input');
  return rows === 0 ? 0 : countCorrect(logits, labels) / rows;
}
