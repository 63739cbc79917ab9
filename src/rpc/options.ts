// Agent options: defaults in one place, validated once at init().
import { isIPv4, isIPv6 } from 'node:net';
import { systemClock, type Clock } from './clock.js';
import { errors } from './errors.js';
import { checkTls, type TlsOptions, type WorldTls } from './tls.js';

export interface InitOptions {
  /** This worker's name, unique in the world. */
  name: string;
  /** This worker's rank in [0, worldSize). */
  rank: number;
  /** Number of workers in the world. */
  worldSize: number;
  /** host:port of the master's rendezvous; the master listens there (port 0: any free port, see `agent.address`). */
  master: string;
  /** Whether this worker hosts the rendezvous (default: rank 0). */
  isMaster?: boolean;
  /** host:port this agent listens on (default 127.0.0.1:0); the master listens on `master` instead. */
  listen?: string;
  /**
   * The host peers connect to (a name, an IPv4 address, or an IPv6 one with or without brackets),
   * never a port: the published address (`agent.address`, WorkerInfo.address) is this host with the
   * port the agent bound, and the side-channel sockets are reached at this host too. Default: the
   * listen host (the master's: `master`'s). Required when listening on a wildcard (0.0.0.0 or
   * [::]), which peers cannot connect to.
   */
  advertise?: string;
  /**
   * This process replaces a worker of a running world that died, with the same name and rank
   * (default false): once the world is complete the master takes this agent's new address instead
   * of refusing the name (psrun --max-restarts sets it, through PSRPC_REJOIN, for a process it
   * restarts alone). Peers that call it find the new address with `agent.awaitRejoin`. Ignored
   * on the master, which hosts the rendezvous itself.
   */
  rejoin?: boolean;
  /**
   * An elastic world (default worldSize: not elastic): the rendezvous completes once this many
   * workers have joined; the others of the worldSize ranks may join later (late joins, answered at
   * once), members may leave for good (`shutdown({ leave: true })`), and the master counts those it
   * loses (heartbeats) as gone, so the shutdown barrier waits only for the members still there.
   * Peers learn of late joiners with `agent.refreshWorld()`. Same value on every worker.
   */
  minWorldSize?: number;
  /** Deadline for rendezvous and the default deadline of every call, in ms (default 60,000). */
  timeoutMs?: number;
  /** Largest gRPC message; larger payloads are streamed in chunks (default 4 MiB). */
  maxMessageBytes?: number;
  /** Chunk size for streamed payloads (default 1 MiB). */
  chunkBytes?: number;
  /**
   * Shared secret of the world (default: none, no authentication). When set, every gRPC call this
   * agent makes carries it (metadata `psrpc-auth`) and every call it serves must carry the same
   * one, or it is refused with UNAUTHENTICATED before anything runs. Printable ASCII, 1 to 1024
   * characters, no space at either end. The command layer passes it (`--auth-token`); this layer
   * never reads the environment.
   */
  authToken?: string;
  /**
   * TLS (src/rpc/tls.ts; default: none, plain TCP). When set, the agent's gRPC server, every gRPC
   * channel it opens and the bulk side channel's sockets use TLS with this certificate, key and
   * CA; every worker of a world needs TLS with certificates its peers' CA accepts, and each
   * certificate must name (subjectAltName) the host that agent advertises. The native bulk
   * transport and shared memory are not used under TLS (the JS side channel is). PEM contents, not
   * paths: the command layer reads the files (`--tls-cert`, `--tls-key`, `--tls-ca`).
   */
  tls?: TlsOptions;
  /**
   * Failure detection (src/rpc/heartbeat.ts): every `heartbeatMs` this agent sends a small ping on
   * each Exchange stream it has with another worker, in either direction (default 1000, at least 1).
   * 0: no heartbeats at all, no pings and no verdicts; workers that do judge will find this one
   * silent whenever it is idle, so one world should share one setting.
   */
  heartbeatMs?: number;
  /**
   * A worker this agent has a stream with (either direction) and has heard nothing from (no frame
   * of any kind: ping, request, response, bulk data) for `deadAfterMs` is lost (default 5000; at
   * least 2 x heartbeatMs): the calls in flight to it fail with UNAVAILABLE naming it, later calls
   * to it fail the same way at once, and `agent.onPeerLost` listeners run; anything heard from it
   * again ends that (`agent.onPeerRecovered`). Must exceed the longest synchronous stall (event
   * loop blocked) of any worker: a blocked worker sends no pings. Stalls of this agent's own loop
   * are discounted. 0 or Infinity: this agent never declares a peer lost (it still sends pings, so
   * its peers can judge it); with heartbeatMs 0 that is the default and the only choice.
   */
  deadAfterMs?: number;
  /** @internal Testing: the clock heartbeats run on (default: the system clock), so tests move time by hand. */
  clock?: Clock;
}

export interface ResolvedOptions extends Required<Omit<InitOptions, 'authToken' | 'advertise' | 'tls'>> {
  authToken: string | undefined;
  /** TLS settings and the credentials built from them; undefined: plain TCP. */
  tls: WorldTls | undefined;
  /** The advertised host, bracketed if IPv6; undefined: the listen host. */
  advertise: string | undefined;
  inlineBytes: number;
}

/** The gRPC metadata key that carries `authToken` on every call. */
export const AUTH_METADATA_KEY = 'psrpc-auth';
export const AUTH_TOKEN_MAX_CHARS = 1024;

/**
 * Checks an authToken. The messages say what is wrong with it, never what it is: the token is a
 * secret and error messages end up in logs.
 */
function checkAuthToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  const why = typeof token !== 'string' ? `expected a string, got ${token === null ? 'null' : typeof token}`
    : token.length === 0 ? 'expected a non-empty string (leave it unset for no authentication)'
    : token.length > AUTH_TOKEN_MAX_CHARS ? `expected at most ${AUTH_TOKEN_MAX_CHARS} characters, got ${token.length}`
    // gRPC metadata values are printable ASCII; HTTP/2 forbids whitespace at either end of a field value
    : !/^[\x20-\x7e]*$/.test(token) ? 'expected printable ASCII only (characters 0x20-0x7e)'
    : token.startsWith(' ') || token.endsWith(' ') ? 'expected no space at either end'
    : undefined;
  if (why) throw errors.invalidSecretOption('authToken', why);
  return token as string;
}

const HOSTPORT = /^(\[[0-9a-fA-F:]+\]|[^\s:]+):(\d{1,5})$/;

/** 0.0.0.0, or an all-zero IPv6 address with or without brackets ([::]). */
export function isWildcardHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1');
  return h === '0.0.0.0' || (isIPv6(h) && /^[0:]+$/.test(h));
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Checks `advertise`: returns the host as it goes into an address (IPv6 bracketed). */
function checkAdvertise(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw errors.invalidOption('advertise', value, 'expected a non-empty host name or IP address');
  const bare = value.replace(/^\[(.*)\]$/, '$1');
  if (bare !== value && !isIPv6(bare)) throw errors.invalidOption('advertise', value, 'brackets hold an IPv6 address only');
  if (isWildcardHost(bare)) throw errors.invalidOption('advertise', value, 'a wildcard address cannot be reached by peers: advertise the host they should connect to');
  if (isIPv6(bare)) return `[${bare}]`;
  if (bare.includes(':')) throw errors.invalidOption('advertise', value, 'expected a host without a port (the published port is the one the agent bound)');
  if (!isIPv4(bare) && !HOSTNAME.test(bare)) throw errors.invalidOption('advertise', value, 'expected a host name or IP address');
  return bare;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** heartbeatMs and deadAfterMs, resolved: deadAfterMs Infinity means "never declare a peer lost". */
function checkHeartbeat(beat: unknown, dead: unknown): { heartbeatMs: number; deadAfterMs: number } {
  const heartbeatMs = beat ?? 1000;
  if (typeof heartbeatMs !== 'number' || !(heartbeatMs === 0 || (heartbeatMs >= 1 && heartbeatMs <= MAX_TIMER_MS))) {
    throw errors.invalidOption('heartbeatMs', beat, `expected a number of ms in [1, ${MAX_TIMER_MS}], or 0 for no heartbeats`);
  }
  const given = dead ?? (heartbeatMs === 0 ? Infinity : 5000);
  if (typeof given !== 'number' || !(given >= 0) || (given > MAX_TIMER_MS && given !== Infinity)) {
    throw errors.invalidOption('deadAfterMs', dead, `expected a number of ms in [2 x heartbeatMs, ${MAX_TIMER_MS}], or 0 or Infinity to never declare a peer lost`);
  }
  const deadAfterMs = given === 0 ? Infinity : given;
  if (Number.isFinite(deadAfterMs)) {
    if (heartbeatMs === 0) throw errors.invalidOption('deadAfterMs', dead, 'needs heartbeats, and heartbeatMs is 0 (set heartbeatMs > 0, or leave deadAfterMs unset)');
    if (deadAfterMs < 2 * heartbeatMs) {
      throw errors.invalidOption('deadAfterMs', dead, `expected at least 2 x heartbeatMs = ${2 * heartbeatMs} ms: a peer must miss two heartbeats before it counts as lost`);
    }
  }
  return { heartbeatMs, deadAfterMs };
}

export function resolveOptions(o: InitOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw errors.invalidOption('options', o, 'expected an object');
  if (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 256) throw errors.invalidOption('name', o.name, 'expected a non-empty string');
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw errors.invalidOption('worldSize', o.worldSize, 'expected an integer >= 1');
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw errors.invalidOption('rank', o.rank, `expected an integer in [0, ${o.worldSize})`);
  if (typeof o.master !== 'string' || !HOSTPORT.test(o.master)) throw errors.invalidOption('master', o.master, 'expected host:port');
  const listen = o.listen ?? '127.0.0.1:0';
  if (typeof listen !== 'string' || !HOSTPORT.test(listen)) throw errors.invalidOption('listen', o.listen, 'expected host:port');
  const advertise = checkAdvertise(o.advertise);
  const isMaster = o.isMaster ?? o.rank === 0;
  const minWorldSize = o.minWorldSize ?? o.worldSize;
  if (!Number.isInteger(minWorldSize) || minWorldSize < 1 || minWorldSize > o.worldSize) throw errors.invalidOption('minWorldSize', o.minWorldSize, `expected an integer in [1, worldSize = ${o.worldSize}]`);
  // the master listens on `master`: that is the address whose host must not be a wildcard then
  const [bindOption, bound] = isMaster ? ['master', o.master] as const : ['listen', listen] as const;
  if (advertise === undefined && isWildcardHost(bound.slice(0, bound.lastIndexOf(':')))) {
    throw errors.invalidOption(bindOption, bound, 'listening on a wildcard address needs advertise (the host peers should connect to): peers cannot connect to a wildcard');
  }
  const timeoutMs = o.timeoutMs ?? 60_000;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw errors.invalidOption('timeoutMs', o.timeoutMs, 'expected a number > 0');
  const maxMessageBytes = o.maxMessageBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 64 * 1024 || maxMessageBytes > 2 ** 31 - 1) {
    throw errors.invalidOption('maxMessageBytes', o.maxMessageBytes, 'expected an integer in [65536, 2^31)');
  }
  const chunkBytes = o.chunkBytes ?? Math.min(1024 * 1024, maxMessageBytes - 4096);
  if (!Number.isInteger(chunkBytes) || chunkBytes < 4096 || chunkBytes > maxMessageBytes - 4096) {
    throw errors.invalidOption('chunkBytes', o.chunkBytes, `expected an integer in [4096, maxMessageBytes - 4096 = ${maxMessageBytes - 4096}]`);
  }
  const authToken = checkAuthToken(o.authToken);
  const tls = checkTls(o.tls);
  const { heartbeatMs, deadAfterMs } = checkHeartbeat(o.heartbeatMs, o.deadAfterMs);
  const clock = o.clock ?? systemClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function' || typeof clock.after !== 'function') {
    throw errors.invalidOption('clock', typeof clock, 'expected a Clock (now, after, every)');
  }
  return {
    name: o.name, rank: o.rank, worldSize: o.worldSize, master: o.master,
    isMaster, listen, advertise, timeoutMs, maxMessageBytes, chunkBytes, authToken, tls,
    heartbeatMs, deadAfterMs, clock, rejoin: o.rejoin === true, minWorldSize,
    // a batch may overshoot by one frame: two inline payloads plus headers must fit one message
    inlineBytes: Math.floor((maxMessageBytes - 8192) / 2),
  };
}
