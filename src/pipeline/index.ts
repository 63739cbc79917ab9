// Pipeline parallelism: a Sequential cut into stages (split.ts), the schedules (schedule.ts), the
// stage runtime (stage.ts) and the links between stages (link.ts).
export { BALANCES, PipelineSplitError, planPipeline, stageModule } from './split.js';
export type { Balance, PipelinePlan, StagePlan, PipelineSplitOptions } from './split.js';
export { SCHEDULES, stageSchedule, peakInFlight, theoreticalBubble, simulateSchedule } from './schedule.js';
export type { ScheduleName, StageOp, SimulatedPipeline } from './schedule.js';
export { PipelineStage } from './stage.js';
export type { StageLink, StageSpec, StageBatch, StageBatchFigures } from './stage.js';
export { groupLink, localLinks } from './link.js';
