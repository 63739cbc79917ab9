// Topology checks: every impossible job (flags or file) exits 1 with one line naming the problem,
// and no process is spawned; valid topologies get the documented names, ranks and placements.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/psrun.js';
import { binResolver } from '../../src/launch/commands.js';
import { LaunchError, TopologyError } from '../../src/launch/errors.js';
import { parseTopology, topologyFromFlags } from '../../src/launch/topology.js';
import { Capture } from './fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'psrun-topology-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** Runs psrun with a spawn that only counts: nothing may be spawned for a bad topology. */
async function psrun(args: string[]) {
  let spawned = 0;
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(['node', 'psrun', ...args], {
    stdout,
    stderr,
    handleSignals: false,
    resolve: () => ({ command: process.execPath, args: ['-e', ''] }),
    spawn: () => {
      spawned++;
      throw new Error('spawn must not be called');
    },
  });
  return { code, spawned, stdout: stdout.text, stderr: stderr.text };
}

let fileNo = 0;
function file(content: string | object): string {
  const path = join(dir, `topology-${fileNo++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return path;
}

const badFlags: Array<[string[], RegExp]> = [
  [['--strategy', 'local'], /strategy 'local' runs in one process: use `trainer --strategy local`/],
  [['--strategy', 'hogwild'], /strategy 'hogwild' runs in one process/],
  [['--strategy', 'centralized', '--servers', '0'], /strategy centralized needs at least one server, got 0/],
  [['--strategy', 'remote-forward', '--servers', '0'], /strategy remote-forward needs at least one server/],
  [['--strategy', 'partitioned', '--servers', '1'], /strategy partitioned has no separate servers .* got 1 server/],
  [['--strategy', 'partitioned', '--consistency', 'async'], /strategy partitioned is synchronous .* got consistency async: use centralized/],
  [['--strategy', 'remote-forward', '--consistency', 'ssp', '--staleness', '2'], /strategy remote-forward applies each trainer's step as it comes .* got consistency ssp/],
  [['--trainers', '0'], /--trainers must be an integer in \[1, 256\], got '0'/],
  [['--servers', '-1'], /--servers must be an integer/],
  [['--trainers', '300'], /--trainers must be an integer in \[1, 256\], got '300'/],
  [['--staleness', '3'], /staleness applies to consistency ssp only, but consistency is sync/],
  [['--consistency', 'async', '--staleness', '1'], /staleness applies to consistency ssp only, but consistency is async/],
  [['--consistency', 'eventual'], /--consistency.*eventual/],
  [['--epochs', '0'], /--epochs must be an integer >= 1, got '0'/],
  [['--shards', 'ps0=0.5'], /shards fractions must sum to 1, got 0.5/],
  [['--servers', '2', '--shards', 'ps0=0.5,ps9=0.5'], /shards names 'ps9', which is not a server \(servers: ps0, ps1\)/],
  [['--servers', '2', '--shards', 'ps0=1'], /shards gives no placement for server 'ps1'/],
  [['--shards', 'nonsense'], /--shards must look like ps0=0.75,ps1=0.25/],
  [['--strategy', 'partitioned', '--shards', 'ps0=1'], /shards place parameters on servers, but strategy partitioned has none/],
  [['--topology', '/nonexistent/psrun/topology.json'], /\/nonexistent\/psrun\/topology.json: cannot read the topology file \(ENOENT\)/],
  [['--no-such-flag'], /unknown option '--no-such-flag'/],
];

for (const [args, message] of badFlags) {
  test(`bad flags exit 1 before any process starts: ${args.join(' ')}`, async (t) => {
    const r = await psrun(args);
    t.is(r.code, 1);
    t.is(r.spawned, 0);
    t.regex(r.stderr, message);
    t.is(r.stdout, '');
    t.true(r.stderr.trim().split('\n').length <= 2, r.stderr);
  });
}

const good = { strategy: 'centralized', servers: 1, trainers: 2 };
const badFiles: Array<[string, string | object, RegExp]> = [
  ['invalid JSON, with the location', '{\n  "strategy": "centralized",\n  "trainers": 2,\n}\n', /topology-\d+\.json:4:1: invalid JSON: expected a key in double quotes, found '}'/],
  ['a key written twice', '{"strategy": "centralized", "trainers": 2,\n "trainers": 3}', /:2:2: invalid JSON: duplicate key 'trainers'/],
  ['not an object', '[1, 2]', /a topology is a JSON object, got an array/],
  ['an unknown top-level key', { ...good, trainer: 2 }, /unknown key 'trainer' at the top level \(known: .*trainers/],
  ['no strategy', { trainers: 2 }, /strategy is required/],
  ['an unknown strategy', { ...good, strategy: 'gossip' }, /strategy must be one of .*got 'gossip'/],
  ['no trainers key', { strategy: 'centralized', servers: 1 }, /trainers is required/],
  ['zero trainers', { ...good, trainers: 0 }, /a job needs at least one trainer, got 0/],
  ['an empty trainer list', { ...good, trainers: [] }, /a job needs at least one trainer, got 0/],
  ['a fractional count', { ...good, servers: 1.5 }, /servers must be a count in \[0, 256\].*got 1.5/],
  ['centralized without servers', { ...good, servers: 0 }, /strategy centralized needs at least one server/],
  ['partitioned with servers', { ...good, strategy: 'partitioned' }, /strategy partitioned has no separate servers/],
  ['staleness without ssp', { ...good, consistency: 'async', staleness: 2 }, /staleness applies to consistency ssp only, but consistency is async/],
  ['a bad staleness', { ...good, consistency: 'ssp', staleness: -1 }, /staleness must be an integer >= 0, got '-1'/],
  ['duplicate process names', { ...good, servers: ['a'], trainers: ['b', 'a'] }, /process name 'a' is used twice/],
  ['duplicate default and explicit names', { ...good, servers: 1, trainers: ['ps0'] }, /process name 'ps0' is used twice/],
  ['a bad process name', { ...good, trainers: ['has space'] }, /trainers\[0\]\.name must be a letter followed by .*got 'has space'/],
  ['an unknown process key', { ...good, trainers: [{ name: 't1', argv: [] }] }, /unknown key 'argv' at trainers\[0\] \(known: name, args, env\)/],
  ['args not strings', { ...good, trainers: [{ name: 't1', args: ['--x', 1] }] }, /trainers\[0\]\.args must be a list of strings/],
  ['env not strings', { ...good, servers: [{ name: 'p', env: { N: 1 } }] }, /servers\[0\]\.env\.N must be a string, got 1/],
  ['a bad env name', { ...good, servers: [{ name: 'p', env: { 'A=B': 'x' } }] }, /servers\[0\]\.env has a bad variable name 'A=B'/],
  ['an unknown training option', { ...good, train: { epoch: 2 } }, /unknown key 'epoch' in train \(known: .*epochs/],
  ['a bad training value', { ...good, train: { epochs: 0 } }, /train\.epochs must be an integer >= 1, got '0'/],
  ['a bad training choice', { ...good, train: { dataset: 'cifar' } }, /train\.dataset.*must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path \(\.\/my-data\.mjs\), got 'cifar'/],
  ['a topology key inside train', { ...good, train: { strategy: 'centralized' } }, /train\.strategy: strategy belongs at the top level/],
  ['a per-process flag inside train', { ...good, train: { json: 'x.json' } }, /unknown key 'json' in train/],
  ['shards mixing forms', { ...good, servers: 2, shards: { ps0: 0.5, ps1: ['fc1.weight'] } }, /not a mix/],
  ['a fraction out of range', { ...good, servers: 2, shards: { ps0: 1.5, ps1: -0.5 } }, /shards\.ps0 must be a fraction in \(0, 1\], got 1.5/],
  ['a parameter placed twice', { ...good, servers: 2, shards: { ps0: ['fc1.weight', 'fc1.bias'], ps1: ['fc1.bias'] } }, /parameter 'fc1.bias' is placed twice in shards \(on 'ps0' and 'ps1'\)/],
  ['an empty parameter list', { ...good, servers: 2, shards: { ps0: ['a'], ps1: [] } }, /shards\.ps1 must list at least one parameter name/],
  ['shards not an object', { ...good, shards: 0.5 }, /shards must be an object from server name/],
];

for (const [what, content, message] of badFiles) {
  test(`a topology file with ${what} exits 1 before any process starts`, async (t) => {
    const path = file(content);
    const r = await psrun(['--topology', path]);
    t.is(r.code, 1);
    t.is(r.spawned, 0);
    t.regex(r.stderr, message);
    t.true(r.stderr.startsWith(`error: ${path}`), r.stderr);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
}

test('--servers and --trainers cannot be combined with --topology', async (t) => {
  const r = await psrun(['--topology', file(good), '--trainers', '3']);
  t.is(r.code, 1);
  t.is(r.spawned, 0);
  t.regex(r.stderr, /--trainers cannot be combined with --topology/);
});

test('a missing entry file is named, before any process starts', async (t) => {
  const root = mkdtempSync(join(dir, 'pkg-'));
  const resolve = binResolver(root);
  const e = t.throws(() => resolve('ps-server'), { instanceOf: LaunchError });
  t.is(e!.path, join(root, 'bin', 'ps-server.js'));
  let spawned = 0;
  const stderr = new Capture();
  const code = await main(['node', 'psrun', '--servers', '1', '--trainers', '1'], {
    resolve, stderr, stdout: new Capture(), handleSignals: false,
    spawn: () => { spawned++; throw new Error('no'); },
  });
  t.is(code, 1);
  t.is(spawned, 0);
  t.regex(stderr.text, new RegExp(`error: the ps-server entry point ${join(root, 'bin', 'ps-server.js').replace(/[.]/g, '\\.')} does not exist`));
});

test('flags give servers ps0.. at ranks [0, S) and trainers trainer1.. at ranks [S, S+T)', (t) => {
  const topo = topologyFromFlags({ servers: 2, trainers: 3, strategy: 'centralized', consistency: 'ssp', staleness: 4, train: { epochs: 2 } });
  t.deepEqual(topo.servers.map((p) => [p.name, p.rank, p.role]), [['ps0', 0, 'ps-server'], ['ps1', 1, 'ps-server']]);
  t.deepEqual(topo.trainers.map((p) => [p.name, p.rank, p.role]), [['trainer1', 2, 'trainer'], ['trainer2', 3, 'trainer'], ['trainer3', 4, 'trainer']]);
  t.is(topo.staleness, 4);
  t.is(topo.options.epochs, 2);
  t.is(topo.options.batchSize, 64);
  // Defaults: one server for the strategies that need one, none for partitioned.
  t.is(topologyFromFlags({ strategy: 'centralized', consistency: 'sync', train: {} }).servers.length, 1);
  const part = topologyFromFlags({ strategy: 'partitioned', consistency: 'sync', train: {} });
  t.is(part.servers.length, 0);
  t.deepEqual(part.trainers.map((p) => p.rank), [0, 1]);
  t.is(part.staleness, undefined);
});

test('a topology file gives names, extra args and env, shards and training options; command-line flags win', (t) => {
  const text = JSON.stringify({
    description: 'two unequal servers',
    strategy: 'centralized',
    consistency: 'ssp',
    staleness: 3,
    servers: [{ name: 'big', env: { A: '1' } }, 'small'],
    trainers: [{ name: 'w1', args: ['--extra'] }, 'w2'],
    shards: { big: 0.75, small: 0.25 },
    train: { dataset: 'synthetic', epochs: 3, batchSize: 32, lr: 0.1 },
  });
  const topo = parseTopology(text, 'x.json', { train: { epochs: 1 }, consistency: 'ssp' });
  t.deepEqual(topo.servers.map((p) => [p.name, p.rank, p.env]), [['big', 0, { A: '1' }], ['small', 1, {}]]);
  t.deepEqual(topo.trainers.map((p) => [p.name, p.rank, p.args]), [['w1', 2, ['--extra']], ['w2', 3, []]]);
  t.deepEqual(topo.shards, { big: 0.75, small: 0.25 });
  t.deepEqual(topo.train, { dataset: 'synthetic', epochs: 1, batchSize: 32, lr: 0.1 });
  t.is(topo.staleness, 3);
  t.is(topo.options.epochs, 1);
  const lists = parseTopology(JSON.stringify({ strategy: 'remote-forward', servers: 2, trainers: 1, shards: { ps0: ['fc1.weight'], ps1: ['fc1.bias'] } }), 'y.json');
  t.deepEqual(lists.shards, { ps0: ['fc1.weight'], ps1: ['fc1.bias'] });
  t.throws(() => parseTopology('{', 'z.json'), { instanceOf: TopologyError, message: /^z\.json:1:2: invalid JSON/ });
});

test('--dry-run prints every process with its command line and starts nothing', async (t) => {
  const r = await psrun(['--dry-run', '--servers', '1', '--trainers', '2', '--consistency', 'ssp', '--staleness', '1', '--epochs', '2']);
  t.is(r.code, 0);
  t.is(r.spawned, 0);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 3);
  t.regex(lines[0]!, /^ps0 \(ps-server, rank 0\): --name ps0 --rank 0 --world-size 3 --master 127\.0\.0\.1:0 --servers 1 --strategy centralized --consistency ssp --staleness 1 --epochs 2$/);
  t.regex(lines[2]!, /^trainer2 \(trainer, rank 2\): .* --epochs 2 --progress lines --json <tmp>\/trainer2\.json$/);
});

