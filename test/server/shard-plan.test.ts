// The shard plan: deterministic, balanced by element count, large tensors split by range.
import test from 'ava';
import { planShards } from '../../src/server/index.js';

const specs = [{ name: 'fc1.weight', size: 1000 }, { name: 'fc1.bias', size: 10 }, { name: 'fc2.weight', size: 100 }, { name: 'fc2.bias', size: 7 }];
const total = specs.reduce((n, s) => n + s.size, 0);

for (const servers of [1, 2, 3, 5]) {
  test(`${servers} servers: every element held exactly once, loads within one element`, (t) => {
    const plan = planShards(specs, servers);
    t.is(plan.length, servers);
    const covered = new Map(specs.map((s) => [s.name, new Uint8Array(s.size)]));
    let at = 0;
    for (const [i, shard] of plan.entries()) {
      t.is(shard.index, i);
      t.is(shard.start, at, 'shards are contiguous in flat order');
      t.is(shard.length, shard.slices.reduce((n, s) => n + s.length, 0));
      at += shard.length;
      for (const s of shard.slices) for (let k = s.offset; k < s.offset + s.length; k++) covered.get(s.name)![k]!++;
    }
    t.is(at, total);
    for (const [name, c] of covered) t.true(c.every((v) => v === 1), `${name} covered once`);
    const loads = plan.map((s) => s.length);
    t.true(Math.max(...loads) - Math.min(...loads) <= 1, `loads ${loads.join(', ')}`);
  });
}

test('a tensor larger than a fair share is split by range across servers', (t) => {
  const plan = planShards(specs, 2);
  const pieces = plan.flatMap((s) => s.slices.filter((x) => x.name === 'fc1.weight'));
  t.deepEqual(pieces, [{ name: 'fc1.weight', offset: 0, length: 558 }, { name: 'fc1.weight', offset: 558, length: 442 }]);
});

test('the plan is deterministic', (t) => {
  t.deepEqual(planShards(specs, 3), planShards(specs.map((s) => ({ ...s })), 3));
});

test('bad layouts and server counts are refused with the culprit named', (t) => {
  t.throws(() => planShards(specs, 0), { message: /servers = 0/ });
  t.throws(() => planShards([], 1), { message: /non-empty list/ });
  t.throws(() => planShards([{ name: 'a', size: 2 }, { name: 'a', size: 3 }], 1), { message: /'a' appears twice/ });
  t.throws(() => planShards([{ name: 'a', size: 0 }], 1), { message: /'a' has size 0/ });
  t.throws(() => planShards([{ name: 'a', size: 1.5 }], 1), { message: /'a' has size 1.5/ });
});
