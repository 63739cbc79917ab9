// Test support: a whole pipeline world in this process, one agent per rank, every rank running
// trainPipeline; each rank is a trainer and a peer (the partitioned place of the pipeline strategy).
import type { Dataset } from '../../src/data/index.js';
import type { Agent } from '../../src/rpc/index.js';
import type { TrainOptions } from '../../src/trainer/options.js';
import { trainPipeline } from '../../src/trainer/pipeline.js';
import type { WorldTraining } from '../../src/trainer/strategy.js';
import { startWorld, stopWorld } from '../rpc/world.js';

/**
 * Runs `n` ranks of `opts` on `train` and resolves to each rank's training. Every run settles before
 * the world stops (a failing one must not leave the others hanging); if any failed, the first
 * failure is thrown with `settled`, every rank's outcome, attached.
 */
export async function runPipelineWorld(n: number, opts: TrainOptions, train: Dataset): Promise<WorldTraining[]> {
  const agents = await startWorld(n);
  try {
    const names = agents.map((a) => a.name);
    const runs = agents.map((agent: Agent, rank) => trainPipeline(opts, {
      agent, rank, trainers: n, train, leave: true,
      place: { name: agent.name, rank, worldSize: n, master: '', role: 'trainer' as const, index: rank, partitioned: true, servers: n, trainers: n, serverNames: names, trainerNames: names },
    }));
    const settled = await Promise.allSettled(runs);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw Object.assign(failed.reason as Error, { settled });
    return settled.map((s) => (s as PromiseFulfilledResult<WorldTraining>).value);
  } finally {
    await stopWorld(agents, false);
  }
}
