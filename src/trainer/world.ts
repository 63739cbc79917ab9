// A process's place in a world of ranks: its name, role and index, and the others' names, from
// its flags or torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). The world's
// shape comes from the strategy's declaration in the table:
//   servers  ranks [0, servers) are parameter servers ps0.., the others trainers trainer0..
//            (a strategy may need an exact number of servers: remote-forward hosts one model)
//   peers    every rank is a trainer trainer<rank> (partitioned: and the server of shard <rank>);
//            --servers is ignored
// Rank 0 hosts the rendezvous at --master. --name overrides a process's own name; every process
// takes the others' names from the rendezvous (by rank), so custom names work.
import type { TrainOptions } from './options.js';
import { strategyOf } from './strategies/index.js';

export interface WorldPlace {
  name: string;
  rank: number;
  worldSize: number;
  master: string;
  role: 'server' | 'trainer';
  /** Rank among the servers or among the trainers. */
  index: number;
  /** A world of peers (e.g. partitioned): every rank is a trainer, and serves what its strategy hosts. */
  partitioned: boolean;
  /** Server and trainer counts (peers: servers = trainers = worldSize, the same processes). */
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
  const spec = strategyOf(opts.strategy);
  if (spec.world === 'peers') {
    const need = spec.peers?.(opts);
    if (need && need.count !== worldSize) throw new RangeError(`--strategy ${opts.strategy} runs ${need.because} = ${need.count} processes, got --world-size ${worldSize}`);
    const names = Array.from({ length: worldSize }, (_, i) => `trainer${i}`);
    return { name: opts.name ?? names[rank]!, rank, worldSize, master, role: 'trainer', index: rank, partitioned: true, servers: worldSize, trainers: worldSize, serverNames: names, trainerNames: names };
  }
  if (spec.world !== 'servers') throw new RangeError(`--strategy ${opts.strategy} does not run as ps-server/trainer processes with ranks`);
  const servers = opts.servers;
  if (spec.fixedServers && servers !== spec.fixedServers.count) {
    const { count, reason } = spec.fixedServers;
    throw new RangeError(`--strategy ${opts.strategy} ${reason}, got --servers ${servers} (use --servers ${count})`);
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
