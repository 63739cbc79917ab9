// The shard plan: which server holds which range of which parameter.
//
// Parameters are laid end to end in their given order (the order of `flattenParameters`, so the
// model's flat buffer is that concatenation) and the whole is cut into S contiguous ranges of
// floor/ceil(T / S) elements. Large tensors are therefore split by range across servers, every
// server carries the same load to within one element, and each server's shard is one contiguous
// range of the trainer's flat buffers: a push is `grads.subarray(start, end)` and a pull lands in
// `params.subarray(start, end)`, with no gather or scatter on either side.
import { errors } from './errors.js';

/** A parameter as the plan sees it: a name and an element count. */
export interface ParameterSpec {
  name: string;
  size: number;
}

/** One piece of one parameter held by one server. */
export interface ShardSlice {
  name: string;
  /** First element of the piece within the parameter. */
  offset: number;
  length: number;
}

/** One server's shard: its slices, and where they lie in the flat concatenation of all parameters. */
export interface Shard {
  /** Index of the server, in [0, servers). */
  index: number;
  /** First element in the flat buffer. */
  start: number;
  /** Element count (the sum of the slices' lengths). */
  length: number;
  slices: ShardSlice[];
}

/** Checks a parameter list: unique non-empty names, positive integer sizes. Returns the total. */
export function checkSpecs(specs: readonly ParameterSpec[], where = 'shard plan'): number {
  if (!Array.isArray(specs) || specs.length === 0) throw errors.badLayout(where, 'expected a non-empty list of {name, size}');
  const seen = new Set<string>();
  let total = 0;
  for (const [i, p] of specs.entries()) {
    if (p === null || typeof p !== 'object' || typeof p.name !== 'string' || p.name.length === 0) {
      throw errors.badLayout(where, `parameter ${i} has no name`);
    }
    if (!Number.isSafeInteger(p.size) || p.size < 1) throw errors.badLayout(where, `parameter '${p.name}' has size ${String(p.size)}; expected an integer >= 1`);
    if (seen.has(p.name)) throw errors.badLayout(where, `parameter '${p.name}' appears twice`);
    seen.add(p.name);
    total += p.size;
  }
  return total;
}

/**
 * Splits `specs` over `servers` servers: entry s is server s's shard. Deterministic (depends on the
 * order of `specs` and on `servers` only) and balanced by element count. A server gets an empty
 * shard only when there are more servers than elements.
 */
export function planShards(specs: readonly ParameterSpec[], servers: number): Shard[] {
  if (!Number.isSafeInteger(servers) || servers < 1) throw errors.badLayout('shard plan', `servers = ${String(servers)}; expected an integer >= 1`);
  const total = checkSpecs(specs);
  const shards: Shard[] = [];
  let p = 0; // parameter index
  let within = 0; // elements of specs[p] already assigned
  for (let s = 0; s < servers; s++) {
    const start = Math.floor((s * total) / servers);
    const end = Math.floor(((s + 1) * total) / servers);
    const slices: ShardSlice[] = [];
    let left = end - start;
    while (left > 0) {
      const spec = specs[p]!;
      const take = Math.min(left, spec.size - within);
      slices.push({ name: spec.name, offset: within, length: take });
      within += take;
      left -= take;
      if (within === spec.size) { p++; within = 0; }
    }
    shards.push({ index: s, start, length: end - start, slices });
  }
  return shards;
}
