// The `ps-server` command: one parameter server of a world (ARCHITECTURE.md's contract:
// `ps-server --name ps0 --rank 0 --world-size 3 --master 127.0.0.1:29500 [...]`). It takes the
// trainer's flags (psrun passes the same ones to every process: the optimizer, consistency and
// staleness matter here) plus --metrics-port. It serves until every trainer has left.
//
// The process logic lives in src/cli/process.ts, next to the trainer's, because a world's
// ranks, names and options are one contract; this file is only the command line.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { addTrainFlags, checkpointConflict, consistencyConflict, type TrainOptions } from '../trainer/options.js';
import type { ServersStrategy } from '../trainer/strategy.js';
import { runServerProcess } from './process.js';
import { findStrategy, worldStrategies } from './strategies.js';

interface ServerFlags extends TrainOptions {
  metricsPort?: number;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65535) throw new InvalidArgumentError(`--metrics-port must be an integer in [0, 65535], got '${value}'`);
  return n;
}

/** The strategies with server ranks, in table order: the ones ps-server runs. */
function serverStrategies(): ServersStrategy[] {
  return worldStrategies().filter((s): s is ServersStrategy => s.world === 'servers');
}

export function serverCommand(): Command {
  const cmd = addTrainFlags(new Command('ps-server'))
    .description('Run one psrpc parameter server (ranks [0, --servers) of the world)')
    .addOption(new Option('--metrics-port <port>', 'serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)').argParser(port))
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  // a server's default strategy is the first one with servers (an Option's default is copied into
  // the command when the option is added, so it is set on the command here)
  const first = serverStrategies()[0]?.name;
  if (first !== undefined) {
    cmd.options.find((o) => o.long === '--strategy')?.default(first);
    cmd.setOptionValueWithSource('strategy', first, 'default');
  }
  return cmd;
}

/** The line refusing a strategy without server ranks. */
function notServed(strategy: string): string {
  const names = serverStrategies().map((s) => s.name);
  const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : names.join('');
  // the peers that host something for each other: the likely confusion, said in passing
  const peers = worldStrategies().flatMap((s) => (s.world === 'peers' && s.host ? [`${s.name} workers serve ${s.host.serves}`] : []));
  return `ps-server serves the ${list} strategies only${peers.length ? ` (${peers.join('; ')})` : ''}, got --strategy ${strategy}`;
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const cmd = serverCommand();
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  const opts = cmd.opts<ServerFlags>();
  const conflict = consistencyConflict(opts.strategy, opts.consistency) ?? checkpointConflict(opts);
  if (conflict) {
    process.stderr.write(`error: ${conflict}\n`);
    return 1;
  }
  if (findStrategy(opts.strategy)?.world !== 'servers') {
    process.stderr.write(`error: ${notServed(opts.strategy)}\n`);
    return 1;
  }
  try {
    const s = await runServerProcess(opts, opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort } : {});
    process.stdout.write(`ps-server ${s.name}: steps=${s.steps} pushes=${s.pushes} pulls=${s.pulls} trainers=${s.joined} dropped=${s.dropped.length}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
