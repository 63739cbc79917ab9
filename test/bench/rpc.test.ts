// The pure parts of bench:rpc (bench/rpc-report.ts): parsing the peers' output, medians over
// rounds, the targets of issue 16 and the table. No transport runs here.
import test from 'ava';
import { medianFigures, parseIperf, parseTorchPing, table, targets } from '../../bench/rpc-report.js';

const torchOut = [
  'torch-rpc small rpc_sync p50_us=512.3 p99_us=1630.0',
  'torch-rpc small rpc_async calls_per_s=5400',
  'torch-rpc echo 1MB roundtrip GBps=0.58 channels=basic',
  'torch-rpc echo 16MB roundtrip GBps=0.88 channels=basic',
  'torch-rpc echo 64MB roundtrip GBps=0.69 channels=basic',
].join('\n');

test('torch_rpc_ping.py output and iperf3 JSON are parsed; output without figures gives undefined', (t) => {
  t.deepEqual(parseTorchPing(torchOut), { p50Us: 512.3, p99Us: 1630, callsPerSecond: 5400, echoGBps: { 1: 0.58, 16: 0.88, 64: 0.69 } });
  t.is(parseTorchPing('Traceback: no torch'), undefined);
  t.is(parseIperf(JSON.stringify({ end: { sum_received: { bits_per_second: 8 * 2 ** 30 * 1.5 } } })), 1.5);
  t.is(parseIperf('{"error": "unable to connect"}'), undefined);
  t.is(parseIperf('not json'), undefined);
});

test('medians are taken figure by figure, leaving out rounds that lack a figure', (t) => {
  const m = medianFigures([
    { p50Us: 100, echoGBps: { 16: 1 } },
    { p50Us: 300, echoGBps: { 16: 3, 64: 2 } },
    { p50Us: 200 },
  ]);
  t.deepEqual(m, { p50Us: 200, echoGBps: { 16: 2, 64: 2 } });
});

test('targets are ratios of the same run, undefined where a figure is missing, with at-most goals for latency', (t) => {
  const ts = targets({
    'psrpc-tcp': { echoGBps: { 16: 1.5, 64: 1.3 } },
    'psrpc-shm': { p50Us: 90, p99Us: 400, echoGBps: { 16: 4, 64: 3 } },
    'grpc-js': { p50Us: 100 },
    'tp-basic': { echoGBps: { 16: 0.9, 64: 0.8 } },
    iperf3: { streamGBps: 2 },
  });
  const by = Object.fromEntries(ts.map((x) => [x.what, x]));
  t.is(by['TCP echo 16 MB / loopback limit (iperf3)']!.value, 0.75);
  t.false(by['TCP echo 16 MB / loopback limit (iperf3)']!.met);
  t.true(by['TCP echo 64 MB / TensorPipe over TCP']!.met);
  t.is(by['shm echo 16 MB / TensorPipe default']!.met, undefined); // TensorPipe default not measured
  t.true(by['small-call p50 / grpc-js unary p50']!.met);
  t.is(by['small-call p99 / p50']!.value!.toFixed(2), '4.44');
  t.false(by['small-call p99 / p50']!.met);
});

test('the table has a column per configuration that ran and dashes for what it does not measure', (t) => {
  const s = table({ 'psrpc-tcp': { p50Us: 88.4, echoGBps: { 1: 1, 16: 1.25, 64: 1 } }, iperf3: { streamGBps: 2.31 } });
  const lines = s.split('\n');
  t.regex(lines[0]!, /psrpc-tcp\s+iperf3$/);
  t.regex(s, /small call p50 \(us\)\s+88\s+-/);
  t.regex(s, /echo 16 MB \(GB\/s\)\s+1\.25\s+-/);
  t.regex(s, /one-way stream \(GB\/s\)\s+-\s+2\.31/);
  t.notRegex(s, /psrpc-shm/);
});
