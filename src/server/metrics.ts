// A parameter server's metrics: prom-client counters in a Registry of its own (not the global
// one, so several servers in one process keep separate counts), optionally served over HTTP.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly pushes: Counter;
  readonly pulls: Counter;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly steps: Counter;
  readonly staleness: Histogram;
  readonly liveTrainers: Gauge;
  readonly version: Gauge;
  private http?: Server;

  constructor(server: string) {
    this.registry.setDefaultLabels({ server });
    const registers = [this.registry];
    this.pushes = new Counter({ name: 'ps_pushes_total', help: 'Gradient pushes received (push and pushPull)', registers });
    this.pulls = new Counter({ name: 'ps_pulls_total', help: 'Parameter pulls answered (pull and pushPull)', registers });
    this.bytesIn = new Counter({ name: 'ps_received_bytes_total', help: 'Gradient bytes received', registers });
    this.bytesOut = new Counter({ name: 'ps_sent_bytes_total', help: 'Parameter bytes sent', registers });
    this.steps = new Counter({ name: 'ps_steps_total', help: 'Optimizer steps taken on this shard', registers });
    this.staleness = new Histogram({
      name: 'ps_staleness_steps',
      help: 'Steps the shard advanced between the pull a gradient was computed on and its push',
      buckets: [0, 1, 2, 4, 8, 16, 32],
      registers,
    });
    this.liveTrainers = new Gauge({ name: 'ps_live_trainers', help: 'Trainers that joined and have not left', registers });
    this.version = new Gauge({ name: 'ps_version', help: 'Parameter version (steps applied)', registers });
  }

  /** The text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves `/metrics` on 127.0.0.1:`port` (0: any free port); resolves to the bound port. */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    if (this.http) throw new Error('metrics are already being served');
    const http = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e) + '\n'),
      );
    });
    this.http = http;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, host, () => { http.off('error', reject); resolve(); });
    });
    return (http.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const http = this.http;
    this.http = undefined;
    if (http) await new Promise<void>((resolve) => { http.close(() => resolve()); http.closeAllConnections(); });
  }
}
