// resolveWorld: a process's place in the world (name, rank, role, the others' names) from its
// flags or torchrun's environment, and one clear line for every impossible world, without
// starting a process.
import test from 'ava';
import { resolveOptions, type TrainOptions } from '../../src/trainer/options.js';
import { resolveWorld } from '../../src/trainer/world.js';
// the hogwild case below: the strategies as the commands see them (hogwild registers its entry)
import '../../src/cli/strategies.js';

const MASTER = '127.0.0.1:29500';
const opts = (o: Partial<TrainOptions>): TrainOptions => resolveOptions({ strategy: 'centralized', ...o });
const TORCHRUN = { RANK: '2', WORLD_SIZE: '4', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1234' };

test('centralized: ranks [0, servers) are servers ps0.., the others trainers trainer0..', (t) => {
  const world = { worldSize: 4, master: MASTER, servers: 2 };
  t.deepEqual(resolveWorld(opts({ ...world, rank: 1 }), {}), {
    name: 'ps1', rank: 1, worldSize: 4, master: MASTER, role: 'server', index: 1, partitioned: false,
    servers: 2, trainers: 2, serverNames: ['ps0', 'ps1'], trainerNames: ['trainer0', 'trainer1'],
  });
  t.like(resolveWorld(opts({ ...world, rank: 2 }), {}), { name: 'trainer0', role: 'trainer', index: 0 });
  t.like(resolveWorld(opts({ ...world, rank: 3 }), {}), { name: 'trainer1', role: 'trainer', index: 1 });
  // the default: one server
  t.like(resolveWorld(opts({ worldSize: 3, master: MASTER, rank: 0 }), {}), { name: 'ps0', role: 'server', servers: 1, trainers: 2 });
});

test('--name overrides the process\'s own name only', (t) => {
  const w = resolveWorld(opts({ worldSize: 3, master: MASTER, rank: 2, name: 'alice' }), {});
  t.like(w, { name: 'alice', role: 'trainer', index: 1 });
  t.deepEqual(w.trainerNames, ['trainer0', 'trainer1']);
  t.is(resolveWorld(opts({ strategy: 'partitioned', worldSize: 2, master: MASTER, rank: 1, name: 'beta' }), {}).name, 'beta');
});

test('remote-forward: rank 0 is ps0 and the others trainers', (t) => {
  t.like(resolveWorld(opts({ strategy: 'remote-forward', worldSize: 3, master: MASTER, rank: 0 }), {}), { name: 'ps0', role: 'server', servers: 1, trainers: 2 });
  t.like(resolveWorld(opts({ strategy: 'remote-forward', worldSize: 3, master: MASTER, rank: 2 }), {}), { name: 'trainer1', role: 'trainer', index: 1 });
});

test('partitioned: every rank is a worker trainer<rank> serving shard <rank>; --servers is ignored', (t) => {
  t.deepEqual(resolveWorld(opts({ strategy: 'partitioned', worldSize: 3, master: MASTER, rank: 2, servers: 7 }), {}), {
    name: 'trainer2', rank: 2, worldSize: 3, master: MASTER, role: 'trainer', index: 2, partitioned: true,
    servers: 3, trainers: 3, serverNames: ['trainer0', 'trainer1', 'trainer2'], trainerNames: ['trainer0', 'trainer1', 'trainer2'],
  });
});

test('torchrun\'s environment gives the place when the flags do not', (t) => {
  t.like(resolveWorld(opts({}), TORCHRUN), { rank: 2, worldSize: 4, master: '10.0.0.1:1234', name: 'trainer1', role: 'trainer' });
  // an empty variable counts as unset
  t.throws(() => resolveWorld(opts({}), { ...TORCHRUN, RANK: '' }), { instanceOf: RangeError, message: '--strategy centralized needs --rank (or env RANK)' });
});

test('flags win over the environment, each on its own', (t) => {
  t.like(resolveWorld(opts({ rank: 0 }), TORCHRUN), { rank: 0, worldSize: 4, master: '10.0.0.1:1234', role: 'server' });
  t.like(resolveWorld(opts({ worldSize: 6 }), TORCHRUN), { rank: 2, worldSize: 6, master: '10.0.0.1:1234' });
  t.like(resolveWorld(opts({ master: MASTER }), TORCHRUN), { rank: 2, worldSize: 4, master: MASTER });
  // a bad variable is not read when the flag is given
  t.like(resolveWorld(opts({ rank: 1, worldSize: 2 }), { ...TORCHRUN, RANK: 'x', WORLD_SIZE: 'y' }), { rank: 1, worldSize: 2 });
});

test('without an env argument the process\'s environment is read', (t) => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, TORCHRUN);
    t.like(resolveWorld(opts({})), { rank: 2, worldSize: 4, master: '10.0.0.1:1234' });
  } finally {
    for (const k of Object.keys(TORCHRUN)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
});

const bad: Array<[string, Partial<TrainOptions>, NodeJS.ProcessEnv, string]> = [
  ['no rank', { worldSize: 3, master: MASTER }, {}, '--strategy centralized needs --rank (or env RANK)'],
  ['no world size', { rank: 0, master: MASTER }, {}, '--strategy centralized needs --world-size (or env WORLD_SIZE)'],
  ['no master', { rank: 0, worldSize: 3 }, {}, '--strategy centralized needs --master host:port (or env MASTER_ADDR and MASTER_PORT)'],
  ['MASTER_ADDR without MASTER_PORT', { rank: 0, worldSize: 3 }, { MASTER_ADDR: 'h' }, '--strategy centralized needs --master host:port (or env MASTER_ADDR and MASTER_PORT)'],
  ['MASTER_PORT without MASTER_ADDR', { rank: 0, worldSize: 3 }, { MASTER_PORT: '1' }, '--strategy centralized needs --master host:port (or env MASTER_ADDR and MASTER_PORT)'],
  ['the rank checked first', { strategy: 'partitioned' }, {}, '--strategy partitioned needs --rank (or env RANK)'],
  ['env RANK not a number', { worldSize: 3, master: MASTER }, { RANK: 'two' }, 'env RANK=\'two\' is not a non-negative integer (or give --rank)'],
  ['env RANK negative', { worldSize: 3, master: MASTER }, { RANK: '-1' }, 'env RANK=\'-1\' is not a non-negative integer (or give --rank)'],
  ['env RANK fractional', { worldSize: 3, master: MASTER }, { RANK: '1.5' }, 'env RANK=\'1.5\' is not a non-negative integer (or give --rank)'],
  ['env WORLD_SIZE not a number', { rank: 0, master: MASTER }, { WORLD_SIZE: '3 ' }, 'env WORLD_SIZE=\'3 \' is not a non-negative integer (or give --world-size)'],
  ['master without a port', { rank: 0, worldSize: 3, master: 'nowhere' }, {}, '--master must be host:port, got \'nowhere\''],
  ['master with a port of 6 digits', { rank: 0, worldSize: 3, master: 'h:123456' }, {}, '--master must be host:port, got \'h:123456\''],
  ['master from env, malformed', { rank: 0, worldSize: 3 }, { MASTER_ADDR: 'a b', MASTER_PORT: '1' }, '--master must be host:port, got \'a b:1\''],
  ['rank outside the world', { rank: 3, worldSize: 3, master: MASTER }, {}, '--rank 3 is outside the world of --world-size 3'],
  ['partitioned rank outside the world', { strategy: 'partitioned', rank: 2, worldSize: 2, master: MASTER }, {}, '--rank 2 is outside the world of --world-size 2'],
  ['a one-process strategy', { strategy: 'local', rank: 0, worldSize: 2, master: MASTER }, {}, '--strategy local does not run as ps-server/trainer processes with ranks'],
  ['hogwild', { strategy: 'hogwild', rank: 0, worldSize: 2, master: MASTER }, {}, '--strategy hogwild does not run as ps-server/trainer processes with ranks'],
  ['remote-forward with 2 servers', { strategy: 'remote-forward', rank: 0, worldSize: 4, master: MASTER, servers: 2 }, {},
    '--strategy remote-forward hosts its one shared model on one server, got --servers 2 (use --servers 1)'],
  ['no server', { rank: 0, worldSize: 3, master: MASTER, servers: 0 }, {}, '--servers 0 leaves no server in a world of --world-size 3 (need 1 <= servers < world size)'],
  ['no trainer', { rank: 0, worldSize: 3, master: MASTER, servers: 3 }, {}, '--servers 3 leaves no trainer in a world of --world-size 3 (need 1 <= servers < world size)'],
];

for (const [what, o, env, message] of bad) {
  test(`an impossible world is one clear line: ${what}`, (t) => {
    t.throws(() => resolveWorld(opts(o), env), { instanceOf: RangeError, message });
  });
}

test('pipeline: the world is --stages x --replicas peers; another world size is refused naming both', (t) => {
  const place = resolveWorld(opts({ strategy: 'pipeline', stages: 3, replicas: 2, worldSize: 6, master: MASTER, rank: 4 }), {});
  t.is(place.role, 'trainer');
  t.is(place.index, 4);
  t.throws(() => resolveWorld(opts({ strategy: 'pipeline', stages: 3, replicas: 2, worldSize: 4, master: MASTER, rank: 0 }), {}),
    { message: '--strategy pipeline runs --stages 3 x --replicas 2 = 6 processes, got --world-size 4' });
});
