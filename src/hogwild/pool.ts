// The piscina pool of a Hogwild run: one thread per worker, each running one long task.
//
// close() resolves once every thread the pool ever started has exited (its 'exit' event: the OS
// thread is joined by then). piscina's destroy() waits for the threads it still holds; a thread it
// dropped earlier (one that crashed, replaced by a fresh one) is terminated but not waited for,
// so the pool keeps the exit of each thread it has seen.
//
// The worker file sits next to this module: worker.ts when running from src/ (under tsx),
// worker.js when running the compiled dist/. A .ts worker needs tsx's loader in the thread;
// worker threads inherit the process's execArgv, so it is only added when the process runs
// TypeScript without having tsx on its command line (e.g. tsx registered programmatically).
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';

const FROM_SOURCE = import.meta.url.endsWith('.ts');

export const WORKER_URL = new URL(`./worker.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url).href;

function workerExecArgv(): string[] | undefined {
  if (!FROM_SOURCE || process.execArgv.some((a) => a.includes('tsx'))) return undefined;
  return [...process.execArgv, '--import', import.meta.resolve('tsx')];
}

export class WorkerPool {
  private readonly piscina: Piscina;
  private readonly exits = new Map<Worker, Promise<void>>();

  constructor(threads: number) {
    const execArgv = workerExecArgv();
    this.piscina = createPiscina(threads, execArgv);
    this.track();
    // A replacement thread is reported when it is ready; close() looks once more for any other.
    this.piscina.on('workerCreate', () => this.track());
  }

  /** Runs one task on a free thread. */
  run<T>(task: unknown): Promise<T> {
    return this.piscina.run(task) as Promise<T>;
  }

  /** Terminates every thread and resolves once each one has exited. */
  async close(): Promise<void> {
    this.track();
    await this.piscina.destroy();
    await Promise.all(this.exits.values());
  }

  private track(): void {
    // A thread piscina still holds has not exited yet (piscina drops a thread at its exit).
    for (const w of this.piscina.threads) {
      // Not events.once: it settles at an 'error' event, which comes before the exit.
      if (!this.exits.has(w)) this.exits.set(w, new Promise((resolve) => w.once('exit', () => resolve())));
    }
  }
}

export function createWorkerPool(threads: number): WorkerPool {
  return new WorkerPool(threads);
}

function createPiscina(threads: number, execArgv: string[] | undefined): Piscina {
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
