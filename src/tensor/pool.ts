// Free lists of buffers for the hot path's temporaries, one pool per backend.
//
// A training step allocates the same handful of activation and gradient buffers every time;
// allocating them fresh costs about a microsecond each plus cold cache lines (18 us of a 120 us
// MLP step, measured) on the CPU, and a cudaMalloc (a device synchronisation) on a GPU. Buffers
// handed out here come back when the autograd engine knows they are dead: a gradient consumed by
// the node it was meant for, a Sequential's intermediate activation once the graph that saved it
// is released. Contents of a taken buffer are garbage: the taker overwrites them. Only buffers a
// pool issued are ever taken back, once each, so a user's array (or a SharedArrayBuffer view)
// can never end up recycled.

const MAX_PER_SIZE = 16;

/** A pool of float32 buffers of one storage type (typed arrays, device arrays). */
export class BufferPool<S extends { readonly length: number }> {
  private readonly free = new Map<number, S[]>();
  /** Buffers issued by this pool: true while free (in a list), false while handed out. */
  private readonly state = new WeakMap<S, boolean>();

  constructor(private readonly allocate: (n: number) => S, private readonly release: (buf: S) => void = () => {}) {}

  /** A buffer of exactly n elements with undefined contents. */
  take(n: number): S {
    const hit = this.free.get(n)?.pop();
    if (hit !== undefined) {
      this.state.set(hit, false);
      return hit;
    }
    const buf = this.allocate(n);
    this.state.set(buf, false);
    return buf;
  }

  /** Returns a buffer that `take` issued and nobody uses any more; anything else is ignored. */
  recycle(buf: S): void {
    if (this.state.get(buf) !== false) return;
    let list = this.free.get(buf.length);
    if (list === undefined) this.free.set(buf.length, (list = []));
    if (list.length >= MAX_PER_SIZE) {
      this.state.delete(buf);
      this.release(buf);
      return;
    }
    this.state.set(buf, true);
    list.push(buf);
  }

  /** Whether `buf` came from this pool and is handed out. */
  isPooled(buf: S): boolean {
    return this.state.get(buf) === false;
  }

  /** Drops every free buffer (lets memory go after a model changes size). */
  clear(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.state.delete(b);
        this.release(b);
      }
    }
    this.free.clear();
  }
}

/** The host pool: the CPU backend's temporaries. */
export const hostPool = new BufferPool<Float32Array>((n) => new Float32Array(n));

/** A float32 buffer of exactly n elements with undefined contents. */
export function takeBuffer(n: number): Float32Array {
  return hostPool.take(n);
}

/** Returns a buffer that `takeBuffer` issued and nobody uses any more; anything else is ignored. */
export function recycleBuffer(buf: Float32Array): void {
  hostPool.recycle(buf);
}

/** Whether `buf` came from the pool and is handed out (test support). @internal */
export function isPooled(buf: Float32Array): boolean {
  return hostPool.isPooled(buf);
}

/** Drops every free buffer of the host pool (lets memory go after a model changes size). */
export function clearBufferPool(): void {
  hostPool.clear();
}
