// Test support for the restart tests: runs psrun in this process on a job with a checkpoint
// directory under `dir`, capturing what it prints and reading the result it writes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/psrun.js';
import { Capture } from './fixture.js';

export interface JobRun {
  code: number;
  /** Everything psrun and its processes printed. */
  out: string;
  /** The --json result (exit status 0 only). */
  result?: any;
}

/** `run(dir, extra, env)`: psrun `job` plus `extra` with --checkpoint-dir DIR/ckpt, in the environment plus `env`. */
export function checkpointJob(job: readonly string[]): (dir: string, extra: string[], env?: Record<string, string>) => Promise<JobRun> {
  return async (dir, extra, env = {}) => {
    const json = join(dir, 'result.json');
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(['node', 'psrun', ...job, '--checkpoint-dir', join(dir, 'ckpt'), '--json', json, ...extra],
      { stdout, stderr, handleSignals: false, env: { ...process.env, ...env } });
    return { code, out: stdout.text + stderr.text, result: code === 0 ? JSON.parse(readFileSync(json, 'utf8')) : undefined };
  };
}
