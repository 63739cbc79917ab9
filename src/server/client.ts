// PsClient: a trainer's side of the parameter servers. It knows the shard plan, so a push sends
// each server the subarray of the flat gradient buffer that server holds, and a pull writes each
// server's reply straight into the matching subarray of the flat parameter buffer.
import type { Agent } from '../rpc/index.js';
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
  private gradViews: Float32Array[];
  private paramViews: Float32Array[];

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
  ) {
    if (servers.length === 0) throw new RangeError('PsClient: no servers given');
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
    await this.each((i) => this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.join, [this.trainer, layout, this.paramViews[i]]).then((r) => this.land(i, r)));
  }

  /** Pushes the gradient shards and pulls the new parameters: one round trip per server. */
  pushPull(): Promise<void> {
    return this.each((i) => this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.pushPull, [this.trainer, this.versions[i], this.gradViews[i]]).then((r) => this.land(i, r)));
  }

  /** Pushes the gradient shards (resolves when applied). */
  push(): Promise<void> {
    return this.each((i) => this.agent.call<PushReply>(this.servers[i]!, PS_FUNCTIONS.push, [this.trainer, this.versions[i], this.gradViews[i]]).then((r) => { this.clocks[i] = r.clock; }));
  }

  /** Pulls every shard into the flat parameter buffer. `asTrainer` false: a plain read (no ssp wait). */
  pull(asTrainer = true): Promise<void> {
    return this.each((i) => this.agent.call<PullReply>(this.servers[i]!, PS_FUNCTIONS.pull, asTrainer ? [this.trainer] : []).then((r) => this.land(i, r)));
  }

  /** Leaves every server, so none waits for this trainer any more. */
  async leave(): Promise<void> {
    await this.each((i) => this.agent.call(this.servers[i]!, PS_FUNCTIONS.leave, [this.trainer]));
  }

  private land(i: number, r: PullReply): void {
    this.paramViews[i]!.set(r.values);
    this.versions[i] = r.version;
    this.clocks[i] = r.clock;
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
