// The parameter server's vocabulary: its options, the RPC function names it registers, and the
// shapes of what those functions take and answer. Trainers (client.ts) and the server share it.
import type { Clock } from '../rpc/index.js';
import type { OptimizerSpec, WireDType } from '../tensor/index.js';
import type { LoadedCheckpoint, ShardSnapshot, WriteResult } from './checkpoint.js';
import type { ParameterSpec, Placement } from './shard-plan.js';
import type { BatchQueueStats } from './batch-queue.js';

/** Where a server's checkpoints go (a CheckpointStore; tests pass a double). */
export interface CheckpointSink {
  writeShard(snap: ShardSnapshot): Promise<WriteResult>;
}

export const CONSISTENCY_MODELS = ['sync', 'async', 'ssp'] as const;
export type ConsistencyModel = (typeof CONSISTENCY_MODELS)[number];

/** The server-side optimizer: the tensor layer's one optimizer description. */
export type ServerOptimizerOptions = OptimizerSpec;

export interface ParameterServerOptions {
  /** This server's name (its agent's name): in errors and as the metrics' `server` label. */
  name: string;
  /** This server's index in the shard plan, in [0, shards). */
  shard: number;
  /** Number of servers sharing the parameters. */
  shards: number;
  /** Trainers expected to join; `join` answers once this many have joined. */
  trainers: number;
  consistency: ConsistencyModel;
  /** ssp: steps a trainer may run ahead of the slowest live one (default 2). */
  staleness?: number;
  optimizer: ServerOptimizerOptions;
  /**
   * Custom shard placement (shard-plan.ts), the same on every server and trainer. A promise: joins
   * wait for it (a process that learns the servers' names at its rendezvous settles it then).
   * Default: equal ranges.
   */
  placement?: Placement | Promise<Placement | undefined>;
  /** How long `join` waits for the other trainers, in ms (default 60,000). */
  joinTimeoutMs?: number;
  /**
   * A live trainer silent this long (since its join or its last call) while others wait on it is
   * dropped, in ms (default 60,000).
   */
  liveTimeoutMs?: number;
  /**
   * A trainer whose agent is lost (heartbeats) is waited for this long before rounds go on without
   * it, in ms (default 0: dropped as soon as anyone waits on it): time for a restarted process to
   * rejoin under the same name (psrun --max-restarts, --restart-timeout). A trainer that joins
   * again is taken back where it stopped (see ParameterServer.join).
   */
  restartTimeoutMs?: number;
  /**
   * Elastic jobs (`trainers` is then the minimum): joins are answered as soon as this many trainers
   * have joined, or `lastCallMs` after the `trainers`-th join, whichever comes first (torchrun's last
   * call); trainers joining after that are answered at once. Default: `trainers`.
   */
  expectedTrainers?: number;
  lastCallMs?: number;
  /**
   * An elastic job (--min-trainers): its trainers take batches from the queue of the first server
   * (ps.batch). Only a checkpoint of an elastic job resumes one, and the other way round. Default false.
   */
  elastic?: boolean;
  /**
   * Checkpoints: a push carrying a checkpoint number makes the server copy its shard and optimizer
   * state when that push's step is taken (sync: the round's) and write it here, off the hot path.
   */
  checkpoints?: CheckpointSink;
  /** A checkpoint to start from: the first join's layout must match it; the shard, its optimizer state and version come from it. */
  restore?: LoadedCheckpoint;
  /** Where checkpoint lines are said (default stderr). */
  log?: (line: string) => void;
  /** Time source for the join deadline and the liveness watchdog (default: the system clock; tests pass a ManualClock). */
  clock?: Clock;
}

/**
 * A gradient push: the whole shard as one array, or one array per parameter slice by name. A server
 * joined in a 16-bit precision takes the whole shard as one Uint16Array of that format.
 */
export type Gradients = Float32Array | Uint16Array | Record<string, Float32Array>;

/**
 * What gradients and parameters travel as between a trainer and a server, fixed by the join that
 * initialised the server (every later join must name the same). The server's weights and optimizer
 * state stay fp32 whatever it is.
 */
export type WirePrecision = WireDType;
export const WIRE_PRECISIONS: readonly WirePrecision[] = ['float32', 'bfloat16', 'float16'];

export interface PullReply {
  /** Steps this shard has taken. */
  version: number;
  /**
   * The shard's values (a view of the server's buffer: consume it before the next step): fp32, or a
   * Uint16Array in the join's 16-bit precision (the fp32 master rounded once per version).
   */
  values: Float32Array | Uint16Array;
  /** ssp/async: the caller's clock (its pushes applied); sync: the round. */
  clock: number;
  /**
   * Elastic jobs, a pushPull that asked for it: the caller's next batch (null: the job's batches are
   * all done), handed out with the reply so that a step costs no round trip more. Absent when none
   * could be handed out at once (ask with ps.batch, which waits).
   */
  batch?: number | null;
}

export interface PushReply {
  version: number;
  clock: number;
}

export interface ServerStats {
  name: string;
  version: number;
  pushes: number;
  pulls: number;
  steps: number;
  live: string[];
  joined: number;
  left: number;
  dropped: string[];
  /** Largest (own clock - slowest live clock) seen when a push was applied (ssp/async). */
  maxLead: number;
  /** Elastic jobs, on the server that hands out the batches (the first). */
  batches?: BatchQueueStats;
}

/** The RPC names a server registers. */
export const PS_FUNCTIONS = {
  join: 'ps.join',
  pull: 'ps.pull',
  push: 'ps.push',
  pushPull: 'ps.pushPull',
  leave: 'ps.leave',
  layout: 'ps.layout',
  placement: 'ps.placement',
  stats: 'ps.stats',
  checkpoint: 'ps.checkpoint',
  skip: 'ps.skip',
  batch: 'ps.batch',
} as const;

export type { ParameterSpec };
