// The `psnode` command: one rank of a world started by a cluster scheduler (Slurm's srun,
// torchrun, a Kubernetes Indexed Job, a Kubeflow PyTorchJob). It reads its place from the
// environment (src/launch/cluster-env.ts), prints one line saying what it found, and runs the
// `ps-server` or `trainer` command of its role with `--name --rank --world-size --master
// --servers` computed and the user's own flags after them, unchanged. One image and one command
// line serve every rank (docs/CLUSTERS.md).
//
// The user's flags are checked before anything runs, with the ps-server command's parser (the
// training flags plus --metrics-port): a bad flag is one line and exit 1 on every rank alike.
// --metrics-port reaches the server ranks only, so servers and trainers can share the line.
import { CommanderError } from 'commander';
import { CLUSTER_VARIABLES, ClusterEnvError, clusterPlace, type ClusterPlace } from '../launch/cluster-env.js';
import type { TextOutput } from '../launch/job-progress.js';
import { serverCommand } from './ps-server.js';
import { findStrategy, worldStrategies } from './strategies.js';

export type PsnodeRole = ClusterPlace['role'];

export interface PsnodeDeps {
  /** The environment the place is read from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where psnode's own lines go (default process.stderr); the role's command writes its own. */
  stderr?: TextOutput;
  /** Runs the role's command with a full argv (default: ps-server's or trainer's main, in this process). */
  run?: (role: PsnodeRole, argv: string[]) => Promise<number>;
}

/** The flags psnode computes: given by hand they would contradict the environment. */
const PLACEMENT: Array<[key: string, flag: string, from: string]> = [
  ['name', '--name', 'PSRPC_NAME'],
  ['rank', '--rank', 'the scheduler (RANK, SLURM_PROCID, JOB_COMPLETION_INDEX, ...; PSRPC_RANK overrides it)'],
  ['worldSize', '--world-size', 'the scheduler (WORLD_SIZE, SLURM_NTASKS, ...; PSRPC_WORLD_SIZE overrides it)'],
  ['master', '--master', 'the scheduler (MASTER_ADDR and MASTER_PORT, the Slurm node list, ...; PSRPC_MASTER overrides it)'],
  ['servers', '--servers', 'PSRPC_SERVERS (the same value on every rank)'],
];

export function psnodeCommand() {
  return serverCommand()
    .name('psnode')
    .description('Run one rank of a psrpc world (ps-server or trainer) at the place a cluster scheduler gives in the environment')
    .addHelpText('after', `\nThe place comes from the environment: ${CLUSTER_VARIABLES}; PSRPC_SERVERS, PSRPC_ROLE, PSRPC_NAME. See docs/CLUSTERS.md.\n`);
}

/** The user's arguments without `--metrics-port P` / `--metrics-port=P` (a server-only flag). */
function withoutMetricsPort(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--metrics-port') i++;
    else if (!args[i]!.startsWith('--metrics-port=')) out.push(args[i]!);
  }
  return out;
}

/** The line psnode prints: `psnode: slurm rank 3 of 4 (trainer trainer3), master node01:29500`. */
export function describePlace(p: ClusterPlace): string {
  return `psnode: ${p.source} rank ${p.rank} of ${p.worldSize} (${p.role} ${p.name}), master ${p.master}`;
}

async function runRole(role: PsnodeRole, argv: string[]): Promise<number> {
  const { main } = role === 'server' ? await import('./ps-server.js') : await import('./trainer.js');
  return main(argv);
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[], deps: PsnodeDeps = {}): Promise<number> {
  const env = deps.env ?? process.env;
  const stderr = deps.stderr ?? process.stderr;
  const fail = (line: string) => {
    stderr.write(`error: ${line}\n`);
    return 1;
  };
  const user = argv.slice(2);
  const cmd = psnodeCommand();
  if (deps.stderr) cmd.configureOutput({ writeErr: (s) => stderr.write(s) });
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    throw e;
  }
  for (const [key, flag, from] of PLACEMENT) {
    if (cmd.getOptionValueSource(key) === 'cli') return fail(`psnode takes ${flag} from ${from}; leave ${flag} out`);
  }

  // the strategy decides how many ranks are servers by default; psrun's default strategy when none is given
  const given = cmd.getOptionValueSource('strategy') === 'cli';
  const strategy = given ? cmd.opts<{ strategy: string }>().strategy : worldStrategies()[0]!.name;
  const spec = findStrategy(strategy);
  if (!spec || spec.world === 'single') {
    return fail(`psnode runs the strategies with ranks (${worldStrategies().map((s) => s.name).join(', ')}); --strategy ${strategy} runs in one process: use trainer`);
  }
  const servers = spec.world === 'servers' ? spec.fixedServers?.count ?? 1 : 0;

  let place: ClusterPlace | null;
  try {
    place = clusterPlace(env, { servers });
  } catch (e) {
    if (e instanceof ClusterEnvError) return fail(e.message);
    throw e;
  }
  if (!place) return fail(`psnode found no cluster environment; it reads ${CLUSTER_VARIABLES}`);
  if (spec.world === 'peers' && place.servers > 0) {
    return fail(`PSRPC_SERVERS='${env.PSRPC_SERVERS}' but strategy ${strategy} has no separate servers (${spec.serverless}); leave PSRPC_SERVERS unset`);
  }

  stderr.write(describePlace(place) + '\n');
  const computed = [
    '--name', place.name,
    '--rank', String(place.rank),
    '--world-size', String(place.worldSize),
    '--master', place.master,
    '--servers', String(place.servers),
    ...(given ? [] : ['--strategy', strategy]),
  ];
  const own = place.role === 'server' ? user : withoutMetricsPort(user);
  const command = place.role === 'server' ? 'ps-server' : 'trainer';
  return (deps.run ?? runRole)(place.role, [argv[0] ?? 'node', command, ...computed, ...own]);
}
