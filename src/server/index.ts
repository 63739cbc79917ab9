// The parameter-server layer's public API.
export { ParameterServer } from './parameter-server.js';
export { PS_FUNCTIONS, CONSISTENCY_MODELS, WIRE_PRECISIONS } from './protocol.js';
export type { ParameterServerOptions, ServerOptimizerOptions, ConsistencyModel, Gradients, PullReply, PushReply, ServerStats, WirePrecision } from './protocol.js';
export { PsClient } from './client.js';
export { BatchQueue, type BatchQueueShape, type BatchQueueStats } from './batch-queue.js';
export { planShards, checkSpecs } from './shard-plan.js';
export type { ParameterSpec, ShardSlice, Shard } from './shard-plan.js';
export { ServerMetrics } from './metrics.js';
export { errors as serverErrors } from './errors.js';
export { RemoteModelHost, SharedModel, RF_FUNCTIONS } from './remote-model.js';
export type { HostedModel, RemoteModelHostOptions, RemoteModelStats } from './remote-model.js';
export { parsePlacement, placementFromEnv } from './shard-plan.js';
export type { Placement } from './shard-plan.js';
export { CheckpointSchedule, CheckpointStore, flushOnSigterm, openCheckpoints, loadCheckpoint, checkpointDirName, CHECKPOINT_FORMAT } from './checkpoint.js';
export type { LoadedCheckpoint, Manifest, ManifestShard, RestoredRange, ShardSnapshot, WriteResult, CheckpointStoreOptions } from './checkpoint.js';
export type { CheckpointSink } from './protocol.js';
