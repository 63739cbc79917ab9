// The `trainer` command: parses ARCHITECTURE.md's flags, runs the chosen strategy, prints the
// final line and writes `--json`. Bad flags exit 1 with one line naming the flag, before any work.
import { Command, CommanderError } from 'commander';
import { trainLocal } from './local.js';
import { addTrainFlags, consistencyConflict, type Strategy, type TrainOptions } from './options.js';
import { formatResult, writeResult, type TrainResult } from './result.js';

type Runner = (opts: TrainOptions) => Promise<TrainResult>;

/** Strategies this command can run; the others need servers (psrun / ps-server). */
const RUNNERS: Partial<Record<Strategy, Runner>> = {
  local: (o) => trainLocal(o),
  // one process of a world with servers (src/trainer/process.ts says what each trainer's --json
  // holds); imported on demand, like hogwild, so that a run that needs no RPC does not pay for
  // loading gRPC, protobufjs and prom-client (about 50 ms of the command's start)
  centralized: async (o) => (await (await import('./process.js')).runTrainerProcess(o)).result,
  partitioned: async (o) => (await (await import('./process.js')).runTrainerProcess(o)).result,
  'remote-forward': async (o) => (await (await import('./process.js')).runTrainerProcess(o)).result,
  hogwild: async (o) => (await (await import('../hogwild/index.js')).trainHogwild(o)).result,
};

export function trainerCommand(): Command {
  return addTrainFlags(new Command('trainer'))
    .description('Train the MLP 784-H-H-10 with a psrpc strategy')
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
  const conflict = consistencyConflict(opts.strategy, opts.consistency);
  if (conflict) {
    process.stderr.write(`error: ${conflict}\n`);
    return 1;
  }
  const run = RUNNERS[opts.strategy];
  if (!run) {
    process.stderr.write(`error: --strategy ${opts.strategy} is not available in this version of trainer (available: ${Object.keys(RUNNERS).join(', ')})\n`);
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
