// Public API of the RPC layer. The object API (`const agent = await init(...)`) supports several
// agents per process; the module-level functions below act on the default agent, the first one
// started with `initDefault` (torch.distributed.rpc's style: one agent per process).
import { Agent, init, type CallOptions, type RemoteFunction, type ShutdownOptions, type WorkerRef } from './agent.js';
import { errors } from './errors.js';
import type { InitOptions } from './options.js';
import type { RRef } from './rref.js';
import type { DistAutogradContext } from './dist-autograd.js';
import { DistributedOptimizer, type OptimizerClass } from './dist-optimizer.js';
import type { Tensor } from '../tensor/index.js';

export { Agent, init } from './agent.js';
export type { CallOptions, RemoteFunction, ShutdownOptions, WorkerRef } from './agent.js';
export type { InitOptions } from './options.js';
export type { TlsOptions } from './tls.js';
export type { WorkerInfo } from './peer.js';
export { RRef } from './rref.js';
export { releaseReceived } from './native-link.js';
export type { RemoteMethods, RemoteRefMethods } from './rref.js';
export { DistAutograd, DistAutogradContext } from './dist-autograd.js';
export { DistributedOptimizer, OptimizerHost } from './dist-optimizer.js';
export type { OptimizerClass, OptimizerFactory } from './dist-optimizer.js';
export { RpcError, CodecError, Status } from './errors.js';
export { systemClock, ManualClock } from './clock.js';
export type { Clock, ClockTimer } from './clock.js';
export { Liveness } from './liveness.js';
export { FaultInjector } from './faulty.js';
export type { HeldMessages, InboundRule, MessageMatch } from './faulty.js';
export { Heartbeat } from './heartbeat.js';
export type { HeartbeatOptions, PingSink } from './heartbeat.js';
export type { LivenessOptions } from './liveness.js';
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

/** Distributed autograd over the default agent (see Agent.distAutograd). */
export const distAutograd = {
  context: <T>(fn: (ctx: DistAutogradContext) => T | Promise<T>) => current().distAutograd.context(fn),
  newContext: () => current().distAutograd.newContext(),
  current: () => current().distAutograd.current(),
  backward: (ctx: DistAutogradContext | number, roots: readonly Tensor[], grads?: readonly (Tensor | Float32Array | null | undefined)[]) =>
    current().distAutograd.backward(ctx, roots, grads),
  getGradients: (ctx: DistAutogradContext | number) => current().distAutograd.getGradients(ctx),
};

/** A DistributedOptimizer over the default agent. */
export const distributedOptimizer = (optimizer: string | OptimizerClass, paramRRefs: readonly RRef<Tensor>[], options?: Record<string, unknown>) =>
  new DistributedOptimizer(current(), optimizer, paramRRefs, options);

export async function shutdown(options?: ShutdownOptions): Promise<void> {
  const a = current();
  try {
    await a.shutdown(options);
  } finally {
    if (defaultAgent === a) defaultAgent = undefined;
  }
}
