// Input checks shared by the ops: each throws the typed error from errors.ts before an op
// touches a buffer or records a node.
import { errors } from '../errors.js';
import type { DType, Tensor } from '../tensor.js';

export function expectFloat(op: string, what: string, t: Tensor<DType>): asserts t is Tensor<'float32'> {
  if (t.dtype !== 'float32') throw errors.dtype(op, what, t.dtype, 'float32');
}

export function expectSameDevice(op: string, ...ts: (Tensor<DType> | null | undefined)[]): void {
  const first = ts[0]!.device;
  for (const t of ts) if (t && t.device !== first) throw errors.device(op, ts.filter((x) => x != null).map((x) => x!.device));
}

/** Rows and columns of a 2-D tensor, or of a 1-D tensor seen as one row. */
export function rowsCols(op: string, t: Tensor<DType>, what: string): [number, number] {
  if (t.shape.length === 2) return [t.shape[0]!, t.shape[1]!];
  if (t.shape.length === 1) return [1, t.shape[0]!];
  throw errors.shape(op, [t.shape], `${what} to be 1-D or 2-D`);
}

/** Labels as an Int32Array of `rows` entries in [0, classes). */
export function labelsOf(op: string, labels: Tensor<'int32'> | Int32Array, rows: number, classes: number, inputShape: readonly number[]): Int32Array {
  const data = labels instanceof Int32Array ? labels : labels.data;
  if (!(data instanceof Int32Array)) throw errors.dtype(op, 'labels', (labels as Tensor<DType>).dtype, 'int32');
  if (data.length !== rows) throw errors.shape(op, [inputShape, [data.length]], `${rows} labels (one per row of the input)`);
  for (let r = 0; r < rows; r++) {
    const l = data[r]!;
    if (l < 0 || l >= classes) throw errors.argument(op, `labels[${r}]`, l, `a class index in [0, ${classes})`);
  }
  return data;
}
