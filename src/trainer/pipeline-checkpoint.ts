// Checkpoints of the `pipeline` strategy (src/trainer/pipeline.ts), in the one format every
// strategy writes (src/server/checkpoint.ts), through SegmentCheckpoints (src/trainer/checkpoint.ts).
//
// The stages are consecutive children of the model's top-level Sequential, and the whole model's
// flat layout (`namedParameters()` order) walks those children in order, so each stage's
// parameters are one contiguous run of it (checked here: a parameter outside every stage, or a
// stage's parameters out of order, is refused with --checkpoint-dir named). Every parameter is a
// segment of its own, its master the stage's live tensor: the stage's optimizer keeps its state
// per parameter (SGD's momentum, Adam's moments and step count), so each segment's state is
// exactly that parameter's, with nothing concatenated or approximated. The process of pipeline 0
// that runs a stage writes that stage's segments (the replicas of a stage hold the same values
// after their all-reduce) and its buffers under their names in the whole model ("3.running_mean"),
// so the set of files tiles the model and the manifest describes the whole model: any reader,
// ddp's and local's included, reads it back. On --resume every process, replicas too, reads its
// own stage's parameters, optimizer state and buffers back.
//
// The manifest's `trainers` is the number of pipelines (--replicas): they are the data shares,
// a stage does not have one. So a checkpoint resumes with another --stages (or another cut), the
// step's batches and arithmetic being the same whichever stage a layer runs on.
import type { LoadedCheckpoint, ParameterSpec } from '../server/index.js';
import { Module, type Optimizer, type Sequential, type Tensor } from '../tensor/index.js';
import { SegmentCheckpoints, type Segment } from './checkpoint.js';
import type { TrainOptions } from './options.js';

const describe = (layout: readonly ParameterSpec[]) => layout.map((p) => `${p.name}[${(p.shape ?? [p.size]).join('x')}]`).join(', ');

/** One stage's buffers under their names in the whole model: what SegmentCheckpoints writes and reads for a stage. */
class StageBuffers extends Module {
  constructor(private readonly named: [string, Tensor][]) {
    super();
  }

  override namedBuffers(): [string, Tensor][] {
    return this.named;
  }

  forward(): Tensor {
    throw new Error('StageBuffers names a pipeline stage\'s buffers for its checkpoints; the stage module runs it');
  }
}

export interface StageCheckpointSpec {
  /** The whole model, as every process builds it (its children cut into the stages). */
  model: Sequential;
  /** Every stage's module, in stage order (their parameters and buffers are the model's own). */
  stageModules: readonly Module[];
  /** This process's stage. */
  stage: number;
  /** Pipelines (--replicas): the manifest's `trainers`. */
  replicas: number;
  /** Pipeline 0's process writes its stage; the others only read it back. */
  writes: boolean;
}

/** Checkpoints of one pipeline stage: its segments of the whole model's flat layout and its buffers. */
export class StageCheckpoints extends SegmentCheckpoints {
  /** This process writes its stage (pipeline 0's); the other pipelines' only read it back. */
  readonly writing: boolean;

  private constructor(opts: TrainOptions, layout: ParameterSpec[], segments: Segment[], optimizer: Optimizer<unknown>, log: (line: string) => void, spec: StageCheckpointSpec, buffers: StageBuffers) {
    super(opts, layout, segments, optimizer, log, spec.replicas, buffers, spec.writes);
    this.writing = spec.writes;
  }

  /**
   * The checkpoints of stage `spec.stage`, its optimizer `optimizer`. Call it before the other
   * stages' parameters are dropped (their sizes and names make the layout).
   */
  static create(opts: TrainOptions, spec: StageCheckpointSpec, optimizer: Optimizer<unknown>, log: (line: string) => void): StageCheckpoints {
    const named = spec.model.namedParameters();
    const stageOf = new Map<Tensor, number>();
    spec.stageModules.forEach((m, s) => { for (const p of m.parameters()) stageOf.set(p, s); });
    const layout: ParameterSpec[] = [];
    const segments: Segment[] = [];
    let at = 0;
    let prev = 0;
    for (const [name, p] of named) {
      const s = stageOf.get(p);
      if (s === undefined) throw new RangeError(`--checkpoint-dir: parameter ${name} of the model is in no pipeline stage (not in a child of its top-level Sequential), so no stage would write it`);
      if (s < prev) throw new RangeError(`--checkpoint-dir: parameter ${name} (stage ${s}) comes after stage ${prev}'s in the model's parameter order, so a stage's parameters are not one run of the flat layout`);
      prev = s;
      layout.push({ name, size: p.size, shape: [...p.shape] });
      segments.push({ start: at, end: at + p.size, master: s === spec.stage ? p : null });
      at += p.size;
    }
    const own = new Set(spec.stageModules[spec.stage]!.buffers());
    const buffers = new StageBuffers(spec.model.namedBuffers().filter(([, b]) => own.has(b)));
    return new StageCheckpoints(opts, layout, segments.filter((g) => g.end > g.start), optimizer, log, spec, buffers);
  }

  /** A checkpoint of another number of pipelines is refused in their words (a pipeline, not a rank, is a data share). */
  protected override checkCompatible(cp: LoadedCheckpoint): void {
    if (describe(cp.manifest.layout) === describe(this.layout) && cp.manifest.trainers !== this.job.trainers) {
      throw new RangeError(`--resume: checkpoint ${cp.id} (${cp.dir}) was written by ${cp.manifest.trainers} pipeline(s); resume it with --replicas ${cp.manifest.trainers} (this run has ${this.job.trainers}): each pipeline's data share depends on it`);
    }
    super.checkCompatible(cp);
  }
}
