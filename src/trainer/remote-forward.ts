// The `remote-forward` strategy: the model lives on the server behind an RRef (one model shared by
// every trainer, as in the book's chapter 7 exercise). Each step of each trainer:
//   1. `rref.rpcSync().forward(x)` inside a distributed autograd context: the batch travels to the
//      server, the forward runs there and its graph stays there under the context; the output comes
//      back as a recv leaf of this trainer's context;
//   2. the loss is computed here; `distAutograd.backward(ctx, [loss])` sends the output's gradient
//      to the server, which runs the model's backward into the context's own gradient map;
//   3. a DistributedOptimizer over the model's parameter RRefs steps them on the server with that
//      context's gradients (SGD or Adam, the trainer's options).
// Gradients never land in `.grad`, so concurrent trainers share the model without mixing their
// gradients (torch's version of this exercise fails with 2 trainers; this one does not): each step
// applies exactly its own context's gradients, Hogwild-style with respect to the other trainers.
//
// Folding the step into the backward's round trip: the backward message (the output's gradient,
// 64x10 floats) and the optimizer's step message are both small, so the RPC layer sends them as
// inline frames on the same stream, in the order they were issued, and coalesces them into one
// write; the server dispatches frames in arrival order and runs a backward's local tape
// synchronously in its handler, so the step always finds the context's complete gradients. The
// step is therefore issued right after the backward, without waiting for its answer.
//
// Pipelining the next forward: the trainer does not wait for that backward + step either. It
// sends the next batch's forward at once, naming the previous context (`forward(x, afterStep)`);
// the server runs it only once the optimizer step with that context's gradients has been applied
// there (`distAutograd.whenStepped`: the forward travels on the bulk side channel, the step
// inline on the gRPC stream, so arrival order alone would not do). The previous step's answers
// are awaited while the forward is on its way (their errors surface there). One round trip per
// step instead of two, and the same updates in the same order as the sequential loop: the
// one-trainer test checks the result equals local SGD's.
//
// The context is released without waiting for the release to travel: the next step's forward
// does not depend on it, and the release messages ride along with the next calls.
//
// Where a trainer starts: once its DistributedOptimizer is ready, it binds it to its rank on the
// host (rf.optimizer, before its first step), and the host answers with the steps it applied for
// that rank: 0, or a restored checkpoint's count (--checkpoint-dir and --resume on the server: the
// host writes the checkpoints, src/server/remote-model-checkpoint.ts). The trainer goes on at that
// batch of that epoch (the sampler's order is a function of the seed and the epoch), so a resumed
// run trains every batch whose step the checkpoint lacks, and no other; with one trainer it ends
// as the uninterrupted run, bit for bit. PSRPC_FAULT_KILL_TRAINER_AT_STEP=NAME:N kills trainer
// NAME once the host has applied its step N-1, before step N's gradient leaves it.
//
// The accuracy curve (--eval-every, first trainer given the test split): the model lives on the
// server, so each point first copies its parameters into a local twin (one pull of 55k floats),
// then evaluates the twin; the copy and the evaluation are both left out of this trainer's clock.
// With several trainers the others keep training meanwhile (as in Hogwild's curve).
import { DataLoader, type Batch, type Dataset } from '../data/index.js';
import { DistributedOptimizer, type Agent, type DistAutogradContext, type RRef } from '../rpc/index.js';
import { RF_FUNCTIONS, type SharedModel } from '../server/index.js';
import { layoutOf, optimizerArgs, Tensor } from '../tensor/index.js';
import type { TrainedModel, TrainerReport } from './centralized.js';
import { AccuracyCurve, type CurvePoint } from './curve.js';
import { runLoop, type LoopResult } from './loop.js';
import { buildModel, modelContext, resolveModel, type ResolvedModel } from './model.js';
import type { TrainOptions } from './options.js';
import { optimizerSpec, trainerSampler } from './setup.js';
import { faultAtStep, resumePosition } from './checkpoint.js';

export interface RemoteForwardContext {
  agent: Agent;
  /** The worker that hosts the model (`rf.*` functions). */
  server: string;
  /** This trainer's rank among the trainers, in [0, trainers). */
  rank: number;
  trainers: number;
  train: Dataset;
  /** `train` is this trainer's share only: samples per epoch (see setup.ts trainerSampler). */
  share?: number;
  label?: string;
  /** Leave the host when training ends (default true); false: call `worker.leave()` later. */
  leave?: boolean;
  /** Rank 0 with `opts.evalEvery > 0`: the test split the accuracy curve is evaluated on. */
  test?: Dataset;
}

export interface RemoteForwardWorker {
  report: TrainerReport;
  /** The RRef to the shared model and to its parameters (owned by the server). */
  modelRef: RRef<SharedModel>;
  paramRefs: RRef<Tensor>[];
  /** Copies the server's current parameters into a local model of the same shape (for evaluation). */
  fetchModel(): Promise<TrainedModel>;
  /** The model module (its loss and metric) the local twin was built from, and the model's parameter count. */
  resolved: ResolvedModel;
  parameters: number;
  /** Leaves the host (idempotent) and releases this trainer's references and optimizer. */
  leave(): Promise<void>;
  /** Rank 0 with a test split and `opts.evalEvery > 0`: test accuracy over training time. */
  curve?: CurvePoint[];
}

export async function trainRemoteForward(opts: TrainOptions, ctx: RemoteForwardContext): Promise<RemoteForwardWorker> {
  const { agent, train, server } = ctx;
  const sampler = trainerSampler(opts, ctx);
  const loader = new DataLoader(train, { batchSize: opts.batchSize, sampler, dropLast: true });
  if (loader.length === 0) {
    throw new RangeError(`--batch-size ${opts.batchSize} is larger than the ${sampler.length} training samples of trainer ${ctx.rank} of ${ctx.trainers}`);
  }
  // the server's parameters copied into a local twin of the model (evaluation, the curve); its
  // architecture goes with the join, so a host serving another model refuses this trainer
  const resolved = await resolveModel(opts.model);
  const mctx = modelContext(opts, train, { rank: ctx.rank, role: 'trainer', workers: ctx.trainers });
  const twin = await buildModel(resolved, mctx) as TrainedModel;
  const layout = layoutOf(twin);
  await agent.call(server, RF_FUNCTIONS.join, [agent.name, layout]);
  const modelRef = agent.remote<SharedModel>(server, RF_FUNCTIONS.model);
  const paramRefs = await agent.call<RRef<Tensor>[]>(server, RF_FUNCTIONS.params, []);
  const [kind, options] = optimizerArgs(optimizerSpec(opts));
  const optimizer = new DistributedOptimizer(agent, kind, paramRefs, options);
  let left = false;
  const leave = async (): Promise<void> => {
    if (left) return;
    left = true;
    await optimizer.release().catch(() => {});
    await Promise.all([modelRef.release(), ...paramRefs.map((r) => r.release())]).catch(() => {});
    await agent.call(server, RF_FUNCTIONS.leave, [agent.name]);
  };

  const fetchModel = async (): Promise<TrainedModel> => {
    const values = await Promise.all(paramRefs.map((r) => r.toHere()));
    const params = twin.parameters();
    values.forEach((v, i) => params[i]!.data.set(v.data));
    // buffers (running statistics) live with the hosted model, which ran every forward
    const buffers = twin.buffers();
    if (buffers.length > 0) {
      const copies = await agent.call<Float32Array[]>(server, RF_FUNCTIONS.buffers, []);
      if (!Array.isArray(copies) || copies.length !== buffers.length || copies.some((c, i) => !(c instanceof Float32Array) || c.length !== buffers[i]!.size)) {
        throw new Error(`remote-forward: the buffers of the model hosted on ${server} do not match this trainer's model (${buffers.length} buffers)`);
      }
      copies.forEach((c, i) => buffers[i]!.data.set(c));
    }
    return twin;
  };
  const releases: Promise<void>[] = [];
  const releaseContext = (c: DistAutogradContext): void => {
    const r = c.release();
    r.catch(() => {});
    releases.push(r);
    if (releases.length > 64) releases.splice(0, 32);
  };
  // The step in flight: its context and its backward + optimizer-step answers (see the header)
  let prev: { ctx: DistAutogradContext; done: Promise<unknown> } | undefined;
  const settlePrevious = async (): Promise<void> => {
    if (!prev) return;
    const p = prev;
    prev = undefined;
    try {
      await p.done;
    } finally {
      releaseContext(p.ctx);
    }
  };

  const methods = modelRef.rpcSync();
  const inputShape = mctx.inputShape;
  let bytesSent = 0;
  const fault = faultAtStep(agent.name);
  // steps taken, the host's count of this rank's steps at the start included
  let taken = 0;
  const step = async (batch: Batch): Promise<number> => {
    const x = new Tensor(batch.x, [batch.size, ...inputShape]);
    const dctx: DistAutogradContext = agent.distAutograd.newContext();
    try {
      // sent before the previous step's answers: the server runs it after that step
      const pending = dctx.run(() => methods.forward(x, prev?.ctx.id ?? 0)) as Promise<Tensor>;
      pending.catch(() => {});
      await settlePrevious();
      // the host has applied step `taken` now: a fault here leaves it exactly there
      fault(++taken);
      const out = await pending;
      const loss = resolved.loss(out, batch.y);
      const value = loss.item();
      // Issued together: see the header (one transport message, applied in order on the server).
      // backward() runs this trainer's part of the tape before it returns, so the loader may
      // reuse this batch's buffers for the next one while the answers are still on their way.
      const done = Promise.all([agent.distAutograd.backward(dctx, [loss]), optimizer.step(dctx)]);
      done.catch(() => {});
      prev = { ctx: dctx, done };
      bytesSent += (x.size + 2 * out.size) * 4;
      return value;
    } catch (e) {
      releaseContext(dctx);
      throw e;
    }
  };

  let run: LoopResult;
  try {
    await optimizer.ready();
    // before the first step: the host counts this rank's steps from here (and gives it a restored checkpoint's optimizer state)
    const bound = await agent.call<{ steps: number; version: number }>(server, RF_FUNCTIONS.optimizer, [agent.name, ctx.rank, optimizer.id]);
    const start = resumePosition(opts, bound.steps, ctx.trainers, loader.length, true);
    taken = start.step;
    if (start.step > 0) {
      process.stderr.write(`${agent.name}: resuming at step ${start.step} (epoch ${start.epoch}, batch ${start.batch}): the host ${server} starts from its checkpoint at step ${bound.version}\n`);
    }
    // made once the optimizer is ready, so the curve's clock starts with the training loop
    const curve = ctx.rank === 0 && ctx.test && opts.evalEvery > 0 ? new AccuracyCurve(twin, ctx.test, opts, true, undefined, resolved.metric) : undefined;
    run = await runLoop({
      opts, loader, label: ctx.label ?? agent.name, curve, curveScale: ctx.trainers, step,
      // each point copies the server's model after the last step, off the training clock
      beforePoint: async () => { await settlePrevious(); await fetchModel(); },
      end: settlePrevious,
      start,
    });
    await Promise.allSettled(releases);
    if (ctx.leave ?? true) await leave();
    return {
      report: { trainer: agent.name, samples: run.samples, steps: run.steps, trainSeconds: run.trainSeconds, lossSum: run.lossSum, lossCount: run.lossCount, version: run.steps, bytesSent },
      modelRef,
      paramRefs,
      fetchModel,
      leave,
      resolved,
      parameters: twin.parameterCount(),
      ...(curve ? { curve: curve.points } : {}),
    };
  } catch (e) {
    await settlePrevious().catch(() => {});
    await leave().catch(() => {});
    throw e;
  }
}
