// Pipeline stages in one process (localLinks) against the unsplit model: the gradients of a batch
// and the parameters after an SGD step, for K = 2, 3 stages and M = 1, 2, 4, 5 micro-batches,
// both schedules, with and without recomputation.
import test from 'ava';
import { localLinks, PipelineStage, planPipeline, stageModule, type ScheduleName, type StageLink } from '../../src/pipeline/index.js';
import { createOptimizer, crossEntropy, Dropout, Generator, Linear, mlp, ReLU, Sequential, Tensor } from '../../src/tensor/index.js';

const N = 10;
const FEATURES = 12;
const CLASSES = 5;

function batch(seed: number): { x: Float32Array; y: Int32Array } {
  const g = new Generator(seed);
  const x = new Float32Array(N * FEATURES);
  g.fillUniform(x, -1, 1);
  const y = Int32Array.from({ length: N }, (_, i) => (i * 7 + seed) % CLASSES);
  return { x, y };
}

/** 12-16-16-16-5 with a dropout layer: 4 layers with parameters. */
function model(dropout = false): Sequential {
  if (!dropout) return mlp([FEATURES, 16, 16, 16, CLASSES], { seed: 5 });
  const g = new Generator(5);
  return new Sequential(new Linear(FEATURES, 16, { generator: g }), new ReLU(), new Dropout(0.3, { seed: 9 }), new Linear(16, 16, { generator: g }), new ReLU(),
    new Dropout(0.2, { seed: 10 }), new Linear(16, 16, { generator: g }), new ReLU(), new Linear(16, CLASSES, { generator: g }));
}

function reference(m: Sequential, b: { x: Float32Array; y: Int32Array }): Float32Array[] {
  const l = crossEntropy(m.forward(new Tensor(b.x, [N, FEATURES])), b.y);
  for (const p of m.parameters()) p.zeroGrad();
  l.backward();
  return m.parameters().map((p) => (p.grad!.data as Float32Array).slice());
}

interface Run {
  grads: Float32Array[];
  losses: number[];
  peaks: number[];
  stages: PipelineStage[];
}

async function pipelined(m: Sequential, K: number, M: number, schedule: ScheduleName, b: { x: Float32Array; y: Int32Array }, recompute = false, links: StageLink[] = localLinks(K)): Promise<Run> {
  const plan = planPipeline(m, K, { inputShape: [FEATURES] });
  const stages = plan.stages.map((_, k) => new PipelineStage({
    module: stageModule(m, plan, k), index: k, stages: K, micro: M, schedule,
    inShape: plan.shapes[k]!, outShape: plan.shapes[k + 1]!, link: links[k]!, recompute,
    ...(k === K - 1 ? { loss: (o: Tensor, y) => crossEntropy(o, y) } : {}),
  }));
  for (const p of m.parameters()) p.zeroGrad();
  const figures = await Promise.all(stages.map((s, k) => s.runBatch({ size: N, ...(k === 0 ? { x: b.x } : {}), ...(k === K - 1 ? { y: b.y } : {}) })));
  return { grads: m.parameters().map((p) => (p.grad!.data as Float32Array).slice()), losses: figures.map((f) => f.loss), peaks: figures.map((f) => f.peakActivationBytes), stages };
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, j) => { d = Math.max(d, Math.abs(v - b[i]![j]!)); }));
  return d;
}

for (const schedule of ['gpipe', '1f1b'] as const) {
  for (const K of [2, 3]) {
    for (const M of [1, 2, 4, 5]) {
      test(`${schedule}, ${K} stages, ${M} micro-batches: the batch's gradients and the parameters after a step equal the unsplit model's`, async (t) => {
        const b = batch(K * 10 + M);
        const whole = model();
        const ref = reference(whole, b);
        const refLoss = crossEntropy(whole.forward(new Tensor(b.x, [N, FEATURES])), b.y).item();
        const split = model();
        const run = await pipelined(split, K, M, schedule, b);
        t.true(maxDiff(run.grads, ref) < 1e-6, `max |grad difference| ${maxDiff(run.grads, ref)}`);
        // every stage learned the batch's loss from the gradient messages
        for (const l of run.losses) t.true(Math.abs(l - refLoss) < 1e-5, `loss ${l} vs ${refLoss}`);
        // one SGD step on each side: equal parameters
        createOptimizer(whole.parameters(), { kind: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0 }).step();
        createOptimizer(split.parameters(), { kind: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0 }).step();
        const after = (m: Sequential) => m.parameters().map((p) => p.data as Float32Array);
        t.true(maxDiff(after(split), after(whole)) < 1e-7);
      });
    }
  }
}

test('dropout masks of micro-batches are the whole batch\'s, with and without recomputation', async (t) => {
  const b = batch(3);
  const ref = reference(model(true), b);
  for (const recompute of [false, true]) {
    for (const schedule of ['gpipe', '1f1b'] as const) {
      const run = await pipelined(model(true), 3, 4, schedule, b, recompute);
      t.true(maxDiff(run.grads, ref) < 1e-6, `${schedule} recompute=${recompute}: ${maxDiff(run.grads, ref)}`);
    }
  }
});

test("1F1B holds fewer micro-batches' activations than GPipe: stage i at most K - i", async (t) => {
  const K = 3, M = 5;
  const g = await pipelined(model(), K, M, 'gpipe', batch(1));
  const f = await pipelined(model(), K, M, '1f1b', batch(1));
  for (let i = 0; i < K - 1; i++) t.true(f.peaks[i]! < g.peaks[i]!, `stage ${i}: 1f1b ${f.peaks[i]} vs gpipe ${g.peaks[i]}`);
  // the last stage runs each backward right after its forward under 1F1B
  t.true(f.peaks[K - 1]! < g.peaks[K - 1]!);
  // GPipe's peak is all M micro-batches, 1F1B's (K - i) of them: micro-batches here are 2 samples each, equal in size
  for (let i = 0; i < K; i++) t.is(f.peaks[i]! * M, g.peaks[i]! * (K - i));
});

test('recomputation holds only inputs and outputs between forward and backward', async (t) => {
  const plain = await pipelined(model(), 2, 5, 'gpipe', batch(2));
  const re = await pipelined(model(), 2, 5, 'gpipe', batch(2), true);
  for (let i = 0; i < 2; i++) t.true(re.peaks[i]! < plain.peaks[i]!, `stage ${i}: ${re.peaks[i]} vs ${plain.peaks[i]}`);
});

test('a batch smaller than the micro-batch count is refused with one line', async (t) => {
  const m = model();
  const plan = planPipeline(m, 2, { inputShape: [FEATURES] });
  const s = new PipelineStage({ module: stageModule(m, plan, 0), index: 0, stages: 2, micro: 4, schedule: '1f1b', inShape: plan.shapes[0]!, outShape: plan.shapes[1]!, link: localLinks(2)[0]! });
  const e = await t.throwsAsync(s.runBatch({ size: 3, x: new Float32Array(3 * FEATURES) }));
  t.regex(e!.message, /batch of 3 sample\(s\) cannot be cut into 4 micro-batches/);
});

test('a failed link fails the stage with its error, and the pending sends do not escape unhandled', async (t) => {
  const links = localLinks(2);
  const failing: StageLink = { send: () => Promise.reject(new Error('peer stage1 is gone')), recv: links[0]!.recv };
  const m = model();
  const plan = planPipeline(m, 2, { inputShape: [FEATURES] });
  const s = new PipelineStage({ module: stageModule(m, plan, 0), index: 0, stages: 2, micro: 2, schedule: '1f1b', inShape: plan.shapes[0]!, outShape: plan.shapes[1]!, link: failing });
  // stage 0 under 1F1B: F0, F1, then waits for the gradient of micro-batch 0, which never comes;
  // the failed sends surface once that wait is given up: here the receive is failed by hand
  const b = batch(4);
  const run = s.runBatch({ size: N, x: b.x });
  await links[1]!.send(new Float32Array(5 * 16 + 1), 0, 1); // a gradient for micro-batch 0
  await links[1]!.send(new Float32Array(5 * 16 + 1), 0, 3);
  const e = await t.throwsAsync(run);
  t.is(e!.message, 'peer stage1 is gone');
});
