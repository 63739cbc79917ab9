// The table of strategies: every `--strategy` value, its declaration (src/trainer/strategy.ts),
// in the order the flags list them. The trainer layer's strategies are in it from the start; a
// strategy of a layer above (Hogwild, in src/hogwild/) registers itself when its declaration
// module is imported, which the commands and the public API do, so no layer imports upward.
//
// The flags' choices, resolveOptions, resolveWorld, the process roles and psrun's topology all
// read this table; none of them names a strategy.
import type { StrategySpec, WorldStrategy } from '../strategy.js';
import { centralized } from './centralized.js';
import { ddp } from './ddp.js';
import { fsdp } from './fsdp.js';
import { local } from './local.js';
import { partitioned } from './partitioned.js';
import { pipeline } from './pipeline.js';
import { remoteForward } from './remote-forward.js';
import { zero } from './zero.js';

/** A strategy's name: one of the table's (`strategyNames()`), checked where options come in. */
export type Strategy = string;

const table = new Map<string, StrategySpec>();

/**
 * The registered names in table order. A live list (registrations append to it), so the flags
 * built after the commands' imports offer every strategy.
 */
export const STRATEGIES: readonly string[] = [];

/** Adds a strategy to the table; registering the same declaration again is a no-op. */
export function registerStrategy(spec: StrategySpec): StrategySpec {
  const known = table.get(spec.name);
  if (known === spec) return spec;
  if (known) throw new RangeError(`strategy '${spec.name}' is registered already`);
  if (!/^[a-z][a-z0-9-]*$/.test(spec.name)) throw new RangeError(`a strategy name is lower-case letters, digits and '-', got '${spec.name}'`);
  table.set(spec.name, spec);
  (STRATEGIES as string[]).push(spec.name);
  return spec;
}

/** Every registered strategy, in table order. */
export function strategies(): StrategySpec[] {
  return [...table.values()];
}

/** The strategies that run as several processes with ranks (psrun's, ps-server's and `trainer --rank`'s). */
export function worldStrategies(): WorldStrategy[] {
  return strategies().filter((s): s is WorldStrategy => s.world !== 'single');
}

/** The declaration of `name`, or undefined. */
export function findStrategy(name: string): StrategySpec | undefined {
  return table.get(name);
}

/** The declaration of `name`; an unknown name throws a RangeError listing the known ones. */
export function strategyOf(name: string): StrategySpec {
  const spec = table.get(name);
  if (!spec) throw new RangeError(`unknown strategy '${name}' (known: ${STRATEGIES.join(', ')})`);
  return spec;
}

/**
 * Why a strategy cannot run under a consistency model, or null when it can (or when the strategy
 * is unknown: that is refused where the strategy is checked). psrun, ps-server and trainer refuse
 * such a pair with this one line.
 */
export function consistencyConflict(strategy: string, consistency: string): string | null {
  const spec = table.get(strategy);
  if (!spec || (spec.consistencies as readonly string[]).includes(consistency)) return null;
  return spec.refusal?.(consistency) ?? `strategy ${strategy} runs under consistency ${spec.consistencies.join(' or ')} only, got consistency ${consistency}`;
}

/** The checkpoint flags of a run (a part of TrainOptions). */
export interface CheckpointFlags {
  strategy: string;
  checkpointDir?: string;
  checkpointEvery?: number;
  checkpointSteps?: number;
  resume?: boolean;
}

/**
 * Why these checkpoint flags cannot run, or null: a flag that needs --checkpoint-dir without it,
 * or a strategy that does not write checkpoints (said rather than silently training without).
 */
export function checkpointConflict(o: CheckpointFlags): string | null {
  if (o.checkpointDir === undefined) {
    if (o.resume) return '--resume needs --checkpoint-dir (the directory to resume from)';
    if ((o.checkpointSteps ?? 0) > 0) return '--checkpoint-steps needs --checkpoint-dir';
    if ((o.checkpointEvery ?? 0) > 0) return '--checkpoint-every needs --checkpoint-dir';
    return null;
  }
  const spec = table.get(o.strategy);
  if (spec && !spec.checkpoints) {
    const yes = [...table.values()].filter((s) => s.checkpoints).map((s) => s.name);
    return `--checkpoint-dir: strategy ${o.strategy} does not write checkpoints yet (${yes.join(' and ')} ${yes.length === 1 ? 'does' : 'do'}; docs/FAULTS.md)`;
  }
  return null;
}

/**
 * Why elastic trainers (--min-trainers) cannot run with these options, or null: only a strategy
 * whose servers hand out the batches takes trainers joining and leaving mid-run.
 */
export function elasticConflict(o: { strategy: string; minTrainers?: number }): string | null {
  if (!((o.minTrainers ?? 0) > 0)) return null;
  const yes = [...table.values()].filter((s) => s.elastic).map((s) => s.name);
  if (!table.get(o.strategy)?.elastic) return `--min-trainers (elastic trainers): only the ${yes.join(', ')} strategy takes trainers joining and leaving mid-run, got --strategy ${o.strategy}`;
  return null;
}

for (const spec of [local, centralized, remoteForward, partitioned, ddp, zero, fsdp, pipeline]) registerStrategy(spec);
