// Public API of the RPC layer. The object API (`const agent = await init(...)`) supports several
// agents per process; the module-level functions below act on the default agent, the first one
// started with `initDefault` (torch.distributed.rpc's style: one agent per process).
import { Agent, init, type CallOptions, type RemoteFunction, type ShutdownOptions, type WorkerRef } from './agent.js';
import { errors } from './errors.js';
import type { InitOptions } from './options.js';
import type { RRef } from './rref.js';

export { Agent, init } from './agent.js';
export type { CallOptions, RemoteFunction, ShutdownOptions, WorkerRef } from './agent.js';
export type { InitOptions } from './options.js';
export type { WorkerInfo } from './peer.js';
export { RRef } from './rref.js';
export { RpcError, CodecError, Status } from './errors.js';
export { encode, decode, flatten } from './codec.js';
export type { CodecContext, Encoded } from './codec.js';
export { setTensorFactory, isTensorView, DTYPES } from './tensor-view.js';
export type { TensorView, TypedArray } from './tensor-view.js';

let defaultAgent: Agent | undefined;

function current(): Agent {
  if (!defaultAgent) throw errors.notRunning('(default)', 'not started');
  return defaultAgent;
}

/** Starts this process's default agent and joins the world. */
export async function initDefault(options: InitOptions): Promise<Agent> {
  if (defaultAgent) throw errors.invalidOption('init', options.name, `the default agent "${defaultAgent.name}" is already running`);
  const agent = await init(options);
  defaultAgent = agent;
  return agent;
}

export const register = (name: string, fn: RemoteFunction) => current().register(name, fn);
export const call = <R = unknown>(to: WorkerRef, fn: string, args?: unknown[], o?: CallOptions) => current().call<R>(to, fn, args, o);
export const callAsync = <R = unknown>(to: WorkerRef, fn: string, args?: unknown[], o?: CallOptions) => current().callAsync<R>(to, fn, args, o);
export const remote = <T = unknown>(to: WorkerRef, fn: string, args?: unknown[]): RRef<T> => current().remote<T>(to, fn, args);
export const workerInfo = (name?: WorkerRef) => current().workerInfo(name);
export const workers = () => current().workers();

export async function shutdown(options?: ShutdownOptions): Promise<void> {
  const a = current();
  try {
    await a.shutdown(options);
  } finally {
    if (defaultAgent === a) defaultAgent = undefined;
  }
}
