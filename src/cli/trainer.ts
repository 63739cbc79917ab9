// The `trainer` command: parses ARCHITECTURE.md's flags, runs the chosen strategy, prints the
// final line and writes `--json`. Bad flags exit 1 with one line naming the flag, before any work.
// A one-process strategy runs its own `run`; a world strategy runs this process's rank through
// the trainer process role (src/cli/process.ts says what each trainer's --json holds).
import { Command, CommanderError } from 'commander';
import { addTrainFlags, checkpointConflict, consistencyConflict, type TrainOptions } from '../trainer/options.js';
import { findStrategy } from '../trainer/strategies/index.js';
import { formatResult, writeResult, type TrainResult } from '../trainer/result.js';
import { strategyOf } from './strategies.js';

export function trainerCommand(): Command {
  return addTrainFlags(new Command('trainer'))
    .description('Train a model (--model: the mlp preset by default) with a psrpc strategy')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const cmd = trainerCommand();
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  const opts = cmd.opts<TrainOptions>();
  const conflict = consistencyConflict(opts.strategy, opts.consistency) ?? checkpointConflict(opts) ?? findStrategy(opts.strategy)?.check?.(opts) ?? null;
  if (conflict) {
    process.stderr.write(`error: ${conflict}\n`);
    return 1;
  }
  try {
    const result = await run(opts);
    process.stdout.write(formatResult(result) + '\n');
    if (opts.json) await writeResult(opts.json, result);
    return 0;
  } catch (e) {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

async function run(opts: TrainOptions): Promise<TrainResult> {
  const spec = strategyOf(opts.strategy);
  if (spec.world === 'single') return spec.run(opts);
  // imported on demand, like each strategy's implementation, so that a run that needs no RPC
  // does not pay for loading gRPC, protobufjs and prom-client (about 50 ms of the command's start)
  return (await (await import('./process.js')).runTrainerProcess(opts)).result;
}
