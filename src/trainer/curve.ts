// The accuracy-over-time curve: test accuracy on a fixed slice of the test split, recorded every
// `--eval-every` seconds of training, so strategies can be compared on time to a target accuracy.
//
// A point costs one forward pass over the slice (about 1 ms for 1,000 samples and the default MLP);
// the clock it is taken on excludes evaluation time, so the curve shows training time only.
import { take, type Dataset } from '../data/index.js';
import { systemClock, type Clock } from '../rpc/clock.js';
import { evaluate, type Classifier } from './evaluate.js';
import type { MetricFunction } from './model.js';
import type { TrainOptions } from './options.js';

export interface CurvePoint {
  /** Seconds of training (evaluation excluded) when the point was taken. */
  seconds: number;
  /** Samples trained so far (all trainers together, as far as this process knows). */
  samples: number;
  accuracy: number;
}

export class AccuracyCurve {
  readonly points: CurvePoint[] = [];
  private readonly slice: Dataset;
  private readonly everyMs: number;
  private readonly started: number;
  private pausedMs = 0;
  private nextAt: number;

  /**
   * `pausesTraining`: whether training stops while a point is evaluated (one loop that trains and
   * evaluates: true; Hogwild's main thread evaluates while the workers go on: false, so the clock
   * keeps running through evaluations). `clock`: where the times come from (tests pass a
   * ManualClock to decide how long training and evaluation take). `metric`: the model's (see evaluate).
   */
  constructor(private readonly model: Classifier, test: Dataset, opts: Pick<TrainOptions, 'evalEvery' | 'evalSamples'>,
    private readonly pausesTraining = true, readonly clock: Pick<Clock, 'now'> = systemClock,
    private readonly metric?: MetricFunction) {
    this.started = clock.now();
    this.slice = take(test, Math.min(opts.evalSamples, test.length));
    this.everyMs = opts.evalEvery * 1000;
    this.nextAt = this.everyMs > 0 ? this.started + this.everyMs : Infinity;
  }

  /** Seconds of training so far (evaluation excluded). */
  elapsed(now = this.clock.now()): number {
    return (now - this.started - this.pausedMs) / 1000;
  }

  /** Whether a point is due at `now` (for callers that must prepare the model first). */
  due(now = this.clock.now()): boolean {
    return now >= this.nextAt;
  }

  /** Cheap when no point is due: one clock read. */
  maybeRecord(samples: number): void {
    const now = this.clock.now();
    if (now < this.nextAt) return;
    this.record(samples, now);
  }

  /**
   * The end of training: records the last point and returns the training seconds, both from one
   * clock reading, so the result's trainSeconds is the last point's `seconds` exactly.
   */
  finish(samples: number, now = this.clock.now()): number {
    const seconds = this.elapsed(now);
    this.record(samples, now);
    return seconds;
  }

  /** Records a point now (also used for the start and the end of training). */
  record(samples: number, now = this.clock.now()): void {
    if (this.everyMs === 0) return;
    const accuracy = evaluate(this.model, this.slice, this.metric);
    const after = this.clock.now();
    this.points.push({ seconds: this.elapsed(now), samples, accuracy });
    if (this.pausesTraining) this.pausedMs += after - now;
    this.nextAt = after + this.everyMs;
  }
}
