// Collective communication (ARCHITECTURE.md's src/collective/): process groups over the RPC
// layer's agents and data plane.
export { ProcessGroup, CollectiveError, attachCollectives, segmentBounds } from './process-group.js';
export type { CollectiveOptions, GroupOptions, GroupStats, ReduceOp, ReduceOptions, WireDType } from './process-group.js';
