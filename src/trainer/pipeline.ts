// The `pipeline` strategy: the model's top-level Sequential cut into K stages (src/pipeline/), one
// process each, R pipelines side by side. Rank t is stage t % K of pipeline t / K.
//
// No driver: every process reads the same batches of its pipeline's share of the data (the
// stages of a pipeline share one DistributedSampler partition, rank = pipeline), the first stage
// feeds the inputs and the last computes the loss, so a batch crosses each boundary once each way
// and no process sits between the stages. (PyTorch's RPC tutorial keeps a driver that holds the
// data and the loss: one more process on the CPUs and two more hops per micro-batch.)
//
// Every process builds the whole model and rank 0's initial values are broadcast to all; each
// stage then keeps its own layers' parameters (one flat buffer), its own optimizer, and steps it
// once per batch, after the gradients of all M micro-batches (and, with replicas, their average
// over the stage's replicas: one bucketed all-reduce per stage group, started from the
// gradient-ready hooks of the batch's last backward). At the end the stages of pipeline 0 send
// their parameters and buffers to rank 0, which evaluates the whole model.
//
// Checkpoints (src/trainer/pipeline-checkpoint.ts): after the optimizer step of a step that is due
// (--checkpoint-steps: every stage counts the same steps, so they all take the same one; a clock
// of each stage's own could not promise that, so --checkpoint-every is refused), each stage of
// pipeline 0 writes its parameters, their optimizer state and its buffers as its segments of the
// whole model's flat layout; and one at the end. On --resume every process reads its stage back
// and the loop starts at the checkpoint's step: the run is sync and deterministic, so it ends bit
// for bit as the run never interrupted.
//
// Bubble: per stage, the wall time of its steps that it did not compute (forwards, backwards, the
// loss, the optimizer step) over the wall time of its steps: waiting for activations, gradients,
// the all-reduce, and, on a machine with fewer cores than processes, for a core.
import { ProcessGroup } from '../collective/index.js';
import { DataLoader, type Batch } from '../data/index.js';
import { groupLink, PipelineStage, planPipeline, stageModule, theoreticalBubble, type PipelinePlan } from '../pipeline/index.js';
import { createOptimizer, flattenBuffers, flattenParameters, Sequential, Tensor } from '../tensor/index.js';
import type { TrainerReport } from './centralized.js';
import { GradSync, makeBuckets } from './data-parallel.js';
import { faultAtStep, resumePosition } from './checkpoint.js';
import { runLoop } from './loop.js';
import { buildModel, modelContext, resolveModel } from './model.js';
import type { TrainOptions } from './options.js';
import { StageCheckpoints } from './pipeline-checkpoint.js';
import { optimizerSpec, trainerSampler } from './setup.js';
import { pipeline } from './strategies/pipeline.js';
import type { WorldTrainerContext, WorldTraining } from './strategy.js';

export interface PipelineReport extends TrainerReport {
  stage: number;
  replica: number;
  /** Children [first, end) of the model's Sequential this stage ran, and their parameters. */
  children: [number, number];
  stageParameters: number;
  /** Seconds this stage computed, and the seconds of its steps (waiting included). */
  busySeconds: number;
  stepSeconds: number;
  /** 1 - busy / step time. */
  bubble: number;
  /** The most activation bytes this stage held at once. */
  peakActivationBytes: number;
  peakRssBytes: number;
}

/** Tags of the final transfer to rank 0 (the schedule's tags are 2m and 2m + 1, below M * 2). */
const FINAL_PARAMS = 1 << 30;
const FINAL_BUFFERS = FINAL_PARAMS + 1;
const EMPTY = new Float32Array(0);

export async function trainPipeline(opts: TrainOptions, ctx: WorldTrainerContext): Promise<WorldTraining> {
  // API callers reach this without resolveOptions: the declaration's own refusals, the same lines
  const refusal = pipeline.check?.(opts);
  if (refusal) throw new RangeError(refusal);
  const K = opts.stages, R = opts.replicas;
  if (ctx.trainers !== K * R) throw new RangeError(`strategy pipeline runs --stages ${K} x --replicas ${R} = ${K * R} processes, got ${ctx.trainers}`);
  const pg = ProcessGroup.create(ctx.agent, { timeoutMs: opts.collectiveTimeout * 1000 });
  try {
    return await run(opts, ctx, pg);
  } catch (e) {
    // the other stages stop now, naming this one, instead of waiting out their timeouts
    pg.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  } finally {
    pg.close();
  }
}

async function run(opts: TrainOptions, ctx: WorldTrainerContext, pg: ProcessGroup): Promise<WorldTraining> {
  const { agent } = ctx;
  const K = opts.stages, R = opts.replicas;
  const stage = ctx.rank % K, replica = Math.floor(ctx.rank / K);
  const first = stage === 0, last = stage === K - 1;
  const sampler = trainerSampler(opts, { rank: replica, trainers: R, train: ctx.train, ...(ctx.share !== undefined ? { share: ctx.share } : {}) });
  const loader = new DataLoader(ctx.train, { batchSize: opts.batchSize, sampler, dropLast: true });
  if (loader.length === 0) throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${sampler.length} training samples of pipeline ${replica} of ${R}`);
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, ctx.train, { rank: ctx.rank, role: 'trainer', workers: ctx.trainers });
  const model = await buildModel(resolved, mctx);
  const plan: PipelinePlan = planPipeline(model, K, { inputShape: mctx.inputShape, balance: opts.balance, ...(opts.split ? { split: opts.split } : {}) });
  const whole = model as Sequential;

  // rank 0's initial values everywhere (the model contract: one instance's values count)
  const all = flattenParameters(model);
  await pg.broadcast(all.params, 0);
  const allBuffers = flattenBuffers(model);
  if (allBuffers.length > 0) await pg.broadcast(allBuffers, 0);

  const mine = stageModule(whole, plan, stage);
  const flat = flattenParameters(mine);
  const params = mine.parameters();
  const optimizer = createOptimizer(params, optimizerSpec(opts));
  // the layout names every stage's parameters: made before the other stages' are dropped
  const ckpt = opts.checkpointDir !== undefined
    ? StageCheckpoints.create(opts, {
      model: whole, stageModules: plan.stages.map((_, s) => (s === stage ? mine : stageModule(whole, plan, s))),
      stage, replicas: R, writes: replica === 0,
    }, optimizer, (l) => process.stderr.write(l + '\n'))
    : undefined;
  // the other stages' layers are dropped (rank 0 keeps them: it loads the trained values at the end)
  if (ctx.rank !== 0) {
    const own = new Set(params);
    for (const p of model.parameters()) if (!own.has(p)) { p.data = EMPTY; p.gradStorage = null; }
  }
  // after the start broadcast, which a restored stage must not be overwritten by
  let done = 0;
  if (ckpt && opts.resume) done = await ckpt.resume(agent.name, ctx.rank === 0);
  const start = resumePosition(opts, done, R, loader.length, true);
  done = start.step;
  const fault = faultAtStep(agent.name);

  // one process group per stage across the replicas; every rank creates them all, in order
  let sync: GradSync | undefined;
  if (R > 1) {
    let group: ProcessGroup | null = null;
    for (let s = 0; s < K; s++) {
      const g = pg.newGroup(Array.from({ length: R }, (_, r) => r * K + s));
      if (g) group = g;
    }
    const buckets = makeBuckets(flat, params, opts.bucketKb * 1024);
    sync = new GradSync(flat, buckets, (_b, view) => group!.allReduce(view, { op: 'avg' }), false);
  }
  const runner = new PipelineStage({
    module: mine, index: stage, stages: K, micro: opts.microBatches, schedule: opts.schedule,
    inShape: plan.shapes[stage]!, outShape: plan.shapes[stage + 1]!,
    link: groupLink(pg, Array.from({ length: K }, (_, s) => replica * K + s)),
    recompute: opts.recompute,
    ...(last ? { loss: resolved.loss } : {}),
  });

  let busyMs = 0, stepMs = 0, peak = 0;
  const step = async (batch: Batch): Promise<number> => {
    // before any of the step's activations or gradients leaves this stage
    fault(done + 1);
    const t0 = performance.now();
    for (const p of params) p.zeroGrad();
    const fig = await runner.runBatch(
      { size: batch.size, ...(first ? { x: batch.x } : {}), ...(last ? { y: batch.y } : {}) },
      sync ? () => sync.arm(1) : undefined,
    );
    if (sync) await sync.finish();
    const s = performance.now();
    optimizer.step();
    const end = performance.now();
    busyMs += fig.busyMs + (end - s);
    stepMs += end - t0;
    peak = Math.max(peak, fig.peakActivationBytes);
    done++;
    if (ckpt?.writing) await ckpt.afterStep(done);
    return fig.loss;
  };
  let result;
  try {
    result = await runLoop({ opts, loader, label: agent.name, step, start });
  } catch (e) {
    // another stage died (a message or the all-reduce failed): the checkpoints already copied still reach the disk
    await ckpt?.flush();
    throw e;
  } finally {
    sync?.dispose();
    ckpt?.dispose();
  }
  if (ckpt?.writing) {
    await ckpt.write(done);
    await ckpt.flush();
  }

  // pipeline 0's stages hand their trained layers to rank 0, which evaluates the whole model
  const stageBuffers = flattenBuffers(mine);
  if (replica === 0 && stage > 0) {
    await pg.send(flat.params, 0, FINAL_PARAMS);
    if (stageBuffers.length > 0) await pg.send(stageBuffers, 0, FINAL_BUFFERS);
  } else if (ctx.rank === 0) {
    for (let s = 1; s < K; s++) {
      const other = stageModule(whole, plan, s);
      await pg.recv(flattenParameters(other, { copy: false }).params, s, FINAL_PARAMS);
      const b = flattenBuffers(other, { copy: false });
      if (b.length > 0) await pg.recv(b, s, FINAL_BUFFERS);
    }
  }
  const p = plan.stages[stage]!;
  const report: PipelineReport = {
    trainer: agent.name, samples: result.samples, steps: result.steps, trainSeconds: result.trainSeconds,
    lossSum: result.lossSum, lossCount: result.lossCount, version: result.steps, bytesSent: pg.stats().bytesSent,
    stage, replica, children: [p.first, p.end], stageParameters: p.parameters,
    busySeconds: busyMs / 1000, stepSeconds: stepMs / 1000, bubble: stepMs > 0 ? 1 - busyMs / stepMs : 0,
    peakActivationBytes: peak, peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  return {
    report,
    resolved,
    parameters: model.parameterCount(),
    extras: (reports) => pipelineExtras(reports as PipelineReport[], opts, plan),
    async finish() {
      return model as Sequential & { forward(x: Tensor): Tensor };
    },
  };
}

/**
 * The job's figures from every stage's report (in rank order): a sample counts once per pipeline
 * (its first stage's), per stage the bubble (the mean over its replicas) beside the theory, and the
 * most activation bytes any of its replicas held.
 */
export function pipelineExtras(reports: readonly PipelineReport[], opts: TrainOptions, plan: PipelinePlan): Record<string, unknown> {
  const K = opts.stages;
  // a stage's own result (not the first trainer's) has only its own report: its own samples
  const firsts = reports.some((r) => r.stage === 0) ? reports.filter((r) => r.stage === 0) : reports;
  const samples = firsts.reduce((n, r) => n + r.samples, 0);
  const trainSeconds = Math.max(...reports.map((r) => r.trainSeconds));
  const perStage = (f: (r: PipelineReport) => number, combine: (xs: number[]) => number) =>
    Array.from({ length: K }, (_, s) => reports.filter((r) => r.stage === s).map(f)).filter((xs) => xs.length > 0).map(combine);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    samples,
    samplesPerSecond: samples / trainSeconds,
    stages: K,
    microBatches: opts.microBatches,
    schedule: opts.schedule,
    replicas: opts.replicas,
    recompute: opts.recompute,
    balance: plan.balance,
    stageChildren: plan.stages.map((p) => [p.first, p.end]),
    stageParameters: plan.stages.map((p) => p.parameters),
    bubblePerStage: perStage((r) => r.bubble, mean),
    theoreticalBubble: theoreticalBubble(K, opts.microBatches),
    peakActivationBytesPerStage: perStage((r) => r.peakActivationBytes, (xs) => Math.max(...xs)),
    peakRssBytes: Math.max(...reports.map((r) => r.peakRssBytes)),
  };
}
