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
