// psrun --max-restarts with --checkpoint-dir under --strategy remote-forward, end to end with the
// real ps-server (the RemoteModelHost writes the checkpoints) and trainer: a process dies at a known
// point (the fault hooks: no clock is raced), psrun starts the whole job again with --resume, and
// the one-trainer run ends with the model, buffers and optimizer state of the run never
// interrupted, bit for bit.
import test from 'ava';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointJob } from './checkpoint-job.js';

// 1 trainer x 512 samples / 64 = 8 steps an epoch, 16 in all; a checkpoint every 4 steps
const JOB = ['--servers', '1', '--trainers', '1', '--strategy', 'remote-forward', '--dataset', 'synthetic', '--train-samples', '512', '--test-samples', '128',
  '--epochs', '2', '--batch-size', '64', '--hidden', '16', '--optimizer', 'adam', '--lr', '0.01', '--checkpoint-steps', '4', '--progress', 'none', '--kill-grace', '2'];

const run = checkpointJob(JOB);

const finalShard = (dir: string) => readFileSync(join(dir, 'ckpt', 'ckpt-000000016', 'shard-0-of-1.safetensors'));

let reference: Promise<{ shard: Buffer; accuracy: number }> | undefined;
function uninterrupted() {
  reference ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psrun-rf-ref-'));
    try {
      const r = await run(dir, []);
      if (r.code !== 0) throw new Error(r.out);
      // the last 3 complete checkpoints are kept, the one at the end among them
      if (readdirSync(join(dir, 'ckpt')).join() !== 'ckpt-000000008,ckpt-000000012,ckpt-000000016') throw new Error(readdirSync(join(dir, 'ckpt')).join());
      return { shard: finalShard(dir), accuracy: r.result.testAccuracy as number };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  return reference;
}

test.serial('the host killed right after checkpoint 8: the job restarts, resumes at step 8 and ends as the uninterrupted run, bit for bit', async (t) => {
  const ref = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'psrun-rf-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(dir, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_AFTER_CHECKPOINT: '8' });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /psrun: ps0 \(ps-server, rank 0\) exited with signal SIGKILL; restarting the job from the latest checkpoint in .* \(restart 1 of 1\)/);
  t.regex(r.out, /ps0: resuming from checkpoint 8 /);
  t.regex(r.out, /trainer1: resuming at step 8 \(epoch 1, batch 0\): the host ps0 starts from its checkpoint at step 8/);
  t.is(r.result.restarts, 1);
  t.is(r.result.samples, 8 * 64, 'the last process trained the 8 steps after the checkpoint');
  t.true(finalShard(dir).equals(ref.shard), 'the final parameters, buffers and optimizer state equal the uninterrupted run\'s');
  t.is(r.result.testAccuracy, ref.accuracy);
});

test.serial('the trainer killed before step 11: the whole job restarts from checkpoint 8 (flushed by the stopped host) and ends as the uninterrupted run, bit for bit', async (t) => {
  const ref = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'psrun-rf-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(dir, ['--max-restarts', '1'], { PSRPC_FAULT_KILL_TRAINER_AT_STEP: 'trainer1:11' });
  t.is(r.code, 0, r.out);
  t.regex(r.out, /psrun: trainer1 \(trainer, rank 1\) exited with signal SIGKILL; restarting the job from the latest checkpoint/);
  t.regex(r.out, /ps0: resuming from checkpoint 8 /);
  t.regex(r.out, /trainer1: resuming at step 8 \(epoch 1, batch 0\)/);
  t.is(r.result.restarts, 1);
  t.true(finalShard(dir).equals(ref.shard));
});
