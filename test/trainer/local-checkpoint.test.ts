// Checkpoints of the local strategy: the whole model, its buffers and optimizer state in the
// servers' format; a run resumed from one ends as the run never interrupted, bit for bit.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointStore } from '../../src/server/index.js';
import { trainLocal } from '../../src/trainer/local.js';
import type { TrainOptions } from '../../src/trainer/options.js';

// 512 samples / 32 = 16 steps an epoch, 32 in all
const BASE: Partial<TrainOptions> = {
  dataset: 'synthetic', trainSamples: 512, testSamples: 128, batchSize: 32, epochs: 2, hidden: 16,
  optimizer: 'adam', lr: 0.01, progress: 'none', device: 'cpu', checkpointSteps: 5,
};

function dir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'psrpc-local-ckpt-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const final = (d: string) => readFileSync(join(d, 'ckpt-000000032', 'shard-0-of-1.safetensors'));

test('a local run resumed after its checkpoint at step 10 ends as the uninterrupted run, bit for bit (Adam state included)', async (t) => {
  const a = dir(t);
  const lines: string[] = [];
  const ref = await trainLocal({ ...BASE, checkpointDir: a }, { log: (l) => lines.push(l) });
  t.deepEqual(readdirSync(a), ['ckpt-000000025', 'ckpt-000000030', 'ckpt-000000032'], 'the last 3 kept, the one at the end among them');
  const m = JSON.parse(readFileSync(join(a, 'ckpt-000000032', 'manifest.json'), 'utf8'));
  t.is(m.optimizer, 'adam');
  t.deepEqual(m.layout.map((p: { name: string }) => p.name).slice(0, 2), ['0.weight', '0.bias']);

  // a run that "died" right after checkpoint 10: everything after it removed
  const b = dir(t);
  await trainLocal({ ...BASE, checkpointDir: b, checkpointKeep: 10 }, { log: () => {} });
  for (const d of readdirSync(b)) if (Number(d.slice(5)) > 10) rmSync(join(b, d), { recursive: true });
  const logs: string[] = [];
  const resumed = await trainLocal({ ...BASE, checkpointDir: b, checkpointKeep: 10, resume: true }, { log: (l) => logs.push(l) });
  t.true(logs.some((l) => /local: resuming from checkpoint 10 /.test(l)), logs.join('\n'));
  t.is(resumed.samples, (32 - 10) * 32, 'only the steps after the checkpoint were trained');
  t.true(final(b).equals(final(a)));
  t.is(resumed.testAccuracy, ref.testAccuracy);
});

test('--resume with another model or optimizer is refused, naming the difference; with an empty directory it starts from the beginning', async (t) => {
  const a = dir(t);
  await trainLocal({ ...BASE, epochs: 1, checkpointDir: a }, { log: () => {} });
  await t.throwsAsync(trainLocal({ ...BASE, hidden: 8, checkpointDir: a, resume: true }, { log: () => {} }), { message: /was written for another model: it has 0\.weight\[16x\d+\].*this model has 0\.weight\[8x\d+\]/ });
  await t.throwsAsync(trainLocal({ ...BASE, optimizer: 'sgd', checkpointDir: a, resume: true }, { log: () => {} }), { message: /holds adam state; this run uses --optimizer sgd/ });
  const empty = dir(t);
  const logs: string[] = [];
  const r = await trainLocal({ ...BASE, epochs: 1, checkpointDir: empty, resume: true }, { log: (l) => logs.push(l) });
  t.is(r.samples, 16 * 32);
  t.true(logs.some((l) => /no complete checkpoint in .*; starting from the beginning/.test(l)));
});

test('a model with Dropout: the mask stream\'s position is saved, and a resumed run draws the masks the uninterrupted one did, bit for bit', async (t) => {
  const model = fileURLToPath(new URL('./fixtures/dropout-model.ts', import.meta.url));
  const opts = { ...BASE, model };
  const a = dir(t);
  const ref = await trainLocal({ ...opts, checkpointDir: a }, { log: () => {} });
  const cp = (await new CheckpointStore(a, { log: () => {} }).latest())!;
  // 32 steps of 32 samples x 16 features through the Dropout layer
  const rng = cp.buffers().get('rng.2.offset')!;
  t.deepEqual([...rng], [0, 32 * 32 * 16]);
  const b = dir(t);
  await trainLocal({ ...opts, checkpointDir: b, checkpointKeep: 10 }, { log: () => {} });
  for (const d of readdirSync(b)) if (Number(d.slice(5)) > 10) rmSync(join(b, d), { recursive: true });
  const resumed = await trainLocal({ ...opts, checkpointDir: b, checkpointKeep: 10, resume: true }, { log: () => {} });
  t.true(final(b).equals(final(a)), 'parameters, optimizer state and the stream position all equal');
  t.is(resumed.finalLoss, ref.finalLoss, 'the same masks, so the same losses');
});
