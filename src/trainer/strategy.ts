// What a strategy declares to the rest of psrpc: how its processes make up a world (one process,
// servers and trainers, or peers), which consistency models it accepts and the line refusing the
// others, what its result reports, and the functions that run it. The commands, the process roles
// (src/cli/process.ts), resolveWorld and psrun's topology read these declarations instead of
// comparing strategy names, so a new strategy is one module registered in the table
// (src/trainer/strategies/index.ts).
//
// A declaration is light: it imports its implementation on demand inside its run functions, so
// reading the table (every command does) loads no RPC, gRPC or worker-thread code.
import type { Dataset } from '../data/index.js';
import type { Module } from '../tensor/index.js';
import type { Agent } from '../rpc/index.js';
import type { TrainerReport } from './centralized.js';
import type { CurvePoint } from './curve.js';
import type { Classifier } from './evaluate.js';
import type { ModelContext, ResolvedModel } from './model.js';
import type { Consistency, TrainOptions } from './options.js';
import type { TrainResult } from './result.js';
import type { WorldPlace } from './world.js';

/**
 * Every consistency model, for the strategies that accept them all (listed here rather than read
 * from options.ts's CONSISTENCIES: options.ts imports the table, which imports the declarations).
 */
export const ANY_CONSISTENCY: readonly Consistency[] = ['sync', 'async', 'ssp'];

/** What every strategy declares. */
interface StrategyBase {
  /** The `--strategy` value. */
  name: string;
  /** One line saying what it does, for docs and listings. */
  description: string;
  /**
   * The consistency models it trains under. The models are the parameter servers' policies; the
   * one-process strategies have no servers and accept (and ignore) every one.
   */
  consistencies: readonly Consistency[];
  /**
   * The one line refusing a consistency model outside `consistencies` (psrun, ps-server and
   * trainer print it and exit 1 rather than train something else than what was asked).
   */
  refusal?(consistency: string): string;
  /** Why these options cannot run under this strategy, or null: checked by resolveOptions before anything starts. */
  check?(opts: TrainOptions): string | null;
  /**
   * Why this model cannot run under this strategy with these options, or null (pipeline: the
   * model cannot be cut into the stages asked for). psrun checks it before any process starts.
   */
  checkModel?(model: Module, ctx: ModelContext, opts: TrainOptions): Promise<string | null>;
  /** It writes checkpoints (--checkpoint-dir) and resumes from them (--resume). */
  checkpoints?: boolean;
  /**
   * psrun --max-restarts restarts a trainer that died alone, while the others wait for it: its
   * servers take the restarted process back where the old one stopped. Any other failure restarts
   * the whole job.
   */
  restartsTrainersAlone?: boolean;
  /** Its trainers may join and leave mid-run (--min-trainers, psrun --trainers MIN:MAX): its servers hand out the batches. */
  elastic?: boolean;
  /** The consistency model its result reports: what the run did (null: no servers). */
  resultConsistency(opts: TrainOptions): Consistency | null;
}

/** A strategy that trains in one process (`trainer --strategy NAME`), with no ranks. */
export interface SingleProcessStrategy extends StrategyBase {
  world: 'single';
  run(opts: TrainOptions): Promise<TrainResult>;
}

/**
 * A world whose ranks [0, servers) are `ps-server` processes and the others `trainer`s. What a
 * server rank hosts is one of the server layer's hosts: a `ParameterServer` shard of the flat
 * parameters, or a `RemoteModelHost` serving the one shared model.
 */
export interface ServersStrategy extends StrategyBase {
  world: 'servers';
  serverRole: 'shard' | 'model';
  /** The exact number of servers it needs, and why (said when another number is given). */
  fixedServers?: { count: number; reason: string };
  /** One trainer rank's training. */
  train(opts: TrainOptions, ctx: WorldTrainerContext): Promise<WorldTraining>;
}

/** A world of trainers only: every rank is a peer `trainer`, there are no separate servers. */
export interface PeersStrategy extends StrategyBase {
  world: 'peers';
  /** Why there are no separate servers, as psrun says it when given some. */
  serverless: string;
  /**
   * What each peer hosts for the others (partitioned: its shard server), started before the
   * world's rendezvous completes so no peer can call it before it exists.
   */
  host?: {
    /** What the peers serve, as ps-server says it ("partitioned workers serve ..."). */
    serves: string;
    start(agent: Agent, opts: TrainOptions, place: WorldPlace): Promise<{ close(): Promise<void> }>;
  };
  /**
   * The number of peers these options need, and the flags that say it (pipeline: stages x
   * replicas); psrun starts that many by default and refuses another count. Absent: any number.
   */
  peers?(opts: TrainOptions): { count: number; because: string };
  /**
   * Which share of the training data peer `index` of `peers` reads (a dataset file is read by
   * share; the sampler partitions likewise). Default: its own, `{ rank: index, worldSize: peers }`;
   * pipeline: the stages of one pipeline read the same share.
   */
  dataShard?(index: number, peers: number, opts: TrainOptions): { rank: number; worldSize: number };
  /** One peer's training. */
  train(opts: TrainOptions, ctx: WorldTrainerContext): Promise<WorldTraining>;
}

export type StrategySpec = SingleProcessStrategy | ServersStrategy | PeersStrategy;
/** A strategy that runs as several processes with ranks (psrun, ps-server, trainer --rank). */
export type WorldStrategy = ServersStrategy | PeersStrategy;

/** What the trainer process role hands a world strategy's `train`, after the rendezvous. */
export interface WorldTrainerContext {
  agent: Agent;
  /** This process's place; the names are the world's (custom names included). */
  place: WorldPlace;
  /** Rank among the trainers (`place.index`). */
  rank: number;
  trainers: number;
  train: Dataset;
  /** Set when `train` is this trainer's share only (a dataset file read by rank): samples per epoch (setup.ts trainerSampler). */
  share?: number;
  /** The first trainer only: the test split, for the accuracy curve (--eval-every). */
  test?: Dataset;
  /**
   * Leave the servers when training is done: every trainer but the first, which leaves in
   * `finish` once it has read the final model.
   */
  leave: boolean;
}

/** One trainer's finished training, as the trainer process role reports it. */
export interface WorldTraining {
  /** This trainer's figures, the answer to the first trainer's `trainer.report` call. */
  report: TrainerReport;
  /** The accuracy curve (recorded by the first trainer). */
  curve?: CurvePoint[];
  /** The model module trained (its name and metric) and the model's parameter count. */
  resolved: ResolvedModel;
  parameters: number;
  /** Strategy-specific figures for the job's result, from every trainer's report (the first trainer's call). */
  extras?(reports: readonly TrainerReport[]): Record<string, unknown>;
  /**
   * The first trainer, once every report is in: reads the final model from wherever it lives
   * and leaves the world, so the servers stop after this last read.
   */
  finish(): Promise<Classifier>;
}
