// psrpc's public API: re-exported from the layers below and nowhere else.
export * from './tensor/index.js';
export { cpuKernels, type NativeKernels } from './tensor/native.js';
export { cudaAvailable, cudaStatus, resolveDevice } from './tensor/cuda.js';
export * from './data/index.js';
export * from './rpc/index.js';
export { trainLocal } from './trainer/local.js';
export { evaluate } from './trainer/evaluate.js';
export { DEFAULTS as TRAIN_DEFAULTS, resolveOptions, type TrainOptions, type Strategy, type Consistency } from './trainer/options.js';
export { formatResult, writeResult, type TrainResult } from './trainer/result.js';
export * from './server/index.js';
export { trainCentralized, type TrainerContext, type TrainedWorker, type TrainerReport } from './trainer/centralized.js';
export { trainPartitioned, partitionServer, type PartitionedContext } from './trainer/partitioned.js';
export { trainRemoteForward, type RemoteForwardContext, type RemoteForwardWorker } from './trainer/remote-forward.js';
export { runServerProcess, runTrainerProcess, resolveWorld, type WorldPlace } from './trainer/process.js';
export { Launcher, type LauncherOptions, type LaunchOutcome, type ProcessFailure } from './launch/launcher.js';
export { checkTopology, parseTopology, readTopologyFile, topologyFromFlags, type Topology, type ProcessSpec } from './launch/topology.js';
export { hogwild, trainHogwild, HogwildWorkerError, HogwildOptionError, type HogwildOptions, type HogwildRun, type ModelContext, type ModelFactory } from './hogwild/index.js';
