// A process's place in a world started by a cluster scheduler, read from the environment the
// scheduler sets: its rank, the world's size, the rendezvous address (rank 0's host:port), its
// role and its name. `psnode` turns this into the flags of `ps-server` or `trainer`, so one image
// and one command line serve every rank (docs/CLUSTERS.md).
//
// Sources, the first that applies is used (`source` says which):
//   torchrun    TORCHELASTIC_RUN_ID set, or RANK set without any PET_* variable: RANK, WORLD_SIZE,
//               MASTER_ADDR, MASTER_PORT (LOCAL_RANK kept). When torchrun's agent hosts its store
//               at MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True) that port is taken on rank 0's
//               host, so the rendezvous goes to MASTER_PORT + 1.
//   kubeflow    a PET_* variable set (PyTorchJob, training-operator v1: RANK, WORLD_SIZE,
//               MASTER_ADDR, MASTER_PORT and PET_NODE_RANK, PET_NNODES, PET_MASTER_ADDR,
//               PET_MASTER_PORT; Kubeflow Trainer v2: the PET_* ones only). The plain names win.
//   slurm       SLURM_PROCID set: SLURM_PROCID, SLURM_NTASKS (or SLURM_NPROCS), the first host of
//               SLURM_STEP_NODELIST / SLURM_JOB_NODELIST / SLURM_NODELIST (or MASTER_ADDR), port
//               MASTER_PORT or 29500; SLURM_LOCALID as the local rank.
//   kubernetes  JOB_COMPLETION_INDEX set (an Indexed Job): the rank only; the world size from
//               WORLD_SIZE, the address from MASTER_ADDR and MASTER_PORT (or 29500), or, as
//               everywhere, PSRPC_WORLD_SIZE and PSRPC_MASTER.
//   psrpc       only PSRPC_RANK / PSRPC_WORLD_SIZE / PSRPC_MASTER.
// Whatever the source, PSRPC_RANK, PSRPC_WORLD_SIZE and PSRPC_MASTER (host:port) override the
// value they name, and PSRPC_MASTER_PORT the port. The role: ranks [0, PSRPC_SERVERS) are servers;
// PSRPC_ROLE, if set, must agree. The name: PSRPC_NAME, else psrun's names (ps<i>, trainer<i+1>).
//
// Pure: reads only the object it is given. Every malformed value is a ClusterEnvError whose
// message is one line naming the variable and its value.

export type ClusterSource = 'psrpc' | 'torchrun' | 'slurm' | 'kubernetes' | 'kubeflow';

/** The rendezvous port where the scheduler names a host but no port (Slurm, Kubernetes): PyTorch's. */
export const DEFAULT_MASTER_PORT = 29500;

/** At most this many hosts in an expanded Slurm host list. */
export const MAX_HOSTS = 65536;

/** What psnode says it looks for when none of it is there. */
export const CLUSTER_VARIABLES =
  'RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun, Kubeflow PyTorchJob); PET_NODE_RANK, PET_NNODES, PET_MASTER_ADDR, PET_MASTER_PORT (Kubeflow); ' +
  'SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_NODELIST (Slurm srun); JOB_COMPLETION_INDEX with PSRPC_WORLD_SIZE and PSRPC_MASTER (Kubernetes Indexed Job); ' +
  'or PSRPC_RANK, PSRPC_WORLD_SIZE, PSRPC_MASTER';

/** A variable of the cluster environment is malformed, missing or contradicts another. */
export class ClusterEnvError extends Error {
  override readonly name = 'ClusterEnvError';
  constructor(message: string, readonly variable: string, readonly value?: string) {
    super(message);
  }
}

/** A Slurm host list cannot be parsed. */
export class HostlistError extends Error {
  override readonly name = 'HostlistError';
  constructor(readonly list: string, readonly reason: string) {
    super(`malformed host list '${list}': ${reason}`);
  }
}

export interface ClusterPlace {
  /** Which scheduler's variables gave the place. */
  source: ClusterSource;
  rank: number;
  worldSize: number;
  /** host:port of the rendezvous, hosted by rank 0. */
  master: string;
  /** The rank on this host, where the scheduler says it (LOCAL_RANK, SLURM_LOCALID). */
  localRank?: number;
  /** Ranks [0, servers) are parameter servers. */
  servers: number;
  role: 'server' | 'trainer';
  /** Rank among the servers or among the trainers. */
  index: number;
  /** The worker name: PSRPC_NAME, or psrun's default for the role and index. */
  name: string;
  /** The variables each value came from, e.g. { rank: 'SLURM_PROCID', master: 'SLURM_JOB_NODELIST:MASTER_PORT' }. */
  from: { rank: string; worldSize: string; master: string; servers: string };
}

export interface ClusterDefaults {
  /** Servers when PSRPC_SERVERS is unset (psnode: the strategy's default; 0 when omitted). */
  servers?: number;
}

/** One value and the variable it was read from. */
interface Read {
  variable: string;
  value: string;
}

/** What a source gives; a field it cannot give is absent, with the variables that would give it. */
interface SourceReading {
  source: ClusterSource;
  rank?: Read;
  worldSize?: Read;
  host?: Read;
  port?: Read;
  /** The port is the number after the one read (torchrun's agent store holds MASTER_PORT itself). */
  portPlusOne?: boolean;
  localRank?: Read;
  /** The variables to set, by field, for the missing-value message. */
  wants: { rank: string[]; worldSize: string[]; master: string[] };
}

const PSRPC_VARS = ['PSRPC_RANK', 'PSRPC_WORLD_SIZE', 'PSRPC_MASTER'];
const PET_VARS = ['PET_NODE_RANK', 'PET_NNODES', 'PET_MASTER_ADDR', 'PET_MASTER_PORT'];
const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const HOST = /^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$/;

// ---- reading variables -----------------------------------------------------------------------

/** The variable's value; an empty value counts as unset (a manifest's `value: ""`). */
function get(env: NodeJS.ProcessEnv, variable: string): Read | undefined {
  const value = env[variable];
  return value === undefined || value === '' ? undefined : { variable, value };
}

/** The first of `variables` that is set. */
function first(env: NodeJS.ProcessEnv, ...variables: string[]): Read | undefined {
  for (const v of variables) {
    const r = get(env, v);
    if (r) return r;
  }
  return undefined;
}

function quoted(r: Read): string {
  return `${r.variable}='${r.value}'`;
}

function integer(r: Read, min: number): number {
  if (!/^\d+$/.test(r.value) || !Number.isSafeInteger(Number(r.value)) || Number(r.value) < min) {
    throw new ClusterEnvError(`${quoted(r)} is not ${min === 0 ? 'a non-negative' : 'a positive'} integer`, r.variable, r.value);
  }
  return Number(r.value);
}

function host(r: Read): string {
  if (r.value.includes(':')) throw new ClusterEnvError(`${quoted(r)} is not a host name or IPv4 address (a port belongs in the port variable; IPv6 literals are not supported)`, r.variable, r.value);
  if (!HOST.test(r.value)) throw new ClusterEnvError(`${quoted(r)} is not a host name or IPv4 address`, r.variable, r.value);
  return r.value;
}

function port(r: Read, plusOne = false): number {
  if (!/^\d{1,5}$/.test(r.value) || Number(r.value) < 1 || Number(r.value) > 65535) {
    throw new ClusterEnvError(`${quoted(r)} is not a port in [1, 65535]`, r.variable, r.value);
  }
  const n = Number(r.value) + (plusOne ? 1 : 0);
  if (n > 65535) throw new ClusterEnvError(`${quoted(r)} leaves no port for the rendezvous (torchrun's store holds it; set PSRPC_MASTER_PORT)`, r.variable, r.value);
  return n;
}

/** `host:port` (PSRPC_MASTER): both parts checked like the separate variables. */
function hostPort(r: Read): { host: string; port: number } {
  const at = r.value.lastIndexOf(':');
  if (at <= 0 || at === r.value.length - 1) throw new ClusterEnvError(`${quoted(r)} is not host:port`, r.variable, r.value);
  const h = r.value.slice(0, at);
  const p = r.value.slice(at + 1);
  if (h.includes(':') || !HOST.test(h)) throw new ClusterEnvError(`${quoted(r)} is not host:port (bad host '${h}')`, r.variable, r.value);
  if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new ClusterEnvError(`${quoted(r)} is not host:port (port must be in [1, 65535], got '${p}')`, r.variable, r.value);
  return { host: h, port: Number(p) };
}

// ---- the sources -------------------------------------------------------------------------------

function torchrun(env: NodeJS.ProcessEnv): SourceReading {
  return {
    source: 'torchrun',
    rank: get(env, 'RANK'),
    worldSize: get(env, 'WORLD_SIZE'),
    host: get(env, 'MASTER_ADDR'),
    port: get(env, 'MASTER_PORT'),
    portPlusOne: env.TORCHELASTIC_USE_AGENT_STORE === 'True',
    localRank: get(env, 'LOCAL_RANK'),
    wants: { rank: ['RANK'], worldSize: ['WORLD_SIZE'], master: ['MASTER_ADDR and MASTER_PORT'] },
  };
}

function kubeflow(env: NodeJS.ProcessEnv): SourceReading {
  const nproc = get(env, 'PET_NPROC_PER_NODE');
  if (nproc && nproc.value !== '1' && nproc.value !== 'auto') {
    throw new ClusterEnvError(`${quoted(nproc)} asks for several processes per pod; psnode is one process (set nprocPerNode to 1, or start psnode under torchrun)`, nproc.variable, nproc.value);
  }
  const worldSize = first(env, 'WORLD_SIZE', 'PET_NNODES');
  if (worldSize?.variable === 'PET_NNODES' && worldSize.value.includes(':')) {
    throw new ClusterEnvError(`${quoted(worldSize)} is an elastic range; psnode needs a fixed number of pods (no elasticPolicy)`, worldSize.variable, worldSize.value);
  }
  return {
    source: 'kubeflow',
    rank: first(env, 'RANK', 'PET_NODE_RANK'),
    worldSize,
    host: first(env, 'MASTER_ADDR', 'PET_MASTER_ADDR'),
    port: first(env, 'MASTER_PORT', 'PET_MASTER_PORT'),
    wants: {
      rank: ['RANK or PET_NODE_RANK (an elastic PyTorchJob, rendezvous through PET_RDZV_ENDPOINT, needs torchrun)'],
      worldSize: ['WORLD_SIZE or PET_NNODES'],
      master: ['MASTER_ADDR or PET_MASTER_ADDR'],
    },
  };
}

function slurm(env: NodeJS.ProcessEnv): SourceReading {
  let hostRead = get(env, 'MASTER_ADDR');
  if (!hostRead) {
    const list = first(env, 'SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST');
    if (list) {
      try {
        hostRead = { variable: list.variable, value: firstHost(list.value) };
      } catch (e) {
        if (e instanceof HostlistError) throw new ClusterEnvError(`${quoted(list)} is not a Slurm host list: ${e.reason}`, list.variable, list.value);
        throw e;
      }
    }
  }
  return {
    source: 'slurm',
    rank: get(env, 'SLURM_PROCID'),
    worldSize: first(env, 'SLURM_NTASKS', 'SLURM_NPROCS'),
    host: hostRead,
    port: get(env, 'MASTER_PORT') ?? (hostRead ? { variable: `default ${DEFAULT_MASTER_PORT}`, value: String(DEFAULT_MASTER_PORT) } : undefined),
    localRank: get(env, 'SLURM_LOCALID'),
    wants: { rank: ['SLURM_PROCID'], worldSize: ['SLURM_NTASKS (start psnode with srun)'], master: ['SLURM_JOB_NODELIST or MASTER_ADDR'] },
  };
}

function kubernetes(env: NodeJS.ProcessEnv): SourceReading {
  const hostRead = get(env, 'MASTER_ADDR');
  return {
    source: 'kubernetes',
    rank: get(env, 'JOB_COMPLETION_INDEX'),
    worldSize: get(env, 'WORLD_SIZE'),
    host: hostRead,
    port: get(env, 'MASTER_PORT') ?? (hostRead ? { variable: `default ${DEFAULT_MASTER_PORT}`, value: String(DEFAULT_MASTER_PORT) } : undefined),
    wants: {
      rank: ['JOB_COMPLETION_INDEX'],
      worldSize: ['PSRPC_WORLD_SIZE or WORLD_SIZE (an Indexed Job says no size: give its completions)'],
      master: ['PSRPC_MASTER (e.g. <job>-0.<service>:29500) or MASTER_ADDR'],
    },
  };
}

function psrpcOnly(): SourceReading {
  return { source: 'psrpc', wants: { rank: ['PSRPC_RANK'], worldSize: ['PSRPC_WORLD_SIZE'], master: ['PSRPC_MASTER'] } };
}

/** The scheduler whose variables are present, in precedence order; null when none is. */
function detect(env: NodeJS.ProcessEnv): SourceReading | null {
  const underTorchrun = get(env, 'TORCHELASTIC_RUN_ID') !== undefined;
  const pet = PET_VARS.some((v) => get(env, v));
  if (underTorchrun || (get(env, 'RANK') && !pet)) return torchrun(env);
  if (pet) return kubeflow(env);
  if (get(env, 'SLURM_PROCID')) return slurm(env);
  if (get(env, 'JOB_COMPLETION_INDEX')) return kubernetes(env);
  if (PSRPC_VARS.some((v) => get(env, v))) return psrpcOnly();
  return null;
}

// ---- the place ---------------------------------------------------------------------------------

/**
 * This process's place in the world the environment describes, or null when no cluster
 * environment is present. Throws a ClusterEnvError (one line naming the variable and its value)
 * for a malformed, missing or contradictory value.
 */
export function clusterPlace(env: NodeJS.ProcessEnv, defaults: ClusterDefaults = {}): ClusterPlace | null {
  const s = detect(env);
  if (!s) return null;
  const missing = (what: string, wants: string[]) =>
    new ClusterEnvError(`${s.source}: no ${what}: set ${wants.join(' or ')}`, wants[0]!.split(' ')[0]!);

  const rankRead = get(env, 'PSRPC_RANK') ?? s.rank;
  if (!rankRead) throw missing('rank', s.source === 'psrpc' ? ['PSRPC_RANK'] : [...s.wants.rank, 'PSRPC_RANK']);
  const sizeRead = get(env, 'PSRPC_WORLD_SIZE') ?? s.worldSize;
  if (!sizeRead) throw missing('world size', s.source === 'psrpc' || s.source === 'kubernetes' ? s.wants.worldSize : [...s.wants.worldSize, 'PSRPC_WORLD_SIZE']);
  const rank = integer(rankRead, 0);
  const worldSize = integer(sizeRead, 1);
  if (rank >= worldSize) {
    throw new ClusterEnvError(`${quoted(rankRead)} is outside the world of ${quoted(sizeRead)} (ranks 0..${worldSize - 1})`, rankRead.variable, rankRead.value);
  }

  let master: string;
  let masterFrom: string;
  const whole = get(env, 'PSRPC_MASTER');
  if (whole) {
    const hp = hostPort(whole);
    master = `${hp.host}:${hp.port}`;
    masterFrom = 'PSRPC_MASTER';
  } else {
    if (!s.host) throw missing('rendezvous address', s.source === 'psrpc' || s.source === 'kubernetes' ? s.wants.master : [...s.wants.master, 'PSRPC_MASTER']);
    const h = host(s.host);
    const own = get(env, 'PSRPC_MASTER_PORT');
    if (!own && !s.port) throw missing('rendezvous port', [s.source === 'torchrun' ? 'MASTER_PORT' : 'MASTER_PORT or PET_MASTER_PORT', 'PSRPC_MASTER_PORT']);
    const p = own ? port(own) : port(s.port!, s.portPlusOne);
    master = `${h}:${p}`;
    masterFrom = `${s.host.variable}:${own ? own.variable : s.port!.variable + (s.portPlusOne ? '+1' : '')}`;
  }

  const localRank = s.localRank ? integer(s.localRank, 0) : undefined;

  const serversRead = get(env, 'PSRPC_SERVERS');
  const servers = serversRead ? integer(serversRead, 0) : (defaults.servers ?? 0);
  const serversFrom = serversRead ? 'PSRPC_SERVERS' : `default ${servers}`;
  const serversSaid = serversRead ? quoted(serversRead) : `PSRPC_SERVERS (unset: ${servers})`;
  if (servers > 0 && servers >= worldSize) {
    throw new ClusterEnvError(`${serversSaid} leaves no trainer in a world of ${quoted(sizeRead)} (need servers < world size)`, 'PSRPC_SERVERS', serversRead?.value);
  }
  const derived = rank < servers ? 'server' : 'trainer';
  const roleRead = get(env, 'PSRPC_ROLE');
  if (roleRead) {
    if (roleRead.value !== 'server' && roleRead.value !== 'trainer') {
      throw new ClusterEnvError(`${quoted(roleRead)} is not 'server' or 'trainer'`, roleRead.variable, roleRead.value);
    }
    if (roleRead.value !== derived) {
      const why = servers === 0 ? `no rank is a server with ${serversSaid}` : `ranks 0..${servers - 1} are the servers with ${serversSaid}`;
      throw new ClusterEnvError(`${quoted(roleRead)} contradicts rank ${rank} (${quoted(rankRead)}): ${why}`, roleRead.variable, roleRead.value);
    }
  }
  const index = derived === 'server' ? rank : rank - servers;

  const nameRead = get(env, 'PSRPC_NAME');
  if (nameRead && !NAME.test(nameRead.value)) {
    throw new ClusterEnvError(`${quoted(nameRead)} is not a worker name (a letter, then up to 63 letters, digits, '_', '.' or '-')`, nameRead.variable, nameRead.value);
  }
  // psrun's names (src/launch/topology.ts): ps0, ps1, ... and trainer1, trainer2, ...
  const name = nameRead?.value ?? (derived === 'server' ? `ps${index}` : `trainer${index + 1}`);

  return {
    source: s.source, rank, worldSize, master, ...(localRank !== undefined ? { localRank } : {}),
    servers, role: derived, index, name,
    from: { rank: rankRead.variable, worldSize: sizeRead.variable, master: masterFrom, servers: serversFrom },
  };
}

// ---- Slurm host lists --------------------------------------------------------------------------

/** One bracket group: numbered ranges, each value printed with the low bound's digits (zero padding kept). */
type Group = Array<{ lo: number; hi: number; width: number }>;
/** A host pattern: literal text and bracket groups in order, e.g. ['n', [{1..3}], '-ib']. */
type Pattern = Array<string | Group>;

const LITERAL = /^[A-Za-z0-9._-]$/;

/** Parses Slurm's host-list syntax (`node01`, `node[01-04,07]`, `gpu-a[1-2],gpu-b3`, `n[001-003]-ib`). */
function parsePatterns(list: string): Pattern[] {
  const fail = (reason: string): never => {
    throw new HostlistError(list, reason);
  };
  if (list === '') fail('it is empty');
  if (/\s/.test(list)) fail('it contains whitespace');
  const patterns: Pattern[] = [];
  let pattern: Pattern = [];
  let text = '';
  let i = 0;
  const endItem = () => {
    if (text) pattern.push(text);
    if (pattern.length === 0) fail(`an empty host name at character ${i + 1} (',,' or a ',' at either end)`);
    patterns.push(pattern);
    pattern = [];
    text = '';
  };
  while (i < list.length) {
    const c = list[i]!;
    if (c === ',') {
      endItem();
      i++;
    } else if (c === '[') {
      const close = list.indexOf(']', i);
      if (close < 0) fail(`the '[' at character ${i + 1} is never closed`);
      const body = list.slice(i + 1, close);
      if (body.includes('[')) fail(`a '[' inside brackets at character ${i + 1 + body.indexOf('[') + 1}`);
      if (text) pattern.push(text);
      text = '';
      pattern.push(parseGroup(body, fail));
      i = close + 1;
    } else if (c === ']') {
      fail(`the ']' at character ${i + 1} closes nothing`);
    } else {
      if (!LITERAL.test(c)) fail(`'${c}' at character ${i + 1} cannot be part of a host name`);
      text += c;
      i++;
    }
  }
  endItem();
  return patterns;
}

function parseGroup(body: string, fail: (reason: string) => never): Group {
  if (body === '') fail("'[]' names no numbers");
  return body.split(',').map((part) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) fail(`'${part}' in brackets is not a number or a range a-b`);
    const lo = Number(m![1]);
    const hi = m![2] === undefined ? lo : Number(m![2]);
    if (hi < lo) fail(`the range '${part}' runs backwards`);
    return { lo, hi, width: m![1]!.length };
  });
}

function groupSize(g: Group): number {
  return g.reduce((n, r) => n + (r.hi - r.lo + 1), 0);
}

/** Every host of a Slurm host list, in Slurm's order; a HostlistError for a malformed one. */
export function parseHostlist(list: string): string[] {
  const out: string[] = [];
  for (const p of parsePatterns(list)) {
    const count = p.reduce((n, part) => n * (typeof part === 'string' ? 1 : groupSize(part)), 1);
    if (out.length + count > MAX_HOSTS) throw new HostlistError(list, `it expands to more than ${MAX_HOSTS} hosts`);
    let names = [''];
    for (const part of p) {
      if (typeof part === 'string') names = names.map((n) => n + part);
      else {
        const values = part.flatMap((r) => Array.from({ length: r.hi - r.lo + 1 }, (_, k) => String(r.lo + k).padStart(r.width, '0')));
        names = names.flatMap((n) => values.map((v) => n + v));
      }
    }
    out.push(...names);
  }
  return out;
}

/** The first host of a Slurm host list (the whole list is checked; nothing is expanded). */
export function firstHost(list: string): string {
  const p = parsePatterns(list)[0]!;
  return p.map((part) => (typeof part === 'string' ? part : String(part[0]!.lo).padStart(part[0]!.width, '0'))).join('');
}
