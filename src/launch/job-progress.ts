// The job's one progress display: psrun reads the trainers' plain progress lines (they run with
// `--progress lines`) and shows their sum as one bar on a terminal, or as periodic plain lines.
//
// The line format parsed is the one src/trainer/progress.ts writes in 'lines' mode:
//     <label> <pct>% <done>/<total> samples loss=<loss> samples/s=<rate>
// e.g. `trainer1 45.0% 5400/12000 samples loss=0.4123 samples/s=2100`. The label is ignored (the
// line's process is known); done/total are that trainer's own samples, so the job's figures are
// sums over trainers (loss: the mean of the trainers' latest losses).
import type { LineSink, StreamName } from './log-mux.js';

export interface ProgressSample {
  done: number;
  total: number;
  loss: number;
  /** samples/s of that trainer. */
  rate: number;
}

const PROGRESS_LINE = /(?:^|\s)(?:\d+(?:\.\d+)?|\?)% (\d+)\/(\d+) samples loss=(\S+) samples\/s=(\d+)\s*$/;

/** The figures of one trainer progress line, or undefined if the line is something else. */
export function parseProgressLine(line: string): ProgressSample | undefined {
  const m = PROGRESS_LINE.exec(line);
  if (!m) return undefined;
  return { done: Number(m[1]), total: Number(m[2]), loss: Number(m[3]), rate: Number(m[4]) };
}

export interface JobSnapshot {
  done: number;
  /** Estimated: trainers that have not reported yet count as the mean of those that have. */
  total: number;
  loss: number;
  rate: number;
  /** How many trainers have reported at least once. */
  reported: number;
}

/** The latest progress of every trainer and their sum. */
export class JobProgress {
  private readonly latest = new Map<string, ProgressSample>();
  constructor(private readonly trainers: readonly string[]) {}

  update(name: string, sample: ProgressSample): void {
    if (this.trainers.includes(name)) this.latest.set(name, sample);
  }

  /** A trainer exited 0: it trained all its samples, whatever its last line said. */
  finish(name: string): void {
    const s = this.latest.get(name);
    if (s) this.latest.set(name, { ...s, done: s.total });
  }

  snapshot(): JobSnapshot {
    let done = 0, total = 0, rate = 0, loss = 0, finite = 0;
    for (const s of this.latest.values()) {
      done += s.done;
      total += s.total;
      rate += s.rate;
      if (Number.isFinite(s.loss)) {
        loss += s.loss;
        finite++;
      }
    }
    const reported = this.latest.size;
    if (reported > 0 && reported < this.trainers.length) total = Math.round((total / reported) * this.trainers.length);
    return { done, total, rate, loss: finite > 0 ? loss / finite : NaN, reported };
  }
}

/** Where psrun writes: process.stdout / process.stderr, or a test's capture. */
export interface TextOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export type DisplayMode = 'bar' | 'lines' | 'none';

/** One line of the job's progress in the trainers' own 'lines' format, labelled `job`. */
export function formatJobLine(s: JobSnapshot): string {
  const pct = s.total > 0 ? ((100 * s.done) / s.total).toFixed(1) : '?';
  const loss = Number.isFinite(s.loss) ? s.loss.toFixed(4) : '-';
  return `job ${pct}% ${s.done}/${s.total} samples loss=${loss} samples/s=${Math.round(s.rate)}`;
}

/** The bar line; the bar itself shrinks (down to 10 cells) to fit `columns`. */
function formatBar(s: JobSnapshot, columns: number): string {
  const frac = s.total > 0 ? Math.min(1, s.done / s.total) : 0;
  const eta = s.rate > 0 && s.total > s.done ? `${Math.ceil((s.total - s.done) / s.rate)}s` : '-';
  const loss = Number.isFinite(s.loss) ? s.loss.toFixed(4) : '-';
  const rest = ` ${Math.floor(frac * 100)}% | ${s.done}/${s.total || '?'} | loss ${loss} | ${Math.round(s.rate)} samples/s | eta ${eta}`;
  const width = Math.max(10, Math.min(30, columns - 1 - 'job []'.length - rest.length));
  const filled = Math.round(frac * width);
  return `job [${'#'.repeat(filled)}${'-'.repeat(width - filled)}]${rest}`;
}

export interface JobDisplayOptions {
  mode: DisplayMode;
  stdout: TextOutput;
  /** The bar and the job lines go here. */
  stderr: TextOutput;
  /** Lines mode: at most one job line per this many milliseconds. */
  intervalMs?: number;
}

/**
 * psrun's screen: the sink of the multiplexed lines, keeping the bar (if any) on the last line of
 * the terminal. Every line clears the bar, goes out whole, and the bar is drawn again below it.
 */
export class JobDisplay implements LineSink {
  private drawn = false;
  private lastDraw = 0;
  private lastLine = -Infinity;
  private stopped = false;
  /** Lines mode: an update arrived after the last job line. */
  private unprinted = false;

  constructor(private readonly progress: JobProgress, private readonly opts: JobDisplayOptions) {}

  get mode(): DisplayMode {
    return this.opts.mode;
  }

  line(stream: StreamName, text: string): void {
    this.clearBar();
    (stream === 'stdout' ? this.opts.stdout : this.opts.stderr).write(text + '\n');
    this.drawBar();
  }

  /** A trainer reported progress. */
  update(name: string, sample: ProgressSample): void {
    this.progress.update(name, sample);
    this.refresh();
  }

  /** A trainer exited 0 (its last progress line may predate its last steps). */
  finish(name: string): void {
    this.progress.finish(name);
    this.refresh();
  }

  private refresh(): void {
    if (this.stopped) return;
    const now = performance.now();
    if (this.opts.mode === 'bar') {
      if (now - this.lastDraw >= 100) {
        this.clearBar();
        this.drawBar();
      }
    } else if (this.opts.mode === 'lines') {
      this.unprinted = true;
      if (now - this.lastLine >= (this.opts.intervalMs ?? 2000)) this.printJobLine(now);
    }
  }

  private printJobLine(now: number): void {
    const snap = this.progress.snapshot();
    if (snap.reported === 0) return; // nothing known yet: a line of zeros would only mislead
    this.lastLine = now;
    this.unprinted = false;
    this.opts.stderr.write(formatJobLine(snap) + '\n');
  }

  /** Draws the final state of the bar (or the last job line) and leaves it on screen. */
  stop(): void {
    if (this.stopped) return;
    if (this.opts.mode === 'lines' && this.unprinted) this.printJobLine(performance.now());
    if (this.opts.mode === 'bar' && this.progress.snapshot().reported > 0) {
      this.clearBar();
      this.drawBar();
      this.opts.stderr.write('\n');
      this.drawn = false;
    } else this.clearBar();
    this.stopped = true;
  }

  private clearBar(): void {
    if (!this.drawn) return;
    this.opts.stderr.write('\r\x1b[K');
    this.drawn = false;
  }

  private drawBar(): void {
    if (this.opts.mode !== 'bar' || this.stopped) return;
    const s = this.progress.snapshot();
    if (s.reported === 0) return;
    // A pseudo-terminal may report 0 columns: then assume a usual width.
    const columns = this.opts.stderr.columns || 100;
    let text = formatBar(s, columns);
    if (text.length >= columns) text = text.slice(0, Math.max(0, columns - 1));
    this.opts.stderr.write(text);
    this.drawn = true;
    this.lastDraw = performance.now();
  }
}
