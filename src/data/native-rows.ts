// Row gathers in the native addon (native/include/psrpc/rows.h): the data layer's two hot copies.
//
// Converting the 55 M cached pixels to normalised floats in split order took ~180 ms as a JS loop
// (most of a warm Fashion-MNIST load); natively it is a table lookup per byte at memory speed. And
// V8 copies rows out of a SharedArrayBuffer byte by byte in TypedArray.set, which the loader hits
// whenever the data is shared (Hogwild); a memcpy per row does not care.
import { loadAddon } from '../tensor/native.js';

export interface NativeRows {
  /** dst row r = lut[src row index[r]], rows of rowLen bytes; every index is checked first. */
  gatherRowsU8(src: Uint8Array, index: Int32Array, rowLen: number, lut: Float32Array, dst: Float32Array): void;
  /** dst row r = src row index[r], rows of rowLen floats; every index is checked first. */
  gatherRowsF32(src: Float32Array, index: Int32Array, rowLen: number, dst: Float32Array): void;
}

let rows: NativeRows | undefined;

export function nativeRows(): NativeRows {
  return (rows ??= loadAddon<NativeRows>('psrpc'));
}
