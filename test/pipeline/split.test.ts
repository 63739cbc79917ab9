// Cutting a Sequential into stages: the balances, the cut by hand, the boundary shapes, the refusals.
import test from 'ava';
import { planPipeline, stageModule } from '../../src/pipeline/index.js';
import { Conv2d, Flatten, Linear, MaxPool2d, mlp, ReLU, Sequential } from '../../src/tensor/index.js';

test('flops balance the target MLP 784-512x4-10 into two equal halves (the first layer computes no input gradient)', (t) => {
  const m = mlp([784, 512, 512, 512, 512, 10]);
  const plan = planPipeline(m, 2, { inputShape: [784] });
  t.deepEqual(plan.stages.map((s) => [s.first, s.end]), [[0, 4], [4, 9]]);
  t.deepEqual(plan.stages.map((s) => s.parameters), [401920 + 262656, 262656 + 262656 + 5130]);
  t.deepEqual(plan.shapes, [[784], [512], [10]]);
  t.is(plan.balance, 'flops');
  // forward 2 x MACs, backward 1x (first layer) or 2x forward: 2*784*512*2 + 2*512*512*3 + ReLU's element counts
  t.is(plan.stages[0]!.flops, 2 * 784 * 512 * 2 + 2 * 512 * 512 * 3 + 2 * 512 * 2);
});

test('params balance counts parameters; flops see that convolutions dominate the work of a CNN', (t) => {
  const cnn = () => new Sequential(new Conv2d(1, 16, 5, { padding: 2 }), new ReLU(), new MaxPool2d(2), new Conv2d(16, 32, 5, { padding: 2 }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(1568, 128), new ReLU(), new Linear(128, 10));
  const byParams = planPipeline(cnn(), 2, { inputShape: [1, 28, 28], balance: 'params' });
  const byFlops = planPipeline(cnn(), 2, { inputShape: [1, 28, 28], balance: 'flops' });
  // the Linear(1568, 128) holds most parameters: by parameters it gets a stage of its own
  t.deepEqual(byParams.stages.map((s) => [s.first, s.end]), [[0, 7], [7, 10]]);
  // the second convolution is most of the FLOPs: by FLOPs it is cut off the first one
  t.deepEqual(byFlops.stages.map((s) => [s.first, s.end]), [[0, 3], [3, 10]]);
  t.deepEqual(byFlops.shapes, [[1, 28, 28], [16, 14, 14], [10]]);
});

test('--split cuts where it is told, at any child', (t) => {
  const m = mlp([8, 6, 6, 4]);
  const plan = planPipeline(m, 3, { inputShape: [8], split: [1, 4] });
  t.deepEqual(plan.stages.map((s) => [s.first, s.end]), [[0, 1], [1, 4], [4, 5]]);
  t.is(plan.balance, 'split');
  t.deepEqual(plan.shapes, [[8], [6], [6], [4]]);
  const s1 = stageModule(m, plan, 1);
  t.is(s1.length, 3);
  t.is(s1.parameters()[0], m.parameters()[2], 'a stage shares the model\'s own parameters');
});

test('impossible cuts are refused with one line naming what is wrong', (t) => {
  const m = () => mlp([8, 6, 6, 4]); // children 0 Linear, 1 ReLU, 2 Linear, 3 ReLU, 4 Linear
  t.throws(() => planPipeline(m(), 4, { inputShape: [8] }), { message: '--stages 4: the model has 3 layer(s) with parameters (children 0: Linear, 2: Linear, 4: Linear), so at most 3 stage(s)' });
  t.throws(() => planPipeline(m(), 2, { inputShape: [8], split: [0] }), { message: /--split 0: 0 is not a valid start of stage 1 \(stage 0 would be empty\)/ });
  t.throws(() => planPipeline(m(), 3, { inputShape: [8], split: [2, 2] }), { message: /--split 2,2: 2 is not a valid start of stage 2 \(stage 1 would be empty\)/ });
  t.throws(() => planPipeline(m(), 3, { inputShape: [8], split: [3, 2] }), { message: /the indices must increase/ });
  t.throws(() => planPipeline(m(), 2, { inputShape: [8], split: [5] }), { message: /stage 1 would be empty/ });
  t.throws(() => planPipeline(m(), 3, { inputShape: [8], split: [2] }), { message: /--split gives 1 index\(es\) for --stages 3: give 2/ });
  t.throws(() => planPipeline(m(), 3, { inputShape: [8], split: [1, 2] }), { message: 'pipeline: stage 1 (children 1: ReLU) has no parameters: move its cut so every stage has a layer with parameters' });
  t.throws(() => planPipeline(new Linear(8, 4), 2, { inputShape: [8] }), { message: /the model must be a Sequential .* got Linear/ });
  t.throws(() => planPipeline(m(), 2, { inputShape: [9] }), { message: /child 0: Linear fails on a sample of shape \[9\]/ });
});
