// The `ddp` strategy's declaration: every rank trains a full replica; gradients are averaged by
// bucketed all-reduces that start during backward (src/trainer/ddp.ts).
import { collectiveStrategy } from './collective.js';

export const ddp = collectiveStrategy({
  name: 'ddp',
  description: 'data parallel: every rank trains a full replica; gradients are all-reduced in buckets during backward',
  serverless: 'the ranks all-reduce their gradients among themselves',
  checkpoints: true,
  train: async (opts, ctx) => (await import('../ddp.js')).trainDataParallel(opts, ctx, 'ddp'),
});
