// Training options: one typed interface, the defaults in one place, validated once at the edge.
//
// The command-line flags (ARCHITECTURE.md's contract) map one to one onto `TrainOptions`; the API
// entry points take the same object, so a script and a command line train the same way.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DATASET_NAMES, parseDatasetSpec, type DatasetName } from '../data/index.js';
import type { ModelRef } from './model.js';
// the pipeline's vocabulary (pure, no RPC): its schedules and balances are flag choices
import { BALANCES, SCHEDULES, type Balance, type ScheduleName } from '../pipeline/schedule-names.js';

// the strategies' names and their consistency refusals come from the table of strategies
import { checkpointConflict, elasticConflict, findStrategy, STRATEGIES, type Strategy } from './strategies/index.js';

export { checkpointConflict, consistencyConflict, elasticConflict, STRATEGIES, type Strategy } from './strategies/index.js';
export const CONSISTENCIES = ['sync', 'async', 'ssp'] as const;
export type Consistency = (typeof CONSISTENCIES)[number];
/** The built-in datasets; `--dataset` also takes idx:FOLDER, file:PATH and dataset modules (docs/DATA.md). */
export const DATASETS = DATASET_NAMES;
export type { DatasetName };
export const DEVICES = ['cpu', 'cuda', 'auto'] as const;
export type DeviceFlag = (typeof DEVICES)[number];
export const OPTIMIZERS = ['sgd', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
/** Number formats on the wire (collectives, parameter-server push and pull); master weights and optimizer state stay fp32. */
export const PRECISIONS = ['fp32', 'bf16', 'fp16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface TrainOptions {
  /** How the model is trained: one process, with servers, or Hogwild threads. */
  strategy: Strategy;
  /** Consistency model of the strategies with servers. */
  consistency: Consistency;
  /** ssp only: how many steps a trainer may run ahead of the slowest one. */
  staleness: number;
  /** A dataset spec: a built-in name (fashion-mnist, mnist, synthetic), idx:FOLDER, file:PATH or a dataset module's path. */
  dataset: string;
  /**
   * The model (src/trainer/model.ts): a preset name (`mlp`), the path or URL of a module exporting
   * `createModel(ctx)`, or (API only, strategies that build the model in this process) such a module object.
   */
  model: ModelRef;
  /** Handed to the model's factory as `ctx.options` (`--model-options` JSON; it must survive JSON / structured cloning). */
  modelOptions: Record<string, unknown>;
  /** Width of the hidden layers of the mlp preset. */
  hidden: number;
  /** Hidden layers of the mlp preset (2: 784-H-H-10). */
  depth: number;
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  optimizer: OptimizerName;
  seed: number;
  device: DeviceFlag;
  /** Train on the first N samples of the training split only (0: all of them). */
  trainSamples: number;
  /** Evaluate on the first N samples of the test split only (0: all of them). */
  testSamples: number;
  /** Hogwild worker threads. */
  workers: number;
  /** Where to write the result object, if anywhere. */
  json?: string;
  /** 'auto': a bar on a terminal, periodic lines otherwise; 'none': only the final line. */
  progress: 'auto' | 'bar' | 'lines' | 'none';
  /** Seconds between two points of the accuracy-over-time curve (0: no curve). */
  evalEvery: number;
  /** Test samples each curve point is evaluated on (a fixed slice: the first N of the test split). */
  evalSamples: number;
  /**
   * Strategies with servers (one process per rank): this process's worker name. Default: `ps<rank>`
   * for the server ranks [0, servers), `trainer<rank - servers>` for the others.
   */
  name?: string;
  /** This process's rank in [0, worldSize) (default: env RANK). */
  rank?: number;
  /** Processes in the world, servers and trainers together (default: env WORLD_SIZE). */
  worldSize?: number;
  /** host:port of the rendezvous, hosted by rank 0 (default: env MASTER_ADDR:MASTER_PORT). */
  master?: string;
  /** host:port this process's agent listens on (default: env PSRPC_LISTEN, else 127.0.0.1:0; rank 0 listens on master). */
  listen?: string;
  /** The host peers connect to this process at (default: env PSRPC_ADVERTISE, else the listen host); needed with a wildcard listen. */
  advertise?: string;
  /**
   * centralized: how many of the world's ranks are parameter servers; ranks [0, servers) are
   * servers (ps0..), the rest trainers (trainer0..). partitioned: ignored, every rank is a worker.
   */
  servers: number;
  /**
   * What gradients and parameters travel as between processes: fp32, or bf16 / fp16 (half the
   * bytes; sums accumulate in fp32, master weights and optimizer state stay fp32; fp16 trains with
   * dynamic loss scaling). Collectives (ddp, zero, fsdp) and the parameter servers' push and pull.
   */
  precision: Precision;
  /** ddp: the cap of a gradient bucket in KiB (the first bucket is at most 1 MiB; PyTorch's bucket_cap_mb is 25). */
  bucketKb: number;
  /** ddp, zero, fsdp: batches whose gradients are summed locally before one exchange (PyTorch's no_sync). */
  gradAccum: number;
  /** ddp: parameters that get no gradient in a step count as zero instead of failing the step. */
  findUnusedParameters: boolean;
  /** zero: 1 shards the optimizer state; 2 also the gradients. */
  zeroStage: number;
  /** fsdp: free a unit's gathered parameters after its forward (and gather them again for its backward). */
  reshardAfterForward: boolean;
  /** Seconds a collective op waits for the other ranks before it fails naming the missing ones. */
  collectiveTimeout: number;
  /** pipeline: stages (processes per pipeline), each a contiguous run of the model's Sequential children. */
  stages: number;
  /** pipeline: micro-batches per batch (a batch of N is cut into M parts of N / M samples, the first N % M one larger). */
  microBatches: number;
  /** pipeline: the order of each stage's forwards and backwards. */
  schedule: ScheduleName;
  /** pipeline: pipelines side by side, each stage's gradients all-reduced across them (pipeline x data parallelism). */
  replicas: number;
  /** pipeline: what the automatic cut balances across stages. */
  balance: Balance;
  /** pipeline: the cut by hand, the child index at which each stage after the first starts (overrides balance). */
  split?: number[];
  /** pipeline: run each stage's forward again during backward instead of keeping its activations. */
  recompute: boolean;
  /** Where checkpoints are written (and read with `resume`); unset: none (docs/FAULTS.md). */
  checkpointDir?: string;
  /** Seconds between two checkpoints during training (0: only the one at the end). */
  checkpointEvery: number;
  /** A checkpoint every N steps as well (0: off); deterministic, for tests and step-based schedules. */
  checkpointSteps: number;
  /** Complete checkpoints kept (older ones are removed). */
  checkpointKeep: number;
  /** Continue from the latest complete checkpoint in checkpointDir (none there: start from the beginning, and say so). */
  resume: boolean;
  /**
   * Seconds a lost trainer is waited for (its restarted process rejoining) before the servers' rounds
   * go on without it, and the first trainer waits for a restarted trainer's report (0: not at all;
   * psrun --max-restarts passes 60 unless given). docs/FAULTS.md.
   */
  restartTimeout: number;
  /**
   * centralized, elastic (0: off): training starts once this many trainers have joined; the other
   * trainer ranks of the world may join mid-run and trainers may leave. The first server hands out
   * the job's batches one at a time (src/server/batch-queue.ts), so the rest of an epoch is shared
   * by the live trainers. psrun --trainers MIN:MAX sets it. docs/FAULTS.md.
   */
  minTrainers: number;
  /** Elastic: seconds the servers wait, once --min-trainers have joined, for the rest of the world's trainers before training starts. */
  elasticWait: number;
  /**
   * The shared secret every gRPC call, the rendezvous and the bulk sockets must carry (default:
   * env PSRPC_AUTH_TOKEN; psrun makes one per job). Unset: no authentication.
   */
  authToken?: string;
  /** Ms between two heartbeat pings of this process's agent (0: no heartbeats; unset: the RPC layer's 1000). */
  heartbeatMs?: number;
  /** Ms of silence after which a peer counts as lost and calls to it fail (0: never; unset: the RPC layer's 5000). */
  deadAfterMs?: number;
  /**
   * PEM file of this process's TLS certificate, which must name the host it advertises (default:
   * env PSRPC_TLS_CERT); with tlsKey, TLS on every connection (docs/FAULTS.md). Unset: plain TCP.
   */
  tlsCert?: string;
  /** PEM file of tlsCert's private key, unencrypted (default: env PSRPC_TLS_KEY). */
  tlsKey?: string;
  /** PEM file of the CA the peers' certificates must chain to (default: env PSRPC_TLS_CA, else the system's roots). */
  tlsCa?: string;
  /** Mutual TLS: this process accepts only clients presenting a certificate signed by tlsCa. */
  tlsRequireClientCert: boolean;
}

export const DEFAULTS: TrainOptions = {
  strategy: 'local',
  consistency: 'sync',
  staleness: 2,
  dataset: 'fashion-mnist',
  model: 'mlp',
  modelOptions: {},
  hidden: 64,
  depth: 2,
  epochs: 1,
  batchSize: 64,
  lr: 0.05,
  momentum: 0,
  weightDecay: 0,
  optimizer: 'sgd',
  seed: 0,
  device: 'auto',
  trainSamples: 0,
  testSamples: 0,
  workers: 2,
  progress: 'auto',
  evalEvery: 0,
  evalSamples: 1000,
  servers: 1,
  precision: 'fp32',
  bucketKb: 25 * 1024,
  gradAccum: 1,
  findUnusedParameters: false,
  zeroStage: 1,
  reshardAfterForward: true,
  collectiveTimeout: 30,
  stages: 2,
  microBatches: 4,
  schedule: '1f1b',
  replicas: 1,
  balance: 'flops',
  recompute: false,
  checkpointEvery: 0,
  checkpointSteps: 0,
  checkpointKeep: 3,
  resume: false,
  restartTimeout: 0,
  minTrainers: 0,
  elasticWait: 5,
  tlsRequireClientCert: false,
};

function integer(flag: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
      throw new InvalidArgumentError(`${flag} must be an integer ${range}, got '${value}'`);
    }
    return n;
  };
}

function real(flag: string, min: number, max: number, minExclusive = false) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n > max || n < min || (minExclusive && n === min)) {
      const low = minExclusive ? `> ${min}` : `>= ${min}`;
      throw new InvalidArgumentError(`${flag} must be a number ${low} and <= ${max}, got '${value}'`);
    }
    return n;
  };
}

function jsonObject(flag: string) {
  return (value: string): Record<string, unknown> => {
    let v: unknown;
    try {
      v = JSON.parse(value);
    } catch (e) {
      throw new InvalidArgumentError(`${flag} must be a JSON object, got '${value}' (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError(`${flag} must be a JSON object, got '${value}'`);
    return v as Record<string, unknown>;
  };
}

/** --dataset: checked by the data layer's one parser, kept as the string (it travels to other processes as a flag). */
function datasetSpec(value: string): string {
  try {
    parseDatasetSpec(value, '--dataset');
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
  return value;
}

/** Adds the training flags to a command (trainer, ps-server, psrun). */
export function addTrainFlags(cmd: Command): Command {
  const d = DEFAULTS;
  return cmd
    .addOption(new Option('--strategy <name>', 'training strategy').choices(STRATEGIES).default(d.strategy))
    .addOption(new Option('--consistency <model>', 'consistency model (strategies with servers)').choices(CONSISTENCIES).default(d.consistency))
    .addOption(new Option('--staleness <n>', 'ssp: steps a trainer may run ahead of the slowest').argParser(integer('--staleness', 0)).default(d.staleness))
    .addOption(new Option('--dataset <spec>', `dataset: ${DATASETS.join(', ')}, idx:FOLDER, file:PATH or a dataset module`).argParser(datasetSpec).default(d.dataset))
    .addOption(new Option('--model <file|preset>', 'the model: a preset (mlp, cnn) or a module exporting createModel(ctx)').default(d.model))
    .addOption(new Option('--model-options <json>', "JSON object handed to the model's createModel as ctx.options").argParser(jsonObject('--model-options')).default(d.modelOptions, '{}'))
    .addOption(new Option('--hidden <n>', 'mlp preset: width of the hidden layers').argParser(integer('--hidden', 1, 65536)).default(d.hidden))
    .addOption(new Option('--depth <n>', 'mlp preset: hidden layers (2: 784-H-H-10)').argParser(integer('--depth', 0, 1024)).default(d.depth))
    .addOption(new Option('--epochs <n>', 'epochs to train').argParser(integer('--epochs', 1)).default(d.epochs))
    .addOption(new Option('--batch-size <n>', 'samples per step (per trainer)').argParser(integer('--batch-size', 1, 1 << 20)).default(d.batchSize))
    .addOption(new Option('--lr <x>', 'learning rate').argParser(real('--lr', 0, 1e6, true)).default(d.lr))
    .addOption(new Option('--momentum <x>', 'SGD momentum').argParser(real('--momentum', 0, 1)).default(d.momentum))
    .addOption(new Option('--weight-decay <x>', 'L2 weight decay').argParser(real('--weight-decay', 0, 1e6)).default(d.weightDecay))
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(OPTIMIZERS).default(d.optimizer))
    .addOption(new Option('--seed <n>', 'seed for data split, shuffling and initialisation').argParser(integer('--seed', 0, 2 ** 32 - 1)).default(d.seed))
    .addOption(new Option('--device <device>', 'kernel backend').choices(DEVICES).default(d.device))
    .addOption(new Option('--train-samples <n>', 'train on the first N training samples only (0: all)').argParser(integer('--train-samples', 0)).default(d.trainSamples))
    .addOption(new Option('--test-samples <n>', 'evaluate on the first N test samples only (0: all)').argParser(integer('--test-samples', 0)).default(d.testSamples))
    .addOption(new Option('--workers <n>', 'hogwild: worker threads').argParser(integer('--workers', 1, 256)).default(d.workers))
    .addOption(new Option('--json <file>', 'write the result object to FILE'))
    .addOption(new Option('--eval-every <seconds>', 'record test accuracy every S seconds of training (0: off)').argParser(real('--eval-every', 0, 1e6)).default(d.evalEvery))
    .addOption(new Option('--eval-samples <n>', 'test samples of each accuracy-curve point').argParser(integer('--eval-samples', 1)).default(d.evalSamples))
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'lines', 'none']).default(d.progress))
    .addOption(new Option('--name <name>', 'worker name (default ps<rank> for server ranks, trainer<rank - servers> for the others)'))
    .addOption(new Option('--rank <n>', 'this process\'s rank in the world (default: env RANK)').argParser(integer('--rank', 0)))
    .addOption(new Option('--world-size <n>', 'processes in the world, servers and trainers (default: env WORLD_SIZE)').argParser(integer('--world-size', 1)))
    .addOption(new Option('--master <host:port>', 'rendezvous address, hosted by rank 0 (default: env MASTER_ADDR:MASTER_PORT)'))
    .addOption(new Option('--listen <host:port>', 'where this process listens, e.g. 0.0.0.0:0 (default: env PSRPC_LISTEN, else 127.0.0.1:0; rank 0 listens on --master)'))
    .addOption(new Option('--advertise <host>', 'the host peers connect to, required with a wildcard --listen (default: env PSRPC_ADVERTISE, else the listen host)'))
    .addOption(new Option('--servers <n>', 'centralized: ranks [0, n) are parameter servers, the rest trainers').argParser(integer('--servers', 0, 4096)).default(d.servers))
    .addOption(new Option('--precision <format>', 'gradients and parameters on the wire (collectives, parameter servers); fp32 master weights').choices(PRECISIONS).default(d.precision))
    .addOption(new Option('--bucket-kb <n>', 'ddp: gradient bucket cap in KiB (first bucket at most 1024)').argParser(integer('--bucket-kb', 1, 1 << 22)).default(d.bucketKb))
    .addOption(new Option('--grad-accum <n>', 'ddp, zero, fsdp: batches accumulated locally per exchange').argParser(integer('--grad-accum', 1, 1 << 16)).default(d.gradAccum))
    .addOption(new Option('--find-unused-parameters', 'ddp: a parameter without a gradient counts as zero instead of failing the step').default(d.findUnusedParameters))
    .addOption(new Option('--zero-stage <n>', 'zero: 1 shards optimizer state, 2 also gradients').argParser(integer('--zero-stage', 1, 2)).default(d.zeroStage))
    .addOption(new Option('--no-reshard-after-forward', 'fsdp: keep gathered parameters from forward to backward (more memory, one gather less)'))
    .addOption(new Option('--collective-timeout <seconds>', 'seconds a collective waits for the other ranks before failing').argParser(real('--collective-timeout', 0, 86400, true)).default(d.collectiveTimeout))
    .addOption(new Option('--stages <n>', 'pipeline: stages per pipeline (one process each)').argParser(integer('--stages', 1, 256)).default(d.stages))
    .addOption(new Option('--micro-batches <n>', 'pipeline: micro-batches per batch').argParser(integer('--micro-batches', 1, 1 << 16)).default(d.microBatches))
    .addOption(new Option('--schedule <name>', 'pipeline: gpipe (all forwards, then all backwards) or 1f1b (one forward, one backward)').choices(SCHEDULES).default(d.schedule))
    .addOption(new Option('--replicas <n>', 'pipeline: pipelines side by side, gradients all-reduced per stage').argParser(integer('--replicas', 1, 256)).default(d.replicas))
    .addOption(new Option('--balance <cost>', 'pipeline: what the automatic cut balances: flops or params').choices(BALANCES).default(d.balance))
    .addOption(new Option('--split <indices>', 'pipeline: the cut by hand: child index where each stage after the first starts (e.g. 4 or 3,6)').argParser(splitIndices))
    .addOption(new Option('--recompute', 'pipeline: recompute each stage\'s forward during backward instead of keeping activations').default(d.recompute))
    .addOption(new Option('--checkpoint-dir <dir>', 'write checkpoints to DIR (at the end, and every --checkpoint-every seconds)'))
    .addOption(new Option('--checkpoint-every <seconds>', 'seconds between checkpoints during training (0: only at the end)').argParser(real('--checkpoint-every', 0, 1e6)).default(d.checkpointEvery))
    .addOption(new Option('--checkpoint-steps <n>', 'also a checkpoint every N steps (0: off)').argParser(integer('--checkpoint-steps', 0)).default(d.checkpointSteps))
    .addOption(new Option('--checkpoint-keep <n>', 'complete checkpoints kept').argParser(integer('--checkpoint-keep', 1, 1000)).default(d.checkpointKeep))
    .addOption(new Option('--resume', 'continue from the latest checkpoint in --checkpoint-dir').default(d.resume))
    .addOption(new Option('--min-trainers <n>', 'centralized, elastic: start with N trainers; the world\'s other trainer ranks may join mid-run, trainers may leave (psrun --trainers MIN:MAX; 0: off)').argParser(integer('--min-trainers', 0)).default(d.minTrainers))
    .addOption(new Option('--elastic-wait <seconds>', 'elastic: seconds the servers wait, once --min-trainers have joined, for the other trainers before training starts').argParser(real('--elastic-wait', 0, 3600)).default(d.elasticWait))
    .addOption(new Option('--restart-timeout <seconds>', 'seconds a lost trainer is waited for (a restart rejoining) before rounds go on without it (0: not at all; psrun --max-restarts: 60)').argParser(real('--restart-timeout', 0, 86400)).default(d.restartTimeout))
    .addOption(new Option('--auth-token <token>', 'shared secret every process of the world must present (default: env PSRPC_AUTH_TOKEN)'))
    .addOption(new Option('--heartbeat-ms <ms>', 'ms between heartbeat pings to connected peers (0: no heartbeats; default 1000)').argParser(integer('--heartbeat-ms', 0, 2 ** 31 - 1)))
    .addOption(new Option('--dead-after-ms <ms>', 'ms of silence after which a peer is lost and calls to it fail (0: never; default 5000, at least 2 x --heartbeat-ms)').argParser(integer('--dead-after-ms', 0, 2 ** 31 - 1)))
    .addOption(new Option('--tls-cert <file>', 'PEM certificate of this process, naming the host it advertises; with --tls-key: TLS on every connection (default: env PSRPC_TLS_CERT)'))
    .addOption(new Option('--tls-key <file>', 'PEM private key of --tls-cert, unencrypted (default: env PSRPC_TLS_KEY)'))
    .addOption(new Option('--tls-ca <file>', 'PEM CA certificate(s) the peers\' certificates must chain to (default: env PSRPC_TLS_CA, else the system\'s roots)'))
    .addOption(new Option('--tls-require-client-cert', 'mutual TLS: accept only clients presenting a certificate signed by --tls-ca').default(d.tlsRequireClientCert));
}

/** --split 3,6: child indices, increasing (checked against the model when it is split). */
function splitIndices(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.some((s) => !/^\d+$/.test(s))) throw new InvalidArgumentError(`--split must be comma-separated child indices (e.g. 4 or 3,6), got '${value}'`);
  return parts.map(Number);
}

/** Fills in defaults for an API caller and checks the combinations the flags cannot express. */
export function resolveOptions(partial: Partial<TrainOptions>): TrainOptions {
  const o: TrainOptions = { ...DEFAULTS, ...partial };
  const positive: Array<keyof TrainOptions> = ['hidden', 'epochs', 'batchSize', 'workers', 'bucketKb', 'gradAccum', 'stages', 'microBatches', 'replicas'];
  for (const key of positive) {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new RangeError(`option ${key} must be a positive integer, got ${String(v)}`);
    }
  }
  if (!Number.isSafeInteger(o.depth) || o.depth < 0) throw new RangeError(`option depth must be an integer >= 0, got ${String(o.depth)}`);
  if (o.modelOptions === null || typeof o.modelOptions !== 'object' || Array.isArray(o.modelOptions)) {
    throw new RangeError(`option modelOptions must be an object, got ${Array.isArray(o.modelOptions) ? 'an array' : String(o.modelOptions)}`);
  }
  if (!(PRECISIONS as readonly string[]).includes(o.precision)) throw new RangeError(`option precision must be one of ${PRECISIONS.join(', ')}, got '${String(o.precision)}'`);
  if (o.zeroStage !== 1 && o.zeroStage !== 2) throw new RangeError(`option zeroStage must be 1 or 2, got ${String(o.zeroStage)}`);
  if (!(o.collectiveTimeout > 0) || !Number.isFinite(o.collectiveTimeout)) throw new RangeError(`option collectiveTimeout must be a positive number of seconds, got ${String(o.collectiveTimeout)}`);
  if (!(SCHEDULES as readonly string[]).includes(o.schedule)) throw new RangeError(`option schedule must be one of ${SCHEDULES.join(', ')}, got '${String(o.schedule)}'`);
  if (!(BALANCES as readonly string[]).includes(o.balance)) throw new RangeError(`option balance must be one of ${BALANCES.join(', ')}, got '${String(o.balance)}'`);
  if (o.split !== undefined && (!Array.isArray(o.split) || o.split.some((i) => !Number.isSafeInteger(i) || i < 0))) throw new RangeError(`option split must be an array of child indices, got ${JSON.stringify(o.split)}`);
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new RangeError(`option lr must be a positive number, got ${o.lr}`);
  if (!(STRATEGIES as readonly string[]).includes(o.strategy)) throw new RangeError(`option strategy must be one of ${STRATEGIES.join(', ')}, got '${o.strategy}'`);
  if (o.checkpointDir !== undefined && (typeof o.checkpointDir !== 'string' || o.checkpointDir.length === 0)) throw new RangeError(`option checkpointDir must be a non-empty path, got ${JSON.stringify(o.checkpointDir)}`);
  if (!(o.checkpointEvery >= 0) || !Number.isFinite(o.checkpointEvery)) throw new RangeError(`option checkpointEvery must be a number of seconds >= 0, got ${String(o.checkpointEvery)}`);
  if (!Number.isSafeInteger(o.checkpointSteps) || o.checkpointSteps < 0) throw new RangeError(`option checkpointSteps must be an integer >= 0, got ${String(o.checkpointSteps)}`);
  if (!Number.isSafeInteger(o.checkpointKeep) || o.checkpointKeep < 1) throw new RangeError(`option checkpointKeep must be an integer >= 1, got ${String(o.checkpointKeep)}`);
  if (!Number.isSafeInteger(o.minTrainers) || o.minTrainers < 0) throw new RangeError(`option minTrainers must be an integer >= 0, got ${String(o.minTrainers)}`);
  if (!(o.elasticWait >= 0) || !Number.isFinite(o.elasticWait)) throw new RangeError(`option elasticWait must be a number of seconds >= 0, got ${String(o.elasticWait)}`);
  const elastic = elasticConflict(o);
  if (elastic) throw new RangeError(elastic);
  if (!(o.restartTimeout >= 0) || !Number.isFinite(o.restartTimeout)) throw new RangeError(`option restartTimeout must be a number of seconds >= 0, got ${String(o.restartTimeout)}`);
  const ckpt = checkpointConflict(o);
  if (ckpt) throw new RangeError(ckpt);
  const refusal = findStrategy(o.strategy)?.check?.(o);
  if (refusal) throw new RangeError(refusal);
  try {
    parseDatasetSpec(o.dataset);
  } catch (e) {
    throw new RangeError(`option dataset: ${e instanceof Error ? e.message : String(e)}`);
  }
  return o;
}
