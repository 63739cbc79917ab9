// Agent options: defaults in one place, validated once at init().
import { errors } from './errors.js';

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
}

export interface ResolvedOptions extends Required<Omit<InitOptions, 'authToken'>> {
  authToken: string | undefined;
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

export function resolveOptions(o: InitOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw errors.invalidOption('options', o, 'expected an object');
  if (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 256) throw errors.invalidOption('name', o.name, 'expected a non-empty string');
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw errors.invalidOption('worldSize', o.worldSize, 'expected an integer >= 1');
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw errors.invalidOption('rank', o.rank, `expected an integer in [0, ${o.worldSize})`);
  if (typeof o.master !== 'string' || !HOSTPORT.test(o.master)) throw errors.invalidOption('master', o.master, 'expected host:port');
  const listen = o.listen ?? '127.0.0.1:0';
  if (typeof listen !== 'string' || !HOSTPORT.test(listen)) throw errors.invalidOption('listen', o.listen, 'expected host:port');
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
  return {
    name: o.name, rank: o.rank, worldSize: o.worldSize, master: o.master,
    isMaster: o.isMaster ?? o.rank === 0, listen, timeoutMs, maxMessageBytes, chunkBytes, authToken,
    // a batch may overshoot by one frame: two inline payloads plus headers must fit one message
    inlineBytes: Math.floor((maxMessageBytes - 8192) / 2),
  };
}
