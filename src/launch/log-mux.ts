// Multiplexes the processes' output: every line a child writes (stdout and stderr both) comes out
// whole, prefixed with the child's name, on psrun's matching stream.
//
// Children write in arbitrary chunks; a line is only forwarded once its newline has arrived, and
// each forwarded line is one write call, so lines of two processes never interleave mid-line. The
// last lines of each process are kept for the failure report.
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export type StreamName = 'stdout' | 'stderr';

/** Where whole lines go (psrun's terminal, or a test's array). */
export interface LineSink {
  /** `text` is one line without its newline. */
  line(stream: StreamName, text: string): void;
}

/** Splits a byte stream into lines; keeps the unfinished tail until its newline arrives. */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  /** The lines completed by this chunk (without '\n'; a trailing '\r' is dropped too). */
  push(chunk: Buffer | string): string[] {
    const text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const parts = text.split('\n');
    this.pending = parts.pop()!;
    return parts.map(stripCr);
  }

  /** At end of stream: the unfinished last line, if any. */
  end(): string | undefined {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    return rest === '' ? undefined : stripCr(rest);
  }
}

function stripCr(s: string): string {
  return s.endsWith('\r') ? s.slice(0, -1) : s;
}

/** The last `size` lines, oldest first. */
export class LineTail {
  private readonly lines: string[] = [];
  constructor(readonly size: number) {}
  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }
  get(): string[] {
    return [...this.lines];
  }
}

export interface LogMuxOptions {
  /** Lines kept per process for the failure report. */
  tailLines?: number;
  /** Pads prefixes to the longest of these names so the columns line up. */
  names?: string[];
}

/** Called for each line before it is printed; return false to swallow it (e.g. progress lines). */
export type LineFilter = (name: string, stream: StreamName, line: string) => boolean;

export class LogMux {
  private readonly tails = new Map<string, LineTail>();
  private readonly width: number;
  private readonly tailLines: number;

  constructor(private readonly sink: LineSink, opts: LogMuxOptions = {}, private readonly filter?: LineFilter) {
    this.tailLines = opts.tailLines ?? 20;
    this.width = Math.max(0, ...(opts.names ?? []).map((n) => n.length));
  }

  prefix(name: string): string {
    return `${name.padEnd(this.width)} | `;
  }

  /** Forwards one child stream; resolves when it has ended and its last partial line is out. */
  attach(name: string, source: Readable, stream: StreamName): Promise<void> {
    const splitter = new LineSplitter();
    return new Promise((resolve) => {
      source.on('data', (chunk: Buffer | string) => {
        for (const line of splitter.push(chunk)) this.emit(name, stream, line);
      });
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        const rest = splitter.end();
        if (rest !== undefined) this.emit(name, stream, rest);
        resolve();
      };
      source.once('end', finish);
      // A destroyed pipe (child killed) may close without 'end'.
      source.once('close', finish);
      source.once('error', () => { /* the child's exit reports the failure */ });
    });
  }

  /** Records and prints one line of `name` (also used for lines that did not come from a pipe). */
  emit(name: string, stream: StreamName, line: string): void {
    let tail = this.tails.get(name);
    if (!tail) this.tails.set(name, (tail = new LineTail(this.tailLines)));
    tail.add(line);
    if (this.filter && !this.filter(name, stream, line)) return;
    this.sink.line(stream, this.prefix(name) + line);
  }

  /** The last lines `name` wrote (both streams, in arrival order). */
  tail(name: string): string[] {
    return this.tails.get(name)?.get() ?? [];
  }
}
