// The convolutional network's modules: Conv2d (torch's initialisation, per-seed determinism),
// the pooling layers, Flatten, BatchNorm2d's modes and statistics, Sequential's Conv2d + ReLU
// fusion and buffer reuse, and a tiny CNN that learns.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cudaAvailable, cudaEmulatedDevice } from '../../src/tensor/cuda.js';
import { packageRoot } from '../../src/tensor/native.js';
import {
  AvgPool2d, avgPool2d, BatchNorm2d, Conv2d, conv2d, crossEntropy, Flatten, Generator, getBackend, GlobalAvgPool2d, globalAvgPool2d, linear, Linear,
  MaxPool2d, maxPool2d, noGrad, cudaDeviceBackend, hasBackend, randn, relu, ReLU, Sequential, setBackend, SGD, ShapeError, Tensor, type Backend, type Node,
} from '../../src/tensor/index.js';
import { close, refBatchNorm } from './gradcheck.js';

test('Conv2d is initialised like torch: weight and bias in (-1/sqrt(fanIn), 1/sqrt(fanIn)), fanIn = in / groups * kh * kw', (t) => {
  for (const [conv, fanIn] of [[new Conv2d(3, 40, 5, { seed: 1 }), 75], [new Conv2d(8, 40, [3, 2], { groups: 4, seed: 1 }), 12]] as const) {
    const bound = 1 / Math.sqrt(fanIn);
    t.true(conv.weight.data.every((v) => Math.abs(v) < bound), `weights within ${bound}`);
    t.true(conv.bias!.data.every((v) => Math.abs(v) < bound), `biases within ${bound}`);
    t.true(Math.max(...conv.weight.data) - Math.min(...conv.weight.data) > 1.8 * bound, 'weights fill the interval');
    t.true(conv.weight.requiresGrad && conv.bias!.requiresGrad);
  }
  const c = new Conv2d(8, 40, [3, 2], { groups: 4, stride: [2, 1], padding: 1, dilation: 2 });
  t.deepEqual(c.weight.shape, [40, 2, 3, 2]);
  t.deepEqual(c.bias!.shape, [40]);
  t.deepEqual([c.kernelSize, c.stride, c.padding, c.dilation, c.groups], [[3, 2], [2, 1], [1, 1], [2, 2], 4]);
  t.deepEqual(c.namedParameters().map(([n]) => n), ['weight', 'bias']);
  t.is(new Conv2d(2, 3, 3, { bias: false }).bias, null);
});

test('Conv2d draws from its generator: the same seed gives the same model, one generator gives distinct layers', (t) => {
  const build = (seed: number): Sequential => {
    const generator = new Generator(seed);
    return new Sequential(new Conv2d(1, 4, 3, { generator }), new ReLU(), new Conv2d(4, 4, 3, { generator }));
  };
  const values = (m: Sequential): number[][] => m.parameters().map((p) => Array.from(p.data));
  t.deepEqual(values(build(7)), values(build(7)));
  t.notDeepEqual(values(build(7)), values(build(8)));
  const [w1, , w2] = values(build(7));
  t.notDeepEqual(w1!.slice(0, 36), w2!.slice(0, 36), 'the second layer continues the stream');
  t.deepEqual(Array.from(new Conv2d(2, 2, 3, { seed: 3 }).weight.data), Array.from(new Conv2d(2, 2, 3, { seed: 3 }).weight.data));
});

test('Conv2d rejects bad sizes and options when it is built', (t) => {
  t.throws(() => new Conv2d(0, 2, 3), { instanceOf: RangeError, message: /Conv2d: inChannels = 0 is invalid/ });
  t.throws(() => new Conv2d(2, 2.5, 3), { instanceOf: RangeError, message: /outChannels = 2.5/ });
  t.throws(() => new Conv2d(2, 2, 0), { instanceOf: RangeError, message: /Conv2d: kernelSize = 0 is invalid/ });
  t.throws(() => new Conv2d(6, 4, 3, { groups: 3 }), { instanceOf: RangeError, message: /Conv2d: groups = 3 is invalid; expected a divisor of outChannels \(4\)/ });
  t.throws(() => new Conv2d(4, 6, 3, { groups: 3 }), { instanceOf: RangeError, message: /a divisor of inChannels \(4\)/ });
  t.throws(() => new Conv2d(2, 2, 3, { stride: 0 }), { instanceOf: RangeError, message: /Conv2d: stride = 0/ });
  t.throws(() => new Conv2d(2, 2, 3, { padding: [1, -1] }), { instanceOf: RangeError, message: /Conv2d: padding = \[1, -1\]/ });
  t.throws(() => new Conv2d(2, 2, 3).forward(randn([1, 3, 5, 5])), { instanceOf: ShapeError, message: /conv2d: got shapes \[1, 3, 5, 5\], \[2, 2, 3, 3\]; expected input with 2 channels/ });
});

test('Conv2d and the pooling layers compute their ops with their options', (t) => {
  const x = randn([2, 4, 9, 8], { seed: 1 });
  const c = new Conv2d(4, 6, [3, 2], { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 2, seed: 2 });
  t.deepEqual(Array.from(c.forward(x).data), Array.from(conv2d(x, c.weight, c.bias, { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 2 }).data));
  t.deepEqual(Array.from(new MaxPool2d(3, { stride: 2, padding: 1 }).forward(x).data), Array.from(maxPool2d(x, 3, { stride: 2, padding: 1 }).data));
  t.deepEqual(new MaxPool2d(2).forward(x).shape, [2, 4, 4, 4]);
  t.deepEqual(Array.from(new AvgPool2d([2, 3], { stride: 1, padding: [1, 1], countIncludePad: false }).forward(x).data),
    Array.from(avgPool2d(x, [2, 3], { stride: 1, padding: [1, 1], countIncludePad: false }).data));
  t.deepEqual(Array.from(new GlobalAvgPool2d().forward(x).data), Array.from(globalAvgPool2d(x).data));
  t.throws(() => new MaxPool2d(2, { padding: 2 }), { instanceOf: RangeError, message: /MaxPool2d: padding = \[2, 2\] is invalid/ });
  t.throws(() => new AvgPool2d(0), { instanceOf: RangeError, message: /AvgPool2d: kernelSize = 0/ });
  t.throws(() => new AvgPool2d(2, { countIncludePad: 0 as unknown as boolean }), { instanceOf: RangeError, message: /AvgPool2d: countIncludePad = 0/ });
});

test('Flatten is a view: [n, ...] to [n, rest] on the same storage, gradients flow through; startDim and endDim as torch', (t) => {
  const x = randn([2, 3, 4, 5], { seed: 1, requiresGrad: true });
  const y = new Flatten().forward(x);
  t.deepEqual(y.shape, [2, 60]);
  t.is(y.storage, x.storage, 'no copy');
  y.backward(new Float32Array(120).fill(2));
  t.true(x.grad!.data.every((v) => v === 2));
  t.deepEqual(new Flatten(0).forward(x).shape, [120]);
  t.deepEqual(new Flatten(1, 2).forward(x).shape, [2, 12, 5]);
  t.deepEqual(new Flatten(-2).forward(x).shape, [2, 3, 20]);
  t.is(new Flatten().forward(randn([4, 7])).shape[1], 7);
  t.throws(() => new Flatten(2, 1).forward(x), { instanceOf: ShapeError, message: /Flatten: got shape \[2, 3, 4, 5\]/ });
  t.throws(() => new Flatten().forward(randn([4])), { instanceOf: ShapeError });
  t.throws(() => new Flatten(1.5), { instanceOf: RangeError, message: /Flatten: startDim = 1.5/ });
});

test('BatchNorm2d has torch\'s parameters and buffers; training updates the running statistics and counts batches; eval uses them', (t) => {
  const bn = new BatchNorm2d(3, { momentum: 0.2 });
  t.deepEqual(bn.namedParameters().map(([n, p]) => `${n}:${Array.from(p.data)}`), ['weight:1,1,1', 'bias:0,0,0']);
  t.deepEqual(bn.namedBuffers().map(([n, p]) => `${n}:${Array.from(p.data)}`), ['running_mean:0,0,0', 'running_var:1,1,1', 'num_batches_tracked:0']);
  const x = randn([4, 3, 2, 2], { seed: 1, mean: 2, std: 3 });
  bn.weight!.data.set([1, 2, 0.5]);
  bn.bias!.data.set([0, -1, 1]);
  const y = bn.forward(x);
  close(t, y.data, refBatchNorm(x.data, bn.weight!.data, bn.bias!.data, 4, 3, 4, 1e-5), 1e-5, 'training: batch statistics');
  t.is(bn.numBatchesTracked!.data[0], 1);
  t.true(bn.runningMean!.data.every((v) => Math.abs(v) > 0.05), 'running mean moved toward the batch mean (about 2)');
  bn.forward(x);
  t.is(bn.numBatchesTracked!.data[0], 2);
  bn.eval();
  const stats = { mean: bn.runningMean!.data.slice(), var: bn.runningVar!.data.slice() };
  const e = bn.forward(x);
  close(t, e.data, refBatchNorm(x.data, bn.weight!.data, bn.bias!.data, 4, 3, 4, 1e-5, stats), 1e-5, 'eval: running statistics');
  t.deepEqual(Array.from(bn.runningMean!.data), Array.from(stats.mean), 'eval changes nothing');
  t.is(bn.numBatchesTracked!.data[0], 2);
  t.throws(() => bn.forward(randn([2, 4, 2, 2])), { instanceOf: ShapeError, message: /BatchNorm2d: got shape \[2, 4, 2, 2\]; expected input of shape \[batch, 3, height, width\]/ });
  t.throws(() => bn.forward(randn([2, 3])), { instanceOf: ShapeError });
});

test('BatchNorm2d with momentum null keeps a cumulative average; without running statistics it always uses the batch', (t) => {
  const bn = new BatchNorm2d(2, { momentum: null, affine: false });
  t.is(bn.parameters().length, 0);
  const xs = [1, 2, 3].map((s) => randn([3, 2, 2, 2], { seed: s, mean: s }));
  for (const x of xs) bn.forward(x);
  const means = xs.map((x) => [0, 1].map((c) => {
    let s = 0;
    for (let b = 0; b < 3; b++) for (let i = 0; i < 4; i++) s += x.data[(b * 2 + c) * 4 + i]!;
    return s / 12;
  }));
  for (let c = 0; c < 2; c++) t.true(Math.abs(bn.runningMean!.data[c]! - (means[0]![c]! + means[1]![c]! + means[2]![c]!) / 3) < 1e-5, `channel ${c}: the plain mean of the batch means`);
  const free = new BatchNorm2d(2, { trackRunningStats: false }).eval();
  t.deepEqual(free.namedBuffers(), []);
  close(t, free.forward(xs[0]!).data, refBatchNorm(xs[0]!.data, null, null, 3, 2, 4, 1e-5), 1e-5, 'eval without running statistics normalises with the batch');
  t.throws(() => new BatchNorm2d(0), { instanceOf: RangeError, message: /BatchNorm2d: numFeatures = 0/ });
  t.throws(() => new BatchNorm2d(2, { momentum: 2 }), { instanceOf: RangeError, message: /BatchNorm2d: momentum = 2/ });
  t.throws(() => new BatchNorm2d(2, { eps: -1 }), { instanceOf: RangeError, message: /BatchNorm2d: eps = -1/ });
});

/** The names of the nodes from `out` back to the first op, following each node's first tracked input. */
function chain(out: Tensor): string[] {
  const names: string[] = [];
  let node: Node | null = out.gradFn;
  while (node) {
    names.push(node.name);
    node = node.inputs.find((i) => i !== null)?.gradFn ?? null;
  }
  return names;
}

function cnn(seed: number): Sequential {
  const generator = new Generator(seed);
  return new Sequential(
    new Conv2d(1, 4, 3, { padding: 1, generator }), new ReLU(), new MaxPool2d(2),
    new Conv2d(4, 6, 3, { padding: 1, generator }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(6 * 2 * 2, 8, { generator }), new ReLU(), new Linear(8, 3, { generator }),
  );
}

test('Sequential fuses the stock Conv2d + ReLU into conv2dRelu and trains exactly like the ops called one by one', (t) => {
  const a = cnn(3), b = cnn(3);
  const p = b.parameters();
  const optA = new SGD(a.parameters(), { lr: 0.05, momentum: 0.9 }), optB = new SGD(p, { lr: 0.05, momentum: 0.9 });
  const labels = Int32Array.from([0, 1, 2, 1, 0]);
  for (let step = 0; step < 3; step++) {
    const x = randn([5, 1, 8, 8], { seed: 20 + step });
    const outA = a.forward(x);
    if (step === 0) t.deepEqual(chain(outA), ['linear', 'linearRelu', 'reshape', 'maxPool2d', 'conv2dRelu', 'maxPool2d', 'conv2dRelu']);
    let h = maxPool2d(relu(conv2d(x, p[0]!, p[1]!, { padding: 1 })), 2);
    h = maxPool2d(relu(conv2d(h, p[2]!, p[3]!, { padding: 1 })), 2);
    const logitsB = linear(relu(linear(h.reshape([5, 24]), p[4]!, p[5]!)), p[6]!, p[7]!);
    const la = crossEntropy(outA, labels), lb = crossEntropy(logitsB, labels);
    t.is(la.item(), lb.item(), `loss at step ${step}`);
    optA.zeroGrad();
    optB.zeroGrad();
    la.backward();
    lb.backward();
    optA.step();
    optB.step();
  }
  a.parameters().forEach((q, i) => t.deepEqual(Array.from(q.data), Array.from(p[i]!.data), `parameter ${i}`));
  class LoudConv extends Conv2d {
    override forward(x: Tensor): Tensor {
      return conv2d(x, this.weight, this.bias, this);
    }
  }
  const custom = new Sequential(new LoudConv(1, 2, 3), new ReLU());
  t.deepEqual(chain(custom.forward(randn([1, 1, 4, 4]))), ['relu', 'conv2d'], 'a subclass with its own forward is not fused');
});

test('a cnn step takes only buffers the pool issued before: no allocation per batch once warm', (t) => {
  const base = getBackend('cpu');
  const seen = new Set<unknown>();
  let ints = 0, zeros = 0;
  const fresh: number[] = [];
  const counting: Backend = {
    ...base,
    take(n) {
      const buf = base.take(n);
      if (!seen.has(buf)) {
        seen.add(buf);
        fresh.push(n);
      }
      return buf;
    },
    allocInt(n) {
      ints++;
      return base.allocInt(n);
    },
    zeros(n) {
      zeros++;
      return base.zeros(n);
    },
  };
  setBackend(counting);
  try {
    const model = cnn(1);
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const x = randn([6, 1, 8, 8], { seed: 2 }), labels = Int32Array.from([0, 1, 2, 0, 1, 2]);
    const step = (): number => {
      const loss = crossEntropy(model.forward(x), labels);
      opt.zeroGrad();
      loss.backward();
      opt.step();
      return loss.item();
    };
    step();
    step();
    const warm = [fresh.length, ints, zeros];
    for (let i = 0; i < 3; i++) step();
    // The one new buffer per step is the logits: Sequential hands its output to the caller, who
    // may keep it, so it never goes back to the pool.
    t.deepEqual(fresh.slice(warm[0]), [18, 18, 18], 'fresh pooled buffers after warm-up: only the returned logits [6, 3]');
    t.deepEqual([ints, zeros], warm.slice(1), 'index buffers and gradient buffers after warm-up');
    t.true(warm[1]! > 0, 'the index buffers did come from allocInt');
  } finally {
    setBackend(base);
  }
});

test('a tiny cnn (Conv2d, ReLU, MaxPool2d, Flatten, Linear) trained with SGD on a fixed batch lowers its loss', (t) => {
  const generator = new Generator(11);
  const model = new Sequential(
    new Conv2d(1, 4, 3, { padding: 1, generator }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(4 * 4 * 4, 3, { generator }),
  );
  // Three classes of 8x8 images: a bright top half, left half, or diagonal, plus noise.
  const n = 12, data = randn([n, 1, 8, 8], { seed: 5, std: 0.3 });
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
      const on = labels[i] === 0 ? y < 4 : labels[i] === 1 ? x < 4 : Math.abs(x - y) <= 1;
      if (on) data.data[i * 64 + y * 8 + x]! += 1;
    }
  }
  const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  const losses: number[] = [];
  for (let step = 0; step < 30; step++) {
    const loss = crossEntropy(model.forward(data), labels);
    losses.push(loss.item());
    opt.zeroGrad();
    loss.backward();
    opt.step();
  }
  t.true(losses[29]! < 0.25 * losses[0]!, `loss ${losses[0]} -> ${losses[29]}`);
  const predicted = noGrad(() => model.forward(data));
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const row = Array.from(predicted.data.subarray(i * 3, i * 3 + 3));
    if (row.indexOf(Math.max(...row)) === labels[i]) correct++;
  }
  t.is(correct, n);
});

const emuBuilt = existsSync(join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda_device_emu.node'));
const onDevice = cudaAvailable() || emuBuilt ? test : test.skip;

onDevice('a cnn with every layer (grouped conv, batch norm, both poolings) trains on device \'cuda\' as on the CPU, buffers included', (t) => {
  if (!cudaAvailable() && !hasBackend('cuda')) setBackend(cudaDeviceBackend(cudaEmulatedDevice()));
  const build = (): Sequential => {
    const generator = new Generator(0);
    return new Sequential(
      new Conv2d(2, 4, 3, { padding: 1, generator }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2),
      new Conv2d(4, 4, 3, { padding: 1, groups: 2, generator }), new ReLU(), new AvgPool2d(2, { stride: 1, padding: 1 }),
      new GlobalAvgPool2d(), new Flatten(), new Linear(4, 3, { generator }),
    );
  };
  const cpu = build(), dev = build().to('cuda');
  const x = randn([4, 2, 6, 6], { seed: 1 }), xd = x.to('cuda'), labels = Int32Array.from([0, 1, 2, 0]);
  const oc = new SGD(cpu.parameters(), { lr: 0.1, momentum: 0.9 }), od = new SGD(dev.parameters(), { lr: 0.1, momentum: 0.9 });
  for (let s = 0; s < 3; s++) {
    const lc = crossEntropy(cpu.forward(x), labels), ld = crossEntropy(dev.forward(xd), labels);
    t.true(Math.abs(lc.item() - ld.item()) < 1e-5, `loss at step ${s}: ${lc.item()} vs ${ld.item()}`);
    oc.zeroGrad();
    od.zeroGrad();
    lc.backward();
    ld.backward();
    oc.step();
    od.step();
  }
  const want = cpu.stateDict(), got = dev.stateDict();
  t.deepEqual([...got.keys()], [...want.keys()]);
  for (const [k, v] of want) close(t, got.get(k)!, v, 1e-5, k);
  cpu.eval();
  dev.eval();
  close(t, dev.forward(xd).toTypedArray(), cpu.forward(x).data, 1e-5, 'evaluation with the running statistics');
});

test('Sequential keeps an intermediate that needs no gradient alive while a later node saved it (a layer in front of Conv2d)', (t) => {
  const m = new Sequential(new AvgPool2d(2), new Conv2d(2, 2, 3, { padding: 1, seed: 1 }));
  const [w] = m.parameters();
  const x1 = randn([1, 2, 4, 4], { seed: 1 }), x2 = randn([1, 2, 4, 4], { seed: 2 });
  const y1 = m.forward(x1);
  m.forward(x2); // a second forward before the first backward (gradient accumulation) must not reuse x1's pooled activation
  y1.backward(new Float32Array(8).fill(1));
  const want = conv2d(avgPool2d(x1, 2), w!.detach().setRequiresGrad(true), null, { padding: 1 });
  const wRef = want.gradFn!.inputs[1]!;
  want.backward(new Float32Array(8).fill(1));
  close(t, w!.grad!.data, wRef.grad!.data, 1e-6, 'weight gradient');
});
