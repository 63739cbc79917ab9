// The `partitioned` strategy: every worker is also the server of 1/N of the parameters and of
// their optimizer state. Each step a worker pushes each gradient shard to its owner (itself
// included), each owner averages the N shards it received and steps, and everyone pulls the
// updated shards back: synchronous data parallelism with a sharded optimizer (ZeRO-1 style), built
// from the same ParameterServer and PsClient as the centralized strategy. With --precision bf16|fp16
// the calls to a worker's own shard stay in the process but go through the same 16-bit conversions
// (and fp16 loss scaling) as the others, so every shard sees the same arithmetic.
import type { Agent } from '../rpc/index.js';
import { openCheckpoints, ParameterServer, type ParameterServerOptions } from '../server/index.js';
import { trainCentralized, type TrainedWorker, type TrainerContext } from './centralized.js';
import type { TrainOptions } from './options.js';
import { optimizerSpec } from './setup.js';


/**
 * Creates worker `rank`'s shard server (sync, N = `workers` trainers) and registers it on `agent`.
 * Do it before the world's rendezvous completes, so no worker can call it before it exists.
 */
export function partitionServer(agent: Agent, opts: TrainOptions, rank: number, workers: number,
  extra: Pick<ParameterServerOptions, 'liveTimeoutMs' | 'checkpoints' | 'restore'> = {}): ParameterServer {
  return new ParameterServer({
    name: agent.name,
    shard: rank,
    shards: workers,
    trainers: workers,
    consistency: 'sync',
    optimizer: optimizerSpec(opts),
    ...extra,
  }).register(agent);
}

/** --checkpoint-dir: the shard server's checkpoints, and with --resume the one it starts from (as a ps-server's). */
export async function partitionCheckpoints(opts: TrainOptions, name: string, log = (line: string) => process.stderr.write(line + '\n')): Promise<Pick<ParameterServerOptions, 'checkpoints' | 'restore'>> {
  if (opts.checkpointDir === undefined) return {};
  const { store, restore } = await openCheckpoints(opts.checkpointDir, { keep: opts.checkpointKeep, resume: opts.resume, name, log });
  return { checkpoints: store, ...(restore ? { restore } : {}) };
}

export interface PartitionedContext extends Omit<TrainerContext, 'servers'> {
  /** Every worker's name, in rank order: worker i owns shard i. */
  workerNames: readonly string[];
}

/** Trains as worker `ctx.rank` of `ctx.trainers`; its own shard server must be registered already. */
export function trainPartitioned(opts: TrainOptions, ctx: PartitionedContext): Promise<TrainedWorker> {
  if (ctx.workerNames.length !== ctx.trainers) {
    throw new RangeError(`partitioned: ${ctx.workerNames.length} worker names for ${ctx.trainers} workers`);
  }
  return trainCentralized(opts, { ...ctx, servers: ctx.workerNames });
}
