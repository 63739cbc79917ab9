// A parameter-server world in one process (test support): servers ps0.. then trainers trainer0..,
// on 127.0.0.1 with port 0. Servers are registered before anyone can call them.
import { Agent } from '../../src/rpc/index.js';
import { ParameterServer, type ParameterServerOptions } from '../../src/server/index.js';

export interface PsWorld {
  servers: ParameterServer[];
  serverAgents: Agent[];
  trainerAgents: Agent[];
  stop(): Promise<void>;
}

export type ServerTemplate = Omit<ParameterServerOptions, 'name' | 'shard' | 'shards' | 'trainers'>;

export async function startPsWorld(nServers: number, nTrainers: number, template: ServerTemplate): Promise<PsWorld> {
  const world = nServers + nTrainers;
  const names = [...Array.from({ length: nServers }, (_, i) => `ps${i}`), ...Array.from({ length: nTrainers }, (_, i) => `trainer${i}`)];
  const master = await Agent.start({ name: names[0]!, rank: 0, worldSize: world, master: '127.0.0.1:0', timeoutMs: 20_000 });
  const agents = [master];
  for (let r = 1; r < world; r++) agents.push(await Agent.start({ name: names[r]!, rank: r, worldSize: world, master: master.address, timeoutMs: 20_000 }));
  const servers = agents.slice(0, nServers).map((a, i) =>
    new ParameterServer({ ...template, name: a.name, shard: i, shards: nServers, trainers: nTrainers }).register(a));
  await Promise.all(agents.map((a) => a.rendezvous()));
  return {
    servers,
    serverAgents: agents.slice(0, nServers),
    trainerAgents: agents.slice(nServers),
    async stop() {
      await Promise.all(servers.map((s) => s.close()));
      await Promise.all(agents.map((a) => a.shutdown({ graceful: false })));
    },
  };
}
