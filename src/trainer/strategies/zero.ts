// The `zero` strategy's declaration: ZeRO stage 1 or 2 (--zero-stage): optimizer state (and the
// reduced gradient) sharded over the ranks by equal element counts (src/trainer/ddp.ts).
import { collectiveStrategy } from './collective.js';

export const zero = collectiveStrategy({
  name: 'zero',
  description: 'data parallel with the optimizer state sharded (ZeRO stage 1, or 2 with the gradients): reduce-scatter, step the shard, all-gather',
  serverless: 'the ranks shard the optimizer state among themselves',
  checkpoints: true,
  // each rank writes its own shards: they must all take the same step, which only a step count promises
  check: (opts) => (opts.checkpointDir !== undefined && opts.checkpointEvery > 0
    ? '--checkpoint-every: zero checkpoints by step count only (every rank writes its shards of the same step): use --checkpoint-steps N'
    : null),
  train: async (opts, ctx) => (await import('../ddp.js')).trainDataParallel(opts, ctx, 'zero'),
});
