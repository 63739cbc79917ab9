// Module buffers: registration, naming, their place in stateDict / loadStateDict (torch's order
// and checks), and that parameters stay parameters only.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BatchNorm2d, Conv2d, cudaDeviceBackend, Flatten, hasBackend, Linear, Module, noGrad, randn, ReLU, Sequential, setBackend, ShapeError, Tensor, tensor, zeros } from '../../src/tensor/index.js';
import { cudaAvailable, cudaEmulatedDevice } from '../../src/tensor/cuda.js';
import { packageRoot } from '../../src/tensor/native.js';

class Scaler extends Module {
  readonly scale: Tensor;
  readonly count: Tensor;
  constructor() {
    super();
    this.scale = this.registerParameter('scale', zeros([2]));
    this.count = this.registerBuffer('count', zeros([1]));
  }
  forward(x: Tensor): Tensor {
    return x;
  }
  tryRegister(name: string, t: Tensor): void {
    this.registerBuffer(name, t);
  }
}

function model(): Sequential {
  return new Sequential(new Conv2d(1, 2, 3, { seed: 1 }), new BatchNorm2d(2), new ReLU(), new Flatten(), new Linear(8, 2, { seed: 2 }));
}

test('buffers are named by path like parameters, but are not parameters and never require grad', (t) => {
  const m = new Sequential(new Scaler(), new Sequential(new ReLU(), new Scaler()));
  t.deepEqual(m.namedBuffers().map(([n]) => n), ['0.count', '1.1.count']);
  t.deepEqual(m.namedBuffers('net.').map(([n]) => n), ['net.0.count', 'net.1.1.count']);
  t.is(m.buffers().length, 2);
  t.deepEqual(m.namedParameters().map(([n]) => n), ['0.scale', '1.1.scale']);
  t.is(m.parameterCount(), 4);
  t.true(m.buffers().every((b) => !b.requiresGrad));
  const s = new Scaler();
  t.throws(() => s.tryRegister('count', zeros([1])), { instanceOf: RangeError, message: /'count' is already registered/ });
  t.throws(() => s.tryRegister('scale', zeros([1])), { instanceOf: RangeError, message: /'scale' is already registered/ });
  t.throws(() => s.tryRegister('g', zeros([1], { requiresGrad: true })), { instanceOf: RangeError, message: /buffer 'g' requires grad/ });
  t.throws(() => s.tryRegister('i', tensor(new Int32Array(1)) as unknown as Tensor), { message: /buffer 'i' has dtype int32; expected float32/ });
});

test('stateDict holds parameters and buffers in torch\'s order: module by module, parameters then buffers', (t) => {
  const m = model();
  t.deepEqual([...m.stateDict().keys()], [
    '0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked', '4.weight', '4.bias',
  ]);
  t.deepEqual(m.namedParameters().map(([n]) => n), ['0.weight', '0.bias', '1.weight', '1.bias', '4.weight', '4.bias']);
  t.deepEqual(Array.from(m.stateDict().get('1.running_var')!), [1, 1]);
});

test('a stateDict round trip carries the running statistics: the loaded model evaluates identically', (t) => {
  const a = model(), b = model();
  for (let i = 0; i < 3; i++) a.forward(randn([4, 1, 4, 4], { seed: i, mean: 1 }));
  const state = a.stateDict();
  t.is(state.get('1.num_batches_tracked')![0], 3);
  state.get('1.running_mean')![0] = 1234; // a copy: the model is unchanged
  t.not(a.namedBuffers()[0]![1].data[0], 1234);
  b.loadStateDict(a.stateDict());
  a.eval();
  b.eval();
  const x = randn([2, 1, 4, 4], { seed: 9 });
  t.deepEqual(Array.from(noGrad(() => b.forward(x)).data), Array.from(noGrad(() => a.forward(x)).data));
  t.deepEqual(b.buffers().map((v) => Array.from(v.data)), a.buffers().map((v) => Array.from(v.data)));
});

test('loadStateDict refuses a missing or unknown name or a wrong length, parameters and buffers alike, before writing anything', (t) => {
  const a = model(), b = model();
  a.forward(randn([4, 1, 4, 4], { seed: 1 }));
  const before = [...b.stateDict().values()].map((v) => Array.from(v));
  const good = a.stateDict();
  const without = new Map(good);
  without.delete('1.running_var');
  t.throws(() => b.loadStateDict(without), { instanceOf: RangeError, message: /loadStateDict: buffer '1.running_var' is missing/ });
  const noWeight = new Map(good);
  noWeight.delete('4.weight');
  t.throws(() => b.loadStateDict(noWeight), { instanceOf: RangeError, message: /loadStateDict: parameter '4.weight' is missing/ });
  t.throws(() => b.loadStateDict(new Map([...good, ['1.running_std', new Float32Array(2)]])), { instanceOf: RangeError, message: /unknown parameter '1.running_std'/ });
  t.throws(() => b.loadStateDict(new Map([...good, ['1.num_batches_tracked', new Float32Array(2)]])), { instanceOf: ShapeError, message: /loadStateDict: got shapes \[1\], \[2\]; expected 1 values for '1.num_batches_tracked'/ });
  t.throws(() => b.loadStateDict({ ...Object.fromEntries(good), '1.running_mean': [0, 0] as unknown as Float32Array }), { instanceOf: TypeError, message: /'1.running_mean' must be a Float32Array/ });
  t.deepEqual([...b.stateDict().values()].map((v) => Array.from(v)), before);
});

const emuBuilt = existsSync(join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda_device_emu.node'));
const onDevice = cudaAvailable() || emuBuilt ? test : test.skip;

onDevice('to(device) moves buffers with the parameters, and back, keeping their values and objects', (t) => {
  if (!cudaAvailable() && !hasBackend('cuda')) setBackend(cudaDeviceBackend(cudaEmulatedDevice()));
  const m = model();
  m.forward(randn([4, 1, 4, 4], { seed: 1 }));
  const state = m.stateDict();
  const [mean] = m.buffers();
  m.to('cuda');
  t.true(m.buffers().every((b) => b.device === 'cuda') && m.parameters().every((p) => p.device === 'cuda'));
  t.is(m.buffers()[0], mean, 'the same tensor object');
  t.deepEqual([...m.stateDict()].map(([k, v]) => [k, Array.from(v)]), [...state].map(([k, v]) => [k, Array.from(v)]), 'stateDict downloads buffers too');
  m.to('cpu');
  t.true(m.buffers().every((b) => b.device === 'cpu'));
  t.deepEqual(Array.from(mean!.data), Array.from(state.get('1.running_mean')!));
});
