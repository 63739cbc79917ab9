// psrun --strategy pipeline with --checkpoint-dir, end to end with the real trainer processes:
// the stages of pipeline 0 write their layers as segments of the whole model (one file per
// parameter; the manifest describes the whole model), a stage killed by the fault hook
// PSRPC_FAULT_KILL_TRAINER_AT_STEP (no clock is raced) makes psrun start the job again with
// --resume, and the run ends with the files of the run never interrupted, bit for bit.
import test from 'ava';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../../src/server/index.js';
import { main } from '../../src/cli/psrun.js';
import { checkpointJob } from './checkpoint-job.js';
import { Capture } from './fixture.js';

// one pipeline: 512 samples / 64 = 8 steps an epoch, 16 in all; a checkpoint every 4 steps
const PIPE = ['--strategy', 'pipeline', '--stages', '2', '--micro-batches', '4', '--dataset', 'synthetic', '--train-samples', '512', '--test-samples', '256',
  '--epochs', '2', '--batch-size', '64', '--momentum', '0.9', '--checkpoint-steps', '4', '--progress', 'none', '--kill-grace', '2'];

const run = checkpointJob(PIPE);

function tmp(t: { teardown(f: () => void): void }, name: string): string {
  const d = mkdtempSync(join(tmpdir(), `psrun-pipe-${name}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const files = (d: string) => readdirSync(join(d, 'ckpt', 'ckpt-000000016')).filter((f) => f.endsWith('.safetensors')).sort();
const same = (a: string, b: string, f: string) => readFileSync(join(a, 'ckpt', 'ckpt-000000016', f)).equals(readFileSync(join(b, 'ckpt', 'ckpt-000000016', f)));

/** The uninterrupted run of `extra`, once per set of flags. */
const references = new Map<string, Promise<string>>();
function reference(extra: string[]): Promise<string> {
  const key = extra.join(' ');
  let ref = references.get(key);
  if (!ref) {
    const d = mkdtempSync(join(tmpdir(), 'psrun-pipe-ref-'));
    ref = run(d, extra).then((r) => {
      if (r.code !== 0) throw new Error(r.out);
      return d;
    });
    references.set(key, ref);
  }
  return ref;
}
test.after.always(async () => {
  for (const d of references.values()) rmSync(await d.catch(() => ''), { recursive: true, force: true });
});

test.serial('2 stages: every checkpoint is complete and its manifest describes the whole model, read back by the ordinary reader', async (t) => {
  const d = await reference([]);
  // the last 3 complete checkpoints are kept
  t.deepEqual(readdirSync(join(d, 'ckpt')), ['ckpt-000000008', 'ckpt-000000012', 'ckpt-000000016']);
  const cp = await loadCheckpoint(join(d, 'ckpt', 'ckpt-000000016'));
  // the mlp preset 784-64-64-10: 3 Linear layers, cut into 2 stages
  t.deepEqual(cp.manifest.layout.map((p) => p.name), ['0.weight', '0.bias', '2.weight', '2.bias', '4.weight', '4.bias']);
  t.deepEqual(cp.manifest.layout.map((p) => p.offset), [0, 784 * 64, 784 * 64 + 64, 784 * 64 + 64 + 64 * 64, 784 * 64 + 64 + 64 * 64 + 64, 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10]);
  t.is(cp.manifest.total, 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10);
  t.is(cp.manifest.shards.length, 6);
  t.deepEqual(files(d), cp.manifest.shards.map((s) => s.file).sort());
  const r = cp.read(0, cp.manifest.total);
  t.is(r.version, 16);
  t.true(r.state!.arrays.momentumBuffer!.some((v) => v !== 0), 'the optimizer state of every stage is in it');
});

test.serial('2 stages: the second stage killed before step 11 restarts the job from the newest complete checkpoint, ending as the uninterrupted run, bit for bit', async (t) => {
  const ref = await reference([]);
  const d = tmp(t, 'restart');
  const b = await run(d, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer2:11' });
  t.is(b.code, 0, b.out);
  t.regex(b.out, /psrun: trainer2 \(trainer, rank 1\) exited with signal SIGKILL; restarting the job from the latest checkpoint/);
  // every stage writes its own layers, so the killed stage's queued files of the newest checkpoint
  // die with it, and a set missing one is skipped (said): the job resumes from 8 or 4 (from 0 if
  // even 4's were still being written: a very loaded machine); every way ends the same
  t.regex(b.out, /trainer1: (resuming from checkpoint (8|4) |--resume: no complete checkpoint)/);
  t.is(b.result.restarts, 1);
  t.deepEqual(files(d), files(ref));
  for (const f of files(ref)) t.true(same(d, ref, f), f);
});

test.serial('2 stages x 2 replicas: a stage of the second pipeline killed before step 7 restarts the job; every process reads its stage back and it ends as the uninterrupted run, bit for bit', async (t) => {
  // two pipelines: 1024 samples, 512 each: 8 steps an epoch, 16 in all
  const extra = ['--replicas', '2', '--train-samples', '1024'];
  const ref = await reference(extra);
  t.deepEqual(readdirSync(join(ref, 'ckpt')), ['ckpt-000000008', 'ckpt-000000012', 'ckpt-000000016']);
  t.is((await loadCheckpoint(join(ref, 'ckpt', 'ckpt-000000016'))).manifest.trainers, 2);
  const d = tmp(t, 'replicas');
  const b = await run(d, [...extra, '--max-restarts', '1'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer4:7' });
  t.is(b.code, 0, b.out);
  t.regex(b.out, /psrun: trainer4 \(trainer, rank 3\) exited with signal SIGKILL; restarting the job from the latest checkpoint/);
  // pipeline 1 writes nothing: checkpoint 4 is on disk unless pipeline 0's writes of it had not
  // finished when the job was stopped (a very loaded machine); then from 0
  t.regex(b.out, /trainer1: (resuming from checkpoint 4 |--resume: no complete checkpoint)/);
  for (const f of files(ref)) t.true(same(d, ref, f), f);
});

test.serial('--resume with a checkpoint of another model is refused, naming the difference; --checkpoint-every is refused before anything starts', async (t) => {
  const ref = await reference([]);
  const d = tmp(t, 'other');
  const copy = join(d, 'ckpt');
  cpSync(join(ref, 'ckpt'), copy, { recursive: true });
  const b = await run(d, ['--hidden', '32', '--resume']);
  t.not(b.code, 0);
  t.regex(b.out, /--resume: checkpoint 16 \(.*\) was written for another model: it has 0\.weight\[64x784\], .*; this model has 0\.weight\[32x784\]/);
  // nothing was written over it
  t.deepEqual(readdirSync(copy), readdirSync(join(ref, 'ckpt')));
  for (const f of files(ref)) t.true(same(d, ref, f), f);

  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', ...PIPE, '--checkpoint-dir', copy, '--checkpoint-every', '5'], { stdout, stderr, handleSignals: false });
  t.is(code, 1);
  t.regex(stderr.text, /^error: --checkpoint-every: pipeline checkpoints by step count only \(every stage writes its own layers of the same step\): use --checkpoint-steps N$/m);
});
