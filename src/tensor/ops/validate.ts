// Input checks shared by the ops: each throws the typed error from errors.ts before an op
// touches a buffer or records a node.
import { getBackend, type IntStorage } from '../backend.js';
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

/**
 * Labels on `input`'s device, and whether they are a private copy (else the caller copies them
 * before keeping them). Host labels (an Int32Array or a CPU tensor) are checked here; for a
 * device input a bare Int32Array is uploaded (a copy), while a tensor must be on the input's
 * device (its labels are range-checked by the device kernels, before they run).
 */
export function labelsOn(op: string, labels: Tensor<'int32'> | Int32Array, rows: number, classes: number, input: Tensor<DType>): [IntStorage, boolean] {
  if (!(labels instanceof Int32Array) && labels.device !== input.device) {
    throw errors.device(op, [input.device, labels.device], `${op}: the input is on '${input.device}' but the labels are on '${labels.device}'; move them with .to('${input.device}')`);
  }
  if (input.device === 'cpu') return [labelsOf(op, labels, rows, classes, input.shape), false];
  if (labels instanceof Int32Array) return [getBackend(input.device).fromHostInt(labelsOf(op, labels, rows, classes, input.shape)), true];
  if (labels.dtype !== 'int32') throw errors.dtype(op, 'labels', labels.dtype, 'int32');
  if (labels.size !== rows) throw errors.shape(op, [input.shape, labels.shape], `${rows} labels (one per row of the input)`);
  // Device labels cannot be written in place by any op, so keeping a reference is safe.
  return [labels.storage, true];
}

/** Host labels: the data of a CPU tensor, read (never copied) for the checks; or the values of a device tensor. */
export function hostLabels(labels: Tensor<'int32'> | Int32Array): Int32Array {
  if (labels instanceof Int32Array) return labels;
  return labels.device === 'cpu' ? labels.data : labels.toTypedArray();
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
