// The `centralized` strategy: parameter servers hold the model; each trainer pulls the parameters,
// computes forward and backward on its DistributedSampler partition and pushes the gradient.
//
// One fused pushPull per server per step: the gradient goes from the model's flat gradient buffer
// (flattenParameters) straight into the call, and each server's answer lands in the flat parameter
// buffer that the model's tensors are views of, so the next forward sees it without a copy.
//
// The first trainer (rank 0), given the test split, also records the accuracy-over-time curve on
// its own copy of the parameters (those of its last pull): one process's view of the shared
// model, with its samples scaled by the trainer count as the estimate of all trainers' samples.
//
// --precision bf16|fp16: pushes and pulls travel in 16 bits (the servers keep fp32 weights and
// optimizer state). fp16 adds dynamic loss scaling (LossScaler, PyTorch's GradScaler defaults): the
// gradient is multiplied by the scale before it is narrowed and the servers divide by it; a push
// that overflowed sends zeros instead (the sync rounds stay aligned), counts as a skipped step
// and halves the scale.
//
// Elastic (--min-trainers): no fixed share per trainer. The first server numbers the job's batches
// (every epoch's shuffled order over the whole training split, the same on every trainer) and hands
// them out one at a time; a trainer asks for the next, trains it and pushes with its number, so
// the trainers that are there share the rest of each epoch (src/server/batch-queue.ts).
import { DataLoader, type Dataset } from '../data/index.js';
import type { Agent } from '../rpc/index.js';
import { CheckpointSchedule, PsClient } from '../server/index.js';
import { flattenParameters, type Module, type Tensor } from '../tensor/index.js';
import { AccuracyCurve, type CurvePoint } from './curve.js';
import { LossScaler, wireDType } from './data-parallel.js';
import { runLoop, supervisedStep, type LoopResult } from './loop.js';
import { buildModel, modelContext, resolveModel, type ResolvedModel } from './model.js';
import type { TrainOptions } from './options.js';
import { trainerSampler } from './setup.js';
import { faultAtStep, holdAtStep, resumePosition } from './checkpoint.js';

/** Where a trainer stands in the world. */
export interface TrainerContext {
  agent: Agent;
  /** The servers' worker names, in shard order. */
  servers: readonly string[];
  /** This trainer's rank among the trainers, in [0, trainers). */
  rank: number;
  trainers: number;
  train: Dataset;
  /** `train` is this trainer's share only: samples per epoch (see setup.ts trainerSampler). */
  share?: number;
  /** Rank 0 with `opts.evalEvery > 0`: the test split the accuracy curve is evaluated on. */
  test?: Dataset;
  /** Progress label (default: the agent's name). */
  label?: string;
  /**
   * Leave the servers when training ends (default true). false keeps this trainer in the live set
   * (it must leave later, e.g. after a final pull); it still leaves if training fails.
   */
  leave?: boolean;
}

/** What one trainer did; the first trainer gathers these into the run's result. */
export interface TrainerReport {
  trainer: string;
  samples: number;
  steps: number;
  /** Seconds of the training loop alone. */
  trainSeconds: number;
  /** Loss sum and count over the last epoch's batches. */
  lossSum: number;
  lossCount: number;
  /** The servers' smallest version at the trainer's last pull. */
  version: number;
  /**
   * Tensor payload bytes this trainer exchanged with other processes: gradients pushed plus
   * parameters pulled (join and every step), framing excluded. A partitioned worker's calls to
   * its own shard stay in the process and are not counted.
   */
  bytesSent: number;
  /** --precision of the pushes and pulls (strategies that honour it). */
  precision?: string;
  /** fp16: steps whose scaled gradient overflowed (zeros pushed instead), see LossScaler. */
  skippedSteps?: number;
}

/** A model the strategies train: a Module mapping a batch to logits. */
export type TrainedModel = Module & { forward(x: Tensor): Tensor };

export interface TrainedWorker {
  report: TrainerReport;
  model: TrainedModel;
  /** The model module (its loss and metric) the model was built from. */
  resolved: ResolvedModel;
  client: PsClient;
  /** Rank 0 with a test split and `opts.evalEvery > 0`: test accuracy over training time. */
  curve?: CurvePoint[];
  /** Rank 0 with --checkpoint-dir: every server writes the end of training's checkpoint (call after the final pull). */
  finalCheckpoint?: () => Promise<void>;
}

/**
 * Trains against the servers `ctx.servers` (which must be serving `ps.*` functions) and leaves
 * them at the end, so a sync server never waits for this trainer again. The model it returns holds
 * the parameters of its last pull.
 */
export async function trainCentralized(opts: TrainOptions, ctx: TrainerContext): Promise<TrainedWorker> {
  const { agent, train } = ctx;
  const sampler = trainerSampler(opts, ctx);
  const loader = new DataLoader(train, { batchSize: opts.batchSize, sampler, dropLast: true });
  // elastic trainers have no share of their own (their batches come from the whole split: elasticSource)
  if (loader.length === 0 && !(opts.minTrainers > 0)) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${sampler.length} training samples of trainer ${ctx.rank} of ${ctx.trainers}`);
  }
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, train, { rank: ctx.rank, role: 'trainer', workers: ctx.trainers });
  const model = await buildModel(resolved, mctx) as TrainedModel;
  const flat = flattenParameters(model);
  // shapes too: the servers refuse a trainer whose model differs, naming the first parameter
  const layout = flat.entries.map((e) => ({ name: e.name, size: e.size, shape: e.shape }));
  const client = new PsClient(agent, ctx.servers, layout, flat.params, flat.grads, agent.name, wireDType(opts.precision));
  await client.join();
  // a restarted process (psrun --max-restarts) goes on where its predecessor stopped: sync, at the
  // servers' version (once every server is at the same one); async and ssp, after its own pushes applied
  if (agent.rejoined && opts.consistency === 'sync' && (await client.level()) > 0) {
    process.stderr.write(`${agent.name}: the process before this one died between its pushes to different servers; the servers behind took their round without it\n`);
  }
  const elastic = opts.minTrainers > 0;
  // elastic: no position of its own (the first server hands out the batches; a restarted process gets its predecessor's back)
  const start = elastic ? { step: 0, epoch: 0, batch: 0 } : agent.rejoined && opts.consistency !== 'sync'
    ? resumePosition({ ...opts, consistency: 'sync' }, Math.min(...client.clocks), ctx.trainers, loader.length)
    : resumePosition(opts, client.version, ctx.trainers, loader.length);
  if (elastic) {
    if (agent.rejoined) process.stderr.write(`${agent.name}: rejoined the running elastic job (restart ${process.env.PSRPC_RESTART_COUNT ?? '?'}): it takes back the batch the process before it held\n`);
    else if (client.version > 0) process.stderr.write(`${agent.name}: joined the running elastic job at version ${client.version}\n`);
  } else if (agent.rejoined) {
    process.stderr.write(`${agent.name}: rejoined the running job (restart ${process.env.PSRPC_RESTART_COUNT ?? '?'}): resuming at step ${start.step} (epoch ${start.epoch}, batch ${start.batch}) where the process before it stopped\n`);
  } else if (start.step > 0) {
    process.stderr.write(`${agent.name}: resuming at step ${start.step} (epoch ${start.epoch}, batch ${start.batch}): the servers start from their checkpoint at version ${client.version}\n`);
  }
  const checkpoint = checkpointTrigger(opts, ctx.rank, client);
  const fault = faultAtStep(agent.name);
  const hold = holdAtStep(agent.name);
  let step = start.step;
  const scaler = new LossScaler(opts.precision === 'fp16');
  const next = (): number => {
    fault(++step);
    return checkpoint.next();
  };
  // elastic: the batch this trainer holds (its number goes with the push), and where batches come from
  let held = -1;
  const source = opts.minTrainers > 0 ? elasticSource(opts, train, client, ctx.trainers, (b) => { held = b; }) : undefined;
  const update = scaler.enabled
    ? async () => { const c = next(); await hold(step); scaler.update(!(await client.pushPull(scaler.scale, c, held))); }
    : () => { const c = next(); const h = hold(step); return h ? h.then(() => client.pushPull(1, c, held)) : client.pushPull(1, c, held); };

  // The first trainer's curve is taken on its own copy of the parameters (those of its last pull).
  const curve = ctx.rank === 0 && ctx.test && opts.evalEvery > 0 ? new AccuracyCurve(model, ctx.test, opts, true, undefined, resolved.metric) : undefined;
  let run: LoopResult;
  try {
    run = await runLoop({
      opts, loader, label: ctx.label ?? agent.name, curve, curveScale: ctx.trainers,
      step: supervisedStep(model, resolved.loss, mctx.inputShape, 'cpu', update),
      ...(source ? { source } : { start }),
    });
  } catch (e) {
    // leave after a failure, so the other trainers' sync rounds go on without this one
    await client.leave().catch(() => {});
    throw e;
  }
  if (ctx.leave ?? true) await client.leave();
  return {
    report: {
      trainer: agent.name, samples: run.samples, steps: run.steps, trainSeconds: run.trainSeconds, lossSum: run.lossSum, lossCount: run.lossCount,
      version: client.version, bytesSent: client.bytes, precision: opts.precision,
      ...(scaler.enabled ? { skippedSteps: scaler.skipped } : {}),
    },
    model,
    resolved,
    client,
    ...(curve ? { curve: curve.points } : {}),
    ...(checkpoint.enabled ? { finalCheckpoint: () => client.checkpoint(checkpoint.finalId()) } : {}),
  };
}

/**
 * Elastic jobs: the batches the first server hands out, each looked up in its epoch's shuffled order
 * of the whole training split (the same order on every trainer: the seed). `hold` learns the batch
 * number, which the push of its gradient carries.
 */
function elasticSource(opts: TrainOptions, train: Dataset, client: PsClient, trainers: number, hold: (b: number) => void) {
  const whole = new DataLoader(train, { batchSize: opts.batchSize, shuffle: true, seed: opts.seed, dropLast: true });
  if (whole.length === 0) throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${train.length} training samples`);
  const shape = { perEpoch: whole.length, epochs: opts.epochs };
  return {
    // what the progress display expects of this trainer: an even share among the world's trainers
    samples: Math.ceil((whole.length * opts.epochs) / trainers) * opts.batchSize,
    async next() {
      const b = await client.takeBatch(shape);
      if (b === null) return null;
      hold(b);
      const epoch = Math.floor(b / shape.perEpoch);
      return { epoch, batch: whole.batchAt(epoch, b % shape.perEpoch) };
    },
  };
}

/**
 * The first trainer decides when the servers checkpoint: a push carries the checkpoint's number
 * every --checkpoint-steps steps and once --checkpoint-every seconds have passed since the last
 * one. Numbers are the servers' version after the push's step (sync: the same on every server),
 * kept increasing.
 */
function checkpointTrigger(opts: TrainOptions, rank: number, client: PsClient) {
  const enabled = opts.checkpointDir !== undefined && rank === 0;
  const schedule = new CheckpointSchedule(opts.checkpointSteps, opts.checkpointEvery * 1000);
  let last = -1;
  return {
    enabled,
    next(): number {
      if (!enabled || !schedule.isDue(client.version + 1)) return -1;
      last = Math.max(last + 1, client.maxVersion + 1);
      return last;
    },
    finalId(): number {
      return Math.max(last, client.maxVersion);
    },
  };
}
