// The minimal structural view of a tensor that the payload codec needs: shape, dtype and a typed
// array holding the elements. The codec depends on this view, not on the Tensor class, so that the
// RPC layer works with anything tensor-shaped; a factory turns received views back into the
// application's tensor type: by default the tensor layer's `Tensor` for the dtypes it stores
// (float32, int32), a plain `{ shape, dtype, data }` view for the others.
import { Tensor } from '../tensor/index.js';

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array
  | Uint8Array | Uint16Array | Uint32Array | BigInt64Array | BigUint64Array;

/** What the codec reads from a tensor and hands to the tensor factory on receive. */
export interface TensorView {
  shape: readonly number[];
  dtype: string;
  data: TypedArray;
}

type TypedArrayCtor = { new(length: number): TypedArray; new(buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray; readonly BYTES_PER_ELEMENT: number; readonly name: string };

/** dtype -> element storage; half types travel as their 16-bit words. */
export const DTYPES: Readonly<Record<string, TypedArrayCtor>> = Object.freeze({
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
} as Record<string, TypedArrayCtor>);

/** Bare typed arrays travel as raw bytes too; their kind names the constructor to rebuild. */
export const ARRAY_KINDS: Readonly<Record<string, TypedArrayCtor>> = Object.freeze({
  Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
  Uint8Array, Uint16Array, Uint32Array, BigInt64Array, BigUint64Array,
  Buffer: Uint8Array,
} as Record<string, TypedArrayCtor>);

export function isTypedArray(x: unknown): x is TypedArray {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/**
 * A Tensor that lives on a device ('cuda'): its values cross as a host copy (read with
 * `toTypedArray()`, since `.data` is host memory only) and arrive as a CPU tensor, which the
 * receiver moves with `.to(device)` if it wants it there (torch's RPC refuses device tensors
 * without a device map; psrpc sends the values and leaves the placement to the receiver).
 */
export function deviceTensorView(x: unknown): TensorView | undefined {
  if (!(x instanceof Tensor) || x.device === 'cpu') return undefined;
  return { shape: x.shape, dtype: x.dtype, data: x.toTypedArray() } as TensorView;
}

/** Structural test: anything with an array `shape`, a string `dtype` and a typed-array `data`. */
export function isTensorView(x: unknown): x is TensorView {
  if (typeof x !== 'object' || x === null) return false;
  if (x instanceof Tensor && x.device !== 'cpu') return false;
  const t = x as Partial<TensorView>;
  return Array.isArray(t.shape) && typeof t.dtype === 'string' && isTypedArray(t.data);
}

export type TensorFactory = (view: TensorView) => unknown;

/** Wraps the received storage without copying it. */
export const defaultTensorFactory: TensorFactory = (view) => {
  if (view.dtype === 'float32' && view.data instanceof Float32Array) return new Tensor(view.data, [...view.shape]);
  if (view.dtype === 'int32' && view.data instanceof Int32Array) return new Tensor<'int32'>(view.data, [...view.shape]);
  return { shape: view.shape, dtype: view.dtype, data: view.data };
};

let factory: TensorFactory = defaultTensorFactory;

/**
 * Sets how received tensors are rebuilt (default: `defaultTensorFactory`). The
 * factory must not copy `view.data` if it wants to keep the zero-copy receive path.
 */
export function setTensorFactory(f: TensorFactory): void {
  factory = f;
}

export function makeTensor(view: TensorView): unknown {
  return factory(view);
}
