// --device: 'auto' uses CUDA only when a device is present, 'cuda' without one is refused with a
// clear message, and the local trainer trains with cuda tensors (here on the SIMT-emulated
// device addon, registered as the 'cuda' backend) exactly as it does on the CPU.
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cudaAvailable, cudaEmulatedDevice } from '../../src/tensor/cuda.js';
import { cudaDeviceBackend, randn, resetBackend, setBackend, zeros } from '../../src/tensor/index.js';
import { packageRoot } from '../../src/tensor/native.js';
import { resolveOptions } from '../../src/trainer/options.js';
import { chooseDevice } from '../../src/trainer/setup.js';
import { trainLocal } from '../../src/trainer/local.js';
// hogwild's options below: the strategies as the commands see them (hogwild registers its entry)
import '../../src/cli/strategies.js';

const emuBuilt = existsSync(join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda_device_emu.node'));
const quiet = { log: () => {} };

(cudaAvailable() ? test.serial.skip : test.serial)('without a CUDA device: auto picks the CPU, cuda exits with a clear message', (t) => {
  const lines: string[] = [];
  t.is(chooseDevice(resolveOptions({ device: 'auto' }), (l) => lines.push(l), { cuda: true }), 'cpu');
  t.is(chooseDevice(resolveOptions({ device: 'cpu' }), (l) => lines.push(l), { cuda: true }), 'cpu');
  t.deepEqual(lines, []);
  t.throws(() => chooseDevice(resolveOptions({ device: 'cuda' }), () => {}, { cuda: true }), { message: /--device cuda: CUDA is not available on this machine: .*Use --device cpu or --device auto/ });
  t.throws(() => chooseDevice(resolveOptions({ device: 'cuda', strategy: 'hogwild' }), () => {}), { message: /--device cuda: CUDA is not available/ });
  // The tensor layer says the same when asked for a cuda tensor.
  t.throws(() => zeros([2], { device: 'cuda' }), { message: /CUDA is not available/ });
  t.throws(() => randn([2]).to('cuda'), { message: /CUDA is not available/ });
});

(emuBuilt ? test.serial : test.serial.skip)('with a CUDA backend: local trains with cuda tensors and matches the CPU run; CPU-only strategies say so', async (t) => {
  const opts = { dataset: 'synthetic' as const, trainSamples: 320, testSamples: 64, hidden: 12, batchSize: 32, epochs: 3, lr: 0.1, momentum: 0.9, seed: 3, progress: 'none' as const };
  const cpu = await trainLocal({ ...opts, device: 'cpu' }, quiet);
  if (!cudaAvailable()) setBackend(cudaDeviceBackend(cudaEmulatedDevice()));
  try {
    const lines: string[] = [];
    t.is(chooseDevice(resolveOptions({ device: 'auto' }), (l) => lines.push(l), { cuda: true }), 'cuda');
    t.regex(lines.join('\n'), /training on CUDA \(cuda/);
    const notes: string[] = [];
    t.is(chooseDevice(resolveOptions({ device: 'auto', strategy: 'hogwild' }), (l) => notes.push(l)), 'cpu');
    t.regex(notes.join('\n'), /hogwild strategy trains with CPU tensors only .*; training on the CPU/);
    t.throws(() => chooseDevice(resolveOptions({ device: 'cuda', strategy: 'centralized' }), () => {}), { message: /--device cuda: the centralized strategy trains with CPU tensors only/ });

    const dev = await trainLocal({ ...opts, device: 'auto' }, quiet);
    t.is(dev.device, 'cuda');
    t.is(cpu.device, 'cpu');
    t.is(dev.samples, cpu.samples);
    t.true(Math.abs(dev.finalLoss - cpu.finalLoss) < 1e-4, `final loss ${dev.finalLoss} vs ${cpu.finalLoss}`);
    t.is(dev.testAccuracy, cpu.testAccuracy);
    t.true(cpu.testAccuracy > 0.2, `the run learned something: twice chance on 10 classes (accuracy ${cpu.testAccuracy})`);
  } finally {
    if (!cudaAvailable()) resetBackend('cuda');
  }
});
