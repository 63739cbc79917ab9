// Every failure the RPC layer reports, built in one place.
//
// An RpcError carries a gRPC status code (the protocol's own vocabulary), the name of the worker
// where it happened and, when it wraps something, the cause. Errors thrown by a remote handler are
// carried back over the wire as (code, worker, message) and rebuilt here, so a caller sees the same
// type whether the failure was local or remote.
import { status as Status } from '@grpc/grpc-js';

export { Status };

/** An RPC failure: `code` is a gRPC status, `worker` the worker where it happened. */
export class RpcError extends Error {
  override name = 'RpcError';
  constructor(
    /** gRPC status code (see `Status`). */
    readonly code: Status,
    /** Name of the worker where the failure happened (the remote worker for remote errors). */
    readonly worker: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The status name, e.g. 'NOT_FOUND'. */
  get codeName(): string {
    return Status[this.code] ?? `STATUS_${this.code}`;
  }
}

/** Bytes that cannot be decoded into a payload (truncated, garbage, or a bad header). */
export class CodecError extends RpcError {
  override name = 'CodecError';
}

/** Wire form of an error that crosses from a handler back to its caller. */
export interface WireError {
  code: number;
  worker: string;
  message: string;
}

export function toWireError(err: unknown, worker: string): WireError {
  if (err instanceof RpcError) return { code: err.code, worker: err.worker || worker, message: err.message };
  const message = err instanceof Error ? `${err.name}: ${err.message}` : `non-error thrown: ${String(err)}`;
  return { code: Status.UNKNOWN, worker, message };
}

export function fromWireError(w: WireError): RpcError {
  return new RpcError(w.code, w.worker, w.message);
}

// ---- factories: one per failure, so messages stay uniform ----

export const errors = {
  invalidOption: (option: string, value: unknown, why: string) =>
    // JSON has no Infinity or NaN (it would print null): numbers are shown as numbers
    new RpcError(Status.INVALID_ARGUMENT, '', `invalid option ${option}=${typeof value === 'number' ? String(value) : JSON.stringify(value)}: ${why}`),
  /** A bad secret (authToken): the message names the option and what is wrong, never the value. */
  invalidSecretOption: (option: string, why: string) =>
    new RpcError(Status.INVALID_ARGUMENT, '', `invalid option ${option} (value not shown): ${why}`),
  /** The callee's answer to a call without the world's auth token (sent as the call's gRPC status). */
  authRefused: (self: string) =>
    new RpcError(Status.UNAUTHENTICATED, self, `worker "${self}": call refused: missing or wrong auth token`),
  /** The caller's view of an authRefused: `worker` is the peer's name, `by` names it in words. */
  authRejected: (self: string, worker: string, by: string, what: string) =>
    new RpcError(Status.UNAUTHENTICATED, worker,
      `UNAUTHENTICATED: ${what} from "${self}" refused by ${by}: missing or wrong auth token (every worker of a world needs the same authToken)`),
  unknownWorker: (self: string, name: string) =>
    new RpcError(Status.NOT_FOUND, self, `unknown worker "${name}" (not in this world)`),
  unknownFunction: (self: string, name: string) =>
    new RpcError(Status.NOT_FOUND, self, `function "${name}" is not registered on worker "${self}"`),
  duplicateFunction: (self: string, name: string) =>
    new RpcError(Status.ALREADY_EXISTS, self, `function "${name}" is already registered on worker "${self}"`),
  reservedName: (self: string, name: string) =>
    new RpcError(Status.INVALID_ARGUMENT, self, `function name "${name}" is reserved (prefix "__psrpc.")`),
  timeout: (self: string, to: string, what: string, ms: number) =>
    new RpcError(Status.DEADLINE_EXCEEDED, to, `${what} from "${self}" to "${to}" timed out after ${ms} ms`),
  peerLost: (self: string, to: string, detail: string) =>
    new RpcError(Status.UNAVAILABLE, to, `connection from "${self}" to worker "${to}" lost: ${detail}`),
  /** Heartbeats found `to` silent (heartbeat.ts): a call in flight to it, or made while it stays lost, fails so. */
  peerSilent: (self: string, to: string, silentMs: number, fn: string) =>
    new RpcError(Status.UNAVAILABLE, to,
      `worker "${to}" silent for ${(silentMs / 1000).toFixed(1)} s (no heartbeat): call "${fn}" from "${self}" failed`),
  notRunning: (self: string, state: string) =>
    new RpcError(Status.FAILED_PRECONDITION, self, `agent "${self}" is ${state}; start it with init() first`),
  shutDown: (self: string) =>
    new RpcError(Status.CANCELLED, self, `agent "${self}" was shut down`),
  masterUnreachable: (self: string, master: string, ms: number, detail: string) =>
    new RpcError(Status.UNAVAILABLE, self, `master ${master} unreachable from "${self}" within ${ms} ms: ${detail}`),
  worldIncomplete: (self: string, joined: number, worldSize: number, missing: number[], ms: number) =>
    new RpcError(Status.DEADLINE_EXCEEDED, self,
      `world incomplete after ${ms} ms: ${joined} of ${worldSize} workers joined (missing ranks: ${missing.join(', ')})`),
  duplicateWorker: (self: string, what: 'name' | 'rank', value: string | number, holder: string) =>
    new RpcError(Status.ALREADY_EXISTS, self, `duplicate worker ${what} ${JSON.stringify(value)}: already held by "${holder}"`),
  worldMismatch: (self: string, field: string, theirs: unknown, ours: unknown) =>
    new RpcError(Status.INVALID_ARGUMENT, self, `${field} mismatch: joiner says ${JSON.stringify(theirs)}, master has ${JSON.stringify(ours)}`),
  codec: (self: string, what: string) =>
    new CodecError(Status.DATA_LOSS, self, `cannot decode payload: ${what}`),
  unsupportedValue: (self: string, path: string, what: string) =>
    new CodecError(Status.INVALID_ARGUMENT, self, `cannot encode value at ${path}: ${what}`),
  notOwner: (self: string, owner: string, rrefId: string) =>
    new RpcError(Status.FAILED_PRECONDITION, self, `localValue() needs the owner: RRef ${rrefId} is owned by "${owner}", not "${self}"`),
  rrefNotReady: (self: string, rrefId: string) =>
    new RpcError(Status.FAILED_PRECONDITION, self, `RRef ${rrefId}'s value is not created yet on "${self}"; await toHere() instead`),
  unknownRRef: (self: string, rrefId: string) =>
    new RpcError(Status.NOT_FOUND, self, `RRef ${rrefId} is not known on its owner "${self}" (released or never created)`),
  rrefReleased: (self: string, rrefId: string) =>
    new RpcError(Status.FAILED_PRECONDITION, self, `RRef ${rrefId} was released on "${self}" and cannot be used`),
  noSuchMethod: (self: string, rrefId: string, method: string) =>
    new RpcError(Status.NOT_FOUND, self, `RRef ${rrefId}'s value has no callable method "${method}" on "${self}"`),
  barrier: (self: string, detail: string) =>
    new RpcError(Status.DEADLINE_EXCEEDED, self, `shutdown barrier failed on "${self}": ${detail}`),
};
