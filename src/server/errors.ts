// Every failure the parameter server reports, built in one place.
//
// They are RpcErrors (a gRPC status plus the server's name), so a trainer sees the same code and
// message whether the check failed in its own process or on the server across the wire.
import { RpcError, Status } from '../rpc/index.js';

export const errors = {
  badLayout: (where: string, why: string) =>
    new RpcError(Status.INVALID_ARGUMENT, '', `${where}: bad parameter layout: ${why}`),
  badOption: (server: string, option: string, value: unknown, why: string) =>
    new RpcError(Status.INVALID_ARGUMENT, server, `parameter server "${server}": invalid option ${option}=${JSON.stringify(value)}: ${why}`),
  layoutMismatch: (server: string, trainer: string, initialiser: string, why: string) =>
    new RpcError(Status.FAILED_PRECONDITION, server, `parameter server "${server}": layout differs from the one trainer "${initialiser}" initialised it with (trainer "${trainer}" joined with another model): ${why}`),
  unknownParameter: (server: string, name: string, held: string[]) =>
    new RpcError(Status.NOT_FOUND, server, `parameter '${name}' is not held by server "${server}" (it holds: ${held.join(', ') || 'nothing'})`),
  missingParameter: (server: string, name: string) =>
    new RpcError(Status.INVALID_ARGUMENT, server, `push to server "${server}" lacks a gradient for parameter '${name}'`),
  wrongLength: (server: string, what: string, got: number, expected: number) =>
    new RpcError(Status.INVALID_ARGUMENT, server, `${what} has ${got} elements; server "${server}" expects ${expected}`),
  wrongType: (server: string, what: string, got: unknown, expected: string) =>
    new RpcError(Status.INVALID_ARGUMENT, server, `${what} is ${describe(got)}; server "${server}" expects ${expected}`),
  badTrainer: (server: string, trainer: unknown) =>
    new RpcError(Status.INVALID_ARGUMENT, server, `trainer name ${JSON.stringify(trainer)} is not a non-empty string (server "${server}")`),
  notJoined: (server: string, trainer: string) =>
    new RpcError(Status.FAILED_PRECONDITION, server, `trainer "${trainer}" has not joined server "${server}" (call ps.join first) or has left`),
  notInitialised: (server: string) =>
    new RpcError(Status.FAILED_PRECONDITION, server, `parameter server "${server}" holds no parameters yet (a trainer's ps.join initialises it)`),
  doublePush: (server: string, trainer: string, round: number) =>
    new RpcError(Status.FAILED_PRECONDITION, server, `trainer "${trainer}" pushed twice in sync round ${round} of server "${server}"`),
  joinTimeout: (server: string, joined: number, expected: number, ms: number) =>
    new RpcError(Status.DEADLINE_EXCEEDED, server, `server "${server}": only ${joined} of ${expected} trainers joined within ${ms} ms`),
  modelMismatch: (server: string, trainer: string, why: string) =>
    new RpcError(Status.FAILED_PRECONDITION, server, `remote-forward host "${server}": the model of trainer "${trainer}" differs from the one it hosts: ${why}`),
  closed: (server: string) =>
    new RpcError(Status.CANCELLED, server, `parameter server "${server}" is closed`),
};

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (ArrayBuffer.isView(x)) return x.constructor.name;
  return typeof x;
}
