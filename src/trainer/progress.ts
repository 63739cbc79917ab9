// Progress of a training run: a cli-progress bar on a terminal, plain periodic lines otherwise
// (logs, CI, psrun's multiplexed output), nothing at all with 'none'.
//
// Updates are cheap (a counter and a clock check) so the training loop can report every step.
import cliProgress from 'cli-progress';

export interface ProgressReporter {
  /** Adds `samples` to the count of trained samples; `loss` is the latest batch loss. */
  tick(samples: number, loss: number): void;
  /** Says something without breaking the bar. */
  log(line: string): void;
  stop(): void;
}

export interface ProgressOptions {
  mode: 'auto' | 'bar' | 'lines' | 'none';
  /** Total samples the run will train (all epochs). */
  total: number;
  /** Label in front of each line, e.g. 'local' or a worker's name. */
  label: string;
  stream?: NodeJS.WriteStream;
  /** Seconds between two plain lines. */
  intervalSeconds?: number;
}

export function createProgress(opts: ProgressOptions): ProgressReporter {
  const stream = opts.stream ?? process.stderr;
  const mode = opts.mode === 'auto' ? (stream.isTTY ? 'bar' : 'lines') : opts.mode;
  if (mode === 'none') return { tick() {}, log(line) { stream.write(line + '\n'); }, stop() {} };
  const started = performance.now();
  let done = 0;
  let lastLoss = NaN;
  if (mode === 'bar') {
    const bar = new cliProgress.SingleBar({
      stream,
      format: `${opts.label} [{bar}] {percentage}% | {value}/{total} samples | loss {loss} | {rate} samples/s | eta {eta_formatted}`,
      barCompleteChar: '#',
      barIncompleteChar: '-',
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    });
    bar.start(opts.total, 0, { loss: '-', rate: '-' });
    return {
      tick(samples, loss) {
        done += samples;
        lastLoss = loss;
        const secs = (performance.now() - started) / 1000;
        bar.update(done, { loss: lastLoss.toFixed(4), rate: secs > 0 ? Math.round(done / secs) : '-' });
      },
      log(line) { bar.stop(); stream.write(line + '\n'); },
      stop() { bar.stop(); },
    };
  }
  const interval = (opts.intervalSeconds ?? 2) * 1000;
  let nextAt = started + interval;
  const line = () => {
    const secs = (performance.now() - started) / 1000;
    const pct = opts.total > 0 ? ((100 * done) / opts.total).toFixed(1) : '?';
    stream.write(`${opts.label} ${pct}% ${done}/${opts.total} samples loss=${Number.isFinite(lastLoss) ? lastLoss.toFixed(4) : '-'} samples/s=${Math.round(done / Math.max(secs, 1e-9))}\n`);
  };
  // A first line at once (it carries the total, which psrun needs for its job bar) and a last one
  // at the end, so even a run shorter than the interval says how far it got.
  line();
  let stopped = false;
  return {
    tick(samples, loss) {
      done += samples;
      lastLoss = loss;
      const now = performance.now();
      if (now >= nextAt) {
        nextAt = now + interval;
        line();
      }
    },
    log(l) { stream.write(l + '\n'); },
    stop() {
      if (stopped) return;
      stopped = true;
      line();
    },
  };
}
