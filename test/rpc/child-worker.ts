// A worker in its own process for multi-process tests: joins the world given in argv (JSON),
// serves a few functions, then waits in the graceful shutdown barrier and exits.
import { Agent } from '../../src/rpc/index.js';

const opts = JSON.parse(process.argv[2]!);
const agent = await Agent.start(opts);
agent.register('add', (a: number, b: number) => a + b);
agent.register('pid', () => process.pid);
agent.register('echo', (x: unknown) => x);
agent.register('whoami', () => agent.name);
await agent.rendezvous();
process.stdout.write(`joined ${agent.name}\n`);
if (opts.crash) process.exit(3);
await agent.shutdown({ graceful: true });
process.stdout.write(`stopped ${agent.name}\n`);
