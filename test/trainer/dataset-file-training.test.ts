// Trainers on a dataset file (--dataset file:PATH): each reads only its own page-aligned share of
// the training split, all of them step through the same number of samples per epoch, and a world
// strategy trains on it end to end.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { datasetRows, writeDatasetFile } from '../../src/data/index.js';
import { resolveOptions } from '../../src/trainer/options.js';
import { loadTrainingData, trainerSampler } from '../../src/trainer/setup.js';

const dir = mkdtempSync(join(tmpdir(), 'psrpc-file-train-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function syntheticFile(trainSamples: number, pageSamples: number): Promise<string> {
  const path = join(dir, `synthetic-${trainSamples}-${pageSamples}.psds`);
  await writeDatasetFile(path, await datasetRows('synthetic', { trainSamples }), { pageSamples });
  return path;
}

test('each trainer reads only its own pages, and every trainer visits the smallest share per epoch', async (t) => {
  // 2,500 samples in pages of 300: 9 pages (the last one of 100), 3 trainers get pages [0,3) [3,6) [6,9)
  const path = await syntheticFile(2500, 300);
  const opts = resolveOptions({ dataset: `file:${path}` });
  const shares = await Promise.all([0, 1, 2].map((rank) => loadTrainingData(opts, { shard: { rank, worldSize: 3 } })));
  t.deepEqual(shares.map((d) => d.train.length), [900, 900, 700]);
  t.deepEqual(shares.map((d) => d.share), [700, 700, 700]);
  const whole = await loadTrainingData(opts);
  t.is(whole.share, undefined);
  t.is(whole.train.length, 2500);
  // the shares are the whole split, in order, each exactly once
  const joined = new Float32Array(2500 * 784);
  let at = 0;
  for (const d of shares) { joined.set(d.train.x, at); at += d.train.x.length; }
  t.deepEqual(joined, whole.train.x);
  for (const [rank, d] of shares.entries()) {
    const sampler = trainerSampler(opts, { rank, trainers: 3, train: d.train, share: d.share! });
    t.is(sampler.length, 700);
    sampler.setEpoch(0);
    const first = Array.from(sampler.indices());
    t.true(first.every((i) => i >= 0 && i < d.train.length));
    t.is(new Set(first).size, 700, 'no sample twice in an epoch');
    sampler.setEpoch(1);
    t.notDeepEqual(Array.from(sampler.indices()), first, 'a fresh order each epoch');
  }
});

test('--train-samples caps each trainer\'s share at its part of N', async (t) => {
  const path = await syntheticFile(2000, 250);
  const d = await loadTrainingData(resolveOptions({ dataset: `file:${path}`, trainSamples: 600 }), { shard: { rank: 1, worldSize: 2 } });
  t.is(d.train.length, 1000);
  t.is(d.share, 300);
});
