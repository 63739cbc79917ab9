// The collective benchmark (bench/collective.ts): its flags, its row arithmetic, and a real run of
// two psrpc processes on two tiny sizes (--no-torch) that writes a well-formed collective.json with
// every op and dtype present and positive figures. No timing assertions.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busFactor, combine, elementsOf, median, OPS, parseFlags, type Row } from '../../bench/collective.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const script = join(root, 'bench', 'collective.ts');

test('parseFlags: defaults, --quick, and bad values named by flag', (t) => {
  const d = parseFlags([]);
  t.deepEqual(d.processes, [2, 4]);
  t.deepEqual(d.ops, [...OPS]);
  t.is(d.sizes.length, 7);
  t.deepEqual(d.allReduceDtypes, ['float32', 'bfloat16', 'float16']);
  t.is(d.rounds, 2);
  t.true(d.torch);
  const q = parseFlags(['--quick', '--no-torch']);
  t.deepEqual(q.processes, [2]);
  t.deepEqual(q.ops, ['allReduce']);
  t.deepEqual(q.sizes, [1 << 20, 16 << 20, 64 << 20]);
  t.deepEqual(q.allReduceDtypes, ['float32', 'bfloat16']);
  t.false(q.torch);
  t.deepEqual(parseFlags(['--sizes', '65536,4096', '--processes', '4,2,2']).sizes, [4096, 65536]);
  t.throws(() => parseFlags(['--ops', 'allReduce,gather']), { message: /--ops: unknown op "gather"/ });
  t.throws(() => parseFlags(['--processes', '1']), { message: /--processes: "1" is not an integer >= 2/ });
  t.throws(() => parseFlags(['--sizes', 'big']), { message: /--sizes: "big"/ });
  t.throws(() => parseFlags(['--rounds', '0']), { message: /--rounds: "0"/ });
  t.throws(() => parseFlags(['--sizes']), { message: /--sizes needs a value/ });
});

test('busFactor, elementsOf and median follow the nccl-tests conventions', (t) => {
  t.is(busFactor('allReduce', 4), 1.5);
  t.is(busFactor('allGather', 4), 0.75);
  t.is(busFactor('reduceScatter', 2), 0.5);
  t.is(busFactor('broadcast', 4), 1);
  t.is(busFactor('barrier', 4), 0);
  t.is(elementsOf('allReduce', 1 << 20, 'bfloat16', 4), 1 << 19);
  t.is(elementsOf('allGather', 1030, 'float32', 4), 256);
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
});

test('combine takes the median time over rounds and keeps gloo refusals', (t) => {
  const rows = combine(2, [
    [{ op: 'allReduce', bytes: 1e6, dtype: 'float32', us: 1000, reps: 3 }, { op: 'allReduce', bytes: 1e6, dtype: 'bfloat16', us: 500, reps: 3 }],
    [{ op: 'allReduce', bytes: 1e6, dtype: 'float32', us: 3000, reps: 3 }, { op: 'allReduce', bytes: 1e6, dtype: 'bfloat16', us: 700, reps: 3 }],
  ], [
    [{ op: 'allReduce', bytes: 1e6, dtype: 'float32', us: 500, reps: 3 }, { op: 'allReduce', bytes: 1e6, dtype: 'bfloat16', unsupported: 'RuntimeError: Invalid scalar type' }],
    [{ op: 'allReduce', bytes: 1e6, dtype: 'float32', us: 1500, reps: 3 }, { op: 'allReduce', bytes: 1e6, dtype: 'bfloat16', unsupported: 'RuntimeError: Invalid scalar type' }],
  ]);
  t.is(rows.length, 2);
  t.is(rows[0]!.us, 2000);
  t.is(rows[0]!.algGBps, 0.5);
  t.is(rows[0]!.busGBps, 0.5);
  t.deepEqual(rows[0]!.gloo, { us: 1000, algGBps: 1, busGBps: 1 });
  t.deepEqual(rows[0]!.rounds, { psrpc: [1000, 3000], gloo: [500, 1500] });
  t.deepEqual(rows[1]!.gloo, { unsupported: 'RuntimeError: Invalid scalar type' });
  t.is(combine(2, [[{ op: 'barrier', bytes: 0, dtype: 'none', us: 50, reps: 3 }]], null)[0]!.gloo, null);
});

test('a --no-torch run of 2 processes on 4 KB and 64 KB writes every op and dtype with positive figures', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'psrpc-bench-collective-'));
  try {
    const out = join(dir, 'collective.json');
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--no-torch', '--sizes', '4096,65536', '--processes', '2',
      '--rounds', '1', '--min-seconds', '0.005', '--out', out], { cwd: root, encoding: 'utf8', timeout: 90_000 });
    t.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const result = JSON.parse(await readFile(out, 'utf8')) as { date: string; machine: { cpus: number }; rows: Row[]; errors: string[] };
    t.false(Number.isNaN(Date.parse(result.date)));
    t.true(result.machine.cpus >= 1);
    t.deepEqual(result.errors, []);
    const keys = result.rows.map((row) => `${row.op}/${row.dtype}/${row.bytes}`);
    const want = ['barrier/none/0'];
    for (const op of ['allReduce', 'broadcast', 'allGather', 'reduceScatter']) {
      for (const dtype of op === 'allReduce' ? ['float32', 'bfloat16', 'float16'] : ['float32', 'bfloat16']) {
        for (const bytes of [4096, 65536]) want.push(`${op}/${dtype}/${bytes}`);
      }
    }
    t.deepEqual([...keys].sort(), want.sort());
    for (const row of result.rows) {
      t.is(row.processes, 2);
      t.is(row.gloo, null);
      t.true(row.us > 0, `${row.op} us`);
      if (row.op === 'barrier') continue;
      t.true(row.algGBps > 0 && Number.isFinite(row.algGBps), `${row.op} ${row.dtype} algGBps`);
      t.true(row.busGBps > 0 && Number.isFinite(row.busGBps), `${row.op} ${row.dtype} busGBps`);
    }
    t.regex(r.stdout, /psrpc busGB\/s/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
