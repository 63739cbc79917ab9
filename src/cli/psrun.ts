// The `psrun` command: builds a topology from flags or a topology file, checks all of it before
// starting anything (one clear line and exit 1 on a problem), runs it with the Launcher, prints
// the job's result line and writes `--json`. Ctrl-C / SIGTERM / SIGHUP stop every child first.
// The launcher, the topologies and the job's result live in src/launch/; this is the command line.
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { formatResult, writeResult } from '../trainer/result.js';
import type { CommandResolver } from '../launch/commands.js';
import { LaunchError, TopologyError } from '../launch/errors.js';
import type { TextOutput } from '../launch/job-progress.js';
import { formatFailure, Launcher, type SpawnFn } from '../launch/launcher.js';
import { MAX_PROCESSES, readTopologyFile, topologyFromFlags, type Topology } from '../launch/topology.js';
import { TOPOLOGY_KEYS, trainFlagTable, type FlagValue, type TrainFlags } from '../launch/train-flags.js';
import { DEFAULTS, type Consistency } from '../trainer/options.js';
import type { Clock } from '../rpc/clock.js';
import { findStrategy, worldStrategies } from './strategies.js';

function count(flag: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min || n > MAX_PROCESSES) {
      throw new InvalidArgumentError(`${flag} must be an integer in [${min}, ${MAX_PROCESSES}], got '${value}'`);
    }
    return n;
  };
}

function seconds(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 3600) throw new InvalidArgumentError(`${flag} must be a number of seconds in [0, 3600], got '${value}'`);
    return n;
  };
}

/** `--trainers N` or, elastic, `--trainers MIN:MAX` (torchrun's --nnodes form). */
function trainerCount(value: string): number | { min: number; max: number } {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(value);
  if (!m) return count('--trainers', 1)(value);
  const min = Number(m[1]);
  const max = Number(m[2]);
  if (min < 1 || max > MAX_PROCESSES || min > max) throw new InvalidArgumentError(`--trainers MIN:MAX needs 1 <= MIN <= MAX <= ${MAX_PROCESSES}, got '${value}'`);
  return { min, max };
}

function restarts(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 1000) throw new InvalidArgumentError(`--max-restarts must be an integer in [0, 1000], got '${value}'`);
  return n;
}

/** `--shards ps0=0.75,ps1=0.25`: a fraction of the parameters per server. */
function shardSpec(value: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of value.split(',')) {
    const m = /^\s*([^=\s]+)\s*=\s*([^=\s]+)\s*$/.exec(part);
    const n = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(n)) throw new InvalidArgumentError(`--shards must look like ps0=0.75,ps1=0.25, got '${value}'`);
    if (Object.prototype.hasOwnProperty.call(out, m[1]!)) throw new InvalidArgumentError(`--shards names '${m[1]}' twice`);
    out[m[1]!] = n;
  }
  return out;
}

export function psrunCommand(): Command {
  const cmd = new Command('psrun')
    .description('Start a local psrpc topology (parameter servers + trainers), multiplex their logs, report the result')
    .addOption(new Option('--servers <n>', 'ps-server processes (default: 1, or 0 for partitioned)').argParser(count('--servers', 0)))
    .addOption(new Option('--trainers <n>', 'trainer processes (default: 2); MIN:MAX: elastic (centralized): MAX trainers start, the job goes on while MIN are alive').argParser(trainerCount))
    .addOption(new Option('--topology <file>', 'a JSON topology file (docs/TOPOLOGIES.md)'))
    .addOption(new Option('--shards <spec>', 'fraction of the parameters per server, e.g. ps0=0.75,ps1=0.25').argParser(shardSpec))
    .addOption(new Option('--kill-grace <seconds>', 'seconds between SIGTERM and SIGKILL when stopping').argParser(seconds('--kill-grace')).default(5))
    .addOption(new Option('--server-exit-grace <seconds>', 'seconds servers get to exit after the trainers finished').argParser(seconds('--server-exit-grace')).default(30))
    .addOption(new Option('--max-restarts <n>', 'restart after a failure this many times: a dead centralized trainer alone, while the others wait (--restart-timeout); anything else the whole job, from the latest checkpoint with --checkpoint-dir').argParser(restarts).default(0))
    .addOption(new Option('--auth-token <token>', 'the job\'s shared secret (default: env PSRPC_AUTH_TOKEN, else a new random one per job)'))
    .addOption(new Option('--no-auth', 'run the job without authentication'))
    .addOption(new Option('--dry-run', 'print the processes and their command lines, start nothing'));
  for (const opt of trainFlagTable().values()) {
    // psrun runs the multi-process strategies; its default is the first of them. It offers every
    // strategy, so a one-process one gets the topology's line saying to run it with trainer.
    if (opt.long === '--strategy') cmd.addOption(new Option(opt.flags, opt.description).choices(opt.argChoices ?? []).default(worldStrategies()[0]?.name));
    else cmd.addOption(opt);
  }
  for (const opt of [
    new Option('--json <file>', 'write the job result object to FILE'),
    new Option('--progress <mode>', 'job progress display: a bar on a terminal, plain lines otherwise').choices(['auto', 'bar', 'lines', 'none']).default('auto'),
  ]) cmd.addOption(opt);
  return cmd
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
}

interface PsrunFlags {
  servers?: number;
  trainers?: number;
  topology?: string;
  shards?: Record<string, number>;
  killGrace: number;
  serverExitGrace: number;
  maxRestarts: number;
  authToken?: string;
  auth: boolean;
  dryRun?: boolean;
  json?: string;
  progress: 'auto' | 'bar' | 'lines' | 'none';
  strategy: string;
  consistency: Consistency;
  staleness: number;
  [key: string]: unknown;
}

/** Builds the topology from the parsed command line (flags, or a file plus flag overrides). */
export async function topologyFromCommand(cmd: Command): Promise<Topology> {
  const f = cmd.opts<PsrunFlags>();
  const given = (key: string) => cmd.getOptionValueSource(key) === 'cli';
  const train: TrainFlags = {};
  for (const key of trainFlagTable().keys()) {
    if (!TOPOLOGY_KEYS.has(key) && given(key)) train[key as keyof TrainFlags] = f[key] as FlagValue;
  }
  if (f.topology !== undefined) {
    for (const flag of ['servers', 'trainers', 'shards'] as const) {
      if (given(flag)) throw new TopologyError(`--${flag} cannot be combined with --topology (the topology file says it)`);
    }
    return readTopologyFile(f.topology, {
      train,
      ...(given('strategy') ? { strategy: f.strategy } : {}),
      ...(given('consistency') ? { consistency: f.consistency } : {}),
      ...(given('staleness') ? { staleness: f.staleness } : {}),
    });
  }
  // --trainers MIN:MAX: MAX trainer processes, elastic with MIN (--min-trainers, passed to every process)
  const counted = f.trainers as number | { min: number; max: number } | undefined;
  if (typeof counted === 'object') {
    if (given('minTrainers')) throw new TopologyError('--trainers MIN:MAX and --min-trainers say the same thing: give one');
    if (counted.min < counted.max) train.minTrainers = counted.min;
  }
  return topologyFromFlags({
    servers: f.servers,
    trainers: typeof counted === 'object' ? counted.max : counted,
    strategy: f.strategy,
    consistency: f.consistency,
    staleness: given('staleness') ? f.staleness : undefined,
    shards: f.shards,
    train,
  });
}

export interface MainDeps {
  resolve?: CommandResolver;
  spawn?: SpawnFn;
  stdout?: TextOutput;
  stderr?: TextOutput;
  env?: NodeJS.ProcessEnv;
  /** performance.now() when the command started (default: when main() is called). */
  startTime?: number;
  /** Install SIGINT/SIGTERM/SIGHUP handlers on this process (default true). */
  handleSignals?: boolean;
  /** The launcher's timers (kill grace, server-exit grace); default the system clock. */
  clock?: Clock;
  /** Called once the launcher exists (tests interrupt it). */
  onLauncher?: (l: Launcher) => void;
}

/** Runs psrun; resolves to the exit code. */
export async function main(argv: string[], deps: MainDeps = {}): Promise<number> {
  const startTime = deps.startTime ?? performance.now();
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const cmd = psrunCommand();
  if (deps.stderr) cmd.configureOutput({ writeErr: (s) => stderr.write(s), writeOut: (s) => stdout.write(s) });
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  const f = cmd.opts<PsrunFlags>();
  let topology: Topology;
  try {
    topology = await topologyFromCommand(cmd);
  } catch (e) {
    if (e instanceof TopologyError) {
      stderr.write(`error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  // TLS files every process would read: one that cannot be read is refused here, once, before
  // any process starts (each would otherwise fail with the same line)
  for (const [flag, path] of [['--tls-cert', topology.options.tlsCert], ['--tls-key', topology.options.tlsKey], ['--tls-ca', topology.options.tlsCa]] as const) {
    if (path === undefined) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (e) {
      stderr.write(`error: ${flag} ${path}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})\n`);
      return 1;
    }
  }
  // A model that cannot be built is a bad flag like any other: refused here with its one line,
  // before any process starts (each process would otherwise fail the same way, one by one).
  // The default model with no options needs no check (and the tensor layer is then not loaded here).
  const o = topology.options;
  const modelOptions = typeof o.modelOptions === 'string' ? JSON.parse(o.modelOptions) as Record<string, unknown> : o.modelOptions;
  // A strategy that checks the model itself (pipeline: can it be cut into the stages asked for) always builds it.
  const checkModel = findStrategy(topology.strategy)?.checkModel;
  if (o.model !== DEFAULTS.model || Object.keys(modelOptions).length > 0 || checkModel) {
    try {
      const [{ loadModel }, { datasetShape }] = await Promise.all([import('../trainer/model.js'), import('../data/index.js')]);
      const { model, ctx } = await loadModel({ ...o, modelOptions }, await datasetShape(o.dataset), { rank: null, role: 'trainer', workers: topology.trainers.length });
      const refusal = await checkModel?.(model, ctx, { ...o, modelOptions });
      if (refusal) throw new Error(refusal);
    } catch (e) {
      stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
  }

  const launcher = new Launcher(topology, {
    resolve: deps.resolve,
    spawn: deps.spawn,
    stdout,
    stderr,
    env: deps.env,
    progress: f.progress,
    killGraceMs: f.killGrace * 1000,
    serverExitGraceMs: f.serverExitGrace * 1000,
    maxRestarts: f.maxRestarts,
    // a strategy whose servers take a restarted trainer back restarts a dead trainer alone
    restartAlone: (spec) => spec.role === 'trainer' && findStrategy(topology.strategy)?.restartsTrainersAlone === true,
    // one token per job: a process that is not part of it cannot call into it
    authToken: f.auth ? (f.authToken ?? ((deps.env ?? process.env).PSRPC_AUTH_TOKEN || randomBytes(24).toString('base64url'))) : undefined,
    clock: deps.clock,
    startTime,
  });
  deps.onLauncher?.(launcher);
  if (f.dryRun) {
    for (const p of launcher.processes) {
      stdout.write(`${p.name} (${p.role}, rank ${p.rank}): ${launcher.argsFor(p, '127.0.0.1', 0, '<tmp>').join(' ')}\n`);
    }
    return 0;
  }

  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (sig: NodeJS.Signals) => {
    stderr.write(`psrun: ${sig}: stopping all processes\n`);
    launcher.interrupt(sig);
  };
  if (deps.handleSignals !== false) for (const s of signals) process.on(s, onSignal);
  try {
    const outcome = await launcher.run();
    for (const name of outcome.lingering) stderr.write(`psrun: warning: ${name} was still running ${f.serverExitGrace}s after the trainers finished; stopped it\n`);
    if (outcome.failure) {
      for (const l of formatFailure(outcome.failure)) stderr.write(l + '\n');
    } else if (outcome.interrupted) {
      stderr.write(`psrun: interrupted by ${outcome.interrupted}; stopped all processes\n`);
    } else if (outcome.error) {
      stderr.write(`error: ${outcome.error}\n`);
    } else if (outcome.result) {
      stdout.write(`psrun ${formatResult(outcome.result)}\n`);
      if (f.json) await writeResult(f.json, outcome.result);
    }
    return outcome.exitCode;
  } catch (e) {
    if (e instanceof LaunchError) {
      stderr.write(`error: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}
