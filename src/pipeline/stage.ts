// One pipeline stage: runs its schedule (schedule.ts) over a batch's micro-batches, receiving
// activations from the stage before and gradients from the stage after through a StageLink, as
// raw Float32Arrays (the process group's point-to-point messages between processes).
//
// The model's graph is cut at the stage boundaries: a stage's input is a fresh leaf (requiring a
// gradient on every stage but the first), its backward starts from its output with the gradient
// that came back, and the input's gradient is what goes upstream. The last stage computes the
// loss of each micro-batch weighted by its share of the batch (n_m / N), so the gradients summed
// over the micro-batches are those of the whole batch's mean loss (the loss must be a mean over
// the samples, as every model's loss is). Each gradient message carries one float more: the
// weighted loss of its micro-batch, so every stage learns the batch's loss without another message.
//
// With `recompute` (activation checkpointing, torch.utils.checkpoint) a stage's forward runs
// without recording a graph and keeps only its input; the backward runs the forward again, with
// the Dropout masks of the first run (their stream positions are restored) and the running
// statistics of BatchNorm left as the first run set them.
//
// Activation bytes: a micro-batch in flight holds its input, its output and every tensor its graph
// saved (the inputs of the recorded ops); the stage counts them when the forward ends and drops
// them when the backward ends, and reports the most it held at once.
import { segmentBounds } from '../collective/index.js';
import { Dropout, Module, noGrad, Tensor, type Labels } from '../tensor/index.js';
import { stageSchedule, type ScheduleName, type StageOp } from './schedule.js';

/** How a stage reaches its neighbours: stage indices, point-to-point, matched by tag in order. */
export interface StageLink {
  /** Sends `buf` to stage `stage`; `buf` must not change until the promise resolves. */
  send(buf: Float32Array, stage: number, tag: number): Promise<void>;
  /** Receives into `buf` (its size is the message's) what stage `stage` sent with this tag. */
  recv(buf: Float32Array, stage: number, tag: number): Promise<Float32Array>;
}

export interface StageSpec {
  /** This stage's layers (its parameters are the ones it trains). */
  module: Module;
  index: number;
  stages: number;
  micro: number;
  schedule: ScheduleName;
  /** Shape of one sample entering and leaving this stage (batch dimension excluded). */
  inShape: readonly number[];
  outShape: readonly number[];
  link: StageLink;
  /** The last stage's loss of a micro-batch (a mean over its samples). */
  loss?: (output: Tensor, labels: Labels) => Tensor;
  recompute?: boolean;
  /** Clock for the busy time (default performance.now). */
  now?: () => number;
}

/** What the first stage needs of a batch (its inputs), the last (its labels), every stage (its size). */
export interface StageBatch {
  size: number;
  x?: Float32Array;
  y?: Int32Array;
}

export interface StageBatchFigures {
  /** The batch's loss (the sum of the micro-batches' weighted losses). */
  loss: number;
  /** Milliseconds this stage computed (forwards, backwards, the loss). */
  busyMs: number;
  /** Milliseconds from the batch's start to this stage's last op (waiting included). */
  spanMs: number;
  /** The most activation bytes held at once during the batch. */
  peakActivationBytes: number;
}

interface InFlight {
  x: Tensor;
  y: Tensor;
  bytes: number;
  /** Dropout stream positions before the forward (recompute). */
  offsets?: number[];
  /** The last stage: the micro-batch's labels and loss weight. */
  labels?: Int32Array;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function descendants(m: Module, out: Module[] = []): Module[] {
  out.push(m);
  for (const [, c] of m.namedChildren()) descendants(c, out);
  return out;
}

export class PipelineStage {
  readonly ops: readonly StageOp[];
  private readonly spec: StageSpec;
  private readonly params: Set<Tensor>;
  private readonly dropouts: Dropout[];
  private readonly now: () => number;
  private readonly inElems: number;
  private readonly outElems: number;
  private readonly first: boolean;
  private readonly last: boolean;

  constructor(spec: StageSpec) {
    if (spec.index === spec.stages - 1 && !spec.loss) throw new RangeError('PipelineStage: the last stage needs the loss');
    this.spec = spec;
    this.ops = stageSchedule(spec.schedule, spec.stages, spec.micro, spec.index);
    this.params = new Set(spec.module.parameters());
    this.dropouts = descendants(spec.module).filter((m): m is Dropout => m instanceof Dropout);
    this.now = spec.now ?? (() => performance.now());
    this.inElems = numel(spec.inShape);
    this.outElems = numel(spec.outShape);
    this.first = spec.index === 0;
    this.last = spec.index === spec.stages - 1;
  }

  /**
   * Runs the schedule's forwards and backwards for one batch; the parameters' gradients hold the
   * batch's gradient afterwards (accumulated onto what they held: zero them before). `beforeLast`
   * runs just before the last backward starts (where a data-parallel group arms its gradient hooks).
   */
  async runBatch(batch: StageBatch, beforeLast?: () => void): Promise<StageBatchFigures> {
    const { spec } = this;
    const N = batch.size;
    if (!Number.isSafeInteger(N) || N < spec.micro) {
      throw new RangeError(`pipeline: a batch of ${N} sample(s) cannot be cut into ${spec.micro} micro-batches (--micro-batches must be at most --batch-size)`);
    }
    if (this.first && (!batch.x || batch.x.length !== N * this.inElems)) {
      throw new RangeError(`pipeline: the first stage needs the batch's inputs, ${N} x [${spec.inShape.join(', ')}] values, got ${batch.x ? batch.x.length : 'none'}`);
    }
    if (this.last && (!batch.y || batch.y.length !== N)) {
      throw new RangeError(`pipeline: the last stage needs the batch's ${N} labels, got ${batch.y ? batch.y.length : 'none'}`);
    }
    const bounds = segmentBounds(N, spec.micro);
    const t0 = this.now();
    const inflight = new Map<number, InFlight>();
    const sends: Promise<void>[] = [];
    let busy = 0, live = 0, peak = 0, loss = 0;
    const send = (buf: Float32Array, stage: number, tag: number) => {
      const p = spec.link.send(buf, stage, tag);
      p.catch(() => {}); // awaited below; never left unhandled meanwhile
      sends.push(p);
    };
    try {
      for (let k = 0; k < this.ops.length; k++) {
        const op = this.ops[k]!;
        const m = op.micro;
        const a = bounds[m]!, b = bounds[m + 1]!, n = b - a;
        if (op.kind === 'forward') {
          let x: Tensor;
          if (this.first) {
            x = new Tensor(batch.x!.subarray(a * this.inElems, b * this.inElems), [n, ...spec.inShape]);
          } else {
            const buf = new Float32Array(n * this.inElems);
            await spec.link.recv(buf, spec.index - 1, 2 * m);
            x = new Tensor(buf, [n, ...spec.inShape], { requiresGrad: true });
          }
          const s = this.now();
          const offsets = spec.recompute ? this.dropouts.map((d) => d.offset) : undefined;
          const y = spec.recompute ? noGrad(() => spec.module.forward(x)) : spec.module.forward(x);
          if (y.size !== n * this.outElems) {
            throw new RangeError(`pipeline: stage ${spec.index} returned shape [${y.shape.join(', ')}] for a micro-batch of ${n}; the plan says [${n}, ${spec.outShape.join(', ')}] (the model's shapes must not depend on the batch)`);
          }
          const bytes = spec.recompute ? (x.size + y.size) * 4 : this.graphBytes(x, y);
          if (!this.last) send(y.data as Float32Array, spec.index + 1, 2 * m);
          busy += this.now() - s;
          inflight.set(m, { x, y, bytes, ...(offsets ? { offsets } : {}), ...(this.last ? { labels: batch.y!.subarray(a, b) } : {}) });
          live += bytes;
          peak = Math.max(peak, live);
        } else {
          const f = inflight.get(m)!;
          let grad: Float32Array | undefined;
          let part = 0;
          if (!this.last) {
            grad = new Float32Array(n * this.outElems + 1);
            await spec.link.recv(grad, spec.index + 1, 2 * m + 1);
            part = grad[n * this.outElems]!;
          }
          if (k === this.ops.length - 1) beforeLast?.();
          const s = this.now();
          let y = f.y;
          if (spec.recompute) {
            y = this.rerun(f);
            // the graph lives while its backward runs: one micro-batch's full activations on top
            peak = Math.max(peak, live + this.graphBytes(f.x, y) - f.bytes);
          }
          if (this.last) {
            const l = spec.loss!(y, f.labels!);
            const w = n / N;
            // rounded as the gradient messages carry it, so every stage sums the same values
            part = Math.fround(l.item() * w);
            l.backward(Float32Array.of(w));
          } else {
            y.backward(grad!.subarray(0, n * this.outElems));
          }
          loss += part;
          if (!this.first) {
            const up = new Float32Array(n * this.inElems + 1);
            const g = f.x.grad;
            if (g) up.set(g.data as Float32Array);
            up[n * this.inElems] = part;
            send(up, spec.index - 1, 2 * m + 1);
          }
          busy += this.now() - s;
          inflight.delete(m);
          live -= f.bytes;
        }
      }
      await Promise.all(sends);
    } catch (e) {
      await Promise.allSettled(sends);
      throw e;
    }
    return { loss, busyMs: busy, spanMs: this.now() - t0, peakActivationBytes: peak };
  }

  /** The forward again, recording its graph, with the first run's Dropout masks and BatchNorm statistics. */
  private rerun(f: InFlight): Tensor {
    const after = this.dropouts.map((d) => d.offset);
    this.dropouts.forEach((d, i) => { d.offset = f.offsets![i]!; });
    const buffers = this.spec.module.buffers();
    const saved = buffers.map((t) => (t.data as Float32Array).slice());
    try {
      return this.spec.module.forward(f.x);
    } finally {
      this.dropouts.forEach((d, i) => { d.offset = after[i]!; });
      buffers.forEach((t, i) => (t.data as Float32Array).set(saved[i]!));
    }
  }

  /** Bytes of the stage's input, its output and every non-parameter tensor its graph saved. */
  private graphBytes(x: Tensor, y: Tensor): number {
    const seen = new Set<Tensor>([x, y]);
    const nodes = y.gradFn ? [y.gradFn] : [];
    const visited = new Set(nodes);
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      for (const t of node.inputs) {
        if (t === null) continue;
        if (!this.params.has(t)) seen.add(t);
        const fn = t.gradFn;
        if (fn && !visited.has(fn)) {
          visited.add(fn);
          nodes.push(fn);
        }
      }
    }
    let bytes = 0;
    for (const t of seen) bytes += t.size * 4;
    return bytes;
  }
}
