// A local topology: which processes psrun starts (servers, trainers, their names and ranks), how
// the parameters are placed on the servers, the consistency model and the training options.
//
// Built from psrun's flags (`topologyFromFlags`) or from a JSON file (`readTopologyFile`, format
// in docs/TOPOLOGIES.md); both end in `checkTopology`, so the flags and the file refuse the same
// impossible jobs with the same one-line message, before any process starts.
import { readFile } from 'node:fs/promises';
import { checkpointConflict, consistencyConflict, DEFAULTS, elasticConflict, type Consistency, type Strategy, type TrainOptions } from '../trainer/options.js';
import { findStrategy, worldStrategies } from '../trainer/strategies/index.js';
import { describeValue, TopologyError } from './errors.js';
import { JsonSourceError, parseJsonSource } from './json-source.js';
import { parseFlagValue, TOPOLOGY_KEYS, trainFlagTable, type TrainFlags } from './train-flags.js';

/**
 * The strategies psrun runs, alphabetically: the table's world strategies (several processes with
 * ranks); the others run in one process (`trainer`).
 */
export function launchStrategies(): string[] {
  return worldStrategies().map((s) => s.name).sort();
}

/** psrun's default number of servers: one (or the exact number it needs) where the strategy has servers, else none. */
function defaultServers(strategy: string): number {
  const spec = findStrategy(strategy);
  return spec?.world === 'servers' ? spec.fixedServers?.count ?? 1 : 0;
}

export type Role = 'ps-server' | 'trainer';

export interface ProcessSpec {
  name: string;
  role: Role;
  /** Servers take ranks [0, S), trainers [S, S+T); rank 0 hosts the rendezvous. */
  rank: number;
  /** Extra arguments appended after the ones psrun computes. */
  args: string[];
  /** Extra environment variables, over psrun's own. */
  env: Record<string, string>;
}

/**
 * Parameter placement on the servers: a fraction of the parameters per server (summing to 1), or
 * explicit parameter-name lists per server. Passed to every process as PSRPC_SHARDS (JSON).
 */
export type Shards = Record<string, number> | Record<string, string[]>;

export interface Topology {
  /** A world strategy of the table (`launchStrategies()`). */
  strategy: Strategy;
  consistency: Consistency;
  /** ssp only. */
  staleness?: number;
  servers: ProcessSpec[];
  trainers: ProcessSpec[];
  shards?: Shards;
  /** Training options given explicitly, passed through to every process as flags. */
  train: TrainFlags;
  /** The training options with the defaults filled in (for the result). */
  options: TrainOptions;
}

/** What the flags or the file say, before the cross-field checks. */
export interface TopologyInput {
  strategy: string;
  consistency: Consistency;
  staleness?: number;
  servers: Array<{ name?: string; args?: string[]; env?: Record<string, string> }>;
  trainers: Array<{ name?: string; args?: string[]; env?: Record<string, string> }>;
  shards?: unknown;
  train: TrainFlags;
}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** At most this many processes: a local topology on one machine. */
export const MAX_PROCESSES = 256;

/** Default names: ps0, ps1, ... for servers; trainer1, trainer2, ... for trainers. */
function defaultName(role: Role, index: number): string {
  return role === 'ps-server' ? `ps${index}` : `trainer${index + 1}`;
}

/**
 * The cross-field checks shared by flags and files; returns the runnable topology or throws a
 * TopologyError naming the problem. `where` prefixes the message (the file's path).
 */
export function checkTopology(input: TopologyInput, where?: string): Topology {
  const err = (message: string) => new TopologyError(message, where);
  const spec = findStrategy(input.strategy);
  if (!spec || spec.world === 'single') {
    throw err(`psrun runs the strategies ${launchStrategies().join(', ')}; strategy '${input.strategy}' runs in one process: use \`trainer --strategy ${input.strategy}\``);
  }
  const strategy = spec.name;
  const S = input.servers.length;
  const T = input.trainers.length;
  if (T === 0) throw err('a job needs at least one trainer, got 0');
  if (spec.world === 'servers' && S === 0) throw err(`strategy ${strategy} needs at least one server, got 0`);
  if (spec.world === 'peers' && S > 0) {
    throw err(`strategy ${strategy} has no separate servers (${spec.serverless}), got ${S} server(s): use 0 servers`);
  }
  const conflict = consistencyConflict(strategy, input.consistency);
  if (conflict) throw err(conflict);
  const options: TrainOptions = { ...DEFAULTS, ...(input.train as Partial<TrainOptions>), strategy, consistency: input.consistency };
  if (input.staleness !== undefined) options.staleness = input.staleness;
  const need = spec.world === 'peers' ? spec.peers?.(options) : undefined;
  if (need && T !== need.count) throw err(`strategy ${strategy} runs ${need.because} = ${need.count} trainer processes, got ${T} trainers: leave --trainers out or give ${need.count}`);
  if (S + T > MAX_PROCESSES) throw err(`a local topology runs at most ${MAX_PROCESSES} processes, got ${S + T}`);
  if (input.staleness !== undefined && input.consistency !== 'ssp') {
    throw err(`staleness applies to consistency ssp only, but consistency is ${input.consistency}`);
  }
  const seen = new Set<string>();
  const specs = (list: TopologyInput['servers'], role: Role, first: number): ProcessSpec[] =>
    list.map((p, i) => {
      const name = p.name ?? defaultName(role, i);
      if (seen.has(name)) throw err(`process name '${name}' is used twice`);
      seen.add(name);
      return { name, role, rank: first + i, args: p.args ?? [], env: p.env ?? {} };
    });
  const servers = specs(input.servers, 'ps-server', 0);
  const trainers = specs(input.trainers, 'trainer', S);
  const shards = input.shards === undefined ? undefined : checkShards(input.shards, servers, strategy, err);
  const refusal = checkpointConflict(options) ?? elasticConflict(options) ?? spec.check?.(options);
  if (refusal) throw err(refusal);
  return { strategy, consistency: input.consistency, staleness: input.consistency === 'ssp' ? options.staleness : undefined, servers, trainers, shards, train: input.train, options };
}

function checkShards(raw: unknown, servers: ProcessSpec[], strategy: string, err: (m: string) => TopologyError): Shards {
  if (servers.length === 0) throw err(`shards place parameters on servers, but strategy ${strategy} has none`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw err(`shards must be an object from server name to a fraction or a list of parameter names, got ${describeValue(raw)}`);
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  const names = new Set(servers.map((s) => s.name));
  for (const [server] of entries) {
    if (!names.has(server)) throw err(`shards names '${server}', which is not a server (servers: ${[...names].join(', ')})`);
  }
  for (const s of servers) {
    if (!Object.prototype.hasOwnProperty.call(raw, s.name)) throw err(`shards gives no placement for server '${s.name}'`);
  }
  const fractions = entries.every(([, v]) => typeof v === 'number');
  const lists = entries.every(([, v]) => Array.isArray(v));
  if (!fractions && !lists) {
    throw err('shards must give every server a fraction (a number) or every server a list of parameter names, not a mix');
  }
  if (fractions) {
    let sum = 0;
    for (const [server, v] of entries as Array<[string, number]>) {
      if (!Number.isFinite(v) || v <= 0 || v > 1) throw err(`shards.${server} must be a fraction in (0, 1], got ${describeValue(v)}`);
      sum += v;
    }
    if (Math.abs(sum - 1) > 1e-6) throw err(`shards fractions must sum to 1, got ${+sum.toFixed(6)}`);
    return Object.fromEntries(entries) as Record<string, number>;
  }
  const owner = new Map<string, string>();
  for (const [server, v] of entries as Array<[string, unknown[]]>) {
    if (v.length === 0) throw err(`shards.${server} must list at least one parameter name`);
    for (const p of v) {
      if (typeof p !== 'string' || p === '') throw err(`shards.${server} must list parameter names (non-empty strings), got ${describeValue(p)}`);
      const prev = owner.get(p);
      if (prev !== undefined) throw err(`parameter '${p}' is placed twice in shards (on '${prev}' and '${server}')`);
      owner.set(p, server);
    }
  }
  return Object.fromEntries(entries) as Record<string, string[]>;
}

/** psrun's own flags plus the training flags, as commander parsed them. */
export interface TopologyFlags {
  servers?: number;
  trainers?: number;
  strategy: string;
  consistency: Consistency;
  /** Only when given on the command line (its default must not trip the ssp-only check). */
  staleness?: number;
  shards?: Record<string, number>;
  train: TrainFlags;
}

export function topologyFromFlags(f: TopologyFlags): Topology {
  const servers = f.servers ?? defaultServers(f.strategy);
  const spec = findStrategy(f.strategy);
  const peers = spec?.world === 'peers' ? spec.peers?.({ ...DEFAULTS, ...(f.train as Partial<TrainOptions>) }) : undefined;
  const trainers = f.trainers ?? peers?.count ?? 2;
  return checkTopology({
    strategy: f.strategy,
    consistency: f.consistency,
    staleness: f.staleness,
    servers: Array.from({ length: servers }, () => ({})),
    trainers: Array.from({ length: trainers }, () => ({})),
    shards: f.shards,
    train: f.train,
  });
}

/** Values given on the command line next to --topology; they win over the file's. */
export interface TopologyOverrides {
  strategy?: string;
  consistency?: Consistency;
  staleness?: number;
  /** Training flags given on the command line. */
  train?: TrainFlags;
}

const FILE_KEYS = ['description', 'strategy', 'consistency', 'staleness', 'servers', 'trainers', 'shards', 'train'];
const PROCESS_KEYS = ['name', 'args', 'env'];

/** Reads and checks a topology file; `overrides` are training flags given on the command line. */
export async function readTopologyFile(path: string, overrides: TopologyOverrides = {}): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TopologyError(`cannot read the topology file${code ? ` (${code})` : ''}`, path);
  }
  return parseTopology(text, path, overrides);
}

/** Parses a topology file's text; `where` names it in messages. */
export function parseTopology(text: string, where: string, overrides: TopologyOverrides = {}): Topology {
  const err = (message: string) => new TopologyError(message, where);
  let raw: unknown;
  try {
    raw = parseJsonSource(text);
  } catch (e) {
    if (e instanceof JsonSourceError) throw new TopologyError(`invalid JSON: ${e.reason}`, `${where}:${e.line}:${e.column}`);
    throw e;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw err(`a topology is a JSON object, got ${Array.isArray(raw) ? 'an array' : describeValue(raw)}`);
  const o = raw as Record<string, unknown>;
  unknownKeys(o, FILE_KEYS, 'the top level', err);
  if (o.description !== undefined && typeof o.description !== 'string') throw err(`description must be a string, got ${describeValue(o.description)}`);

  const flag = (key: string, v: unknown) => {
    try {
      return parseFlagValue(key, v);
    } catch (e) {
      throw err(`${key} ${(e as Error).message.replace(/^--[\w-]+ /, '')}`);
    }
  };
  const strategy = overrides.strategy ?? (o.strategy === undefined ? undefined : String(flag('strategy', o.strategy)));
  if (strategy === undefined) throw err(`strategy is required (one of ${launchStrategies().join(', ')})`);
  const consistency = overrides.consistency ?? (o.consistency === undefined ? DEFAULTS.consistency : (flag('consistency', o.consistency) as Consistency));
  const staleness = overrides.staleness ?? (o.staleness === undefined ? undefined : (flag('staleness', o.staleness) as number));

  const train: TrainFlags = {};
  if (o.train !== undefined) {
    if (o.train === null || typeof o.train !== 'object' || Array.isArray(o.train)) throw err(`train must be an object of training options, got ${describeValue(o.train)}`);
    const known = [...trainFlagTable().keys()].filter((k) => !TOPOLOGY_KEYS.has(k));
    for (const [key, v] of Object.entries(o.train as Record<string, unknown>)) {
      if (TOPOLOGY_KEYS.has(key)) throw err(`train.${key}: ${key} belongs at the top level of the topology, not in train`);
      if (!known.includes(key)) throw err(`unknown key '${key}' in train (known: ${known.join(', ')})`);
      try {
        train[key as keyof TrainFlags] = parseFlagValue(key, v);
      } catch (e) {
        throw err(`train.${key} ${(e as Error).message.replace(/^--[\w-]+ /, '')}`);
      }
    }
  }
  Object.assign(train, overrides.train);

  return checkTopology({
    strategy,
    consistency,
    staleness,
    servers: processList(o.servers, 'servers', err, false),
    trainers: processList(o.trainers, 'trainers', err, true),
    shards: o.shards,
    train,
  }, where);
}

function unknownKeys(o: Record<string, unknown>, known: string[], at: string, err: (m: string) => TopologyError) {
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw err(`unknown key '${key}' at ${at} (known: ${known.join(', ')})`);
  }
}

function processList(v: unknown, key: string, err: (m: string) => TopologyError, required: boolean): TopologyInput['servers'] {
  if (v === undefined) {
    if (required) throw err(`${key} is required (a count or a list of processes)`);
    return [];
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_PROCESSES) throw err(`${key} must be a count in [0, ${MAX_PROCESSES}] or a list of processes, got ${describeValue(v)}`);
    return Array.from({ length: v }, () => ({}));
  }
  if (!Array.isArray(v)) throw err(`${key} must be a count or a list of processes, got ${describeValue(v)}`);
  return v.map((p: unknown, i) => {
    const at = `${key}[${i}]`;
    if (typeof p === 'string') p = { name: p };
    if (p === null || typeof p !== 'object' || Array.isArray(p)) throw err(`${at} must be a name or an object {name, args, env}, got ${describeValue(p)}`);
    const e = p as Record<string, unknown>;
    unknownKeys(e, PROCESS_KEYS, at, err);
    if (e.name !== undefined && (typeof e.name !== 'string' || !NAME.test(e.name))) {
      throw err(`${at}.name must be a letter followed by up to 63 letters, digits, '_', '.' or '-', got ${describeValue(e.name)}`);
    }
    if (e.args !== undefined && (!Array.isArray(e.args) || !e.args.every((a) => typeof a === 'string'))) {
      throw err(`${at}.args must be a list of strings, got ${describeValue(e.args)}`);
    }
    let env: Record<string, string> | undefined;
    if (e.env !== undefined) {
      if (e.env === null || typeof e.env !== 'object' || Array.isArray(e.env)) throw err(`${at}.env must be an object of strings, got ${describeValue(e.env)}`);
      env = {};
      for (const [k, val] of Object.entries(e.env as Record<string, unknown>)) {
        if (!ENV_NAME.test(k)) throw err(`${at}.env has a bad variable name ${describeValue(k)}`);
        if (typeof val !== 'string') throw err(`${at}.env.${k} must be a string, got ${describeValue(val)}`);
        env[k] = val;
      }
    }
    return { name: e.name as string | undefined, args: e.args as string[] | undefined, env };
  });
}
