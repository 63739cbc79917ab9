// The accuracy-over-time curve recorded with --eval-every.
import test from 'ava';
import { syntheticSplit } from '../../src/data/index.js';
import { ManualClock } from '../../src/rpc/clock.js';
import { mlp, Module, type Tensor } from '../../src/tensor/index.js';
import { AccuracyCurve } from '../../src/trainer/curve.js';
import { trainLocal } from '../../src/trainer/local.js';

const quiet = { log: () => {} };

test('local training with evalEvery records a curve from 0 samples to the end, in time order, on the fixed slice', async (t) => {
  const r = await trainLocal({ dataset: 'fashion-mnist', trainSamples: 6000, testSamples: 2000, epochs: 2, evalEvery: 0.001, evalSamples: 500, progress: 'none' }, quiet);
  const curve = r.curve!;
  t.truthy(curve);
  t.true(curve.length >= 3, `${curve.length} points`);
  t.is(curve[0]!.samples, 0);
  t.is(curve.at(-1)!.samples, r.samples);
  for (let i = 1; i < curve.length; i++) {
    t.true(curve[i]!.seconds >= curve[i - 1]!.seconds);
    t.true(curve[i]!.samples >= curve[i - 1]!.samples);
  }
  // Training time excludes the evaluations, and the last point is taken at its end (one clock
  // reading for both; the exclusion itself is checked on a manual clock below).
  t.is(curve.at(-1)!.seconds, r.trainSeconds);
  // Learning shows on the curve: from chance (10 classes) to well above it.
  t.true(curve[0]!.accuracy < 0.3, `start ${curve[0]!.accuracy}`);
  t.true(curve.at(-1)!.accuracy > 0.6, `end ${curve.at(-1)!.accuracy}`);
});

test('without evalEvery there is no curve', async (t) => {
  const r = await trainLocal({ dataset: 'synthetic', trainSamples: 1000, testSamples: 200, progress: 'none' }, quiet);
  t.is(r.curve, undefined);
});

/** A classifier whose every forward (one per evaluation of a slice of <= 1000 samples) takes `ms` on the clock. */
class SlowClassifier extends Module {
  private readonly net = this.registerModule('net', mlp([784, 4, 10], { seed: 1 }));
  constructor(private readonly clock: ManualClock, private readonly ms: number) {
    super();
  }

  forward(x: Tensor): Tensor {
    this.clock.advance(this.ms);
    return this.net.forward(x);
  }
}

const { test: testSplit } = syntheticSplit({ trainSamples: 10, testSamples: 50, seed: 1 });

test('the curve\'s clock leaves out evaluation time, and the next point is due evalEvery after the last evaluation ended', (t) => {
  const clock = new ManualClock(1000);
  const curve = new AccuracyCurve(new SlowClassifier(clock, 30), testSplit, { evalEvery: 0.1, evalSamples: 20 }, true, clock);
  curve.record(0);
  t.deepEqual(curve.points.map((p) => [p.seconds, p.samples]), [[0, 0]]);
  // The first evaluation ran from 1000 to 1030: training time is still 0, the next point due at 1130.
  t.is(curve.elapsed(), 0);
  clock.advance(99);
  t.false(curve.due());
  curve.maybeRecord(5);
  t.is(curve.points.length, 1);
  clock.advance(1);
  t.true(curve.due());
  curve.maybeRecord(7);
  t.deepEqual(curve.points.map((p) => [p.seconds, p.samples]), [[0, 0], [0.1, 7]]);
  clock.advance(50);
  t.is(curve.elapsed(), 0.15);
  // finish: the last point and the training seconds from one reading.
  t.is(curve.finish(9), 0.15);
  t.deepEqual(curve.points.map((p) => [p.seconds, p.samples]), [[0, 0], [0.1, 7], [0.15, 9]]);
  t.is(curve.elapsed(), 0.15, 'the last evaluation is left out too');
  for (const p of curve.points) t.true(p.accuracy >= 0 && p.accuracy <= 1);
});

test('when training goes on during evaluations (Hogwild), the curve\'s clock counts them', (t) => {
  const clock = new ManualClock();
  const curve = new AccuracyCurve(new SlowClassifier(clock, 30), testSplit, { evalEvery: 0.1, evalSamples: 20 }, false, clock);
  curve.record(0);
  t.is(curve.elapsed(), 0.03);
  clock.advance(99);
  t.false(curve.due(), 'due evalEvery after the end of the last evaluation');
  clock.advance(1);
  curve.maybeRecord(4);
  t.deepEqual(curve.points.map((p) => [p.seconds, p.samples]), [[0, 0], [0.13, 4]]);
  t.is(curve.elapsed(), 0.16);
});

test('with evalEvery 0 nothing is recorded and no evaluation runs', (t) => {
  const clock = new ManualClock();
  const curve = new AccuracyCurve(new SlowClassifier(clock, 30), testSplit, { evalEvery: 0, evalSamples: 20 }, true, clock);
  curve.record(0);
  clock.advance(1e9);
  t.false(curve.due());
  curve.maybeRecord(1);
  t.is(curve.finish(2), 1e6);
  t.deepEqual(curve.points, []);
  t.is(clock.now(), 1e9, 'no evaluation advanced the clock');
});
