// The process roles of a world with ranks: a `ps-server` rank and a `trainer` rank. Each finds
// its place (resolveWorld, from the strategy's declaration in the table), joins the world, runs
// what its strategy declares, and reports.
//
// Server ranks host what their strategy's `serverRole` says: a ParameterServer shard ('shard',
// centralized) or the one shared model ('model', remote-forward). Trainer ranks run the
// strategy's `train`; a peer strategy's `host` (partitioned's shard server) starts before the
// rendezvous.
//
// Reporting: every trainer registers `trainer.report`, answered when its training is done. The
// first trainer (lowest trainer rank) gathers all reports, reads the final model (the strategy's
// `finish`), evaluates it on the test split and writes the run's result (`trainers` = all of them,
// `samples` and `samplesPerSecond` summed, the longest loop's `trainSeconds`). Every other trainer
// writes its own figures (`trainers: 1`, `testAccuracy` null): give each trainer its own --json
// file (psrun does) and read the first trainer's for the whole run.
import { readFileSync } from 'node:fs';
import { Agent, RpcError, Status } from '../rpc/index.js';
import { faultAfterCheckpoint, flushOnSigterm, openCheckpoints, openRemoteModelCheckpoints, ParameterServer, placementFromEnv, RemoteModelHost, type CheckpointSink, type LoadedCheckpoint, type Placement, type ServerStats } from '../server/index.js';
import type { TrainerReport } from '../trainer/centralized.js';
import { evaluate, type Classifier } from '../trainer/evaluate.js';
import type { TrainOptions } from '../trainer/options.js';
import { datasetShape, type Dataset } from '../data/index.js';
import { loadModel } from '../trainer/model.js';
import { resultOf, type TrainResult } from '../trainer/result.js';
import { chooseDevice, loadTrainingData, optimizerSpec } from '../trainer/setup.js';
import type { WorldStrategy, WorldTraining } from '../trainer/strategy.js';
import { resolveWorld, type WorldPlace } from '../trainer/world.js';
// the full table: a world strategy may come from any layer
import { strategyOf } from './strategies.js';

export const REPORT_FN = 'trainer.report';

/** Long enough for the slowest trainer to finish before the final barrier gives up. */
const SHUTDOWN_TIMEOUT_MS = 30 * 60_000;

/** The world strategy of `opts` (resolveWorld has refused the others already). */
function worldStrategy(opts: TrainOptions): WorldStrategy {
  const spec = strategyOf(opts.strategy);
  if (spec.world === 'single') throw new RangeError(`--strategy ${opts.strategy} does not run as ps-server/trainer processes with ranks`);
  return spec;
}

/**
 * This process's agent. The auth token: --auth-token, else PSRPC_AUTH_TOKEN (psrun sets one per
 * job), else none; every process of a world needs the same one. Where it listens and the host it
 * publishes: --listen / --advertise, else PSRPC_LISTEN / PSRPC_ADVERTISE, else the RPC layer's
 * defaults (127.0.0.1:0, the listen host), which only reach ranks on this host. TLS: --tls-cert,
 * --tls-key, --tls-ca (else PSRPC_TLS_CERT, PSRPC_TLS_KEY, PSRPC_TLS_CA), --tls-require-client-cert.
 */
async function startAgent(place: WorldPlace, opts: Pick<TrainOptions, 'minTrainers' | 'authToken' | 'listen' | 'advertise' | 'heartbeatMs' | 'deadAfterMs' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsRequireClientCert'>): Promise<Agent> {
  const authToken = opts.authToken ?? (process.env.PSRPC_AUTH_TOKEN || undefined);
  const listen = opts.listen ?? (process.env.PSRPC_LISTEN || undefined);
  const advertise = opts.advertise ?? (process.env.PSRPC_ADVERTISE || undefined);
  // TLS: the files are read here; the RPC layer checks what is in them (without ever printing the key)
  const cert = opts.tlsCert ?? (process.env.PSRPC_TLS_CERT || undefined);
  const key = opts.tlsKey ?? (process.env.PSRPC_TLS_KEY || undefined);
  const ca = opts.tlsCa ?? (process.env.PSRPC_TLS_CA || undefined);
  const pem = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`${flag} ${path}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  if ((cert === undefined) !== (key === undefined)) throw new Error(cert === undefined ? '--tls-key needs --tls-cert (the certificate of that key)' : '--tls-cert needs --tls-key (the certificate\'s private key)');
  if (cert === undefined && (ca !== undefined || opts.tlsRequireClientCert === true)) throw new Error(`${ca !== undefined ? '--tls-ca' : '--tls-require-client-cert'} needs --tls-cert and --tls-key (this process's certificate and key)`);
  const tls = cert === undefined ? undefined : { cert: pem('--tls-cert', cert), key: pem('--tls-key', key!), ...(ca !== undefined ? { ca: pem('--tls-ca', ca) } : {}), requireClientCert: opts.tlsRequireClientCert === true };
  // PSRPC_REJOIN=1 (psrun, restarting this process alone): take the dead predecessor's place
  const rejoin = process.env.PSRPC_REJOIN === '1';
  // elastic (--min-trainers): the world is complete with the servers and that many trainers
  const minWorldSize = opts.minTrainers > 0 && !place.partitioned ? Math.min(place.worldSize, place.servers + opts.minTrainers) : undefined;
  return Agent.start({
    ...(minWorldSize !== undefined ? { minWorldSize } : {}),
    name: place.name, rank: place.rank, worldSize: place.worldSize, master: place.master, ...(rejoin ? { rejoin } : {}),
    ...(authToken !== undefined ? { authToken } : {}), ...(listen !== undefined ? { listen } : {}), ...(advertise !== undefined ? { advertise } : {}),
    ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}), ...(opts.deadAfterMs !== undefined ? { deadAfterMs: opts.deadAfterMs } : {}),
    ...(tls !== undefined ? { tls } : {}),
  });
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
  const spec = worldStrategy(opts);
  if (spec.world === 'servers' && spec.serverRole === 'model') return runModelHostProcess(opts, place, log);
  // PSRPC_SHARDS names servers, whose names are known for sure only after the rendezvous: joins
  // wait for the placement, which is settled (or refused, failing this process) right after it
  let settle: { resolve: (p: Placement | undefined) => void; reject: (e: unknown) => void } | undefined;
  const placement = process.env.PSRPC_SHARDS
    ? new Promise<Placement | undefined>((resolve, reject) => { settle = { resolve, reject }; })
    : undefined;
  const ckpt = await serverCheckpoints(opts, place.name, log);
  const server = new ParameterServer({
    ...ckpt,
    log,
    name: place.name,
    shard: place.index,
    shards: place.servers,
    // elastic: joins are answered once the first --min-trainers have joined; the others join later
    trainers: opts.minTrainers > 0 ? Math.min(opts.minTrainers, place.trainers) : place.trainers,
    ...(opts.minTrainers > 0 ? { elastic: true, expectedTrainers: place.trainers, lastCallMs: opts.elasticWait * 1000 } : {}),
    consistency: opts.consistency,
    staleness: opts.staleness,
    optimizer: optimizerSpec(opts),
    restartTimeoutMs: opts.restartTimeout * 1000,
    ...(placement ? { placement } : {}),
  });
  // stopped by psrun (another process failed): the checkpoints already copied reach the disk
  // before this process goes, so a restart resumes from the newest one taken
  const unflush = opts.checkpointDir !== undefined ? flushOnSigterm(() => server.flushCheckpoints()) : () => {};
  const agent = await startAgent(place, opts);
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
    unflush();
    await agent.shutdown({ graceful: false }).catch(() => {});
    await server.close();
  }
  return server.stats();
}

/**
 * A server's checkpoints (--checkpoint-dir): the store it writes to and, with --resume, the latest
 * complete checkpoint it starts from (none: it starts from the beginning, and says so).
 *
 * PSRPC_FAULT_KILL_AFTER_CHECKPOINT=N (tests and bench:faults only): the process kills itself with
 * SIGKILL as soon as its shard of checkpoint N is on disk, in the first run of the job only
 * (PSRPC_RESTART_COUNT unset or 0): a server dying at a known step, without racing a clock.
 */
async function serverCheckpoints(opts: TrainOptions, name: string, log: (line: string) => void): Promise<{ checkpoints?: CheckpointSink; restore?: LoadedCheckpoint }> {
  if (opts.checkpointDir === undefined) return {};
  const { store, restore } = await openCheckpoints(opts.checkpointDir, { keep: opts.checkpointKeep, resume: opts.resume, name, log });
  return { checkpoints: faultAfterCheckpoint(store, name, log), ...(restore ? { restore } : {}) };
}

/**
 * A server that hosts the one shared model (built from the same flags and seed as every
 * trainer's local copy, so the first trainer can load the final values into its own) until every
 * trainer has left. Returns stats in the ParameterServer's shape (steps = the optimizer steps applied, pushes = forwards served).
 */
async function runModelHostProcess(opts: TrainOptions, place: WorldPlace, log: (line: string) => void): Promise<ServerStats> {
  // the dataset's shapes, without loading its samples: the host only runs the model
  const { model } = await loadModel(opts, await datasetShape(opts.dataset, { seed: opts.seed, rank: place.rank, worldSize: place.trainers + place.servers }), { rank: place.rank, role: 'server', workers: place.trainers });
  const { checkpoints } = await openRemoteModelCheckpoints(opts, place.name, log);
  const host = new RemoteModelHost({ name: place.name, model: model as Classifier, trainers: place.trainers, ...(checkpoints ? { checkpoints } : {}) });
  // stopped by psrun (another process failed): the checkpoints already copied reach the disk
  // before this process goes, so a restart resumes from the newest one taken
  const unflush = checkpoints ? flushOnSigterm(() => host.flushCheckpoints()) : () => {};
  const agent = await startAgent(place, opts);
  try {
    host.register(agent);
    await agent.rendezvous();
    await host.done;
    await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
  } finally {
    unflush();
    await agent.shutdown({ graceful: false }).catch(() => {});
  }
  const s = host.stats();
  return { name: s.name, version: s.steps, steps: s.steps, pushes: s.forwards, pulls: 0, live: [], joined: s.joined, left: s.left, dropped: s.dropped, maxLead: 0 };
}

/** What a trainer process returns: the run's result on the first trainer, its own figures elsewhere. */
export interface TrainerOutcome {
  /** True on the first trainer, whose result covers every trainer and the final model. */
  primary: boolean;
  result: TrainResult;
}

/** Runs a `trainer` process of a world strategy (one with ranks). */
export async function runTrainerProcess(opts: TrainOptions, hooks: { log?: (line: string) => void } = {}): Promise<TrainerOutcome> {
  const log = hooks.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const place = resolveWorld(opts);
  if (place.role !== 'trainer') throw new RangeError(`rank ${place.rank} is a server rank (servers are ranks 0..${place.servers - 1}); start it with ps-server`);
  const spec = worldStrategy(opts);
  const device = chooseDevice(opts, log);
  // a dataset file is read by share: each trainer reads only its own pages
  // elastic: every trainer may be handed any batch, so each reads the whole training split
  const shard = spec.world === 'peers' && spec.dataShard ? spec.dataShard(place.index, place.trainers, opts) : opts.minTrainers > 0 ? { rank: 0, worldSize: 1 } : { rank: place.index, worldSize: place.trainers };
  const data = await loadTrainingData(opts, { shard });
  const primary = place.index === 0;

  const agent = await startAgent(place, opts);
  let ownResolve!: (r: TrainerReport) => void;
  let ownReject!: (e: unknown) => void;
  const ownDone = new Promise<TrainerReport>((resolve, reject) => { ownResolve = resolve; ownReject = reject; });
  ownDone.catch(() => {});
  let hosted: { close(): Promise<void> } | undefined;
  try {
    agent.register(REPORT_FN, () => ownDone);
    if (spec.world === 'peers' && spec.host) hosted = await spec.host.start(agent, opts, place);
    await agent.rendezvous();
    namesFromWorld(place, agent);
    // the first trainer also records the accuracy curve (--eval-every) on the test split
    const ctx = { agent, place, rank: place.index, trainers: place.trainers, train: data.train, ...(data.share !== undefined ? { share: data.share } : {}), leave: !primary, ...(primary ? { test: data.test } : {}) };
    let run: WorldTraining;
    try {
      run = await spec.train(opts, ctx);
    } catch (e) {
      ownReject(e);
      throw e;
    }
    ownResolve(run.report);
    let result: TrainResult;
    if (primary) {
      // the others' reports arrive when they have finished (and left), so the final read sees the last step
      const reports = await gatherReports(agent, place, run.report, opts.restartTimeout * 1000, opts.minTrainers > 0 ? log : undefined);
      const model = await run.finish();
      result = buildResult(opts, spec, place, device, run, reports, { model, test: data.test, curve: run.curve });
    } else {
      result = ownResult(opts, spec, place, device, run);
    }
    await agent.shutdown({ timeoutMs: SHUTDOWN_TIMEOUT_MS });
    return { primary, result };
  } finally {
    await agent.shutdown({ graceful: false }).catch(() => {});
    await hosted?.close();
  }
}

/**
 * The first trainer's report followed by the others' (each answers once it has finished and left).
 * With `restartMs` (--restart-timeout), a trainer whose process died is waited for that long to
 * rejoin (a restart), and its new process is asked.
 */
async function gatherReports(agent: Agent, place: WorldPlace, own: TrainerReport, restartMs: number, elastic?: (line: string) => void): Promise<TrainerReport[]> {
  const ask = async (n: string): Promise<TrainerReport | undefined> => {
    for (;;) {
      try {
        return await agent.call<TrainerReport>(n, REPORT_FN, [], { timeoutMs: SHUTDOWN_TIMEOUT_MS });
      } catch (e) {
        if (!(e instanceof RpcError) || e.code !== Status.UNAVAILABLE) throw e;
        if (restartMs > 0 && (await agent.awaitRejoin(n, restartMs))) continue;
        if (!elastic) throw e;
        // elastic: a trainer that died is gone; the batch it held went to the others
        elastic(`${agent.name}: ${n} is gone (${e.message}); the result counts the trainers that finished`);
        return undefined;
      }
    }
  };
  // elastic: the trainers of the world now, late joiners included, except those that departed
  let names = place.trainerNames;
  if (elastic) {
    const world = await agent.refreshWorld();
    const servers = new Set(place.serverNames);
    names = world.workers.map((w) => w.name).filter((n) => !servers.has(n) && !world.departed.includes(n));
  }
  const others = await Promise.all(names.filter((n) => n !== agent.name).map(ask));
  return [own, ...others.filter((r): r is TrainerReport => r !== undefined)];
}

/** What a trainer other than the first writes: its own figures, no evaluation. */
function ownResult(opts: TrainOptions, spec: WorldStrategy, place: WorldPlace, device: string, run: WorldTraining): TrainResult {
  return { ...buildResult(opts, spec, place, device, run, [run.report]), trainers: 1 };
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
function buildResult(opts: TrainOptions, spec: WorldStrategy, place: WorldPlace, device: string, run: WorldTraining, reports: TrainerReport[],
  final?: { model: Classifier; test: Dataset; curve?: TrainResult['curve'] }): TrainResult {
  const testAccuracy = final ? evaluate(final.model, final.test, run.resolved.metric) : NaN;
  const testSamples = final ? final.test.length : 0;
  const samples = reports.reduce((n, r) => n + r.samples, 0);
  const trainSeconds = Math.max(...reports.map((r) => r.trainSeconds));
  const lossSum = reports.reduce((n, r) => n + r.lossSum, 0);
  const lossCount = reports.reduce((n, r) => n + r.lossCount, 0);
  return {
    ...resultOf(opts, {
      consistency: spec.resultConsistency(opts),
      trainers: place.trainers, device, samples, trainSeconds,
      finalLoss: lossCount > 0 ? lossSum / lossCount : NaN, testAccuracy, testSamples,
      model: { name: run.resolved.name, parameters: run.parameters },
    }),
    bytesSent: reports.reduce((n, r) => n + (r.bytesSent ?? 0), 0),
    // the parameter-server strategies' --precision and fp16 loss-scaling skips (a strategy's extras override)
    ...(reports[0]?.precision ? { precision: reports[0].precision } : {}),
    ...(reports.some((r) => r.skippedSteps !== undefined) ? { skippedSteps: Math.max(...reports.map((r) => r.skippedSteps ?? 0)) } : {}),
    ...(run.extras ? run.extras(reports) : {}),
    ...(final?.curve ? { curve: final.curve } : {}),
  };
}
