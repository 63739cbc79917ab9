// The real CUDA build: nvcc compiles every kernel for sm_80 and sm_90, psrpc_cuda.node links
// and loads (without a GPU it must say "no CUDA device", not crash), and --device resolution.
// Skipped only where they cannot run: the nvcc checks where nvcc is absent, the on-device suite
// where no device is present. The kernels' behaviour is checked under emulation by
// cuda-emu.test.ts on every machine.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot, loadAddon } from '../../src/tensor/native.js';
import { cudaAddon, cudaAvailable, cudaStatus, resolveDevice, type CudaAddon } from '../../src/tensor/cuda.js';
import { deviceSuite } from './cuda-device-suite.js';

const run = promisify(execFile);
const cudaDir = join(packageRoot(), 'native', 'cuda');
const cudaHome = execFileSync(process.execPath, [join(cudaDir, 'find_cuda.cjs')], { encoding: 'utf8' }).trim();
const cuSources = readdirSync(cudaDir).filter((f) => f.endsWith('.cu')).sort();
const addonFile = join(packageRoot(), 'native', 'build', 'Release', 'psrpc_cuda.node');

test('the emulation build and the nvcc build compile the same .cu files', (t) => {
  const wrapper = readFileSync(join(cudaDir, 'emu', 'kernels_emu.cc'), 'utf8');
  const emulated = [...wrapper.matchAll(/#include "\.\.\/([\w-]+\.cu)"/g)].map((m) => m[1]!).sort();
  const gypi = readFileSync(join(cudaDir, 'cuda.gypi'), 'utf8');
  const nvcc = [...gypi.matchAll(/"([\w-]+\.cu)"/g)].map((m) => m[1]!).sort();
  t.true(cuSources.length >= 7);
  t.deepEqual(emulated, cuSources);
  t.deepEqual(nvcc, cuSources);
});

if (!cudaHome) {
  test.skip('nvcc build: skipped because nvcc was not found (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda) or PSRPC_NO_CUDA=1 is set', () => {});
} else {
  test('nvcc compiles every kernel for sm_80 and sm_90 (plus compute_90 PTX) without spilling', async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'psrpc-nvcc-'));
    try {
      const compile = async (file: string): Promise<string> => {
        const { stderr } = await run(join(cudaHome, 'bin', 'nvcc'), [
          '-std=c++17', '-O3', '-Xcompiler', '-fPIC', '-Xptxas', '-v',
          '-gencode', 'arch=compute_80,code=sm_80',
          '-gencode', 'arch=compute_90,code=sm_90',
          '-gencode', 'arch=compute_90,code=compute_90',
          `-I${join(packageRoot(), 'native', 'include')}`, `-I${cudaDir}`,
          '-c', join(cudaDir, file), '-o', join(out, file.replace(/\.cu$/, '.o')),
        ], { maxBuffer: 16 << 20 });
        return stderr;
      };
      // Two at a time: nvcc is single-threaded and CI machines have two cores.
      const logs: string[] = [];
      for (let i = 0; i < cuSources.length; i += 2) logs.push(...(await Promise.all(cuSources.slice(i, i + 2).map(compile))));
      for (const [i, log] of logs.entries()) {
        const file = cuSources[i]!;
        t.true(existsSync(join(out, file.replace(/\.cu$/, '.o'))), `${file}: object written`);
        t.regex(log, /for 'sm_80'/, `${file}: sm_80 code`);
        t.regex(log, /for 'sm_90'/, `${file}: sm_90 code`);
        t.notRegex(log, /[1-9]\d* bytes spill stores/, `${file}: no register spills`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('psrpc_cuda.node is built with nvcc and links every CUDA and kernel symbol in', (t) => {
    t.true(existsSync(addonFile), `${addonFile} exists (built because nvcc is present)`);
    const undefinedSymbols = execFileSync('nm', ['-D', '--undefined-only', addonFile], { encoding: 'utf8' });
    const unresolved = undefinedSymbols.split('\n').filter((line) => /cuda|psrpc|kernels/i.test(line));
    t.deepEqual(unresolved, [], 'the CUDA runtime is linked statically and every kernel is defined');
    const defined = execFileSync('nm', ['-C', addonFile], { encoding: 'utf8' });
    t.regex(defined, /psrpc::kernels::gemm\(/);
    for (const kernel of ['conv2d_forward', 'conv2d_backward_input', 'max_pool2d_backward', 'avg_pool2d_forward', 'batch_norm_backward']) {
      t.regex(defined, new RegExp(`psrpc::kernels::${kernel}\\(`), `${kernel} is linked in`);
    }
    t.regex(defined, /cudaLaunchKernel/);
  });

  test('psrpc_cuda.node loads on any machine and reports its devices instead of crashing', (t) => {
    const addon = loadAddon<CudaAddon>('psrpc_cuda');
    const probe = addon.probe();
    t.false(probe.emulated);
    t.true(Number.isInteger(probe.devices) && probe.devices >= 0);
    t.is(cudaAvailable(), probe.devices > 0);
    if (probe.devices === 0) {
      t.throws(() => addon.alloc(16), { message: /psrpc cuda: no CUDA device/ });
      t.throws(() => cudaAddon(), { message: /CUDA is not available: no CUDA device/ });
    }
    // The generator runs on the host: it answers with or without a device.
    t.is(addon.uniformAt(42, 7), loadAddon<CudaAddon>('psrpc_cuda_device_emu').uniformAt(42, 7));
  });
}

if (cudaAvailable()) {
  deviceSuite('cuda', cudaAddon);
} else {
  test.skip(`cuda on-device suite: skipped because no CUDA device is usable here (${cudaStatus().reason})`, () => {});
}

test('--device resolution: auto picks cuda only with a device, cuda without one says why', (t) => {
  t.is(resolveDevice('cpu'), 'cpu');
  t.is(resolveDevice('auto'), cudaAvailable() ? 'cuda' : 'cpu');
  if (cudaAvailable()) {
    t.is(resolveDevice('cuda'), 'cuda');
  } else {
    const err = t.throws(() => resolveDevice('cuda'));
    t.regex(err!.message, /--device cuda: CUDA is not available on this machine: .+\. Use --device cpu or --device auto\./);
    t.is(err!.message.includes(cudaStatus().reason!), true);
  }
  t.throws(() => resolveDevice('gpu' as 'cpu'), { instanceOf: RangeError, message: /--device must be cpu, cuda or auto, got "gpu"/ });
});
