// PsClient: a trainer's side of the parameter servers. It knows the shard plan, so a push sends
// each server the subarray of the flat gradient buffer that server holds, and a pull writes each
// server's reply straight into the matching subarray of the flat parameter buffer.
//
// In a 16-bit precision each server's gradient subarray is narrowed into a Uint16Array of that
// server's own (allocated once, reused every step) and sent as that typed array; each reply's
// 16-bit values are widened straight into the flat parameter buffer. A loss-scaled push (fp16)
// multiplies the gradient by the scale before narrowing and sends the scale along; a push that
// would carry inf or NaN carries zeros instead and reports the overflow (see pushPull).
import { releaseReceived, type Agent } from '../rpc/index.js';
import { fromWire, getBackend, nonFiniteCount, toWire, type WireDType } from '../tensor/index.js';
import type { BatchQueueShape } from './batch-queue.js';
import { PS_FUNCTIONS, type PullReply, type PushReply } from './protocol.js';
import { errors } from './errors.js';
import { planShards, type ParameterSpec, type Placement, type Shard } from './shard-plan.js';

export class PsClient {
  /** The shard plan: equal ranges until `join` learns the servers' placement. */
  shards: Shard[];
  /** The version of each server's shard at this trainer's last pull. */
  readonly versions: number[];
  /** The trainer's clock on each server at its last reply (ssp: pushes applied). */
  readonly clocks: number[];
  /**
   * Tensor payload bytes exchanged with servers in other processes (sent plus received, framing
   * excluded): calls to a server of this process's own name stay in the process and are not counted.
   */
  bytes = 0;
  private gradViews: Float32Array[];
  private paramViews: Float32Array[];
  /** 16-bit precision: each server's push buffer, reused every step. */
  private wireGrads: Uint16Array[] = [];

  /**
   * `servers`: the servers' worker names, in shard order. `params` / `grads`: the flat buffers of
   * `flattenParameters`, laid out as `layout`. The client keeps views of both: pushes read
   * `grads` and pulls write `params` in place.
   */
  constructor(
    readonly agent: Agent,
    readonly servers: readonly string[],
    readonly layout: readonly ParameterSpec[],
    readonly params: Float32Array,
    readonly grads: Float32Array,
    readonly trainer: string = agent.name,
    /** What gradients and parameters travel as (the servers refuse a join in another). */
    readonly precision: WireDType = 'float32',
  ) {
    if (servers.length === 0) throw new RangeError('PsClient: no servers given');
    if (precision !== 'float32' && precision !== 'bfloat16' && precision !== 'float16') {
      throw new RangeError(`PsClient: precision must be float32, bfloat16 or float16, got ${JSON.stringify(precision)}`);
    }
    this.shards = planShards(layout, servers.length);
    const total = layout.reduce((n, p) => n + p.size, 0);
    if (params.length !== total || grads.length !== total) {
      throw new RangeError(`PsClient: params has ${params.length} and grads ${grads.length} elements; the layout has ${total}`);
    }
    this.versions = servers.map(() => 0);
    this.clocks = servers.map(() => 0);
    this.gradViews = [];
    this.paramViews = [];
    this.usePlan(this.shards);
  }

  private usePlan(shards: Shard[]): void {
    this.shards = shards;
    this.gradViews = shards.map((s) => this.grads.subarray(s.start, s.start + s.length));
    this.paramViews = shards.map((s) => this.params.subarray(s.start, s.start + s.length));
    this.wireGrads = this.precision === 'float32' ? [] : shards.map((s) => new Uint16Array(s.length));
  }

  private remote(i: number): boolean {
    return this.servers[i] !== this.agent.name;
  }

  /**
   * The gradient shards as they go out: fp32 views (scale 1) or the 16-bit buffers, narrowed from
   * the gradient times `scale` (which multiplies the flat gradient buffer in place). With a scale
   * other than 1 a shard holding inf or NaN after narrowing is zeroed (every shard then is, so the
   * servers see one consistent skipped step) and the overflow is reported.
   */
  private encode(scale: number): { grads: (Float32Array | Uint16Array)[]; overflow: boolean } {
    if (typeof scale !== 'number' || !Number.isFinite(scale) || !(scale > 0)) throw new RangeError(`PsClient.pushPull: scale must be a finite number > 0, got ${String(scale)}`);
    if (scale !== 1) getBackend('cpu').kernels.scale(scale, this.grads);
    let overflow = false;
    let grads: (Float32Array | Uint16Array)[];
    if (this.precision === 'float32') {
      if (scale !== 1) overflow = nonFiniteCount(this.grads) > 0;
      grads = this.gradViews;
    } else {
      grads = this.wireGrads;
      for (let i = 0; i < grads.length; i++) toWire(this.precision, this.gradViews[i]!, this.wireGrads[i]!);
      if (scale !== 1) overflow = this.wireGrads.some((w) => wireNonFinite(this.precision, w));
    }
    if (overflow) {
      if (this.precision === 'float32') this.grads.fill(0);
      else for (const w of this.wireGrads) w.fill(0);
    }
    return { grads, overflow };
  }

  /** The smallest version over the servers (they advance together in sync mode). */
  get version(): number {
    return Math.min(...this.versions);
  }

  /**
   * Learns the servers' placement (`ps.placement`; they must all report the same one), joins every
   * server (the first join initialises it with this trainer's values) and pulls.
   */
  async join(): Promise<void> {
    const plans = await Promise.all(this.servers.map((s) => this.agent.call<Placement | null>(s, PS_FUNCTIONS.placement, [])));
    const text = JSON.stringify(plans[0]);
    const odd = plans.findIndex((p) => JSON.stringify(p) !== text);
    if (odd >= 0) throw errors.badLayout('shard placement', `servers "${this.servers[0]}" and "${this.servers[odd]}" report different placements (${text} and ${JSON.stringify(plans[odd])})`);
    if (plans[0]) this.usePlan(planShards(this.layout, this.servers.length, plans[0]));
    // shapes too, where the layout has them: a server refuses another model naming the first differing shape
    const layout = this.layout.map((p) => ({ name: p.name, size: p.size, ...(p.shape ? { shape: [...p.shape] } : {}) }));
    // fp32 joins keep today's arguments; a 16-bit join names its precision (the initial values stay fp32)
    const extra = this.precision === 'float32' ? [] : [this.precision];
    await this.each((i) => {
      if (this.remote(i)) this.bytes += this.paramViews[i]!.byteLength;
      return this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.join, [this.trainer, layout, this.paramViews[i], ...extra]).then((r) => this.land(i, r));
    });
  }

  /**
   * Pushes the gradient shards and pulls the new parameters: one round trip per server. `scale`
   * (fp16 loss scaling): the gradient is multiplied by it before it is narrowed, the servers divide
   * by it. Resolves to false when the scaled gradient overflowed: zeros were pushed instead (the
   * sync rounds stay aligned) and the caller skips the step and lowers its scale.
   */
  pushPull(scale = 1, checkpoint = -1, batch = -1): Promise<boolean> {
    return this.pushWith<PullReply>(PS_FUNCTIONS.pushPull, scale, (i, r) => this.land(i, r), checkpoint, batch);
  }

  /**
   * Elastic jobs: the number of the next batch to train, handed out by the first server (null: the
   * job's batches are all done). The push of its gradient passes it to pushPull as `batch`.
   */
  takeBatch(shape: BatchQueueShape): Promise<number | null> {
    // the reply of the last push brought it (no round trip), unless none could be handed out then
    const ready = this.nextBatch;
    this.nextBatch = undefined;
    if (ready !== undefined) return Promise.resolve(ready);
    return this.agent.call<number | null>(this.servers[0]!, PS_FUNCTIONS.batch, [this.trainer, shape]);
  }

  /** Elastic: the next batch, handed out with the first server's last pushPull reply. */
  private nextBatch: number | null | undefined;

  /** Pushes the gradient shards (resolves when applied; false: overflowed, see pushPull). */
  push(scale = 1): Promise<boolean> {
    return this.pushWith<PushReply>(PS_FUNCTIONS.push, scale, (i, r) => { this.clocks[i] = r.clock; });
  }

  /** One push call per server (`fn`: push or pushPull) with the encoded gradient shards; false: overflowed. */
  private async pushWith<R>(fn: string, scale: number, reply: (i: number, r: R) => void, checkpoint = -1, batch = -1): Promise<boolean> {
    const { grads, overflow } = this.encode(scale);
    const s = overflow ? 1 : scale;
    // checkpoint >= 0: every server checkpoints once this push's step is taken, as number `checkpoint`
    const tail = checkpoint >= 0 ? [s, checkpoint] : s === 1 ? [] : [s];
    // batch >= 0 (elastic): the first server, which handed it out, marks it done with this push's
    // step, and (pushPull) hands out the next one with its reply
    const first = batch >= 0 ? [s, checkpoint, batch, ...(fn === PS_FUNCTIONS.pushPull ? [true] : [])] : tail;
    await this.each((i) => {
      if (this.remote(i)) this.bytes += grads[i]!.byteLength;
      return this.agent.call<R>(this.servers[i]!, fn, [this.trainer, this.versions[i], grads[i], ...(i === 0 ? first : tail)]).then((r) => reply(i, r));
    });
    return !overflow;
  }

  /** Pulls every shard into the flat parameter buffer. `asTrainer` false: a plain read (no ssp wait). */
  pull(asTrainer = true): Promise<void> {
    return this.each((i) => this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.pull, asTrainer ? [this.trainer] : []).then((r) => this.land(i, r)));
  }

  /** Every server writes checkpoint `id` now and resolves when it is on disk (the end of training's). */
  async checkpoint(id: number): Promise<void> {
    await this.each((i) => this.agent.call(this.servers[i]!, PS_FUNCTIONS.checkpoint, [id]));
  }

  /**
   * sync, after a restarted trainer's join: the servers behind the others (its predecessor died
   * between its pushes) skip this trainer in their open round and answer once it has stepped, so
   * every server is at the same version again. Resolves to the number of servers that skipped.
   */
  async level(): Promise<number> {
    const top = this.maxVersion;
    const behind = this.servers.map((_, i) => i).filter((i) => this.versions[i]! < top);
    await Promise.all(behind.map((i) => this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.skip, [this.trainer]).then((r) => this.land(i, r))));
    return behind.length;
  }

  /** The largest version over the servers. */
  get maxVersion(): number {
    return Math.max(...this.versions);
  }

  /** Leaves every server, so none waits for this trainer any more. */
  async leave(): Promise<void> {
    await this.each((i) => this.agent.call(this.servers[i]!, PS_FUNCTIONS.leave, [this.trainer]));
  }

  private land(i: number, r: PullReply): void {
    if (this.remote(i)) this.bytes += r.values.byteLength;
    if (r.values instanceof Uint16Array) {
      if (this.precision === 'float32') throw new RangeError(`PsClient: server "${this.servers[i]}" replied with 16-bit values to a float32 trainer`);
      fromWire(this.precision, r.values, this.paramViews[i]!);
    } else {
      this.paramViews[i]!.set(r.values);
    }
    releaseReceived(r.values); // copied: the reply's memory goes back to the transport now
    this.versions[i] = r.version;
    this.clocks[i] = r.clock;
    if (i === 0 && r.batch !== undefined) this.nextBatch = r.batch;
  }

  private async each(f: (i: number) => Promise<unknown>): Promise<void> {
    if (this.servers.length === 1) {
      await f(0);
      return;
    }
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < this.servers.length; i++) all.push(f(i));
    await Promise.all(all);
  }
}

/** Whether 16-bit wire values `w` hold an inf or NaN (all-ones exponent). */
function wireNonFinite(dtype: WireDType, w: Uint16Array): boolean {
  const mask = dtype === 'float16' ? 0x7c00 : 0x7f80;
  for (let i = 0; i < w.length; i++) if ((w[i]! & mask) === mask) return true;
  return false;
}
