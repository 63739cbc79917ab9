// The launcher: starts every process of a checked topology, multiplexes their output, watches
// them, and stops all of them when one fails or when psrun itself is interrupted.
//
// Life of a job: resolve the entry commands (a missing file fails here, before anything starts),
// pick a free rendezvous port, spawn servers then trainers in rank order, each in its own process
// group (so a stop reaches whatever a child started, and a terminal's Ctrl-C reaches psrun only,
// which then stops the children in order). A child exiting non-zero or by a signal that psrun did
// not send is a failure: the others get SIGTERM, then SIGKILL after the grace period, and the
// outcome names the process, its code or signal and its last lines. When every trainer has exited
// 0, servers that do not exit on their own within `serverExitGraceMs` are stopped (a warning, not
// a failure: the training result exists). The trainers' result files are then combined.
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock, type Clock, type ClockTimer } from '../rpc/clock.js';
import { defaultResolver, type CommandResolver, type ResolvedCommand } from './commands.js';
import { LaunchError } from './errors.js';
import { freePort } from './free-port.js';
import { JobDisplay, JobProgress, parseProgressLine, type DisplayMode, type TextOutput } from './job-progress.js';
import { combineResults, type JobResult } from './job-result.js';
import { LogMux, type StreamName } from './log-mux.js';
import type { ProcessSpec, Role, Topology } from './topology.js';
import { trainFlagArgs } from './train-flags.js';

export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface LauncherOptions {
  /** Role -> command; default `node <package>/bin/<role>.js` (from source: the .ts entries through tsx). */
  resolve?: CommandResolver;
  /** Default child_process.spawn; tests count or fake spawns with it. */
  spawn?: SpawnFn;
  stdout?: TextOutput;
  stderr?: TextOutput;
  /** 'auto': a bar when stderr is a terminal, plain lines otherwise. */
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  /** Milliseconds between SIGTERM and SIGKILL when stopping. */
  killGraceMs?: number;
  /** Milliseconds servers get to exit on their own after the last trainer exited 0. */
  serverExitGraceMs?: number;
  /**
   * The timers of the two grace periods (default: the system clock). Tests pass a ManualClock and
   * end a grace period when the children are in the state the test is about.
   */
  clock?: Clock;
  /** Lines of each process kept for the failure report. */
  tailLines?: number;
  /** Rendezvous host (always local) and port (0: a free one). */
  host?: string;
  port?: number;
  /** performance.now() of the job's start, for wallSeconds (default: when run() starts). */
  startTime?: number;
  /** The environment children inherit (default process.env). */
  env?: NodeJS.ProcessEnv;
  /**
   * Times the whole job is started again after a process fails (default 0). With --checkpoint-dir
   * every process of a restart gets --resume, so the job goes on from the latest checkpoint.
   */
  maxRestarts?: number;
  /**
   * Which failed processes are started again alone, while the others wait for them (default:
   * none: a failure restarts the whole job). psrun: the trainers of a strategy that can take a
   * restarted trainer back (centralized). Such a process gets PSRPC_REJOIN=1 and no --resume; it
   * takes its predecessor's place in the running world. Each counts against maxRestarts.
   */
  restartAlone?: (spec: ProcessSpec) => boolean;
  /** --restart-timeout given to every process when maxRestarts > 0 and the job gives none (default 60 s). */
  restartTimeoutS?: number;
  /** Where restarts are said (default: stderr). */
  log?: (line: string) => void;
  /** The job's auth token, handed to every process as PSRPC_AUTH_TOKEN (unset: whatever the environment has). */
  authToken?: string;
}

export interface ProcessFailure {
  name: string;
  role: Role;
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** A spawn error (e.g. ENOENT) instead of an exit. */
  error?: string;
  lastLines: string[];
}

export interface LaunchOutcome {
  /** 0 on success, 1 on a failure, 128+n when psrun was interrupted by signal n. */
  exitCode: number;
  result?: JobResult;
  failure?: ProcessFailure;
  interrupted?: NodeJS.Signals;
  /** A problem after the processes ran (e.g. a missing result file). */
  error?: string;
  /** Servers still running after the trainers finished, stopped by psrun. */
  lingering: string[];
  /** Restarts after a failure (of the whole job or of one process alone), and the failures that caused them. */
  restarts: number;
  restartedAfter: ProcessFailure[];
}

interface Running {
  spec: ProcessSpec;
  child: ChildProcess;
  exited: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Resolves when the process has exited and its output is fully forwarded. */
  done: Promise<void>;
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** Describes an exit: 'code 3' or 'signal SIGKILL'. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`;
}

export class Launcher {
  private readonly resolve: CommandResolver;
  private readonly spawnFn: SpawnFn;
  private readonly out: TextOutput;
  private readonly err: TextOutput;
  private running: Running[] = [];
  private stopping = false;
  /** The restart the processes being started belong to (0: the first run). */
  private restart = 0;
  private readonly clock: Clock;
  private killTimer?: ClockTimer;
  private serverTimer?: ClockTimer;
  private failure?: ProcessFailure;
  private interrupted?: NodeJS.Signals;
  private lingering: string[] = [];
  private mux?: LogMux;
  private display?: JobDisplay;
  private readonly restartedAfter: ProcessFailure[] = [];
  /** Elastic jobs: trainers that died and were let go (the job went on without them). */
  private readonly gone = new Set<string>();
  /** What starting a process needs, for a process restarted alone. */
  private startArgs?: { commands: Map<Role, ResolvedCommand>; host: string; port: number; resultDir: string; mux: LogMux };

  constructor(readonly topology: Topology, private readonly opts: LauncherOptions = {}) {
    // Built on first use, inside run(): finding the package root can fail, and that is a LaunchError
    // for the caller's report, not an exception from a constructor.
    let fallback: CommandResolver | undefined;
    this.resolve = opts.resolve ?? ((role) => (fallback ??= defaultResolver())(role));
    this.spawnFn = opts.spawn ?? nodeSpawn;
    this.clock = opts.clock ?? systemClock;
    this.out = opts.stdout ?? process.stdout;
    this.err = opts.stderr ?? process.stderr;
  }

  /** Every process in rank order. */
  get processes(): ProcessSpec[] {
    return [...this.topology.servers, ...this.topology.trainers];
  }

  /** Runs the job to its end; never rejects for a child's failure (see the outcome). */
  async run(): Promise<LaunchOutcome> {
    const started = this.opts.startTime ?? performance.now();
    const t = this.topology;
    // Everything that can fail without a process runs first.
    const commands = new Map<Role, ResolvedCommand>();
    for (const p of this.processes) if (!commands.has(p.role)) commands.set(p.role, this.resolve(p.role));
    const host = this.opts.host ?? '127.0.0.1';
    const resultDir = await mkdtemp(join(tmpdir(), 'psrun-'));

    const mode = this.displayMode();
    const progress = new JobProgress(t.trainers.map((p) => p.name));
    const display = (this.display = new JobDisplay(progress, { mode, stdout: this.out, stderr: this.err }));
    const trainers = new Set(t.trainers.map((p) => p.name));
    const mux = (this.mux = new LogMux(display, { names: this.processes.map((p) => p.name), tailLines: this.opts.tailLines }, (name, _stream, line) => {
      if (!trainers.has(name)) return true;
      const sample = parseProgressLine(line);
      if (!sample) return true;
      display.update(name, sample);
      return mode === 'lines';
    }));

    const restartedAfter = this.restartedAfter;
    const maxRestarts = this.opts.maxRestarts ?? 0;
    const log = (line: string) => this.say(line);
    try {
      let port = this.opts.port || (await freePort(host));
      for (;;) {
        this.startArgs = { commands, host, port, resultDir, mux };
        for (const spec of this.processes) {
          if (this.stopping) break;
          this.start(spec, commands.get(spec.role)!, host, port, resultDir, mux);
        }
        // a process restarted alone is added when its predecessor's exit is handled, before that
        // exit's promise settles: waiting again until no process was added waits for every one
        for (let n = -1; n !== this.running.length;) {
          n = this.running.length;
          await Promise.all(this.running.map((r) => r.done));
        }
        this.killTimer?.cancel();
        this.serverTimer?.cancel();
        if (!this.failure || this.interrupted || this.restart >= maxRestarts) break;
        // A process failed: start the whole job again, from the latest checkpoint if there is one.
        const f = this.failure;
        restartedAfter.push(f);
        this.restart++;
        const what = f.error ? `could not run (${f.error})` : `exited with ${describeExit(f.code, f.signal)}`;
        const from = t.options.checkpointDir !== undefined ? `from the latest checkpoint in ${t.options.checkpointDir}` : 'from the beginning (no --checkpoint-dir)';
        log(`psrun: ${f.name} (${f.role}, rank ${f.rank}) ${what}; restarting the job ${from} (restart ${this.restart} of ${maxRestarts})`);
        for (const l of f.lastLines.slice(-5)) log(`  ${f.name} | ${l}`);
        this.running = [];
        this.stopping = false;
        this.failure = undefined;
        this.lingering = [];
        this.killTimer = undefined;
        this.serverTimer = undefined;
        await rm(resultDir, { recursive: true, force: true });
        await mkdir(resultDir, { recursive: true });
        port = this.opts.port || (await freePort(host));
      }
    } catch (e) {
      await rm(resultDir, { recursive: true, force: true });
      throw e;
    } finally {
      this.killTimer?.cancel();
      this.serverTimer?.cancel();
      display.stop();
    }

    const outcome: LaunchOutcome = { exitCode: 0, lingering: this.lingering, restarts: this.restart, restartedAfter };
    try {
      if (this.failure) {
        outcome.failure = this.failure;
        outcome.exitCode = 1;
      } else if (this.interrupted) {
        outcome.interrupted = this.interrupted;
        outcome.exitCode = 128 + (SIGNAL_NUMBERS[this.interrupted] ?? 15);
      } else {
        const results = [];
        for (const spec of t.trainers) {
          if (this.gone.has(spec.name)) continue;
          const file = join(resultDir, `${spec.name}.json`);
          let text: string;
          try {
            text = await readFile(file, 'utf8');
          } catch {
            throw new LaunchError(`${spec.name} exited 0 but wrote no result to ${file}`, file);
          }
          let result: unknown;
          try {
            result = JSON.parse(text);
          } catch (e) {
            throw new LaunchError(`${spec.name} wrote a result that is not JSON (${(e as Error).message})`, file);
          }
          results.push({ name: spec.name, result });
        }
        outcome.result = combineResults(t, results, (performance.now() - started) / 1000);
        if (this.restart > 0) outcome.result.restarts = this.restart;
      }
    } catch (e) {
      if (!(e instanceof LaunchError)) throw e;
      outcome.error = e.message;
      outcome.exitCode = 1;
    } finally {
      await rm(resultDir, { recursive: true, force: true });
    }
    return outcome;
  }

  /**
   * Stops the job because psrun received `signal` (Ctrl-C, SIGTERM): every child gets SIGTERM,
   * then SIGKILL after the grace period. A second call kills at once.
   */
  interrupt(signal: NodeJS.Signals): void {
    if (this.interrupted) {
      for (const r of this.running) if (!r.exited) this.signal(r, 'SIGKILL');
      return;
    }
    this.interrupted = signal;
    this.stopAll();
  }

  private displayMode(): DisplayMode {
    const p = this.opts.progress ?? 'auto';
    if (p === 'auto') return this.err.isTTY ? 'bar' : 'lines';
    return p;
  }

  /** The command line of one process (exported through `commandLine` for tests and --dry-run). */
  argsFor(spec: ProcessSpec, host: string, port: number, resultDir: string, alone = false): string[] {
    const t = this.topology;
    const args = [
      '--name', spec.name,
      '--rank', String(spec.rank),
      '--world-size', String(t.servers.length + t.trainers.length),
      '--master', `${host}:${port}`,
      '--servers', String(t.servers.length),
      '--strategy', t.strategy,
      '--consistency', t.consistency,
    ];
    if (t.staleness !== undefined) args.push('--staleness', String(t.staleness));
    args.push(...trainFlagArgs(t.train));
    if (spec.role === 'trainer') args.push('--progress', 'lines', '--json', join(resultDir, `${spec.name}.json`));
    // a restart of the job goes on from the latest checkpoint (a process restarted alone from the live servers)
    if (!alone && this.restart > 0 && t.options.checkpointDir !== undefined && !t.options.resume) args.push('--resume');
    // with restarts, servers and the first trainer wait for a restarted trainer
    if ((this.opts.maxRestarts ?? 0) > 0 && t.train.restartTimeout === undefined) args.push('--restart-timeout', String(this.opts.restartTimeoutS ?? 60));
    args.push(...spec.args);
    return args;
  }

  envFor(spec: ProcessSpec, host: string, port: number, alone = false): NodeJS.ProcessEnv {
    const t = this.topology;
    const env: NodeJS.ProcessEnv = {
      ...(this.opts.env ?? process.env),
      MASTER_ADDR: host,
      MASTER_PORT: String(port),
      RANK: String(spec.rank),
      WORLD_SIZE: String(t.servers.length + t.trainers.length),
      LOCAL_RANK: String(spec.rank),
      LOCAL_WORLD_SIZE: String(t.servers.length + t.trainers.length),
      PSRPC_NAME: spec.name,
      PSRPC_SERVERS: String(t.servers.length),
      // torchelastic's TORCHELASTIC_RESTART_COUNT: how many times the job was restarted before this run
      PSRPC_RESTART_COUNT: String(this.restart),
    };
    if (this.opts.authToken !== undefined) env.PSRPC_AUTH_TOKEN = this.opts.authToken;
    // restarted alone: it takes its predecessor's place in the running world (rpc InitOptions.rejoin)
    if (alone) env.PSRPC_REJOIN = '1';
    else delete env.PSRPC_REJOIN;
    if (t.shards) env.PSRPC_SHARDS = JSON.stringify(t.shards);
    else delete env.PSRPC_SHARDS;
    return { ...env, ...spec.env };
  }

  private start(spec: ProcessSpec, cmd: ResolvedCommand, host: string, port: number, resultDir: string, mux: LogMux, alone = false): void {
    const args = [...cmd.args, ...this.argsFor(spec, host, port, resultDir, alone)];
    let child: ChildProcess;
    try {
      child = this.spawnFn(cmd.command, args, {
        env: this.envFor(spec, host, port, alone),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (e) {
      this.fail({ name: spec.name, role: spec.role, rank: spec.rank, code: null, signal: null, error: (e as Error).message, lastLines: [] });
      return;
    }
    const r: Running = { spec, child, exited: false, code: null, signal: null, done: Promise.resolve() };
    const streams: Array<Promise<void>> = [];
    if (child.stdout) streams.push(mux.attach(spec.name, child.stdout, 'stdout'));
    if (child.stderr) streams.push(mux.attach(spec.name, child.stderr, 'stderr'));
    const exited = new Promise<void>((resolve) => {
      child.once('error', (e) => {
        // Spawn failed (no exit will follow) or a kill failed (the exit still follows).
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) return;
        r.exited = true;
        this.fail({ name: spec.name, role: spec.role, rank: spec.rank, code: null, signal: null, error: e.message, lastLines: mux.tail(spec.name) });
        resolve();
      });
      child.once('exit', (code, signal) => {
        r.exited = true;
        r.code = code;
        r.signal = signal;
        resolve();
      });
    });
    r.done = exited.then(() => Promise.all(streams)).then(() => this.onExit(r));
    this.running.push(r);
  }

  private onExit(r: Running): void {
    if (this.stopping) return;
    if (r.code !== 0 || r.signal) {
      const f: ProcessFailure = { name: r.spec.name, role: r.spec.role, rank: r.spec.rank, code: r.code, signal: r.signal, lastLines: this.mux?.tail(r.spec.name) ?? [] };
      if (this.restartAlone(f, r.spec)) return;
      if (this.letGo(f, r.spec)) return;
      this.fail(f);
      return;
    }
    if (r.spec.role === 'trainer') this.display?.finish(r.spec.name);
    const trainersLeft = this.running.some((x) => x.spec.role === 'trainer' && !x.exited) || this.running.length < this.processes.length;
    if (!trainersLeft && !this.serverTimer) {
      this.serverTimer = this.clock.after(this.opts.serverExitGraceMs ?? 30_000, () => {
        const left = this.running.filter((x) => !x.exited);
        if (left.length === 0) return;
        this.lingering.push(...left.map((x) => x.spec.name));
        this.stopAll();
      });
    }
  }

  /** Starts a failed process again alone, if it may be and restarts are left; false: the job fails (or restarts whole). */
  private restartAlone(f: ProcessFailure, spec: ProcessSpec): boolean {
    const max = this.opts.maxRestarts ?? 0;
    if (this.restart >= max || !this.startArgs || !this.opts.restartAlone?.(spec)) return false;
    this.restart++;
    this.restartedAfter.push(f);
    const log = (line: string) => this.say(line);
    const wait = this.topology.train.restartTimeout ?? this.opts.restartTimeoutS ?? 60;
    log(`psrun: ${f.name} (${f.role}, rank ${f.rank}) exited with ${describeExit(f.code, f.signal)}; restarting it alone (restart ${this.restart} of ${max}): the others wait for it up to ${wait} s (--restart-timeout)`);
    for (const l of f.lastLines.slice(-5)) log(`  ${f.name} | ${l}`);
    const a = this.startArgs;
    this.start(spec, a.commands.get(spec.role)!, a.host, a.port, a.resultDir, a.mux, true);
    return true;
  }

  /**
   * Elastic jobs (--trainers MIN:MAX): a trainer other than the first that dies while at least MIN
   * others are alive is let go; the job goes on (its batch goes back to the others). false: a failure.
   */
  private letGo(f: ProcessFailure, spec: ProcessSpec): boolean {
    const min = this.topology.options.minTrainers;
    if (!(min > 0) || spec.role !== 'trainer' || spec === this.topology.trainers[0]) return false;
    const alive = this.running.filter((x) => x.spec.role === 'trainer' && !x.exited).length;
    if (alive < min) return false;
    this.gone.add(spec.name);
    const log = (line: string) => this.say(line);
    log(`psrun: ${f.name} (${f.role}, rank ${f.rank}) exited with ${describeExit(f.code, f.signal)}; the elastic job goes on with ${alive} trainer(s) (at least ${min})`);
    for (const l of f.lastLines.slice(-5)) log(`  ${f.name} | ${l}`);
    this.display?.finish(spec.name);
    return true;
  }

  /** Where restarts and let-go trainers are said (LauncherOptions.log, default stderr). */
  private say(line: string): void {
    if (this.opts.log) this.opts.log(line);
    else this.err.write(line + '\n');
  }

  private fail(f: ProcessFailure): void {
    if (this.stopping) return;
    this.failure = f;
    this.stopAll();
  }

  private stopAll(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.serverTimer?.cancel();
    for (const r of this.running) if (!r.exited) this.signal(r, 'SIGTERM');
    this.killTimer = this.clock.after(this.opts.killGraceMs ?? 5000, () => {
      for (const r of this.running) if (!r.exited) this.signal(r, 'SIGKILL');
    });
  }

  /** Signals the child's whole process group (it leads one: spawned detached), else the child. */
  private signal(r: Running, sig: NodeJS.Signals): void {
    const pid = r.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        r.child.kill(sig);
      } catch {
        // Already gone.
      }
    }
  }
}

/** One line per failure fact, then the process's last lines: what psrun prints on a failure. */
export function formatFailure(f: ProcessFailure): string[] {
  const what = f.error ? `could not run (${f.error})` : `exited with ${describeExit(f.code, f.signal)}`;
  const lines = [`psrun: ${f.name} (${f.role}, rank ${f.rank}) ${what}; stopped the other processes`];
  if (f.lastLines.length > 0) {
    lines.push(`psrun: last ${f.lastLines.length} line(s) of ${f.name}:`);
    for (const l of f.lastLines) lines.push(`  ${f.name} | ${l}`);
  } else lines.push(`psrun: ${f.name} wrote nothing`);
  return lines;
}
