// `trainer --strategy hogwild`: a real run through the command, its final line and --json result.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const runner = fileURLToPath(new URL('../../src/cli/trainer-main.ts', import.meta.url));

function trainer(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', runner, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--strategy hogwild --json writes a well-formed result and exits 0', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'psrpc-hogwild-'));
  try {
    const file = join(dir, 'out', 'result.json');
    const r = trainer(['--strategy', 'hogwild', '--workers', '3', '--dataset', 'fashion-mnist', '--train-samples', '6000',
      '--test-samples', '500', '--epochs', '2', '--progress', 'lines', '--json', file]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^hogwild: epochs=2 samples=\d+ loss=[\d.]+ testAccuracy=[\d.]+ samplesPerSecond=\d+ wallSeconds=[\d.]+\n$/);
    t.regex(r.stderr, /hogwild epoch 1\/2: loss=[\d.]+ testAccuracy=[\d.]+/);
    const result = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    t.like(result, { strategy: 'hogwild', consistency: null, trainers: 3, epochs: 2, dataset: 'fashion-mnist', batchSize: 64, testSamples: 500, device: 'cpu' });
    // Each of 3 workers trains floor(2000 / 64) full batches per epoch.
    t.is(result.samples, 3 * 31 * 64 * 2);
    for (const key of ['samplesPerSecond', 'trainSeconds', 'wallSeconds', 'finalLoss', 'testAccuracy'] as const) {
      t.true(typeof result[key] === 'number' && Number.isFinite(result[key]) && (result[key] as number) > 0, `${key}: ${String(result[key])}`);
    }
    t.true((result.testAccuracy as number) > 0.6, `testAccuracy ${String(result.testAccuracy)}`);
    t.true((result.wallSeconds as number) > (result.trainSeconds as number));
    t.deepEqual((result.epochAccuracy as number[]).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--progress none prints only the final line', (t) => {
  const r = trainer(['--strategy', 'hogwild', '--workers', '2', '--dataset', 'synthetic', '--train-samples', '1000', '--test-samples', '100', '--epochs', '2', '--progress', 'none']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.regex(r.stdout, /^hogwild: epochs=2 /);
});

test('--workers 0 is refused with one line before anything starts', (t) => {
  const r = trainer(['--strategy', 'hogwild', '--workers', '0']);
  t.is(r.code, 1);
  t.regex(r.stderr, /--workers must be an integer in \[1, 256\], got '0'/);
  t.is(r.stdout, '');
});
