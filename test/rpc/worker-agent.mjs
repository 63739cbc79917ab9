// Entry of test/rpc/worker-agent.ts in a worker thread: a worker does not inherit the main
// thread's `--import tsx`, so it registers tsx itself before loading the TypeScript.
import { register } from 'tsx/esm/api';

register();
await import('./worker-agent.ts');
