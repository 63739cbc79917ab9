// DeviceArray: a tensor's storage when it lives in device memory (a CUDA device buffer).
//
// The typed-array counterpart for devices: it knows its element count and type, so kernels and
// transfers need no extra arguments, and `buffer` names the memory as a typed array's
// `.buffer` does (two storages share memory when their buffers are the same object).
import type { CudaDeviceBuffer } from './cuda.js';

/** Element types a device storage can hold (uint8: dropout masks). */
export type DeviceElement = 'float32' | 'int32' | 'uint8';

const BYTES: Record<DeviceElement, number> = { float32: 4, int32: 4, uint8: 1 };

export class DeviceArray {
  constructor(
    /** The device memory; may be larger than the elements (pool reuse never shrinks it). */
    readonly buffer: CudaDeviceBuffer,
    /** Number of elements. */
    readonly length: number,
    readonly dtype: DeviceElement,
    readonly device: 'cuda',
  ) {}

  /** Bytes one element takes. */
  static bytesPer(dtype: DeviceElement): number {
    return BYTES[dtype];
  }

  toString(): string {
    return `DeviceArray(${this.device}, ${this.dtype}, ${this.length})`;
  }
}
