# gloo collectives for bench/collective.ts: the same ops, sizes and dtypes as psrpc's ProcessGroup,
# measured the same way (a barrier before each timed op, median of the reps, rank 0's times), so
# the harness can put both side by side from one run. Prints one JSON object on stdout.
#   /usr/bin/python3 bench/torch_collective.py --processes 2 [--sizes 1048576,...] [--ops all_reduce,...]
#
# Conventions (nccl-tests): bytes is the total buffer (all_gather: the gathered output; reduce_scatter:
# the full input), algbw = bytes / time, busbw = algbw * 2(W-1)/W for all_reduce, (W-1)/W for
# all_gather and reduce_scatter, 1 for broadcast. GB = 1e9 bytes.
# - all_gather: gloo (torch 1.13) has no all_gather_into_tensor, so this is dist.all_gather into a
#   list of W tensors of bytes/W each.
# - reduce_scatter and any dtype gloo refuses (bf16 all_reduce, say) are tried once on a small
#   buffer and recorded as {"unsupported": <the error text>}, never emulated.
# Every (op, dtype, size) is checked once after its timed loop against the expected result of a
# known pattern (rank r holds (r + 1) + (i % 5)), so a fast wrong answer is never reported.
import argparse, json, os, socket, statistics, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

OPS = ('all_reduce', 'broadcast', 'all_gather', 'reduce_scatter', 'barrier')
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
SIZES = (1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20)


def parse():
    p = argparse.ArgumentParser()
    p.add_argument('--processes', type=int, default=2)
    p.add_argument('--sizes', default=','.join(map(str, SIZES)), help='total buffer bytes, comma separated')
    p.add_argument('--ops', default=','.join(OPS))
    p.add_argument('--dtypes', default='float32,bfloat16', help='dtypes of every op')
    p.add_argument('--all-reduce-dtypes', default='float32,bfloat16,float16', help='dtypes of all_reduce')
    p.add_argument('--min-seconds', type=float, default=0.2, help='timed reps run at least this long in all')
    p.add_argument('--min-reps', type=int, default=3)
    p.add_argument('--max-reps', type=int, default=300)
    p.add_argument('--port', type=int, default=0, help='rendezvous port (default: a free one)')
    a = p.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(',') if s]
    a.ops = [o for o in a.ops.split(',') if o]
    a.dtypes = [d for d in a.dtypes.split(',') if d]
    a.all_reduce_dtypes = [d for d in a.all_reduce_dtypes.split(',') if d]
    for o in a.ops:
        if o not in OPS: p.error(f'--ops: unknown op {o!r} (known: {", ".join(OPS)})')
    for d in a.dtypes + a.all_reduce_dtypes:
        if d not in DTYPES: p.error(f'dtype {d!r} is not one of {", ".join(DTYPES)}')
    if a.processes < 2: p.error(f'--processes must be >= 2, got {a.processes}')
    return a


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def bus_factor(op, w):
    return {'all_reduce': 2 * (w - 1) / w, 'all_gather': (w - 1) / w, 'reduce_scatter': (w - 1) / w, 'broadcast': 1.0}.get(op, 0.0)


def pattern(n, rank, dtype):
    return ((torch.arange(n, dtype=torch.int64) % 5) + (rank + 1)).to(dtype)


class Case:
    """One (op, dtype, bytes): fill() prepares the buffers outside the timer, run() is the timed op, check() the result."""

    def __init__(self, op, dtype, nbytes, rank, w):
        self.op, self.dtype, self.rank, self.w = op, DTYPES[dtype], rank, w
        es = torch.tensor([], dtype=self.dtype).element_size()
        self.n = max(1, nbytes // es)
        if op == 'all_gather' or op == 'reduce_scatter':
            self.n = max(w, self.n - self.n % w)
        self.bytes = self.n * es
        if op == 'all_reduce' or op == 'broadcast':
            self.buf = torch.zeros(self.n, dtype=self.dtype)
        elif op == 'all_gather':
            self.inp = torch.zeros(self.n // w, dtype=self.dtype)
            self.out = [torch.zeros(self.n // w, dtype=self.dtype) for _ in range(w)]
        elif op == 'reduce_scatter':
            self.inp = [torch.zeros(self.n // w, dtype=self.dtype) for _ in range(w)]
            self.out = torch.zeros(self.n // w, dtype=self.dtype)

    def fill(self, checked=False):
        # timed reps refill all_reduce / reduce_scatter inputs with rank + 1 (sums would grow rep by rep)
        if self.op == 'all_reduce':
            if checked: self.buf.copy_(pattern(self.n, self.rank, self.dtype))
            else: self.buf.fill_(self.rank + 1)
        elif self.op == 'broadcast' and checked:
            self.buf.copy_(pattern(self.n, 0, self.dtype) if self.rank == 0 else torch.full((self.n,), -1, dtype=self.dtype))
        elif self.op == 'all_gather' and checked:
            self.inp.copy_(pattern(self.n // self.w, self.rank, self.dtype))
            for t in self.out: t.fill_(-1)
        elif self.op == 'reduce_scatter':
            for t in self.inp: t.copy_(pattern(self.n // self.w, self.rank, self.dtype))

    def run(self, group=None):
        if self.op == 'all_reduce': dist.all_reduce(self.buf, group=group)
        elif self.op == 'broadcast': dist.broadcast(self.buf, 0, group=group)
        elif self.op == 'all_gather': dist.all_gather(self.out, self.inp, group=group)
        elif self.op == 'reduce_scatter': dist.reduce_scatter(self.out, self.inp, group=group)
        else: dist.barrier(group=group)

    def check(self):
        w = self.w
        if self.op == 'all_reduce':
            want = sum(pattern(self.n, r, torch.float32) for r in range(w)).to(self.dtype)
            got = self.buf
        elif self.op == 'broadcast':
            want, got = pattern(self.n, 0, self.dtype), self.buf
        elif self.op == 'all_gather':
            want = torch.cat([pattern(self.n // w, r, self.dtype) for r in range(w)]); got = torch.cat(self.out)
        elif self.op == 'reduce_scatter':
            want = sum(pattern(self.n // w, r, torch.float32) for r in range(w)).to(self.dtype); got = self.out
        else:
            return None
        if not torch.equal(got, want):
            bad = (got != want).nonzero()[0].item()
            return f'{self.op} {self.dtype} {self.bytes} B on rank {self.rank}: element {bad} is {got[bad].item()}, expected {want[bad].item()}'
        return None


def agree_max(x):
    t = torch.tensor([x], dtype=torch.float64); dist.all_reduce(t, op=dist.ReduceOp.MAX); return t.item()


def measure(case, a):
    """Median seconds of one op; every rank runs the same number of reps (the slowest rank's estimate)."""
    case.fill(); case.run()  # warmup (also the first-use setup)
    case.fill(); dist.barrier(); t0 = time.perf_counter(); case.run(); est = time.perf_counter() - t0
    reps = int(min(a.max_reps, max(a.min_reps, a.min_seconds / max(agree_max(est), 1e-7))))
    times = []
    for _ in range(reps):
        case.fill(); dist.barrier()
        t0 = time.perf_counter(); case.run(); times.append(time.perf_counter() - t0)
    return statistics.median(times), reps


def probe(op, dtype, w, rank):
    """The error text when gloo refuses (op, dtype), else None; every rank sees the same answer.

    The try runs in a throwaway group: a refused op stays in gloo's list of prior work, and every
    later barrier of its group re-raises the error (bf16 broadcast in torch 1.13), which would
    break the world group."""
    scratch = dist.new_group(backend='gloo')
    try:
        case = Case(op, dtype, 64 * w, rank, w); case.fill(True); case.run(group=scratch)
        err = None
    except Exception as e:  # gloo refuses before communicating, on every rank alike
        text = str(e).strip()
        err = f'{type(e).__name__}: {text.splitlines()[0] if text else ""}'
    dist.barrier()
    return err


def worker(rank, a, port, q):
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'; os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=a.processes)
    w = a.processes
    rows = []
    try:
        for op in a.ops:
            if op == 'barrier':
                case = Case('barrier', 'float32', 0, rank, w)
                t, reps = measure(case, a)
                rows.append({'op': op, 'bytes': 0, 'dtype': 'none', 'us': t * 1e6, 'reps': reps, 'algGBps': 0, 'busGBps': 0})
                continue
            for dt in (a.all_reduce_dtypes if op == 'all_reduce' else a.dtypes):
                err = probe(op, dt, w, rank)
                for nbytes in a.sizes:
                    if err is not None:
                        rows.append({'op': op, 'bytes': nbytes, 'dtype': dt, 'unsupported': err}); continue
                    case = Case(op, dt, nbytes, rank, w)
                    t, reps = measure(case, a)
                    case.fill(True); dist.barrier(); case.run()
                    bad = case.check()
                    if bad: raise RuntimeError(f'wrong result: {bad}')
                    alg = case.bytes / t / 1e9
                    rows.append({'op': op, 'bytes': case.bytes, 'dtype': dt, 'us': t * 1e6, 'reps': reps,
                                 'algGBps': alg, 'busGBps': alg * bus_factor(op, w)})
                    del case
        if rank == 0: q.put({'rows': rows})
    except Exception as e:
        q.put({'error': f'rank {rank}: {type(e).__name__}: {e}'})
        raise
    finally:
        dist.destroy_process_group()


def main():
    a = parse()
    port = a.port or free_port()
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(r, a, port, q)) for r in range(a.processes)]
    t0 = time.perf_counter()
    for p in ps: p.start()
    res = None
    while res is None:
        try:
            res = q.get(timeout=1)
        except Exception:  # queue.Empty: fail when a worker died without reporting
            dead = [p.exitcode for p in ps if p.exitcode not in (None, 0)]
            if dead:
                for p in ps: p.kill()
                res = {'error': f'a worker exited with {dead[0]} without a result'}
    for p in ps: p.join()
    if 'error' in res:
        print(res['error'], file=sys.stderr); sys.exit(1)
    bad = [p.exitcode for p in ps if p.exitcode != 0]
    if bad:
        print(f'workers exited with {bad}', file=sys.stderr); sys.exit(1)
    out = {'backend': 'gloo', 'torch': torch.__version__, 'processes': a.processes, 'wallSeconds': time.perf_counter() - t0,
           'notes': {'all_gather': 'dist.all_gather into a list of W tensors (gloo has no all_gather_into_tensor)',
                     'GB': '1e9 bytes'},
           'rows': res['rows']}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
