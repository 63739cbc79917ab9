// One process of a world with parameter servers: find its place from the flags (or torchrun's
// environment: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), join, run, report.
//
// The world's ranks:
//   centralized  ranks [0, servers) are parameter servers ps0.., the others trainers trainer0..
//   partitioned  every rank is a worker trainer<rank> and the server of shard <rank>; --servers is ignored
//   remote-forward  rank 0 is ps0, which hosts the one shared model (--servers must be 1), the others trainers
// Rank 0 hosts the rendezvous at --master.
//
// Names: by default as above; --name overrides a process's own name, and every process takes the
// others' names from the rendezvous (by rank), so custom names work.
//
// Reporting: every trainer registers `trainer.report`, answered when its training is done. The
// first trainer (lowest trainer rank) gathers all reports, pulls the final parameters from the
// servers, evaluates them on the test split and writes the run's result (`trainers` = all of them,
// `samples` and `samplesPerSecond` summed, the longest loop's `trainSeconds`). Every other trainer
// writes its own figures (`trainers: 1`, `testAccuracy` null): give each trainer its own --json
// file (psrun does) and read the first trainer's for the whole run.
import { Agent } from '../rpc/index.js';
import type { Dataset } from '../data/index.js';
import { ParameterServer, placementFromEnv, RemoteModelHost, type Placement, type ServerStats } from '../server/index.js';
import { trainCentralized, type TrainedWorker, type TrainerReport } from './centralized.js';
import { evaluate, type Classifier } from './evaluate.js';
import type { TrainOptions } from './options.js';
import { partitionServer, serverOptimizer, trainPartitioned } from './partitioned.js';
import { trainRemoteForward } from './remote-forward.js';
import { resultOf, type TrainResult } from './result.js';
import { buildModel, chooseDevice, loadTrainingData } from './setup.js';

export const REPORT_FN = 'trainer.report';

/** Long enough for the slowest trainer to finish before the final barrier gives up. */
const SHUTDOWN_TIMEOUT_MS = 30 * 60_000;

export interface WorldPlace {
  name: string;
  rank: number;
  worldSize: number;
  master: string;
  role: 'server' | 'trainer';
  /** Rank among the servers or among the trainers. */
  index: number;
  /** Every rank is a worker that also serves a shard (the partitioned strategy). */
  partitioned: boolean;
  /** Server and trainer counts (partitioned: servers = trainers = worldSize, the same processes). */
  servers: number;
  trainers: number;
  serverNames: string[];
  trainerNames: string[];
}

/** Works out this process's place in the world; throws one clear line for impossible worlds. */
export function resolveWorld(opts: TrainOptions, env: NodeJS.ProcessEnv = process.env): WorldPlace {
  const fromEnv = (key: string, flag: string): number | undefined => {
    const v = env[key];
    if (v === undefined || v === '') return undefined;
    if (!/^\d+$/.test(v)) throw new RangeError(`env ${key}='${v}' is not a non-negative integer (or give ${flag})`);
    return Number(v);
  };
  const rank = opts.rank ?? fromEnv('RANK', '--rank');
  const worldSize = opts.worldSize ?? fromEnv('WORLD_SIZE', '--world-size');
  let master = opts.master;
  if (master === undefined && env.MASTER_ADDR && env.MASTER_PORT) master = `${env.MASTER_ADDR}:${env.MASTER_PORT}`;
  if (rank === undefined) throw new RangeError(`--strategy ${opts.strategy} needs --rank (or env RANK)`);
  if (worldSize === undefined) throw new RangeError(`--strategy ${opts.strategy} needs --world-size (or env WORLD_SIZE)`);
  if (master === undefined) throw new RangeError(`--strategy ${opts.strategy} needs --master host:port (or env MASTER_ADDR and MASTER_PORT)`);
  if (!/^[^\s:]+:\d{1,5}$/.test(master)) throw new RangeError(`--master must be host:port, got '${master}'`);
  if (rank >= worldSize) throw new RangeError(`--rank ${rank} is outside the world of --world-size ${worldSize}`);
  if (opts.strategy === 'partitioned') {
    const names = Array.from({ length: worldSize }, (_, i) => `trainer${i}`);
    return { name: opts.name ?? names[rank]!, rank, worldSize, master, role: 'trainer', index: rank, partitioned: true, servers: worldSize, trainers: worldSize, serverNames: names, trainerNames: names };
  }
  if (opts.strategy !== 'centralized' && opts.strategy !== 'remote-forward') throw new RangeError(`--strategy ${opts.strategy} does not run as ps-server/trainer processes with ranks`);
  const servers = opts.servers;
  if (opts.strategy === 'remote-forward' && servers !== 1) {
    throw new RangeError(`--strategy remote-forward hosts its one shared model on one server, got --servers ${servers} (use --servers 1)`);
  }
  if (servers < 1 || servers >= worldSize) {
    throw new RangeError(`--servers ${servers} leaves no ${servers < 1 ? 'server' : 'trainer'} in a world of --world-size ${worldSize} (need 1 <= servers < world size)`);
  }
  const serverNames = Array.from({ length: servers }, (_, i) => `ps${i}`);
  const trainerNames = Array.from({ length: worldSize - servers }, (_, i) => `trainer${i}`);
  const role = rank < servers ? 'server' : 'trainer';
  const index = role === 'server' ? rank : rank - servers;
  const name = opts.name ?? (role === 'server' ? serverNames[index]! : trainerNames[index]!);
  return { name, rank, worldSize, master, role, index, partitioned: false, servers, trainers: worldSize - servers, serverNames, trainerNames };
}

async function startAgent(place: WorldPlace): Promise<Agent> {
  return Agent.start({ name: place.name, rank: place.rank, worldSize: place.worldSize, master: place.master });
}

export interface ServerProcessOptions {
  /** Serve /metrics on 127.0.0.1 at this port (0: any free port). */
  metricsPort?: number;
  log?: (line: string) => void;
}

/** Runs a `ps-server` process: serves its shard until every trainer has left, then shuts down. */
export async function runServerProcess(opts: TrainOptions, extra: ServerProcessOptions = {}): Promise<ServerStats> {
  const log = extra.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const place = resolveWorld(opts);
  if (place.role !== 'server') throw new RangeError(`rank ${place.rank} is a trainer rank (servers are ranks 0..${place.servers - 1}); start it with trainer`);
  if (opts.strategy === 'remote-forward') return runModelHostProcess(opts, place);
  // PSRPC_SHARDS names servers, whose names are known for sure only after the rendezvous: joins
  // wait for the placement, which is settled (or refused, failing this process) right after it
  let settle: { resolve: (p: Placement | undefined) => void; reject: (e: unknown) => void } | undefined;
  const placement = process.env.PSRPC_SHARDS
    ? new Promise<Placement | undefined>((resolve, reject) => { settle = { resolve, reject }; })
    : undefined;
  const server = new ParameterServer({
    name: place.name,
    shard: place.index,
    shards: place.servers,
    trainers: place.trainers,
    consistency: opts.consistency,
    staleness: opts.staleness,
    optimizer: serverOptimizer(opts),
    ...(placement ? { placement } : {}),
  });
  const agent = await startAgent(place);
  try {
    server.register(agent);
    if (extra.metricsPort !== undefined) {
      const port = await server.metrics.listen(extra.metricsPort);
      log(`${place.name}: metrics on http://127.0.0.1:${port}/metrics`);
    }
    await agent.rendezvous();
    if (settle) {
      try {
        namesFromWorld(place, agent);
        settle.resolve(placementFromEnv(place.serverNames));
      } catch (e) {
        settle.reject(e);
        throw e;
      }
    }
    await server.done;
    await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
  } finally {
    await agent.shutdown({ graceful: false }).catch(() => {});
    await server.close();
  }
  return server.stats();
}

/**
 * The remote-forward server: hosts the model (built from the same flags and seed as every
 * trainer's local copy, so the first trainer can load the final values into its own) until every
 * trainer has left. Returns stats in the ParameterServer's shape (steps = forwards served).
 */
async function runModelHostProcess(opts: TrainOptions, place: WorldPlace): Promise<ServerStats> {
  // every dataset of the flags is 784 features, 10 classes (buildModel's defaults)
  const host = new RemoteModelHost({ name: place.name, model: buildModel(opts), trainers: place.trainers });
  const agent = await startAgent(place);
  try {
    host.register(agent);
    await agent.rendezvous();
    await host.done;
    await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
  } finally {
    await agent.shutdown({ graceful: false }).catch(() => {});
  }
  const s = host.stats();
  return { name: s.name, version: s.forwards, steps: s.forwards, pushes: s.forwards, pulls: 0, live: [], joined: s.joined, left: s.left, dropped: s.dropped, maxLead: 0 };
}

/** What a trainer process returns: the run's result on the first trainer, its own figures elsewhere. */
export interface TrainerOutcome {
  /** True on the first trainer, whose result covers every trainer and the final model. */
  primary: boolean;
  result: TrainResult;
}

/** Runs a `trainer` process of the centralized or partitioned strategy. */
export async function runTrainerProcess(opts: TrainOptions, hooks: { log?: (line: string) => void } = {}): Promise<TrainerOutcome> {
  const log = hooks.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const place = resolveWorld(opts);
  if (place.role !== 'trainer') throw new RangeError(`rank ${place.rank} is a server rank (servers are ranks 0..${place.servers - 1}); start it with ps-server`);
  const device = chooseDevice(opts, log);
  const data = await loadTrainingData(opts);
  const primary = place.index === 0;

  const agent = await startAgent(place);
  let own: TrainerReport | undefined;
  let ownResolve!: (r: TrainerReport) => void;
  let ownReject!: (e: unknown) => void;
  const ownDone = new Promise<TrainerReport>((resolve, reject) => { ownResolve = resolve; ownReject = reject; });
  ownDone.catch(() => {});
  let server: ParameterServer | undefined;
  try {
    agent.register(REPORT_FN, () => ownDone);
    if (opts.strategy === 'partitioned') server = partitionServer(agent, opts, place.index, place.trainers);
    await agent.rendezvous();
    namesFromWorld(place, agent);
    // the first trainer also records the accuracy curve (--eval-every) on the test split
    const ctx = { agent, rank: place.index, trainers: place.trainers, train: data.train, leave: !primary, ...(primary ? { test: data.test } : {}) };
    if (opts.strategy === 'remote-forward') {
      const result = await runRemoteForwardTrainer(opts, place, device, data, { ...ctx, server: place.serverNames[0]! }, ownResolve, ownReject);
      await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
      return { primary, result };
    }
    let run: TrainedWorker;
    try {
      run = opts.strategy === 'partitioned'
        ? await trainPartitioned(opts, { ...ctx, workerNames: place.trainerNames })
        : await trainCentralized(opts, { ...ctx, servers: place.serverNames });
    } catch (e) {
      ownReject(e);
      throw e;
    }
    own = run.report;
    ownResolve(own);
    let result: TrainResult;
    if (primary) {
      // the others' reports arrive when they have finished (and left), so the final pull sees the last step
      const reports = await gatherReports(agent, place, own);
      await run.client.pull(false);
      await run.client.leave();
      result = buildResult(opts, place, device, reports, { model: run.model, test: data.test, curve: run.curve });
    } else {
      result = ownResult(opts, place, device, own);
    }
    await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
    return { primary, result };
  } finally {
    await agent.shutdown({ graceful: false }).catch(() => {});
    await server?.close();
  }
}

/**
 * A remote-forward trainer: trains, answers `trainer.report`; the first trainer waits for the
 * others' reports (they have left by then), copies the server's final parameters into a local
 * model, evaluates it, then leaves, so the server stops after the last read.
 */
async function runRemoteForwardTrainer(
  opts: TrainOptions, place: WorldPlace, device: string, data: Awaited<ReturnType<typeof loadTrainingData>>,
  ctx: Parameters<typeof trainRemoteForward>[1], ownResolve: (r: TrainerReport) => void, ownReject: (e: unknown) => void,
): Promise<TrainResult> {
  let run: Awaited<ReturnType<typeof trainRemoteForward>>;
  try {
    run = await trainRemoteForward(opts, ctx);
  } catch (e) {
    ownReject(e);
    throw e;
  }
  ownResolve(run.report);
  if (place.index !== 0) return ownResult(opts, place, device, run.report);
  try {
    const reports = await gatherReports(ctx.agent, place, run.report);
    return buildResult(opts, place, device, reports, { model: await run.fetchModel(), test: data.test, curve: run.curve });
  } finally {
    await run.leave();
  }
}

/** The first trainer's report followed by the others' (each answers once it has finished and left). */
async function gatherReports(agent: Agent, place: WorldPlace, own: TrainerReport): Promise<TrainerReport[]> {
  const others = await Promise.all(place.trainerNames.slice(1).map((n) => agent.call<TrainerReport>(n, REPORT_FN, [], { timeoutMs: SHUTDOWN_TIMEOUT_MS })));
  return [own, ...others];
}

/** What a trainer other than the first writes: its own figures, no evaluation. */
function ownResult(opts: TrainOptions, place: WorldPlace, device: string, own: TrainerReport): TrainResult {
  return { ...buildResult(opts, place, device, [own]), trainers: 1 };
}

/** Takes the servers' and trainers' names from the world (ranks decide roles; names may be custom). */
function namesFromWorld(place: WorldPlace, agent: Agent): void {
  const all = agent.workers();
  const servers = place.partitioned ? 0 : place.servers;
  const trainers = all.slice(servers).map((w) => w.name);
  place.trainerNames = trainers;
  place.serverNames = servers === 0 ? trainers : all.slice(0, servers).map((w) => w.name);
}

/**
 * The result over `reports`; with `final` (the first trainer) the final model is evaluated on the
 * test split and the curve attached, without it the accuracy is NaN.
 */
function buildResult(opts: TrainOptions, place: WorldPlace, device: string, reports: TrainerReport[],
  final?: { model: Classifier; test: Dataset; curve?: TrainResult['curve'] }): TrainResult {
  const testAccuracy = final ? evaluate(final.model, final.test) : NaN;
  const testSamples = final ? final.test.length : 0;
  const samples = reports.reduce((n, r) => n + r.samples, 0);
  const trainSeconds = Math.max(...reports.map((r) => r.trainSeconds));
  const lossSum = reports.reduce((n, r) => n + r.lossSum, 0);
  const lossCount = reports.reduce((n, r) => n + r.lossCount, 0);
  return {
    ...resultOf(opts, {
      // remote-forward: every trainer's step lands on the shared model as it comes, no barrier
      consistency: opts.strategy === 'partitioned' ? 'sync' : opts.strategy === 'remote-forward' ? 'async' : opts.consistency,
      trainers: place.trainers, device, samples, trainSeconds,
      finalLoss: lossCount > 0 ? lossSum / lossCount : NaN, testAccuracy, testSamples,
    }),
    bytesSent: reports.reduce((n, r) => n + (r.bytesSent ?? 0), 0),
    ...(final?.curve ? { curve: final.curve } : {}),
  };
}
