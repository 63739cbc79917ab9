// Device-resident tensors: every op forward and backward, the optimizers and an MLP training on
// device 'cuda' tensors, compared with the same computation on the CPU. Without a GPU the
// 'cuda' backend is the device-buffer addon over the SIMT emulation (the same CUDA kernels, run
// thread by thread on host memory); with one, the real addon.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  accuracy, Adam, add, argmax, crossEntropy, customFunction, cudaDeviceBackend, DeviceArray, dropout, flattenParameters, fromArray,
  full, getBackend, linear, linearRelu, logSoftmax, matmul, mean, mlp, mul, nllLoss, noGrad, randn, relu, scalar, setBackend, SGD,
  sum, Tensor, zeros, type Device,
} from '../../src/tensor/index.js';
import { cudaAvailable, cudaEmulatedDevice } from '../../src/tensor/cuda.js';
import { packageRoot } from '../../src/tensor/native.js';

const emuBuilt = existsSync(join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda_device_emu.node'));
if (!cudaAvailable() && emuBuilt) setBackend(cudaDeviceBackend(cudaEmulatedDevice()));
const runs = cudaAvailable() || emuBuilt;
const it = runs ? test : test.skip;

function close(t: { true(v: boolean, m?: string): void }, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  t.true(got.length === want.length, `${what}: length ${got.length} vs ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const ok = Math.abs(got[i]! - want[i]!) <= tol * (1 + Math.abs(want[i]!));
    if (!ok) {
      t.true(false, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
      return;
    }
  }
  t.true(true);
}

it('the cuda backend is registered and names itself', (t) => {
  t.is(getBackend('cuda').device, 'cuda');
  t.regex(getBackend('cuda').name, /^cuda/);
});

it('to() uploads and downloads; .data on a device tensor throws and says how to read it', (t) => {
  const host = randn([3, 4], { seed: 1 });
  const dev = host.to('cuda');
  t.is(dev.device, 'cuda');
  t.true(dev.storage instanceof DeviceArray);
  t.deepEqual(dev.shape, [3, 4]);
  t.is(host.to('cpu'), host, 'to() the same device is the tensor itself');
  t.is(dev.cuda(), dev);
  t.throws(() => dev.data, { message: /lives on 'cuda'.*toTypedArray\(\).*cpu\(\)/ });
  t.throws(() => { dev.data = new Float32Array(12); }, { message: /cuda/ });
  t.deepEqual(Array.from(dev.toTypedArray()), Array.from(host.data));
  t.deepEqual(dev.toArray(), Array.from(host.data));
  const back = dev.cpu();
  t.is(back.device, 'cpu');
  t.deepEqual(Array.from(back.data), Array.from(host.data));
  t.not(back.data, host.data, 'a round trip is a copy');
  t.regex(dev.toString(), /Tensor\(\[3, 4\], float32, cuda, \[/);
  t.is(scalar(2.5, { device: 'cuda' }).item(), 2.5);
  const labels = new Tensor<'int32'>(Int32Array.from([3, -1, 7]), [3], { device: 'cuda' });
  t.is(labels.dtype, 'int32');
  t.deepEqual(labels.toArray(), [3, -1, 7]);
  t.deepEqual(labels.clone().cpu().toArray(), [3, -1, 7]);
});

it('factories build on the device: zeros, full, fromArray, randn match their CPU twins', (t) => {
  t.deepEqual(zeros([5], { device: 'cuda' }).toArray(), [0, 0, 0, 0, 0]);
  t.deepEqual(full([2, 2], -1.5, { device: 'cuda' }).toArray(), [-1.5, -1.5, -1.5, -1.5]);
  t.deepEqual(fromArray([[1, 2], [3, 4]], undefined, { device: 'cuda' }).toArray(), [1, 2, 3, 4]);
  const r = randn([7], { seed: 4, device: 'cuda', requiresGrad: true });
  t.true(r.requiresGrad && r.isLeaf && r.device === 'cuda');
  t.deepEqual(r.toArray(), randn([7], { seed: 4 }).toArray());
  const c = r.clone();
  t.deepEqual(c.toArray(), r.toArray());
  t.not(c.storage, r.storage);
});

it('ops refuse inputs on two devices, naming both', (t) => {
  const a = randn([2, 3], { seed: 1 }), b = randn([2, 3], { seed: 2 }).to('cuda');
  for (const f of [() => add(a, b), () => mul(b, a), () => matmul(a, randn([3, 2], { device: 'cuda' })), () => linear(b, randn([4, 3]))]) {
    t.throws(f, { message: /cpu, cuda|cuda, cpu/ });
  }
  t.throws(() => crossEntropy(b, new Tensor<'int32'>(Int32Array.from([0, 1]))), { message: /on 'cuda' but the labels are on 'cpu'/ });
});

/**
 * Runs `f` on fresh inputs (seeded, so identical on both runs) on `device`; returns the output
 * and every input's gradient after backward with a fixed upstream gradient, all on the host.
 */
function runOp(device: Device, shapes: readonly (readonly number[])[], f: (xs: Tensor[]) => Tensor): { out: Float32Array; grads: Float32Array[] } {
  const xs = shapes.map((s, i) => randn(s, { seed: 10 + i, device, requiresGrad: true }));
  const y = f(xs);
  const out = y.toTypedArray();
  const upstream = y.size === 1 ? undefined : randn(y.shape, { seed: 99, device });
  y.backward(upstream);
  return { out, grads: xs.map((x) => (x.grad === null ? new Float32Array(0) : x.grad.toTypedArray())) };
}

const labels = Int32Array.from([2, 0, 1, 3, 1]);
const cases: [string, (readonly number[])[], (xs: Tensor[]) => Tensor][] = [
  ['linear', [[5, 6], [4, 6], [4]], ([x, w, b]) => linear(x!, w!, b)],
  ['linearRelu', [[5, 6], [4, 6], [4]], ([x, w, b]) => linearRelu(x!, w!, b)],
  ['matmul', [[5, 3], [3, 4]], ([a, b]) => matmul(a!, b!)],
  ['relu', [[4, 5]], ([x]) => relu(x!)],
  ['dropout', [[4, 50]], ([x]) => dropout(x!, { p: 0.3, seed: 7, offset: 11 })],
  ['logSoftmax', [[5, 4]], ([x]) => logSoftmax(x!)],
  ['nllLoss', [[5, 4]], ([x]) => nllLoss(logSoftmax(x!), labels)],
  ['crossEntropy', [[5, 4]], ([x]) => crossEntropy(x!, labels)],
  ['crossEntropy (device labels)', [[5, 4]], ([x]) => crossEntropy(x!, new Tensor<'int32'>(labels, [5], { device: x!.device }))],
  ['add', [[3, 4], [3, 4]], ([a, b]) => add(a!, b!)],
  ['add (same input twice)', [[3, 4]], ([a]) => add(a!, a!)],
  ['add (row broadcast)', [[3, 4], [4]], ([a, b]) => add(a!, b!)],
  ['mul', [[3, 4], [3, 4]], ([a, b]) => mul(a!, b!)],
  ['sum', [[3, 4]], ([x]) => sum(mul(x!, x!))],
  ['mean', [[3, 4]], ([x]) => mean(x!)],
  ['reshape', [[3, 4]], ([x]) => relu(x!.reshape([2, 6]))],
  ['to and back', [[3, 4]], ([x]) => mul(x!.cpu(), x!.cpu()).to(x!.device)],
  ['customFunction', [[3, 4]], ([x]) => customFunction<Tensor>({
    name: 'square',
    forward: ([v], save) => { save(v!); return mul(v!, v!); },
    backward: (g, v) => [mul(add(v!, v!), g)],
  })(x!)],
];

for (const [name, shapes, f] of cases) {
  it(`${name}: forward and backward on cuda tensors match the CPU`, (t) => {
    const cpu = runOp('cpu', shapes, f);
    const dev = runOp('cuda', shapes, f);
    close(t, dev.out, cpu.out, 1e-5, `${name} output`);
    cpu.grads.forEach((g, i) => close(t, dev.grads[i]!, g, 1e-5, `${name} grad ${i}`));
  });
}

it('a gradient accumulates across two backwards on the device; zeroGrad(false) fills zeros there', (t) => {
  const w = randn([4], { seed: 3, device: 'cuda', requiresGrad: true });
  sum(mul(w, w)).backward();
  sum(mul(w, w)).backward();
  close(t, w.grad!.toTypedArray(), w.toTypedArray().map((v) => 4 * v), 1e-6, 'accumulated grad');
  w.zeroGrad(false);
  t.deepEqual(w.grad!.toArray(), [0, 0, 0, 0]);
  w.zeroGrad();
  t.is(w.grad, null);
  sum(w).backward();
  t.deepEqual(w.grad!.toArray(), [1, 1, 1, 1]);
});

it('bad labels on the device are refused before anything runs', (t) => {
  const x = randn([2, 3], { seed: 1, device: 'cuda', requiresGrad: true });
  t.throws(() => crossEntropy(x, Int32Array.from([0, 3])), { message: /labels\[1\] = 3/ });
  t.throws(() => crossEntropy(x, new Tensor<'int32'>(Int32Array.from([0, 3]), [2], { device: 'cuda' })), { instanceOf: RangeError });
  t.is(x.grad, null);
});

/** A few steps of an MLP with dropout on `device`; returns the parameters and losses on the host. */
function train(device: Device, makeOpt: (p: Tensor[]) => SGD | Adam): { params: Float32Array[]; losses: number[]; acc: number } {
  const model = mlp([6, 8, 8, 3], { seed: 5, dropout: 0.2 }).to(device);
  const opt = makeOpt(model.parameters());
  const y = Int32Array.from([0, 1, 2, 0, 1, 2, 0]);
  const losses: number[] = [];
  for (let s = 0; s < 4; s++) {
    const x = randn([7, 6], { seed: s, device });
    const loss = crossEntropy(model.forward(x), y);
    opt.zeroGrad();
    loss.backward();
    opt.step();
    losses.push(loss.item());
  }
  const acc = noGrad(() => accuracy(model.eval().forward(randn([7, 6], { seed: 0, device })), y));
  return { params: model.parameters().map((p) => p.toTypedArray()), losses, acc };
}

for (const [name, makeOpt] of [
  ['SGD with momentum and weight decay', (p: Tensor[]) => new SGD(p, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 })],
  ['Adam', (p: Tensor[]) => new Adam(p, { lr: 0.01 })],
] as const) {
  it(`an MLP trains on cuda tensors with ${name} exactly as on the CPU`, (t) => {
    const cpu = train('cpu', makeOpt);
    const dev = train('cuda', makeOpt);
    close(t, dev.losses, cpu.losses, 1e-5, 'losses');
    cpu.params.forEach((p, i) => close(t, dev.params[i]!, p, 1e-4, `param ${i}`));
    t.is(dev.acc, cpu.acc);
  });
}

it('the optimizers keep device state apart from the host state', (t) => {
  const w = randn([4], { seed: 1, device: 'cuda', requiresGrad: true });
  const opt = new SGD([w], { lr: 0.1, momentum: 0.5 });
  sum(w).backward();
  opt.step();
  t.is(opt.state.size, 0);
  t.true(opt.deviceState.get(w)!.momentumBuffer instanceof DeviceArray);
});

it('Module.to moves parameters in place; stateDict downloads, loadStateDict uploads; flattenParameters refuses device parameters', (t) => {
  const model = mlp([3, 4, 2], { seed: 2 });
  const w = model.parameters()[0]!;
  const before = model.stateDict();
  t.is(model.to('cuda'), model);
  t.is(model.parameters()[0], w, 'the same parameter object');
  t.is(w.device, 'cuda');
  t.true(w.requiresGrad && w.isLeaf);
  const state = model.stateDict();
  for (const [k, v] of before) t.deepEqual(Array.from(state.get(k)!), Array.from(v));
  const zeroed = new Map([...state].map(([k, v]) => [k, new Float32Array(v.length)]));
  model.loadStateDict(zeroed);
  t.deepEqual(w.toArray(), new Array(w.size).fill(0));
  t.throws(() => flattenParameters(model), { message: /on 'cuda'; flat buffers are host memory/ });
  model.to('cpu');
  t.is(w.device, 'cpu');
  t.true(w.data instanceof Float32Array);
});

it('argmax and accuracy read a device tensor back', (t) => {
  const x = fromArray([[0, 3, 1], [5, 0, 1]]);
  t.deepEqual(Array.from(argmax(x.to('cuda'))), Array.from(argmax(x)));
  t.is(accuracy(x.to('cuda'), Int32Array.from([1, 2])), 0.5);
});

it('a cuda tensor sent over RPC crosses as its values and arrives as a CPU tensor', async (t) => {
  const { decode, encode, flatten } = await import('../../src/rpc/codec.js');
  const host = randn([4, 3], { seed: 9 });
  const msg = { w: host.to('cuda'), step: 3 };
  const got = decode(flatten(encode(msg, { worker: 'test' })), { worker: 'test' }) as { w: Tensor; step: number };
  t.is(got.step, 3);
  t.true(got.w instanceof Tensor);
  t.is(got.w.device, 'cpu');
  t.deepEqual(got.w.shape, [4, 3]);
  t.deepEqual(Array.from(got.w.data), Array.from(host.data));
});
