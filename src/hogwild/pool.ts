// The piscina pool of a Hogwild run: one thread per worker, each running one long task.
//
// The worker file sits next to this module: worker.ts when running from src/ (under tsx),
// worker.js when running the compiled dist/. A .ts worker needs tsx's loader in the thread;
// worker threads inherit the process's execArgv, so it is only added when the process runs
// TypeScript without having tsx on its command line (e.g. tsx registered programmatically).
import { Piscina } from 'piscina';

const FROM_SOURCE = import.meta.url.endsWith('.ts');

export const WORKER_URL = new URL(`./worker.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url).href;

function workerExecArgv(): string[] | undefined {
  if (!FROM_SOURCE || process.execArgv.some((a) => a.includes('tsx'))) return undefined;
  return [...process.execArgv, '--import', import.meta.resolve('tsx')];
}

export function createWorkerPool(threads: number): Piscina {
  const execArgv = workerExecArgv();
  return new Piscina({
    filename: WORKER_URL,
    minThreads: threads,
    maxThreads: threads,
    // One task per thread: the tasks wait for each other at the epoch barrier, so two on one
    // thread would deadlock.
    concurrentTasksPerWorker: 1,
    idleTimeout: 60_000,
    ...(execArgv ? { execArgv } : {}),
  });
}
