// The shard plan: which server holds which range of which parameter.
//
// Parameters are laid end to end in their given order (the order of `flattenParameters`, so the
// model's flat buffer is that concatenation) and the whole is cut into S contiguous ranges of
// floor/ceil(T / S) elements. Large tensors are therefore split by range across servers, every
// server carries the same load to within one element, and each server's shard is one contiguous
// range of the trainer's flat buffers: a push is `grads.subarray(start, end)` and a pull lands in
// `params.subarray(start, end)`, with no gather or scatter on either side.
//
// A custom placement (docs/TOPOLOGIES.md, `PSRPC_SHARDS` / a topology file's `shards`) keeps that
// property: fractions move the cut points (server s holds [floor(c_s * T), floor(c_{s+1} * T)),
// c_s the sum of the fractions before it), and parameter-name lists must each be a run of
// consecutive parameters in the model's order (so a shard stays one range: no gather on the hot
// path). Either way the plan depends only on the layout and the placement, so a server and every
// trainer compute the same one; sync training gives the same result whatever the placement
// (every element gets the same averaged gradient and the same element-wise update).
import type { ParameterLayout } from '../tensor/index.js';
import { errors } from './errors.js';

/** A parameter as the plan sees it: a name and an element count. */
/** One parameter in the flat order: a model's layout entry (with its shape, trainers send it so that processes compare models). */
export type ParameterSpec = ParameterLayout;

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
    const shape: unknown = p.shape;
    if (shape !== undefined && (!Array.isArray(shape) || shape.some((d: unknown) => !Number.isSafeInteger(d) || (d as number) < 1) || shape.reduce((a: number, d: number) => a * d, 1) !== p.size)) {
      throw errors.badLayout(where, `parameter '${p.name}' has shape ${JSON.stringify(p.shape)}; expected positive integers whose product is its size ${p.size}`);
    }
    if (seen.has(p.name)) throw errors.badLayout(where, `parameter '${p.name}' appears twice`);
    seen.add(p.name);
    total += p.size;
  }
  return total;
}

/**
 * Where the parameters go, by shard index: fractions of the element count (summing to 1), or the
 * parameter names each server holds. Build it from the `{server: ...}` object with `parsePlacement`.
 */
export type Placement = { fractions: number[] } | { names: string[][] };

/**
 * Turns a `shards` object (`{"ps0": 0.75, "ps1": 0.25}` or `{"ps0": ["fc1.weight"], ...}`, keys
 * are server names) into a Placement in the order of `servers`. Refuses, naming the problem: a
 * non-object, an unknown server, a server without a placement, a mix of forms, a fraction outside
 * (0, 1], fractions not summing to 1 (within 1e-6), an empty or duplicated name list entry.
 */
export function parsePlacement(raw: unknown, servers: readonly string[], where = 'shards'): Placement {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw errors.badLayout(where, `expected an object from server name to a fraction or a list of parameter names, got ${JSON.stringify(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!servers.includes(k)) throw errors.badLayout(where, `'${k}' is not a server (servers: ${servers.join(', ')})`);
  }
  const values = servers.map((s) => {
    if (!Object.prototype.hasOwnProperty.call(obj, s)) throw errors.badLayout(where, `no placement for server '${s}'`);
    return obj[s];
  });
  if (values.every((v) => typeof v === 'number')) {
    const fractions = values as number[];
    fractions.forEach((f, i) => {
      if (!Number.isFinite(f) || f <= 0 || f > 1) throw errors.badLayout(where, `${servers[i]} has fraction ${f}; expected a number in (0, 1]`);
    });
    const sum = fractions.reduce((a, b) => a + b, 0);
    if (Math.abs(sum - 1) > 1e-6) throw errors.badLayout(where, `fractions sum to ${+sum.toFixed(6)}; they must sum to 1`);
    return { fractions };
  }
  if (values.every((v) => Array.isArray(v))) {
    const seen = new Map<string, string>();
    const names = (values as unknown[][]).map((list, i) => {
      if (list.length === 0) throw errors.badLayout(where, `${servers[i]} lists no parameter`);
      return list.map((n) => {
        if (typeof n !== 'string' || n.length === 0) throw errors.badLayout(where, `${servers[i]} lists ${JSON.stringify(n)}; expected parameter names`);
        const prev = seen.get(n);
        if (prev !== undefined) throw errors.badLayout(where, `parameter '${n}' is placed on both '${prev}' and '${servers[i]}'`);
        seen.set(n, servers[i]!);
        return n;
      });
    });
    return { names };
  }
  throw errors.badLayout(where, 'give every server a fraction (a number) or every server a list of parameter names, not a mix');
}

/** The placement in `PSRPC_SHARDS` (JSON of the `shards` object), or undefined when it is unset. */
export function placementFromEnv(servers: readonly string[], env: NodeJS.ProcessEnv = process.env): Placement | undefined {
  const text = env.PSRPC_SHARDS;
  if (text === undefined || text === '') return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw errors.badLayout('PSRPC_SHARDS', `is not JSON: ${text}`);
  }
  return parsePlacement(raw, servers, 'PSRPC_SHARDS');
}

/** Cut points [0, ..., total] of a placement over `specs` (see the header). */
function cuts(specs: readonly ParameterSpec[], total: number, servers: number, placement: Placement): number[] {
  if ('fractions' in placement) {
    if (placement.fractions.length !== servers) throw errors.badLayout('shard plan', `${placement.fractions.length} fractions for ${servers} servers`);
    const out = [0];
    let c = 0;
    for (let s = 0; s < servers - 1; s++) {
      c += placement.fractions[s]!;
      out.push(Math.min(total, Math.max(out[s]!, Math.floor(c * total))));
    }
    out.push(total);
    return out;
  }
  const lists = placement.names;
  if (lists.length !== servers) throw errors.badLayout('shard plan', `${lists.length} name lists for ${servers} servers`);
  const owner = new Map<string, number>();
  lists.forEach((l, s) => l.forEach((n) => owner.set(n, s)));
  const known = new Set(specs.map((p) => p.name));
  for (const n of owner.keys()) if (!known.has(n)) throw errors.badLayout('shard plan', `placement names '${n}', which is not a parameter of the model (${specs.map((p) => p.name).join(', ')})`);
  const out = [0];
  let at = 0;
  let s = 0;
  for (const p of specs) {
    const o = owner.get(p.name);
    if (o === undefined) throw errors.badLayout('shard plan', `parameter '${p.name}' is on no server`);
    if (o < s) throw errors.badLayout('shard plan', `parameter '${p.name}' is placed on server ${o} after parameters of server ${s}: each server's names must be consecutive parameters, servers in order`);
    while (s < o) { out.push(at); s++; }
    at += p.size;
  }
  while (out.length <= servers) out.push(at);
  return out;
}

/**
 * Splits `specs` over `servers` servers: entry s is server s's shard. Deterministic (depends on the
 * order of `specs`, on `servers` and on `placement` only); without a placement, balanced by element count. A server gets an empty
 * shard only when there are more servers than elements.
 */
export function planShards(specs: readonly ParameterSpec[], servers: number, placement?: Placement): Shard[] {
  if (!Number.isSafeInteger(servers) || servers < 1) throw errors.badLayout('shard plan', `servers = ${String(servers)}; expected an integer >= 1`);
  const total = checkSpecs(specs);
  const at = placement ? cuts(specs, total, servers, placement) : undefined;
  const shards: Shard[] = [];
  let p = 0; // parameter index
  let within = 0; // elements of specs[p] already assigned
  for (let s = 0; s < servers; s++) {
    const start = at ? at[s]! : Math.floor((s * total) / servers);
    const end = at ? at[s + 1]! : Math.floor(((s + 1) * total) / servers);
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
