// The table of strategies: every entry is well-formed, the flags, the consistency refusals,
// resolveWorld and psrun's topology all read it, an unknown name is one clear error, a new
// strategy is one registration, and reading the table loads no RPC code.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { launchStrategies, topologyFromFlags } from '../../src/launch/topology.js';
import { TopologyError } from '../../src/launch/errors.js';
import { addTrainFlags, CONSISTENCIES, consistencyConflict, DEFAULTS, resolveOptions, STRATEGIES } from '../../src/trainer/options.js';
import { findStrategy, registerStrategy, strategies, strategyOf, worldStrategies } from '../../src/trainer/strategies/index.js';
import type { PeersStrategy } from '../../src/trainer/strategy.js';
import { resolveWorld } from '../../src/trainer/world.js';
// the table as the commands see it: the trainer layer's strategies plus hogwild's
import '../../src/cli/strategies.js';

const BUILT_IN = ['local', 'centralized', 'remote-forward', 'partitioned', 'ddp', 'zero', 'fsdp', 'pipeline', 'hogwild'];

test('the table holds the nine strategies, in the order the flags list them', (t) => {
  t.deepEqual(strategies().map((s) => s.name), BUILT_IN);
  t.deepEqual([...STRATEGIES], BUILT_IN);
  const flag = addTrainFlags(new Command()).options.find((o) => o.long === '--strategy')!;
  t.deepEqual(flag.argChoices, BUILT_IN);
});

test('every entry is well-formed', (t) => {
  const seen = new Set<string>();
  for (const s of strategies()) {
    t.regex(s.name, /^[a-z][a-z0-9-]*$/);
    t.false(seen.has(s.name), `${s.name} twice`);
    seen.add(s.name);
    t.true(s.description.length > 0, s.name);
    t.true(s.consistencies.length > 0, s.name);
    for (const c of s.consistencies) t.true((CONSISTENCIES as readonly string[]).includes(c), `${s.name}: ${c}`);
    // a strategy that refuses some consistency model says why, in its own words
    if (s.consistencies.length < CONSISTENCIES.length) t.is(typeof s.refusal, 'function', s.name);
    t.is(typeof s.resultConsistency, 'function');
    switch (s.world) {
      case 'single':
        t.is(typeof s.run, 'function', s.name);
        break;
      case 'servers':
        t.true(s.serverRole === 'shard' || s.serverRole === 'model', s.name);
        t.is(typeof s.train, 'function', s.name);
        if (s.fixedServers) {
          t.true(Number.isSafeInteger(s.fixedServers.count) && s.fixedServers.count >= 1, s.name);
          t.true(s.fixedServers.reason.length > 0, s.name);
        }
        break;
      case 'peers':
        t.true(s.serverless.length > 0, s.name);
        t.is(typeof s.train, 'function', s.name);
        if (s.host) {
          t.true(s.host.serves.length > 0, s.name);
          t.is(typeof s.host.start, 'function', s.name);
        }
        break;
      default:
        t.fail(`${(s as { name: string }).name}: unknown world`);
    }
  }
});

test('each strategy declares its world: one process, servers and trainers, or peers', (t) => {
  t.like(strategyOf('local'), { world: 'single' });
  t.like(strategyOf('hogwild'), { world: 'single' });
  t.like(strategyOf('centralized'), { world: 'servers', serverRole: 'shard' });
  t.like(strategyOf('remote-forward'), { world: 'servers', serverRole: 'model', fixedServers: { count: 1 } });
  t.like(strategyOf('partitioned'), { world: 'peers' });
  for (const name of ['ddp', 'zero', 'fsdp', 'pipeline']) t.like(strategyOf(name), { world: 'peers', consistencies: ['sync'] });
  t.deepEqual(worldStrategies().map((s) => s.name), ['centralized', 'remote-forward', 'partitioned', 'ddp', 'zero', 'fsdp', 'pipeline']);
});

test('an unknown strategy is one clear error listing the known ones', (t) => {
  t.throws(() => strategyOf('ddp-typo'), { instanceOf: RangeError, message: `unknown strategy 'ddp-typo' (known: ${BUILT_IN.join(', ')})` });
  t.is(findStrategy('ddp-typo'), undefined);
  t.throws(() => resolveOptions({ strategy: 'magic' }), { instanceOf: RangeError, message: /option strategy must be one of local, centralized, remote-forward, partitioned, ddp, zero, fsdp, pipeline, hogwild, got 'magic'/ });
});

test('the consistency refusals come from the table', (t) => {
  for (const s of strategies()) {
    for (const c of CONSISTENCIES) {
      const line = consistencyConflict(s.name, c);
      if (s.consistencies.includes(c)) t.is(line, null, `${s.name} ${c}`);
      else t.is(line, s.refusal!(c), `${s.name} ${c}`);
    }
  }
  t.deepEqual(strategyOf('partitioned').consistencies, ['sync']);
  t.deepEqual(strategyOf('remote-forward').consistencies, ['sync', 'async']);
  // an unknown strategy is refused where strategies are checked, not here
  t.is(consistencyConflict('nonexistent', 'ssp'), null);
});

test('the result reports the consistency the strategy ran under', (t) => {
  for (const c of CONSISTENCIES) {
    const opts = { ...DEFAULTS, consistency: c };
    t.is(strategyOf('centralized').resultConsistency(opts), c);
    t.is(strategyOf('partitioned').resultConsistency(opts), 'sync');
    t.is(strategyOf('remote-forward').resultConsistency(opts), 'async');
    t.is(strategyOf('local').resultConsistency(opts), null);
    t.is(strategyOf('hogwild').resultConsistency(opts), null);
  }
});

test('psrun\'s topology accepts exactly the world strategies of the table', (t) => {
  t.deepEqual(launchStrategies(), worldStrategies().map((s) => s.name).sort());
  for (const s of strategies()) {
    const build = () => topologyFromFlags({ strategy: s.name, consistency: s.consistencies[0]!, train: {} });
    if (s.world === 'single') {
      t.throws(build, { instanceOf: TopologyError, message: new RegExp(`strategy '${s.name}' runs in one process`) }, s.name);
    } else {
      const topo = build();
      t.is(topo.strategy, s.name);
      // psrun's default servers: one (or the exact number) where there are servers, none for peers
      t.is(topo.servers.length, s.world === 'servers' ? s.fixedServers?.count ?? 1 : 0, s.name);
    }
  }
});

test('a new strategy is one registration: the flags, resolveWorld and psrun\'s topology take it', (t) => {
  const ring: PeersStrategy = {
    name: 'test-ring',
    description: 'a test strategy: peers in a ring',
    world: 'peers',
    serverless: 'each peer holds a replica',
    consistencies: ['sync'],
    refusal: (c) => `strategy test-ring is synchronous, got consistency ${c}`,
    resultConsistency: () => 'sync',
    train: () => Promise.reject(new Error('not run in this test')),
  };
  t.is(registerStrategy(ring), ring);
  t.is(registerStrategy(ring), ring, 'registering the same declaration again is a no-op');
  t.throws(() => registerStrategy({ ...ring }), { instanceOf: RangeError, message: "strategy 'test-ring' is registered already" });
  t.throws(() => registerStrategy({ ...ring, name: 'Bad Name' }), { instanceOf: RangeError, message: /lower-case letters/ });

  t.is(STRATEGIES.at(-1), 'test-ring');
  t.is(resolveOptions({ strategy: 'test-ring' }).strategy, 'test-ring');
  t.is(consistencyConflict('test-ring', 'async'), 'strategy test-ring is synchronous, got consistency async');
  t.like(resolveWorld(resolveOptions({ strategy: 'test-ring', rank: 1, worldSize: 3, master: '127.0.0.1:1' }), {}), {
    name: 'trainer1', role: 'trainer', index: 1, partitioned: true, trainers: 3,
  });
  t.like(topologyFromFlags({ strategy: 'test-ring', consistency: 'sync', train: {} }), { strategy: 'test-ring', servers: [] });
  t.throws(() => topologyFromFlags({ strategy: 'test-ring', consistency: 'sync', servers: 1, train: {} }), {
    message: 'strategy test-ring has no separate servers (each peer holds a replica), got 1 server(s): use 0 servers',
  });
});

test('the trainer command reads the table without loading gRPC, protobufjs or prom-client', (t) => {
  // a child process: this one has loaded the launcher already; the hooks print each module loaded
  const hooks = fileURLToPath(new URL('../cli/fixtures/record-loads.mjs', import.meta.url));
  const command = fileURLToPath(new URL('../../src/cli/trainer.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', hooks, '--import', 'tsx', '--input-type=module', '-e',
    `const m = await import(${JSON.stringify(command)}); m.trainerCommand(); (await import(${JSON.stringify(fileURLToPath(new URL('../../src/cli/strategies.ts', import.meta.url)))})).strategyOf('local');`,
  ], { encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0, r.stderr);
  const loaded = r.stderr.split('\n').filter((l) => l.startsWith('load '));
  t.true(loaded.some((l) => l.includes('/src/trainer/strategies/index.ts')), 'the hooks saw the table load');
  t.deepEqual(loaded.filter((l) => /@grpc|protobufjs|prom-client|piscina/.test(l)), []);
});
