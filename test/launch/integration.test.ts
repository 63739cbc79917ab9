// psrun with the real ps-server and trainer entry points (run from source through tsx): the
// command-line contract between the launcher and the processes, end to end, on a small job.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/psrun.js';
import { Capture } from './fixture.js';

const jobs: Array<[string, string[], number, number]> = [
  ['centralized, 1 server, 2 trainers', ['--servers', '1', '--trainers', '2'], 2, 1],
  ['partitioned, 2 trainers', ['--strategy', 'partitioned', '--trainers', '2'], 2, 0],
];

for (const [what, args, trainers, servers] of jobs) {
  test(`a real ${what} job trains and writes the combined result`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'psrun-int-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const json = join(dir, 'result.json');
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'psrun', ...args, '--dataset', 'synthetic', '--train-samples', '2048', '--test-samples', '512',
      '--batch-size', '64', '--eval-every', '0.01', '--progress', 'none', '--kill-grace', '2', '--json', json], { stdout, stderr, handleSignals: false });
    t.is(code, 0, stdout.text + stderr.text);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    t.is(r.trainers, trainers);
    t.is(r.servers, servers);
    t.is(r.perTrainer.length, trainers);
    t.true(r.samples >= 2048 - trainers * 64 && r.samples <= 2048, `samples ${r.samples}`);
    t.true(r.samplesPerSecond > 0);
    t.true(r.testAccuracy >= 0 && r.testAccuracy <= 1);
    t.is(r.testSamples, 512);
    // the first trainer's accuracy curve and every trainer's bytes reach the job's result
    t.true(Array.isArray(r.curve) && r.curve.length >= 2, 'curve recorded');
    t.is(r.curve[0].samples, 0);
    t.is(r.curve.at(-1).samples, r.samples);
    t.true(r.bytesSent > 0 && r.bytesSent % 4 === 0, `bytesSent ${r.bytesSent}`);
    t.regex(stdout.text, new RegExp(`^psrun ${r.strategy}: epochs=1 samples=${r.samples} `, 'm'));
  });
}

// the data-parallel family end to end: no servers, the figures each strategy adds to the result
const peers: Array<[string, string[], (t: import('ava').ExecutionContext, r: Record<string, any>) => void]> = [
  ['ddp in bf16', ['--strategy', 'ddp', '--precision', 'bf16'], (t, r) => {
    t.is(r.precision, 'bf16');
    t.deepEqual(r.optimizerElementsPerRank, [r.parameters, r.parameters]);
    t.true(Array.isArray(r.buckets) && r.buckets.reduce((a: number, b: number) => a + b, 0) === r.parameters);
  }],
  ['zero stage 2', ['--strategy', 'zero', '--zero-stage', '2', '--optimizer', 'adam', '--lr', '0.001'], (t, r) => {
    t.is(r.zeroStage, 2);
    t.is(r.optimizerElementsPerRank.reduce((a: number, b: number) => a + b, 0), r.parameters, 'the shards cover the parameters');
    for (const [i, bytes] of r.optimizerStateBytesPerRank.entries()) t.is(bytes, r.optimizerElementsPerRank[i] * 8, 'adam: two moments per shard element');
  }],
  ['fsdp', ['--strategy', 'fsdp'], (t, r) => {
    t.is(r.peakParameterBytesPerRank.length, 2);
    // a rank's shards plus the largest unit (the mlp's first layer), never two large units at once
    r.peakParameterBytesPerRank.forEach((b: number, i: number) => t.is(b, (r.optimizerElementsPerRank[i] + Math.max(...r.buckets)) * 4));
  }],
];

for (const [what, args, check] of peers) {
  test(`a real ${what} job on 2 ranks trains and reports its figures`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'psrun-dp-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const json = join(dir, 'result.json');
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'psrun', ...args, '--trainers', '2', '--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256',
      '--batch-size', '32', '--progress', 'none', '--kill-grace', '2', '--json', json], { stdout, stderr, handleSignals: false });
    t.is(code, 0, stdout.text + stderr.text);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    t.is(r.servers, 0);
    t.is(r.consistency, 'sync');
    t.true(r.testAccuracy >= 0 && r.testAccuracy <= 1 && Number.isFinite(r.finalLoss), `accuracy ${r.testAccuracy}, loss ${r.finalLoss}`);
    t.true(r.bytesSent > 0);
    t.true(r.peakRssBytes > 0);
    check(t, r);
  });
}

test('a real pipeline job, 2 stages x 2 replicas: psrun starts 4 processes and reports each stage', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrun-pipe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'result.json');
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', '--strategy', 'pipeline', '--stages', '2', '--replicas', '2', '--micro-batches', '3', '--schedule', 'gpipe',
    '--dataset', 'synthetic', '--train-samples', '1024', '--test-samples', '256', '--batch-size', '32', '--progress', 'none', '--kill-grace', '2', '--json', json],
  { stdout, stderr, handleSignals: false });
  t.is(code, 0, stdout.text + stderr.text);
  const r = JSON.parse(readFileSync(json, 'utf8'));
  t.is(r.trainers, 4);
  t.is(r.servers, 0);
  t.is(r.stages, 2);
  t.is(r.replicas, 2);
  t.is(r.microBatches, 3);
  t.is(r.schedule, 'gpipe');
  // a sample counts once per pipeline: each of the 2 pipelines trains on its half of the 1024
  t.is(r.samples, 2 * Math.floor(512 / 32) * 32);
  t.true(r.testAccuracy >= 0 && r.testAccuracy <= 1 && Number.isFinite(r.finalLoss));
  t.is(r.theoreticalBubble, 1 / 4);
  t.is(r.bubblePerStage.length, 2);
  for (const b of r.bubblePerStage) t.true(b >= 0 && b < 1, `bubble ${b}`);
  t.is(r.peakActivationBytesPerStage.length, 2);
  t.is(r.stageParameters.reduce((a: number, b: number) => a + b, 0), r.parameters);
  t.true(r.bytesSent > 0);
});

test('psrun refuses an impossible pipeline with one line before starting anything', async (t) => {
  const refuse = async (args: string[], line: RegExp) => {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'psrun', '--strategy', 'pipeline', '--dataset', 'synthetic', ...args], { stdout, stderr, handleSignals: false });
    t.is(code, 1);
    t.regex(stderr.text, line);
    t.is(stderr.text.trim().split('\n').length, 1, stderr.text);
  };
  await refuse(['--stages', '4'], /^error: --stages 4: the model has 3 layer\(s\) with parameters \(children 0: Linear, 2: Linear, 4: Linear\), so at most 3 stage\(s\)$/m);
  await refuse(['--stages', '2', '--trainers', '3'], /^error: strategy pipeline runs --stages 2 x --replicas 1 = 2 trainer processes, got 3 trainers: leave --trainers out or give 2$/m);
  await refuse(['--stages', '2', '--split', '5'], /^error: --split 5: 5 is not a valid start of stage 1 \(the model has children 0..4, so stage 1 would be empty\)$/m);
  await refuse(['--stages', '3', '--split', '1,2'], /^error: pipeline: stage 1 \(children 1: ReLU\) has no parameters/m);
  await refuse(['--micro-batches', '100', '--batch-size', '64'], /^error: --micro-batches 100 is more than --batch-size 64: a micro-batch would be empty$/m);
  await refuse(['--consistency', 'async'], /^error: strategy pipeline is synchronous/m);
});
