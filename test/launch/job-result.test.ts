// Combining the trainers' result files into the job's result.
import test from 'ava';
import { LaunchError } from '../../src/launch/errors.js';
import { combineResults } from '../../src/launch/job-result.js';
import { topologyFromFlags } from '../../src/launch/topology.js';

const topo = topologyFromFlags({ servers: 1, trainers: 2, strategy: 'centralized', consistency: 'async', train: { epochs: 3, dataset: 'synthetic' } });

function trainerResult(over: Record<string, unknown>) {
  return { strategy: 'centralized', trainers: 1, samples: 100, samplesPerSecond: 50, testAccuracy: 0.8, finalLoss: 0.4, trainSeconds: 2, testSamples: 500, simd: 'avx2', device: 'cpu', ...over };
}

test('per-trainer results are summed; accuracy from the first trainer; wallSeconds is psrun\'s', (t) => {
  const r = combineResults(topo, [
    { name: 'trainer1', result: trainerResult({ samples: 3000, samplesPerSecond: 1000, testAccuracy: 0.81, finalLoss: 0.3, trainSeconds: 3 }) },
    { name: 'trainer2', result: trainerResult({ samples: 2000, samplesPerSecond: 500, testAccuracy: 0.79, finalLoss: 0.5, trainSeconds: 4 }) },
  ], 12.5);
  t.is(r.aggregation, 'sum');
  t.is(r.samples, 5000);
  t.is(r.samplesPerSecond, 1500);
  t.is(r.testAccuracy, 0.81);
  t.true(Math.abs(r.finalLoss - 0.4) < 1e-12);
  t.is(r.trainSeconds, 4);
  t.is(r.wallSeconds, 12.5);
  t.is(r.trainers, 2);
  t.is(r.servers, 1);
  t.is(r.strategy, 'centralized');
  t.is(r.consistency, 'async');
  t.is(r.epochs, 3);
  t.is(r.dataset, 'synthetic');
  t.is(r.simd, 'avx2');
  t.is(r.testSamples, 500);
  t.deepEqual(r.perTrainer.map((p) => [p.name, p.samples]), [['trainer1', 3000], ['trainer2', 2000]]);
});

test('a first trainer that already reports all trainers is taken as is, not summed', (t) => {
  const r = combineResults(topo, [
    { name: 'trainer1', result: trainerResult({ trainers: 2, samples: 5000, samplesPerSecond: 1500, finalLoss: 0.25, trainSeconds: 3, consistency: 'sync' }) },
    { name: 'trainer2', result: trainerResult({ trainers: 1, samples: 2000, samplesPerSecond: 700, finalLoss: 0.5, trainSeconds: 9, testAccuracy: null }) },
  ], 1);
  t.is(r.aggregation, 'first');
  t.is(r.samples, 5000);
  t.is(r.samplesPerSecond, 1500);
  t.is(r.finalLoss, 0.25);
  t.is(r.trainSeconds, 3);
  t.is(r.testAccuracy, 0.8);
  // The first trainer says what it ran.
  t.is(r.consistency, 'sync');
});

test('a result without the figures to combine is a LaunchError naming the trainer and the field', (t) => {
  t.throws(() => combineResults(topo, [{ name: 'trainer1', result: trainerResult({}) }, { name: 'trainer2', result: { samples: 1 } }], 1),
    { instanceOf: LaunchError, message: "trainer2's result has no numeric 'samplesPerSecond' (got undefined)" });
  t.throws(() => combineResults(topo, [{ name: 'trainer1', result: [1] }], 1), { instanceOf: LaunchError, message: /trainer1's result is not a JSON object/ });
  t.throws(() => combineResults(topo, [], 1), { instanceOf: LaunchError });
});
