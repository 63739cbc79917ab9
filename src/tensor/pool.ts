// A free list of float32 buffers for the hot path's temporaries.
//
// A training step allocates the same handful of activation and gradient buffers every time;
// allocating them fresh costs about a microsecond each plus cold cache lines (18 us of a 120 us
// MLP step, measured). Buffers handed out here come back when the autograd engine knows they
// are dead: a gradient consumed by the node it was meant for, a Sequential's intermediate
// activation once the graph that saved it is released. Contents of a taken buffer are garbage:
// the taker overwrites them. Only buffers this pool issued are ever taken back, once each, so a
// user's array (or a SharedArrayBuffer view) can never end up recycled.

const MAX_PER_SIZE = 16;
const free = new Map<number, Float32Array[]>();
/** Buffers issued by the pool: true while free (in a list), false while handed out. */
const state = new WeakMap<Float32Array, boolean>();

/** A float32 buffer of exactly n elements with undefined contents. */
export function takeBuffer(n: number): Float32Array {
  const list = free.get(n);
  const hit = list?.pop();
  if (hit !== undefined) {
    state.set(hit, false);
    return hit;
  }
  const buf = new Float32Array(n);
  state.set(buf, false);
  return buf;
}

/** Returns a buffer that `takeBuffer` issued and nobody uses any more; anything else is ignored. */
export function recycleBuffer(buf: Float32Array): void {
  if (state.get(buf) !== false) return;
  let list = free.get(buf.length);
  if (list === undefined) free.set(buf.length, (list = []));
  if (list.length >= MAX_PER_SIZE) {
    state.delete(buf);
    return;
  }
  state.set(buf, true);
  list.push(buf);
}

/** Whether `buf` came from the pool and is handed out (test support). @internal */
export function isPooled(buf: Float32Array): boolean {
  return state.get(buf) === false;
}

/** Drops every free buffer (lets memory go after a model changes size). */
export function clearBufferPool(): void {
  for (const list of free.values()) for (const b of list) state.delete(b);
  free.clear();
}
